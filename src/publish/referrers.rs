//! Attaches referrers (SBOMs) to pushed image manifests: the blobs, the
//! artifact manifest by digest, then the referrers tag schema's index
//! (`sha256-<hex>` tag) updated with it, since many registries (Distribution
//! 2.8 among them) have no referrers API. Runs beside the image's blobs,
//! before the tag.

use super::registry::PushError;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use crate::sbom::referrer::{self, Referrer, EMPTY_CONFIG};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub async fn attach(
    client: &RegistryClient,
    cache: &Cache,
    referrers: &[Referrer],
    dest: &Reference,
    new_subjects: &BTreeSet<Digest>,
) -> Result<(), PushError> {
    // One subject per referrer, so their fallback tags differ: all at once.
    let pushed = Pushed::default();
    futures::future::try_join_all(referrers.iter().map(|r| {
        let new_subject = new_subjects.contains(&r.subject);
        attach_one(client, cache, r, dest, new_subject, &pushed)
    }))
    .await?;
    Ok(())
}

/// Blobs the referrers share (the empty config) go up once: two uploads of
/// one blob at once let Distribution answer a manifest PUT that names it
/// with `DIGEST_INVALID` / `MANIFEST_BLOB_UNKNOWN` (its link file is
/// rewritten in place while the manifest is checked).
#[derive(Default)]
struct Pushed(std::sync::Mutex<BTreeMap<Digest, Arc<tokio::sync::OnceCell<()>>>>);

impl Pushed {
    fn cell(&self, digest: &Digest) -> Arc<tokio::sync::OnceCell<()>> {
        let mut cells = self.0.lock().expect("not poisoned");
        cells.entry(digest.clone()).or_default().clone()
    }
}

async fn attach_one(
    client: &RegistryClient,
    cache: &Cache,
    r: &Referrer,
    dest: &Reference,
    new_subject: bool,
    pushed: &Pushed,
) -> Result<(), PushError> {
    let (registry, repository) = (&dest.registry, &dest.repository);
    let tag = referrer::fallback_tag(&r.subject);
    let manifest = async {
        // The SBOM of an image this build made new is not looked for: a
        // PUT of a manifest the registry has changes nothing.
        let present = match new_subject {
            true => None,
            false => {
                client
                    .manifest_digest(registry, repository, r.manifest_digest.as_str())
                    .await?
            }
        };
        if present.as_ref() != Some(&r.manifest_digest) {
            push_referrer(client, cache, r, dest, pushed).await?;
        }
        Ok::<_, PushError>(())
    };
    let existing = async {
        Ok::<_, PushError>(
            match client.manifest_digest(registry, repository, &tag).await? {
                Some(_) => Some(client.get_manifest(registry, repository, &tag).await?.bytes),
                None => None,
            },
        )
    };
    // The index names the artifact manifest: it goes up once that is in.
    let ((), existing) = futures::try_join!(manifest, existing)?;
    if let Some(index) = referrer::merged_index(existing.as_deref(), r) {
        client
            .put_manifest(registry, repository, &tag, crate::oci::OCI_INDEX, &index)
            .await?;
    }
    Ok(())
}

/// The SBOM's blobs (those the repository lacks) and its manifest. Skipped
/// when the repository holds the manifest already (a rebuild that changed
/// nothing): the registry checked its blobs when it was first pushed.
async fn push_referrer(
    client: &RegistryClient,
    cache: &Cache,
    r: &Referrer,
    dest: &Reference,
    pushed: &Pushed,
) -> Result<(), PushError> {
    let (registry, repository) = (&dest.registry, &dest.repository);
    futures::try_join!(
        push_missing_blob(client, cache, dest, &r.sbom, pushed),
        push_missing_blob(client, cache, dest, EMPTY_CONFIG, pushed),
    )?;
    client
        .put_manifest(
            registry,
            repository,
            r.manifest_digest.as_str(),
            crate::oci::OCI_MANIFEST,
            &r.manifest,
        )
        .await?;
    Ok(())
}

async fn push_missing_blob(
    client: &RegistryClient,
    cache: &Cache,
    dest: &Reference,
    bytes: &[u8],
    pushed: &Pushed,
) -> Result<(), PushError> {
    let (registry, repository) = (&dest.registry, &dest.repository);
    let digest = cache
        .put_blob_bytes(bytes)
        .map_err(|source| PushError::Io {
            path: cache.root().to_path_buf(),
            source,
        })?;
    let once = pushed.cell(&digest);
    once.get_or_try_init(|| async {
        if client
            .blob_exists(registry, repository, &digest)
            .await?
            .is_none()
        {
            client
                .push_blob(registry, repository, &digest, &cache.blob_path(&digest))
                .await?;
        }
        Ok::<_, PushError>(())
    })
    .await?;
    Ok(())
}
