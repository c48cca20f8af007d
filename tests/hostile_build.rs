//! Where credentials go, through the `slipway` command (issue 10): env
//! credentials with the base on a second registry, a private index behind
//! basic auth (uv and `bundle`), escape sequences in an error body, tokens
//! in git remotes. Scripted servers on loopback addresses (see
//! `common::hostile`) log every request header; `hostile_registry.rs` has
//! the registry client's cases.

mod common;
#[path = "support/inputs.rs"]
mod inputs;

use common::hostile::{
    basic, require_basic, require_bearer, serve_registry, token_handler, Handler, Log,
    MiniRegistry, Reply, Req, Server,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const USER: &str = "ci-bot";
const PASSWORD: &str = "hunter2-registry-password";

fn assert_basic_seen(log: &Log, server: &Server) {
    log.assert_basic_seen(&server.host(), USER, PASSWORD);
}

use inputs::{alpine_layout, run, Work};

const ENV_USER: &str = "SLIPWAY_REGISTRY_USERNAME";
const ENV_PASSWORD: &str = "SLIPWAY_REGISTRY_PASSWORD";

/// An app-only recipe on `base`.
fn app_recipe(work: &Work, base: &str, python: &str) -> PathBuf {
    work.recipe(&format!(
        "base = \"{base}\"\n{python}\n[app]\nsource = \"app\"\n"
    ))
}

// 2. `SLIPWAY_REGISTRY_*` belong to the push registry: a base on a second
// registry (token auth) gets none, nor does its token server. With
// `SLIPWAY_REGISTRY_HOST` naming the base's registry, they go there instead.
#[test]
fn env_credentials_go_to_the_push_registry_only() {
    let log = Log::default();
    let tokens = Server::start("127.0.0.4", None, &log, token_handler("tok-base", "300"));
    let base_reg = MiniRegistry::new(Some(&alpine_layout()));
    let base = Server::start(
        "127.0.0.3",
        None,
        &log,
        require_bearer(
            &format!("{}/token", tokens.url()),
            "tok-base",
            serve_registry(&base_reg),
        ),
    );
    let dest_reg = MiniRegistry::new(None);
    let dest = Server::start(
        "127.0.0.2",
        None,
        &log,
        require_basic(USER, PASSWORD, serve_registry(&dest_reg)),
    );
    let work = Work::new();
    let recipe = app_recipe(
        &work,
        &format!("{}/library/python:3.13-alpine", base.host()),
        "",
    );
    let mut cmd = work.build(&recipe);
    cmd.arg("--push")
        .arg(format!("{}/team/app:v1", dest.host()))
        .env(ENV_USER, USER)
        .env(ENV_PASSWORD, PASSWORD);
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(dest_reg.manifest("v1").is_some(), "the image was pushed");
    assert_basic_seen(&log, &dest);
    for server in [&base, &tokens] {
        // An anonymous token is fine; the credentials are not.
        log.assert_never_sent(&server.host(), PASSWORD);
        log.assert_never_sent(&server.host(), &basic(USER, PASSWORD));
    }
    assert!(log
        .to(&tokens.host())
        .iter()
        .all(|r| r.header("authorization").is_none()));
    assert!(
        !log.to(&tokens.host()).is_empty(),
        "the base was pulled with a token"
    );

    // SLIPWAY_REGISTRY_HOST names the base's registry: its token server gets them.
    let mut cmd = work.build(&recipe);
    cmd.arg("--oci-layout")
        .arg(work.out())
        .env(ENV_USER, USER)
        .env(ENV_PASSWORD, PASSWORD)
        .env("SLIPWAY_REGISTRY_HOST", base.host());
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_basic_seen(&log, &tokens);
    log.assert_never_sent(&base.host(), PASSWORD);
}

// 7. Escape sequences in a registry's error body are printed escaped.
#[test]
fn escape_sequences_in_an_error_body_are_escaped() {
    let log = Log::default();
    let hostile: Handler = Arc::new(|req: &Req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(403).header("Content-Type", "application/json").bytes(
            r#"{"errors":[{"code":"DENIED","message":"\u001b]0;pwned\u0007\u001b[2Jgone\r\nfake: line"}]}"#,
        )
    });
    let registry = Server::start("127.0.0.2", None, &log, hostile);
    let work = Work::new();
    let recipe = app_recipe(
        &work,
        &format!("{}/library/python:3.13-alpine", registry.host()),
        "",
    );
    let mut cmd = work.build(&recipe);
    cmd.arg("--oci-layout").arg(work.out());
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    eprintln!("NOTE escaped_error_body:\n{}", out.stderr);
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2Jgone\r\nfake: line"),
        "{}",
        out.stderr
    );
    assert!(!work.out().exists());
}

