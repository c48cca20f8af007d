//! A scripted, hostile registry for the credential tests: servers on any
//! loopback address (127.0.0.2 and 127.0.0.3 are loopback too), plain or
//! TLS with a CA made in the test, that log every request with all its
//! headers into one shared log and answer through a handler the test
//! writes — usually a `MiniRegistry` (an OCI layout to pull from, pushes
//! kept in memory) behind auth and a hostile twist. Unlike `fake_server`
//! (one scripted answer per connection), the handler decides per request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received, every header kept.
#[derive(Clone, Debug)]
pub struct Req {
    /// The server that received it: `127.0.0.2:PORT`.
    pub server: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// The whole request as text (headers and body), to search for secrets.
    pub fn text(&self) -> String {
        let mut text = format!("{} {}\n", self.method, self.target);
        for (k, v) in &self.headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&self.body));
        text
    }
}

pub enum Body {
    Bytes(Vec<u8>),
    /// Chunked, never ending (until the client hangs up).
    Endless,
    /// Chunked, one byte per interval.
    Drip(Duration),
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn bytes(mut self, bytes: impl Into<Vec<u8>>) -> Reply {
        self.body = Body::Bytes(bytes.into());
        self
    }

    pub fn body(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// Every request every server of a test received, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Req>>>);

impl Log {
    pub fn all(&self) -> Vec<Req> {
        self.0.lock().unwrap().clone()
    }

    /// The requests `server` (`ip:port`) received.
    pub fn to(&self, server: &str) -> Vec<Req> {
        self.all()
            .into_iter()
            .filter(|r| r.server == server)
            .collect()
    }

    /// Panics if a request to `server` carried an `Authorization` header or
    /// holds `secret` anywhere.
    pub fn assert_no_authorization(&self, server: &str, secret: &str) {
        for req in self.to(server) {
            assert!(
                req.header("authorization").is_none(),
                "credentials reached {server}: {}",
                req.text()
            );
        }
        self.assert_never_sent(server, secret);
    }

    /// Panics unless `server` got these basic credentials (they were in play).
    pub fn assert_basic_seen(&self, server: &str, user: &str, pass: &str) {
        let wanted = basic(user, pass);
        assert!(
            self.to(server)
                .iter()
                .any(|r| r.header("authorization") == Some(wanted.as_str())),
            "{server} never got the credentials"
        );
    }

    /// Panics if any request to `server` holds `secret` anywhere.
    pub fn assert_never_sent(&self, server: &str, secret: &str) {
        for req in self.to(server) {
            assert!(
                !req.text().contains(secret),
                "`{secret}` reached {server}: {}",
                req.text()
            );
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub tls: bool,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serve `handler` on a free port of `ip` (TLS when `tls` is given).
    pub fn start(ip: &str, tls: Option<&TestCa>, log: &Log, handler: Handler) -> Server {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback address");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let config = tls.map(|ca| ca.server.clone());
        let (flag, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, log, config) = (handler.clone(), log.clone(), config.clone());
                std::thread::spawn(move || serve(stream, addr, config, &log, &handler));
            }
        });
        Server {
            addr,
            tls: tls.is_some(),
            stop,
        }
    }

    /// `127.0.0.2:PORT`: the registry name slipway is given.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `https://127.0.0.2:PORT` or `http://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    log: &Log,
    handler: &Handler,
) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
    match tls {
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            exchange(rustls::StreamOwned::new(conn, tcp), addr, log, handler);
        }
        None => exchange(tcp, addr, log, handler),
    }
}

/// One request, one answer, then the connection closes.
fn exchange(mut stream: impl Read + Write, addr: SocketAddr, log: &Log, handler: &Handler) {
    let Some(req) = read_request(&mut stream, addr) else {
        return;
    };
    log.0.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let _ = write_reply(&mut stream, &req, reply);
}

fn read_request(stream: &mut impl Read, addr: SocketAddr) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        server: addr.to_string(),
        method,
        target,
        headers,
        body,
    })
}

