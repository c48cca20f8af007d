//! Stage 3, "plan layers": decides each new layer's cache key — a digest of
//! everything that can change its bytes — so unchanged layers are reused
//! without being rebuilt, re-compressed or re-uploaded.

use crate::digest::Digest;
use crate::facts::PythonFacts;
use crate::layers::{Entry, EntryKind, Owner};
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};

/// Bump when the bytes slipway writes for the same inputs change.
pub const LAYER_FORMAT: u32 = 1;

#[derive(Serialize)]
pub struct SitePackagesInputs<'a> {
    pub uv_version: &'a str,
    pub python_platform: &'a str,
    pub facts: &'a PythonFacts,
    /// (file name, contents digest) of every requirements / lock file.
    pub requirement_files: Vec<(String, Digest)>,
    pub index_url: Option<&'a str>,
    pub extra_index_urls: &'a [String],
    /// find-links as given, plus (name, size) of every file in local ones.
    pub find_links: Vec<(String, Vec<(String, u64)>)>,
    pub offline: bool,
    pub allow_sdist: bool,
    pub epoch: u64,
    pub owner: Owner,
}

/// Key of the site-packages layer; its bytecode layer's key derives from it.
pub fn site_packages_key(inputs: &SitePackagesInputs) -> String {
    key("site-packages", inputs)
}

/// Key of the project layer (`requirement_files` are the project's wheels).
pub fn project_key(inputs: &SitePackagesInputs) -> String {
    key("project", inputs)
}

/// Key of a bytecode layer built from the layer with key `source_key`.
/// The magic number is the same for every 3.X.y, so the minor version suffices.
pub fn bytecode_key(source_key: &str, python_version: &str) -> String {
    key("bytecode", &(source_key, python_version, "unchecked-hash"))
}

/// Key of the app layer: every entry's path, kind, mode, owner and content digest.
pub fn app_key(entries: &[Entry], epoch: u64) -> io::Result<String> {
    let mut listing = Vec::with_capacity(entries.len());
    for entry in entries {
        let content = match &entry.kind {
            EntryKind::Dir => "dir".to_string(),
            EntryKind::Symlink { target } => format!("symlink:{target}"),
            EntryKind::File { source, .. } => crate::digest::digest_file(source)?.0.to_string(),
        };
        listing.push((entry.path.as_str(), entry.mode, entry.owner, content));
    }
    Ok(key("app", &(listing, epoch)))
}

/// (name, digest) of a file whose contents feed a key.
pub fn file_digest(path: &Path) -> io::Result<(String, Digest)> {
    let (digest, _) = crate::digest::digest_file(path)?;
    Ok((
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        digest,
    ))
}

/// Lists a local find-links dir (names and sizes) so adding a wheel changes the key.
pub fn find_links_listing(link: &str) -> Vec<(String, u64)> {
    let dir = PathBuf::from(link);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, u64)> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().ok()?.len(),
            ))
        })
        .collect();
    files.sort();
    files
}

fn key<T: Serialize>(kind: &str, inputs: &T) -> String {
    let json = serde_json::to_vec(&(LAYER_FORMAT, kind, inputs)).expect("inputs serialise");
    format!("{kind}-{}", &Digest::of(&json).hex()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_key_changes_with_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.py");
        std::fs::write(&file, "print(1)").unwrap();
        let entries = vec![Entry {
            path: "app/a.py".into(),
            kind: EntryKind::File {
                source: file.clone(),
                size: 8,
            },
            mode: 0o644,
            owner: Owner::default(),
        }];
        let k1 = app_key(&entries, 0).unwrap();
        assert_eq!(k1, app_key(&entries, 0).unwrap());
        assert_ne!(k1, app_key(&entries, 1).unwrap());
        std::fs::write(&file, "print(2)").unwrap();
        assert_ne!(k1, app_key(&entries, 0).unwrap());
        assert_ne!(bytecode_key(&k1, "3.13"), bytecode_key(&k1, "3.12"));
    }
}
