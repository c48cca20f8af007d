//! Fixtures shared by the tests that build images: the repository root, the
//! committed python:3.13-alpine stand-in, the offline wheelhouse, running a
//! command that must succeed, and pushing the alpine base to a registry.

use super::registry::Registry;
use super::{skip_or_fail, skip_or_fail_because};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[allow(unused_imports)] // kept for tests that import it from here
pub use super::in_ci;

/// The committed python:3.13-alpine stand-in (OCI layout, tag `3.13-alpine`).
pub fn alpine_layout() -> PathBuf {
    repo_root().join("vendor-test-images/python-3.13-alpine")
}

/// True when one of `tools` is missing and the test should be skipped (a failure in CI).
pub fn tools_missing(tools: &[&str]) -> bool {
    tools.iter().any(|t| skip_or_fail(t))
}

/// The real wheels the tests install offline; made by `scripts/wheelhouse`.
/// None (skip) when absent, except in CI.
pub fn wheelhouse() -> Option<PathBuf> {
    let dir = repo_root().join("target/wheelhouse");
    let has_wheels = std::fs::read_dir(&dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "whl")))
    });
    if has_wheels {
        return Some(dir);
    }
    skip_or_fail_because(&format!(
        "no wheels in {}: run scripts/wheelhouse (scripts/setup does)",
        dir.display()
    ));
    None
}

/// Runs `cmd` to the end; panics (with its output) unless it succeeds.
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

/// Copies the committed alpine base (all platforms) into `registry`, with
/// the registry's credentials when it has some.
pub fn push_alpine(registry: &Registry) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
    if let Some((user, pass)) = registry.credentials() {
        cmd.arg(format!("--dest-creds={user}:{pass}"));
    }
    cmd.arg(format!("oci:{}:3.13-alpine", alpine_layout().display()));
    cmd.arg(format!(
        "docker://{}/library/python:3.13-alpine",
        registry.addr()
    ));
    run_ok(&mut cmd);
}

/// `skopeo inspect --tls-verify=false --raw [extra] IMAGE`: its stdout.
pub fn skopeo_raw(extra: &[&str], image: &str) -> Vec<u8> {
    run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .args(extra)
            .arg(image),
    )
    .stdout
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:HEX` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}
