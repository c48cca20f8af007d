//! Where credentials go, against hostile registries, token servers and
//! indexes (issue 10): scripted servers on several loopback addresses
//! (127.0.0.2, 127.0.0.3, ...), plain or TLS with a CA made here, log every
//! request header; each test asserts that no secret reached a host it must
//! not, and that the operation failed or succeeded as the rules say.
//! Everything is loopback and bounded in time. The same rules through the
//! `slipway` command are in `hostile_build.rs`.

mod common;

use common::hostile::{
    basic, require_basic, require_bearer, serve_registry, token_handler, Body, Handler, Log,
    MiniRegistry, Reply, Req, Server, TestCa,
};
use slipway::digest::Digest;
use slipway::error::Hint;
use slipway::registry::{RegistryClient, RegistryError, RegistryOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const USER: &str = "ci-bot";
const PASSWORD: &str = "hunter2-registry-password";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One CA for the whole test binary: the client reads `SSL_CERT_FILE` when
/// it is made, so it is set before any client exists.
fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        std::env::set_var("SSL_CERT_FILE", &ca.pem_path);
        ca
    })
}

/// A docker config.json in `dir` holding USER:PASSWORD for `host` only.
fn docker_config(dir: &Path, host: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

/// A client logged in to `host` (config.json), speaking HTTPS to `tls`.
fn client(
    dir: &Path,
    host: &str,
    tls: &[&Server],
    tweak: impl FnOnce(&mut RegistryOptions),
) -> RegistryClient {
    ca();
    let mut options = RegistryOptions {
        docker_config: Some(docker_config(dir, host)),
        https: tls.iter().map(|s| s.host()).collect(),
        timeout: Duration::from_secs(10),
        retries: 1,
        ..RegistryOptions::default()
    };
    tweak(&mut options);
    RegistryClient::new(options).unwrap()
}

fn tls(server_tls: bool) -> Option<&'static TestCa> {
    server_tls.then(ca)
}

/// A blob file and its digest.
fn blob(dir: &Path, text: &str) -> (PathBuf, Digest) {
    let path = dir.join(format!("blob-{}", Digest::of(text.as_bytes()).hex()));
    std::fs::write(&path, text).unwrap();
    (path, Digest::of(text.as_bytes()))
}

/// Prints an error as the bad-input list shows it (`--nocapture`).
fn note(case: &str, error: &RegistryError) {
    let source = std::error::Error::source(error)
        .map(|s| format!("\n  Caused by: {s}"))
        .unwrap_or_default();
    let hint = error
        .hint()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default();
    eprintln!("NOTE {case}: error: {error}{source}{hint}");
}

fn assert_no_authorization(log: &Log, server: &Server) {
    log.assert_no_authorization(&server.host(), PASSWORD);
}

fn assert_basic_seen(log: &Log, server: &Server) {
    log.assert_basic_seen(&server.host(), USER, PASSWORD);
}

/// A one-layer manifest for `layer` declared as `declared` bytes.
fn manifest_for(registry: &MiniRegistry, layer: &[u8], declared: usize) -> Digest {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{declared}}}]}}"#,
        Digest::of(config),
        config.len(),
        Digest::of(layer),
    );
    registry.put("v1", MANIFEST_TYPE, manifest.as_bytes(), &[config, layer]);
    Digest::of(layer)
}

// 1. An upload `Location` on another host (absolute or `//host`) gets no
// credentials; the upload itself goes there and succeeds.
#[tokio::test]
async fn upload_location_on_another_host_gets_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let reg = MiniRegistry::new(None);
    let storage = Server::start("127.0.0.3", None, &log, serve_registry(&reg));
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        require_basic(USER, PASSWORD, serve_registry(&reg)),
    );
    let client = client(dir.path(), &registry.host(), &[], |_| {});
    for base in [
        format!("http://{}", storage.host()),
        format!("//{}", storage.host()),
    ] {
        *reg.upload_base.lock().unwrap() = base.clone();
        let (path, digest) = blob(dir.path(), &format!("a layer uploaded via {base}"));
        client
            .push_blob(&registry.host(), "app", &digest, &path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(reg.has_blob(digest.as_str()), "the PUT went to {base}");
    }
    assert_eq!(
        log.to(&storage.host()).len(),
        2,
        "both PUTs went to the other host"
    );
    assert_no_authorization(&log, &storage);
    assert_basic_seen(&log, &registry);
}

