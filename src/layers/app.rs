//! The app layer's entries: the source dir walked in sorted order, honouring
//! default excludes, the recipe's excludes and `.dockerignore`.

use super::dockerignore::{Matcher, Pattern};
use super::{normalise, Entry, EntryKind, Owner};
use std::fs::FileType;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub use super::python_sources;

/// Always excluded, before the recipe's and `.dockerignore`'s patterns.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".env",
    ".env.*",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    "*.pem",
    "*.key",
];

pub struct AppSource<'a> {
    pub source_dir: &'a Path,
    /// Absolute destination in the image, e.g. `/app`.
    pub destination: &'a str,
    pub excludes: &'a [String],
    pub owner: Owner,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("source dir `{0}` does not exist or is not a directory")]
    MissingSource(PathBuf),
    #[error("`{path}` is a symlink to `{target}`, which points outside the source dir")]
    SymlinkOutside { path: PathBuf, target: String },
    #[error("`{path}` is an absolute symlink (to `{target}`); make it relative to stay inside the source dir")]
    AbsoluteSymlink { path: PathBuf, target: String },
    #[error("`{path}` is a {kind}, which cannot be put in an image layer")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("file name `{}` is not valid UTF-8", path.display())]
    NonUtf8Name { path: PathBuf },
    #[error("destination `{0}` must be an absolute path without `.` or `..`")]
    BadDestination(String),
    #[error("bad exclude pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Walks the source dir and returns the layer's entries, normalised (sorted,
/// parents first), under `destination` (which is itself included).
///
/// Exclusion patterns are evaluated in order with Docker's `.dockerignore`
/// semantics, last match wins: [`DEFAULT_EXCLUDES`] (matched at any depth),
/// then the recipe's `excludes`, then `<source_dir>/.dockerignore`; a later
/// `!pattern` can re-include what an earlier one excluded.
pub fn collect(source: &AppSource) -> Result<Vec<Entry>, AppError> {
    let root = source.source_dir;
    if !root.is_dir() {
        return Err(AppError::MissingSource(root.to_path_buf()));
    }
    let prefix = destination_prefix(source.destination)?;
    let matcher = exclusions(root, source.excludes)?;
    let canonical_root = root.canonicalize().map_err(|e| io_error(root, e))?;
    let image_path = |rel: &str| match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => prefix.clone(),
        (false, false) => format!("{prefix}/{rel}"),
    };

    let mut entries = Vec::new();
    if !prefix.is_empty() {
        entries.push(Entry {
            path: prefix.clone(),
            kind: EntryKind::Dir,
            mode: 0o755,
            owner: source.owner,
        });
    }
    let mut walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(item) = walk.next() {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            io_error(&path, e.into())
        })?;
        let path = item.path();
        let rel_path = path.strip_prefix(root).expect("walk stays under its root");
        let rel = rel_path.to_str();
        let lossy = rel_path.to_string_lossy();
        let file_type = item.file_type();
        if matcher.is_excluded(&lossy) {
            if file_type.is_dir() && !matcher.must_descend(&lossy) {
                walk.skip_current_dir();
            }
            continue;
        }
        let Some(rel) = rel else {
            return Err(AppError::NonUtf8Name {
                path: path.to_path_buf(),
            });
        };
        let meta = item.metadata().map_err(|e| io_error(path, e.into()))?;
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File {
                source: path.to_path_buf(),
                size: meta.len(),
            }
        } else if file_type.is_symlink() {
            EntryKind::Symlink {
                target: checked_link(root, &canonical_root, path, rel_path)?,
            }
        } else {
            return Err(AppError::SpecialFile {
                path: path.to_path_buf(),
                kind: special_kind(file_type),
            });
        };
        let mode = match kind {
            EntryKind::File { .. } if meta.permissions().mode() & 0o111 != 0 => 0o755,
            EntryKind::File { .. } => 0o644,
            EntryKind::Dir => 0o755,
            EntryKind::Symlink { .. } => 0o777,
        };
        entries.push(Entry {
            path: image_path(rel),
            kind,
            mode,
            owner: source.owner,
        });
    }
    // Parents added here are above the destination (e.g. `srv` of `/srv/app`):
    // root-owned, like the base image's own directories.
    Ok(normalise(entries, Owner::default()))
}

/// `/app` → `app`, `/` → `` (entries at the image root).
fn destination_prefix(destination: &str) -> Result<String, AppError> {
    let bad = || AppError::BadDestination(destination.to_string());
    let rest = destination.strip_prefix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

fn exclusions(root: &Path, excludes: &[String]) -> Result<Matcher, AppError> {
    let bad = |pattern: &str, reason: String| AppError::BadPattern {
        pattern: pattern.to_string(),
        reason,
    };
    let mut matcher = Matcher::default();
    for default in DEFAULT_EXCLUDES {
        let pattern = format!("**/{default}");
        matcher.push(Pattern::parse(&pattern).map_err(|e| bad(default, e))?);
    }
    for pattern in excludes {
        let trimmed = pattern.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        matcher.push(Pattern::parse(trimmed).map_err(|e| bad(pattern, e))?);
    }
    let file = root.join(".dockerignore");
    match std::fs::read(&file) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            matcher
                .add_file_text(&text)
                .map_err(|(pattern, reason)| bad(&pattern, reason))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&file, e)),
    }
    Ok(matcher)
}

