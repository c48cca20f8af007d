//! Publish to a registry: blobs first (HEAD, then a cross-repository mount
//! from the base's repository when it lives on the same registry, else an
//! upload, several at once; a layer sent early is awaited, not checked) while
//! the SBOM referrers go up beside them, then
//! platform manifests by digest, and the tag last, so a tag never points at
//! a half-pushed image.

use super::early::{EarlyPush, Outcome};
use super::{BlobAction, BlobReport, Publishable, Publisher};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind};
use crate::image::{BlobSource, ImageSource};
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use crate::resolve::{self, ResolveError};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};

/// Blobs uploaded at once.
const PARALLEL_UPLOADS: usize = 4;
/// Blobs checked (HEAD) at once: small requests, all on one connection pool.
const PARALLEL_CHECKS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Fetch(#[from] ResolveError),
    #[error("cache `{}`: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Carries a [`super::BlobError`].
    #[error(transparent)]
    Blob(std::io::Error),
}

impl crate::error::Hint for PushError {
    fn hint(&self) -> Option<String> {
        match self {
            PushError::Registry(e) => e.hint(),
            PushError::Fetch(e) => e.hint(),
            PushError::Io { .. } | PushError::Blob(_) => None,
        }
    }
}

/// Where a blob of the image can be had from.
enum Origin {
    Base(std::sync::Arc<dyn ImageSource>),
    Cache,
    /// A new layer, in the local cache and in this repository (the cache repo).
    CacheAndRepo(Reference),
}

/// A blob to push: where it comes from, its descriptor's size, its name in errors.
struct ToPush {
    origin: Origin,
    size: u64,
    what: String,
}

/// Publishes to `reference` on its registry.
pub struct RegistryPublisher {
    pub client: RegistryClient,
    pub reference: Reference,
}

#[async_trait::async_trait]
impl Publisher for RegistryPublisher {
    async fn publish(
        &self,
        cache: &Cache,
        image: &Publishable<'_>,
        log: &crate::progress::Log,
    ) -> crate::error::Result<Vec<BlobReport>> {
        log.step(&format!("pushing to `{}`", self.reference));
        push(&self.client, cache, image, &self.reference)
            .await
            .map_err(|e| {
                let kind = match &e {
                    PushError::Registry(RegistryError::Io { .. }) | PushError::Io { .. } => {
                        ErrorKind::Other
                    }
                    PushError::Registry(_) => ErrorKind::Registry,
                    PushError::Fetch(fetch) => fetch.kind(),
                    PushError::Blob(blob) => return super::blob_failure(blob),
                };
                Error::hinted(kind)(e)
            })
    }
}

pub async fn push(
    client: &RegistryClient,
    cache: &Cache,
    image: &Publishable<'_>,
    dest: &Reference,
) -> Result<Vec<BlobReport>, PushError> {
    let mut blobs: BTreeMap<Digest, ToPush> = BTreeMap::new();
    for img in &image.images {
        for (i, layer) in img.layers.iter().enumerate() {
            let origin = match (&layer.blob, &image.new_layers_also_in) {
                (BlobSource::Source(source), _) => Origin::Base(source.clone()),
                (BlobSource::Cache, Some(repo)) => Origin::CacheAndRepo(repo.clone()),
                (BlobSource::Cache, None) => Origin::Cache,
            };
            let digest = &layer.descriptor.digest;
            blobs.entry(digest.clone()).or_insert(ToPush {
                origin,
                size: layer.descriptor.size,
                what: super::layer_name(i, img.new_from(), digest),
            });
        }
        cache
            .put_blob_bytes(&img.config)
            .map_err(|source| PushError::Io {
                path: cache.blob_path(&img.config_digest),
                source,
            })?;
        blobs.insert(
            img.config_digest.clone(),
            ToPush {
                origin: Origin::Cache,
                size: img.config.len() as u64,
                what: format!("config `{}`", img.config_digest),
            },
        );
    }
    // The SBOMs don't wait for the image's blobs (nor they for them): a
    // referrer may name a subject not pushed yet, the image follows at once.
    let new_images = made_here(image);
    let (reports, ()) = futures::try_join!(
        push_blobs(client, cache, image, dest, &blobs, &new_images),
        super::referrers::attach(client, cache, &image.referrers, dest, &new_images),
    )?;
    // Platform manifests once their blobs are in, the tag last: a failure
    // anywhere before leaves the tag where it was.
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    let (registry, repository) = (&dest.registry, &dest.repository);
    match &image.index {
        Some((bytes, _)) => {
            futures::future::try_join_all(image.images.iter().map(|img| {
                client.put_manifest(
                    registry,
                    repository,
                    img.manifest_digest.as_str(),
                    crate::oci::OCI_MANIFEST,
                    &img.manifest,
                )
            }))
            .await?;
            client
                .put_manifest(registry, repository, &tag, crate::oci::OCI_INDEX, bytes)
                .await?;
        }
        None => {
            let (media_type, bytes) = image.top();
            client
                .put_manifest(registry, repository, &tag, media_type, bytes)
                .await?;
        }
    }
    Ok(reports)
}

