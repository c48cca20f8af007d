//! `slipway inspect`: describes an image from a registry, an OCI layout or a
//! docker-archive — its platforms, layers (sizes, history), config, annotations
//! and which Python distributions weigh what (a compact `dive`).
//!
//! `source` reads the image, `python` attributes site-packages files to
//! distributions, `render` prints the human summary; this file ties them
//! together into one serialisable [`ImageReport`].

pub mod libraries;
pub mod python;
pub mod referrers;
pub mod render;
pub mod source;

use crate::digest::Digest;
use crate::registry::RegistryError;
use crate::resolve::ResolveError;
use python::{Breakdown, MergedFs};
use serde::Serialize;
use serde_json::Value;
use source::{RawImage, Source};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub use source::Target;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Fetch(#[from] ResolveError),
    #[error(transparent)]
    Source(#[from] crate::image::SourceError),
    #[error("{0}")]
    NotFound(String),
    #[error("the image is not valid: {0}")]
    Bad(String),
    #[error("cannot read `{}`", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InspectError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InspectError {
        let path = path.to_path_buf();
        move |source| InspectError::Io { path, source }
    }
}

impl crate::error::Hint for InspectError {
    fn hint(&self) -> Option<String> {
        match self {
            InspectError::Registry(e) => e.hint(),
            InspectError::Fetch(e) => e.hint(),
            InspectError::Source(e) => e.hint(),
            InspectError::NotFound(_) => {
                Some("name the image as `oci:DIR:TAG`; `skopeo inspect oci:DIR` lists nothing, `cat DIR/index.json` shows the tags".into())
            }
            _ => None,
        }
    }
}

/// What `inspect` reports (also its `--json` document).
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub reference: String,
    pub media_type: String,
    /// The digest the name points at (index or manifest); none for a docker-archive.
    pub digest: Option<Digest>,
    pub annotations: BTreeMap<String, String>,
    pub platforms: Vec<PlatformReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub manifest_digest: Option<Digest>,
    pub media_type: String,
    pub config_digest: Digest,
    pub created: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub config: ConfigSummary,
    pub layers: Vec<LayerReport>,
    /// Sum of the layers' compressed sizes.
    pub size: u64,
    /// Sum of the layers' uncompressed sizes (when the layers were read).
    pub uncompressed_size: Option<u64>,
    pub python: Option<Breakdown>,
    /// SBOMs attached as referrers of this manifest.
    pub sboms: Vec<referrers::AttachedSbom>,
    /// Shared libraries extension modules need (DT_NEEDED) that neither their
    /// wheel's bundled libs nor the image provide (when the layers were read).
    pub missing_libraries: Option<Vec<crate::sharedlibs::MissingLib>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConfigSummary {
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub diff_id: Option<Digest>,
    pub media_type: String,
    pub size: u64,
    pub uncompressed_size: Option<u64>,
    /// The history entry that made it (`created_by`).
    pub created_by: Option<String>,
    pub comment: Option<String>,
}

pub struct InspectOptions<'a> {
    /// Keep only these platforms (`linux/amd64`); empty: all.
    pub platforms: &'a [String],
    /// Read every layer: uncompressed sizes and the Python breakdown.
    pub contents: bool,
}

/// Inspects the image `source` names.
pub async fn inspect(
    source: &Source,
    name: &str,
    options: &InspectOptions<'_>,
) -> Result<ImageReport, InspectError> {
    let (top, images) = source.images(options.platforms).await?;
    if images.is_empty() {
        return Err(InspectError::NotFound(format!(
            "`{name}` has no image for {}",
            options.platforms.join(", ")
        )));
    }
    let mut platforms = Vec::new();
    for image in images {
        platforms.push(inspect_image(source, image, options.contents).await?);
    }
    Ok(ImageReport {
        reference: name.to_string(),
        media_type: top.media_type,
        digest: top.digest,
        annotations: top.annotations,
        platforms,
    })
}

