//! The app layer's entries: the source dir walked in sorted order, honouring
//! default excludes, the recipe's excludes and `.dockerignore`.

use super::dockerignore::{Matcher, Pattern};
use super::{normalise, Entry, EntryKind, Listed, Owner};
use std::collections::BTreeMap;
use std::fs::FileType;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub use super::python_sources;

/// Always excluded, before the recipe's and `.dockerignore`'s patterns,
/// matched at any depth and regardless of case (`.ENV`, `ID_RSA`,
/// `server.PEM`); a later `!pattern` can re-include one. Caches and
/// virtualenvs, then credentials: the usual key and keystore files, tool
/// credential files, and the dotfiles secret scanners flag by path.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    // Version control, caches and virtualenvs.
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    // Environment files.
    ".env",
    ".env.*",
    // Private keys, certificates with keys, keystores.
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.ovpn",
    "*.kdb",
    "*.kdbx",
    "*.keychain",
    "*.tfstate",
    "*.tfstate.backup",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    // Whole credential dirs.
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".docker/config.json",
    ".kube/config",
    // Tool credential files.
    ".netrc",
    "_netrc",
    ".pypirc",
    ".git-credentials",
    ".npmrc",
    ".yarnrc.yml",
    ".pgpass",
    ".my.cnf",
    ".htpasswd",
    ".s3cfg",
    ".boto",
    ".dockercfg",
    ".*_history",
];

/// Image paths a destination must not be: `user` would own them, and the
/// app's files would mix with (or replace) the base's own.
const SYSTEM_DIRS: &str = "\
    bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root \
    run sbin srv sys tmp usr var usr/bin usr/include usr/lib usr/lib64 \
    usr/libexec usr/local usr/sbin usr/share usr/src usr/local/bin \
    usr/local/etc usr/local/include usr/local/lib usr/local/sbin \
    usr/local/share var/cache var/lib var/log var/run var/tmp";

/// Prefix of the names OCI layers use as whiteouts (deletions of lower files).
const WHITEOUT_PREFIX: &str = ".wh.";

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
    #[error("file name `{}` is not valid UTF-8", escaped(path))]
    NonUtf8Name { path: PathBuf },
    #[error("destination `{0}` must be an absolute path without `.` or `..`")]
    BadDestination(String),
    #[error("destination `{0}` is the base image's own {1}: the app's files would mix with the base's, and `user` would own it")]
    SystemDestination(String, &'static str),
    #[error("`{}` has a name starting with `.wh.`, which image layers use to delete files of the layers below", escaped(path))]
    WhiteoutName { path: PathBuf },
    #[error("destination `{0}` has a part starting with `.wh.`, which image layers use to delete files of the layers below")]
    WhiteoutDestination(String),
    #[error("bad exclude pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AppError {
    /// How to fix it; `source_dir` is the recipe's `[app] source`.
    pub fn hint(&self, source_dir: &Path) -> Option<String> {
        let rel = |path: &Path| {
            let rel = path.strip_prefix(source_dir).unwrap_or(path);
            rel.to_string_lossy().into_owned()
        };
        let exclude =
            |path: &Path| format!("or add `{}` to `[app] excludes` in the recipe", rel(path));
        match self {
            AppError::MissingSource(_) => Some("fix `[app] source` in the recipe (relative to the recipe's dir)".into()),
            AppError::SymlinkOutside { path, .. } => Some(format!(
                "copy what it points at into the source dir and link to the copy, {}",
                exclude(path)
            )),
            AppError::AbsoluteSymlink { path, .. } => Some(format!(
                "replace it with a relative link (`ln -sfr TARGET {}`), {}",
                rel(path),
                exclude(path)
            )),
            AppError::SpecialFile { path, .. } => {
                Some(format!("remove it from the source dir, {}", exclude(path)))
            }
            AppError::NonUtf8Name { path } => Some(format!(
                "rename it to a UTF-8 name, or exclude it in `[app] excludes` (a pattern sees each invalid byte as `\u{fffd}`, so `{}` matches it)",
                rel(path)
            )),
            AppError::BadDestination(_) => Some("write an absolute path inside the image, e.g. `destination = \"/app\"`".into()),
            AppError::SystemDestination(..) | AppError::WhiteoutDestination(_) => Some("put the app in a directory of its own, e.g. `destination = \"/app\"`".into()),
            AppError::WhiteoutName { path } => Some(format!("rename it, {}", exclude(path))),
            AppError::BadPattern { .. } => Some("fix the pattern in `[app] excludes` or the source dir's `.dockerignore`".into()),
            AppError::Io { .. } => None,
        }
    }
}

