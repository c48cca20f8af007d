//! Stage 3, "plan layers": decides each new layer's cache key — a digest of
//! everything that can change its bytes — so unchanged layers are reused
//! without being rebuilt, re-compressed or re-uploaded.

use crate::digest::{Digest, HashingWriter};
use crate::facts::PythonFacts;
use crate::layers::tarball::FileDigests;
use crate::layers::{open_checked, Entry, EntryKind, Owner, SourceError};
use serde::Serialize;
use std::io;
use std::path::PathBuf;

/// Bump when the bytes slipway writes for the same inputs change.
pub const LAYER_FORMAT: u32 = 4;

#[derive(Serialize)]
pub struct SitePackagesInputs<'a> {
    pub uv_version: &'a str,
    pub python_platform: &'a str,
    pub facts: &'a PythonFacts,
    /// (file name, contents digest) of every requirements / lock file.
    pub requirement_files: Vec<(String, Digest)>,
    pub index_url: Option<&'a str>,
    pub extra_index_urls: &'a [String],
    /// find-links as given, plus (name, content digest) of every file in local ones.
    pub find_links: Vec<(String, Vec<(String, Digest)>)>,
    pub offline: bool,
    pub allow_sdist: bool,
    /// `[python] reuse_wheel_compression`: left out when off, so turning
    /// it on changes the keys and leaving it off changes nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reuse_wheel_compression: bool,
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

/// The site-packages bytecode layer's alias under the install's inputs:
/// those, and whether test dirs are compiled (`[python] tests_bytecode`).
pub fn site_packages_bytecode_key(
    site_packages_key: &str,
    python_version: &str,
    tests: bool,
) -> String {
    let tests = if tests { "with tests" } else { "without tests" };
    key(
        "bytecode",
        &(site_packages_key, python_version, "unchecked-hash", tests),
    )
}

/// What decides a stdlib bytecode layer's bytes: the base (its stdlib
/// sources), the mode and, for `"imported"`, the modules it holds, the
/// interpreter's magic number and the layer's time stamp.
#[derive(Serialize)]
pub struct StdlibInputs<'a> {
    pub base_manifest: &'a Digest,
    pub mode: crate::recipe::StdlibBytecode,
    pub selection_format: u32,
    /// The `"imported"` modules (None: the whole stdlib).
    pub modules: Option<&'a std::collections::BTreeSet<String>>,
    pub magic: &'a str,
    pub epoch: u64,
}

/// Key of the stdlib bytecode layer.
pub fn stdlib_bytecode_key(inputs: &StdlibInputs) -> String {
    key("stdlib-bytecode", inputs)
}

/// Key of the absolute module names the `.py` files of one layer (by
/// digest) import.
pub fn stdlib_names_key(layer: &Digest) -> String {
    let format = crate::layers::bytecode::STDLIB_SELECTION_FORMAT;
    key("stdlib-names", &(format, layer))
}

/// Key of a base's stdlib import graph, read by an interpreter with magic
/// number `magic`.
pub fn stdlib_graph_key(base_manifest: &Digest, magic: &str) -> String {
    let format = crate::layers::bytecode::STDLIB_SELECTION_FORMAT;
    key("stdlib-graph", &(base_manifest, magic, format))
}

/// The content digest of every file among `entries`, by image path, each
/// read through [`open_checked`] (no symlink followed, still the listed file).
/// The layer is later packed with [`crate::layers::tarball::write_layer_checked`]
/// against these, so the key and the bytes agree.
pub fn file_digests(entries: &[Entry]) -> io::Result<FileDigests> {
    let mut digests = FileDigests::new();
    for entry in entries {
        if let EntryKind::File {
            source,
            size,
            listed,
        } = &entry.kind
        {
            let mut file = open_checked(source, *size, listed.as_ref())?;
            let mut hasher = HashingWriter::new(io::sink());
            io::copy(&mut file, &mut hasher)?;
            let (_, digest, read) = hasher.finish();
            if read != *size {
                return Err(io::Error::other(SourceError::Changed {
                    path: source.clone(),
                    what: format!("{size} bytes when listed, {read} read"),
                }));
            }
            digests.insert(entry.path.clone(), digest);
        } else if let EntryKind::Packed { pack, offset, size } = &entry.kind {
            let mut hasher = HashingWriter::new(io::sink());
            io::copy(
                &mut crate::layers::open_packed(pack, *offset, *size)?,
                &mut hasher,
            )?;
            digests.insert(entry.path.clone(), hasher.finish().1);
        }
    }
    Ok(digests)
}

/// One line of a layer's listing as its key sees it: path, mode, owner and
/// `dir`, `symlink:TARGET` or the file's content digest.
pub type ListingLine = (String, u32, Owner, String);

/// Key of the app layer: every entry's path, kind, mode, owner and content
/// digest (from `digests`, see [`file_digests`]).
pub fn app_key(entries: &[Entry], digests: &FileDigests, epoch: u64) -> String {
    let listing: Vec<ListingLine> = entries
        .iter()
        .map(|entry| {
            let content = match &entry.kind {
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink { target } => format!("symlink:{target}"),
                EntryKind::File { .. } | EntryKind::Packed { .. } => digests
                    .get(&entry.path)
                    .map_or_else(String::new, |d| d.to_string()),
            };
            (entry.path.clone(), entry.mode, entry.owner, content)
        })
        .collect();
    app_key_of_listing(&listing, epoch)
}

/// [`app_key`] from a listing, e.g. one read back from a cached layer's tar.
pub fn app_key_of_listing(listing: &[ListingLine], epoch: u64) -> String {
    key("app", &(listing, epoch))
}

/// Lists a local find-links dir (names and content digests), so adding a
/// wheel, or rebuilding one under the same name and size, changes the key.
/// Not a local dir (a URL): empty. `digest_file` hashes one file (the
/// cache remembers digests by file metadata, see [`crate::cache::Cache::file_digest`]).
pub fn find_links_listing(
    link: &str,
    digest_file: impl Fn(&std::path::Path) -> io::Result<Digest> + Sync,
) -> io::Result<Vec<(String, Digest)>> {
    let dir = PathBuf::from(link);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            paths.push(entry.path());
        }
    }
    // A cold cache hashes every wheel (the demo's wheelhouse: 104 MB) before
    // uv may start: on every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let digests: Vec<(usize, io::Result<Digest>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(paths.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break done };
                        done.push((i, digest_file(path)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a digest thread"))
            .collect()
    });
    let mut files = Vec::with_capacity(paths.len());
    for (i, digest) in digests {
        let path = &paths[i];
        let digest = digest.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display()))
        })?;
        let name = path.file_name().unwrap_or_default();
        files.push((name.to_string_lossy().into_owned(), digest));
    }
    files.sort();
    Ok(files)
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
                listed: None,
            },
            mode: 0o644,
            owner: Owner::default(),
        }];
        let key = |epoch| app_key(&entries, &file_digests(&entries).unwrap(), epoch);
        let k1 = key(0);
        assert_eq!(k1, key(0));
        assert_ne!(k1, key(1));
        std::fs::write(&file, "print(2)").unwrap();
        assert_ne!(k1, key(0));
        assert_ne!(bytecode_key(&k1, "3.13"), bytecode_key(&k1, "3.12"));
    }
}