async fn inspect_image(
    source: &Source,
    image: RawImage,
    contents: bool,
) -> Result<PlatformReport, InspectError> {
    let config = &image.config;
    let diff_ids: Vec<Option<Digest>> = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().and_then(|s| Digest::parse(s).ok()))
        .collect();
    // History entries that made a layer, in layer order.
    let history: Vec<&Value> = config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    let mut fs = MergedFs::default();
    let mut layers = Vec::new();
    for (i, d) in image.layers.iter().enumerate() {
        let uncompressed_size = if contents {
            let reader = source.open_blob(&d.digest).await?;
            Some(scan_layer(reader, i, &mut fs).map_err(|e| {
                InspectError::Bad(format!("layer `{}` is not a readable tar: {e}", d.digest))
            })?)
        } else {
            None
        };
        let h = history.get(i);
        let text = |key: &str| h.and_then(|h| h[key].as_str()).map(str::to_string);
        layers.push(LayerReport {
            digest: d.digest.clone(),
            diff_id: diff_ids.get(i).cloned().flatten(),
            media_type: d.media_type.clone(),
            size: d.size,
            uncompressed_size,
            created_by: text("created_by"),
            comment: text("comment"),
        });
    }
    let sboms = match &image.manifest_digest {
        Some(digest) => source.sboms(digest).await?,
        None => Vec::new(),
    };
    Ok(PlatformReport {
        sboms,
        platform: image.platform.to_string(),
        manifest_digest: image.manifest_digest,
        media_type: image.manifest_media_type,
        config_digest: image.config_digest,
        created: config["created"].as_str().map(str::to_string),
        annotations: image.manifest_annotations,
        config: summarise(&config["config"]),
        size: layers.iter().map(|l| l.size).sum(),
        uncompressed_size: contents
            .then(|| layers.iter().filter_map(|l| l.uncompressed_size).sum()),
        layers,
        python: if contents {
            python::breakdown(&fs)
        } else {
            None
        },
        missing_libraries: contents.then(|| fs.missing_libraries()),
    })
}

fn summarise(config: &Value) -> ConfigSummary {
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    ConfigSummary {
        env: strings(&config["Env"]).unwrap_or_default(),
        entrypoint: strings(&config["Entrypoint"]),
        cmd: strings(&config["Cmd"]),
        working_dir: text(&config["WorkingDir"]),
        user: text(&config["User"]),
        exposed_ports: config["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        labels: config["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Counts what passes through.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Walks one layer's tar (gzip'd or not) into `fs`; returns its uncompressed size.
pub(crate) fn scan_layer(
    reader: Box<dyn Read + Send>,
    layer: usize,
    fs: &mut MergedFs,
) -> std::io::Result<u64> {
    let mut reader = std::io::BufReader::new(reader);
    let gzip = std::io::BufRead::fill_buf(&mut reader)?.starts_with(&[0x1f, 0x8b]);
    let plain: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut counting = Counting {
        inner: plain,
        count: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut counting);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = MergedFs::normalise(&entry.path()?.to_string_lossy());
            if fs.whiteout(&path, layer) {
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !(kind.is_file() || kind.is_hard_link() || kind.is_symlink()) {
                continue;
            }
            if kind.is_file() && MergedFs::wants_content(&path) && entry.size() < 16 << 20 {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                fs.add_record(&path, text);
            }
            if kind.is_file()
                && crate::sharedlibs::is_extension_module(&path)
                && entry.size() <= crate::sharedlibs::MAX_MODULE_BYTES
            {
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes)?;
                fs.set_elf(&path, crate::sharedlibs::elf_needs(&bytes));
            }
            fs.add_file(path, entry.size(), layer);
        }
    }
    // The tar's end-of-archive blocks and padding count too.
    std::io::copy(&mut counting, &mut std::io::sink())?;
    Ok(counting.count)
}