// 1b. From an HTTPS registry to an `http://` upload Location: refused, with
// both URLs and the flag; with the flag, the upload goes, without credentials.
#[tokio::test]
async fn https_to_http_upload_location_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let reg = MiniRegistry::new(None);
    let storage = Server::start("127.0.0.3", None, &log, serve_registry(&reg));
    let registry = Server::start(
        "127.0.0.2",
        tls(true),
        &log,
        require_basic(USER, PASSWORD, serve_registry(&reg)),
    );
    *reg.upload_base.lock().unwrap() = format!("http://{}", storage.host());
    let (path, digest) = blob(dir.path(), "a layer not to be sent in the clear");
    let error = client(dir.path(), &registry.host(), &[&registry], |_| {})
        .push_blob(&registry.host(), "app", &digest, &path)
        .await
        .unwrap_err();
    note("https_to_http_upload_location", &error);
    let message = error.to_string();
    for part in [
        format!("`https://{}/v2/`", registry.host()),
        format!(
            "`http://{}/v2/app/blobs/uploads/u0?<redacted>`",
            storage.host()
        ),
        format!("--insecure-registry {}", storage.host()),
    ] {
        assert!(message.contains(&part), "{part} not in: {message}");
    }
    assert!(
        log.to(&storage.host()).is_empty(),
        "nothing went to the http host"
    );
    assert_basic_seen(&log, &registry);

    let allowed = client(dir.path(), &registry.host(), &[&registry], |o| {
        o.insecure = vec![storage.host()]
    });
    allowed
        .push_blob(&registry.host(), "app", &digest, &path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(reg.has_blob(digest.as_str()));
    assert_no_authorization(&log, &storage);
}

// 3. An HTTPS registry whose challenge names an `http://` realm: no token
// request at all, and an error naming both URLs and the flag.
#[tokio::test]
async fn realm_downgrade_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let tokens = Server::start("127.0.0.3", None, &log, token_handler("tok-1", "300"));
    let realm = format!("http://{}/token", tokens.host());
    let reg = MiniRegistry::new(None);
    manifest_for(&reg, b"layer", 5);
    let registry = Server::start(
        "127.0.0.2",
        tls(true),
        &log,
        require_bearer(&realm, "tok-1", serve_registry(&reg)),
    );
    let error = client(dir.path(), &registry.host(), &[&registry], |_| {})
        .get_manifest(&registry.host(), "app", "v1")
        .await
        .unwrap_err();
    note("realm_downgrade", &error);
    let message = error.to_string();
    for part in [
        format!("`https://{}/v2/`", registry.host()),
        format!("`{realm}`"),
        format!("--insecure-registry {}", tokens.host()),
    ] {
        assert!(message.contains(&part), "{part} not in: {message}");
    }
    assert!(
        log.to(&tokens.host()).is_empty(),
        "the token server was asked"
    );
}

// A realm on another host over HTTPS: the token request goes there with the
// credentials; the registry gets only the token.
#[tokio::test]
async fn realm_on_another_host_over_https_gets_the_credentials_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let tokens = Server::start("127.0.0.3", tls(true), &log, token_handler("tok-2", "300"));
    let reg = MiniRegistry::new(None);
    manifest_for(&reg, b"layer", 5);
    let registry = Server::start(
        "127.0.0.2",
        tls(true),
        &log,
        require_bearer(
            &format!("{}/token", tokens.url()),
            "tok-2",
            serve_registry(&reg),
        ),
    );
    client(dir.path(), &registry.host(), &[&registry], |_| {})
        .get_manifest(&registry.host(), "app", "v1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_basic_seen(&log, &tokens);
    log.assert_never_sent(&registry.host(), PASSWORD);
    log.assert_never_sent(&registry.host(), &basic(USER, PASSWORD));
    assert!(log
        .to(&registry.host())
        .iter()
        .any(|r| r.header("authorization") == Some("Bearer tok-2")));
}

