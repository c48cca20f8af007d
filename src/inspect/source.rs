//! Where `inspect` reads an image from: a registry (mirrors applied, blobs
//! through the cache), an OCI image layout dir, or a docker-archive tar. Each
//! gives the same thing: the top-level document, one [`RawImage`] per
//! platform, and a reader for any of its blobs.

use super::InspectError;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::archive::{Archive, ArchiveError};
use crate::image::layout::LayoutSource;
use crate::image::registry::RegistrySource;
use crate::image::ImageSource;
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use crate::resolve;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the user named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Registry(Reference),
    /// `oci:DIR[:TAG]`
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// `docker-archive:FILE`
    DockerArchive(PathBuf),
}

impl Target {
    /// `REF`, `oci:DIR[:TAG]` or `docker-archive:FILE`.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Some(rest) = text.strip_prefix("oci:") {
            // A colon after the last slash separates a tag, unless the whole thing is a dir.
            let whole = Path::new(rest);
            if whole.is_dir() {
                return Ok(Target::Layout {
                    dir: whole.to_path_buf(),
                    tag: None,
                });
            }
            let after_slash = rest.rfind('/').map_or(0, |i| i + 1);
            return Ok(match rest[after_slash..].rfind(':') {
                Some(i) => Target::Layout {
                    dir: PathBuf::from(&rest[..after_slash + i]),
                    tag: Some(rest[after_slash + i + 1..].to_string()),
                },
                None => Target::Layout {
                    dir: whole.to_path_buf(),
                    tag: None,
                },
            });
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            return Ok(Target::DockerArchive(PathBuf::from(rest)));
        }
        let text = text.strip_prefix("docker://").unwrap_or(text);
        Reference::parse(text).map(Target::Registry)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Registry(r) => write!(f, "{r}"),
            Target::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Target::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Target::DockerArchive(file) => write!(f, "docker-archive:{}", file.display()),
        }
    }
}

/// The document a name points at: an index, a manifest, or (docker-archive) none.
pub struct Top {
    pub media_type: String,
    pub digest: Option<Digest>,
    pub annotations: BTreeMap<String, String>,
}

/// One platform's image as stored: manifest (if any), config and layer descriptors.
pub struct RawImage {
    pub platform: Platform,
    pub manifest_digest: Option<Digest>,
    pub manifest_media_type: String,
    pub manifest_annotations: BTreeMap<String, String>,
    pub config_digest: Digest,
    pub config: serde_json::Value,
    pub layers: Vec<Descriptor>,
}

/// An opened image source, read through the image model's [`ImageSource`];
/// they differ only in how the top document is named (a reference;
/// `oci:DIR[:TAG]`; an archive shows its own first image, without the
/// manifest it doesn't store) and where blobs are read from.
pub enum Source {
    Registry {
        source: Box<RegistrySource>,
        /// Registry blobs are fetched into the cache (digest checked).
        cache: Cache,
        reference: Reference,
    },
    Layout {
        source: LayoutSource,
        tag: Option<String>,
    },
    Archive(Archive),
}

impl Source {
    pub fn open(
        target: &Target,
        client: &RegistryClient,
        cache_dir: &Path,
        mirrors: &BTreeMap<String, String>,
    ) -> Result<Source, InspectError> {
        Ok(match target {
            Target::Registry(reference) => Source::Registry {
                source: Box::new(RegistrySource::new(client, reference, mirrors)),
                cache: Cache::open(cache_dir).map_err(InspectError::io(cache_dir))?,
                reference: reference.clone(),
            },
            Target::Layout { dir, tag } => Source::Layout {
                source: LayoutSource::new(dir),
                tag: tag.clone(),
            },
            Target::DockerArchive(file) => Source::Archive(Archive::open(file)?),
        })
    }

