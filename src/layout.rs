//! The OCI image layout format, read and written in one place: `index.json`
//! (capped like every JSON document from outside), entries found by their
//! `org.opencontainers.image.ref.name`, blobs under `blobs/sha256/` (small
//! ones read capped and checked against their digest), and the files a
//! layout is made of. `resolve` (a `--base-layout`), `inspect` (`oci:DIR`),
//! `bundle` (its `base/`) and `publish` (`--oci-layout`) all go through it.

use crate::digest::Digest;
use crate::oci::{self, Descriptor, Index};
use crate::platform::Platform;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The annotation naming an index entry (its "tag" in the layout).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The `oci-layout` file every layout holds.
pub const LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("`{}` hashes to `{actual}`, not `{expected}`", path.display())]
    Mismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
}

/// An OCI layout dir to read from.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// `index.json`, read capped and parsed.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::File::open(&path)
            .and_then(|f| oci::read_json_capped(f, "index.json"))
            .map_err(|source| LayoutError::Read {
                path: path.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
            path,
            message: e.to_string(),
        })
    }

    /// A blob as a file (layers are streamed by the caller, which checks them).
    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File, LayoutError> {
        let path = self.blob_path(digest);
        std::fs::File::open(&path).map_err(|source| LayoutError::Read { path, source })
    }

    /// A manifest, index or config: read capped, checked against its digest.
    pub fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let bytes = oci::read_json_capped(file, &format!("blob `{digest}`")).map_err(|source| {
            LayoutError::Read {
                path: path.clone(),
                source,
            }
        })?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(LayoutError::Mismatch {
                path,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Writes an OCI layout into `dir`, the one writer of the format: blobs
/// first, each through a temp file beside it so a killed write never leaves
/// a partial file under a digest (a blob already there with the same bytes
/// is kept), then `index.json` and `oci-layout`. Used by the layout
/// publisher (`--oci-layout`) and by the bundle's `base/`.
pub struct Writer {
    dir: PathBuf,
}

impl Writer {
    pub fn create(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        Ok(Writer {
            dir: dir.to_path_buf(),
        })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// Whether the blob `digest` is there and hashes to it.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        crate::digest::digest_file(&self.blob_path(digest)).is_ok_and(|(d, _)| &d == digest)
    }

    /// Writes `bytes` as a blob; false when the same bytes were there.
    pub fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.blob_path(&Digest::of(bytes));
        if std::fs::read(&path).is_ok_and(|b| b == bytes) {
            return Ok(false);
        }
        write_atomic(&path, bytes)?;
        Ok(true)
    }

    /// Writes the blob `digest` with `fill`, which writes a temp file (and
    /// checks what it copies); the file becomes the blob only if `fill`
    /// succeeds.
    pub fn put_with<T, E: From<std::io::Error>>(
        &self,
        digest: &Digest,
        fill: impl FnOnce(&mut std::fs::File) -> Result<T, E>,
    ) -> Result<T, E> {
        let path = self.blob_path(digest);
        let mut temp = tempfile::NamedTempFile::new_in(path.parent().expect("blobs/sha256"))?;
        let filled = fill(temp.as_file_mut())?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(filled)
    }

    /// Writes `index.json` and `oci-layout`, last: the layout is complete.
    pub fn finish(self, index: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.dir.join("index.json"), index)?;
        write_atomic(&self.dir.join("oci-layout"), LAYOUT_FILE)
    }
}

/// Writes `path` through a temp file beside it, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// An index entry's ref name, if it has one.
pub fn ref_name(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// The entry named by the first of `names` any entry has, else the only
/// entry of a one-entry index.
pub fn find_entry<'a>(index: &'a Index, names: &[&str]) -> Option<&'a Descriptor> {
    names
        .iter()
        .find_map(|name| index.manifests.iter().find(|m| ref_name(m) == Some(*name)))
        .or(match index.manifests.as_slice() {
            [only] => Some(only),
            _ => None,
        })
}

/// The ref names of an index's entries, for "it has: …" in errors.
pub fn ref_names(index: &Index) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(ref_name)
        .map(str::to_string)
        .collect()
}

/// The `index.json` of a layout holding one image (or index) `top`, named
/// `name`; `platform` for a single-platform image.
pub fn single_entry_index(
    media_type: &str,
    top: &[u8],
    platform: Option<Platform>,
    name: &str,
) -> Index {
    Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(top),
            size: top.len() as u64,
            platform,
            annotations: Some(BTreeMap::from([(REF_NAME.to_string(), name.to_string())])),
        }],
        annotations: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: Option<&str>, byte: u8) -> Descriptor {
        let top = [byte];
        let mut index = single_entry_index(oci::OCI_MANIFEST, &top, None, name.unwrap_or("x"));
        let mut d = index.manifests.remove(0);
        if name.is_none() {
            d.annotations = None;
        }
        d
    }

    #[test]
    fn entries_are_found_by_name_or_as_the_only_one() {
        let mut index = single_entry_index(oci::OCI_MANIFEST, b"a", None, "3.13-alpine");
        assert_eq!(
            find_entry(&index, &["nope"]).unwrap().size,
            1,
            "the only entry"
        );
        index.manifests.push(entry(Some("latest"), 2));
        index.manifests.push(entry(None, 3));
        let found = find_entry(&index, &["missing", "latest"]).unwrap();
        assert_eq!(found.digest, Digest::of(&[2]));
        assert!(find_entry(&index, &["missing"]).is_none());
        assert_eq!(ref_names(&index), ["3.13-alpine", "latest"]);
    }

    #[test]
    fn the_writer_keeps_same_blobs_and_leaves_nothing_of_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::create(dir.path()).unwrap();
        assert!(writer.put_bytes(b"{}").unwrap(), "written");
        assert!(!writer.put_bytes(b"{}").unwrap(), "kept");
        assert!(writer.has_blob(&Digest::of(b"{}")));
        let other = Digest::of(b"other");
        let failed = writer.put_with(&other, |f| {
            std::io::Write::write_all(f, b"partial")?;
            Err::<(), _>(std::io::Error::other("copy failed"))
        });
        assert!(failed.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [Digest::of(b"{}").hex()], "no partial or temp file");
        writer.finish(b"{}").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("oci-layout")).unwrap(),
            LAYOUT_FILE
        );
        assert!(Layout::new(dir.path()).index().is_err(), "{{}} is no index");
    }

    #[test]
    fn small_blobs_are_checked_against_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let digest = Digest::of(b"{}");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(layout.blob_path(&digest), b"{}").unwrap();
        assert_eq!(layout.small_blob(&digest).unwrap(), b"{}");
        std::fs::write(layout.blob_path(&digest), b"[]").unwrap();
        assert!(matches!(
            layout.small_blob(&digest),
            Err(LayoutError::Mismatch { .. })
        ));
        let missing = Digest::of(b"none");
        assert!(matches!(
            layout.small_blob(&missing),
            Err(LayoutError::Read { .. })
        ));
    }
}
