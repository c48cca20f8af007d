//! The image model's sources, go-containerregistry's shape: an image is read
//! through one [`ImageSource`] whatever holds it — a registry ([`registry`]),
//! an OCI image layout dir ([`layout`]) or a docker-archive ([`archive`]) — so the stages above ask for a
//! manifest, a config or a blob by digest and never switch on where the
//! image lives. Every read is bounded and digest-checked by the source.

pub mod archive;
pub mod layout;
pub mod registry;

use crate::digest::Digest;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One platform's image, go-containerregistry's `v1.Image`: the manifest
/// and config as stored or as they will be pushed (raw bytes, so digests
/// never depend on re-serialising), and its layers bottom to top. The
/// base, an image slipway assembled and one `rebase` rewrote are all this.
#[derive(Clone, Debug)]
pub struct Image {
    /// As the recipe or the index names it (`linux/arm64`, not `/v8`).
    pub platform: Platform,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<Layer>,
}

impl Image {
    /// The config's JSON (checked to parse when the image was made or read).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.config).unwrap_or_default()
    }

    /// The layers' descriptors, bottom to top.
    pub fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.layers.iter().map(|l| &l.descriptor)
    }

    /// Index of the first layer slipway made (the rest are the base's).
    pub fn new_from(&self) -> usize {
        self.layers
            .iter()
            .position(|l| matches!(l.blob, BlobSource::Cache))
            .unwrap_or(self.layers.len())
    }
}

/// A layer, go-containerregistry's `v1.Layer`: its descriptor (compressed
/// digest, size, media type), its diff_id, and where its blob is.
#[derive(Clone, Debug)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub blob: BlobSource,
}

/// Where a layer's blob is read from.
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// Where the image it came from lives (a base's registry, layout or
    /// archive): fetched through the cache only when a destination lacks it.
    Source(Arc<dyn ImageSource>),
    /// slipway's local cache: layers it built, or brought there.
    Cache,
}

/// A manifest or index as a source stores it.
#[derive(Debug)]
pub struct Document {
    pub bytes: Vec<u8>,
    /// As the source declares it; empty when it declares none (a layout's
    /// blobs by digest), then the document's own `mediaType` tells.
    pub media_type: String,
    pub digest: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("OCI layout `{}`: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    #[error("blob `{}` does not match its digest `{expected}` (it hashes to `{actual}`)", path.display())]
    Mismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("docker-archive: {0}")]
    Archive(String),
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for SourceError {
    fn hint(&self) -> Option<String> {
        match self {
            SourceError::Registry(e) => e.hint(),
            SourceError::Mismatch { .. } => {
                Some("the file is corrupt or was changed: re-create the bundle or layout".into())
            }
            _ => None,
        }
    }
}

impl SourceError {
    /// The exit code by cause: the registry's fault 3, local I/O 1, a
    /// layout that is not what it claims 2.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            SourceError::Registry(RegistryError::Io { .. })
            | SourceError::Read { .. }
            | SourceError::Write { .. } => ErrorKind::Other,
            SourceError::Registry(_) => ErrorKind::Registry,
            SourceError::Layout { .. } | SourceError::Mismatch { .. } | SourceError::Archive(_) => {
                ErrorKind::Input
            }
        }
    }
}

/// Where an image's documents and blobs are read from.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// The document `name` points at: its digest if it has one, else its tag.
    async fn top(&self, name: &Reference) -> Result<Document, SourceError>;
    /// A manifest or index by digest (capped, checked).
    async fn manifest(&self, digest: &Digest) -> Result<Document, SourceError>;
    /// A small blob, a config (capped, checked).
    async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, SourceError>;
    /// Copies a blob into the new file `dest`, checking its digest on the way.
    async fn copy_blob(&self, digest: &Digest, dest: &Path) -> Result<(), SourceError>;
    /// The registry and repository holding the blobs, for cross-repository
    /// mounts; `None` for local sources.
    fn registry_repository(&self) -> Option<(&str, &str)> {
        None
    }
}

/// The source for `name`: the layout dir when one is given, else the
/// registry that serves `name` (a mirror from `mirrors` when one is set).
pub fn open(
    client: &RegistryClient,
    name: &Reference,
    layout: Option<&Path>,
    mirrors: &BTreeMap<String, String>,
) -> Arc<dyn ImageSource> {
    match layout {
        Some(dir) => Arc::new(layout::LayoutSource::new(dir)),
        None => Arc::new(registry::RegistrySource::new(client, name, mirrors)),
    }
}
