//! The outputs load where users take them: the OCI layout in skopeo and
//! umoci, the docker-archive in skopeo (and podman, when installed), the
//! pushed image in skopeo; and the manifest carries the OCI annotations
//! (source, revision and version from git, created, base name and digest).
//!
//! crane is not packaged for Debian, so it is not tried here.

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use common::registry::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const REMOTE: &str = "https://ci-bot:s3cr3t-token@git.example/team/fastapi-demo.git";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// recipes/fastapi-demo copied into a fresh git repo with one commit and an
/// origin whose URL holds credentials; returns (recipe, HEAD).
fn demo_in_git(dir: &Path) -> (PathBuf, String) {
    copy_tree(&repo_root().join("recipes/fastapi-demo"), dir, &[]);
    git(dir, &["init", "-q"]);
    git(dir, &["remote", "add", "origin", REMOTE]);
    git(dir, &["add", "."]);
    // The build's default created date is this commit's time.
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["commit", "-q", "-m", "demo"])
            .env("GIT_COMMITTER_DATE", "2023-11-14T22:13:20Z"),
    );
    let head = git(dir, &["rev-parse", "HEAD"]);
    (dir.join("alpine.toml"), head)
}

fn annotations_of(manifest_raw: &[u8]) -> Value {
    let manifest: Value = serde_json::from_slice(manifest_raw).unwrap();
    manifest["annotations"].clone()
}

fn assert_provenance(annotations: &Value, head: &str) {
    let get = |k: &str| {
        annotations[format!("org.opencontainers.image.{k}")]
            .as_str()
            .unwrap_or_else(|| panic!("no `{k}` annotation: {annotations}"))
            .to_string()
    };
    assert_eq!(get("revision"), head);
    assert_eq!(
        get("source"),
        "https://git.example/team/fastapi-demo.git",
        "credentials are stripped"
    );
    assert_eq!(get("created"), "2023-11-14T22:13:20Z");
    assert_eq!(get("base.name"), "docker.io/library/python:3.13-alpine");
    assert!(get("base.digest").starts_with("sha256:"));
    assert!(!annotations.to_string().contains("s3cr3t"));
}

/// The unpacked rootfs holds the app and its dependencies.
fn assert_rootfs(rootfs: &Path) {
    assert!(rootfs.join("app/app.py").is_file());
    assert!(rootfs
        .join("usr/local/lib/python3.13/site-packages/fastapi/__init__.py")
        .is_file());
    assert!(rootfs.join("usr/local/bin/uvicorn").is_file());
}

fn umoci_unpack(layout_and_tag: &str, bundle: &Path) -> PathBuf {
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image", layout_and_tag])
            .arg(bundle),
    );
    bundle.join("rootfs")
}

#[test]
fn oci_layout_loads_in_skopeo_and_umoci_with_annotations() {
    if tools_missing(&["skopeo", "umoci", "uv", "git"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (recipe, head) = demo_in_git(&work.path().join("src"));
    let layout = work.path().join("layout");
    let report = json_of(&run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--oci-layout")
            .arg(&layout)
            .arg("--json"),
    ));
    let digest = report["digest"].as_str().unwrap();
    let image = format!("oci:{}:latest", layout.display());

    let inspected: Value =
        serde_json::from_slice(&run_ok(Command::new("skopeo").arg("inspect").arg(&image)).stdout)
            .unwrap();
    assert_eq!(inspected["Digest"], digest);
    let raw = skopeo_raw(&[], &image);
    assert_eq!(sha256_digest(&raw), digest);
    let annotations = annotations_of(&raw);
    assert_provenance(&annotations, &head);
    assert!(
        annotations["org.opencontainers.image.version"].is_null(),
        "HEAD has no git tag, so no version: {annotations}"
    );

    // skopeo copies it to another layout unchanged.
    let copy = work.path().join("copy");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(&image)
            .arg(format!("oci:{}:copied", copy.display())),
    );
    assert_eq!(
        sha256_digest(&skopeo_raw(&[], &format!("oci:{}:copied", copy.display()))),
        digest
    );
    // umoci checks every layer's digest and diff_id while unpacking.
    let rootfs = umoci_unpack(
        &format!("{}:latest", layout.display()),
        &work.path().join("bundle"),
    );
    assert_rootfs(&rootfs);
}

