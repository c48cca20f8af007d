//! The bundle's `base/`: the resolved base image as an OCI image layout.
//! The top document (index or manifest) is kept byte for byte, with the
//! manifest, config and layers of every platform the recipe builds; blobs
//! already in the layout with the right digest are kept, the rest come
//! through the cache (digest checked) and are copied (checked again).

use crate::cache::Cache;
use crate::digest::{Digest, HashingWriter};
use crate::image::{ImageSource, SourceError};
use crate::oci;
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
    #[error("`{}` does not match its digest `{expected}` (it hashes to `{actual}`)", path.display())]
    Mismatch {
        path: std::path::PathBuf,
        expected: Digest,
        actual: Digest,
    },
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

/// Writes `bases` (one per platform, all from one reference) into the layout at `dir`.
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
    put_bytes(&writer, &first.top_digest, &top_bytes, &mut counts)?;
    for base in bases {
        if base.manifest_digest != base.top_digest {
            let (bytes, _) = document(base.source.as_ref(), &base.manifest_digest).await?;
            put_bytes(&writer, &base.manifest_digest, &bytes, &mut counts)?;
        }
        let mut digests = vec![&base.manifest.config.digest];
        digests.extend(base.manifest.layers.iter().map(|l| &l.digest));
        for digest in digests {
            counts.blobs += 1;
            if !counts.wanted.insert(digest.hex().to_string()) {
                continue;
            }
            if writer.has_blob(digest) {
                counts.kept += 1;
                continue;
            }
            let source = resolve::fetch_blob(cache, base.source.as_ref(), digest).await?;
            // A blob that hashes to something else is never kept under the digest.
            writer.put_with(digest, |file| {
                let actual = copy_hashed(&source, file)?;
                if &actual != digest {
                    return Err(BaseError::Mismatch {
                        path: source.clone(),
                        expected: digest.clone(),
                        actual,
                    });
                }
                Ok(())
            })?;
            counts.copied += 1;
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

fn put_bytes(
    writer: &crate::layout::Writer,
    digest: &Digest,
    bytes: &[u8],
    counts: &mut BaseCounts,
) -> Result<(), BaseError> {
    counts.blobs += 1;
    counts.wanted.insert(digest.hex().to_string());
    if writer.put_bytes(bytes)? {
        counts.copied += 1;
    } else {
        counts.kept += 1;
    }
    Ok(())
}

/// Copies `source` into `file`, hashing on the way.
fn copy_hashed(source: &Path, file: &mut std::fs::File) -> io::Result<Digest> {
    let mut writer = HashingWriter::new(file);
    io::copy(&mut std::fs::File::open(source)?, &mut writer)?;
    Ok(writer.finish().1)
}
