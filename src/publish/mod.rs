//! Stage 6, "publish": moves an assembled image to its destination — a
//! registry, an OCI image layout dir or a docker-archive tar. One module per
//! destination; each writes atomically (tags last, temp + rename for files).

pub mod archive;
pub mod early;
pub mod layout;
pub mod referrers;
pub mod registry;

use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{io, Error, ErrorKind, Hint};
use crate::image::{BlobSource, Image};
use crate::recipe::Destination;
use crate::registry::RegistryClient;
use std::io::{self, Write};
use std::path::Path;

/// Everything a publisher needs: one image per platform (with the base it was
/// built on, whose layers may still live at the base's location) and the
/// index over them when there is more than one.
pub struct Publishable<'a> {
    /// Each platform's image; base layers are read where the base lives.
    pub images: Vec<&'a Image>,
    pub index: Option<(Vec<u8>, Digest)>,
    /// Artifacts (SBOMs) that refer to the platform manifests.
    pub referrers: Vec<crate::sbom::referrer::Referrer>,
    /// A repository holding the new layers too (the cache repo): a push to
    /// its registry mounts them from there.
    pub new_layers_also_in: Option<crate::reference::Reference>,
    /// The new layers' uploads, started while the build went on (a
    /// registry destination only).
    pub early: Option<&'a early::EarlyPush>,
}

impl Publishable<'_> {
    /// The digest a user pulls: the index's, else the only manifest's.
    pub fn digest(&self) -> Digest {
        match &self.index {
            Some((_, digest)) => digest.clone(),
            None => self.images[0].manifest_digest.clone(),
        }
    }

    /// The top-level document: (media type, bytes).
    pub fn top(&self) -> (&'static str, &[u8]) {
        match &self.index {
            Some((bytes, _)) => (crate::oci::OCI_INDEX, bytes),
            None => (crate::oci::OCI_MANIFEST, &self.images[0].manifest),
        }
    }
}

/// What happened to one blob during a push.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobAction {
    /// The destination already had it.
    Existing,
    Mounted,
    Uploaded,
    /// Written to a layout or archive.
    Written,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BlobReport {
    pub digest: Digest,
    pub action: BlobAction,
    pub bytes_sent: u64,
}

/// Refuses, before anything is built, a destination that publishing would
/// fail on or that is not slipway's to replace: an OCI layout path that is
/// a file, or a dir that is neither empty nor an OCI layout (writing a layout
/// replaces the whole dir); an archive path that is a dir.
pub fn check_destination(destination: &Destination) -> Result<(), String> {
    match destination {
        Destination::Push(_) => Ok(()),
        Destination::OciLayout(dir) => check_layout_dir(dir)
            .map_err(|why| format!("cannot write OCI layout `{}`: {why}", dir.display())),
        Destination::DockerArchive(file) if file.is_dir() => Err(format!(
            "cannot write docker archive `{}`: it is a directory",
            file.display()
        )),
        Destination::DockerArchive(_) => Ok(()),
    }
}

/// Ok if `dir` is absent, an empty dir or an OCI layout; else why not.
pub(crate) fn check_layout_dir(dir: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err("it exists and is not a directory".into());
    }
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if empty || dir.join("oci-layout").is_file() {
        return Ok(());
    }
    Err("it is a directory that is not an OCI image layout (no `oci-layout` file), and writing a layout replaces the whole directory".into())
}

/// A blob that does not match the descriptor the image gives it.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{what} is {actual} bytes, but its descriptor says {declared}")]
    SizeMismatch {
        what: String,
        declared: u64,
        actual: u64,
    },
    #[error("{what}: the cache's copy `{}` hashes to `{actual}`, not its digest; it was removed, run the build again to fetch or build it anew", path.display())]
    Corrupt {
        what: String,
        path: std::path::PathBuf,
        actual: Digest,
    },
}

impl BlobError {
    /// The `BlobError` inside an I/O error, if that is what it carries.
    pub fn of(error: &io::Error) -> Option<&BlobError> {
        error.get_ref()?.downcast_ref::<BlobError>()
    }

    /// A bad base descriptor is bad input; a corrupt cache file is local I/O.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, BlobError::SizeMismatch { .. })
    }
}

impl crate::error::Hint for BlobError {
    fn hint(&self) -> Option<String> {
        Some({
            match self {
            BlobError::SizeMismatch { .. } => "the base image's manifest gives this layer a wrong size: rebuild or re-push the base, or pick another".into(),
            BlobError::Corrupt { .. } => "check the disk under the cache; `slipway build` again fetches or builds the blob anew".into(),
        }
        })
    }
}

