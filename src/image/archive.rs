//! The docker-archive format (`docker save`), read in place: `manifest.json`
//! names a config file and layer tars, found by their offsets in the tar
//! and by digest once hashed. `inspect` (`docker-archive:FILE`) and
//! `validate` read archives through it; `publish/archive` writes them.
//!
//! An archive stores no manifest, so as an [`ImageSource`] it answers with
//! the Docker schema 2 manifest its `manifest.json` entry describes
//! (canonical JSON, so the same archive always gives the same digest).

use super::{Document, ImageSource, SourceError};
use crate::digest::{Digest, HashingWriter};
use crate::oci::{self, Descriptor};
use crate::reference::Reference;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// What the archive holds is not an image.
    #[error("the image is not valid: {0}")]
    Bad(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { path, source }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ArchiveError::Bad(format!("its {what} is not valid JSON for an image: {e}")))
}

/// An archive's image: its config (bytes hashed) and its layers.
pub struct ArchiveImage {
    pub config_digest: Digest,
    pub config_size: u64,
    pub config: serde_json::Value,
    pub layers: Vec<Descriptor>,
    pub repo_tags: Vec<String>,
}

/// A docker-archive (`docker save` format): `manifest.json` naming a config
/// and layer tars, read in place by offset.
#[derive(Debug)]
pub struct Archive {
    file: PathBuf,
    /// path in the archive → (offset, size)
    entries: BTreeMap<String, (u64, u64)>,
    /// digest of each blob → its path in the archive
    by_digest: std::sync::Mutex<BTreeMap<Digest, String>>,
    /// The manifests this archive was asked for, by digest.
    manifests: std::sync::Mutex<BTreeMap<Digest, Vec<u8>>>,
}

impl Archive {
    pub fn open(file: &Path) -> Result<Archive, ArchiveError> {
        let io_err = io_error(file);
        let mut archive = tar::Archive::new(File::open(file).map_err(io_err)?);
        let mut entries = BTreeMap::new();
        for entry in archive.entries().map_err(io_error(file))? {
            let entry = entry.map_err(io_error(file))?;
            let path = entry.path().map_err(io_error(file))?;
            let path = path.to_string_lossy().trim_start_matches("./").to_string();
            entries.insert(path, (entry.raw_file_position(), entry.size()));
        }
        Ok(Archive {
            file: file.to_path_buf(),
            entries,
            by_digest: Default::default(),
            manifests: Default::default(),
        })
    }

