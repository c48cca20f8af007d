//! `validate`: reads an image in full through the `inspect` sources (registry,
//! OCI layout, docker-archive) and lists every broken invariant: each
//! descriptor's blob present with its size and digest; known and consistent
//! media types; every layer decompressed and read as a tar to its end, its
//! diff_id equal to the config's `rootfs.diff_ids`; an index's platforms
//! equal to the configs'. Layers are streamed (hashed and gunzipped while
//! read), so memory stays small whatever their size.

mod archive;
mod stream;

use crate::digest::Digest;
use crate::inspect::source::Source;
use crate::inspect::InspectError;
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::platform::Platform;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use stream::LayerRead;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const GZIP_LAYERS: &[&str] = &[oci::OCI_LAYER_GZIP, oci::DOCKER_LAYER_GZIP];
const TAR_LAYERS: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
];
/// Manifests, indexes and configs larger than this are refused unread.
const MAX_DOCUMENT: u64 = 8 << 20;

/// One broken invariant: the blob, descriptor or file it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub subject: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// One image (a platform's manifest) that was read in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckedImage {
    /// None in a docker-archive (it has no manifest blob).
    pub manifest_digest: Option<Digest>,
    pub config_digest: Digest,
    /// `os/architecture` from the config.
    pub platform: String,
    /// The layers' digests after decompression, as read.
    pub diff_ids: Vec<Digest>,
}

/// What `validate` found: the top digest (the index or manifest the name
/// points at; a docker-archive's config), the images read and every problem.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub top: Option<Digest>,
    pub images: Vec<CheckedImage>,
    pub problems: Vec<Problem>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the image `source` names in full. Errors only when its top cannot
/// be reached at all (registry refused, no such tag); everything else is a
/// [`Problem`].
pub async fn validate(source: &Source) -> Result<Validation, InspectError> {
    let mut checker = Checker {
        source,
        images: Vec::new(),
        problems: Vec::new(),
    };
    let top = match source {
        Source::Archive(archive) => checker.archive(archive).await,
        Source::Layout { source, tag } => checker.layout(source.dir(), tag.as_deref()).await?,
        Source::Registry { .. } => {
            let (bytes, media_type, digest) = source.top_bytes().await?;
            let desc = Descriptor {
                media_type,
                digest: digest.clone(),
                size: bytes.len() as u64,
                platform: None,
                annotations: None,
            };
            checker.descriptor(&desc).await;
            Some(digest)
        }
    };
    Ok(Validation {
        top,
        images: checker.images,
        problems: checker.problems,
    })
}