/// A path with invalid UTF-8 bytes shown as `\xNN`.
fn escaped(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The app layer's entries and what the walk found worth a warning.
#[derive(Debug)]
pub struct Collected {
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

/// Walks the source dir and returns the layer's entries, sorted, under
/// `destination` (which is itself included, owned by `source.owner`). No
/// parent of the destination is emitted: the base's own directories (their
/// modes and owners) stay as they are.
///
/// Exclusion patterns are evaluated in order with Docker's `.dockerignore`
/// semantics, last match wins: [`DEFAULT_EXCLUDES`] (matched at any depth,
/// ignoring case), then the recipe's `excludes`, then
/// `<source_dir>/.dockerignore`; a later `!pattern` can re-include what an
/// earlier one excluded.
pub fn collect(source: &AppSource) -> Result<Collected, AppError> {
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

    let mut entries = vec![Entry {
        path: prefix.clone(),
        kind: EntryKind::Dir,
        mode: 0o755,
        owner: source.owner,
    }];
    let mut linked = Linked::new();
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
        let rel = checked_name(path, rel)?;
        let meta = item.metadata().map_err(|e| io_error(path, e.into()))?;
        let (kind, mode) = entry_kind(&item, &meta, (root, &canonical_root), &mut linked)?;
        entries.push(Entry {
            path: image_path(rel),
            kind,
            mode,
            owner: source.owner,
        });
    }
    let warnings = linked_from_outside(linked);
    // Parents of re-included files under excluded dirs are the app's own;
    // those above the destination are the base's and are left out.
    let mut entries = normalise(entries, source.owner);
    entries.retain(|e| e.path.len() >= prefix.len());
    Ok(Collected { entries, warnings })
}

/// A name the image can hold: UTF-8 (`rel`, when it is) and not a
/// whiteout, which would delete a base file instead of adding one.
fn checked_name<'a>(path: &Path, rel: Option<&'a str>) -> Result<&'a str, AppError> {
    let Some(rel) = rel else {
        return Err(AppError::NonUtf8Name {
            path: path.to_path_buf(),
        });
    };
    let name = path.file_name().unwrap_or_default().as_encoded_bytes();
    if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Err(AppError::WhiteoutName {
            path: path.to_path_buf(),
        });
    }
    Ok(rel)
}

/// A warning for each file hard-linked from outside the source dir.
fn linked_from_outside(linked: Linked) -> Vec<String> {
    linked
        .into_values()
        .filter(|(seen, all, _)| seen < all)
        .map(|(seen, all, path)| {
            format!(
                "`{}` is hard-linked from outside the source dir ({} of its {all} links are inside): the image gets its bytes as they are now, and a change made through another link changes the app",
                path.display(),
                seen
            )
        })
        .collect()
}

/// (dev, inode) of multiply-linked files → (links seen in the tree, links
/// in all, a path).
type Linked = BTreeMap<(u64, u64), (u64, u64, PathBuf)>;

/// What one walked item becomes in the layer, and its mode: a dir, a file
/// (hard links counted in `linked`), a symlink that stays in the tree; a
/// special file is refused.
fn entry_kind(
    item: &walkdir::DirEntry,
    meta: &std::fs::Metadata,
    (root, canonical_root): (&Path, &Path),
    linked: &mut Linked,
) -> Result<(EntryKind, u32), AppError> {
    let path = item.path();
    let rel_path = path.strip_prefix(root).expect("walk stays under its root");
    let file_type = item.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        if meta.nlink() > 1 {
            let seen = linked.entry((meta.dev(), meta.ino())).or_insert((
                0,
                meta.nlink(),
                path.to_path_buf(),
            ));
            seen.0 += 1;
        }
        EntryKind::File {
            source: path.to_path_buf(),
            size: meta.len(),
            listed: Some(Listed::of(meta)),
        }
    } else if file_type.is_symlink() {
        EntryKind::Symlink {
            target: checked_link(root, canonical_root, path, rel_path)?,
        }
    } else {
        return Err(AppError::SpecialFile {
            path: path.to_path_buf(),
            kind: special_kind(file_type),
        });
    };
    let mode = match kind {
        EntryKind::File { .. } if meta.permissions().mode() & 0o111 != 0 => 0o755,
        EntryKind::File { .. } | EntryKind::Packed { .. } => 0o644,
        EntryKind::Dir => 0o755,
        EntryKind::Symlink { .. } => 0o777,
    };
    Ok((kind, mode))
}

/// `/app` → `app`; refuses `/`, the base's system dirs and whiteout names.
fn destination_prefix(destination: &str) -> Result<String, AppError> {
    let bad = || AppError::BadDestination(destination.to_string());
    let rest = destination.strip_prefix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad());
    }
    if parts.iter().any(|p| p.starts_with(WHITEOUT_PREFIX)) {
        return Err(AppError::WhiteoutDestination(destination.to_string()));
    }
    let prefix = parts.join("/");
    if prefix.is_empty() {
        return Err(AppError::SystemDestination(
            destination.to_string(),
            "root directory",
        ));
    }
    if SYSTEM_DIRS.split_whitespace().any(|dir| dir == prefix) {
        return Err(AppError::SystemDestination(
            destination.to_string(),
            "system directory",
        ));
    }
    Ok(prefix)
}

/// A default exclude made case-insensitive: each ASCII letter becomes a
/// `[xX]` class (the patterns hold no classes of their own).
fn any_case(pattern: &str) -> String {
    pattern
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn exclusions(root: &Path, excludes: &[String]) -> Result<Matcher, AppError> {
    let bad = |pattern: &str, reason: String| AppError::BadPattern {
        pattern: pattern.to_string(),
        reason,
    };
    let mut matcher = Matcher::default();
    for default in DEFAULT_EXCLUDES {
        let pattern = format!("**/{}", any_case(default));
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
#[path = "app_tests.rs"]
mod tests;
