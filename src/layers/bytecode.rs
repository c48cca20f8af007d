//! Bytecode layers: `.pyc` compiled by a CPython of the base's minor version,
//! with the runtime path embedded, in unchecked-hash mode and a fixed order.
//!
//! One interpreter process compiles every file of a layer, sorted by image
//! path: marshal output can depend on what the same process compiled before
//! (cpython #129724), so the order and the partitioning are fixed.

use super::{Entry, EntryKind, Owner};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum BytecodeError {
    #[error(
        "no CPython {minor} found to compile bytecode (tried {tried}); install one with \
         `uv python install {minor}`, or pass `--python /path/to/python{minor}`"
    )]
    NoPython { minor: String, tried: String },
    #[error(
        "`{}` is {found}, but the base image runs CPython {wanted}: bytecode must be compiled \
         by the same minor version; pass a python{wanted} or install one with \
         `uv python install {wanted}`", python.display()
    )]
    WrongVersion {
        python: PathBuf,
        wanted: String,
        found: String,
    },
    #[error("could not run `{}`: {reason}", python.display())]
    NotRunnable { python: PathBuf, reason: String },
    #[error("compiling bytecode with `{}` failed: {stderr}", python.display())]
    Driver { python: PathBuf, stderr: String },
    #[error("path `{}` is not valid UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Finds a CPython of version `minor` (e.g. `3.13`): `explicit` if given (and
/// checked), else `python3.13` on `PATH` (pyenv shims last: each costs a
/// second or more), else `$PYENV_ROOT/versions/3.13.*/bin/python3.13`, else
/// what `uv python find` says. Remembered for the rest of the process.
pub fn find_python(minor: &str, explicit: Option<&Path>) -> Result<PathBuf, BytecodeError> {
    find_python_with_uv(Path::new("uv"), minor, explicit)
}

/// [`find_python`] with a given `uv` binary.
pub fn find_python_with_uv(
    uv: &Path,
    minor: &str,
    explicit: Option<&Path>,
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
    let found = search_python(uv, minor, explicit)?;
    if let Ok(mut cache) = FOUND.lock() {
        cache.push((minor.to_string(), explicit_key, found.clone()));
    }
    Ok(found)
}