/// Copies the cached blob `source` into `out`, checking while it goes that
/// it hashes to `digest` and is `size` bytes (the descriptor's). A corrupt
/// cache file is removed; either failure is a [`BlobError`] naming `what`
/// (e.g. "layer 2 `sha256:…`") inside the `io::Error`.
pub fn copy_verified<W: Write>(
    source: &Path,
    out: W,
    digest: &Digest,
    size: u64,
    what: &str,
) -> io::Result<W> {
    let mut input = std::fs::File::open(source)?;
    let mut writer = crate::digest::HashingWriter::new(out);
    io::copy(&mut input, &mut writer)?;
    let (out, actual, actual_size) = writer.finish();
    if &actual != digest {
        let _ = std::fs::remove_file(source);
        return Err(io::Error::other(BlobError::Corrupt {
            what: what.to_string(),
            path: source.to_path_buf(),
            actual,
        }));
    }
    if actual_size != size {
        return Err(io::Error::other(BlobError::SizeMismatch {
            what: what.to_string(),
            declared: size,
            actual: actual_size,
        }));
    }
    Ok(out)
}

/// How an image's `index`-th layer is named in errors.
pub fn layer_name(index: usize, new_from: usize, digest: &Digest) -> String {
    if index < new_from {
        format!("base layer {} `{digest}`", index + 1)
    } else {
        format!("layer {} `{digest}` (built by slipway)", index + 1)
    }
}

/// Where a built image goes: a registry, an OCI layout dir or a
/// docker-archive tar behind one signature (go-containerregistry's
/// `remote.Write`, `layout.Write`, `tarball.Write`). slipway's own blobs are
/// in `cache`; base layers where the base lives, or already in `cache`.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(
        &self,
        cache: &Cache,
        image: &Publishable<'_>,
        log: &crate::progress::Log,
    ) -> crate::error::Result<Vec<BlobReport>>;
}

/// The publisher for `dest`; `tags` name the image in a docker-archive.
pub fn publisher(
    client: &RegistryClient,
    dest: &Destination,
    tags: &[crate::reference::Reference],
) -> Box<dyn Publisher> {
    match dest {
        Destination::Push(reference) => Box::new(registry::RegistryPublisher {
            client: client.clone(),
            reference: reference.clone(),
        }),
        Destination::OciLayout(dir) => Box::new(layout::LayoutPublisher {
            dir: dir.clone(),
            tag: "latest".into(),
        }),
        Destination::DockerArchive(file) => Box::new(archive::ArchivePublisher {
            file: file.clone(),
            repo_tags: tags.to_vec(),
        }),
    }
}

/// Publishes `image` to `dest`: the one entry point for every destination.
pub async fn publish(
    client: &RegistryClient,
    cache: &Cache,
    image: &Publishable<'_>,
    dest: &Destination,
    tags: &[crate::reference::Reference],
    log: &crate::progress::Log,
) -> crate::error::Result<Vec<BlobReport>> {
    publisher(client, dest, tags)
        .publish(cache, image, log)
        .await
}

/// Layouts and archives hold every blob: brings the base layers into the
/// cache (a no-op for those already there) before the files are written.
async fn gather_base_layers(cache: &Cache, image: &Publishable<'_>) -> crate::error::Result<()> {
    for img in &image.images {
        for layer in &img.layers {
            let BlobSource::Source(source) = &layer.blob else {
                continue;
            };
            crate::resolve::fetch_blob(cache, source.as_ref(), &layer.descriptor.digest)
                .await
                .map_err(|e| e.into_error(cache.root()))?;
        }
    }
    Ok(())
}

/// How a destination is shown: `REF`, `oci:DIR`, `docker-archive:FILE`.
pub fn describe(dest: &Destination) -> String {
    match dest {
        Destination::Push(r) => r.to_string(),
        Destination::OciLayout(d) => format!("oci:{}", d.display()),
        Destination::DockerArchive(f) => format!("docker-archive:{}", f.display()),
    }
}

/// A blob that does not match its descriptor: a base descriptor that lies
/// is bad input, a corrupt cache file local I/O.
pub fn blob_failure(e: &std::io::Error) -> Error {
    match BlobError::of(e) {
        Some(blob) => {
            let kind = if blob.is_bad_input() {
                ErrorKind::Input
            } else {
                ErrorKind::Other
            };
            Error::new(kind, blob.to_string()).with_optional_hint(blob.hint())
        }
        None => io("cannot publish")(std::io::Error::new(e.kind(), e.to_string())),
    }
}
