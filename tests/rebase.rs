//! `slipway rebase` against a real registry: a base patched without changing
//! its facts (one file changed in a base layer, both platforms) gives exactly
//! the digest a full rebuild on it gives; a base with another Python minor or
//! another libc is refused with exit 2 and nothing pushed.

mod common;

use common::fixtures::{alpine_layout, push_alpine, repo_root, run_ok, sha256_digest, wheelhouse};
use common::registry::Registry;
use common::skip_or_fail;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A patched copy of an OCI layout's multi-platform image `tag`: in each
/// platform's last base layer one file changes (`etc/patch-level`), and
/// `env` (if any) replaces an Env entry in each config (to change facts).
fn patch_layout(src: &Path, tag: &str, dst: &Path, env: Option<(&str, &str)>) {
    run_ok(Command::new("cp").arg("-r").arg(src).arg(dst));
    let blob_path = |digest: &str| {
        dst.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read = |digest: &str| std::fs::read(blob_path(digest)).unwrap();
    let write = |bytes: &[u8]| -> (String, u64) {
        let digest = sha256_digest(bytes);
        std::fs::write(blob_path(&digest), bytes).unwrap();
        (digest, bytes.len() as u64)
    };
    let json_of = |digest: &str| -> Value { serde_json::from_slice(&read(digest)).unwrap() };
    let mut layout_index: Value =
        serde_json::from_slice(&std::fs::read(dst.join("index.json")).unwrap()).unwrap();
    let entry = layout_index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let mut index = json_of(entry["digest"].as_str().unwrap());
    for m in index["manifests"].as_array_mut().unwrap() {
        if m["annotations"]["vnd.docker.reference.type"].is_string() {
            continue; // attestations stay as they are
        }
        let mut manifest = json_of(m["digest"].as_str().unwrap());
        let mut config = json_of(manifest["config"]["digest"].as_str().unwrap());
        let last = manifest["layers"].as_array().unwrap().len() - 1;
        let (tar, gz) = patched_layer(&read(manifest["layers"][last]["digest"].as_str().unwrap()));
        let (layer_digest, layer_size) = write(&gz);
        manifest["layers"][last]["digest"] = json!(layer_digest);
        manifest["layers"][last]["size"] = json!(layer_size);
        config["rootfs"]["diff_ids"][last] = json!(sha256_digest(&tar));
        if let Some((key, value)) = env {
            for e in config["config"]["Env"].as_array_mut().unwrap() {
                if e.as_str().unwrap().starts_with(&format!("{key}=")) {
                    *e = json!(format!("{key}={value}"));
                }
            }
        }
        let (config_digest, config_size) = write(&serde_json::to_vec(&config).unwrap());
        manifest["config"]["digest"] = json!(config_digest);
        manifest["config"]["size"] = json!(config_size);
        let (digest, size) = write(&serde_json::to_vec(&manifest).unwrap());
        m["digest"] = json!(digest);
        m["size"] = json!(size);
    }
    let (digest, size) = write(&serde_json::to_vec(&index).unwrap());
    entry["digest"] = json!(digest);
    entry["size"] = json!(size);
    std::fs::write(
        dst.join("index.json"),
        serde_json::to_vec(&layout_index).unwrap(),
    )
    .unwrap();
}

/// The layer (gzip'd tar) with `etc/patch-level` added: (tar, tar.gz).
fn patched_layer(gz: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        if let Some(target) = entry.link_name().unwrap().map(|t| t.into_owned()) {
            builder.append_link(&mut header, &path, &target).unwrap();
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            builder.append_data(&mut header, &path, &data[..]).unwrap();
        }
    }
    let text = b"security patch 2\n";
    let mut header = tar::Header::new_ustar();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/patch-level", &text[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (tar, gz.finish().unwrap())
}

