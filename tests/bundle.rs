//! Air-gapped builds: `slipway bundle` on the "connected" side (the base from
//! a loopback registry named through a mirror in the config file, wheels from
//! the local wheelhouse `scripts/wheelhouse` made), then `slipway build
//! --bundle` inside a new network namespace with no network at all
//! (`unshare -rn`), pushing to a registry started inside that namespace. The
//! offline image must have the digest of the online build of the same recipe.
//! Tampered, stale and incomplete bundles must fail naming what is wrong.

mod common;

use common::fixtures::{push_alpine, repo_root, run_ok};
use common::registry::Registry;
use common::{skip_or_fail, skip_or_fail_because};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A copy of `recipes/NAME` in `work` (outside the git work tree, so no
/// `revision` annotation that a commit in between could change); its recipe.
fn recipe(work: &Path, name: &str) -> PathBuf {
    let dir = work.join("recipes").join(name);
    if !dir.exists() {
        copy_dir(&repo_root().join("recipes").join(name), &dir);
    }
    dir.join("alpine.toml")
}

/// The real wheels the tests resolve from; made by `scripts/wheelhouse`.
fn wheelhouse() -> Option<PathBuf> {
    let dir = repo_root().join("target/wheelhouse");
    let has = |name: &str| {
        std::fs::read_dir(&dir).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(name)))
        })
    };
    if has("fastapi-") && has("flask-") && has("gunicorn-") && has("click-") {
        return Some(dir);
    }
    skip_or_fail_because(&format!(
        "the wheelhouse {} lacks the recipes' wheels: run scripts/wheelhouse (scripts/setup does)",
        dir.display()
    ));
    None
}