#[test]
fn docker_archive_loads_in_skopeo_and_podman() {
    if tools_missing(&["skopeo", "umoci", "uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let recipe = repo_root().join("recipes/fastapi-demo/alpine.toml");
    let archive = work.path().join("app.tar");
    let report = json_of(&run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--docker-archive")
            .arg(&archive)
            .arg("--json"),
    ));
    let config_digest = report["platforms"][0]["config_digest"].as_str().unwrap();
    let source = format!("docker-archive:{}", archive.display());
    assert_eq!(
        sha256_digest(&skopeo_raw(&["--config"], &source)),
        config_digest
    );
    let layout = work.path().join("layout");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(&source)
            .arg(format!("oci:{}:loaded", layout.display())),
    );
    let rootfs = umoci_unpack(
        &format!("{}:loaded", layout.display()),
        &work.path().join("bundle"),
    );
    assert_rootfs(&rootfs);

    // podman (with runc: crun fails in unprivileged sandboxes) is installed by scripts/setup.
    if tools_missing(&["podman", "runc"]) {
        return;
    }
    let home = work.path().join("podman");
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.env("HOME", &home)
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .arg("--root")
            .arg(home.join("root"))
            .arg("--runroot")
            .arg(home.join("run"))
            .args(["--runtime", "runc"])
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    };
    std::fs::create_dir_all(home.join("run")).unwrap();
    let out = run_ok(&mut podman(&["load", "-i", &archive.to_string_lossy()]));
    // The archive names the image (RepoTags; default `localhost/DIR:latest`,
    // DIR the recipe's dir), and the image loaded under it is this config.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("localhost/fastapi-demo:latest"), "{text}");
    let inspected: Value =
        serde_json::from_slice(&run_ok(&mut podman(&["image", "inspect", config_digest])).stdout)
            .unwrap();
    assert_eq!(inspected[0]["Config"]["Cmd"][0], "uvicorn");
    assert_eq!(inspected[0]["Config"]["WorkingDir"], "/app");
    assert_eq!(
        inspected[0]["RepoTags"][0], "localhost/fastapi-demo:latest",
        "the archive's name is the loaded image's"
    );
}

/// `slipway build` of `recipe` pushed to `reference` via the test registry; its `--json`.
fn push(registry: &Registry, cache: &Path, recipe: &Path, wheels: &Path, reference: &str) -> Value {
    json_of(&run_ok(
        slipway(cache)
            .arg("build")
            .arg(recipe)
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", registry.addr()))
            .args(["--offline", "--find-links"])
            .arg(wheels)
            .arg("--push")
            .arg(reference)
            .arg("--json"),
    ))
}

#[test]
fn pushed_image_has_version_from_its_git_tag_and_one_digest_for_every_tag() {
    if tools_missing(&["docker-registry", "skopeo", "uv", "git"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let registry = Registry::start();
    push_alpine(&registry);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (recipe, head) = demo_in_git(&work.path().join("src"));
    git(&work.path().join("src"), &["tag", "v1.4.2"]);
    let first = format!("{}/team/demo:1.4.2", registry.addr());
    let report = push(&registry, &cache, &recipe, &wheels, &first);
    let raw = skopeo_raw(&[], &format!("docker://{first}"));
    assert_eq!(sha256_digest(&raw), report["digest"]);
    let annotations = annotations_of(&raw);
    assert_provenance(&annotations, &head);
    assert_eq!(annotations["org.opencontainers.image.version"], "v1.4.2");
    // The destination's tag is not an input: the same build under another tag is the same image.
    let second = format!("{}/team/demo:latest", registry.addr());
    let again = push(&registry, &cache, &recipe, &wheels, &second);
    assert_eq!(again["digest"], report["digest"]);

    // The recipe's own annotations win over what slipway fills in.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "[image]\n",
        "[image]\nannotations = { \"org.opencontainers.image.version\" = \"2.0.0-rc1\" }\n",
    );
    std::fs::write(&recipe, text).unwrap();
    let third = format!("{}/team/demo:rc", registry.addr());
    push(&registry, &cache, &recipe, &wheels, &third);
    let raw = skopeo_raw(&[], &format!("docker://{third}"));
    assert_eq!(
        annotations_of(&raw)["org.opencontainers.image.version"],
        "2.0.0-rc1"
    );
}
