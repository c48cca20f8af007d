//! Publish to an OCI image layout dir (readable by skopeo, umoci, crane, podman).
//! The dir is built beside its destination and renamed into place.

use super::{BlobAction, BlobError, BlobReport, Publishable, Publisher};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::io as io_error;
use crate::layout::Writer;
use crate::oci;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Publishes to the OCI image layout at `dir`, naming the image `tag`.
pub struct LayoutPublisher {
    pub dir: PathBuf,
    pub tag: String,
}

#[async_trait::async_trait]
impl Publisher for LayoutPublisher {
    async fn publish(
        &self,
        cache: &Cache,
        image: &Publishable<'_>,
        log: &crate::progress::Log,
    ) -> crate::error::Result<Vec<BlobReport>> {
        super::gather_base_layers(cache, image).await?;
        log.step(&format!("writing OCI layout `{}`", self.dir.display()));
        let local = |d: &Digest| cache.blob_path(d);
        crate::off_async_workers(|| write(image, &self.dir, &self.tag, &local)).map_err(|e| {
            if BlobError::of(&e).is_some() {
                return super::blob_failure(&e);
            }
            io_error(format!("cannot write OCI layout `{}`", self.dir.display()))(e)
        })
    }
}

/// Writes the image to `dir` with `tag` as its `org.opencontainers.image.ref.name`.
/// `local_blob` gives the cached file of every blob the image references.
pub fn write(
    image: &Publishable,
    dir: &Path,
    tag: &str,
    local_blob: &dyn Fn(&Digest) -> PathBuf,
) -> io::Result<Vec<BlobReport>> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".slipway-layout-")
        .tempdir_in(parent)?;
    let writer = crate::layout::Writer::create(staging.path())?;
    for img in &image.images {
        writer.put_bytes(&img.config)?;
        writer.put_bytes(&img.manifest)?;
    }
    if let Some((bytes, _)) = &image.index {
        writer.put_bytes(bytes)?;
    }
    let layers: Vec<LocalBlob> = image
        .images
        .iter()
        .flat_map(|img| {
            img.descriptors().enumerate().map(|(i, layer)| LocalBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                path: local_blob(&layer.digest),
                what: super::layer_name(i, img.new_from(), &layer.digest),
            })
        })
        .collect();
    let reports = put_blobs(&writer, &layers)?;
    for referrer in &image.referrers {
        writer.put_bytes(&referrer.sbom)?;
        writer.put_bytes(crate::sbom::referrer::EMPTY_CONFIG)?;
        writer.put_bytes(&referrer.manifest)?;
    }
    let (media_type, top) = image.top();
    let platform = image
        .index
        .is_none()
        .then(|| image.images[0].platform.clone());
    let index = crate::layout::single_entry_index(media_type, top, platform, tag);
    writer.finish(&with_referrers(
        &oci::to_canonical_bytes(&index),
        &image.referrers,
    ))?;
    replace_dir(staging, dir)?;
    Ok(reports)
}

/// A blob a layout gets from a local file.
pub struct LocalBlob {
    pub digest: Digest,
    /// As its descriptor gives it: checked while copying.
    pub size: u64,
    pub path: PathBuf,
    /// How errors name it ("layer 2 `sha256:…`").
    pub what: String,
}

/// Puts `blobs` into the layout `writer` fills, each once: one the layout
/// already holds with the right digest is kept (`Existing`), the rest are
/// copied, never hard-linked (editing the output must not edit the cache),
/// and checked against digest and size on the way. The one way blobs get
/// into a layout: `--oci-layout` and a bundle's `base/`.
pub fn put_blobs(writer: &Writer, blobs: &[LocalBlob]) -> io::Result<Vec<BlobReport>> {
    let mut reports = Vec::new();
    let mut seen = BTreeSet::new();
    for blob in blobs {
        if !seen.insert(&blob.digest) {
            continue;
        }
        let action = if writer.has_blob(&blob.digest) {
            BlobAction::Existing
        } else {
            writer.put_with(&blob.digest, |file| {
                let out = io::BufWriter::new(file);
                super::copy_verified(&blob.path, out, &blob.digest, blob.size, &blob.what)?
                    .into_inner()
                    .map(drop)
                    .map_err(|e| e.into_error())
            })?;
            BlobAction::Written
        };
        reports.push(BlobReport {
            digest: blob.digest.clone(),
            action,
            bytes_sent: 0,
        });
    }
    Ok(reports)
}

/// index.json with the referrers listed after the image, as ORAS lays them
/// out: the image stays the first entry, each referrer names its subject.
fn with_referrers(index: &[u8], referrers: &[crate::sbom::referrer::Referrer]) -> Vec<u8> {
    if referrers.is_empty() {
        return index.to_vec();
    }
    let mut index: serde_json::Value = serde_json::from_slice(index).expect("index.json is JSON");
    if let Some(manifests) = index["manifests"].as_array_mut() {
        manifests.extend(referrers.iter().map(|r| r.descriptor()));
    }
    serde_json::to_vec(&index).expect("JSON values serialise")
}

/// Moves a finished staging dir to `dest`, replacing what was there.
pub(crate) fn replace_dir(staging: tempfile::TempDir, dest: &Path) -> io::Result<()> {
    super::check_layout_dir(dest)
        .map_err(|why| io::Error::new(io::ErrorKind::AlreadyExists, why))?;
    let staged = staging.keep();
    if dest.exists() {
        let old = dest.with_file_name(format!(
            ".{}.old-{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
            std::process::id()
        ));
        fs::rename(dest, &old)?;
        fs::rename(&staged, dest)?;
        fs::remove_dir_all(&old)?;
    } else {
        fs::rename(&staged, dest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn blob(dir: &Path, name: &str, bytes: &[u8]) -> LocalBlob {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        LocalBlob {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            path,
            what: format!("blob {name}"),
        }
    }

    #[test]
    fn put_blobs_copies_once_keeps_what_is_there_and_refuses_a_corrupt_source() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::create(&dir.path().join("layout")).unwrap();
        let a = blob(dir.path(), "a", b"layer a");
        let again = blob(dir.path(), "a2", b"layer a");
        let reports = put_blobs(&writer, &[a, again]).unwrap();
        assert_eq!(reports.len(), 1, "one blob, written once");
        assert_eq!(reports[0].action, BlobAction::Written);
        let written = writer.blob_path(&reports[0].digest);
        assert_eq!(fs::read(&written).unwrap(), b"layer a");
        // A copy, never a link to the source.
        assert_eq!(fs::metadata(&written).unwrap().nlink(), 1);

        let kept = put_blobs(&writer, &[blob(dir.path(), "a3", b"layer a")]).unwrap();
        assert_eq!(kept[0].action, BlobAction::Existing);

        // The source's bytes don't match the digest it is put under.
        let mut lying = blob(dir.path(), "b", b"layer b");
        lying.digest = Digest::of(b"something else");
        let error = put_blobs(&writer, &[lying]).unwrap_err();
        assert!(
            matches!(
                super::super::BlobError::of(&error),
                Some(super::super::BlobError::Corrupt { .. })
            ),
            "{error}"
        );
        assert!(!writer.blob_path(&Digest::of(b"something else")).exists());

        // A size that isn't the descriptor's.
        let mut short = blob(dir.path(), "c", b"layer c");
        short.size += 1;
        let error = put_blobs(&writer, &[short]).unwrap_err();
        assert!(
            matches!(
                super::super::BlobError::of(&error),
                Some(super::super::BlobError::SizeMismatch { .. })
            ),
            "{error}"
        );
        assert!(!writer.blob_path(&Digest::of(b"layer c")).exists());
    }
}