const INDEX_USER: &str = "idx-user";
const INDEX_PASSWORD: &str = "idx-pass-secret";
const WHEEL: &str = "idna-3.20-py3-none-any.whl";

/// A PEP 503 index on 127.0.0.5 behind basic auth, serving one wheel.
fn private_index(log: &Log, wheel: &Path) -> Server {
    let bytes = std::fs::read(wheel).unwrap();
    let hex = common::fixtures::sha256_hex(&bytes);
    let page =
        format!("<html><body><a href=\"/files/{WHEEL}#sha256={hex}\">{WHEEL}</a></body></html>");
    let index: Handler = Arc::new(move |req: &Req| match req.path() {
        "/simple/idna/" | "/simple/idna" => Reply::new(200)
            .header("Content-Type", "text/html")
            .bytes(page.clone()),
        path if path == format!("/files/{WHEEL}") => Reply::new(200)
            .header("Content-Type", "application/octet-stream")
            .bytes(bytes.clone()),
        _ => Reply::new(404),
    });
    Server::start(
        "127.0.0.5",
        None,
        log,
        require_basic(INDEX_USER, INDEX_PASSWORD, index),
    )
}

/// A uv that logs its command line and environment to `log`, then runs the real one.
fn uv_wrapper(dir: &Path, log: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v uv"])
        .output()
        .ok()?;
    let real = String::from_utf8_lossy(&found.stdout).trim().to_string();
    if real.is_empty() {
        return None;
    }
    let path = dir.join("uv-wrapper");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{{ printf 'ARGV'; for a in \"$@\"; do printf ' %s' \"$a\"; done; printf '\\n'; env | sed 's/^/ENV /'; }} >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(path)
}

// 6. Index credentials reach uv through its per-index variables, never its
// command line; uv's environment holds no registry secret; `bundle`'s own
// wheel downloads send them to the index (and only there).
#[test]
fn index_credentials_reach_uv_and_bundle_the_documented_way() {
    if common::skip_or_fail("uv") {
        return;
    }
    let Some(wheelhouse) = inputs::wheelhouse() else {
        return;
    };
    let log = Log::default();
    let index = private_index(&log, &wheelhouse.join(WHEEL));
    let work = Work::new();
    let uv_log = work.path().join("uv.log");
    let uv = uv_wrapper(work.path(), &uv_log).expect("uv is on PATH");
    work.write("requirements.txt", "idna==3.20\n");
    let python = format!(
        "[python]\nrequirements = [\"requirements.txt\"]\nindex_url = \"http://{INDEX_USER}:{INDEX_PASSWORD}@{}/simple\"\n",
        index.host()
    );
    let recipe = app_recipe(&work, "python:3.13-alpine", &python);
    let mut build = work.build_to_layout(&recipe);
    build
        .arg("--uv")
        .arg(&uv)
        .env(ENV_USER, USER)
        .env(ENV_PASSWORD, PASSWORD);
    let out = run(&mut build);
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let mut bundle = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
    bundle
        .arg("bundle")
        .arg(&recipe)
        .arg("--base-layout")
        .arg(alpine_layout())
        .arg("--out")
        .arg(work.path().join("bundle"))
        .arg("--uv")
        .arg(&uv);
    inputs::isolate(&mut bundle, work.path());
    bundle.env(ENV_USER, USER).env(ENV_PASSWORD, PASSWORD);
    let bundled = run(&mut bundle);
    assert_eq!(bundled.code, Some(0), "{}", bundled.stderr);
    assert!(work.path().join("bundle/wheels").join(WHEEL).is_file());

    for text in [&out.stdout, &out.stderr, &bundled.stdout, &bundled.stderr] {
        assert!(
            !text.contains(INDEX_PASSWORD) && !text.contains(PASSWORD),
            "{text}"
        );
    }
    // Nor in the image, the bundle or slipway's cache.
    for dir in ["out", "bundle", "cache"] {
        for entry in walkdir::WalkDir::new(work.path().join(dir)) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(INDEX_PASSWORD), "{}", entry.path().display());
            }
        }
    }
    let calls = std::fs::read_to_string(&uv_log).unwrap();
    assert!(
        calls.lines().filter(|l| l.starts_with("ARGV")).count() >= 2,
        "{calls}"
    );
    for line in calls.lines() {
        assert!(
            !line.contains(PASSWORD) && !line.contains("SLIPWAY_REGISTRY_"),
            "{line}"
        );
        if line.contains(INDEX_PASSWORD) {
            assert!(
                line.starts_with("ENV UV_INDEX_") && line.contains("_PASSWORD="),
                "the index password outside uv's per-index variable: {line}"
            );
        }
    }
    assert!(
        calls.contains(&format!("slipway0=http://{}/simple", index.host())),
        "{calls}"
    );
    let wanted = basic(INDEX_USER, INDEX_PASSWORD);
    let fetched_by_slipway = log.to(&index.host()).into_iter().any(|r| {
        r.path() == format!("/files/{WHEEL}")
            && r.header("authorization") == Some(wanted.as_str())
            && r.header("user-agent")
                .is_none_or(|ua| !ua.starts_with("uv/"))
    });
    assert!(
        fetched_by_slipway,
        "bundle fetched the wheel with the credentials"
    );
}