fn search_python(
    uv: &Path,
    minor: &str,
    explicit: Option<&Path>,
) -> Result<PathBuf, BytecodeError> {
    if let Some(python) = explicit {
        let found = python_version(python)?;
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
        if python_version(&candidate).is_ok_and(|v| v == wanted) {
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
    let output = Command::new(uv)
        .args([
            "python",
            "find",
            "--no-python-downloads",
            "--no-project",
            minor,
        ])
        .stdin(Stdio::null())
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
fn python_version(python: &Path) -> Result<String, BytecodeError> {
    let output = Command::new(python)
        .args([
            "-I",
            "-c",
            "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BytecodeError::NotRunnable {
            python: python.to_path_buf(),
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(BytecodeError::NotRunnable {
            python: python.to_path_buf(),
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Reads `{"out_dir": ..., "jobs": [[source, image path], ...]}` on stdin,
/// compiles in image-path order, answers JSON on stdout.
const DRIVER: &str = r#"
import importlib.util, json, os, py_compile, sys
request = json.load(sys.stdin)
compiled, failed = [], []
for source, dfile in sorted(request["jobs"], key=lambda job: job[1]):
    pyc = importlib.util.cache_from_source(dfile)
    cfile = os.path.join(request["out_dir"], pyc.lstrip("/"))
    try:
        py_compile.compile(
            source, cfile=cfile, dfile=dfile, doraise=True, optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError as error:
        failed.append([dfile, error.msg])
        continue
    compiled.append([pyc, cfile])
json.dump({"compiled": compiled, "failed": failed}, sys.stdout)
"#;

#[derive(serde::Deserialize)]
struct DriverAnswer {
    compiled: Vec<(String, PathBuf)>,
    failed: Vec<(String, String)>,
}

/// What [`compile_report`] produced.
#[derive(Debug)]
pub struct Compiled {
    /// The `.pyc` files and their `__pycache__` dirs (no other parents).
    pub entries: Vec<Entry>,
    /// Sources that could not be compiled (image path, message), e.g. syntax
    /// errors; like `compileall`, they are skipped.
    pub skipped: Vec<(String, String)>,
}

/// Compiles `sources` (file on disk, absolute path in the image) into
/// `out_dir/<image dir>/__pycache__/<stem>.cpython-3XX.pyc` and returns their
/// entries (sorted; `__pycache__` dirs included with `owner`, other parents
/// left to the caller, see [`super::normalise_over`]). Sources that do not
/// compile are skipped with a warning on stderr.
pub fn compile(
    python: &Path,
    sources: &[(PathBuf, String)],
    out_dir: &Path,
    owner: Owner,
) -> Result<Vec<Entry>, BytecodeError> {
    let compiled = compile_report(python, sources, out_dir, owner)?;
    for (path, message) in &compiled.skipped {
        eprintln!(
            "warning: not compiling `{}`: {}",
            crate::sanitize::escape(path),
            crate::sanitize::escape(message.trim())
        );
    }
    Ok(compiled.entries)
}

/// [`compile`], returning the skipped files instead of printing them.
pub fn compile_report(
    python: &Path,
    sources: &[(PathBuf, String)],
    out_dir: &Path,
    owner: Owner,
) -> Result<Compiled, BytecodeError> {
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| BytecodeError::NonUtf8Path(p.to_path_buf()))
    };
    let jobs = sources
        .iter()
        .map(|(source, image)| Ok((utf8(source)?, image.clone())))
        .collect::<Result<Vec<_>, BytecodeError>>()?;
    let request = serde_json::json!({ "out_dir": utf8(out_dir)?, "jobs": jobs });
    std::fs::create_dir_all(out_dir).map_err(|e| BytecodeError::Io {
        path: out_dir.to_path_buf(),
        source: e,
    })?;

    let not_runnable = |e: std::io::Error| BytecodeError::NotRunnable {
        python: python.to_path_buf(),
        reason: e.to_string(),
    };
    let mut child = Command::new(python)
        .args(["-I", "-B", "-X", "utf8", "-c", DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(not_runnable)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let request = request.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let output = child.wait_with_output().map_err(not_runnable)?;
    let written = writer.join().expect("stdin writer thread");
    let driver_failed = |stderr: String| BytecodeError::Driver {
        python: python.to_path_buf(),
        stderr,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(driver_failed(format!("{}: {stderr}", output.status)));
    }
    written.map_err(not_runnable)?;
    let answer: DriverAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|e| driver_failed(format!("unreadable answer: {e}")))?;

    let mut entries = Vec::new();
    for (pyc, cfile) in answer.compiled {
        let size = std::fs::metadata(&cfile)
            .map_err(|e| BytecodeError::Io {
                path: cfile.clone(),
                source: e,
            })?
            .len();
        let path = pyc.trim_start_matches('/').to_string();
        if let Some((dir, _)) = path.rsplit_once('/') {
            entries.push(Entry {
                path: dir.to_string(),
                kind: EntryKind::Dir,
                mode: 0o755,
                owner,
            });
        }
        entries.push(Entry {
            path,
            kind: EntryKind::File {
                source: cfile,
                size,
                listed: None,
            },
            mode: 0o644,
            owner,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(Compiled {
        entries,
        skipped: answer.failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn python313() -> PathBuf {
        find_python("3.13", None).expect("a CPython 3.13 on this machine")
    }

    fn tree(dir: &Path, mtime: u64) -> Vec<(PathBuf, String)> {
        let files = [
            ("main.py", "import pkg\nprint(pkg.f('x'))\n"),
            (
                "pkg/__init__.py",
                "def f(x):\n    return x in {'a', 'b', 'c', 'd'}\n",
            ),
            ("pkg/broken.py", "def oops(:\n"),
        ];
        let mut sources = Vec::new();
        for (rel, body) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, body).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
            sources.push((path, format!("/app/{rel}")));
        }
        sources
    }

    #[test]
    fn same_sources_give_same_bytes_with_the_image_path_inside() {
        let python = python313();
        let dir = tempfile::tempdir().unwrap();
        let one = tree(&dir.path().join("src1"), 1_000_000);
        let mut two = tree(&dir.path().join("src2"), 2_000_000);
        two.reverse();
        let a = compile_report(&python, &one, &dir.path().join("out1"), Owner::default()).unwrap();
        let b = compile(&python, &two, &dir.path().join("out2"), Owner::default()).unwrap();
        let paths: Vec<&str> = a.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "app/__pycache__",
                "app/__pycache__/main.cpython-313.pyc",
                "app/pkg/__pycache__",
                "app/pkg/__pycache__/__init__.cpython-313.pyc",
            ]
        );
        assert_eq!(a.skipped.len(), 1);
        assert_eq!(a.skipped[0].0, "/app/pkg/broken.py");
        assert_eq!(a.entries.len(), b.len());
        for (x, y) in a.entries.iter().zip(&b) {
            assert_eq!((&x.path, x.mode), (&y.path, y.mode));
            if let (EntryKind::File { source: s1, .. }, EntryKind::File { source: s2, .. }) =
                (&x.kind, &y.kind)
            {
                assert_eq!(fs::read(s1).unwrap(), fs::read(s2).unwrap(), "{}", x.path);
                assert!(s1.starts_with(dir.path().join("out1")));
            }
        }
        let EntryKind::File { source, .. } = &a.entries[3].kind else {
            panic!()
        };
        let check = Command::new(&python)
            .args([
                "-I",
                "-c",
                "import marshal, sys; d = open(sys.argv[1], 'rb').read(); \
                 print(int.from_bytes(d[4:8], 'little'), marshal.loads(d[16:]).co_filename)",
            ])
            .arg(source)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            "1 /app/pkg/__init__.py",
            "unchecked-hash flags and the image path; {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    #[test]
    fn explicit_interpreters_are_checked() {
        let python = python313();
        assert_eq!(find_python("3.13", Some(&python)).unwrap(), python);
        let other = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
            .join("versions/3.11.7/bin/python3.11");
        if other.exists() {
            let err = find_python("3.13", Some(&other)).unwrap_err();
            assert!(matches!(err, BytecodeError::WrongVersion { .. }), "{err}");
            assert!(err.to_string().contains("uv python install 3.13"), "{err}");
        }
        let err = find_python("3.13", Some(Path::new("/nonexistent/python3.13"))).unwrap_err();
        assert!(matches!(err, BytecodeError::NotRunnable { .. }), "{err}");
    }

    #[test]
    fn a_missing_version_says_how_to_get_one() {
        let err = find_python("3.99", None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("uv python install 3.99"), "{text}");
        assert!(text.contains("--python /path/to/python3.99"), "{text}");
    }
}
