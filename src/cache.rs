//! The on-disk cache (an edge of the pipeline): a content-addressed blob store
//! plus small records mapping layer cache keys to finished layers and base
//! manifest digests to detected facts. Every write is temp + rename, and
//! builders of the same key serialise on a lock file, so concurrent builds and
//! killed builds never leave a partial entry behind.

use crate::digest::Digest;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct Cache {
    root: PathBuf,
}

/// A finished layer as remembered by the cache (its bytes live in the blob store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
}

/// Held while one build produces the entry for a key; dropped → unlocked.
pub struct KeyLock {
    _file: File,
}

impl Cache {
    /// `$SLIPWAY_CACHE_DIR`, else `$XDG_CACHE_HOME/slipway`, else `~/.cache/slipway`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SLIPWAY_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(dir).join("slipway");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".cache").join("slipway")
    }

    pub fn open(root: &Path) -> io::Result<Cache> {
        for sub in ["blobs/sha256", "layers", "facts", "locks", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A scratch dir inside the cache (same file system, so renames are atomic);
    /// removed when dropped, so a killed build leaves only `tmp/` garbage.
    pub fn temp_dir(&self, prefix: &str) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.root.join("tmp"))
    }

    /// Moves a finished file into the blob store under its digest.
    pub fn insert_blob(&self, file: &Path, digest: &Digest) -> io::Result<PathBuf> {
        let dest = self.blob_path(digest);
        fs::rename(file, &dest)?;
        Ok(dest)
    }

    /// Writes bytes into the blob store (for configs and manifests).
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.write_atomic(&self.blob_path(&digest), bytes)?;
        }
        Ok(digest)
    }

    /// The record for a layer key, if present and its blob is still there.
    pub fn layer(&self, key: &str) -> Option<LayerRecord> {
        let record: LayerRecord =
            self.read_json(&self.root.join("layers").join(format!("{key}.json")))?;
        self.has_blob(&record.digest).then_some(record)
    }

    pub fn put_layer(&self, key: &str, record: &LayerRecord) -> io::Result<()> {
        self.write_json(
            &self.root.join("layers").join(format!("{key}.json")),
            record,
        )
    }

    pub fn facts<T: DeserializeOwned>(&self, manifest: &Digest) -> Option<T> {
        self.read_json(
            &self
                .root
                .join("facts")
                .join(format!("{}.json", manifest.hex())),
        )
    }

    pub fn put_facts<T: Serialize>(&self, manifest: &Digest, facts: &T) -> io::Result<()> {
        self.write_json(
            &self
                .root
                .join("facts")
                .join(format!("{}.json", manifest.hex())),
            facts,
        )
    }

    /// Blocks until no other process is producing `key`.
    pub fn lock(&self, key: &str) -> io::Result<KeyLock> {
        let file = File::create(self.root.join("locks").join(format!("{key}.lock")))?;
        fs2::FileExt::lock_exclusive(&file)?;
        Ok(KeyLock { _file: file })
    }

    fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Option<T> {
        let bytes = fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        self.write_atomic(path, &bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut temp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        temp.write_all(bytes)?;
        temp.as_file().sync_all()?;
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_record_needs_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = cache.put_blob_bytes(b"layer").unwrap();
        let record = LayerRecord {
            digest: digest.clone(),
            diff_id: digest.clone(),
            size: 5,
            uncompressed_size: 5,
        };
        cache.put_layer("k", &record).unwrap();
        assert_eq!(cache.layer("k"), Some(record));
        fs::remove_file(cache.blob_path(&digest)).unwrap();
        assert_eq!(
            cache.layer("k"),
            None,
            "a record whose blob is gone is a miss"
        );
    }
}