struct Checker<'s> {
    source: &'s Source,
    images: Vec<CheckedImage>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, subject: impl fmt::Display, message: impl Into<String>) {
        self.problems.push(Problem {
            subject: subject.to_string(),
            message: message.into(),
        });
    }

    /// `oci-layout`, then every manifest `index.json` lists (or the one tagged `tag`).
    async fn layout(
        &mut self,
        dir: &Path,
        tag: Option<&str>,
    ) -> Result<Option<Digest>, InspectError> {
        let marker = dir.join("oci-layout");
        match read_file(&marker).map(|b| serde_json::from_slice::<serde_json::Value>(&b)) {
            Ok(Ok(v)) if v["imageLayoutVersion"] == "1.0.0" => {}
            Ok(Ok(v)) => self.problem(marker.display(), format!("not layout version 1.0.0: {v}")),
            Ok(Err(e)) => self.problem(marker.display(), format!("not JSON: {e}")),
            Err(e) => self.problem(marker.display(), format!("cannot read: {e}")),
        }
        let index_path = dir.join("index.json");
        let index = read_file(&index_path).map_err(InspectError::io(&index_path))?;
        let index: Index = match serde_json::from_slice(&index) {
            Ok(index) => index,
            Err(e) => {
                self.problem(index_path.display(), format!("not an OCI index: {e}"));
                return Ok(None);
            }
        };
        if index.schema_version != 2 {
            self.problem(index_path.display(), "schemaVersion is not 2");
        }
        let named = |d: &&Descriptor| {
            tag.is_none_or(|tag| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                    .is_some_and(|n| n == tag)
            })
        };
        let chosen: Vec<&Descriptor> = index.manifests.iter().filter(named).collect();
        if chosen.is_empty() {
            return Err(InspectError::NotFound(format!(
                "`{}` lists no image{}",
                index_path.display(),
                tag.map_or(String::new(), |t| format!(" tagged `{t}`"))
            )));
        }
        for desc in &chosen {
            self.descriptor(desc).await;
        }
        Ok(Some(chosen[0].digest.clone()))
    }

    /// An index (its children in turn), an image manifest, or an attestation.
    fn descriptor<'b>(
        &'b mut self,
        desc: &'b Descriptor,
    ) -> Pin<Box<dyn Future<Output = ()> + 'b>> {
        Box::pin(async move {
            if oci::is_index(&desc.media_type) {
                let Some(bytes) = self.document(desc).await else {
                    return;
                };
                let Some(index) = self.parse::<Index>(desc, &bytes, "an index") else {
                    return;
                };
                self.check_header(desc, index.schema_version, index.media_type.as_deref());
                for child in &index.manifests {
                    self.descriptor(child).await;
                }
            } else if oci::is_manifest(&desc.media_type) {
                self.manifest(desc).await;
            } else {
                self.problem(
                    &desc.digest,
                    format!("unknown manifest media type `{}`", desc.media_type),
                );
            }
        })
    }

    async fn manifest(&mut self, desc: &Descriptor) {
        let Some(bytes) = self.document(desc).await else {
            return;
        };
        let Some(manifest) = self.parse::<Manifest>(desc, &bytes, "a manifest") else {
            return;
        };
        self.check_header(
            desc,
            manifest.schema_version,
            manifest.media_type.as_deref(),
        );
        if is_attestation(desc) || manifest.config.media_type == EMPTY_CONFIG {
            // Build attestations (in-toto layers) and OCI 1.1 artifacts such
            // as attached SBOMs (empty config): not a filesystem, bytes only.
            for blob in manifest.layers.iter().chain([&manifest.config]) {
                self.blob(blob, None).await;
            }
            return;
        }
        let config_type = if desc.media_type == oci::OCI_MANIFEST {
            oci::OCI_CONFIG
        } else {
            DOCKER_CONFIG
        };
        if manifest.config.media_type != config_type {
            self.problem(
                &manifest.config.digest,
                format!(
                    "config media type `{}` in a `{}` manifest (expected `{config_type}`)",
                    manifest.config.media_type, desc.media_type
                ),
            );
        }
        let config = match self.document(&manifest.config).await {
            Some(bytes) => self.parse::<serde_json::Value>(&manifest.config, &bytes, "a config"),
            None => None,
        };
        let mut diff_ids = Vec::new();
        for layer in &manifest.layers {
            let gzip = if GZIP_LAYERS.contains(&layer.media_type.as_str()) {
                Some(true)
            } else if TAR_LAYERS.contains(&layer.media_type.as_str()) {
                Some(false)
            } else {
                self.problem(
                    &layer.digest,
                    format!("unknown layer media type `{}`", layer.media_type),
                );
                None
            };
            diff_ids.push(self.blob(layer, Some(gzip)).await);
        }
        let Some(config) = config else { return };
        let image = self.image(
            Some(desc.digest.clone()),
            &manifest.config.digest,
            &config,
            diff_ids,
        );
        if let Some(named) = desc.platform.as_ref().map(platform_name) {
            if named != image.platform {
                self.problem(
                    &desc.digest,
                    format!("the index says {named}, its config {}", image.platform),
                );
            }
        }
        self.images.push(image);
    }

    /// Compares the config's `rootfs` with what the layers read as.
    fn image(
        &mut self,
        manifest_digest: Option<Digest>,
        config_digest: &Digest,
        config: &serde_json::Value,
        read: Vec<Option<Digest>>,
    ) -> CheckedImage {
        if config["rootfs"]["type"] != "layers" {
            self.problem(config_digest, "rootfs.type is not `layers`");
        }
        let named: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d.as_str().unwrap_or_default().to_string())
            .collect();
        if named.len() != read.len() {
            self.problem(
                config_digest,
                format!(
                    "diff_ids differ from the layers: the config lists {}, the manifest {} layers",
                    named.len(),
                    read.len()
                ),
            );
        }
        for (i, (named, read)) in named.iter().zip(&read).enumerate() {
            if let Some(read) = read.as_ref().filter(|r| r.as_str() != named) {
                self.problem(
                    config_digest,
                    format!("diff_ids differ from the layers: layer {i} reads as {read}, the config says {named}"),
                );
            }
        }
        CheckedImage {
            manifest_digest,
            config_digest: config_digest.clone(),
            platform: format!(
                "{}/{}",
                config["os"].as_str().unwrap_or("?"),
                config["architecture"].as_str().unwrap_or("?")
            ),
            diff_ids: read.into_iter().flatten().collect(),
        }
    }

    fn check_header(&mut self, desc: &Descriptor, schema_version: u32, own_type: Option<&str>) {
        if schema_version != 2 {
            self.problem(&desc.digest, "schemaVersion is not 2");
        }
        if let Some(own) = own_type.filter(|own| *own != desc.media_type) {
            self.problem(
                &desc.digest,
                format!(
                    "mediaType `{own}` differs from its descriptor's `{}`",
                    desc.media_type
                ),
            );
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        desc: &Descriptor,
        bytes: &[u8],
        what: &str,
    ) -> Option<T> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.problem(&desc.digest, format!("not {what}: {e}")))
            .ok()
    }

    /// A manifest, index or config, its size and digest checked.
    async fn document(&mut self, desc: &Descriptor) -> Option<Vec<u8>> {
        if desc.size > MAX_DOCUMENT {
            self.problem(
                &desc.digest,
                format!(
                    "size {} is over the {MAX_DOCUMENT} bytes a document may have",
                    desc.size
                ),
            );
            return None;
        }
        let read = match self.source {
            Source::Registry { .. } => {
                let manifest =
                    oci::is_manifest(&desc.media_type) || oci::is_index(&desc.media_type);
                self.source.blob_bytes(&desc.digest, manifest).await
            }
            _ => match self.source.open_blob(&desc.digest).await {
                Ok(reader) => {
                    read_bounded(reader).map_err(InspectError::io(Path::new(desc.digest.as_str())))
                }
                Err(e) => Err(e),
            },
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                self.problem(&desc.digest, format!("blob missing or unreadable: {e}"));
                return None;
            }
        };
        self.check_blob(desc, bytes.len() as u64, &Digest::of(&bytes));
        Some(bytes)
    }

    /// Streams a blob: its size and digest checked; when `layer` says how
    /// it is compressed (or that its media type is unknown), read as a tar
    /// to its end. The diff_id it reads as.
    async fn blob(&mut self, desc: &Descriptor, layer: Option<Option<bool>>) -> Option<Digest> {
        let reader = match self.source.open_blob(&desc.digest).await {
            Ok(reader) => reader,
            Err(e) => {
                self.problem(&desc.digest, format!("blob missing or unreadable: {e}"));
                return None;
            }
        };
        let read = stream::read_off_the_workers(reader, layer.is_some()).await;
        self.layer_read(desc, layer.flatten(), read)
    }

    /// Records what a streamed read found wrong; the diff_id when it is whole.
    fn layer_read(
        &mut self,
        desc: &Descriptor,
        gzip: Option<bool>,
        read: LayerRead,
    ) -> Option<Digest> {
        if let Some(e) = read.io_error {
            self.problem(&desc.digest, format!("blob unreadable: {e}"));
            return None;
        }
        self.check_blob(desc, read.size, &read.digest);
        if let (Some(expected), Some(found)) = (gzip, read.gzip) {
            if expected != found {
                self.problem(
                    &desc.digest,
                    format!(
                        "media type `{}` but the bytes are {}",
                        desc.media_type,
                        if found { "gzip" } else { "not gzip" }
                    ),
                );
            }
        }
        match read.tar {
            Some(Err(e)) => {
                self.problem(&desc.digest, format!("not a whole (gzip'd) tar: {e}"));
                None
            }
            Some(Ok(diff_id)) => Some(diff_id),
            None => None,
        }
    }

    fn check_blob(&mut self, desc: &Descriptor, size: u64, digest: &Digest) {
        if size != desc.size {
            self.problem(
                &desc.digest,
                format!("size {size} differs from its descriptor's {}", desc.size),
            );
        }
        if digest != &desc.digest {
            self.problem(
                &desc.digest,
                format!("does not hash to its name (it hashes to {digest})"),
            );
        }
    }
}

/// The config media type of OCI 1.1 artifacts (an SBOM referrer, say).
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// An index entry for a build attestation (`unknown/unknown`), which is no image.
fn is_attestation(desc: &Descriptor) -> bool {
    desc.annotations
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|t| t == "attestation-manifest")
        || desc
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

fn platform_name(platform: &Platform) -> String {
    format!("{}/{}", platform.os, platform.architecture)
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    read_bounded(Box::new(std::fs::File::open(path)?))
}

/// Reads at most `MAX_DOCUMENT` bytes (one more tells the caller it was longer).
fn read_bounded(reader: Box<dyn Read + Send>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}
