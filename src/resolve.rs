//! Stage 2, "resolve base": finds the base image's manifest and config for each
//! wanted platform, from a registry (mirrors applied) or an OCI layout dir,
//! and fetches base blobs into the cache when a later stage needs their bytes.

use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Hint};
use crate::facts::{glibc_version_in, LayerScan, PythonFacts};
use crate::image::{BlobSource, Image, ImageSource, Layer, SourceError};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A base image for one platform: the [`Image`] (its layers' blobs where
/// the base lives), how it was named and found, and parsed views of its
/// manifest and config.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The reference as the recipe names it, normalised (for annotations).
    pub name: Reference,
    /// Where its manifests and blobs are read from.
    pub source: Arc<dyn ImageSource>,
    /// Digest of what the name points at (the index for multi-platform bases).
    pub top_digest: Digest,
    pub image: Image,
    /// `image.manifest`, parsed.
    pub manifest: Manifest,
    /// `image.config`, parsed (as JSON, so fields slipway doesn't know survive).
    pub config: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("base image `{base}` has no manifest for `{wanted}` (it has: {available})")]
    NoPlatform {
        base: String,
        wanted: String,
        available: String,
    },
    #[error("base image `{base}`: {message}")]
    Bad { base: String, message: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write `{}` in the cache", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for ResolveError {
    fn hint(&self) -> Option<String> {
        match self {
            ResolveError::Registry(e) => e.hint(),
            ResolveError::NoPlatform { .. } => {
                Some("pick platforms the base image has, in the recipe's `platforms` or with `--platform`".into())
            }
            ResolveError::Source(e) => e.hint(),
            _ => None,
        }
    }
}

impl ResolveError {
    /// The exit code by cause: the registry's fault 3, the cache's I/O 1,
    /// a base (or layout) that is not what the recipe needs 2.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // The cache (a full disk) is local I/O, not the registry's fault.
            ResolveError::Source(e) => e.kind(),
            ResolveError::Registry(crate::registry::RegistryError::Io { .. })
            | ResolveError::Io(_)
            | ResolveError::Cache { .. } => ErrorKind::Other,
            ResolveError::Registry(_) => ErrorKind::Registry,
            _ => ErrorKind::Input,
        }
    }

    /// As the CLI's error; cache I/O errors name the cache dir.
    pub fn into_error(self, cache: &Path) -> Error {
        let (kind, hint) = (self.kind(), self.hint());
        match self {
            ResolveError::Io(e) => Error::wrap(
                kind,
                std::io::Error::new(e.kind(), format!("cache `{}`: {e}", cache.display())),
                Some("free space or fix the permissions there, or pick another cache with `--cache-dir`".into()),
            ),
            other => Error::wrap(kind, other, hint),
        }
    }
}

/// Resolves the base for each platform. `mirrors` maps a registry host to the
/// host that serves it (e.g. `docker.io` → `mirror.internal:5000`).
pub async fn resolve(
    client: &RegistryClient,
    cache: &Cache,
    name: &Reference,
    layout: Option<&Path>,
    mirrors: &BTreeMap<String, String>,
    platforms: &[Platform],
) -> Result<Vec<BaseImage>, ResolveError> {
    let source = crate::image::open(client, name, layout, mirrors);
    let top = source.top(name).await?;
    let base = name.to_string();
    let mut images = Vec::new();
    for wanted in platforms {
        let (manifest_bytes, manifest_digest) =
            platform_manifest(source.as_ref(), &top, &base, wanted).await?;
        let manifest: Manifest = parse_json(&manifest_bytes, &base, "manifest")?;
        if manifest.config.size > crate::oci::JSON_LIMIT {
            return Err(ResolveError::Bad {
                base,
                message: format!(
                    "its config is {} bytes, more than the {} MiB slipway reads",
                    manifest.config.size,
                    crate::oci::JSON_LIMIT >> 20
                ),
            });
        }
        let config_bytes = config_of(cache, source.as_ref(), &manifest.config).await?;
        let config: serde_json::Value = parse_json(&config_bytes, &base, "config")?;
        let platform = config_platform(&config);
        if !wanted.matches(&platform) {
            return Err(ResolveError::NoPlatform {
                base,
                wanted: wanted.to_string(),
                available: platform.to_string(),
            });
        }
        let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
        if diff_ids != manifest.layers.len() {
            return Err(ResolveError::Bad {
                base,
                message: format!(
                    "{} layers but {} diff_ids in the config",
                    manifest.layers.len(),
                    diff_ids
                ),
            });
        }
        let diff_ids = check_diff_ids(&config, &base)?;
        let layers = manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(descriptor, diff_id)| Layer {
                descriptor: descriptor.clone(),
                diff_id,
                blob: BlobSource::Source(source.clone()),
            })
            .collect();
        images.push(BaseImage {
            name: name.clone(),
            source: source.clone(),
            top_digest: top.digest.clone(),
            image: Image {
                platform: wanted.clone(),
                manifest: manifest_bytes,
                manifest_digest,
                config_digest: manifest.config.digest.clone(),
                config: config_bytes,
                layers,
            },
            manifest,
            config,
        });
    }
    Ok(images)
}