    pub(crate) fn read_entry(&self, name: &str) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let &(offset, size) = self.entries.get(name).ok_or_else(|| {
            ArchiveError::Bad(format!(
                "docker-archive `{}` has no `{name}`",
                self.file.display()
            ))
        })?;
        let mut file = File::open(&self.file).map_err(io_error(&self.file))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(&self.file))?;
        Ok(Box::new(file.take(size)))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        crate::oci::read_json_capped(self.read_entry(name)?, &format!("`{name}`"))
            .map_err(io_error(&self.file))
    }

    fn digest_of(&self, name: &str) -> Result<Digest, ArchiveError> {
        let mut writer = HashingWriter::new(io::sink());
        io::copy(&mut self.read_entry(name)?, &mut writer).map_err(io_error(&self.file))?;
        let digest = writer.finish().1;
        self.by_digest
            .lock()
            .expect("not poisoned")
            .insert(digest.clone(), name.to_string());
        Ok(digest)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let name = self
            .by_digest
            .lock()
            .expect("not poisoned")
            .get(digest)
            .cloned();
        let name =
            name.ok_or_else(|| ArchiveError::Bad(format!("no blob `{digest}` in the archive")))?;
        self.read_entry(&name)
    }

    /// `manifest.json`'s entries, one per image.
    fn listed(&self) -> Result<Vec<serde_json::Value>, ArchiveError> {
        let listed: Vec<serde_json::Value> =
            parse(&self.read_small("manifest.json")?, "manifest.json")?;
        if listed.is_empty() {
            return Err(ArchiveError::Bad("manifest.json lists no image".into()));
        }
        Ok(listed)
    }

    /// The first image `manifest.json` lists: its config and layers (each
    /// hashed, so [`Archive::open_blob`] finds it by digest).
    pub fn first_image(&self) -> Result<ArchiveImage, ArchiveError> {
        self.image(&self.listed()?[0])
    }

    /// The image `name` names among the archive's `RepoTags`, else the
    /// only one it holds.
    pub fn image_named(&self, name: &Reference) -> Result<ArchiveImage, ArchiveError> {
        let listed = self.listed()?;
        let tags = |entry: &serde_json::Value| -> Vec<String> {
            entry["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        };
        let same = |tag: &str| {
            Reference::parse(tag).is_ok_and(|t| {
                t.registry == name.registry && t.repository == name.repository && t.tag == name.tag
            })
        };
        match listed.iter().find(|e| tags(e).iter().any(|t| same(t))) {
            Some(entry) => self.image(entry),
            None if listed.len() == 1 => self.image(&listed[0]),
            None => Err(ArchiveError::Bad(format!(
                "no image tagged `{name}` in docker-archive `{}` (it has: {})",
                self.file.display(),
                listed.iter().flat_map(tags).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn image(&self, entry: &serde_json::Value) -> Result<ArchiveImage, ArchiveError> {
        let config_name = entry["Config"]
            .as_str()
            .ok_or_else(|| ArchiveError::Bad("manifest.json has no `Config`".into()))?;
        let config_bytes = self.read_small(config_name)?;
        let config_digest = Digest::of(&config_bytes);
        self.by_digest
            .lock()
            .expect("not poisoned")
            .insert(config_digest.clone(), config_name.to_string());
        let config: serde_json::Value = parse(&config_bytes, "config")?;
        let mut layers = Vec::new();
        for name in entry["Layers"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            let mut head = [0u8; 2];
            let gzip = self.read_entry(name)?.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b];
            layers.push(Descriptor {
                media_type: if gzip {
                    oci::DOCKER_LAYER_GZIP.to_string()
                } else {
                    "application/vnd.docker.image.rootfs.diff.tar".to_string()
                },
                digest: self.digest_of(name)?,
                size: self.entries.get(name).map_or(0, |e| e.1),
                platform: None,
                annotations: None,
            });
        }
        let repo_tags = entry["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        Ok(ArchiveImage {
            config_digest,
            config_size: config_bytes.len() as u64,
            config,
            layers,
            repo_tags,
        })
    }
}

impl ArchiveImage {
    /// The Docker schema 2 manifest of this image, as canonical JSON.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        oci::to_canonical_bytes(&oci::Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: "application/vnd.docker.container.image.v1+json".to_string(),
                digest: self.config_digest.clone(),
                size: self.config_size,
                platform: None,
                annotations: None,
            },
            layers: self.layers.clone(),
            annotations: None,
        })
    }
}