// 4. `expires_in: u64::MAX` is clamped: no overflow panic.
#[tokio::test]
async fn endless_token_lifetime_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let tokens = Server::start(
        "127.0.0.3",
        None,
        &log,
        token_handler("tok-3", "18446744073709551615"),
    );
    let reg = MiniRegistry::new(None);
    manifest_for(&reg, b"layer", 5);
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        require_bearer(
            &format!("{}/token", tokens.url()),
            "tok-3",
            serve_registry(&reg),
        ),
    );
    let client = client(dir.path(), &registry.host(), &[], |_| {});
    for _ in 0..2 {
        client
            .get_manifest(&registry.host(), "app", "v1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(log.to(&tokens.host()).len(), 1, "the token was cached");
}

/// A registry (basic auth) whose blob requests `hook` may answer instead.
fn hooked(
    reg: &Arc<MiniRegistry>,
    hook: impl Fn(&Req) -> Option<Reply> + Send + Sync + 'static,
) -> Handler {
    let inner = serve_registry(reg);
    require_basic(
        USER,
        PASSWORD,
        Arc::new(move |req: &Req| hook(req).unwrap_or_else(|| inner(req))),
    )
}

fn redirect_to(server: &str, req: &Req) -> Reply {
    Reply::new(307).header("Location", &format!("http://{server}{}", req.target))
}

// A 307 on blob GET and HEAD to another origin (S3-style storage) is
// followed without credentials.
#[tokio::test]
async fn blob_get_and_head_redirects_drop_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let reg = MiniRegistry::new(None);
    let layer = b"a layer kept in blob storage".to_vec();
    let digest = manifest_for(&reg, &layer, layer.len());
    let storage = Server::start("127.0.0.3", None, &log, serve_registry(&reg));
    let to = storage.host();
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        hooked(&reg, move |req| {
            (req.path().contains("/blobs/sha256:")).then(|| redirect_to(&to, req))
        }),
    );
    let client = client(dir.path(), &registry.host(), &[], |_| {});
    let dest = dir.path().join("pulled");
    let size = client
        .pull_blob(&registry.host(), "app", &digest, &dest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (size, std::fs::read(&dest).unwrap()),
        (layer.len() as u64, layer.clone())
    );
    let exists = client
        .blob_exists(&registry.host(), "app", &digest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exists, Some(layer.len() as u64));
    let methods: Vec<String> = log
        .to(&storage.host())
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["GET", "HEAD"]);
    assert_no_authorization(&log, &storage);
    assert_basic_seen(&log, &registry);
}

