//! Credentials for a registry, in docker's order: config.json (`credHelpers`,
//! `auths`, `credsStore`), then `SLIPWAY_REGISTRY_USERNAME` /
//! `SLIPWAY_REGISTRY_PASSWORD` when they belong to that registry (see
//! `env_credentials`), then anonymous. Secrets never print.

use super::error::RegistryError;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A password or token: `Debug` prints `****`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for building a request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
}

impl Credentials {
    /// The `Authorization` value for basic auth, if these are basic credentials.
    pub fn basic_header(&self) -> Option<Secret> {
        match self {
            Credentials::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )))
            }
            Credentials::IdentityToken(_) => None,
        }
    }
}

pub const ENV_USERNAME: &str = "SLIPWAY_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "SLIPWAY_REGISTRY_PASSWORD";
pub const ENV_HOST: &str = "SLIPWAY_REGISTRY_HOST";
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Standard base64, padded or not (docker writes it padded, others don't).
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The subset of docker's config.json that carries credentials.
#[derive(Default, serde::Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Where config.json says to look.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Found(Credentials),
    /// Ask `docker-credential-<name>`.
    Helper(String),
    None,
}

/// docker.io's many spellings, and a config key (`host`, `https://host/v1/`)
/// reduced to the registry name.
pub fn normalize_registry(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host.to_string(),
    }
}

/// The server name a credential helper knows a registry by.
fn helper_server(registry: &str) -> String {
    if normalize_registry(registry) == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

impl DockerConfig {
    pub fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn lookup(&self, registry: &str) -> Result<Source, String> {
        let wanted = normalize_registry(registry);
        if let Some((_, helper)) = self
            .cred_helpers
            .iter()
            .find(|(key, _)| normalize_registry(key) == wanted)
        {
            return Ok(Source::Helper(helper.clone()));
        }
        // An exact key first, then any spelling of the same registry.
        let entry = self.auths.get(registry).or_else(|| {
            self.auths
                .iter()
                .find(|(key, _)| normalize_registry(key) == wanted)
                .map(|(_, entry)| entry)
        });
        if let Some(credentials) = entry.map(entry_credentials).transpose()?.flatten() {
            return Ok(Source::Found(credentials));
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => Ok(Source::Helper(store.clone())),
            _ => Ok(Source::None),
        }
    }
}

fn entry_credentials(entry: &AuthEntry) -> Result<Option<Credentials>, String> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = LENIENT_BASE64
            .decode(auth.trim())
            .map_err(|_| "an `auth` entry is not valid base64".to_string())?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| "an `auth` entry is not valid UTF-8".to_string())?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| "an `auth` entry is not `username:password`".to_string())?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: Secret::new(password),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials::Basic {
            username: username.clone(),
            password: Secret::new(password.clone()),
        })),
        _ => Ok(None),
    }
}

