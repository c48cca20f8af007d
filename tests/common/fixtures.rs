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

/// A uv workspace at `root`: no `[project]` of its own, members
/// `packages/greeting` (a library) and `packages/backend` (a Flask app on
/// gunicorn that imports it), both on uv's own build backend. Not locked.
#[allow(dead_code)] // not every test binary builds a workspace
pub fn write_uv_workspace(root: &std::path::Path) {
    let uv_build =
        "[build-system]\nrequires = [\"uv_build>=0.13.9,<0.14\"]\nbuild-backend = \"uv_build\"\n";
    let files = [
        (
            "pyproject.toml",
            "[tool.uv.workspace]\nmembers = [\"packages/*\"]\n".to_string(),
        ),
        (
            "packages/greeting/pyproject.toml",
            format!(
                "[project]\nname = \"greeting\"\nversion = \"0.1.0\"\nrequires-python = \">=3.13\"\n\
                 dependencies = []\n{uv_build}"
            ),
        ),
        (
            "packages/greeting/src/greeting/__init__.py",
            "WORD = \"hello\"\n".to_string(),
        ),
        (
            "packages/backend/pyproject.toml",
            format!(
                "[project]\nname = \"backend\"\nversion = \"0.1.0\"\nrequires-python = \">=3.13\"\n\
                 dependencies = [\"greeting\", \"flask\", \"gunicorn\"]\n\
                 [tool.uv.sources]\ngreeting = {{ workspace = true }}\n{uv_build}"
            ),
        ),
        ("packages/backend/src/backend/__init__.py", String::new()),
        (
            "packages/backend/src/backend/web.py",
            "from flask import Flask\nfrom greeting import WORD\n\napp = Flask(__name__)\n\n\n\
             @app.get(\"/\")\ndef root():\n    return {\"word\": WORD}\n"
                .to_string(),
        ),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// `uv lock` of the project or workspace at `dir`, offline, against `wheels` only.
#[allow(dead_code)]
pub fn uv_lock_offline(dir: &std::path::Path, python: &std::path::Path, wheels: &std::path::Path) {
    run_ok(
        Command::new("uv")
            .arg("lock")
            .arg("--python")
            .arg(python)
            // --no-index: the wheelhouse alone, not whatever newer releases
            // uv's cache remembers from the index (a lock naming one the
            // wheelhouse lacks fails the offline build that follows).
            .args([
                "--offline",
                "--no-index",
                "--no-python-downloads",
                "--find-links",
            ])
            .arg(wheels)
            .current_dir(dir),
    );
}
