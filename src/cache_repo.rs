//! The cache repo (an edge of the pipeline, beside the local cache): layer
//! key → finished layer, kept in a registry repository every CI runner can
//! reach. Each entry is a small OCI artifact tagged by a digest of its key
//! (see `entry`); its layer blob sits in the same repository.
//!
//! Faults never fail a build: an unreachable or refusing repo turns this
//! tier off with one warning; credentials that may only pull keep lookups
//! and skip writes with one note; an entry that does not hold what it
//! claims is refused (and overwritten by the rebuilt layer).

pub mod entry;
pub mod prune;

use crate::cache::LayerRecord;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

/// `REGISTRY/REPO` of `--cache-repo` (a tag or digest makes no sense there).
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    let reference = Reference::parse(text)?;
    // (parse gives a bare name the tag `latest`: look at what was written.)
    let last = text.rsplit('/').next().unwrap_or(text);
    if last.contains([':', '@']) {
        return Err(format!(
            "cache repo `{text}` names a tag or digest; give the repository alone"
        ));
    }
    Ok(Reference {
        tag: None,
        digest: None,
        ..reference
    })
}

/// What this tier has learnt about the repo during one build.
#[derive(Default)]
struct Health {
    /// Unreachable or refusing: no more lookups or writes.
    off: bool,
    /// Writes refused (pull-only credentials) or failing: no more writes.
    no_writes: bool,
}

pub struct CacheRepo<'a> {
    client: &'a RegistryClient,
    pub reference: Reference,
    health: Mutex<Health>,
}

/// Why an entry is not used although the repo answered.
#[derive(Debug)]
pub struct Refused(pub String);

impl<'a> CacheRepo<'a> {
    pub fn new(client: &'a RegistryClient, reference: Reference) -> CacheRepo<'a> {
        CacheRepo {
            client,
            reference,
            health: Mutex::default(),
        }
    }

    fn registry(&self) -> &str {
        &self.reference.registry
    }

    fn repository(&self) -> &str {
        &self.reference.repository
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_off(&self) -> bool {
        self.health().off
    }

    /// The layer recorded for `key`, checked as far as the repo can tell
    /// without its bytes (entry fields, the blob's size by HEAD). Ok(None):
    /// no entry, or the tier is off.
    pub async fn lookup(&self, key: &str) -> Result<Option<LayerRecord>, Refused> {
        let Some(bytes) = self.get_entry(&entry::tag(key)).await? else {
            return Ok(None);
        };
        let record = entry::parse(&bytes, key).map_err(|e| Refused(e.to_string()))?;
        match self
            .client
            .blob_exists(self.registry(), self.repository(), &record.digest)
            .await
        {
            Ok(Some(size)) if size == record.size => Ok(Some(record)),
            Ok(Some(size)) => Err(Refused(format!(
                "it says its layer `{}` has {} bytes; the repo holds {size}",
                record.digest, record.size
            ))),
            Ok(None) => Err(Refused(format!(
                "its layer `{}` is not in the repo (garbage-collected?)",
                record.digest
            ))),
            Err(e) => {
                self.turn_off(&e);
                Ok(None)
            }
        }
    }

    /// The facts document stored under `key` (digest checked by the
    /// client, size bounded), if any.
    pub async fn lookup_facts(&self, key: &str) -> Result<Option<Vec<u8>>, Refused> {
        let Some(bytes) = self.get_entry(&entry::facts_tag(key)).await? else {
            return Ok(None);
        };
        let document = entry::parse_facts(&bytes, key).map_err(|e| Refused(e.to_string()))?;
        match self
            .client
            .get_blob_bytes(self.registry(), self.repository(), &document.digest)
            .await
        {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e @ (RegistryError::DigestMismatch { .. } | RegistryError::Protocol { .. })) => {
                Err(Refused(e.to_string()))
            }
            Err(e) => {
                self.turn_off(&e);
                Ok(None)
            }
        }
    }

    /// The entry manifest under `tag`: None when absent (or the tier is
    /// off or fails, which turns it off).
    async fn get_entry(&self, tag: &str) -> Result<Option<Vec<u8>>, Refused> {
        if self.is_off() {
            return Ok(None);
        }
        let fetched = match self
            .client
            .get_untrusted_manifest(self.registry(), self.repository(), tag)
            .await
        {
            Ok(fetched) => fetched,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => {
                self.turn_off(&e);
                return Ok(None);
            }
        };
        if fetched.bytes.len() > entry::ENTRY_LIMIT {
            return Err(Refused(format!(
                "its manifest is {} bytes, more than an entry's {}",
                fetched.bytes.len(),
                entry::ENTRY_LIMIT
            )));
        }
        Ok(Some(fetched.bytes))
    }

    /// Downloads the entry's layer into `dest` (digest and size checked by
    /// the client). Err(Refused) when the bytes are not what the entry says;
    /// Ok(false) when the repo failed (the tier is then off).
    pub async fn download(&self, record: &LayerRecord, dest: &Path) -> Result<bool, Refused> {
        if self.is_off() {
            return Ok(false);
        }
        match self
            .client
            .pull_blob_of_size(
                self.registry(),
                self.repository(),
                &record.digest,
                record.size,
                dest,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e @ (RegistryError::DigestMismatch { .. } | RegistryError::Protocol { .. })) => {
                Err(Refused(e.to_string()))
            }
            Err(e) => {
                self.turn_off(&e);
                Ok(false)
            }
        }
    }

