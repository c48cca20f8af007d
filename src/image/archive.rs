//! The docker-archive format (`docker save`), read in place: `manifest.json`
//! names a config file and layer tars, found by their offsets in the tar
//! and by digest once hashed. `inspect` (`docker-archive:FILE`) and
//! `validate` read archives through it; `publish/archive` writes them.

use crate::digest::{Digest, HashingWriter};
use crate::oci::{self, Descriptor};
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
    pub config: serde_json::Value,
    pub layers: Vec<Descriptor>,
    pub repo_tags: Vec<String>,
}

/// A docker-archive (`docker save` format): `manifest.json` naming a config
/// and layer tars, read in place by offset.
pub struct Archive {
    file: PathBuf,
    /// path in the archive → (offset, size)
    entries: BTreeMap<String, (u64, u64)>,
    /// digest of each blob → its path in the archive
    by_digest: std::sync::Mutex<BTreeMap<Digest, String>>,
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

    /// The first image `manifest.json` lists: its config and layers (each
    /// hashed, so [`Archive::open_blob`] finds it by digest).
    pub fn first_image(&self) -> Result<ArchiveImage, ArchiveError> {
        let manifest: serde_json::Value =
            parse(&self.read_small("manifest.json")?, "manifest.json")?;
        let first = manifest
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| ArchiveError::Bad("manifest.json lists no image".into()))?;
        let config_name = first["Config"]
            .as_str()
            .ok_or_else(|| ArchiveError::Bad("manifest.json has no `Config`".into()))?;
        let config_bytes = self.read_small(config_name)?;
        let config_digest = Digest::of(&config_bytes);
        let config: serde_json::Value = parse(&config_bytes, "config")?;
        let mut layers = Vec::new();
        for name in first["Layers"].as_array().into_iter().flatten() {
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
        let repo_tags = first["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        Ok(ArchiveImage {
            config_digest,
            config,
            layers,
            repo_tags,
        })
    }
}
