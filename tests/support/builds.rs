//! Helpers shared by the fault, kill and concurrency tests (included with
//! `#[path = "support/builds.rs"] mod builds;` next to `mod common;`): an app
//! and recipe to build, `slipway build` with a time limit, a warm "seed"
//! cache and the clean build's digest, checks of a cache's integrity and of
//! what a tag points at, asked of the real registry directly.
#![allow(dead_code)]

#[allow(unused_imports)] // not every including test uses every fixture
pub use crate::common::fixtures::{push_alpine, repo_root, run_ok, sha256_hex, wheelhouse};
use crate::common::registry::Registry;
use crate::common::skip_or_fail;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// True when a tool or the wheelhouse is missing (and this is not CI): skip.
pub fn missing_prerequisites() -> bool {
    ["docker-registry", "skopeo", "uv"]
        .iter()
        .any(|t| skip_or_fail(t))
        || wheelhouse().is_none()
}

/// A small FastAPI app; `variant` changes its content (and so its layers).
pub fn make_app(dir: &Path, variant: &str) {
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(
        dir.join("app.py"),
        format!(
            "from fastapi import FastAPI\napp = FastAPI()\n\n@app.get('/')\ndef root():\n    return {{'variant': '{variant}'}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("pkg/__init__.py"),
        format!("VARIANT = '{variant}'\n"),
    )
    .unwrap();
}

/// `dir/recipe.toml` building the fastapi-demo requirements and `dir/app`
/// (made with `variant`) on python:3.13-alpine for linux/amd64.
pub fn make_recipe(dir: &Path, variant: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    make_app(&dir.join("app"), variant);
    std::fs::copy(
        repo_root().join("recipes/fastapi-demo/requirements.txt"),
        dir.join("requirements.txt"),
    )
    .unwrap();
    let recipe = r#"base = "python:3.13-alpine"
platforms = ["linux/amd64"]

[python]
requirements = ["requirements.txt"]

[app]
source = "app"

[image]
cmd = ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"]
workdir = "/app"
"#;
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

/// `slipway build RECIPE --offline --find-links WHEELHOUSE --cache-dir CACHE
/// --registry-mirror docker.io=MIRROR`, isolated from the user's docker
/// config and SOURCE_DATE_EPOCH. Add the destination and options.
pub fn slipway(recipe: &Path, cache: &Path, mirror: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("build").arg(recipe);
    cmd.arg("--registry-mirror")
        .arg(format!("docker.io={mirror}"));
    cmd.arg("--offline")
        .arg("--find-links")
        .arg(wheelhouse().expect("the wheelhouse"));
    cmd.arg("--cache-dir").arg(cache);
    cmd.env("DOCKER_CONFIG", cache.with_extension("no-docker-config"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd.env_remove("SLIPWAY_CACHE_DIR");
    cmd.env("SLIPWAY_CONFIG", cache.with_extension("no-config.toml"));
    cmd
}

/// Runs `cmd` to the end, killing it (and failing) after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_bounded(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` (stdout and stderr piped), killing it after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("{what} did not finish within {limit:?}; its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `--json` report of a successful build.
pub fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "the build failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output: {e}\n{}", text(&out.stdout)))
}

fn file_sha256(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// A clean build of `make_recipe(.., "seed")` pushed with tag `1` (the tag
/// is the image's `version` annotation: push with tag `1` to compare): its
/// digest, and a warm cache that tests copy to skip uv.
pub struct Seed {
    pub digest: String,
    /// Its config's digest (what a docker-archive of it is known by).
    pub config_digest: String,
    pub cache: PathBuf,
    /// Digests of the base image's layers (amd64).
    pub base_layers: Vec<String>,
    /// (kind, digest) of every layer, base first.
    pub layers: Vec<(String, String)>,
    /// How long the seed's build (cold cache) took.
    pub build_time: Duration,
}

impl Seed {
    /// The digest of the (first) layer of this kind, e.g. `site-packages`.
    pub fn layer(&self, kind: &str) -> &str {
        &self
            .layers
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} layer"))
            .1
    }
}

/// Built once per test binary (the first caller waits ~10 s).
pub fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        // Outside the repository: an app dir in a git work tree gets
        // source/revision annotations, and so another digest.
        let root = std::env::temp_dir();
        remove_stale_seeds(&root);
        let dir = root.join(format!("slipway-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let registry = Registry::start();
        push_alpine(&registry);
        let recipe = make_recipe(&dir.join("work"), "seed");
        let cache = dir.join("cache");
        let started = Instant::now();
        let out = run_bounded(
            slipway(&recipe, &cache, registry.addr())
                .arg("--push")
                .arg(format!("{}/seed/app:1", registry.addr()))
                .arg("--json"),
            Duration::from_secs(120),
        );
        let build_time = started.elapsed();
        let report = report(&out);
        let base_layers = report["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["kind"] == "base")
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        let layers = report["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap().to_string(),
                    l["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Seed {
            digest: report["digest"].as_str().unwrap().to_string(),
            config_digest: report["platforms"][0]["config_digest"]
                .as_str()
                .unwrap()
                .to_string(),
            cache,
            base_layers,
            layers,
            build_time,
        }
    })
}

/// Seeds of earlier runs (dead processes) left in the temp dir.
fn remove_stale_seeds(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("slipway-seed-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A time bound scaled from this machine's own measured cold build (the
/// seed's): `builds` cold builds' worth of work, times a generous 4 for a
/// loaded machine, plus a minute. Never a fixed wall-clock number.
pub fn scaled_limit(builds: u32) -> Duration {
    seed().build_time * builds * 4 + Duration::from_secs(60)
}

/// A copy of the seed cache at `dest`, without the base's blobs (so a build
/// must download them).
pub fn copy_seed_cache(dest: &Path) {
    let seed = seed();
    run_ok(Command::new("cp").arg("-r").arg(&seed.cache).arg(dest));
    for digest in &seed.base_layers {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let _ = std::fs::remove_file(dest.join("blobs/sha256").join(hex));
    }
}

/// The cache holds no partial or corrupt entry: every file in the blob store
/// hashes to its name, every layer record's blob is there with the recorded
/// size, facts parse, and `tmp/` holds nothing but what `allow_tmp` allows.
/// Returns the blob digests (hex) present.
pub fn check_cache(cache: &Path, allow_tmp: bool) -> Vec<String> {
    let blobs = cache.join("blobs/sha256");
    let mut present = Vec::new();
    for entry in std::fs::read_dir(&blobs).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        assert!(
            path.is_file(),
            "not a file in the blob store: {}",
            path.display()
        );
        assert_eq!(
            file_sha256(&path),
            name,
            "blob {} does not hash to its name",
            path.display()
        );
        present.push(name);
    }
    for entry in std::fs::read_dir(cache.join("layers"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("layer record {}: {e}", path.display()));
        let digest = record["digest"].as_str().unwrap();
        let blob = blobs.join(digest.strip_prefix("sha256:").unwrap());
        let meta = std::fs::metadata(&blob)
            .unwrap_or_else(|e| panic!("{} names {digest}, which is missing: {e}", path.display()));
        assert_eq!(
            meta.len(),
            record["size"].as_u64().unwrap(),
            "{}",
            path.display()
        );
    }
    if let Ok(entries) = std::fs::read_dir(cache.join("facts")) {
        for entry in entries.filter_map(Result::ok) {
            let bytes = std::fs::read(entry.path()).unwrap();
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|e| panic!("facts {}: {e}", entry.path().display()));
        }
    }
    if !allow_tmp {
        let leftovers: Vec<_> = std::fs::read_dir(cache.join("tmp"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            leftovers.is_empty(),
            "left in {}/tmp: {leftovers:?}",
            cache.display()
        );
    }
    present
}

/// A plain HTTP/1.1 request to `addr` (the real registry, never the proxy):
/// (status, headers lower-cased, body).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[end..].to_vec())
}

/// What `repository:tag` points at on the registry at `addr` (its digest), if anything.
pub fn tag_digest(addr: &str, repository: &str, tag: &str) -> Option<String> {
    let (status, _, body) = http(addr, "GET", &format!("/v2/{repository}/manifests/{tag}"));
    match status {
        200 => Some(format!("sha256:{}", sha256_hex(&body))),
        404 => None,
        other => panic!("GET {repository}:{tag} on {addr}: {other}"),
    }
}

/// Every blob and manifest the image `digest` refers to is on the registry,
/// with the right bytes for manifests and the right sizes for blobs.
pub fn assert_image_complete(addr: &str, repository: &str, digest: &str) {
    let (status, _, body) = http(addr, "GET", &format!("/v2/{repository}/manifests/{digest}"));
    assert_eq!(
        status, 200,
        "manifest {digest} is missing from {repository}"
    );
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    if let Some(manifests) = doc["manifests"].as_array() {
        for m in manifests {
            assert_image_complete(addr, repository, m["digest"].as_str().unwrap());
        }
        return;
    }
    let mut blobs = vec![&doc["config"]];
    blobs.extend(doc["layers"].as_array().unwrap());
    for blob in blobs {
        let d = blob["digest"].as_str().unwrap();
        let (status, headers, _) = http(addr, "HEAD", &format!("/v2/{repository}/blobs/{d}"));
        assert_eq!(
            status, 200,
            "blob {d} of {digest} is missing from {repository}"
        );
        let size = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.clone());
        assert_eq!(
            size.as_deref(),
            Some(blob["size"].to_string().as_str()),
            "size of {d}"
        );
    }
}

/// The tag points at `new` (complete), or still at `old`; returns which digest.
pub fn assert_tag_old_or_new(
    addr: &str,
    repository: &str,
    tag: &str,
    old: Option<&str>,
    new: &str,
) -> String {
    let now = tag_digest(addr, repository, tag);
    match now.as_deref() {
        Some(d) if d == new => assert_image_complete(addr, repository, new),
        d if d == old => {}
        other => panic!("{repository}:{tag} points at {other:?}: neither the new image {new} nor the old {old:?}"),
    }
    now.unwrap_or_default()
}

/// `skopeo inspect` accepts `image` (e.g. `oci:DIR:latest`, `docker-archive:FILE`).
pub fn skopeo_inspect_ok(image: &str) -> Result<(), String> {
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(image)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out.stderr))
    }
}