    /// The top document and every platform's image (attestations skipped),
    /// keeping only `platforms` when it is not empty.
    pub async fn images(&self, platforms: &[String]) -> Result<(Top, Vec<RawImage>), InspectError> {
        if let Source::Archive(archive) = self {
            return archive_image(archive).map(|(top, image)| (top, vec![image]));
        }
        let (bytes, media_type, digest) = self.top_bytes().await?;
        let mut images = Vec::new();
        let top_annotations;
        if oci::is_index(&media_type) {
            let index: Index = parse(&bytes, "index")?;
            top_annotations = index.annotations.clone().unwrap_or_default();
            for entry in &index.manifests {
                let is_attestation = entry
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
                    || entry.platform.as_ref().is_some_and(|p| p.os == "unknown");
                if is_attestation || !oci::is_manifest(&entry.media_type) {
                    continue;
                }
                if let Some(p) = &entry.platform {
                    if !wanted(platforms, p) {
                        continue;
                    }
                }
                let bytes = self.blob_bytes(&entry.digest, true).await?;
                let mut image = self
                    .raw_image(&bytes, &entry.media_type, entry.digest.clone())
                    .await?;
                // The index's platform is the one users name (`linux/arm64`, not `/v8`).
                if let Some(p) = &entry.platform {
                    image.platform = p.clone();
                }
                images.push(image);
            }
        } else if oci::is_manifest(&media_type) {
            top_annotations = BTreeMap::new();
            let image = self.raw_image(&bytes, &media_type, digest.clone()).await?;
            if wanted(platforms, &image.platform) {
                images.push(image);
            }
        } else {
            return Err(InspectError::Bad(format!(
                "unsupported manifest media type `{media_type}`"
            )));
        }
        let top = Top {
            media_type,
            digest: Some(digest),
            annotations: top_annotations,
        };
        Ok((top, images))
    }

    async fn raw_image(
        &self,
        bytes: &[u8],
        media_type: &str,
        digest: Digest,
    ) -> Result<RawImage, InspectError> {
        let manifest: Manifest = parse(bytes, "manifest")?;
        let config_bytes = self.blob_bytes(&manifest.config.digest, false).await?;
        let config: serde_json::Value = parse(&config_bytes, "config")?;
        Ok(RawImage {
            platform: config_platform(&config),
            manifest_digest: Some(digest),
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| media_type.to_string()),
            manifest_annotations: manifest.annotations.clone().unwrap_or_default(),
            config_digest: manifest.config.digest.clone(),
            config,
            layers: manifest.layers,
        })
    }

    pub(crate) async fn top_bytes(&self) -> Result<(Vec<u8>, String, Digest), InspectError> {
        match self {
            Source::Registry {
                source, reference, ..
            } => {
                let top = source.top(reference).await?;
                Ok((top.bytes, top.media_type, top.digest))
            }
            Source::Layout { source, tag } => {
                let index =
                    crate::layout::Layout::new(source.dir())
                        .index()
                        .map_err(|e| match e {
                            crate::layout::LayoutError::Read { path, source } => {
                                InspectError::io(&path)(source)
                            }
                            other => InspectError::Bad(other.to_string()),
                        })?;
                let wanted = tag.as_deref().unwrap_or("latest");
                let entry = match tag {
                    // A named tag must be there: no fallback to the only entry.
                    Some(tag) => index
                        .manifests
                        .iter()
                        .find(|m| crate::layout::ref_name(m) == Some(tag.as_str())),
                    None => crate::layout::find_entry(&index, &[wanted]),
                };
                let entry = entry.ok_or_else(|| {
                    let names = crate::layout::ref_names(&index);
                    InspectError::NotFound(format!(
                        "no image tagged `{wanted}` in OCI layout `{}` (it has: {})",
                        source.dir().display(),
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ))
                })?;
                let bytes = self.blob_bytes(&entry.digest, true).await?;
                Ok((bytes, entry.media_type.clone(), entry.digest.clone()))
            }
            Source::Archive(_) => unreachable!("archives have no top document"),
        }
    }

    /// The image model's source, whatever holds the image.
    pub(crate) fn image_source(&self) -> &dyn ImageSource {
        match self {
            Source::Registry { source, .. } => source.as_ref(),
            Source::Layout { source, .. } => source,
            Source::Archive(archive) => archive,
        }
    }

    /// The client, registry and repository of a registry source.
    pub(crate) fn remote(&self) -> Option<(&RegistryClient, &str, &str)> {
        match self {
            Source::Registry { source, .. } => {
                let (registry, repository) = source.registry_repository()?;
                Some((source.client(), registry, repository))
            }
            _ => None,
        }
    }

    /// A manifest or config, capped and digest checked.
    pub(crate) async fn blob_bytes(
        &self,
        digest: &Digest,
        manifest: bool,
    ) -> Result<Vec<u8>, InspectError> {
        let source = self.image_source();
        Ok(if manifest {
            source.manifest(digest).await?.bytes
        } else {
            source.small_blob(digest).await?
        })
    }

    /// A reader over a blob's bytes (registry blobs are fetched into the cache first).
    pub async fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, InspectError> {
        let path = match self {
            Source::Registry { source, cache, .. } => {
                resolve::fetch_blob(cache, source.as_ref(), digest).await?
            }
            Source::Layout { source, .. } => source.blob_path(digest),
            Source::Archive(archive) => return Ok(archive.open_blob(digest)?),
        };
        let file = File::open(&path).map_err(InspectError::io(&path))?;
        Ok(Box::new(file))
    }
}