    /// Records `key` → `record` in the repo: the layer blob (unless there),
    /// the empty config, then the entry under its tag. Two runners writing
    /// one key write the same blob and each a whole entry: the tag ends on
    /// one of them, both valid.
    pub async fn store(&self, key: &str, record: &LayerRecord, blob: &Path, empty_config: &Path) {
        let manifest = entry::manifest(key, record, &crate::oci::rfc3339(now()));
        let blobs = [
            (record.digest.clone(), blob),
            (Digest::of(entry::EMPTY_CONFIG), empty_config),
        ];
        self.put_entry(&entry::tag(key), &blobs, &manifest).await;
    }

    /// Records the facts document at `document` (its bytes `facts`) under `key`.
    pub async fn store_facts(&self, key: &str, facts: &[u8], document: &Path, empty_config: &Path) {
        let manifest = entry::facts_manifest(key, facts, &crate::oci::rfc3339(now()));
        let blobs = [
            (Digest::of(facts), document),
            (Digest::of(entry::EMPTY_CONFIG), empty_config),
        ];
        self.put_entry(&entry::facts_tag(key), &blobs, &manifest)
            .await;
    }

    /// Pushes `blobs` the repo lacks, then `manifest` under `tag`; a
    /// refusal stops this build's writes (one note or warning).
    async fn put_entry(&self, tag: &str, blobs: &[(Digest, &Path)], manifest: &[u8]) {
        if self.health().off || self.health().no_writes {
            return;
        }
        let result = async {
            for (digest, path) in blobs {
                self.push_blob_unless_there(digest, path).await?;
            }
            self.client
                .put_manifest(
                    self.registry(),
                    self.repository(),
                    tag,
                    crate::oci::OCI_MANIFEST,
                    manifest,
                )
                .await
        }
        .await;
        if let Err(e) = result {
            self.stop_writes(&e);
        }
    }

    async fn push_blob_unless_there(
        &self,
        digest: &Digest,
        path: &Path,
    ) -> Result<(), RegistryError> {
        let (registry, repository) = (self.registry(), self.repository());
        if self
            .client
            .blob_exists(registry, repository, digest)
            .await?
            .is_none()
        {
            self.client
                .push_blob(registry, repository, digest, path)
                .await?;
        }
        Ok(())
    }