/// A symlink's target if it is relative and stays inside the source dir, both
/// lexically and (when it exists) once resolved on disk.
fn checked_link(
    root: &Path,
    canonical_root: &Path,
    path: &Path,
    rel_path: &Path,
) -> Result<String, AppError> {
    let target_path = std::fs::read_link(path).map_err(|e| io_error(path, e))?;
    let target = target_path
        .to_str()
        .ok_or_else(|| AppError::NonUtf8Name {
            path: path.to_path_buf(),
        })?
        .to_string();
    if target_path.is_absolute() {
        return Err(AppError::AbsoluteSymlink {
            path: path.to_path_buf(),
            target,
        });
    }
    let outside = || AppError::SymlinkOutside {
        path: path.to_path_buf(),
        target: target.clone(),
    };
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    let link_dir = rel_path.parent().unwrap_or(Path::new(""));
    for component in link_dir.components().chain(target_path.components()) {
        match component {
            Component::Normal(name) => depth.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                depth.pop().ok_or_else(outside)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if let Ok(resolved) = root.join(link_dir).join(&target_path).canonicalize() {
        if !resolved.starts_with(canonical_root) {
            return Err(outside());
        }
    }
    Ok(target)
}

fn special_kind(file_type: FileType) -> &'static str {
    if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn io_error(path: &Path, source: std::io::Error) -> AppError {
    AppError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, body: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }

    fn run(root: &Path, destination: &str, excludes: &[&str]) -> Result<Vec<Entry>, AppError> {
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        collect(&AppSource {
            source_dir: root,
            destination,
            excludes: &excludes,
            owner: Owner {
                uid: 1000,
                gid: 1000,
            },
        })
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn walks_sorted_under_the_destination_with_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "main.py", "print(1)\n");
        write(dir.path(), "pkg/z.py", "");
        write(dir.path(), "pkg/a.py", "");
        write(dir.path(), "pkg-data.txt", "");
        let entries = run(dir.path(), "/srv/app", &[]).unwrap();
        assert_eq!(
            paths(&entries),
            [
                "srv",
                "srv/app",
                "srv/app/main.py",
                "srv/app/pkg",
                "srv/app/pkg-data.txt",
                "srv/app/pkg/a.py",
                "srv/app/pkg/z.py"
            ]
        );
        assert_eq!(
            entries[0].owner,
            Owner::default(),
            "above the destination: root"
        );
        assert_eq!(entries[1].owner.uid, 1000);
        assert_eq!(entries[1].kind, EntryKind::Dir);
        let main = &entries[2];
        assert_eq!(
            main.kind,
            EntryKind::File {
                source: dir.path().join("main.py"),
                size: 9
            }
        );
    }

    #[test]
    fn modes_are_normalised() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "run.sh", "");
        write(dir.path(), "data.txt", "");
        write(dir.path(), "odd", "");
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(
            dir.path().join("data.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::set_permissions(dir.path().join("odd"), fs::Permissions::from_mode(0o4710)).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::set_permissions(dir.path().join("d"), fs::Permissions::from_mode(0o700)).unwrap();
        let entries = run(dir.path(), "/app", &[]).unwrap();
        let mode = |p: &str| entries.iter().find(|e| e.path == p).unwrap().mode;
        assert_eq!(mode("app"), 0o755);
        assert_eq!(mode("app/d"), 0o755);
        assert_eq!(mode("app/run.sh"), 0o755);
        assert_eq!(mode("app/odd"), 0o755);
        assert_eq!(mode("app/data.txt"), 0o644);
    }

    #[test]
    fn default_excludes_apply_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            ".git/config",
            ".env",
            ".env.local",
            "pkg/__pycache__/m.cpython-313.pyc",
            "pkg/m.pyc",
            ".venv/bin/python",
            "sub/venv/x",
            "certs/server.key",
            "pkg/m.py",
            ".envrc",
        ] {
            write(dir.path(), rel, "");
        }
        let entries = run(dir.path(), "/app", &[]).unwrap();
        assert_eq!(
            paths(&entries),
            [
                "app",
                "app/.envrc",
                "app/certs",
                "app/pkg",
                "app/pkg/m.py",
                "app/sub"
            ]
        );
    }

    #[test]
    fn dockerignore_and_recipe_excludes_use_docker_semantics() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "README.md",
            "docs/guide.md",
            "docs/keep.md",
            "tests/test_a.py",
            "src/tests/test_b.py",
            "build/out.bin",
            "data/a.csv",
            "data/deep/b.csv",
            "main.py",
        ] {
            write(dir.path(), rel, "");
        }
        write(
            dir.path(),
            ".dockerignore",
            "# comment\n*.md\n/tests\nbuild/\ndocs\n!docs/keep.md\n**/*.csv\n.dockerignore\n",
        );
        let entries = run(dir.path(), "/app", &["main.py", "!README.md"]).unwrap();
        // `!README.md` comes before `.dockerignore`'s `*.md`, which wins.
        assert_eq!(
            paths(&entries),
            [
                "app",
                "app/data",
                "app/data/deep",
                "app/docs",
                "app/docs/keep.md",
                "app/src",
                "app/src/tests",
                "app/src/tests/test_b.py"
            ]
        );
        let docs = entries.iter().find(|e| e.path == "app/docs").unwrap();
        assert_eq!((docs.mode, docs.owner), (0o755, Owner::default()));
    }

    #[test]
    fn dockerignore_can_reinclude_a_default_exclude() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".env.example", "");
        write(dir.path(), ".env", "");
        write(dir.path(), ".dockerignore", "!.env.example\n");
        let entries = run(dir.path(), "/app", &[]).unwrap();
        assert_eq!(
            paths(&entries),
            ["app", "app/.dockerignore", "app/.env.example"]
        );
    }

    #[test]
    fn symlinks_inside_are_kept_others_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        write(&root, "pkg/real.py", "");
        fs::create_dir(tmp.path().join("outside")).unwrap();
        symlink("real.py", root.join("pkg/alias.py")).unwrap();
        symlink("../pkg", root.join("pkg/loop")).unwrap();
        symlink("missing", root.join("dangling")).unwrap();
        let entries = run(&root, "/app", &[]).unwrap();
        let alias = entries
            .iter()
            .find(|e| e.path == "app/pkg/alias.py")
            .unwrap();
        assert_eq!(
            alias.kind,
            EntryKind::Symlink {
                target: "real.py".into()
            }
        );
        assert_eq!(alias.mode, 0o777);
        assert!(entries.iter().any(|e| e.path == "app/pkg/loop"));
        assert!(entries.iter().any(|e| e.path == "app/dangling"));

        symlink("../../outside", root.join("pkg/escape")).unwrap();
        assert!(matches!(
            run(&root, "/app", &[]),
            Err(AppError::SymlinkOutside { .. })
        ));
        fs::remove_file(root.join("pkg/escape")).unwrap();

        // Lexically inside, but through a link to the root it leaves the tree.
        symlink(".", root.join("here")).unwrap();
        symlink("../here/../outside", root.join("pkg/sneaky")).unwrap();
        assert!(matches!(
            run(&root, "/app", &[]),
            Err(AppError::SymlinkOutside { .. })
        ));
        fs::remove_file(root.join("pkg/sneaky")).unwrap();

        symlink("/etc/passwd", root.join("abs")).unwrap();
        assert!(matches!(
            run(&root, "/app", &[]),
            Err(AppError::AbsoluteSymlink { .. })
        ));
        // ...unless excluded.
        assert!(run(&root, "/app", &["abs"]).is_ok());
    }

    #[test]
    fn special_files_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        match run(dir.path(), "/app", &[]) {
            Err(AppError::SpecialFile { kind, .. }) => assert_eq!(kind, "FIFO"),
            other => panic!("{other:?}"),
        }
        assert!(run(dir.path(), "/app", &["pipe"]).is_ok());
        fs::remove_file(&fifo).unwrap();

        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
        fs::write(dir.path().join(name), "").unwrap();
        assert!(matches!(
            run(dir.path(), "/app", &[]),
            Err(AppError::NonUtf8Name { .. })
        ));
    }

    #[test]
    fn destination_and_source_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m.py", "");
        assert!(matches!(
            run(dir.path(), "app", &[]),
            Err(AppError::BadDestination(_))
        ));
        assert!(matches!(
            run(dir.path(), "/app/../etc", &[]),
            Err(AppError::BadDestination(_))
        ));
        assert_eq!(paths(&run(dir.path(), "/", &[]).unwrap()), ["m.py"]);
        assert!(matches!(
            run(&dir.path().join("nope"), "/app", &[]),
            Err(AppError::MissingSource(_))
        ));
        assert!(matches!(
            run(dir.path(), "/app", &["[oops"]),
            Err(AppError::BadPattern { .. })
        ));
    }

    #[test]
    fn python_sources_lists_py_files_with_image_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "main.py", "");
        write(dir.path(), "pkg/mod.py", "");
        write(dir.path(), "pkg/data.json", "");
        symlink("main.py", dir.path().join("alias.py")).unwrap();
        let entries = run(dir.path(), "/app", &[]).unwrap();
        assert_eq!(
            python_sources(&entries),
            [
                (dir.path().join("main.py"), "/app/main.py".to_string()),
                (dir.path().join("pkg/mod.py"), "/app/pkg/mod.py".to_string()),
            ]
        );
    }
}
