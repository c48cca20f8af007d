//! `--cache-repo`: a layer cache kept in a registry and shared by CI
//! runners. Each "runner" has its own HOME, slipway cache and uv cache, and
//! runs uv through a wrapper that logs every call; all share one real
//! Distribution registry on 127.0.0.1 (plain, token auth with a pull-only
//! user, or behind the fault proxy).

#[path = "support/builds.rs"]
mod builds;
mod common;

use builds::{http, make_recipe, report, run_bounded, text, wheelhouse};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::fixtures::alpine_layout;
use common::registry::{free_port, Registry};
use common::skip_or_fail;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);
const CACHE_REPO: &str = "ci/slipway-cache";

fn missing_prerequisites() -> bool {
    ["docker-registry", "uv"].iter().any(|t| skip_or_fail(t)) || wheelhouse().is_none()
}

/// A work dir with the app and recipe (`variant`) in `src`, and a runner A.
fn work_with_runner(variant: &str) -> (tempfile::TempDir, PathBuf, Runner) {
    let work = tempfile::tempdir().unwrap();
    let recipe = make_recipe(&work.path().join("src"), variant);
    let a = Runner::new(work.path(), "a");
    (work, recipe, a)
}

/// `work_with_runner` and a plain registry with its cache repo's name.
fn work_with_registry(variant: &str) -> (tempfile::TempDir, PathBuf, Runner, Registry, String) {
    let (work, recipe, a) = work_with_runner(variant);
    let registry = Registry::start();
    let repo = format!("{}/{CACHE_REPO}", registry.addr());
    (work, recipe, a, registry, repo)
}

/// One CI runner: fresh HOME, slipway cache and uv cache; uv behind a
/// wrapper that appends each call's arguments to `uv.log`.
struct Runner {
    root: PathBuf,
}

