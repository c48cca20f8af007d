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
    /// This process's scratch dir, `tmp/build-XXXX.d`, claimed by holding an
    /// exclusive lock on `tmp/build-XXXX.lock` while the `Cache` lives.
    tmp: PathBuf,
    tmp_lock: Option<File>,
    /// Blobs this process has already hashed whole: a build looks a layer
    /// up several times (per key, per platform), and hashing it once is
    /// enough; outputs check every blob again as they are written.
    verified: std::sync::Mutex<std::collections::HashSet<Digest>>,
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
    /// An I/O error context naming the cache dir: "cannot write to the cache `DIR`".
    pub fn context(&self, what: &str) -> String {
        format!("{what} `{}`", self.root().display())
    }

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

    /// Opens (creating) the cache and claims a scratch dir for this process.
    /// Scratch dirs of builds that are gone (killed: their lock is free)
    /// are removed first, so a killed build leaves nothing behind for long.
    pub fn open(root: &Path) -> io::Result<Cache> {
        for sub in [
            "blobs/sha256",
            "layers",
            "facts",
            "locks",
            "tmp",
            "stat-digests",
        ] {
            fs::create_dir_all(root.join(sub))?;
        }
        let tmp_root = root.join("tmp");
        remove_stale_scratch(&tmp_root);
        let (tmp, lock) = claim_scratch(&tmp_root)?;
        Ok(Cache {
            root: root.to_path_buf(),
            tmp,
            tmp_lock: Some(lock),
            verified: Default::default(),
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

    /// The blob's path if it is present and hashes to its digest. A corrupt
    /// blob (a flipped bit, a truncated file) is removed with a warning, so
    /// the caller rebuilds or re-fetches it instead of publishing it.
    pub fn verified_blob(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.blob_path(digest);
        if self.verified.lock().is_ok_and(|set| set.contains(digest)) && path.is_file() {
            return Some(path);
        }
        let (actual, _) = crate::digest::digest_file(&path).ok()?;
        if &actual == digest {
            if let Ok(mut set) = self.verified.lock() {
                set.insert(actual);
            }
            return Some(path);
        }
        eprintln!(
            "warning: the cache's blob `{}` does not match its digest (it hashes to `{actual}`); removed it, fetching or building it again",
            path.display()
        );
        let _ = fs::remove_file(&path);
        None
    }

    /// A scratch dir inside the cache (same file system, so renames are atomic);
    /// removed when dropped. A killed build's are removed by the next `open`.
    pub fn temp_dir(&self, prefix: &str) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.tmp)
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

    /// The record for a layer key, if present and its blob is still there,
    /// whole (see [`Cache::verified_blob`]): a miss otherwise.
    pub fn layer(&self, key: &str) -> Option<LayerRecord> {
        let record: LayerRecord =
            self.read_json(&self.root.join("layers").join(format!("{key}.json")))?;
        let path = self.verified_blob(&record.digest)?;
        let size = fs::metadata(path).ok()?.len();
        (size == record.size).then_some(record)
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

    /// The content digest of a local input file (a find-links wheel), hashed
    /// once per version of the file: the digest is remembered under the
    /// file's path, device, inode, size, mtime and ctime, and any write to
    /// the file changes its ctime. A file changed less than two seconds ago
    /// is hashed and not remembered, since a write in the same clock tick
    /// could leave its times unchanged (git's "racy clean" rule).
    pub fn file_digest(&self, path: &Path) -> io::Result<Digest> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.file_digest_at(path, now)
    }

    /// [`Cache::file_digest`] as if the clock read `now` (seconds).
    fn file_digest_at(&self, path: &Path, now: i64) -> io::Result<Digest> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path)?;
        let stat = format!(
            "{}\n{}:{}:{}:{}.{}:{}.{}",
            path.display(),
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        let memo = self
            .root
            .join("stat-digests")
            .join(Digest::of(stat.as_bytes()).hex());
        if let Some(digest) = fs::read_to_string(&memo)
            .ok()
            .and_then(|text| Digest::parse(&text).ok())
        {
            return Ok(digest);
        }
        let (digest, size) = crate::digest::digest_file(path)?;
        let settled = meta.mtime().max(meta.ctime()) < now - 2;
        if settled && size == meta.len() {
            // Best effort: without the memo the next build hashes again.
            let _ = self.write_atomic(&memo, digest.as_str().as_bytes());
        }
        Ok(digest)
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
        let mut temp = tempfile::NamedTempFile::new_in(&self.tmp)?;
        temp.write_all(bytes)?;
        temp.as_file().sync_all()?;
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Still holding the lock: nobody else removes these meanwhile.
        let _ = fs::remove_dir_all(&self.tmp);
        let _ = fs::remove_file(self.tmp.with_extension("lock"));
        drop(self.tmp_lock.take());
    }
}

