//! The registry client against a real Distribution registry, in its three
//! auth modes (none, htpasswd, token), plus the failures users meet.

mod common;

use common::fake_server::{Answer, FakeServer};
use common::image::{push_image, push_test_image, TestImage, OCI_MANIFEST};
use common::registry::{free_port, Registry, REGISTRY_TOOL};
use common::skip_or_fail;
use slipway::error::Hint;
use slipway::registry::{RegistryClient, RegistryError, RegistryOptions, TransportKind};

/// The value, or a panic showing the error and its hint.
fn ok<T>(result: Result<T, RegistryError>) -> T {
    result.unwrap_or_else(|e| panic!("{e} (hint: {:?})", e.hint()))
}

/// Push, HEAD, mount, pull and manifests by tag and by digest.
async fn round_trip(registry: &Registry, client: &RegistryClient) {
    let reg = registry.addr();
    let image = TestImage::new(&format!("round trip on {reg}"));

    // Blobs: absent, pushed, present with their size.
    assert_eq!(
        ok(client
            .blob_exists(reg, "src/app", &image.layer_digest)
            .await),
        None
    );
    let sent = ok(client
        .push_blob(reg, "src/app", &image.layer_digest, &image.layer_path())
        .await);
    assert_eq!(sent, image.layer.len() as u64);
    ok(client
        .push_blob(reg, "src/app", &image.config_digest, &image.config_path())
        .await);
    assert_eq!(
        ok(client
            .blob_exists(reg, "src/app", &image.layer_digest)
            .await),
        Some(image.layer.len() as u64)
    );

    // Manifests by tag and by digest.
    let digest = ok(client
        .put_manifest(reg, "src/app", "v1", OCI_MANIFEST, &image.manifest)
        .await);
    assert_eq!(digest, image.manifest_digest);
    let by_tag = ok(client.get_manifest(reg, "src/app", "v1").await);
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(by_tag.digest, image.manifest_digest);
    let by_digest = ok(client
        .get_manifest(reg, "src/app", image.manifest_digest.as_str())
        .await);
    assert_eq!(by_digest.bytes, image.manifest);
    assert_eq!(
        ok(client.manifest_digest(reg, "src/app", "v1").await),
        Some(image.manifest_digest.clone())
    );
    assert_eq!(
        ok(client.manifest_digest(reg, "src/app", "nope").await),
        None
    );

    // Mount into another repository; a blob the source lacks is declined.
    assert!(ok(client
        .mount_blob(reg, "dst/app", &image.layer_digest, "src/app")
        .await));
    assert!(ok(client
        .mount_blob(reg, "dst/app", &image.config_digest, "src/app")
        .await));
    assert_eq!(
        ok(client
            .blob_exists(reg, "dst/app", &image.layer_digest)
            .await),
        Some(image.layer.len() as u64)
    );
    let other = TestImage::new("never pushed");
    assert!(!ok(client
        .mount_blob(reg, "dst/app", &other.layer_digest, "src/app")
        .await));

    // A manifest pushed by digest.
    let digest = ok(client
        .put_manifest(
            reg,
            "dst/app",
            image.manifest_digest.as_str(),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await);
    assert_eq!(digest, image.manifest_digest);

    // Pulls, digest checked.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("layer.tar.gz");
    let size = ok(client
        .pull_blob(reg, "dst/app", &image.layer_digest, &dest)
        .await);
    assert_eq!(size, image.layer.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), image.layer);
    assert_eq!(
        ok(client
            .get_blob_bytes(reg, "dst/app", &image.config_digest)
            .await),
        image.config
    );
}

#[tokio::test]
async fn plain_registry_round_trip() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start();
    round_trip(&registry, &registry.client()).await;
}

#[tokio::test]
async fn htpasswd_registry_round_trip() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_htpasswd("alice", "s3cret-pw");
    round_trip(&registry, &registry.authenticated_client()).await;
}

#[tokio::test]
async fn token_registry_round_trip() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_token_auth();
    round_trip(&registry, &registry.client()).await;
    // The mount asked for push on the target and pull on the source at once.
    let requests = registry.token_server().unwrap().requests();
    assert!(
        requests
            .iter()
            .any(|r| r.scopes == ["repository:dst/app:pull,push", "repository:src/app:pull"]),
        "{requests:?}"
    );
}