/// `options.docker_config`, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Credentials for `registry`, or None for anonymous.
/// `env`: the credentials from the environment, when they belong to `registry`.
pub async fn resolve(
    registry: &str,
    docker_config: Option<&Path>,
    env: Option<Credentials>,
) -> Result<Option<Credentials>, RegistryError> {
    let other = |message: String| RegistryError::Other {
        registry: registry.to_string(),
        message,
    };
    if let Some(path) = config_path(docker_config) {
        let config = match tokio::fs::read(&path).await {
            Ok(bytes) => DockerConfig::parse(&bytes)
                .map_err(|e| other(format!("cannot read `{}`: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerConfig::default(),
            Err(e) => return Err(other(format!("cannot read `{}`: {e}", path.display()))),
        };
        let source = config
            .lookup(registry)
            .map_err(|e| other(format!("in `{}`: {e}", path.display())))?;
        match source {
            Source::Found(credentials) => return Ok(Some(credentials)),
            Source::Helper(name) => {
                if let Some(credentials) = run_helper(&name, registry).await.map_err(other)? {
                    return Ok(Some(credentials));
                }
            }
            Source::None => {}
        }
    }
    Ok(env)
}

/// `SLIPWAY_REGISTRY_USERNAME`, `_PASSWORD` and `_HOST` as read at start.
struct EnvValues {
    username: Option<String>,
    password: Option<String>,
    host: Option<String>,
}

static CAPTURED: std::sync::OnceLock<EnvValues> = std::sync::OnceLock::new();

fn read_env() -> EnvValues {
    let get = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    EnvValues {
        username: get(ENV_USERNAME),
        password: std::env::var(ENV_PASSWORD).ok(),
        host: get(ENV_HOST),
    }
}

/// Reads `SLIPWAY_REGISTRY_*` once and removes them from this process's
/// environment, so no child (uv, git, a credential helper) inherits them.
/// Call at start, before any other thread runs.
pub fn capture_env() {
    CAPTURED.get_or_init(read_env);
    for name in [ENV_USERNAME, ENV_PASSWORD, ENV_HOST] {
        std::env::remove_var(name);
    }
}

/// `SLIPWAY_REGISTRY_USERNAME` / `PASSWORD` and the one registry they are
/// for: the one `SLIPWAY_REGISTRY_HOST` names, else `destination` (the
/// registry `slipway build` pushes to). None when neither is known: the
/// credentials are then sent nowhere.
pub fn env_credentials(destination: Option<&str>) -> Option<(String, Credentials)> {
    let env = CAPTURED.get_or_init(read_env);
    let username = env.username.clone()?;
    let password = env.password.clone()?;
    let host = env
        .host
        .clone()
        .or_else(|| destination.map(str::to_string))?;
    Some((
        normalize_registry(&host),
        Credentials::Basic {
            username,
            password: Secret::new(password),
        },
    ))
}

/// `docker-credential-<name> get`: None when the helper has nothing for this
/// registry.
async fn run_helper(name: &str, registry: &str) -> Result<Option<Credentials>, String> {
    let program = format!("docker-credential-{name}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run credential helper `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let server = helper_server(registry);
        // A helper that exits without reading gives a broken pipe: its exit
        // status says what happened.
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("credential helper `{program}` did not answer in time"))?
        .map_err(|e| format!("credential helper `{program}` failed: {e}"))?;
    parse_helper_output(
        &program,
        output.status.success(),
        &output.stdout,
        &output.stderr,
    )
}

fn parse_helper_output(
    program: &str,
    success: bool,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Credentials>, String> {
    if !success {
        let text = String::from_utf8_lossy(stdout).to_lowercase();
        if text.contains("credentials not found") || text.contains("not found") {
            return Ok(None);
        }
        let first = String::from_utf8_lossy(stderr);
        let first = first.lines().next().unwrap_or("").trim();
        return Err(format!("credential helper `{program}` failed: {first}"));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(stdout)
        .map_err(|_| format!("credential helper `{program}` gave an unreadable answer"))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    if answer.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(Secret::new(answer.secret))));
    }
    Ok(Some(Credentials::Basic {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> Source {
        Source::Found(Credentials::Basic {
            username: user.into(),
            password: Secret::new(pass),
        })
    }

    #[test]
    fn secret_debug_is_masked() {
        let c = Credentials::Basic {
            username: "me".into(),
            password: Secret::new("hunter2"),
        };
        let text = format!("{c:?}");
        assert!(text.contains("****") && !text.contains("hunter2"), "{text}");
        assert!(!format!("{:?}", c.basic_header()).contains("aHVudGVy"));
    }

    #[test]
    fn reads_auths_in_every_spelling() {
        // "me:pw" and "hub:secret:with:colons"
        let config = DockerConfig::parse(
            br#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldDp3aXRoOmNvbG9ucw=="},
                "https://ghcr.io": {"auth": "bWU6cHc="},
                "quay.io": {"username": "u", "password": "p"},
                "reg.example:5000": {"identitytoken": "tok", "auth": "bWU6cHc="},
                "empty.example": {}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            config.lookup("docker.io").unwrap(),
            basic("hub", "secret:with:colons")
        );
        assert_eq!(config.lookup("ghcr.io").unwrap(), basic("me", "pw"));
        assert_eq!(config.lookup("quay.io").unwrap(), basic("u", "p"));
        assert_eq!(
            config.lookup("reg.example:5000").unwrap(),
            Source::Found(Credentials::IdentityToken(Secret::new("tok")))
        );
        assert_eq!(config.lookup("empty.example").unwrap(), Source::None);
        assert_eq!(config.lookup("other.example").unwrap(), Source::None);
    }

    #[test]
    fn helpers_take_precedence_and_store_is_the_fallback() {
        let config = DockerConfig::parse(
            br#"{"auths": {"ghcr.io": {}, "quay.io": {"auth": "bWU6cHc="}},
                 "credHelpers": {"ghcr.io": "gh", "index.docker.io": "hub"},
                 "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            config.lookup("ghcr.io").unwrap(),
            Source::Helper("gh".into())
        );
        assert_eq!(
            config.lookup("docker.io").unwrap(),
            Source::Helper("hub".into())
        );
        assert_eq!(config.lookup("quay.io").unwrap(), basic("me", "pw"));
        assert_eq!(
            config.lookup("example.com").unwrap(),
            Source::Helper("desktop".into())
        );
    }

    #[test]
    fn bad_auth_is_an_error_without_the_value() {
        let config =
            DockerConfig::parse(br#"{"auths": {"x.io": {"auth": "!!notbase64"}}}"#).unwrap();
        let err = config.lookup("x.io").unwrap_err();
        assert!(!err.contains("notbase64"), "{err}");
    }

    #[test]
    fn helper_answers() {
        let ok = br#"{"ServerURL":"ghcr.io","Username":"me","Secret":"pw"}"#;
        assert_eq!(
            parse_helper_output("h", true, ok, b"").unwrap(),
            Some(Credentials::Basic {
                username: "me".into(),
                password: Secret::new("pw")
            })
        );
        let token = br#"{"Username":"<token>","Secret":"rt"}"#;
        assert_eq!(
            parse_helper_output("h", true, token, b"").unwrap(),
            Some(Credentials::IdentityToken(Secret::new("rt")))
        );
        assert_eq!(
            parse_helper_output(
                "h",
                false,
                b"credentials not found in native keychain\n",
                b""
            )
            .unwrap(),
            None
        );
        assert!(parse_helper_output("h", false, b"", b"boom\nmore")
            .unwrap_err()
            .contains("boom"));
    }

    #[test]
    fn helper_server_names() {
        assert_eq!(helper_server("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(helper_server("ghcr.io"), "ghcr.io");
    }
}
