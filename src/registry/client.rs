//! Distribution API operations used by resolve (pulls) and publish (pushes).

use super::error::RegistryError;
use crate::digest::Digest;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (host[:port]) that may be spoken to over plain HTTP.
    /// Loopback hosts (127.0.0.0/8, localhost, [::1]) always may.
    pub insecure: Vec<String>,
    /// Timeout for connecting and for each read.
    pub timeout: Duration,
    /// Attempts per request for 429 / 5xx / connection errors.
    pub retries: u32,
    /// Docker config (`~/.docker/config.json` or `$DOCKER_CONFIG/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Log each request (credentials redacted) to stderr.
    pub verbose: bool,
}

/// A manifest or index as fetched, digest verified.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

pub struct RegistryClient {
    pub options: RegistryOptions,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        Ok(RegistryClient { options })
    }

    /// GET a manifest or index by tag or digest. The bytes are checked against
    /// the digest when `reference` is a digest (and against Docker-Content-Digest).
    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let _ = (registry, repository, reference);
        todo!()
    }

    /// HEAD a manifest: its digest if the registry has it.
    pub async fn manifest_digest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let _ = (registry, repository, reference);
        todo!()
    }

    /// GET a small blob (a config) into memory, digest checked.
    pub async fn get_blob_bytes(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        let _ = (registry, repository, digest);
        todo!()
    }

    /// Stream a blob into `dest` (written to a temp file beside it, digest
    /// checked, then renamed). Returns its size.
    pub async fn pull_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let _ = (registry, repository, digest, dest);
        todo!()
    }

    /// HEAD a blob: its size if the repository has it.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let _ = (registry, repository, digest);
        todo!()
    }

    /// Try a cross-repository mount from `from_repository` on the same registry.
    /// Ok(true) when mounted; Ok(false) when the registry declined (caller uploads).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let _ = (registry, repository, digest, from_repository);
        todo!()
    }

    /// Upload a blob from a file (re-opened on each retry). Returns bytes sent.
    pub async fn push_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let _ = (registry, repository, digest, path);
        todo!()
    }

    /// PUT a manifest or index under a tag or digest; returns its digest.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let _ = (registry, repository, reference, media_type, bytes);
        todo!()
    }
}