#[tokio::test]
async fn token_registry_with_credentials_round_trip() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_token_auth_with_credentials("bob", "t0ken-pw");
    round_trip(&registry, &registry.authenticated_client()).await;
    let requests = registry.token_server().unwrap().requests();
    assert!(requests.iter().all(|r| r.authenticated), "{requests:?}");
}

/// The error is a 401 with a login hint, and the password is nowhere in it.
fn assert_unauthorized_without_secret(error: &RegistryError, registry: &str, password: &str) {
    assert_eq!(error.status(), Some(401), "{error}");
    let hint = error.hint().expect("a hint");
    assert!(hint.contains(&format!("docker login {registry}")), "{hint}");
    let mut text = format!("{error}\n{error:?}\n{hint}");
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&format!("\n{e}"));
        source = e.source();
    }
    assert!(!text.contains(password), "{text}");
}

#[tokio::test]
async fn wrong_password_htpasswd() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_htpasswd("alice", "right-pw");
    let client = registry.client_with_credentials("alice", "wrong-pw-xyzzy");
    let image = TestImage::new("wrong password");
    let error = client
        .push_blob(
            registry.addr(),
            "app",
            &image.layer_digest,
            &image.layer_path(),
        )
        .await
        .unwrap_err();
    assert_unauthorized_without_secret(&error, registry.addr(), "wrong-pw-xyzzy");
    assert!(error.to_string().contains("push blob"), "{error}");

    // Anonymous gets the same answer.
    let error = registry
        .client()
        .get_manifest(registry.addr(), "app", "latest")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
}

#[tokio::test]
async fn wrong_password_token_server() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_token_auth_with_credentials("bob", "right-pw");
    let client = registry.client_with_credentials("bob", "wrong-pw-plugh");
    let error = client
        .get_manifest(registry.addr(), "app", "latest")
        .await
        .unwrap_err();
    assert_unauthorized_without_secret(&error, registry.addr(), "wrong-pw-plugh");
}

#[tokio::test]
async fn corrupt_manifest_is_refused() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start();
    let client = registry.client();
    let reg = registry.addr();
    let image = push_test_image(&client, reg, "app", "v1").await;
    // Same length, one byte changed inside the seed annotation.
    let path = registry.blob_data_path(image.manifest_digest.as_str());
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(stored, image.manifest);
    let tampered = String::from_utf8(stored).unwrap().replace("v1\"}", "v2\"}");
    assert_ne!(tampered.as_bytes(), image.manifest.as_slice());
    std::fs::write(&path, &tampered).unwrap();

    for reference in [image.manifest_digest.as_str(), "v1"] {
        let error = client
            .get_manifest(reg, "app", reference)
            .await
            .unwrap_err();
        let RegistryError::DigestMismatch {
            expected, actual, ..
        } = &error
        else {
            panic!("expected a digest mismatch, got {error}");
        };
        assert_eq!(expected, &image.manifest_digest);
        assert_ne!(actual, expected);
        let text = error.to_string();
        assert!(text.contains(reg) && text.contains("app"), "{text}");
        assert!(
            text.contains(expected.as_str()) && text.contains(actual.as_str()),
            "{text}"
        );
        assert!(error.hint().is_some());
    }
}