/// The manifest annotations of the one image in the OCI layout at `dir`.
fn layout_annotations(dir: &Path) -> serde_json::Value {
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut doc = read(index["manifests"][0]["digest"].as_str().unwrap());
    while doc.get("manifests").is_some() {
        doc = read(doc["manifests"][0]["digest"].as_str().unwrap());
    }
    doc["annotations"].clone()
}

// 8. Tokens in git remotes never reach `org.opencontainers.image.source`.
#[test]
fn git_remote_tokens_stay_out_of_the_source_annotation() {
    if common::skip_or_fail("git") {
        return;
    }
    let cases = [
        (
            "https://x-access-token:ghp_remoteSecret1@git.example/team/app.git?access_token=remoteSecret2#frag",
            Some("https://git.example/team/app.git"),
        ),
        ("deploy:remoteSecret3@git.example:team/app.git", Some("git.example:team/app.git")),
        ("https://[remoteSecret4", None),
    ];
    for (remote, want) in cases {
        let work = Work::new();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(work.path())
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        git(&["init", "-q"]);
        git(&["remote", "add", "origin", remote]);
        git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        let recipe = app_recipe(&work, "python:3.13-alpine", "");
        let out = run(&mut work.build_to_layout(&recipe));
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let annotations = layout_annotations(&work.out());
        let source = annotations["org.opencontainers.image.source"].as_str();
        assert_eq!(source, want, "{remote}: {annotations}");
        assert!(
            !annotations.to_string().contains("remoteSecret"),
            "{annotations}"
        );
        assert!(annotations
            .get("org.opencontainers.image.revision")
            .is_some());
    }
}

// 5. A base registry dripping its layers: `--min-rate` (and its
// `SLIPWAY_MIN_RATE_SECONDS` window) end the build in bounded time, with
// nothing written and the cache whole.
#[test]
fn dripping_base_registry_fails_the_build_in_bounded_time() {
    let log = Log::default();
    let base_reg = MiniRegistry::new(Some(&alpine_layout()));
    let inner = serve_registry(&base_reg);
    let dripping: Handler = Arc::new(move |req: &Req| {
        if req.method == "GET" && req.path().contains("/blobs/") {
            let reply = inner(req);
            if reply.status == 200 {
                return Reply::new(200).body(common::hostile::Body::Drip(
                    std::time::Duration::from_millis(100),
                ));
            }
            return reply;
        }
        inner(req)
    });
    let base = Server::start("127.0.0.3", None, &log, dripping);
    let work = Work::new();
    let recipe = app_recipe(
        &work,
        &format!("{}/library/python:3.13-alpine", base.host()),
        "",
    );
    let mut cmd = work.build(&recipe);
    cmd.arg("--oci-layout")
        .arg(work.out())
        .args(["--min-rate", "1", "--retries", "1"])
        .env("SLIPWAY_MIN_RATE_SECONDS", "2");
    let started = std::time::Instant::now();
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    eprintln!("NOTE dripping_base_registry:\n{}", out.stderr);
    assert!(
        out.stderr.contains("under the minimum rate"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!work.out().exists());
    inputs::assert_cache_whole(&work.cache());
}
