//! The I/O around [`super::rebase`]: read the image (registry or OCI
//! layout), resolve the new base, learn its facts, check them, assemble,
//! regenerate the SBOM, publish. Nothing is published when a check fails.

use super::{check_facts, rebase, OldImage, RebaseError};
use crate::assemble;
use crate::assemble::recorded::LayerFacts;
use crate::cache::{Cache, LayerRecord};
use crate::error::{io, Error, ErrorKind, Result};
use crate::image::Image;
use crate::inspect::{source::Source, InspectError, Target};
use crate::progress::Log;
use crate::publish::Publishable;
use crate::publish::{describe, publish};
use crate::recipe::{Destination, StatedFacts};
use crate::reference::Reference;
use crate::registry::RegistryClient;
use crate::resolve::base_facts;
use crate::resolve::{self, BaseImage};
use crate::sbom::{self, referrer::Referrer};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct RebaseOptions {
    pub image: Target,
    /// The new base; None: the image's own `org.opencontainers.image.base.name`, resolved again.
    pub base: Option<Reference>,
    pub base_layout: Option<PathBuf>,
    pub destination: Destination,
    pub cache_dir: PathBuf,
    pub mirrors: BTreeMap<String, String>,
    pub log: Log,
}

/// What was published: `destination@digest`, and the new base per platform.
#[derive(Debug, serde::Serialize)]
pub struct RebaseReport {
    pub destination: String,
    pub digest: crate::digest::Digest,
    pub old_digest: Option<crate::digest::Digest>,
    pub base: String,
    pub base_digest: crate::digest::Digest,
    /// The base digest the image was on (its `org.opencontainers.image.base.digest`).
    pub old_base_digest: Option<String>,
}

pub async fn run(client: &RegistryClient, opts: &RebaseOptions) -> Result<RebaseReport> {
    let cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let log = &opts.log;
    log.step(&format!("reading `{}`", opts.image));
    let source =
        Source::open(&opts.image, client, &opts.cache_dir, &opts.mirrors).map_err(inspect_error)?;
    let (top, raw) = source.images(&[]).await.map_err(inspect_error)?;
    let old: Vec<OldImage> = raw
        .into_iter()
        .map(|r| OldImage {
            platform: r.platform,
            manifest_digest: r
                .manifest_digest
                .expect("registry and layout images have manifests"),
            config: r.config,
            layers: r.layers,
            annotations: r.manifest_annotations,
        })
        .collect();
    let recorded = old
        .iter()
        .map(OldImage::recorded)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(rebase_error)?;
    let base_name = new_base_name(opts, &old[0])?;
    log.step(&format!("resolving base `{base_name}`"));
    let platforms: Vec<_> = old.iter().map(|o| o.platform.clone()).collect();
    let bases = resolve_new_base(client, &cache, opts, &base_name, &platforms).await?;
    check_new_base(&cache, &old, &recorded, &bases).await?;

    let mut images = Vec::new();
    let mut referrers = Vec::new();
    for ((image, recorded), base) in old.iter().zip(&recorded).zip(&bases) {
        let new = rebase(image, recorded, base).map_err(rebase_error)?;
        // slipway's layers come along from where the image is (into the cache).
        let image_source = source.image_source();
        for layer in &new.layers[new.new_from()..] {
            resolve::fetch_blob(&cache, image_source, &layer.descriptor.digest)
                .await
                .map_err(Error::hinted(ErrorKind::Registry))?;
        }
        if let Some(referrer) = new_sbom(&source, &cache, image, &new, base, recorded.epoch).await?
        {
            referrers.push(referrer);
        }
        images.push(new);
    }
    let index =
        crate::oci::is_index(&top.media_type).then(|| assemble::index(&images, &top.annotations));
    let publishable = Publishable {
        images: images.iter().collect(),
        index,
        referrers,
        new_layers_also_in: None,
        early: None,
    };
    publish(client, &cache, &publishable, &opts.destination, &[], log).await?;
    Ok(RebaseReport {
        destination: describe(&opts.destination),
        digest: publishable.digest(),
        old_digest: top.digest,
        base: base_name.to_string(),
        base_digest: bases[0].top_digest.clone(),
        old_base_digest: old[0]
            .annotations
            .get("org.opencontainers.image.base.digest")
            .cloned(),
    })
}