fn write_reply(stream: &mut impl Write, req: &Req, reply: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    match reply.body {
        Body::Bytes(bytes) => {
            if !has_length {
                head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
            }
            head.push_str("Connection: close\r\n\r\n");
            stream.write_all(head.as_bytes())?;
            if req.method != "HEAD" {
                stream.write_all(&bytes)?;
            }
        }
        Body::Endless => {
            head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes())?;
            let block = vec![b'x'; 64 * 1024];
            // Bounded anyway, should the client never hang up: 4 GiB.
            for _ in 0..(1u64 << 16) {
                stream.write_all(format!("{:x}\r\n", block.len()).as_bytes())?;
                stream.write_all(&block)?;
                stream.write_all(b"\r\n")?;
            }
        }
        Body::Drip(every) => {
            head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes())?;
            stream.flush()?;
            for _ in 0..600 {
                std::thread::sleep(every);
                stream.write_all(b"1\r\nx\r\n")?;
                stream.flush()?;
            }
        }
    }
    stream.flush()
}

/// A CA made for the test and a server certificate it signed for the given
/// loopback IPs. Point slipway at `pem_path` with `SSL_CERT_FILE`.
pub struct TestCa {
    pub pem_path: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(ips: &[&str]) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "slipway test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let names: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names).unwrap();
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, ca_cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        TestCa {
            pem_path,
            server: Arc::new(config),
            _dir: dir,
        }
    }
}

/// A registry in memory: pulls from an OCI layout (if any) and from what
/// was pushed; uploads are accepted wherever their PUT lands, so a test can
/// send the upload `Location` to another server sharing this registry.
#[derive(Default)]
pub struct MiniRegistry {
    layout: Option<PathBuf>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// By tag and by digest: (media type, bytes).
    manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    next_upload: AtomicU64,
    /// Where uploads go: "" (relative, this server) or a URL prefix such
    /// as `http://127.0.0.3:PORT` or `//127.0.0.3:PORT`.
    pub upload_base: Mutex<String>,
}

impl MiniRegistry {
    pub fn new(layout: Option<&Path>) -> Arc<MiniRegistry> {
        Arc::new(MiniRegistry {
            layout: layout.map(Path::to_path_buf),
            ..MiniRegistry::default()
        })
    }

    /// Adds a manifest (under `tag` and its digest) and its blobs.
    pub fn put(&self, tag: &str, media_type: &str, manifest: &[u8], blobs: &[&[u8]]) {
        let digest = digest(manifest);
        let entry = (media_type.to_string(), manifest.to_vec());
        let mut manifests = self.manifests.lock().unwrap();
        manifests.insert(tag.to_string(), entry.clone());
        manifests.insert(digest, entry);
        for blob in blobs {
            self.blobs
                .lock()
                .unwrap()
                .insert(digest_of(blob), blob.to_vec());
        }
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.lock().unwrap().contains_key(digest)
    }

    pub fn manifest(&self, reference: &str) -> Option<Vec<u8>> {
        self.manifests
            .lock()
            .unwrap()
            .get(reference)
            .map(|(_, b)| b.clone())
    }