#[tokio::test]
async fn corrupt_blob_is_refused_and_leaves_nothing() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start();
    let client = registry.client();
    let reg = registry.addr();
    let image = push_test_image(&client, reg, "app", "v1").await;
    for digest in [&image.layer_digest, &image.config_digest] {
        let path = registry.blob_data_path(digest.as_str());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
    }

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("layer");
    let error = client
        .pull_blob(reg, "app", &image.layer_digest, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing left behind"
    );

    let error = client
        .get_blob_bytes(reg, "app", &image.config_digest)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn missing_things_are_404_with_a_hint() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start();
    let client = registry.client();
    let reg = registry.addr();
    let error = client
        .get_manifest(reg, "nothing", "latest")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(
        error.to_string().contains("MANIFEST_UNKNOWN")
            || error.to_string().contains("NAME_UNKNOWN"),
        "{error}"
    );
    assert!(error.hint().unwrap().contains("not found"));
    assert!(!error.is_temporary());

    let image = TestImage::new("missing");
    let out = tempfile::tempdir().unwrap();
    let error = client
        .pull_blob(reg, "nothing", &image.layer_digest, &out.path().join("x"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn push_image_helper_and_tags_move() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_token_auth();
    let client = registry.client();
    let reg = registry.addr();
    let first = push_test_image(&client, reg, "app", "latest").await;
    let second = TestImage::new("second");
    let digest = push_image(&client, reg, "app", "latest", &second).await;
    assert_eq!(digest, second.manifest_digest);
    assert_eq!(
        client.manifest_digest(reg, "app", "latest").await.unwrap(),
        Some(second.manifest_digest.clone())
    );
    // The first manifest is still there by digest.
    let old = client
        .get_manifest(reg, "app", first.manifest_digest.as_str())
        .await
        .unwrap();
    assert_eq!(old.bytes, first.manifest);
}

#[tokio::test]
async fn connection_refused_has_a_hint() {
    let addr = format!("127.0.0.1:{}", free_port());
    let client = RegistryClient::new(RegistryOptions {
        retries: 2,
        docker_config: Some("/nonexistent/config.json".into()),
        ..RegistryOptions::default()
    })
    .unwrap();
    let error = client
        .get_manifest(&addr, "app", "latest")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::Transport {
                kind: TransportKind::Refused,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_temporary());
    let hint = error.hint().unwrap();
    assert!(
        // Already plain HTTP (loopback): --insecure-registry would not help.
        hint.contains(&format!("http://{addr}")) && !hint.contains("--insecure-registry"),
        "{hint}"
    );
}

#[tokio::test]
async fn verbose_logging_does_not_break_requests() {
    if skip_or_fail(REGISTRY_TOOL) {
        return;
    }
    let registry = Registry::start_htpasswd("carol", "pw-verbose");
    let client = RegistryClient::new(RegistryOptions {
        verbose: true,
        docker_config: Some(registry.docker_config("carol", "pw-verbose")),
        ..registry.options()
    })
    .unwrap();
    push_test_image(&client, registry.addr(), "app", "v1").await;
}

fn fake_client(retries: u32) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        retries,
        docker_config: Some("/nonexistent/config.json".into()),
        ..RegistryOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn temporary_statuses_are_retried_honouring_retry_after() {
    let image = TestImage::new("retried");
    let server = FakeServer::start(vec![
        Answer::new("503 Service Unavailable"),
        Answer::new("429 Too Many Requests").header("Retry-After", "1"),
        Answer::new("200 OK").header("Content-Length", "5"),
    ]);
    let start = std::time::Instant::now();
    let size = fake_client(3)
        .blob_exists(&server.addr, "app", &image.layer_digest)
        .await
        .unwrap();
    assert_eq!(size, Some(5));
    assert!(start.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn exhausted_retries_give_a_temporary_error() {
    let image = TestImage::new("exhausted");
    let server = FakeServer::start(vec![
        Answer::new("503 Service Unavailable"),
        Answer::new("503 Service Unavailable"),
    ]);
    let error = fake_client(2)
        .get_blob_bytes(&server.addr, "app", &image.config_digest)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503), "{error}");
    assert!(error.is_temporary());
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_failed_upload_restarts_the_session_and_resends_the_file() {
    let image = TestImage::new("restart");
    let server = FakeServer::start(vec![
        Answer::new("202 Accepted").header("Location", "/v2/app/blobs/uploads/one?_state=a"),
        Answer::new("500 Internal Server Error"),
        Answer::new("202 Accepted").header("Location", "/v2/app/blobs/uploads/two"),
        Answer::new("201 Created"),
    ]);
    let sent = fake_client(3)
        .push_blob(
            &server.addr,
            "app",
            &image.layer_digest,
            &image.layer_path(),
        )
        .await
        .unwrap();
    assert_eq!(sent, image.layer.len() as u64);
    let digest = image.layer_digest.as_str().replace(':', "%3A");
    let seen: Vec<(String, String, usize)> = server
        .seen()
        .into_iter()
        .map(|s| (s.method, s.target, s.body_len))
        .collect();
    let len = image.layer.len();
    assert_eq!(
        seen,
        [
            ("POST".into(), "/v2/app/blobs/uploads/".into(), 0),
            (
                "PUT".into(),
                format!("/v2/app/blobs/uploads/one?_state=a&digest={digest}"),
                len
            ),
            ("POST".into(), "/v2/app/blobs/uploads/".into(), 0),
            (
                "PUT".into(),
                format!("/v2/app/blobs/uploads/two?digest={digest}"),
                len
            ),
        ]
    );
}
