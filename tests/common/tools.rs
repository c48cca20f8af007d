//! The real host tools the builds in tests run: a CPython 3.13 executable
//! (not a pyenv shim) and the uv executable, and the versions they report
//! (recorded beside the golden digests: both shape the image's bytes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn runs_as_python(python: &Path, minor: &str) -> bool {
    Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == minor)
}

/// A real CPython 3.13 executable (not a pyenv shim): `SLIPWAY_PYTHON`,
/// `uv python find 3.13`, `python3.13` on PATH, `$PYENV_ROOT/versions/3.13.*`.
pub fn find_python313() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SLIPWAY_PYTHON") {
        candidates.push(p.into());
    }
    if let Ok(o) = Command::new("uv")
        .args([
            "python",
            "find",
            "--no-python-downloads",
            "--no-project",
            "3.13",
        ])
        .stderr(Stdio::null())
        .output()
    {
        if o.status.success() {
            candidates.push(String::from_utf8_lossy(&o.stdout).trim().into());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("python3.13")));
    }
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv {
        let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with("3.13."))
            .map(|d| d.path().join("bin/python3.13"))
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .filter(|p| !is_shim(p))
        .find(|p| runs_as_python(p, "3.13"))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

/// A script (pyenv shim) rather than the real executable.
fn is_shim(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_or(true, |_| &magic != b"\x7fELF")
}

/// The real uv executable: `SLIPWAY_UV`, `uv` on PATH if it is not a shim,
/// else what `pyenv which uv` names.
pub fn find_uv() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLIPWAY_UV") {
        return Some(p.into());
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("uv"))
            .find(|p| p.is_file())
    })?;
    if !is_shim(&on_path) {
        return Some(std::fs::canonicalize(&on_path).unwrap_or(on_path));
    }
    let out = Command::new("pyenv").args(["which", "uv"]).output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && !is_shim(&p)).then_some(p)
}

/// The first line `program ARGS` prints (stdout), trimmed; panics if it fails.
pub fn version_line(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed",
        program.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
