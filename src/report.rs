//! What a build tells its user: log lines while it runs, and at the end a
//! report (a layer table, or one JSON document with `--json`).

use crate::digest::Digest;
use crate::facts::PythonFacts;
use crate::image::Image;
pub use crate::layers::outcome::{LayerKind, LayerSource, OmittedLayer};
pub use crate::progress::{human, Log};
use crate::publish::{BlobAction, BlobReport};
use crate::resolve::BaseImage;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub kind: LayerKind,
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
    pub uncompressed_size: Option<u64>,
    /// Taken from the cache instead of being built.
    pub reused: bool,
    /// Where the layer came from: `base`, `built`, `cache` (the local one)
    /// or `cache-repo` (the shared one, `--cache-repo`).
    pub source: LayerSource,
    /// What publishing did with it (existing / mounted / uploaded / written).
    pub action: Option<BlobAction>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub python: PythonFacts,
    pub layers: Vec<LayerReport>,
    /// Layers left out, and why (e.g. no `.py` files to compile).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<OmittedLayer>,
    /// Packages the wheel-only resolution holds below what sdists would give.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<crate::layers::resolution::HeldBack>,
}

impl PlatformReport {
    pub fn new(
        image: &Image,
        _base: &BaseImage,
        facts: &PythonFacts,
        new: &[(crate::assemble::NewLayer, LayerKind, LayerSource)],
    ) -> PlatformReport {
        let layers = image
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let (d, diff_id) = (&layer.descriptor, &layer.diff_id);
                let new = i.checked_sub(image.new_from()).and_then(|j| new.get(j));
                LayerReport {
                    kind: new.map_or(LayerKind::Base, |n| n.1),
                    digest: d.digest.clone(),
                    diff_id: diff_id.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    uncompressed_size: new.map(|n| n.0.record.uncompressed_size),
                    reused: new.is_none_or(|n| n.2 != LayerSource::Built),
                    source: new.map_or(LayerSource::Base, |n| n.2),
                    action: None,
                }
            })
            .collect();
        PlatformReport {
            platform: image.platform.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            config_digest: image.config_digest.clone(),
            python: facts.clone(),
            layers,
            omitted: Vec::new(),
            held_back: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub resolve: f64,
    pub app: f64,
    pub site_packages: f64,
    /// Seconds spent on the stdlib bytecode layer (reading the base's
    /// stdlib, the `"imported"` scan, compiling), 0 when off.
    pub stdlib_bytecode: f64,
    pub publish: f64,
    pub total: f64,
    /// Seconds spent writing (tar + gzip) new layers, and their uncompressed bytes.
    pub compress_seconds: f64,
    pub compress_bytes: u64,
    /// slipway's own peak resident memory (VmHWM), in KiB; uv and the
    /// bytecode compiler run as child processes and are not counted.
    pub peak_rss_kib: u64,
    /// `.py` files compiled to bytecode by this build; wheels whose
    /// bytecode the cache already holds are not compiled again.
    pub bytecode_files_compiled: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub destination: String,
    /// What to pull: the index digest for several platforms, else the manifest's.
    pub digest: Digest,
    pub index_digest: Option<Digest>,
    pub platforms: Vec<PlatformReport>,
    pub timings: Timings,
    pub blobs_uploaded_bytes: u64,
    pub blobs: Vec<BlobReport>,
    /// Extension modules whose shared libraries the image lacks (checked
    /// when the base's file list is known).
    pub missing_libraries: Vec<crate::sharedlibs::MissingLib>,
}

impl BuildReport {
    pub fn attach_blob_actions(&mut self, blobs: Vec<BlobReport>) {
        for platform in &mut self.platforms {
            for layer in &mut platform.layers {
                layer.action = blobs
                    .iter()
                    .find(|b| b.digest == layer.digest)
                    .map(|b| b.action.clone());
            }
        }
        self.blobs = blobs;
    }

    pub fn layers_built(&self) -> usize {
        self.platforms
            .iter()
            .flat_map(|p| &p.layers)
            .filter(|l| !l.reused)
            .count()
    }

    /// The human summary: one table of layers per platform.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for p in &self.platforms {
            let _ = writeln!(
                out,
                "{}  {}  (Python {}, {})",
                p.platform, p.manifest_digest, p.python.version, p.python.libc
            );
            let _ = writeln!(
                out,
                "  {:<24} {:>12} {:>14}  {:<9} digest",
                "layer", "compressed", "uncompressed", "cache"
            );
            for l in &p.layers {
                let kind = serde_json::to_value(l.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let uncompressed = l.uncompressed_size.map(human).unwrap_or_else(|| "-".into());
                let cache = match l.source {
                    LayerSource::Base => "base",
                    LayerSource::Cache => "reused",
                    LayerSource::CacheRepo => "cache-repo",
                    LayerSource::Built => "built",
                };
                let _ = writeln!(
                    out,
                    "  {:<24} {:>12} {:>14}  {:<9} {}",
                    kind,
                    human(l.size),
                    uncompressed,
                    cache,
                    &l.digest.as_str()[..19]
                );
            }
            for o in &p.omitted {
                let kind = serde_json::to_value(o.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = writeln!(out, "  {kind:<24} {:>12}  {}", "omitted", o.reason);
            }
            for held in &p.held_back {
                let _ = writeln!(out, "  warning: {held}");
            }
            let total: u64 = p.layers.iter().map(|l| l.size).sum();
            let _ = writeln!(out, "  {:<24} {:>12}", "total", human(total));
        }
        out
    }
}
