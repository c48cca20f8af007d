//! Publish to a docker-archive tar (`docker load`, `podman load`, `skopeo copy
//! docker-archive:`). Layers are stored uncompressed as `docker save` does, each
//! checked against its diff_id; the archive is written to a temp file and
//! renamed into place. `RepoTags` names the image for `load` (else it arrives
//! unnamed).

use super::{BlobAction, BlobReport, Publishable, Publisher};
use crate::cache::Cache;
use crate::digest::{Digest, HashingWriter};
use crate::error::{io as io_error, Error, ErrorKind};
use crate::reference::Reference;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("a docker-archive holds one platform, but this build has {0}")]
    SeveralPlatforms(usize),
    #[error("layer `{digest}` decompresses to `{actual}`, not its diff_id `{expected}`")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// Carries a [`super::BlobError`].
    #[error(transparent)]
    Blob(io::Error),
    #[error("writing `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::error::Hint for ArchiveError {
    fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::SeveralPlatforms(_) => Some("build one platform for a docker-archive (`platforms = [\"linux/amd64\"]`), or use `--oci-layout`".into()),
            _ => None,
        }
    }
}

/// Publishes to the docker-archive tar `file`, named by `repo_tags` for `load`.
pub struct ArchivePublisher {
    pub file: PathBuf,
    pub repo_tags: Vec<Reference>,
}

#[async_trait::async_trait]
impl Publisher for ArchivePublisher {
    async fn publish(
        &self,
        cache: &Cache,
        image: &Publishable<'_>,
        log: &crate::progress::Log,
    ) -> crate::error::Result<Vec<BlobReport>> {
        super::gather_base_layers(cache, image).await?;
        log.step(&format!("writing docker archive `{}`", self.file.display()));
        let scratch = cache.temp_dir("archive").map_err(io_error(
            cache.context("cannot create a temp dir in the cache"),
        ))?;
        let local = |d: &Digest| cache.blob_path(d);
        crate::off_async_workers(|| {
            write(image, &self.file, &self.repo_tags, scratch.path(), &local)
        })
        .map_err(|e| {
            if let ArchiveError::Blob(blob) = &e {
                return super::blob_failure(blob);
            }
            Error::hinted(ErrorKind::Other)(e)
        })
    }
}

pub fn write(
    image: &Publishable,
    file: &Path,
    repo_tags: &[Reference],
    scratch: &Path,
    local_blob: &dyn Fn(&Digest) -> PathBuf,
) -> Result<Vec<BlobReport>, ArchiveError> {
    if image.images.len() != 1 {
        return Err(ArchiveError::SeveralPlatforms(image.images.len()));
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io {
            path: path.clone(),
            source,
        }
    };
    let img = image.images[0];
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".slipway-archive-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let mut tar = tar::Builder::new(BufWriter::new(temp.reopen().map_err(io_err(file))?));
    let mut reports = Vec::new();
    let mut layer_names = Vec::new();
    for (
        i,
        crate::image::Layer {
            descriptor: layer,
            diff_id,
            ..
        },
    ) in img.layers.iter().enumerate()
    {
        let what = super::layer_name(i, img.new_from(), &layer.digest);
        let unpacked = unpack_checked(&local_blob(&layer.digest), layer, diff_id, &what, scratch)?;
        let name = format!("blobs/sha256/{}", diff_id.hex());
        if !layer_names.contains(&name) {
            append_file(&mut tar, &name, &unpacked).map_err(io_err(file))?;
        }
        std::fs::remove_file(&unpacked).map_err(io_err(&unpacked))?;
        layer_names.push(name);
        reports.push(BlobReport {
            digest: layer.digest.clone(),
            action: BlobAction::Written,
            bytes_sent: 0,
        });
    }
    let config_name = format!("blobs/sha256/{}", img.config_digest.hex());
    append_bytes(&mut tar, &config_name, &img.config).map_err(io_err(file))?;
    let repo_tags: Vec<String> = repo_tags.iter().map(repo_tag).collect();
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layer_names }]);
    append_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("JSON"),
    )
    .map_err(io_err(file))?;
    let mut out = tar.into_inner().map_err(io_err(file))?;
    out.flush().map_err(io_err(file))?;
    out.get_ref().sync_all().map_err(io_err(file))?;
    temp.persist(file).map_err(|e| ArchiveError::Io {
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(reports)
}

/// The layer's tar, unpacked into `scratch` from its cached blob `local`:
/// the blob checked against its descriptor, the tar against its diff_id.
fn unpack_checked(
    local: &Path,
    layer: &crate::oci::Descriptor,
    diff_id: &Digest,
    what: &str,
    scratch: &Path,
) -> Result<PathBuf, ArchiveError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    super::copy_verified(local, io::sink(), &layer.digest, layer.size, what).map_err(|e| {
        match super::BlobError::of(&e) {
            Some(_) => ArchiveError::Blob(e),
            None => io_err(local)(e),
        }
    })?;
    let unpacked = scratch.join(format!("{}.tar", diff_id.hex()));
    let actual = decompress(local, &unpacked).map_err(io_err(&unpacked))?;
    if &actual != diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            digest: layer.digest.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(unpacked)
}

/// `registry/repository:tag` as `docker save` writes it (`latest` when untagged).
pub fn repo_tag(r: &Reference) -> String {
    format!(
        "{}/{}:{}",
        r.registry,
        r.repository,
        r.tag.as_deref().unwrap_or("latest")
    )
}

/// gunzips (or copies, if not gzip) `blob` to `dest`; returns the tar's sha256.
fn decompress(blob: &Path, dest: &Path) -> io::Result<Digest> {
    let mut head = [0u8; 2];
    let gz = {
        use std::io::Read;
        File::open(blob)?.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b]
    };
    let input = File::open(blob)?;
    let mut reader: Box<dyn io::Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut writer = HashingWriter::new(BufWriter::new(File::create(dest)?));
    io::copy(&mut reader, &mut writer)?;
    let (mut inner, digest, _) = writer.finish();
    inner.flush()?;
    Ok(digest)
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let mut header = header(file.metadata()?.len());
    tar.append_data(&mut header, name, file)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
}