/// The manifest for `wanted` (bytes, digest): picked from the top
/// document when it is an index, else the top document itself.
async fn platform_manifest(
    source: &dyn ImageSource,
    top: &crate::image::Document,
    base: &str,
    wanted: &Platform,
) -> Result<(Vec<u8>, Digest), ResolveError> {
    if oci::is_index(&top.media_type) {
        let index: Index = parse_json(&top.bytes, base, "index")?;
        let entry = pick_platform(&index, wanted).ok_or_else(|| ResolveError::NoPlatform {
            base: base.to_string(),
            wanted: wanted.to_string(),
            available: available_platforms(&index),
        })?;
        Ok((
            source.manifest(&entry.digest).await?.bytes,
            entry.digest.clone(),
        ))
    } else if oci::is_manifest(&top.media_type) {
        Ok((top.bytes.clone(), top.digest.clone()))
    } else {
        Err(ResolveError::Bad {
            base: base.to_string(),
            message: format!("unsupported manifest media type `{}`", top.media_type),
        })
    }
}

/// The base's config: the cache's copy when it has one that hashes to the
/// digest (a config never changes under its digest: a rebuild saves a
/// round trip), else the source's, kept for next time.
async fn config_of(
    cache: &Cache,
    source: &dyn ImageSource,
    config: &Descriptor,
) -> Result<Vec<u8>, ResolveError> {
    let path = cache.blob_path(&config.digest);
    let same_size = std::fs::metadata(&path).is_ok_and(|m| m.len() == config.size);
    if let Some(bytes) = same_size.then(|| std::fs::read(&path).ok()).flatten() {
        if Digest::of(&bytes) == config.digest {
            return Ok(bytes);
        }
    }
    let bytes = source.small_blob(&config.digest).await?;
    // Only a config that matches its digest is kept: the registry client
    // checks, but a layout or archive source may not.
    if Digest::of(&bytes) == config.digest {
        cache.put_blob_bytes(&bytes).map_err(cache_error(&path))?;
    }
    Ok(bytes)
}

/// Makes sure a base blob is in the cache (digest checked) and returns its path.
pub async fn fetch_blob(
    cache: &Cache,
    source: &dyn ImageSource,
    digest: &Digest,
) -> Result<PathBuf, ResolveError> {
    let dest = cache.blob_path(digest);
    if cache.verified_blob(digest).is_some() {
        return Ok(dest);
    }
    // Copied into this build's scratch dir, then renamed into the store: a
    // killed pull leaves no partial file among the blobs.
    let tmp = cache.temp_dir("blob").map_err(cache_error(cache.root()))?;
    let staged = tmp.path().join("blob");
    // The destination is ours, so a failed write is the cache's (exit 1,
    // naming the path), not the source's.
    source
        .copy_blob(digest, &staged)
        .await
        .map_err(|e| match e {
            SourceError::Write { path, source } => ResolveError::Cache { path, source },
            other => other.into(),
        })?;
    cache
        .insert_blob(&staged, digest)
        .map_err(cache_error(&dest))?;
    Ok(dest)
}

