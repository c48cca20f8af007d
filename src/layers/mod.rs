//! Stage 3 of the pipeline, "build layers": turns planned inputs into
//! deterministic gzip'd tar layers (site-packages via uv, app files, bytecode)
//! and owns every cache decision about them: [`plan`] computes each layer's
//! key from its inputs, [`layer_cache`] looks it up in the [`store`] (local
//! cache, then the cache repo) or builds and stores it. [`app_layers`],
//! [`python_layers`] and [`stdlib_layer`] are the builders the pipeline
//! calls, with [`options::LayerOptions`] as all they know of the build.
//!
//! Every builder produces a sorted list of [`Entry`]s (plain data); only
//! [`tarball::write_layer`] turns entries into bytes.

pub mod app;
pub mod app_layers;
pub mod bytecode;
pub mod deflated;
pub mod deps;
pub mod dockerignore;
pub mod failures;
pub mod layer_cache;
pub mod local_wheels;
pub mod options;
pub mod outcome;
pub mod pgzip;
pub mod plan;
pub mod project;
pub mod python_layers;
pub mod resolution;
pub mod sitepackages;
pub mod stdlib_layer;
pub mod store;
pub mod tarball;
pub mod tool_version;
pub mod uv;
pub mod wheelfix;

use crate::digest::Digest;
use std::path::{Path, PathBuf};

/// Owner of every entry in a new layer (the recipe's user, else root).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// One file system object in a layer, at its path inside the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, relative to `/`, no leading or trailing slash
    /// (e.g. `usr/local/lib/python3.13/site-packages/fastapi/__init__.py`).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits only (e.g. 0o755 / 0o644).
    pub mode: u32,
    pub owner: Owner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file whose bytes are read from `source` when the layer is written.
    File {
        source: PathBuf,
        size: u64,
        /// What the walk saw (files from the user's tree; `None` for
        /// slipway's own staging): every later open must find the same file.
        listed: Option<Listed>,
    },
    Symlink {
        target: String,
    },
    /// A regular file whose bytes are `size` bytes at `offset` in `pack`, a
    /// file of slipway's own holding many (compiled bytecode: one file per
    /// unit of work instead of one per `.pyc`).
    Packed {
        pack: PathBuf,
        offset: u64,
        size: u64,
    },
}

/// The bytes of a [`EntryKind::Packed`] entry: refused when its pack is
/// shorter than the slice says.
pub fn open_packed(pack: &Path, offset: u64, size: u64) -> std::io::Result<impl std::io::Read> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(pack)?;
    let len = file.metadata()?.len();
    if offset.checked_add(size).is_none_or(|end| end > len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("`{}` holds no {size} bytes at {offset}", pack.display()),
        ));
    }
    file.seek(std::io::SeekFrom::Start(offset))?;
    Ok(file.take(size))
}

/// The bytes of a file entry (plain or packed); empty for others.
pub fn read_entry(entry: &Entry) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    match &entry.kind {
        EntryKind::File { source, .. } => bytes = std::fs::read(source)?,
        EntryKind::Packed { pack, offset, size } => {
            open_packed(pack, *offset, *size)?.read_to_end(&mut bytes)?;
        }
        EntryKind::Dir | EntryKind::Symlink { .. } => {}
    }
    Ok(bytes)
}

/// Identity of a listed file: a later open that finds another inode or
/// mtime means the file was replaced or rewritten under the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i128,
}

impl Listed {
    pub fn of(meta: &std::fs::Metadata) -> Listed {
        use std::os::unix::fs::MetadataExt;
        Listed {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

/// A user's file that cannot be packed: it changed after the walk listed it,
/// or it cannot be read. Travels inside `io::Error` (see [`SourceError::of`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{}` {} ({what})", path.display(), SourceError::CHANGED)]
    Changed { path: PathBuf, what: String },
    #[error("cannot read `{}`: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SourceError {
    /// What every `Changed` message says (the build retries on it).
    pub const CHANGED: &'static str = "changed while slipway was reading it";

    /// The `SourceError` inside an I/O error, if that is what it carries.
    pub fn of(error: &std::io::Error) -> Option<&SourceError> {
        error.get_ref()?.downcast_ref::<SourceError>()
    }
}

impl crate::error::Hint for SourceError {
    fn hint(&self) -> Option<String> {
        Some({
            match self {
                SourceError::Changed { .. } => {
                    "something rewrote it during the build; run the build again once it has settled"
                        .into()
                }
                SourceError::Unreadable { .. } => {
                    "make it readable (`chmod u+r`), or add it to `[app] excludes` in the recipe"
                        .into()
                }
            }
        })
    }
}

/// Opens an entry's file without following a symlink (a link swapped in
/// after the walk fails here, never yielding its target's bytes) and checks
/// that it is still the regular file of the recorded size (and, for listed
/// files, inode and mtime). The error names the file and what changed.
pub fn open_checked(
    source: &std::path::Path,
    size: u64,
    listed: Option<&Listed>,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let changed = |what: &str| {
        std::io::Error::other(SourceError::Changed {
            path: source.to_path_buf(),
            what: what.to_string(),
        })
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Non-blocking: a FIFO swapped in must not hang the build.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(source)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => changed("it is now a symlink"),
            Some(libc::ENOENT) => changed("it was removed"),
            _ => std::io::Error::other(SourceError::Unreadable {
                path: source.to_path_buf(),
                source: e,
            }),
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(changed("it is no longer a regular file"));
    }
    if meta.len() != size {
        return Err(changed(&format!(
            "{size} bytes when listed, {} now",
            meta.len()
        )));
    }
    if let Some(listed) = listed {
        let now = Listed::of(&meta);
        if (now.dev, now.ino) != (listed.dev, listed.ino) {
            return Err(changed("it was replaced by another file"));
        }
        if now.mtime_ns != listed.mtime_ns {
            return Err(changed("it was modified"));
        }
    }
    Ok(file)
}

/// A finished, compressed layer blob on disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// sha256 of the gzip bytes (the blob digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the config's diff_id).
    pub diff_id: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    pub uncompressed_size: u64,
    pub path: PathBuf,
}

/// Sorts entries by path bytes and adds any missing parent directories
/// (mode 0755, given owner), so parents always precede children.
pub fn normalise(entries: Vec<Entry>, owner: Owner) -> Vec<Entry> {
    let mut by_path: std::collections::BTreeMap<String, Entry> = std::collections::BTreeMap::new();
    for entry in entries {
        let mut parent = entry.path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            by_path.entry(dir.to_string()).or_insert_with(|| Entry {
                path: dir.to_string(),
                kind: EntryKind::Dir,
                mode: 0o755,
                owner,
            });
            parent = dir;
        }
        by_path.insert(entry.path.clone(), entry);
    }
    // BTreeMap orders "a/b" before "a-b"? No: '-' (0x2d) < '/' (0x2f). Parents still
    // precede children because a prefix always sorts before its extensions.
    by_path.into_values().collect()
}