    /// The one warning of a build whose cache repo fails.
    fn turn_off(&self, e: &RegistryError) {
        let mut health = self.health();
        if !health.off {
            health.off = true;
            eprintln!(
                "warning: cache repo `{}` cannot be used, building without it: {}",
                self.reference,
                crate::sanitize::escape(&e.to_string())
            );
        }
    }

    fn stop_writes(&self, e: &RegistryError) {
        let mut health = self.health();
        if health.no_writes || health.off {
            return;
        }
        health.no_writes = true;
        if matches!(e.status(), Some(401 | 403)) {
            eprintln!(
                "note: cache repo `{}` does not take writes with these credentials (pull-only?); layers built here are not shared",
                self.reference
            );
        } else {
            eprintln!(
                "warning: cannot write to cache repo `{}`; layers built here are not shared: {}",
                self.reference,
                crate::sanitize::escape(&e.to_string())
            );
        }
    }

    /// The one warning for an entry that is not used.
    pub fn warn_refused(&self, key: &str, refused: &Refused) {
        eprintln!(
            "warning: cache repo `{}`: refused the entry for key `{key}`: {}; building it here and overwriting the entry",
            self.reference,
            crate::sanitize::escape(&refused.0)
        );
    }
}

/// Checks a downloaded layer against what its entry claims beyond its
/// digest: its diff_id and uncompressed size (read streaming; a gzip bomb
/// stops one byte past the claimed size).
pub fn verify_layer(path: &Path, record: &LayerRecord) -> Result<(), Refused> {
    let file = std::fs::File::open(path).map_err(|e| Refused(format!("cannot read it: {e}")))?;
    let gunzip = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    let mut hashing = crate::digest::HashingWriter::new(io::sink());
    io::copy(
        &mut gunzip.take(record.uncompressed_size.saturating_add(1)),
        &mut hashing,
    )
    .map_err(|e| Refused(format!("its layer is not gzip: {e}")))?;
    let (_, diff_id, size) = hashing.finish();
    // (Past the claimed size the stream was cut: its diff_id differs too.)
    if diff_id != record.diff_id {
        return Err(Refused(format!(
            "its layer's diff_id is `{diff_id}`, not the `{}` it says",
            record.diff_id
        )));
    }
    if size != record.uncompressed_size {
        return Err(Refused(format!(
            "its layer unpacks to {size} bytes, not the {} it says",
            record.uncompressed_size
        )));
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_repo_is_a_repository_without_tag_or_digest() {
        let repo = parse_reference("127.0.0.1:5000/ci/cache").unwrap();
        assert_eq!(
            (repo.registry.as_str(), repo.repository.as_str()),
            ("127.0.0.1:5000", "ci/cache")
        );
        assert_eq!((repo.tag, repo.digest), (None, None));
        for bad in [
            "127.0.0.1:5000/ci/cache:latest",
            "r.example/c@sha256:00",
            "",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut out, bytes).unwrap();
        out.finish().unwrap()
    }

    #[test]
    fn a_layer_must_unpack_to_its_claimed_diff_id_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar.gz");
        let tar = vec![7u8; 4096];
        std::fs::write(&path, gzip(&tar)).unwrap();
        let record = LayerRecord {
            digest: Digest::of(b"unused here"),
            diff_id: Digest::of(&tar),
            size: 1,
            uncompressed_size: 4096,
        };
        assert!(verify_layer(&path, &record).is_ok());
        let lying_size = LayerRecord {
            uncompressed_size: 4095,
            ..record.clone()
        };
        assert!(verify_layer(&path, &lying_size).is_err());
        let other = LayerRecord {
            diff_id: Digest::of(b"another layer"),
            ..record.clone()
        };
        assert!(verify_layer(&path, &other)
            .unwrap_err()
            .0
            .contains("diff_id"));
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(verify_layer(&path, &record).is_err());
    }
}
