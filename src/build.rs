//! The pipeline run end to end for `slipway build`: recipe → resolve →
//! layers (keys planned, looked up, built) → assemble → publish. Each stage
//! is a module; this file only wires them together.

use crate::assemble;
use crate::cache::{Cache, LayerRecord};
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::Owner;
use crate::off_async_workers;
use crate::publish::{self, Publishable};
use crate::recipe::{Destination, Recipe};
use crate::registry::RegistryClient;
use crate::report::{BuildReport, LayerKind, PlatformReport, Timings};
use crate::resolve;
use crate::sbom;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::layers::app_layers::build_app_layers;
use crate::layers::layer_cache::{Built, Omitted, COMPILED_FILES, COMPRESS_BYTES, COMPRESS_NANOS};
use crate::layers::options::{LayerOptions, PinnedWheels};
use crate::layers::python_layers::{build_python_layers, PythonLayers};
use crate::layers::stdlib_layer::build_stdlib_layer;
use crate::layers::store::LayerStore;

pub struct BuildOptions {
    pub recipe: Recipe,
    pub destination: Destination,
    pub cache_dir: PathBuf,
    /// `docker.io` → `mirror:5000`, for pulls of the base.
    pub mirrors: BTreeMap<String, String>,
    /// Read the base from this OCI layout instead of a registry.
    pub base_layout: Option<PathBuf>,
    /// Offline from a bundle (`slipway bundle`): its pinned wheels replace
    /// the recipe's requirements sources (its base layout is `base_layout`).
    pub bundle: Option<crate::bundle::Bundle>,
    /// CPython of the base's minor version for bytecode (else found).
    pub python: Option<PathBuf>,
    pub uv: PathBuf,
    /// Names for the image in a docker-archive (`RepoTags`).
    pub tags: Vec<crate::reference::Reference>,
    pub epoch: u64,
    pub log: crate::progress::Log,
    /// The SBOM attached to each platform's image (None: none).
    pub sbom: Option<crate::sbom::Format>,
    /// The registry repository shared as a layer cache (`--cache-repo`).
    pub cache_repo: Option<crate::reference::Reference>,
}

impl BuildOptions {
    /// What the layer builders need to know of this build.
    fn layer_options(&self) -> LayerOptions<'_> {
        LayerOptions {
            recipe: &self.recipe,
            cache_dir: &self.cache_dir,
            output: match &self.destination {
                Destination::OciLayout(dir) => Some(dir),
                Destination::DockerArchive(file) => Some(file),
                Destination::Push(_) => None,
            },
            python: self.python.as_deref(),
            uv: &self.uv,
            epoch: self.epoch,
            log: &self.log,
            pinned: self.bundle.as_ref().map(|b| b as &dyn PinnedWheels),
        }
    }
}

/// ko's shape: resolve the bases, build the new layers, assemble each
/// platform's image (pure), publish. Each phase hands plain data to the next.
pub async fn build(client: &RegistryClient, opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let local_cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let repo = opts
        .cache_repo
        .clone()
        .map(|r| crate::cache_repo::CacheRepo::new(client, r));
    // Without a cache repo (whose blobs a push mounts instead), new layers
    // go up while the build goes on.
    let early = match (&opts.destination, &opts.cache_repo) {
        (Destination::Push(dest), None) => publish::early::EarlyPush::start(client, dest),
        _ => None,
    };
    let mut cache = LayerStore::new(&local_cache, repo);
    if let Some(early) = &early {
        cache = cache.on_built(Box::new(|record: &LayerRecord, blob| {
            early.offer(&record.digest, blob)
        }));
    }

    let t = Instant::now();
    let (bases, all_facts) = resolve::resolve_bases(
        client,
        &cache,
        &opts.recipe,
        opts.base_layout.as_deref(),
        &opts.mirrors,
        &opts.log,
    )
    .await?;
    timings.resolve = t.elapsed().as_secs_f64();

    let layers = build_layers(opts, &cache, &all_facts, &mut timings)?;
    let assembled =
        assemble_platforms(opts, &cache, &bases, &all_facts, layers, &mut timings).await?;
    let index = (assembled.images.len() > 1)
        .then(|| assemble::index(&assembled.images, &assembled.annotations));
    let mut publishable = Publishable {
        images: assembled.images.iter().collect(),
        index,
        referrers: assembled.referrers,
        new_layers_also_in: None,
        early: early.as_ref(),
    };

    let t = Instant::now();
    let blobs = publish_and_share(client, &cache, &mut publishable, opts).await?;
    timings.publish = t.elapsed().as_secs_f64();
    let missing_libraries = check_shared_libraries(&cache, &assembled.images, &opts.log);
    timings.total = started.elapsed().as_secs_f64();
    timings.compress_seconds = COMPRESS_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    timings.compress_bytes = COMPRESS_BYTES.load(Ordering::Relaxed);
    timings.peak_rss_kib = peak_rss_kib();
    timings.bytecode_files_compiled = COMPILED_FILES.load(Ordering::Relaxed);
    let mut report = BuildReport {
        destination: publish::describe(&opts.destination),
        digest: publishable.digest(),
        index_digest: publishable.index.as_ref().map(|(_, d)| d.clone()),
        platforms: assembled.reports,
        timings,
        blobs_uploaded_bytes: blobs.iter().map(|b| b.bytes_sent).sum(),
        blobs: Vec::new(),
        missing_libraries,
    };
    report.attach_blob_actions(blobs);
    Ok(report)
}