/// Like [`normalise`], for a layer stacked on `lower` (e.g. bytecode over the
/// files it was compiled from): a missing parent copies `lower`'s entry for
/// that directory, so the upper layer does not change its owner or mode;
/// parents `lower` lacks (above the app's destination) are left out, as
/// they are from `lower`, so the base's own stay as they are.
pub fn normalise_over(entries: Vec<Entry>, lower: &[Entry]) -> Vec<Entry> {
    let lower_dirs: std::collections::BTreeMap<&str, &Entry> = lower
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut out = normalise(entries.clone(), Owner::default());
    let given: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    out.retain_mut(|entry| {
        if given.contains(entry.path.as_str()) {
            return true;
        }
        match lower_dirs.get(entry.path.as_str()) {
            Some(dir) => {
                *entry = (*dir).clone();
                true
            }
            None => false,
        }
    });
    out
}

/// A reader for the bytecode compiler (see
/// [`bytecode::ReadSource`]) of the `.py` files among `entries`: each is
/// read through [`open_checked`] and checked against the digest its layer's
/// key holds, so the bytecode is compiled from exactly the bytes the key
/// names (a file rewritten since fails with [`SourceError::Changed`]).
pub fn verified_source_reader<'a>(
    entries: &'a [Entry],
    digests: &'a tarball::FileDigests,
) -> impl Fn(&std::path::Path, &str) -> std::io::Result<Vec<u8>> + Sync + 'a {
    let by_image_path: std::collections::HashMap<&str, &Entry> = entries
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    move |source, image_path| {
        let unknown = || std::io::Error::other(format!("`{image_path}` is not an app file"));
        let entry = by_image_path
            .get(image_path.trim_start_matches('/'))
            .ok_or_else(unknown)?;
        let EntryKind::File { size, listed, .. } = &entry.kind else {
            return Err(unknown());
        };
        let mut file = open_checked(source, *size, listed.as_ref())?;
        let mut bytes = Vec::with_capacity(*size as usize);
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
        if digests.get(&entry.path) != Some(&crate::digest::Digest::of(&bytes)) {
            return Err(std::io::Error::other(SourceError::Changed {
                path: source.to_path_buf(),
                what: "its bytes differ from the first read".into(),
            }));
        }
        Ok(bytes)
    }
}

/// The `.py` files among `entries`, as `(file on disk, absolute path in the
/// image)`, in entry order: the inputs of a bytecode layer.
pub fn python_sources(entries: &[Entry]) -> Vec<(PathBuf, String)> {
    entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::File { source, .. } if entry.path.ends_with(".py") => {
                Some((source.clone(), format!("/{}", entry.path)))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_adds_parents_first() {
        let owner = Owner::default();
        let file = |p: &str| Entry {
            path: p.to_string(),
            kind: EntryKind::File {
                source: PathBuf::from("/dev/null"),
                size: 0,
                listed: None,
            },
            mode: 0o644,
            owner,
        };
        let out = normalise(vec![file("app/z.py"), file("app/pkg/a.py")], owner);
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["app", "app/pkg", "app/pkg/a.py", "app/z.py"]);
    }

    #[test]
    fn normalise_over_copies_parents_from_the_lower_layer() {
        let user = Owner {
            uid: 1000,
            gid: 1000,
        };
        let dir = |p: &str, mode, owner| Entry {
            path: p.to_string(),
            kind: EntryKind::Dir,
            mode,
            owner,
        };
        let lower = vec![
            dir("srv", 0o755, Owner::default()),
            dir("srv/app", 0o750, user),
        ];
        let upper = vec![dir("srv/app/__pycache__", 0o755, user)];
        let out = normalise_over(upper, &lower);
        assert_eq!(out[0], lower[0]);
        assert_eq!(out[1], lower[1]);
        assert_eq!(out[2].path, "srv/app/__pycache__");
    }
}