/// Creates `tmp/build-XXXX.lock`, locks it, then creates `tmp/build-XXXX.d`.
fn claim_scratch(tmp_root: &Path) -> io::Result<(PathBuf, File)> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let (file, lock_path) = tempfile::Builder::new()
            .prefix("build-")
            .suffix(".lock")
            .tempfile_in(tmp_root)?
            .keep()
            .map_err(|e| e.error)?;
        fs2::FileExt::lock_exclusive(&file)?;
        // A concurrent `remove_stale_scratch` may have taken the file for a
        // dead build's between its creation and our lock: then start over.
        let ours = file.metadata()?;
        match fs::metadata(&lock_path) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {
                let dir = lock_path.with_extension("d");
                fs::create_dir(&dir)?;
                return Ok((dir, file));
            }
            _ => continue,
        }
    }
}

/// Removes the scratch dirs whose owner is gone: `build-*.lock` files that
/// can be locked (a live build holds its lock) with their `build-*.d` dirs,
/// `.d` dirs without a lock file, and anything else older than a day
/// (scratch of older versions that had no lock).
fn remove_stale_scratch(tmp_root: &Path) {
    let Ok(entries) = fs::read_dir(tmp_root) else {
        return;
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("build-") && name.ends_with(".lock") {
            let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            if fs2::FileExt::try_lock_exclusive(&file).is_ok() {
                let _ = fs::remove_dir_all(path.with_extension("d"));
                let _ = fs::remove_file(&path);
            }
        } else if name.starts_with("build-") && name.ends_with(".d") {
            // Dirs are made only after their lock file exists and is locked.
            if !path.with_extension("lock").exists() {
                let _ = fs::remove_dir_all(&path);
            }
        } else {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache holding one layer, `b"layer"`, recorded under key `k`.
    fn cache_with_layer() -> (tempfile::TempDir, Cache, Digest, LayerRecord) {
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
        (dir, cache, digest, record)
    }

    #[test]
    fn a_remembered_file_digest_follows_every_rewrite() {
        let (dir, cache, _, _) = cache_with_layer();
        let wheel = dir.path().join("w.whl");
        let memos = || {
            fs::read_dir(dir.path().join("stat-digests"))
                .unwrap()
                .count()
        };
        fs::write(&wheel, b"version 1").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(
            cache.file_digest_at(&wheel, now).unwrap(),
            Digest::of(b"version 1")
        );
        assert_eq!(memos(), 0, "a file written this second is not remembered");
        let later = now + 60;
        assert_eq!(
            cache.file_digest_at(&wheel, later).unwrap(),
            Digest::of(b"version 1")
        );
        assert_eq!(memos(), 1);
        // Same name, same size, new bytes: its ctime moved (past the file
        // system's clock tick), so it is hashed again.
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs::write(&wheel, b"version 2").unwrap();
        assert_eq!(
            cache.file_digest_at(&wheel, later).unwrap(),
            Digest::of(b"version 2")
        );
        assert_eq!(memos(), 2);
    }

    #[test]
    fn layer_record_needs_its_blob() {
        let (_dir, cache, digest, record) = cache_with_layer();
        assert_eq!(cache.layer("k"), Some(record));
        fs::remove_file(cache.blob_path(&digest)).unwrap();
        assert_eq!(
            cache.layer("k"),
            None,
            "a record whose blob is gone is a miss"
        );
    }

    #[test]
    fn a_corrupt_blob_is_a_miss_and_is_removed() {
        let (_dir, cache, digest, _) = cache_with_layer();
        fs::write(cache.blob_path(&digest), b"lazer").unwrap();
        assert_eq!(cache.layer("k"), None);
        assert!(
            !cache.blob_path(&digest).exists(),
            "the corrupt blob is gone"
        );
    }

    fn tmp_entries(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn scratch_of_dead_builds_is_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let live = Cache::open(dir.path()).unwrap();
        let scratch = live.temp_dir("layer").unwrap();
        // A killed build: its lock file (unlocked) and dir with a partial file.
        let tmp = dir.path().join("tmp");
        fs::write(tmp.join("build-dead.lock"), b"").unwrap();
        fs::create_dir_all(tmp.join("build-dead.d/layer123")).unwrap();
        fs::write(tmp.join("build-dead.d/layer123/layer.tar.gz"), b"partial").unwrap();
        fs::create_dir_all(tmp.join("build-orphan.d")).unwrap();
        // Fresh scratch of an older version (no lock): kept for a day.
        fs::create_dir_all(tmp.join("site-packagesXYZ")).unwrap();
        let second = Cache::open(dir.path()).unwrap();
        let names = tmp_entries(dir.path());
        assert!(
            !names
                .iter()
                .any(|n| n.contains("dead") || n.contains("orphan")),
            "{names:?}"
        );
        assert!(scratch.path().is_dir(), "a live build's scratch is kept");
        assert!(names.contains(&"site-packagesXYZ".to_string()));
        assert_eq!(
            names.len(),
            5,
            "two live builds' lock + dir, the old dir: {names:?}"
        );
        drop(scratch);
        drop(live);
        drop(second);
        assert_eq!(
            tmp_entries(dir.path()),
            vec!["site-packagesXYZ".to_string()]
        );
    }
}
