//! The bundle's `base/`: the resolved base image as an OCI image layout,
//! written the way the layout publisher writes (`publish::layout`). The
//! top document (index or manifest) is kept byte for byte, with the
//! manifest, config and layers of every platform the recipe builds; blobs
//! already in the layout with the right digest are kept, the rest come
//! through the cache (digest checked) and are copied (checked again).

use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::{ImageSource, SourceError};
use crate::oci;
use crate::publish::layout::{put_blobs, LocalBlob};
use crate::publish::BlobAction;
use crate::resolve::{self, BaseImage, ResolveError};
use std::collections::BTreeSet;
use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("writing the base layout: {0}")]
    Io(#[from] io::Error),
}

impl crate::error::Hint for BaseError {
    fn hint(&self) -> Option<String> {
        match self {
            BaseError::Resolve(e) => e.hint(),
            BaseError::Source(e) => e.hint(),
            _ => None,
        }
    }
}

/// What writing the layout did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BaseCounts {
    pub blobs: usize,
    pub kept: usize,
    pub copied: usize,
    /// Hex digests of every blob the layout needs (the rest may be pruned).
    #[serde(skip)]
    pub wanted: BTreeSet<String>,
    /// (media type, size) of the top document.
    #[serde(skip)]
    pub top: (String, u64),
}

/// Writes `bases` (one per platform, all from one reference) into the
/// layout at `dir`, through the layout publisher's writing
/// ([`put_blobs`]): documents byte for byte, blobs the layout lacks
/// fetched into the cache and copied from it, checked.
pub async fn write(
    cache: &Cache,
    bases: &[BaseImage],
    dir: &Path,
) -> Result<BaseCounts, BaseError> {
    let first = &bases[0];
    let writer = crate::layout::Writer::create(dir)?;
    let mut counts = BaseCounts::default();
    let (top_bytes, top_type) = document(first.source.as_ref(), &first.top_digest).await?;
    counts.top = (top_type.clone(), top_bytes.len() as u64);
    let mut documents = vec![top_bytes.clone()];
    let mut blobs = Vec::new();
    for base in bases {
        if base.image.manifest_digest != base.top_digest {
            documents.push(base.image.manifest.clone());
        }
        let descriptors = std::iter::once(&base.manifest.config).chain(&base.manifest.layers);
        for (i, descriptor) in descriptors.enumerate() {
            let digest = &descriptor.digest;
            counts.blobs += 1;
            if !counts.wanted.insert(digest.hex().to_string()) {
                continue;
            }
            // A re-made bundle keeps its blobs: fetched only when missing.
            if writer.has_blob(digest) {
                counts.kept += 1;
                continue;
            }
            blobs.push(LocalBlob {
                digest: digest.clone(),
                size: descriptor.size,
                path: resolve::fetch_blob(cache, base.source.as_ref(), digest).await?,
                what: match i {
                    0 => format!("the base's config `{digest}`"),
                    _ => crate::publish::layer_name(i - 1, usize::MAX, digest),
                },
            });
        }
    }
    for bytes in &documents {
        counts.blobs += 1;
        counts.wanted.insert(Digest::of(bytes).hex().to_string());
        match writer.put_bytes(bytes)? {
            true => counts.copied += 1,
            false => counts.kept += 1,
        }
    }
    for report in crate::off_async_workers(|| put_blobs(&writer, &blobs))? {
        match report.action {
            BlobAction::Existing => counts.kept += 1,
            _ => counts.copied += 1,
        }
    }
    // The index names the base by its reference, so `--base-layout` finds it.
    let index =
        crate::layout::single_entry_index(&top_type, &top_bytes, None, &first.name.to_string());
    writer.finish(&oci::to_canonical_bytes(&index))?;
    Ok(counts)
}

/// A manifest or index by digest, with its media type.
async fn document(
    source: &dyn ImageSource,
    digest: &Digest,
) -> Result<(Vec<u8>, String), BaseError> {
    let fetched = source.manifest(digest).await?;
    if !fetched.media_type.is_empty() {
        return Ok((fetched.bytes, fetched.media_type));
    }
    let bytes = fetched.bytes;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    Ok((bytes, media_type))
}