struct Setup {
    registry: Registry,
    work: tempfile::TempDir,
    wheels: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        if ["docker-registry", "skopeo", "uv"]
            .iter()
            .any(|t| skip_or_fail(t))
        {
            return None;
        }
        let wheels = wheelhouse()?;
        let registry = Registry::start();
        push_alpine(&registry);
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("app")).unwrap();
        std::fs::write(work.path().join("app/main.py"), "import fastapi\n").unwrap();
        std::fs::copy(
            repo_root().join("recipes/fastapi-demo/requirements.txt"),
            work.path().join("requirements.txt"),
        )
        .unwrap();
        Some(Setup {
            registry,
            work,
            wheels,
        })
    }

    fn recipe(&self, platforms: &str) -> PathBuf {
        let path = self
            .work
            .path()
            .join(format!("recipe-{}.toml", platforms.len()));
        std::fs::write(
            &path,
            format!("base = \"python:3.13-alpine\"\nplatforms = {platforms}\n[python]\nrequirements = [\"requirements.txt\"]\n[app]\nsource = \"app\"\n[image]\ncmd = [\"python\", \"main.py\"]\nenv = {{ APP_ENV = \"production\" }}\nworkdir = \"/app\"\nlabels = {{ team = \"payments\" }}\nannotations = {{ \"org.example.owner\" = \"payments\" }}\n"),
        )
        .unwrap();
        path
    }

    fn slipway(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args(args);
        cmd.args([
            "--registry-mirror",
            &format!("docker.io={}", self.registry.addr()),
        ]);
        cmd.env("SLIPWAY_CACHE_DIR", self.work.path().join("cache"));
        cmd.env("DOCKER_CONFIG", self.work.path().join("no-docker-config"));
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// Builds `recipe` and pushes it as `image`; returns the digest printed.
    fn build(&self, recipe: &Path, image: &str) -> String {
        let dest = format!("{}/{image}", self.registry.addr());
        let out = run_ok(&mut self.slipway(&[
            "build",
            recipe.to_str().unwrap(),
            "--offline",
            "--find-links",
            self.wheels.to_str().unwrap(),
            "--push",
            &dest,
            "-q",
        ]));
        printed_digest(&out)
    }

    /// Pushes a layout's image over the registry's python:3.13-alpine.
    fn push_base(&self, layout: &Path) {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:3.13-alpine", layout.display()))
                .arg(format!(
                    "docker://{}/library/python:3.13-alpine",
                    self.registry.addr()
                )),
        );
    }

    fn manifest(&self, repo: &str, reference: &str) -> Value {
        let (status, body) = http_get(
            self.registry.addr(),
            &format!("/v2/{repo}/manifests/{reference}"),
        );
        assert_eq!(status, 200, "{repo}:{reference}");
        serde_json::from_slice(&body).unwrap()
    }

    fn tags(&self, repo: &str) -> Value {
        let (status, body) = http_get(self.registry.addr(), &format!("/v2/{repo}/tags/list"));
        assert_eq!(status, 200);
        serde_json::from_slice::<Value>(&body).unwrap()["tags"].clone()
    }
}

fn printed_digest(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().rsplit('@').next().unwrap().to_string()
}

fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[..split])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, response[split + 4..].to_vec())
}

/// Platform manifests of an index: (digest, manifest).
fn platform_manifests(setup: &Setup, repo: &str, index_digest: &str) -> Vec<(String, Value)> {
    let index = setup.manifest(repo, index_digest);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let digest = m["digest"].as_str().unwrap().to_string();
            let manifest = setup.manifest(repo, &digest);
            (digest, manifest)
        })
        .collect()
}