/// Every blob the repository lacks, several at once; reports those it had.
async fn push_blobs(
    client: &RegistryClient,
    cache: &Cache,
    image: &Publishable<'_>,
    dest: &Reference,
    blobs: &BTreeMap<Digest, ToPush>,
    new_images: &BTreeSet<Digest>,
) -> Result<Vec<BlobReport>, PushError> {
    let present = blobs_of_present_manifests(client, image, dest, new_images).await?;
    let mut reports: Vec<BlobReport> = present
        .iter()
        .filter(|digest| blobs.contains_key(digest))
        .map(|digest| BlobReport {
            digest: digest.clone(),
            action: BlobAction::Existing,
            bytes_sent: 0,
        })
        .collect();
    // The futures are made first (none runs until polled): a closure in
    // the stream would not be `Send` for every lifetime, as a boxed
    // `Publisher` future must be.
    let uploads = tokio::sync::Semaphore::new(PARALLEL_UPLOADS);
    let pushes: Vec<_> = blobs
        .iter()
        .filter(|(digest, _)| !present.contains(*digest))
        .map(|(digest, blob)| push_one(client, cache, dest, image.early, &uploads, digest, blob))
        .collect();
    let pushed: Vec<BlobReport> = stream::iter(pushes)
        .buffer_unordered(PARALLEL_CHECKS)
        .try_collect()
        .await?;
    reports.extend(pushed);
    Ok(reports)
}

/// The blobs of the images whose manifest the repository already holds
/// (by digest): the registry checked every blob a manifest names when it
/// was pushed, and its garbage collection keeps them, so they need no
/// check each (one request per platform instead of one per blob, as
/// go-containerregistry's `remote.Write` does). A rebuild that changed
/// nothing pushes just the tag. Not asked for an image with a layer this
/// build made: it is new (were it not, checking its blobs is still right).
async fn blobs_of_present_manifests(
    client: &RegistryClient,
    image: &Publishable<'_>,
    dest: &Reference,
    new_images: &BTreeSet<Digest>,
) -> Result<BTreeSet<Digest>, PushError> {
    let found = futures::future::try_join_all(image.images.iter().map(|img| async move {
        if new_images.contains(&img.manifest_digest) {
            return Ok(None);
        }
        client
            .manifest_digest(
                &dest.registry,
                &dest.repository,
                img.manifest_digest.as_str(),
            )
            .await
    }))
    .await?;
    let mut present = BTreeSet::new();
    for (img, found) in image.images.iter().zip(found) {
        if found.as_ref() == Some(&img.manifest_digest) {
            present.extend(img.descriptors().map(|d| d.digest.clone()));
            present.insert(img.config_digest.clone());
        }
    }
    Ok(present)
}

/// The manifest digests of the images with a layer this build made (and
/// offered to an early upload): new to the destination.
fn made_here(image: &Publishable<'_>) -> BTreeSet<Digest> {
    let Some(early) = image.early else {
        return BTreeSet::new();
    };
    image
        .images
        .iter()
        .filter(|img| {
            img.layers
                .iter()
                .any(|layer| early.offered(&layer.descriptor.digest))
        })
        .map(|img| img.manifest_digest.clone())
        .collect()
}

async fn push_one(
    client: &RegistryClient,
    cache: &Cache,
    dest: &Reference,
    early: Option<&EarlyPush>,
    uploads: &tokio::sync::Semaphore,
    digest: &Digest,
    blob: &ToPush,
) -> Result<BlobReport, PushError> {
    let report = |action, bytes_sent| {
        Ok(BlobReport {
            digest: digest.clone(),
            action,
            bytes_sent,
        })
    };
    // Sent early, or found there: else (it failed) this tries again.
    if let Some(upload) = early.and_then(|early| early.upload_of(digest)) {
        match upload.await {
            Outcome::Existing => return report(BlobAction::Existing, 0),
            Outcome::Uploaded(sent) => return report(BlobAction::Uploaded, sent),
            Outcome::Failed => {}
        }
    }
    if client
        .blob_exists(&dest.registry, &dest.repository, digest)
        .await?
        .is_some()
    {
        return report(BlobAction::Existing, 0);
    }
    if let Origin::CacheAndRepo(repo) = &blob.origin {
        if repo.registry == dest.registry
            && client
                .mount_blob(&dest.registry, &dest.repository, digest, &repo.repository)
                .await?
        {
            return report(BlobAction::Mounted, 0);
        }
    }
    if let Origin::Base(source) = &blob.origin {
        if let Some((registry, repository)) = source.registry_repository() {
            if registry == dest.registry
                && client
                    .mount_blob(&dest.registry, &dest.repository, digest, repository)
                    .await?
            {
                return report(BlobAction::Mounted, 0);
            }
        }
    }
    let _slot = uploads
        .acquire()
        .await
        .expect("the semaphore is never closed");
    if let Origin::Base(source) = &blob.origin {
        resolve::fetch_blob(cache, source.as_ref(), digest).await?;
    }
    let path = cache.blob_path(digest);
    super::copy_verified(&path, std::io::sink(), digest, blob.size, &blob.what).map_err(|e| {
        match super::BlobError::of(&e) {
            Some(_) => PushError::Blob(e),
            None => PushError::Io {
                path: path.clone(),
                source: e,
            },
        }
    })?;
    let sent = client
        .push_blob(&dest.registry, &dest.repository, digest, &path)
        .await?;
    report(BlobAction::Uploaded, sent)
}