    pub fn handle(&self, req: &Req) -> Reply {
        let path = req.path().to_string();
        let method = req.method.as_str();
        if path == "/v2/" {
            return Reply::new(200).bytes("{}");
        }
        if let Some((_, reference)) = path.split_once("/manifests/") {
            return match method {
                "PUT" => {
                    let media_type = req.header("content-type").unwrap_or("").to_string();
                    let digest = digest(&req.body);
                    let entry = (media_type, req.body.clone());
                    let mut manifests = self.manifests.lock().unwrap();
                    manifests.insert(reference.to_string(), entry.clone());
                    manifests.insert(digest.clone(), entry);
                    Reply::new(201).header("Docker-Content-Digest", &digest)
                }
                _ => match self.find_manifest(reference) {
                    Some((media_type, bytes)) => Reply::new(200)
                        .header("Content-Type", &media_type)
                        .header("Docker-Content-Digest", &digest(&bytes))
                        .header("Content-Length", &bytes.len().to_string())
                        .bytes(bytes),
                    None => not_found(),
                },
            };
        }
        if path.contains("/blobs/uploads") {
            return match method {
                "POST" => {
                    let n = self.next_upload.fetch_add(1, Ordering::SeqCst);
                    let base = self.upload_base.lock().unwrap().clone();
                    let repo = path
                        .trim_start_matches("/v2/")
                        .split("/blobs/")
                        .next()
                        .unwrap();
                    Reply::new(202)
                        .header(
                            "Location",
                            &format!("{base}/v2/{repo}/blobs/uploads/u{n}?_state=s{n}"),
                        )
                        .header("Docker-Upload-UUID", &format!("u{n}"))
                }
                "PUT" => {
                    let wanted = req.query("digest").unwrap_or_default();
                    if digest_of(&req.body) != wanted {
                        return Reply::new(400).bytes(r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                    }
                    self.blobs
                        .lock()
                        .unwrap()
                        .insert(wanted.clone(), req.body.clone());
                    Reply::new(201).header("Docker-Content-Digest", &wanted)
                }
                "DELETE" => Reply::new(204),
                _ => Reply::new(405),
            };
        }
        if let Some((_, digest)) = path.split_once("/blobs/") {
            return match self.find_blob(digest) {
                Some(bytes) => Reply::new(200)
                    .header("Content-Length", &bytes.len().to_string())
                    .header("Docker-Content-Digest", digest)
                    .bytes(bytes),
                None => not_found(),
            };
        }
        not_found()
    }

    fn find_blob(&self, digest: &str) -> Option<Vec<u8>> {
        if let Some(bytes) = self.blobs.lock().unwrap().get(digest) {
            return Some(bytes.clone());
        }
        let hex = digest.strip_prefix("sha256:")?;
        std::fs::read(self.layout.as_ref()?.join("blobs/sha256").join(hex)).ok()
    }

    fn find_manifest(&self, reference: &str) -> Option<(String, Vec<u8>)> {
        if let Some(found) = self.manifests.lock().unwrap().get(reference) {
            return Some(found.clone());
        }
        let layout = self.layout.as_ref()?;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).ok()?).ok()?;
        let entries = index["manifests"].as_array()?;
        let entry = entries.iter().find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"] == reference
                || m["digest"] == reference
        });
        let (digest, media_type) = match entry {
            Some(m) => (
                m["digest"].as_str()?.to_string(),
                m["mediaType"].as_str()?.to_string(),
            ),
            None => {
                // A manifest inside the top index, by digest.
                let bytes = self.find_blob(reference)?;
                let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                return Some((value["mediaType"].as_str()?.to_string(), bytes));
            }
        };
        Some((media_type, self.find_blob(&digest)?))
    }
}

fn not_found() -> Reply {
    Reply::new(404).bytes(r#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#)
}

pub fn digest_of(bytes: &[u8]) -> String {
    super::fixtures::sha256_digest(bytes)
}

fn digest(bytes: &[u8]) -> String {
    digest_of(bytes)
}

/// `Basic base64(user:pass)`.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// `inner` behind basic auth: anything else gets a 401 `Basic` challenge.
pub fn require_basic(user: &str, pass: &str, inner: Handler) -> Handler {
    let wanted = basic(user, pass);
    Arc::new(move |req: &Req| {
        if req.header("authorization") == Some(wanted.as_str()) {
            inner(req)
        } else {
            Reply::new(401).header("WWW-Authenticate", r#"Basic realm="test""#)
        }
    })
}

/// `inner` behind a bearer token from `realm`: anything else gets a 401
/// `Bearer` challenge naming it.
pub fn require_bearer(realm: &str, token: &str, inner: Handler) -> Handler {
    let (realm, wanted) = (realm.to_string(), format!("Bearer {token}"));
    Arc::new(move |req: &Req| {
        if req.header("authorization") == Some(wanted.as_str()) {
            inner(req)
        } else {
            Reply::new(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="hostile""#),
            )
        }
    })
}

/// A token server: `token` for anyone (the log tells who sent what).
pub fn token_handler(token: &str, expires_in: &str) -> Handler {
    let body = format!(r#"{{"token":"{token}","expires_in":{expires_in}}}"#);
    Arc::new(move |_req: &Req| {
        Reply::new(200)
            .header("Content-Type", "application/json")
            .bytes(body.clone())
    })
}

/// The registry serves `registry`; the handler routes to it.
pub fn serve_registry(registry: &Arc<MiniRegistry>) -> Handler {
    let registry = registry.clone();
    Arc::new(move |req: &Req| registry.handle(req))
}