impl From<ArchiveError> for SourceError {
    fn from(e: ArchiveError) -> SourceError {
        match e {
            ArchiveError::Io { path, source } => SourceError::Read { path, source },
            ArchiveError::Bad(message) => SourceError::Archive(message),
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for Archive {
    /// The manifest of the image tagged `name` (or of the only image).
    async fn top(&self, name: &Reference) -> Result<Document, SourceError> {
        let image = crate::off_async_workers(|| self.image_named(name))?;
        let bytes = image.manifest_bytes();
        let digest = Digest::of(&bytes);
        self.manifests
            .lock()
            .expect("not poisoned")
            .insert(digest.clone(), bytes.clone());
        Ok(Document {
            bytes,
            media_type: oci::DOCKER_MANIFEST.to_string(),
            digest,
        })
    }

    /// Only a manifest [`ImageSource::top`] gave: the archive holds no other.
    async fn manifest(&self, digest: &Digest) -> Result<Document, SourceError> {
        let bytes = self
            .manifests
            .lock()
            .expect("not poisoned")
            .get(digest)
            .cloned();
        let bytes = bytes.ok_or_else(|| {
            SourceError::Archive(format!(
                "docker-archive `{}` has no manifest `{digest}`",
                self.file.display()
            ))
        })?;
        Ok(Document {
            bytes,
            media_type: oci::DOCKER_MANIFEST.to_string(),
            digest: digest.clone(),
        })
    }

    async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        let bytes = crate::oci::read_json_capped(self.open_blob(digest)?, digest.as_str())
            .map_err(io_error(&self.file))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(SourceError::Mismatch {
                path: self.file.clone(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    async fn copy_blob(&self, digest: &Digest, dest: &Path) -> Result<(), SourceError> {
        crate::off_async_workers(|| {
            let mut reader = self.open_blob(digest)?;
            let write_error = |source| SourceError::Write {
                path: dest.to_path_buf(),
                source,
            };
            let mut writer = HashingWriter::new(File::create(dest).map_err(write_error)?);
            io::copy(&mut reader, &mut writer).map_err(write_error)?;
            let (_, actual, _) = writer.finish();
            if &actual != digest {
                // The archive changed since it was hashed.
                return Err(SourceError::Mismatch {
                    path: self.file.clone(),
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (config bytes, layer bytes)
    type Stored = (Vec<u8>, Vec<u8>);

    /// A docker-archive of two images, each a config and one gzip layer.
    fn two_image_archive(dir: &Path) -> (PathBuf, Vec<Stored>) {
        let file = dir.join("images.tar");
        let mut tar = tar::Builder::new(File::create(&file).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        let mut images = Vec::new();
        let mut listed = Vec::new();
        for (i, tag) in ["example.test/one:1", "example.test/two:2"]
            .iter()
            .enumerate()
        {
            let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#).into_bytes();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut gz, format!("layer {i}").as_bytes()).unwrap();
            let layer = gz.finish().unwrap();
            let config_name = format!("{}.json", Digest::of(&config).hex());
            let layer_name = format!("{i}/layer.tar");
            add(&config_name, &config);
            add(&layer_name, &layer);
            listed.push(serde_json::json!({
                "Config": config_name, "RepoTags": [tag], "Layers": [layer_name]
            }));
            images.push((config, layer));
        }
        add("manifest.json", &serde_json::to_vec(&listed).unwrap());
        tar.finish().unwrap();
        (file, images)
    }

    #[tokio::test]
    async fn an_archive_is_an_image_source_with_the_manifest_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, images) = two_image_archive(dir.path());
        let archive = Archive::open(&file).unwrap();
        let name = Reference::parse("example.test/two:2").unwrap();
        let top = archive.top(&name).await.unwrap();
        assert_eq!(top.media_type, oci::DOCKER_MANIFEST);
        assert_eq!(top.digest, Digest::of(&top.bytes));
        let manifest: oci::Manifest = serde_json::from_slice(&top.bytes).unwrap();
        let (config, layer) = &images[1];
        assert_eq!(manifest.config.digest, Digest::of(config));
        assert_eq!(manifest.config.size, config.len() as u64);
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].digest, Digest::of(layer));
        assert_eq!(manifest.layers[0].media_type, oci::DOCKER_LAYER_GZIP);
        // The same archive always gives the same manifest.
        assert_eq!(archive.top(&name).await.unwrap().digest, top.digest);
        assert_eq!(
            archive.manifest(&top.digest).await.unwrap().bytes,
            top.bytes
        );

        assert_eq!(
            &archive.small_blob(&manifest.config.digest).await.unwrap(),
            config
        );
        let copied = dir.path().join("layer");
        archive
            .copy_blob(&manifest.layers[0].digest, &copied)
            .await
            .unwrap();
        assert_eq!(&std::fs::read(&copied).unwrap(), layer);

        let unknown = Digest::of(b"not in the archive");
        let missing = archive.copy_blob(&unknown, &dir.path().join("x")).await;
        assert!(matches!(missing, Err(SourceError::Archive(m)) if m.contains(unknown.as_str())));
        assert!(archive.manifest(&unknown).await.is_err());
    }

    #[tokio::test]
    async fn a_name_the_archive_lacks_is_refused_with_the_tags_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = two_image_archive(dir.path());
        let archive = Archive::open(&file).unwrap();
        let error = archive
            .top(&Reference::parse("example.test/three:3").unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("example.test/three:3"), "{error}");
        assert!(
            error.contains("example.test/one:1, example.test/two:2"),
            "{error}"
        );
    }
}