impl Runner {
    fn new(work: &Path, name: &str) -> Runner {
        let root = work.join(name);
        for dir in ["home", "cache", "uv-cache"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let uv = common::tools::find_uv().expect("uv");
        let wrapper = root.join("uv");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                root.join("uv.log").display(),
                uv.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Runner { root }
    }

    /// `slipway build RECIPE --json` offline from the wheelhouse, the base
    /// from the committed layout, with `--cache-repo REPO` and `extra`.
    fn build(&self, recipe: &Path, repo: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build").arg(recipe).arg("--json");
        cmd.arg("--base-layout").arg(alpine_layout());
        cmd.arg("--offline")
            .arg("--find-links")
            .arg(wheelhouse().unwrap());
        cmd.arg("--cache-repo").arg(repo);
        cmd.args(extra);
        cmd.env("HOME", self.root.join("home"));
        cmd.env_remove("XDG_CACHE_HOME");
        cmd.env_remove("SLIPWAY_CACHE_REPO");
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd.env("SLIPWAY_CACHE_DIR", self.root.join("cache"));
        cmd.env("UV_CACHE_DIR", self.root.join("uv-cache"));
        cmd.env("SLIPWAY_UV", self.root.join("uv"));
        cmd.env("DOCKER_CONFIG", self.root.join("home/.docker"));
        cmd.env("SLIPWAY_CONFIG", self.root.join("home/no-config.toml"));
        for var in [
            "SLIPWAY_REGISTRY_USERNAME",
            "SLIPWAY_REGISTRY_PASSWORD",
            "SLIPWAY_REGISTRY_HOST",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn build_layout(&self, recipe: &Path, repo: &str, out: &str) -> Output {
        let layout = self.root.join(out);
        run_bounded(
            &mut self.build(recipe, repo, &["--oci-layout", layout.to_str().unwrap()]),
            LIMIT,
        )
    }

    /// Every uv call so far; `--version` excepted, these are the calls that
    /// install or resolve.
    fn uv_work(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("uv.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.trim() != "--version")
            .map(str::to_string)
            .collect()
    }

    fn login(&self, registry: &str, user: &str, pass: &str) {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let dir = self.root.join("home/.docker");
        std::fs::create_dir_all(&dir).unwrap();
        let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    }
}

/// (kind, source) of every layer slipway added.
fn new_layers(report: &Value) -> Vec<(String, String)> {
    new_layer_field(report, "source")
}

/// (kind, `field`) of every layer slipway added.
fn new_layer_field(report: &Value, field: &str) -> Vec<(String, String)> {
    report["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "base")
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l[field].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sources(report: &Value) -> Vec<String> {
    new_layers(report).into_iter().map(|(_, s)| s).collect()
}

fn layer_digest(report: &Value, kind: &str) -> String {
    report["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} layer"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The cache repo's layer entries' tags, asked of the registry directly.
fn entry_tags(addr: &str) -> Vec<String> {
    tags_with_prefix(addr, "slipway-layer-")
}

fn tags_with_prefix(addr: &str, prefix: &str) -> Vec<String> {
    let (status, _, body) = http(addr, "GET", &format!("/v2/{CACHE_REPO}/tags/list"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{}", text(&body));
    let list: Value = serde_json::from_slice(&body).unwrap();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t.as_str().unwrap().to_string())
                .filter(|t| t.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

fn entry(addr: &str, tag: &str) -> Value {
    let (status, _, body) = http(addr, "GET", &format!("/v2/{CACHE_REPO}/manifests/{tag}"));
    assert_eq!(status, 200, "{}", text(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The tag of the entry whose layer is `digest`.
fn entry_for_layer(addr: &str, digest: &str) -> (String, Value) {
    entry_tags(addr)
        .into_iter()
        .map(|tag| {
            let e = entry(addr, &tag);
            (tag, e)
        })
        .find(|(_, e)| e["layers"][0]["digest"] == digest)
        .unwrap_or_else(|| panic!("no entry for layer {digest}"))
}

/// PUT a manifest under `tag` of the cache repo, straight to the registry.
fn put_entry(addr: &str, tag: &str, manifest: &Value) {
    let body = serde_json::to_vec(manifest).unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PUT /v2/{CACHE_REPO}/manifests/{tag} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// The warnings and notes about the cache repo (the stand-in base draws
/// others, about shared libraries).
fn warnings(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning:") || l.starts_with("note:"))
        .filter(|l| l.contains("cache repo"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_fresh_runner_takes_every_layer_from_the_cache_repo() {
    if missing_prerequisites() {
        return;
    }
    let (work, recipe, a, registry, repo) = work_with_registry("shared");
    let cold = report(&a.build_layout(&recipe, &repo, "image"));
    assert!(
        sources(&cold).iter().all(|s| s == "built"),
        "a cold runner builds every layer: {:?}",
        new_layers(&cold)
    );
    assert!(!a.uv_work().is_empty(), "runner A installed with uv");
    let tags = entry_tags(registry.addr());
    assert!(
        tags.len() >= new_layers(&cold).len(),
        "one entry a layer at least: {tags:?}"
    );
    let first = entry(registry.addr(), &tags[0]);
    assert_eq!(
        first["artifactType"],
        "application/vnd.slipway.layer-cache.v1"
    );
    assert!(first["annotations"]["org.opencontainers.image.created"].is_string());

    let b = Runner::new(work.path(), "b");
    let out = b.build_layout(&recipe, &repo, "image");
    let warm = report(&out);
    assert_eq!(warm["digest"], cold["digest"], "the same image either way");
    assert!(
        sources(&warm).iter().all(|s| s == "cache-repo"),
        "every layer from the cache repo: {:?}",
        new_layers(&warm)
    );
    assert_eq!(b.uv_work(), Vec::<String>::new(), "runner B never ran uv");
    assert_eq!(warm["timings"]["bytecode_files_compiled"], 0);
    assert_eq!(warm["timings"]["compress_bytes"], 0, "nothing compressed");
    assert_eq!(warnings(&out), Vec::<String>::new(), "no warnings on a hit");
    // The site-packages layer's dist-info files came with it (facts kept
    // beside the layer), so runner B's SBOM did not decompress the layer.
    let digests = new_layer_field(&warm, "digest");
    let (_, site) = digests
        .iter()
        .find(|(kind, _)| kind == "site-packages")
        .expect("a site-packages layer");
    let key = common::fixtures::sha256_hex(format!("dist-info\n{site}").as_bytes());
    assert!(
        b.root
            .join("cache/facts")
            .join(format!("{key}.json"))
            .is_file(),
        "runner B took the dist-info files from the cache repo"
    );

    // A fresh runner pushing to the same registry mounts the layers.
    let c = Runner::new(work.path(), "c");
    let dest = format!("{}/app:1", registry.addr());
    let pushed = report(&run_bounded(
        &mut c.build(&recipe, &repo, &["--push", &dest]),
        LIMIT,
    ));
    assert_eq!(pushed["digest"], cold["digest"]);
    let actions = new_layer_field(&pushed, "action");
    assert!(
        actions.iter().all(|(_, a)| a == "mounted"),
        "new layers are mounted from the cache repo: {actions:?}"
    );
    assert!(c.uv_work().is_empty());
}

#[test]
fn an_unreachable_cache_repo_builds_normally_with_one_warning() {
    if missing_prerequisites() {
        return;
    }
    let (_work, recipe, a) = work_with_runner("down");
    let closed = format!("127.0.0.1:{}/{CACHE_REPO}", free_port());
    let started = std::time::Instant::now();
    let out = a.build_layout(&recipe, &closed, "image");
    let built = report(&out);
    assert!(sources(&built).iter().all(|s| s == "built"));
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    assert!(warned[0].contains("cache repo") && warned[0].contains("building without it"));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "a dead repo is given up on quickly"
    );
}

#[test]
fn a_cache_repo_refusing_credentials_builds_normally_with_one_warning() {
    if missing_prerequisites() {
        return;
    }
    let (_work, recipe, a) = work_with_runner("unauthorized");
    let registry = Registry::start_htpasswd("ci", "right-password");
    let repo = format!("{}/{CACHE_REPO}", registry.addr());
    a.login(registry.addr(), "ci", "wrong-password");
    let out = a.build_layout(&recipe, &repo, "image");
    let built = report(&out);
    assert!(sources(&built).iter().all(|s| s == "built"));
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    assert!(warned[0].contains("401"), "{warned:?}");
    assert!(
        !text(&out.stderr).contains("wrong-password"),
        "no secret in the output"
    );
}

#[test]
fn pull_only_credentials_use_hits_and_skip_writes_with_a_note() {
    if missing_prerequisites() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start_token_auth_with_reader("ci", "writer-pass", "pr", "reader-pass");
    let repo = format!("{}/{CACHE_REPO}", registry.addr());
    let a = Runner::new(work.path(), "a");
    a.login(registry.addr(), "ci", "writer-pass");
    let filled = report(&a.build_layout(
        &make_recipe(&work.path().join("src-a"), "one"),
        &repo,
        "image",
    ));
    assert!(sources(&filled).iter().all(|s| s == "built"));
    let tags = entry_tags_authenticated(&registry);
    assert!(!tags.is_empty(), "runner A filled the repo");

    // Runner B: another app (its app layers miss), pull-only credentials.
    let b = Runner::new(work.path(), "b");
    b.login(registry.addr(), "pr", "reader-pass");
    let out = b.build_layout(
        &make_recipe(&work.path().join("src-b"), "two"),
        &repo,
        "image",
    );
    let mixed = report(&out);
    let layers = new_layers(&mixed);
    let source_of = |kind: &str| layers.iter().find(|(k, _)| k == kind).unwrap().1.clone();
    assert_eq!(source_of("site-packages"), "cache-repo", "{layers:?}");
    assert_eq!(
        source_of("site-packages-bytecode"),
        "cache-repo",
        "{layers:?}"
    );
    assert_eq!(source_of("app"), "built", "{layers:?}");
    assert!(b.uv_work().is_empty(), "{:?}", b.uv_work());
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "one note: {warned:?}");
    assert!(
        warned[0].starts_with("note:") && warned[0].contains("pull-only"),
        "{warned:?}"
    );
    assert_eq!(
        entry_tags_authenticated(&registry),
        tags,
        "runner B wrote nothing"
    );
}

/// The entry tags as the writer sees them (the registry wants a token).
fn entry_tags_authenticated(registry: &Registry) -> Vec<String> {
    let client = registry.authenticated_client();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut tags: Vec<String> = runtime
        .block_on(client.list_tags(registry.addr(), CACHE_REPO))
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with("slipway-layer-"))
        .collect();
    tags.sort();
    tags
}

#[test]
fn a_500_on_the_entry_put_builds_normally_with_one_warning() {
    if missing_prerequisites() {
        return;
    }
    let (_work, recipe, a) = work_with_runner("five-hundred");
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.addr());
    proxy.add(Rule::new("PUT", "/manifests/slipway-layer-", Fault::Status(500)).always());
    let repo = format!("{}/{CACHE_REPO}", proxy.addr());
    let out = a.build_layout(&recipe, &repo, "image");
    let built = report(&out);
    assert!(sources(&built).iter().all(|s| s == "built"));
    assert!(proxy.counts().statuses >= 1, "the 500 was sent");
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    assert!(warned[0].contains("cannot write to cache repo") && warned[0].contains("500"));
    assert_eq!(entry_tags(registry.addr()), Vec::<String>::new());
}

#[test]
fn a_poisoned_entry_is_refused_rebuilt_and_overwritten() {
    if missing_prerequisites() {
        return;
    }
    let (work, recipe, a, registry, repo) = work_with_registry("poison");
    let addr = registry.addr();
    let cold = report(&a.build_layout(&recipe, &repo, "image"));

    // The app entry names another layer's blob (a real blob, so the
    // registry's digest checks pass): its bytes do not unpack to the
    // diff_id the entry claims.
    let app = layer_digest(&cold, "app");
    let bytecode = layer_digest(&cold, "app-bytecode");
    let (app_tag, mut app_entry) = entry_for_layer(addr, &app);
    let (_, bytecode_entry) = entry_for_layer(addr, &bytecode);
    app_entry["layers"][0]["digest"] = bytecode_entry["layers"][0]["digest"].clone();
    app_entry["layers"][0]["size"] = bytecode_entry["layers"][0]["size"].clone();
    put_entry(addr, &app_tag, &app_entry);
    // The site-packages entry lies about its layer's size.
    let site = layer_digest(&cold, "site-packages");
    let (site_tag, mut site_entry) = entry_for_layer(addr, &site);
    let size = site_entry["layers"][0]["size"].as_u64().unwrap();
    site_entry["layers"][0]["size"] = (size - 1).into();
    put_entry(addr, &site_tag, &site_entry);

    let b = Runner::new(work.path(), "b");
    let out = b.build_layout(&recipe, &repo, "image");
    let rebuilt = report(&out);
    assert_eq!(
        rebuilt["digest"], cold["digest"],
        "the poison never reaches the image"
    );
    let layers = new_layers(&rebuilt);
    let source_of = |kind: &str| layers.iter().find(|(k, _)| k == kind).unwrap().1.clone();
    assert_eq!(source_of("app"), "built", "{layers:?}");
    assert_eq!(source_of("site-packages"), "built", "{layers:?}");
    assert_eq!(source_of("app-bytecode"), "cache-repo", "{layers:?}");
    let refused: Vec<String> = warnings(&out)
        .into_iter()
        .filter(|w| w.contains("refused the entry"))
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", warnings(&out));
    assert!(refused.iter().any(|w| w.contains("diff_id")), "{refused:?}");
    assert!(refused.iter().any(|w| w.contains("bytes")), "{refused:?}");
    // Overwritten: both tags name the right layers again.
    assert_eq!(entry(addr, &app_tag)["layers"][0]["digest"], app.as_str());
    assert_eq!(entry(addr, &site_tag)["layers"][0]["size"], size);
    // And a third runner takes them.
    let c = Runner::new(work.path(), "c");
    let healed = report(&c.build_layout(&recipe, &repo, "image"));
    assert!(sources(&healed).iter().all(|s| s == "cache-repo"));
}

#[test]
fn two_runners_writing_one_key_at_once_are_safe() {
    if missing_prerequisites() {
        return;
    }
    let (work, recipe, a, _registry, repo) = work_with_registry("race");
    let b = Runner::new(work.path(), "b");
    let (out_a, out_b) = std::thread::scope(|scope| {
        let first = scope.spawn(|| a.build_layout(&recipe, &repo, "image"));
        let second = scope.spawn(|| b.build_layout(&recipe, &repo, "image"));
        (first.join().unwrap(), second.join().unwrap())
    });
    let (ra, rb) = (report(&out_a), report(&out_b));
    assert_eq!(ra["digest"], rb["digest"]);
    for out in [&out_a, &out_b] {
        assert!(warnings(out).is_empty(), "{:?}", warnings(out));
    }
    let c = Runner::new(work.path(), "c");
    let taken = report(&c.build_layout(&recipe, &repo, "image"));
    assert_eq!(taken["digest"], ra["digest"]);
    assert!(
        sources(&taken).iter().all(|s| s == "cache-repo"),
        "whichever write won, every entry is whole: {:?}",
        new_layers(&taken)
    );
}

#[test]
fn prune_deletes_entries_older_than_the_age_only() {
    if missing_prerequisites() {
        return;
    }
    let (work, recipe, a, registry, repo) = work_with_registry("prune");
    let addr = registry.addr();
    report(&a.build_layout(&recipe, &repo, "image"));
    // Layer entries and the facts entries (what the resolution holds back,
    // the site-packages layer's dist-info files for the SBOM).
    let fresh = tags_with_prefix(addr, "slipway-");
    assert_eq!(
        tags_with_prefix(addr, "slipway-facts-").len(),
        2,
        "{fresh:?}"
    );
    // An old entry: a copy of one, created in 2020, under another tag.
    let mut old = entry(addr, &fresh[0]);
    old["annotations"]["org.opencontainers.image.created"] = "2020-01-01T00:00:00Z".into();
    old["annotations"]["dev.slipway.cache.key"] = "an-old-key".into();
    let old_tag = format!("slipway-layer-{}", "0".repeat(64));
    put_entry(addr, &old_tag, &old);
    assert_eq!(tags_with_prefix(addr, "slipway-").len(), fresh.len() + 1);

    let prune = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args([
            "cache",
            "prune",
            "--cache-repo",
            &repo,
            "--older-than",
            "30d",
            "--json",
        ]);
        cmd.args(extra);
        cmd.env("DOCKER_CONFIG", work.path().join("no-docker"));
        cmd.env("SLIPWAY_CONFIG", work.path().join("no-config.toml"));
        report(&run_bounded(&mut cmd, LIMIT))
    };
    let dry = prune(&["--dry-run"]);
    assert_eq!(dry["deleted"], serde_json::json!([old_tag]));
    assert_eq!(
        tags_with_prefix(addr, "slipway-").len(),
        fresh.len() + 1,
        "a dry run deletes nothing"
    );
    let done = prune(&[]);
    assert_eq!(done["deleted"], serde_json::json!([old_tag]));
    assert_eq!(done["entries"], fresh.len() + 1);
    assert_eq!(
        tags_with_prefix(addr, "slipway-"),
        fresh,
        "only the old entry is gone"
    );
}
