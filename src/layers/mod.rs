//! Stage 3 of the pipeline, "build layers": turns planned inputs into
//! deterministic gzip'd tar layers (site-packages via uv, app files, bytecode).
//!
//! Every builder produces a sorted list of [`Entry`]s (plain data); only
//! [`tarball::write_layer`] turns entries into bytes.

pub mod app;
pub mod bytecode;
pub mod deps;
pub mod dockerignore;
pub mod pgzip;
pub mod project;
pub mod sitepackages;
pub mod tarball;
pub mod tool_version;
pub mod uv;
pub mod wheelfix;

use crate::digest::Digest;
use std::path::PathBuf;

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
    },
    Symlink {
        target: String,
    },
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
/// parents `lower` lacks get mode 0755, root-owned.
pub fn normalise_over(entries: Vec<Entry>, lower: &[Entry]) -> Vec<Entry> {
    let lower_dirs: std::collections::BTreeMap<&str, &Entry> = lower
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut out = normalise(entries.clone(), Owner::default());
    let given: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    for entry in &mut out {
        if !given.contains(entry.path.as_str()) {
            if let Some(dir) = lower_dirs.get(entry.path.as_str()) {
                *entry = (*dir).clone();
            }
        }
    }
    out
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