#[test]
fn patched_base_gives_the_digest_of_a_full_rebuild_on_both_platforms() {
    let Some(setup) = Setup::new() else { return };
    let recipe = setup.recipe(r#"["linux/amd64", "linux/arm64"]"#);
    let old = setup.build(&recipe, "team/app:1");

    let patched = setup.work.path().join("patched");
    patch_layout(&alpine_layout(), "3.13-alpine", &patched, None);
    setup.push_base(&patched);

    // Default: the image's own base name, resolved again (now the patched one).
    let dest = format!("{}/team/app:rebased", setup.registry.addr());
    let image = format!("{}/team/app:1", setup.registry.addr());
    let out = run_ok(&mut setup.slipway(&["rebase", &image, "--push", &dest]));
    let rebased = printed_digest(&out);
    let base_before = setup.manifest(
        "team/app",
        &platform_manifests(&setup, "team/app", &old)[0].0,
    )["annotations"]["org.opencontainers.image.base.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("(was on {base_before})")),
        "{stderr}"
    );
    assert_ne!(rebased, old);

    let rebuilt = setup.build(&recipe, "team/app:rebuilt");
    assert_eq!(
        rebased, rebuilt,
        "rebase gives exactly the rebuild's digest"
    );
    assert_eq!(
        setup.manifest("team/app", "rebased")["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let old_platforms = platform_manifests(&setup, "team/app", &old);
    let new_platforms = platform_manifests(&setup, "team/app", &rebased);
    for ((_, before), (digest, after)) in old_platforms.iter().zip(&new_platforms) {
        let layers = |m: &Value| m["layers"].as_array().unwrap().clone();
        let (before_layers, after_layers) = (layers(before), layers(after));
        assert_eq!(before_layers.len(), after_layers.len());
        // The base's last layer changed; slipway's four are the same bytes.
        let n = before_layers.len();
        assert_ne!(before_layers[n - 5], after_layers[n - 5]);
        assert_eq!(before_layers[n - 4..], after_layers[n - 4..]);
        assert_ne!(
            before["annotations"]["org.opencontainers.image.base.digest"],
            after["annotations"]["org.opencontainers.image.base.digest"]
        );
        assert_eq!(after["annotations"]["org.example.owner"], "payments");
        // Its SBOM names the new base; rebase and rebuild attached the same one.
        let referrers = setup.manifest("team/app", &digest.replace(':', "-"));
        assert_eq!(
            referrers["manifests"].as_array().unwrap().len(),
            1,
            "{referrers}"
        );
    }

    // In place: the tag moves to the rebased image.
    run_ok(&mut setup.slipway(&["rebase", &image, "-q"]));
    let (_, body) = http_get(setup.registry.addr(), "/v2/team/app/manifests/1");
    assert_eq!(sha256_digest(&body), rebuilt);
}

#[test]
fn other_facts_are_refused_and_nothing_is_pushed() {
    let Some(setup) = Setup::new() else { return };
    let recipe = setup.recipe(r#"["linux/amd64", "linux/arm64"]"#);
    let old = setup.build(&recipe, "team/app:1");
    let tags_before = setup.tags("team/app");
    let image = format!("{}/team/app:1", setup.registry.addr());

    // Another Python minor.
    let py312 = setup.work.path().join("py312");
    patch_layout(
        &alpine_layout(),
        "3.13-alpine",
        &py312,
        Some(("PYTHON_VERSION", "3.12.11")),
    );
    let out = setup
        .slipway(&[
            "rebase",
            &image,
            "--base",
            "python:3.12-alpine",
            "--base-layout",
            py312.to_str().unwrap(),
            "--push",
            &format!("{}/team/app:new", setup.registry.addr()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "Python minor",
        "3.13",
        "3.12",
        "linux/arm64",
        "site-packages",
        "rebuild",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in:\n{stderr}");
    }

    // musl → glibc: the runnable python:3.13-slim stand-in (amd64 only, so
    // the image is amd64 only too).
    let slim = repo_root().join("target/runnable-base/layout");
    if !slim.join("index.json").is_file() {
        assert!(
            !common::fixtures::in_ci(),
            "no runnable base: run scripts/setup"
        );
    } else {
        let amd64 = setup.recipe(r#"["linux/amd64"]"#);
        setup.build(&amd64, "team/one:1");
        let one = format!("{}/team/one:1", setup.registry.addr());
        let out = setup
            .slipway(&[
                "rebase",
                &one,
                "--base",
                "python:3.13-slim",
                "--base-layout",
                slim.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("musl") && stderr.contains("glibc"),
            "{stderr}"
        );
    }

    // Nothing was pushed: same tags, same digest.
    assert_eq!(setup.tags("team/app"), tags_before);
    let (_, body) = http_get(setup.registry.addr(), "/v2/team/app/manifests/1");
    assert_eq!(sha256_digest(&body), old);

    // An image without slipway's record is refused too.
    let foreign = format!("{}/library/python:3.13-alpine", setup.registry.addr());
    let out = setup
        .slipway(&[
            "rebase",
            &foreign,
            "--push",
            &format!("{}/team/x:1", setup.registry.addr()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("dev.slipway.settings"), "{stderr}");
}