/// The new layers of every platform, before the stdlib layer (which needs
/// them to know what the code imports).
struct NewLayers {
    app: Vec<Built>,
    app_omitted: Omitted,
    /// One per platform, in the bases' order.
    python: Vec<PythonLayers>,
}

/// The app's layers and each platform's site-packages share no input: they
/// are built at the same time, off the async workers.
fn build_layers(
    opts: &BuildOptions,
    cache: &LayerStore,
    all_facts: &[PythonFacts],
    timings: &mut Timings,
) -> Result<NewLayers> {
    let owner = owner_of(opts.recipe.image.user.as_deref());
    let opts = &opts.layer_options();
    let t = Instant::now();
    let (app, python) = off_async_workers(|| {
        std::thread::scope(|scope| {
            let app = scope.spawn(|| {
                let t = Instant::now();
                let built = build_app_layers(opts, cache, &all_facts[0], owner);
                (built, t.elapsed().as_secs_f64())
            });
            let python: Result<Vec<_>> = all_facts
                .iter()
                .map(|facts| build_python_layers(opts, cache, facts, owner))
                .collect();
            (app.join().expect("the app layer thread"), python)
        })
    });
    timings.site_packages = t.elapsed().as_secs_f64();
    let (app, app_seconds) = app;
    timings.app = app_seconds;
    let (app, app_omitted) = app?;
    Ok(NewLayers {
        app,
        app_omitted,
        python: python?,
    })
}

/// Every platform's image, its report and its SBOM, in the bases' order.
struct Assembled {
    images: Vec<crate::image::Image>,
    reports: Vec<PlatformReport>,
    referrers: Vec<sbom::referrer::Referrer>,
    /// source, revision and version from git; created and base.* come from
    /// assemble.
    annotations: BTreeMap<String, String>,
}

async fn assemble_platforms(
    opts: &BuildOptions,
    cache: &LayerStore<'_>,
    bases: &[resolve::BaseImage],
    all_facts: &[PythonFacts],
    layers: NewLayers,
    timings: &mut Timings,
) -> Result<Assembled> {
    let recipe = &opts.recipe;
    let mut assembled = Assembled {
        images: Vec::new(),
        reports: Vec::new(),
        referrers: Vec::new(),
        annotations: crate::provenance::for_build(recipe),
    };
    for ((base, facts), (mut new_layers, mut left_out, held, pins)) in
        bases.iter().zip(all_facts).zip(layers.python)
    {
        new_layers.extend(layers.app.iter().cloned());
        left_out.extend(layers.app_omitted.iter().cloned());
        // Lowest of the new layers: it changes only with the base (and, for
        // "imported", the modules the code reaches).
        let t = Instant::now();
        if let Some(stdlib) =
            build_stdlib_layer(cache, &opts.layer_options(), base, facts, &new_layers).await?
        {
            new_layers.insert(0, stdlib);
        }
        timings.stdlib_bytecode += t.elapsed().as_secs_f64();
        // Recorded in a label so `rebase` can redo this step without the recipe.
        let settings = crate::assemble::recorded::Recorded::new(&recipe.image, facts, opts.epoch)
            .image_settings(&recipe.image.annotations);
        let image = assemble::assemble(
            base,
            &new_layers
                .iter()
                .map(|(l, _, _)| l.clone())
                .collect::<Vec<_>>(),
            &settings,
            opts.epoch,
            &assembled.annotations,
        )
        .map_err(|e| {
            Error::wrap(
                ErrorKind::Input,
                e,
                Some("use fewer layers in the base image".into()),
            )
        })?;
        if let Some(format) = opts.sbom {
            assembled.referrers.push(sbom_for(
                cache,
                opts,
                format,
                (&image, base),
                &new_layers,
                &pins,
                &assembled.annotations,
            )?);
        }
        let mut platform_report = PlatformReport::new(&image, base, facts, &new_layers);
        platform_report.omitted = left_out;
        platform_report.held_back = held;
        assembled.reports.push(platform_report);
        assembled.images.push(image);
    }
    Ok(assembled)
}