fn tools_missing() -> bool {
    ["docker-registry", "skopeo", "uv", "unshare", "ip", "bash"]
        .iter()
        .any(|t| skip_or_fail(t))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The connected side: a registry serving `docker.io/library/python`
/// through a mirror named in a slipway config file (`$SLIPWAY_CONFIG`).
struct Connected {
    registry: Registry,
    work: tempfile::TempDir,
    wheels: PathBuf,
}

impl Connected {
    fn start() -> Option<Connected> {
        if tools_missing() {
            return None;
        }
        let wheels = wheelhouse()?;
        let registry = Registry::start();
        push_alpine(&registry);
        let work = tempfile::tempdir().unwrap();
        std::fs::write(
            work.path().join("config.toml"),
            format!("[mirrors]\n\"docker.io\" = \"{}\"\n", registry.addr()),
        )
        .unwrap();
        Some(Connected {
            registry,
            work,
            wheels,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn slipway(&self, cache: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.env("SLIPWAY_CACHE_DIR", self.path(cache))
            .env("SLIPWAY_CONFIG", self.path("config.toml"))
            .env("DOCKER_CONFIG", self.path("no-docker-config"))
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// The online build: base from the registry (via the mirror), wheels
    /// from the wheelhouse (the tests' stand-in for the index). Returns the digest.
    fn build_online(&self, recipe: &Path, image: &str, extra: &[&str]) -> String {
        let out = run_ok(
            self.slipway("cache-online")
                .arg("build")
                .arg(recipe)
                .args(["--offline", "--find-links"])
                .arg(&self.wheels)
                .arg("--push")
                .arg(format!("{}/{image}", self.registry.addr()))
                .args(extra),
        );
        printed_digest(&out)
    }

    /// `slipway bundle --json`; returns the report.
    fn bundle(&self, recipe: &Path, out: &Path, extra: &[&str]) -> Value {
        let out = run_ok(
            self.slipway("cache-bundle")
                .arg("bundle")
                .arg(recipe)
                .args(["--offline", "--find-links"])
                .arg(&self.wheels)
                .arg("--out")
                .arg(out)
                .arg("--json")
                .args(extra),
        );
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON document")
    }
}

/// `REF@sha256:...` on stdout → the digest.
fn printed_digest(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let (_, digest) = line
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("no digest printed: {text}\n{}", stderr(out)));
    assert!(digest.starts_with("sha256:"), "{line}");
    digest.to_string()
}

/// What an offline build inside a fresh network namespace printed.
struct Offline {
    digest: String,
    /// sha256 of the manifest bytes skopeo read back from the namespace's registry.
    pulled: String,
}

/// Runs `slipway build RECIPE --bundle BUNDLE --push 127.0.0.1:5000/IMAGE`
/// under `unshare -rn` (no network but a loopback brought up inside), with
/// a Distribution registry started in the same namespace, a fresh slipway
/// cache and a fresh uv cache; then copies the image back out of that
/// registry with skopeo (all blobs present, digests checked).
fn build_offline(
    work: &Path,
    recipe: &Path,
    bundle: &Path,
    image: &str,
    extra: &[&str],
) -> Offline {
    let dir = tempfile::tempdir_in(work).unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("registry.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: \"{}\"\n\
             http:\n  addr: 127.0.0.1:5000\n  secret: offline-test\n",
            d.join("storage").display()
        ),
    )
    .unwrap();
    let script = r#"set -eu
dir=$1; shift
ip link set lo up
if ip route get 1.1.1.1 >/dev/null 2>&1; then echo "the namespace has a route out" >&2; exit 99; fi
docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then break; fi
    sleep 0.05
done
"$@" >"$dir/stdout"
ref=$(tail -n1 "$dir/stdout")
skopeo copy --quiet --src-tls-verify=false "docker://${ref%@*}" "oci:$dir/pulled:x"
skopeo inspect --raw --tls-verify=false "docker://${ref%@*}" | sha256sum | cut -d' ' -f1 >"$dir/pulled-sha"
"#;
    std::fs::write(d.join("offline.sh"), script).unwrap();
    let stdout_path = d.join("stdout");
    let mut cmd = Command::new("unshare");
    cmd.arg("-rn")
        .arg("bash")
        .arg(d.join("offline.sh"))
        .arg(d)
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(recipe)
        .arg("--bundle")
        .arg(bundle)
        .arg("--push")
        .arg(format!("127.0.0.1:5000/{image}"))
        .args(extra)
        .env("SLIPWAY_CACHE_DIR", d.join("cache"))
        .env("UV_CACHE_DIR", d.join("uv-cache"))
        .env("SLIPWAY_CONFIG", d.join("no-config.toml"))
        .env("DOCKER_CONFIG", d.join("no-docker-config"))
        .env_remove("SOURCE_DATE_EPOCH");
    let out = run(&mut cmd);
    let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    assert!(
        out.status.success(),
        "the offline build failed:\n{printed}\n{}\nregistry log:\n{}",
        stderr(&out),
        std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
    );
    let line = printed.lines().last().unwrap_or_default().to_string();
    let digest = line
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let pulled = std::fs::read_to_string(d.join("pulled-sha")).unwrap();
    Offline {
        digest,
        pulled: format!("sha256:{}", pulled.trim()),
    }
}

#[test]
fn fastapi_offline_build_from_a_bundle_has_the_online_digest() {
    let Some(c) = Connected::start() else { return };
    let recipe = recipe(c.work.path(), "fastapi-demo");
    let platforms = ["--platform", "linux/amd64", "--platform", "linux/arm64"];
    // The same repository and tag on both sides: the tag is the `version` annotation.
    let online = c.build_online(&recipe, "team/fastapi:1.0", &platforms);

    let bundle = c.path("fastapi-bundle");
    let report = c.bundle(&recipe, &bundle, &platforms);
    assert_eq!(
        report["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert!(report["wheels_fetched"].as_u64().unwrap() > 10, "{report}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["base"]["reference"],
        "docker.io/library/python:3.13-alpine"
    );
    let wheels: Vec<String> = std::fs::read_dir(bundle.join("wheels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Exactly one pydantic-core per platform, and nothing for glibc.
    let cores: Vec<&String> = wheels
        .iter()
        .filter(|w| w.starts_with("pydantic_core"))
        .collect();
    assert_eq!(cores.len(), 2, "{wheels:?}");
    assert!(
        wheels.iter().all(|w| !w.contains("manylinux")),
        "{wheels:?}"
    );
    for plat in ["linux-amd64", "linux-arm64"] {
        let text =
            std::fs::read_to_string(bundle.join(format!("requirements/{plat}.txt"))).unwrap();
        assert!(
            text.contains("fastapi==0.165.0 \\\n    --hash=sha256:"),
            "{text}"
        );
    }
    // The layout's tag is the recipe's base; skopeo reads it.
    run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!(
                "oci:{}:docker.io/library/python:3.13-alpine",
                bundle.join("base").display()
            )),
    );

    // Again: nothing to fetch. Without one wheel: that wheel only.
    let again = c.bundle(&recipe, &bundle, &platforms);
    assert_eq!(again["wheels_fetched"], 0, "{again}");
    assert_eq!(again["base_blobs"]["copied"], 0, "{again}");
    std::fs::remove_file(bundle.join("wheels/idna-3.20-py3-none-any.whl")).unwrap();
    let refill = c.bundle(&recipe, &bundle, &platforms);
    assert_eq!(refill["wheels_fetched"], 1, "{refill}");

    let offline = build_offline(
        c.work.path(),
        &recipe,
        &bundle,
        "team/fastapi:1.0",
        &platforms,
    );
    assert_eq!(offline.digest, online, "offline and online builds differ");
    assert_eq!(
        offline.pulled, online,
        "the namespace's registry serves another manifest"
    );
}

#[test]
fn flask_and_cli_tool_build_offline_with_the_online_digest() {
    let Some(c) = Connected::start() else { return };
    for (name, as_tar) in [("flask-gunicorn", false), ("cli-tool", true)] {
        let recipe = recipe(c.work.path(), name);
        let online = c.build_online(&recipe, &format!("team/{name}:1"), &[]);
        let bundle = c.path(&format!(
            "{name}-bundle{}",
            if as_tar { ".tar" } else { "" }
        ));
        c.bundle(&recipe, &bundle, &[]);
        assert_eq!(bundle.is_file(), as_tar);
        let offline = build_offline(
            c.work.path(),
            &recipe,
            &bundle,
            &format!("team/{name}:1"),
            &[],
        );
        assert_eq!(
            offline.digest, online,
            "{name}: offline and online builds differ"
        );
        assert_eq!(offline.pulled, online, "{name}");
    }

    // The cli tool's entrypoint is its console script, with the image's interpreter.
    let layout = c.path("tally-layout");
    run_ok(
        c.slipway("cache-online")
            .arg("build")
            .arg(recipe(c.work.path(), "cli-tool"))
            .args(["--offline", "--find-links"])
            .arg(&c.wheels)
            .arg("--oci-layout")
            .arg(&layout),
    );
    let (config, files) = read_layout(&layout);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["tally"]));
    let script = files
        .get("usr/local/bin/tally")
        .unwrap_or_else(|| panic!("no console script: {:?}", files.keys().collect::<Vec<_>>()));
    let script = String::from_utf8_lossy(script);
    assert!(
        script.starts_with("#!/usr/local/bin/python3.13\n"),
        "{script}"
    );
    assert!(script.contains("from tally.cli import main"), "{script}");
    assert!(files.contains_key("usr/local/lib/python3.13/site-packages/tally/cli.py"));
    assert!(files.contains_key("usr/local/lib/python3.13/site-packages/click/core.py"));
    assert!(
        files.keys().all(|p| !p.contains("direct_url.json")),
        "host paths in the image"
    );
}

/// The config and every regular file of a single-platform OCI layout's image.
fn read_layout(dir: &Path) -> (Value, std::collections::BTreeMap<String, Vec<u8>>) {
    let blob = |digest: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let bytes = blob(layer["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                files.insert(path, content);
            }
        }
    }
    (config, files)
}

#[test]
fn tampered_stale_or_incomplete_bundles_fail_naming_what_is_wrong() {
    let Some(c) = Connected::start() else { return };
    // A copy of the cli tool, so its lock can be changed.
    let recipe = recipe(c.work.path(), "cli-tool");
    let project = recipe.parent().unwrap().to_path_buf();
    let good = c.path("good-bundle");
    c.bundle(&recipe, &good, &[]);
    let build = |bundle: &Path, cache: &str, extra: &[&str]| {
        run(c
            .slipway(cache)
            .arg("build")
            .arg(&recipe)
            .arg("--bundle")
            .arg(bundle)
            .arg("--oci-layout")
            .arg(c.path("out"))
            .args(extra))
    };
    // Warm a cache with the good bundle: its base blobs are then cached.
    let ok = build(&good, "cache-warm", &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // One wheel and one base blob changed.
    let bad = c.path("bad-bundle");
    copy_dir(&good, &bad);
    let wheel = "wheels/click-8.5.1-py3-none-any.whl";
    append(&bad.join(wheel), b"tampered");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(good.join("bundle.json")).unwrap()).unwrap();
    let layer = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .find(|p| {
            p.starts_with("base/blobs/") && std::fs::metadata(good.join(p)).unwrap().len() > 1000
        })
        .unwrap();
    append(&bad.join(&layer), b"tampered");
    let out = build(&bad, "cache-warm", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(wheel), "the wheel is not named:\n{err}");
    assert!(err.contains(&layer), "the blob is not named:\n{err}");

    // A swapped wheel whose bundle.json entry was made to match: the pin catches it.
    let swapped = c.path("swapped-bundle");
    copy_dir(&good, &swapped);
    append(&swapped.join(wheel), b"swapped");
    let (sha, size) = sha256_file(&swapped.join(wheel));
    let mut m = manifest.clone();
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == wheel {
            f["sha256"] = Value::from(format!("sha256:{sha}"));
            f["size"] = Value::from(size);
        }
    }
    std::fs::write(
        swapped.join("bundle.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    let out = build(&swapped, "cache-swapped", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(wheel) && err.contains("requirements/linux-amd64.txt"),
        "{err}"
    );

    // A platform the bundle was not made for.
    let out = build(&good, "cache-arm", &["--platform", "linux/arm64"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("linux/arm64"), "{err}");

    // The lock changed after bundling.
    append(&project.join("uv.lock"), b"\n");
    let out = build(&good, "cache-stale", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`uv.lock` changed"), "{err}");

    // Not a bundle at all.
    let out = build(&project, "cache-none", &[]);
    assert!(
        stderr(&out).contains("not a slipway bundle"),
        "{}",
        stderr(&out)
    );
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn sha256_file(path: &Path) -> (String, u64) {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    (
        hex::encode(sha2::Sha256::digest(&bytes)),
        bytes.len() as u64,
    )
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A uv workspace member (its lock at the workspace root, a sibling member
/// as a dependency): bundled, then built offline in a namespace with no
/// network, with the online build's digest; the bundle records the root's
/// lock, and a changed root lock makes it stale. A bundle that fails half
/// way leaves no dir behind.
#[test]
fn workspace_member_builds_offline_from_a_bundle_with_the_online_digest() {
    let Some(c) = Connected::start() else { return };
    let Some(python) = common::tools::find_python313() else {
        skip_or_fail_because("no CPython 3.13 to lock the workspace with");
        return;
    };
    let root = c.path("ws");
    common::fixtures::write_uv_workspace(&root);
    common::fixtures::uv_lock_offline(&root, &python, &c.wheels);
    let recipe = root.join("packages/backend/slipway.toml");
    std::fs::write(
        &recipe,
        "base = \"python:3.13-alpine\"\nplatforms = [\"linux/amd64\"]\n\n[python]\nproject = \".\"\n\n\
         [image]\ncmd = [\"gunicorn\", \"--bind\", \"0.0.0.0:8000\", \"backend.web:app\"]\n",
    )
    .unwrap();
    let online = c.build_online(&recipe, "team/backend:1", &[]);

    // Without the wheels, the bundle fails after the base was copied: no dir.
    let failed = c.path("failed-bundle");
    let out = run(c
        .slipway("cache-failed")
        .arg("bundle")
        .arg(&recipe)
        .arg("--offline")
        .arg("--out")
        .arg(&failed));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("blinker"), "{}", stderr(&out));
    assert!(
        !failed.exists(),
        "a failed bundle left {}",
        failed.display()
    );
    let leftovers: Vec<String> = std::fs::read_dir(c.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".slipway-bundle-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let bundle = c.path("ws-bundle");
    c.bundle(&recipe, &bundle, &[]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    let inputs: Vec<&str> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        ["pyproject.toml", "../../pyproject.toml", "../../uv.lock"]
    );
    // The sibling is built from source, never a wheel in the bundle.
    assert!(
        !bundle.join("wheels").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("greeting")),
        "a workspace member was bundled as a wheel"
    );

    let offline = build_offline(c.work.path(), &recipe, &bundle, "team/backend:1", &[]);
    assert_eq!(offline.digest, online, "offline and online builds differ");
    assert_eq!(offline.pulled, online);

    // The root's lock changed after bundling: named as the bundle records it.
    let mut lock = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("uv.lock"))
        .unwrap();
    std::io::Write::write_all(&mut lock, b"\n").unwrap();
    let out = run(c
        .slipway("cache-stale")
        .arg("build")
        .arg(&recipe)
        .arg("--bundle")
        .arg(&bundle)
        .arg("--oci-layout")
        .arg(c.path("stale-out")));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`../../uv.lock` changed"),
        "{}",
        stderr(&out)
    );
}