fn cache_error(path: &Path) -> impl Fn(std::io::Error) -> ResolveError + '_ {
    move |source| ResolveError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses diff_ids slipway cannot check (another algorithm than sha256, or
/// malformed), naming the layer, instead of dropping them silently.
/// The config's diff_ids, each a sha256 digest.
fn check_diff_ids(config: &serde_json::Value, base: &str) -> Result<Vec<Digest>, ResolveError> {
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten();
    let mut out = Vec::new();
    for (i, value) in diff_ids.enumerate() {
        let text = value.as_str().unwrap_or_default();
        out.push(Digest::parse(text).map_err(|why| ResolveError::Bad {
            base: base.to_string(),
            message: format!(
                "diff_id of layer {} in the config: {why} (slipway checks sha256 digests only)",
                i + 1
            ),
        })?);
    }
    Ok(out)
}

/// Resolves the recipe's base for each platform and learns its Python facts
/// (shared by `build` and `bundle`).
pub async fn resolve_bases(
    client: &RegistryClient,
    cache: &Cache,
    recipe: &Recipe,
    base_layout: Option<&Path>,
    mirrors: &BTreeMap<String, String>,
    log: &crate::progress::Log,
) -> crate::error::Result<(Vec<BaseImage>, Vec<PythonFacts>)> {
    log.step(&format!("resolving base `{}`", recipe.base));
    let bases = resolve(
        client,
        cache,
        &recipe.base,
        base_layout,
        mirrors,
        &recipe.platforms,
    )
    .await
    .map_err(|e| {
        let wrong_platform = matches!(e, ResolveError::NoPlatform { .. });
        let error = e.into_error(cache.root());
        if wrong_platform {
            let hint = format!(
                "pick platforms the base image has, with {}",
                recipe.platforms_origin
            );
            return error.with_hint(hint);
        }
        error
    })?;
    let mut all_facts = Vec::new();
    for base in &bases {
        all_facts.push(base_facts(cache, base, &recipe.python.stated).await?);
    }
    Ok((bases, all_facts))
}

/// Facts for one platform's base: from the cache, else the config (+ a scan
/// of the base layers when the config alone can't tell), then checked
/// against what the recipe states.
pub async fn base_facts(
    cache: &Cache,
    base: &BaseImage,
    stated: &crate::recipe::StatedFacts,
) -> crate::error::Result<PythonFacts> {
    let name = base.name.to_string();
    let scan = if crate::facts::needs_scan(&base.config, stated) {
        match cache.facts::<LayerScan>(&base.image.manifest_digest) {
            Some(scan) => Some(scan),
            None => {
                let mut files = Vec::new();
                for layer in &base.manifest.layers {
                    let path = fetch_blob(cache, base.source.as_ref(), &layer.digest)
                        .await
                        .map_err(|e| e.into_error(cache.root()))?;
                    files.push(path);
                }
                let scan = scan_layers(&files).map_err(crate::error::io(format!(
                    "cannot read the layers of base `{name}`"
                )))?;
                cache
                    .put_facts(&base.image.manifest_digest, &scan)
                    .map_err(crate::error::io(cache.context("cannot write to the cache")))?;
                Some(scan)
            }
        }
    } else {
        None
    };
    crate::facts::detect(
        &name,
        &base.image.platform,
        &base.config,
        scan.as_ref(),
        stated,
    )
    .map_err(Error::hinted(ErrorKind::Input))
}

/// Lists the files of the base's layers (gzip'd or plain tars), in order,
/// keeping what `facts` needs; whiteouts remove earlier entries.
pub fn scan_layers(layer_files: &[PathBuf]) -> std::io::Result<LayerScan> {
    let mut scan = LayerScan::default();
    for file in layer_files {
        let reader = crate::oci::tar_reader(std::fs::File::open(file)?)?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let dir = path
                    .rsplit_once('/')
                    .map(|(d, _)| format!("{d}/"))
                    .unwrap_or_default();
                scan.paths.remove(&format!("{dir}{hidden}"));
                continue;
            }
            let target = entry.link_name()?.map(|t| t.to_string_lossy().into_owned());
            let wants_content = (name == "libc.so.6" || path == "var/lib/dpkg/status")
                && entry.header().entry_type().is_file();
            if wants_content && entry.size() < 16 << 20 {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                if let Some(v) = glibc_version_in(&bytes) {
                    scan.glibc = Some(v);
                }
            }
            scan.paths.insert(path, target);
        }
    }
    Ok(scan)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    base: &str,
    what: &str,
) -> Result<T, ResolveError> {
    serde_json::from_slice(bytes).map_err(|e| ResolveError::Bad {
        base: base.to_string(),
        message: format!("its {what} is not valid: {e}"),
    })
}

fn pick_platform<'a>(index: &'a Index, wanted: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|m| {
        let is_attestation = m
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("vnd.docker.reference.type"));
        !is_attestation && m.platform.as_ref().is_some_and(|p| wanted.matches(p))
    })
}

fn available_platforms(index: &Index) -> String {
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(Platform::to_string)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn config_platform(config: &serde_json::Value) -> Platform {
    Platform {
        architecture: config["architecture"]
            .as_str()
            .unwrap_or("amd64")
            .to_string(),
        os: config["os"].as_str().unwrap_or("linux").to_string(),
        variant: config["variant"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_is_local_io_naming_the_dir_not_a_registry_error() {
        let full = ResolveError::Io(std::io::Error::from_raw_os_error(28));
        let error = full.into_error(Path::new("/var/cache/slipway"));
        assert_eq!(error.kind, ErrorKind::Other);
        assert!(
            error
                .message
                .starts_with("cache `/var/cache/slipway`: No space left on device"),
            "{}",
            error.message
        );
        let layout = ResolveError::Source(SourceError::Layout {
            path: "/l".into(),
            message: "missing blob".into(),
        });
        assert_eq!(layout.kind(), ErrorKind::Input);
    }

    #[test]
    fn json_is_read_only_up_to_the_cap() {
        let small = crate::oci::read_json_capped(&b"{\"a\":1}"[..], "config").unwrap();
        assert_eq!(small, b"{\"a\":1}");
        // An endless reader: the cap stops reading, it does not buffer it all.
        let endless = std::io::repeat(b'0');
        let e = crate::oci::read_json_capped(endless, "config").unwrap_err();
        assert!(e.to_string().contains("config is larger than 8 MiB"), "{e}");
    }
}