fn wanted(platforms: &[String], platform: &Platform) -> bool {
    platforms.is_empty()
        || platforms.iter().any(|p| {
            Platform::parse(p).map_or_else(|_| p == &platform.to_string(), |p| p.matches(platform))
        })
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, InspectError> {
    serde_json::from_slice(bytes)
        .map_err(|e| InspectError::Bad(format!("its {what} is not valid JSON for an image: {e}")))
}

fn config_platform(config: &serde_json::Value) -> Platform {
    let text = |key: &str, default: &str| config[key].as_str().unwrap_or(default).to_string();
    Platform {
        architecture: text("architecture", "unknown"),
        os: text("os", "unknown"),
        variant: config["variant"].as_str().map(str::to_string),
    }
}

/// The archive's first image as `inspect` shows it: no top document, no
/// manifest (the archive has neither).
fn archive_image(archive: &Archive) -> Result<(Top, RawImage), InspectError> {
    let found = archive.first_image()?;
    let mut annotations = BTreeMap::new();
    if !found.repo_tags.is_empty() {
        annotations.insert("RepoTags".to_string(), found.repo_tags.join(", "));
    }
    let top = Top {
        media_type: "docker-archive".into(),
        digest: None,
        annotations,
    };
    let image = RawImage {
        platform: config_platform(&found.config),
        manifest_digest: None,
        manifest_media_type: "docker-archive".into(),
        manifest_annotations: BTreeMap::new(),
        config_digest: found.config_digest,
        config: found.config,
        layers: found.layers,
    };
    Ok((top, image))
}

impl From<ArchiveError> for InspectError {
    fn from(e: ArchiveError) -> InspectError {
        match e {
            ArchiveError::Io { path, source } => InspectError::Io { path, source },
            ArchiveError::Bad(message) => InspectError::Bad(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("oci:/nowhere/out:v1").unwrap(),
            Target::Layout {
                dir: "/nowhere/out".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Target::parse("oci:/nowhere/out").unwrap(),
            Target::Layout {
                dir: "/nowhere/out".into(),
                tag: None
            }
        );
        assert_eq!(
            Target::parse("docker-archive:a.tar").unwrap(),
            Target::DockerArchive("a.tar".into())
        );
        assert_eq!(
            Target::parse("python:3.13-alpine").unwrap().to_string(),
            "docker.io/library/python:3.13-alpine"
        );
    }
}
