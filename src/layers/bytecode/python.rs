//! Finding the CPython that compiles bytecode: the base's minor version,
//! given explicitly or searched for, and remembered for the process.

use super::BytecodeError;
use crate::layers::tool_version;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Finds a CPython of version `minor` (e.g. `3.13`): `explicit` if given (and
/// checked), else `python3.13` on `PATH` (pyenv shims last: each costs a
/// second or more), else `$PYENV_ROOT/versions/3.13.*/bin/python3.13`, else
/// what `uv python find` says. Remembered for the rest of the process; what
/// each interpreter said its version is also in `memo_dir` (the cache's
/// tool memos, see [`tool_version`]) for later builds, so a no-change build
/// starts no CPython to ask.
pub fn find_python(
    minor: &str,
    explicit: Option<&Path>,
    memo_dir: Option<&Path>,
) -> Result<PathBuf, BytecodeError> {
    find_python_with_uv(Path::new("uv"), minor, explicit, memo_dir)
}

/// [`find_python`] with a given `uv` binary.
pub fn find_python_with_uv(
    uv: &Path,
    minor: &str,
    explicit: Option<&Path>,
    memo_dir: Option<&Path>,
) -> Result<PathBuf, BytecodeError> {
    static FOUND: std::sync::Mutex<Vec<(String, Option<PathBuf>, PathBuf)>> =
        std::sync::Mutex::new(Vec::new());
    let explicit_key = explicit.map(Path::to_path_buf);
    if let Some((_, _, found)) = FOUND
        .lock()
        .map_err(|_| BytecodeError::NoPython {
            minor: minor.to_string(),
            tried: String::new(),
        })?
        .iter()
        .find(|(m, e, _)| m == minor && *e == explicit_key)
    {
        return Ok(found.clone());
    }
    let found = search_python(uv, minor, explicit, memo_dir)?;
    if let Ok(mut cache) = FOUND.lock() {
        cache.push((minor.to_string(), explicit_key, found.clone()));
    }
    Ok(found)
}

fn search_python(
    uv: &Path,
    minor: &str,
    explicit: Option<&Path>,
    memo_dir: Option<&Path>,
) -> Result<PathBuf, BytecodeError> {
    if let Some(python) = explicit {
        let found = python_version(python, memo_dir)?;
        return if found == format!("cpython {minor}") {
            Ok(python.to_path_buf())
        } else {
            Err(BytecodeError::WrongVersion {
                python: python.to_path_buf(),
                wanted: minor.to_string(),
                found,
            })
        };
    }
    let mut tried = Vec::new();
    let wanted = format!("cpython {minor}");
    let (direct, shims) = path_candidates(minor);
    let lazy_uv = || uv_python_find(uv, minor).into_iter();
    for candidate in direct
        .into_iter()
        .chain(pyenv_candidates(minor))
        .chain(std::iter::once_with(lazy_uv).flatten())
        .chain(shims)
    {
        if python_version(&candidate, memo_dir).is_ok_and(|v| v == wanted) {
            return Ok(candidate);
        }
        tried.push(format!("`{}`", candidate.display()));
    }
    tried.insert(0, "`uv python find`".to_string());
    Err(BytecodeError::NoPython {
        minor: minor.to_string(),
        tried: tried.join(", "),
    })
}

fn uv_python_find(uv: &Path, minor: &str) -> Option<PathBuf> {
    let output = crate::layers::uv::uv(uv, &["python", "find", "--no-project", minor])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then(|| PathBuf::from(text))
}

/// `python3.X` on PATH: (real interpreters, pyenv-style shims).
fn path_candidates(minor: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let name = format!("python{minor}");
    let found: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&name))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found
        .into_iter()
        .partition(|p| !p.components().any(|c| c.as_os_str() == "shims"))
}

fn pyenv_candidates(minor: &str) -> Vec<PathBuf> {
    let name = format!("python{minor}");
    let mut out = Vec::new();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv {
        let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(root.join("versions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|dir| {
                let version = dir.file_name().into_string().ok()?;
                let patch = version.strip_prefix(&format!("{minor}."))?.parse().ok()?;
                Some((patch, dir.path().join("bin").join(&name)))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        out.extend(versions.into_iter().map(|(_, p)| p).filter(|p| p.is_file()));
    }
    out
}

/// `cpython 3.13` (implementation name and minor version) of an interpreter.
fn python_version(python: &Path, memo_dir: Option<&Path>) -> Result<String, BytecodeError> {
    ask(
        python,
        "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])",
        memo_dir,
    )
}

/// The interpreter's `.pyc` magic number (hex), which decides what its
/// bytecode looks like; remembered for the rest of the process, and across
/// builds in `memo_dir` (see [`find_python`]).
pub fn magic(python: &Path, memo_dir: Option<&Path>) -> Result<String, BytecodeError> {
    static FOUND: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let remembered = FOUND.lock().ok().and_then(|found| {
        let hit = found.iter().find(|(p, _)| p == python);
        hit.map(|(_, magic)| magic.clone())
    });
    if let Some(magic) = remembered {
        return Ok(magic);
    }
    let magic = ask(
        python,
        "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())",
        memo_dir,
    )?;
    if let Ok(mut found) = FOUND.lock() {
        found.push((python.to_path_buf(), magic.clone()));
    }
    Ok(magic)
}

/// What `python -I -c CODE` prints (trimmed; not empty), remembered in
/// `memo_dir` for this exact binary (see [`tool_version`]).
fn ask(python: &Path, code: &str, memo_dir: Option<&Path>) -> Result<String, BytecodeError> {
    let memo = tool_version::Memo::of(python, &format!("-I -c {code}"), memo_dir);
    memo.answer(|| {
        let not_runnable = |reason: String| BytecodeError::NotRunnable {
            python: python.to_path_buf(),
            reason,
        };
        let output = Command::new(python)
            .args(["-I", "-c", code])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| not_runnable(e.to_string()))?;
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || answer.is_empty() {
            return Err(not_runnable(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(answer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_remembered_per_interpreter_binary() {
        let python = find_python("3.13", None, None).expect("a CPython 3.13 on this machine");
        let dir = tempfile::tempdir().unwrap();
        let memo_dir = dir.path().join("memo");
        assert_eq!(
            python_version(&python, Some(&memo_dir)).unwrap(),
            "cpython 3.13"
        );
        let memos: Vec<_> = std::fs::read_dir(&memo_dir).unwrap().flatten().collect();
        assert_eq!(memos.len(), 1);
        // What the memo says is believed without starting the interpreter,
        // both when checking an explicit one and when searching.
        std::fs::write(memos[0].path(), "cpython 9.8").unwrap();
        assert_eq!(
            python_version(&python, Some(&memo_dir)).unwrap(),
            "cpython 9.8"
        );
        assert_eq!(
            find_python("9.8", Some(&python), Some(&memo_dir)).unwrap(),
            python
        );
        // Without the memo dir, the interpreter is asked.
        assert_eq!(python_version(&python, None).unwrap(), "cpython 3.13");
        // The magic number is another question: its own memo.
        let magic = ask(
            &python,
            "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())",
            Some(&memo_dir),
        )
        .unwrap();
        assert_eq!(magic.len(), 8, "{magic}");
        assert_eq!(std::fs::read_dir(&memo_dir).unwrap().count(), 2);
    }
}