/// The SBOM of one platform's image: the dists its installed layers hold,
/// with the hashes of the wheels they came from.
fn sbom_for(
    cache: &LayerStore,
    opts: &BuildOptions,
    format: sbom::Format,
    (image, base): (&crate::image::Image, &resolve::BaseImage),
    new_layers: &[Built],
    pinned_requirements: &[String],
    annotations: &BTreeMap<String, String>,
) -> Result<sbom::referrer::Referrer> {
    let installed: Vec<&LayerRecord> = new_layers
        .iter()
        .filter(|(_, kind, _)| matches!(kind, LayerKind::SitePackages | LayerKind::Project))
        .map(|(l, _, _)| &l.record)
        .collect();
    let mut dists = sbom::dists::in_cached_layers(cache, &installed)
        .map_err(io("cannot read the site-packages layer from the cache"))?;
    sbom::dists::attach_wheel_hashes(&mut dists, &sbom::dists::pins_in(pinned_requirements));
    Ok(sbom::referrer_for(
        image,
        base,
        dists,
        annotations,
        opts.epoch,
        format,
    ))
}

/// Publishes while the cache repo (if any) gets the new layers. Same
/// registry: the repo gets the blobs first and the push mounts them;
/// otherwise the two go on at once.
async fn publish_and_share(
    client: &RegistryClient,
    cache: &LayerStore<'_>,
    publishable: &mut Publishable<'_>,
    opts: &BuildOptions,
) -> Result<Vec<publish::BlobReport>> {
    let mount_from_repo = matches!(&opts.destination, Destination::Push(dest)
        if cache.repo().is_some_and(|r| r.registry == dest.registry));
    if mount_from_repo {
        cache.write_behind().await;
        publishable.new_layers_also_in = cache.repo().cloned();
    }
    let publish = publish::publish(
        client,
        cache,
        publishable,
        &opts.destination,
        &opts.tags,
        &opts.log,
    );
    if mount_from_repo {
        publish.await
    } else {
        let (published, ()) = tokio::join!(publish, cache.write_behind());
        published
    }
}

/// Shared libraries the images' extension modules need and lack, when each
/// base's file list is known (else a verbose note); never fails the build.
fn check_shared_libraries(
    cache: &Cache,
    images: &[crate::image::Image],
    log: &crate::progress::Log,
) -> Vec<crate::sharedlibs::MissingLib> {
    let mut missing = Vec::new();
    for image in images {
        match crate::inspect::libraries::check_build(cache, image) {
            Ok(Some(found)) => missing.extend(found),
            Ok(None) => log.detail(&format!(
                "{}: shared libraries not checked (the base's files are unknown: its layers were never downloaded)",
                image.platform
            )),
            Err(e) => log.detail(&format!("{}: shared libraries not checked: {e}", image.platform)),
        }
    }
    missing
}

/// This process's peak resident set (`VmHWM` in /proc/self/status), 0 if unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// `1000`, `1000:1000` or `app` (a name: files stay root-owned; only the config says `app`).
pub fn owner_of(user: Option<&str>) -> Owner {
    let Some(user) = user else {
        return Owner::default();
    };
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    match (u.parse(), g.parse()) {
        (Ok(uid), Ok(gid)) => Owner { uid, gid },
        (Ok(uid), Err(_)) => Owner { uid, gid: uid },
        _ => Owner::default(),
    }
}