/// Refuses a new base whose Python or libc differ from what each old
/// image's layers were built for.
async fn check_new_base(
    cache: &Cache,
    old: &[OldImage],
    recorded: &[super::Recorded],
    bases: &[resolve::BaseImage],
) -> Result<()> {
    let mut new_facts = Vec::new();
    for base in bases {
        new_facts.push(LayerFacts::from(
            &base_facts(cache, base, &StatedFacts::default()).await?,
        ));
    }
    let pairs: Vec<_> = old
        .iter()
        .zip(recorded)
        .zip(new_facts)
        .map(|((o, r), f)| (o, r, f))
        .collect();
    check_facts(&pairs).map_err(rebase_error)
}

/// `--base`, else the base the old image names in its annotations.
fn new_base_name(opts: &RebaseOptions, first: &OldImage) -> Result<Reference> {
    if let Some(base) = &opts.base {
        return Ok(base.clone());
    }
    let name = first
        .annotations
        .get("org.opencontainers.image.base.name")
        .ok_or_else(|| {
            Error::new(ErrorKind::Input, format!("`{}` does not name its base (no `org.opencontainers.image.base.name` annotation)", opts.image))
                .with_hint("name the new base with `--base REF`")
        })?;
    Reference::parse(name).map_err(|e| Error::new(ErrorKind::Input, format!("base `{name}`: {e}")))
}

async fn resolve_new_base(
    client: &RegistryClient,
    cache: &Cache,
    opts: &RebaseOptions,
    base_name: &Reference,
    platforms: &[crate::platform::Platform],
) -> Result<Vec<resolve::BaseImage>> {
    resolve::resolve(
        client,
        cache,
        base_name,
        opts.base_layout.as_deref(),
        &opts.mirrors,
        platforms,
    )
    .await
    .map_err(|e| {
        let kind = if matches!(e, resolve::ResolveError::Registry(_)) {
            ErrorKind::Registry
        } else {
            ErrorKind::Input
        };
        Error::hinted(kind)(e)
    })
}

/// The SBOM for the rebased image, in the format the old one had (none if
/// it had none), listing the same distributions; wheel hashes carried over.
async fn new_sbom(
    source: &Source,
    cache: &Cache,
    old: &OldImage,
    new: &Image,
    base: &BaseImage,
    epoch: u64,
) -> Result<Option<Referrer>> {
    let attached = source
        .sboms(&old.manifest_digest)
        .await
        .map_err(inspect_error)?;
    let Some(first) = attached.first() else {
        return Ok(None);
    };
    let format = if first.artifact_type == sbom::CYCLONEDX_MEDIA_TYPE {
        sbom::Format::CycloneDx
    } else {
        sbom::Format::Spdx
    };
    let old_document = source
        .sbom_document(&first.digest)
        .await
        .map_err(inspect_error)?;
    let layers = old.slipway_layers().map_err(rebase_error)?;
    let installed: Vec<&LayerRecord> = layers
        .iter()
        .filter(|l| l.created_by.starts_with("slipway: site-packages for"))
        .map(|l| &l.record)
        .collect();
    let mut dists = sbom::dists::in_cached_layers(cache, &installed)
        .map_err(io("cannot read the site-packages layer from the cache"))?;
    let hashes = sbom::dists::wheel_hashes_in(&old_document);
    for dist in &mut dists {
        dist.wheel_sha256 = hashes.get(&dist.purl()).cloned();
    }
    Ok(Some(sbom::referrer_for(
        new,
        base,
        dists,
        &old.annotations,
        epoch,
        format,
    )))
}

fn inspect_error(e: InspectError) -> Error {
    let kind = match &e {
        InspectError::Registry(_) | InspectError::Fetch(_) => ErrorKind::Registry,
        InspectError::Source(e) => e.kind(),
        _ => ErrorKind::Input,
    };
    Error::hinted(kind)(e)
}

fn rebase_error(e: RebaseError) -> Error {
    Error::hinted(ErrorKind::Input)(e)
}
