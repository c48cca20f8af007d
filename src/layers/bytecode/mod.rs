//! Bytecode layers: `.pyc` compiled by a CPython of the base's minor version,
//! with the runtime path embedded, in unchecked-hash mode.
//!
//! [`pool`] compiles with one worker per core, byte-identical for any number
//! of workers; [`wheels`] compiles each wheel once, ever, and assembles the
//! site-packages bytecode layer from the per-wheel store; [`ahead`] fills
//! that store from the wheels while uv installs them.

pub mod ahead;
mod pool;
mod python;
pub mod sources;
pub mod stdlib;
pub mod wheels;

pub use pool::{default_workers, read_file, PycSlice, ReadSource, UNIT_FILES};
pub use python::{find_python, find_python_with_uv, magic};
pub use stdlib::SELECTION_FORMAT as STDLIB_SELECTION_FORMAT;

use super::{Entry, EntryKind, Owner};
use std::path::{Path, PathBuf};

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
    #[error("SLIPWAY_JOBS is `{0}`; set it to a number of compiler workers (1 or more)")]
    BadJobs(String),
    #[error("path `{}` is not valid UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
    /// A source that changed under the build or can't be read (the
    /// message names it).
    #[error("{0}")]
    Source(std::io::Error),
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`compile_report`] produced.
#[derive(Debug)]
pub struct Compiled {
    /// The `.pyc` files and their `__pycache__` dirs (no other parents).
    pub entries: Vec<Entry>,
    /// Sources that could not be compiled (image path, message), e.g. syntax
    /// errors; like `compileall`, they are skipped.
    pub skipped: Vec<(String, String)>,
    /// How many sources were compiled by this call (the rest came from a store).
    pub compiled_files: usize,
}

impl Compiled {
    /// Says on stderr which sources were skipped and why (escaped: the
    /// paths and messages come from the app and its wheels).
    pub fn warn_skipped(&self) {
        for (path, message) in &self.skipped {
            eprintln!(
                "warning: not compiling `{}`: {}",
                crate::sanitize::escape(path),
                crate::sanitize::escape(message.trim())
            );
        }
    }
}

/// Compiles `sources` (file on disk, absolute path in the image) into
/// `out_dir/<image dir>/__pycache__/<stem>.cpython-3XX.pyc` and returns their
/// entries (sorted; `__pycache__` dirs included with `owner`, other parents
/// left to the caller, see [`super::normalise_over`]). Sources that do not
/// compile are skipped with a warning on stderr. `read` reads each source
/// (see [`ReadSource`]).
pub fn compile(
    python: &Path,
    sources: &[(PathBuf, String)],
    read: &ReadSource<'_>,
    out_dir: &Path,
    owner: Owner,
) -> Result<Vec<Entry>, BytecodeError> {
    let compiled = compile_report(python, sources, read, out_dir, owner)?;
    compiled.warn_skipped();
    Ok(compiled.entries)
}

/// [`compile`], returning the skipped files instead of printing them.
pub fn compile_report(
    python: &Path,
    sources: &[(PathBuf, String)],
    read: &ReadSource<'_>,
    out_dir: &Path,
    owner: Owner,
) -> Result<Compiled, BytecodeError> {
    compile_with_workers(python, sources, read, out_dir, owner, default_workers()?)
}

/// [`compile_report`] with a given number of workers (the bytes don't depend on it).
pub fn compile_with_workers(
    python: &Path,
    sources: &[(PathBuf, String)],
    read: &ReadSource<'_>,
    out_dir: &Path,
    owner: Owner,
    workers: usize,
) -> Result<Compiled, BytecodeError> {
    std::fs::create_dir_all(out_dir).map_err(|e| BytecodeError::Io {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    let units = pool::units(sources, out_dir)?;
    let mut compiled = Vec::new();
    let mut skipped = Vec::new();
    for answer in pool::run(python, &units, read, workers)? {
        compiled.extend(answer.compiled);
        skipped.extend(answer.failed);
    }
    let compiled_files = compiled.len() + skipped.len();
    Ok(Compiled {
        entries: pyc_entries(compiled, owner),
        skipped,
        compiled_files,
    })
}

/// Entries for `.pyc` files (image path, where its bytes are) and their
/// `__pycache__` dirs, sorted.
fn pyc_entries(compiled: Vec<(String, PycSlice)>, owner: Owner) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (pyc, slice) in compiled {
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
            kind: EntryKind::Packed {
                pack: slice.pack,
                offset: slice.offset,
                size: slice.size,
            },
            mode: 0o644,
            owner,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;

    fn python313() -> PathBuf {
        find_python("3.13", None, None).expect("a CPython 3.13 on this machine")
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
        let a = compile_report(
            &python,
            &one,
            &read_file,
            &dir.path().join("out1"),
            Owner::default(),
        )
        .unwrap();
        let b = compile(
            &python,
            &two,
            &read_file,
            &dir.path().join("out2"),
            Owner::default(),
        )
        .unwrap();
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
        // Where and why, as py_compile would say it (image path, line, error).
        let why = &a.skipped[0].1;
        assert!(
            why.starts_with("File \"/app/pkg/broken.py\", line "),
            "{why}"
        );
        assert!(why.contains("SyntaxError"), "{why}");
        assert_eq!(a.entries.len(), b.len());
        for (x, y) in a.entries.iter().zip(&b) {
            assert_eq!((&x.path, x.mode), (&y.path, y.mode));
            assert_eq!(
                crate::layers::read_entry(x).unwrap(),
                crate::layers::read_entry(y).unwrap(),
                "{}",
                x.path
            );
            if let EntryKind::Packed { pack, .. } = &x.kind {
                assert!(pack.starts_with(dir.path().join("out1")));
            }
        }
        let pyc = dir.path().join("init.pyc");
        fs::write(&pyc, crate::layers::read_entry(&a.entries[3]).unwrap()).unwrap();
        let source = &pyc;
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
    fn a_source_that_cannot_be_read_fails_the_build_with_the_reason() {
        let python = python313();
        let dir = tempfile::tempdir().unwrap();
        let mut sources = tree(&dir.path().join("src"), 1);
        let not_a_file = dir.path().join("src/dir.py");
        fs::create_dir(&not_a_file).unwrap();
        sources.push((not_a_file, "/app/dir.py".into()));
        for workers in [1, 2] {
            let out = dir.path().join(format!("out{workers}"));
            let err = compile_with_workers(
                &python,
                &sources,
                &read_file,
                &out,
                Owner::default(),
                workers,
            )
            .unwrap_err();
            let BytecodeError::Io { path, source } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(path, &dir.path().join("src/dir.py"));
            assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory, "{err}");
        }
    }

    #[test]
    fn explicit_interpreters_are_checked() {
        let python = python313();
        assert_eq!(find_python("3.13", Some(&python), None).unwrap(), python);
        let other = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
            .join("versions/3.11.7/bin/python3.11");
        if other.exists() {
            let err = find_python("3.13", Some(&other), None).unwrap_err();
            assert!(matches!(err, BytecodeError::WrongVersion { .. }), "{err}");
            assert!(err.to_string().contains("uv python install 3.13"), "{err}");
        }
        let err =
            find_python("3.13", Some(Path::new("/nonexistent/python3.13")), None).unwrap_err();
        assert!(matches!(err, BytecodeError::NotRunnable { .. }), "{err}");
    }

    #[test]
    fn a_missing_version_says_how_to_get_one() {
        let err = find_python("3.99", None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("uv python install 3.99"), "{text}");
        assert!(text.contains("--python /path/to/python3.99"), "{text}");
    }
}