// A 401 from where a redirect led is not the registry's challenge: its
// realm gets nothing.
#[tokio::test]
async fn a_challenge_from_redirected_storage_is_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let evil_tokens = Server::start("127.0.0.4", None, &log, token_handler("stolen", "300"));
    let realm = format!("{}/token", evil_tokens.url());
    let evil: Handler = Arc::new(move |_req: &Req| {
        Reply::new(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    let storage = Server::start("127.0.0.3", None, &log, evil);
    let reg = MiniRegistry::new(None);
    let digest = manifest_for(&reg, b"layer", 5);
    let to = storage.host();
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        hooked(&reg, move |req| {
            (req.path().contains("/blobs/sha256:")).then(|| redirect_to(&to, req))
        }),
    );
    let error = client(dir.path(), &registry.host(), &[], |_| {})
        .pull_blob(&registry.host(), "app", &digest, &dir.path().join("pulled"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    assert!(
        log.to(&evil_tokens.host()).is_empty(),
        "the storage's realm was asked"
    );
    assert_no_authorization(&log, &storage);
}

// A 307 on the upload PUT: refused (the body is not sent twice), nothing
// reaches the other host.
#[tokio::test]
async fn upload_put_redirect_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let reg = MiniRegistry::new(None);
    let storage = Server::start("127.0.0.3", None, &log, serve_registry(&reg));
    let to = storage.host();
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        hooked(&reg, move |req| {
            (req.method == "PUT").then(|| redirect_to(&to, req))
        }),
    );
    let (path, digest) = blob(dir.path(), "a layer whose PUT is redirected");
    let error = client(dir.path(), &registry.host(), &[], |_| {})
        .push_blob(&registry.host(), "app", &digest, &path)
        .await
        .unwrap_err();
    note("upload_put_redirect", &error);
    assert_eq!(error.status(), Some(307), "{error}");
    assert!(log.to(&storage.host()).is_empty());
    assert!(!reg.has_blob(digest.as_str()));
}

/// A registry whose layer blob answers with `body` (its manifest declares 1000 bytes).
fn bad_blob_registry(
    log: &Log,
    body: impl Fn() -> Body + Send + Sync + 'static,
) -> (Server, Digest) {
    let reg = MiniRegistry::new(None);
    let digest = manifest_for(&reg, &[b'x'; 1000], 1000);
    let wanted = digest.to_string();
    let registry = Server::start(
        "127.0.0.2",
        None,
        log,
        hooked(&reg, move |req| {
            (req.method == "GET" && req.path().ends_with(&wanted))
                .then(|| Reply::new(200).body(body()))
        }),
    );
    (registry, digest)
}

/// Pulls the manifest, then the layer into `dir`: the error, how long it took.
async fn pull_bad_blob(
    dir: &Path,
    registry: &Server,
    digest: &Digest,
    tweak: impl FnOnce(&mut RegistryOptions),
) -> (RegistryError, Duration) {
    let client = client(dir, &registry.host(), &[], tweak);
    client
        .get_manifest(&registry.host(), "app", "v1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pulls = dir.join("pulls");
    std::fs::create_dir_all(&pulls).unwrap();
    let start = Instant::now();
    let error = client
        .pull_blob(&registry.host(), "app", digest, &pulls.join("layer"))
        .await
        .unwrap_err();
    let left: Vec<_> = std::fs::read_dir(&pulls).unwrap().collect();
    assert!(left.is_empty(), "a partial blob was left: {left:?}");
    (error, start.elapsed())
}

// 5. A body that never ends stops as soon as it passes the declared size.
#[tokio::test]
async fn endless_blob_stops_at_its_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (registry, digest) = bad_blob_registry(&log, || Body::Endless);
    let (error, took) = pull_bad_blob(dir.path(), &registry, &digest, |_| {}).await;
    note("endless_blob", &error);
    assert!(
        error
            .to_string()
            .contains("sent more than the blob's declared 1000 bytes"),
        "{error}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

// A body shorter than declared fails (and is not kept).
#[tokio::test]
async fn short_blob_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (registry, digest) = bad_blob_registry(&log, || Body::Bytes(vec![b'x'; 10]));
    let (error, _) = pull_bad_blob(dir.path(), &registry, &digest, |_| {}).await;
    note("short_blob", &error);
    let text = format!(
        "{error}: {:?}",
        std::error::Error::source(&error).map(|s| s.to_string())
    );
    assert!(
        text.contains("ended after 10 of its declared 1000 bytes"),
        "{text}"
    );
}

// A server dripping a byte at a time fails the minimum-rate watchdog.
#[tokio::test]
async fn dripping_blob_fails_the_minimum_rate() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (registry, digest) = bad_blob_registry(&log, || Body::Drip(Duration::from_millis(100)));
    let (error, took) = pull_bad_blob(dir.path(), &registry, &digest, |o| {
        o.min_rate = 1024;
        o.min_rate_window = Duration::from_secs(2);
    })
    .await;
    note("dripping_blob", &error);
    let source = std::error::Error::source(&error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(
        source.contains("under the minimum rate"),
        "{error}: {source}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

// A drip fast enough for the rate still ends at the blob deadline.
#[tokio::test]
async fn blob_deadline_bounds_a_slow_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (registry, digest) = bad_blob_registry(&log, || Body::Drip(Duration::from_millis(50)));
    let (error, took) = pull_bad_blob(dir.path(), &registry, &digest, |o| {
        o.min_rate = 1;
        o.blob_deadline = Duration::from_secs(2);
    })
    .await;
    note("blob_deadline", &error);
    let source = std::error::Error::source(&error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(source.contains("--blob-deadline"), "{error}: {source}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

// Endless manifests and token answers hit their caps.
#[tokio::test]
async fn endless_manifest_and_token_answers_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let endless: Handler = Arc::new(|_req: &Req| Reply::new(200).body(Body::Endless));
    let registry = Server::start("127.0.0.2", None, &log, endless.clone());
    let error = client(dir.path(), &registry.host(), &[], |_| {})
        .get_manifest(&registry.host(), "app", "v1")
        .await
        .unwrap_err();
    note("endless_manifest", &error);
    assert!(
        error.to_string().contains("is larger than 4194304 bytes"),
        "{error}"
    );

    let tokens = Server::start("127.0.0.3", None, &log, endless);
    let reg = MiniRegistry::new(None);
    let registry = Server::start(
        "127.0.0.2",
        None,
        &log,
        require_bearer(
            &format!("{}/token", tokens.url()),
            "t",
            serve_registry(&reg),
        ),
    );
    let error = client(dir.path(), &registry.host(), &[], |_| {})
        .get_manifest(&registry.host(), "app", "v1")
        .await
        .unwrap_err();
    note("endless_token_answer", &error);
    assert!(
        error.to_string().contains("is larger than 1048576 bytes"),
        "{error}"
    );
}
