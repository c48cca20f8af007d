//! A real Distribution registry (`docker-registry serve`) on a free
//! 127.0.0.1 port, storing into a temp dir, killed on drop.
//!
//! ```ignore
//! if skip_or_fail("docker-registry") { return; }
//! let registry = Registry::start();            // or start_htpasswd / start_token_auth
//! let client = registry.client();              // isolated from ~/.docker
//! client.blob_exists(registry.addr(), "app", &digest).await?;
//! ```

use super::token_server::{TokenServer, ISSUER, SERVICE};
use slipway::registry::{RegistryClient, RegistryOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The registry binary: `docker-registry` on PATH (Debian's package).
pub const REGISTRY_TOOL: &str = "docker-registry";

pub struct Registry {
    child: Child,
    addr: String,
    dir: TempDir,
    token_server: Option<TokenServer>,
    credentials: Option<(String, String)>,
}

enum Auth<'a> {
    None,
    Htpasswd(&'a str, &'a str),
    Token(&'a TokenServer),
}

impl Registry {
    /// No auth.
    pub fn start() -> Registry {
        Registry::launch(Auth::None, None)
    }

    /// Basic auth against an htpasswd file holding `user`:`pass` (bcrypt).
    pub fn start_htpasswd(user: &str, pass: &str) -> Registry {
        let credentials = Some((user.to_string(), pass.to_string()));
        Registry::launch(Auth::Htpasswd(user, pass), credentials)
    }

    /// Bearer tokens from a test token server that grants every scope to
    /// anyone.
    pub fn start_token_auth() -> Registry {
        let server = TokenServer::start(None);
        Registry::launch_token(server, None)
    }

    /// Bearer tokens from a test token server that wants `user`:`pass`.
    pub fn start_token_auth_with_credentials(user: &str, pass: &str) -> Registry {
        let credentials = Some((user.to_string(), pass.to_string()));
        let server = TokenServer::start(credentials.clone());
        Registry::launch_token(server, credentials)
    }

    /// Token auth where `user`:`pass` may push and `reader`:`reader_pass`
    /// may only pull.
    pub fn start_token_auth_with_reader(
        user: &str,
        pass: &str,
        reader: &str,
        reader_pass: &str,
    ) -> Registry {
        let credentials = Some((user.to_string(), pass.to_string()));
        let server = TokenServer::start_with_reader(
            credentials.clone(),
            Some((reader.to_string(), reader_pass.to_string())),
        );
        Registry::launch_token(server, credentials)
    }

    fn launch_token(server: TokenServer, credentials: Option<(String, String)>) -> Registry {
        let mut registry = Registry::launch(Auth::Token(&server), credentials);
        registry.token_server = Some(server);
        registry
    }

    fn launch(auth: Auth, credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("slipway-registry-")
            .tempdir()
            .expect("create the registry's temp dir");
        let auth_yaml = auth_config(&auth, dir.path());
        let log_path = dir.path().join("registry.log");
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = dir.path().join("config.yml");
            std::fs::write(&config, registry_config(dir.path(), &addr, &auth_yaml))
                .expect("write the registry config");
            let log = std::fs::File::create(&log_path).expect("create the registry log");
            let mut child = Command::new(REGISTRY_TOOL)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `{REGISTRY_TOOL}`: {e}"));
            if wait_ready(&mut child, &addr, Duration::from_secs(20)) {
                return Registry {
                    child,
                    addr,
                    dir,
                    token_server: None,
                    credentials,
                };
            }
            // The port was taken in the meantime, or it failed: try again.
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("the registry did not start; its log:\n{log}");
    }

    /// `127.0.0.1:PORT`: the registry name to give the client.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The credentials it was started with (htpasswd or token server).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The filesystem storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps a blob's bytes (manifests are blobs too):
    /// overwrite it to make the registry serve corrupt content.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Client options isolated from the user's docker config: few retries,
    /// short timeouts, no credentials unless `docker_config` is set.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            docker_config: Some(self.dir.path().join("no-docker-config.json")),
            ..RegistryOptions::default()
        }
    }

    /// An anonymous client.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(self.options()).expect("create the registry client")
    }

    /// A client whose docker config.json holds `user`:`pass` for this registry.
    pub fn client_with_credentials(&self, user: &str, pass: &str) -> RegistryClient {
        let options = RegistryOptions {
            docker_config: Some(self.docker_config(user, pass)),
            ..self.options()
        };
        RegistryClient::new(options).expect("create the registry client")
    }

    /// A client logged in with the credentials the registry was started with.
    pub fn authenticated_client(&self) -> RegistryClient {
        match self.credentials() {
            Some((user, pass)) => self.client_with_credentials(user, pass),
            None => self.client(),
        }
    }

    /// Write a docker config.json with an `auths` entry for this registry.
    pub fn docker_config(&self, user: &str, pass: &str) -> PathBuf {
        use base64::Engine as _;
        let dir = tempfile::Builder::new()
            .prefix("docker-config-")
            .tempdir_in(self.dir.path())
            .expect("create a docker config dir")
            .keep();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let config = serde_json::json!({"auths": {self.addr.clone(): {"auth": auth}}});
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).expect("write config.json");
        path
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `GET /v2/` until it answers (200 or 401); false if the process
/// exits or time runs out.
fn wait_ready(child: &mut Child, addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(200 | 401) = http_status(addr, "/v2/") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn auth_config(auth: &Auth, dir: &Path) -> String {
    match auth {
        Auth::None => String::new(),
        Auth::Htpasswd(user, pass) => {
            let hash = bcrypt::hash_with_result(pass, 4)
                .expect("bcrypt the password")
                .format_for_version(bcrypt::Version::TwoY);
            let path = dir.join("htpasswd");
            std::fs::write(&path, format!("{user}:{hash}\n")).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: slipway-test\n    path: \"{}\"\n",
                path.display()
            )
        }
        Auth::Token(server) => {
            let path = dir.join("token-cert.pem");
            std::fs::write(&path, server.cert_pem()).expect("write the token certificate");
            format!(
                "auth:\n  token:\n    realm: \"{}\"\n    service: \"{SERVICE}\"\n    issuer: \"{ISSUER}\"\n    rootcertbundle: \"{}\"\n",
                server.realm(),
                path.display()
            )
        }
    }
}

fn registry_config(dir: &Path, addr: &str, auth: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: \"{addr}\"\n  secret: slipway-test-secret\n\
         {auth}",
        dir.join("storage").display()
    )
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// The status of a plain `GET` to `addr`, if anything answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}
