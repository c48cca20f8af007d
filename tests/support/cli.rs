//! Helpers for the tests that drive the `slipway` binary (inspect, init,
//! interop, progress): the wheelhouse, the committed alpine base, a command
//! isolated from the user's cache and credentials, and output checks.
//!
//! Include with `#[path = "support/cli.rs"] mod cli;` after `mod common;`.
#![allow(dead_code)]

use crate::common::registry::Registry;
use crate::common::skip_or_fail;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed python:3.13-alpine stand-in (OCI layout, tag `3.13-alpine`).
pub fn alpine_layout() -> PathBuf {
    repo_root().join("vendor-test-images/python-3.13-alpine")
}

/// True when one of `tools` is missing and the test should be skipped (a failure in CI).
pub fn tools_missing(tools: &[&str]) -> bool {
    tools.iter().any(|t| skip_or_fail(t))
}

/// The real wheels the tests install offline; made by `scripts/wheelhouse`.
pub fn wheelhouse() -> Option<PathBuf> {
    let dir = repo_root().join("target/wheelhouse");
    let has_wheels = std::fs::read_dir(&dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "whl")))
    });
    if has_wheels {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "no wheels in {}: run scripts/wheelhouse (scripts/setup does)",
            dir.display()
        );
    }
    eprintln!(
        "skipping: no wheelhouse at {} (run scripts/wheelhouse)",
        dir.display()
    );
    None
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `slipway ARGS` with its cache in `cache` and no docker credentials.
pub fn slipway(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env("SLIPWAY_CACHE_DIR", cache);
    cmd.env("DOCKER_CONFIG", cache.join("no-docker-config"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// `slipway build RECIPE` offline from the wheelhouse, base from the committed layout.
pub fn build_offline(cache: &Path, recipe: &Path, wheels: &Path) -> Command {
    let mut cmd = slipway(cache);
    cmd.arg("build").arg(recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.arg("--offline").arg("--find-links").arg(wheels);
    cmd
}

/// Copies the committed alpine base (all platforms) into `registry`.
pub fn push_alpine(registry: &Registry) {
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:3.13-alpine", alpine_layout().display()))
            .arg(format!(
                "docker://{}/library/python:3.13-alpine",
                registry.addr()
            )),
    );
}

/// `skopeo inspect --raw [extra] IMAGE`.
pub fn skopeo_raw(extra: &[&str], image: &str) -> Vec<u8> {
    run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .args(extra)
            .arg(image),
    )
    .stdout
}

/// Copies a dir tree (files, dirs, symlinks), skipping names in `skip`.
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name.to_string_lossy() == *s) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest, skip);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), dest).unwrap();
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
