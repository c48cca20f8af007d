//! The pipeline run end to end for `slipway build`: recipe → resolve → plan →
//! layers → assemble → publish. Each stage is a module; this file only wires
//! them together and turns their errors into CLI errors.

use crate::assemble::{self, NewLayer};
use crate::cache::{Cache, LayerRecord};
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::tarball::{self, FileDigests};
use crate::layers::{self, bytecode, Entry, Owner};
use crate::publish::{self, Publishable};
use crate::recipe::{Destination, Recipe};
use crate::registry::RegistryClient;
use crate::report::{BuildReport, LayerKind, LayerSource, OmittedLayer, PlatformReport, Timings};
use crate::resolve;
use crate::sbom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

mod app_layers;
mod failures;
mod python_layers;
mod stdlib_layer;
mod store;

use app_layers::build_app_layers;
use failures::source_error;
use python_layers::build_python_layers;
use stdlib_layer::build_stdlib_layer;
pub use store::LayerStore;

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

pub async fn build(client: &RegistryClient, opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let recipe = &opts.recipe;
    let local_cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let repo = opts
        .cache_repo
        .clone()
        .map(|r| crate::cache_repo::CacheRepo::new(client, r));
    let cache = LayerStore::new(&local_cache, repo);
    let log = &opts.log;

    let t = Instant::now();
    let (bases, all_facts) = resolve::resolve_bases(
        client,
        &cache,
        recipe,
        opts.base_layout.as_deref(),
        &opts.mirrors,
        log,
    )
    .await?;
    timings.resolve = t.elapsed().as_secs_f64();

    let owner = owner_of(recipe.image.user.as_deref());
    // The app's layers and each platform's site-packages share no input:
    // they are built at the same time, off the async workers.
    let t = Instant::now();
    let (app_layers, python_layers) = off_async_workers(|| {
        std::thread::scope(|scope| {
            let app = scope.spawn(|| {
                let t = Instant::now();
                let built = build_app_layers(opts, &cache, &all_facts[0], owner);
                (built, t.elapsed().as_secs_f64())
            });
            let python: Result<Vec<_>> = all_facts
                .iter()
                .map(|facts| build_python_layers(opts, &cache, facts, owner))
                .collect();
            (app.join().expect("the app layer thread"), python)
        })
    });
    timings.site_packages = t.elapsed().as_secs_f64();
    let (app_layers, app_seconds) = app_layers;
    timings.app = app_seconds;
    let (app_layers, app_omitted) = app_layers?;
    let python_layers = python_layers?;

    let mut images = Vec::new();
    let mut platform_reports = Vec::new();
    // source, revision and version from git; created and base.* come from assemble.
    let annotations = crate::provenance::for_build(recipe);
    let mut referrers = Vec::new();
    for ((base, facts), (mut new_layers, mut left_out, held, pins)) in
        bases.iter().zip(&all_facts).zip(python_layers)
    {
        new_layers.extend(app_layers.iter().cloned());
        left_out.extend(app_omitted.iter().cloned());
        // Lowest of the new layers: it changes only with the base (and, for
        // "imported", the modules the code reaches).
        let t = Instant::now();
        if let Some(stdlib) = build_stdlib_layer(&cache, opts, base, facts, &new_layers).await? {
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
            &annotations,
        )
        .map_err(|e| {
            Error::wrap(
                ErrorKind::Input,
                e,
                Some("use fewer layers in the base image".into()),
            )
        })?;
        if let Some(format) = opts.sbom {
            let installed: Vec<&LayerRecord> = new_layers
                .iter()
                .filter(|(_, kind, _)| matches!(kind, LayerKind::SitePackages | LayerKind::Project))
                .map(|(l, _, _)| &l.record)
                .collect();
            let mut dists = sbom::dists::in_cached_layers(&cache, &installed)
                .map_err(io("cannot read the site-packages layer from the cache"))?;
            sbom::dists::attach_wheel_hashes(&mut dists, &pins);
            referrers.push(sbom::referrer_for(
                &image,
                base,
                dists,
                &annotations,
                opts.epoch,
                format,
            ));
        }
        let mut platform_report = PlatformReport::new(&image, base, facts, &new_layers);
        platform_report.omitted = left_out;
        platform_report.held_back = held;
        platform_reports.push(platform_report);
        images.push(image);
    }
    let index = (images.len() > 1).then(|| assemble::index(&images, &annotations));
    let mut publishable = Publishable {
        images: images.iter().zip(&bases).collect(),
        index,
        referrers,
        new_layers_also_in: None,
    };

    let t = Instant::now();
    // Same registry: the repo gets the blobs first, the push mounts them;
    // otherwise the two go on at once.
    let mount_from_repo = matches!(&opts.destination, Destination::Push(dest)
        if cache.repo().is_some_and(|r| r.registry == dest.registry));
    if mount_from_repo {
        cache.write_behind().await;
        publishable.new_layers_also_in = cache.repo().cloned();
    }
    let publish = publish::publish(
        client,
        &cache,
        &publishable,
        &opts.destination,
        &opts.tags,
        log,
    );
    let blobs = if mount_from_repo {
        publish.await?
    } else {
        let (published, ()) = tokio::join!(publish, cache.write_behind());
        published?
    };
    timings.publish = t.elapsed().as_secs_f64();
    let missing_libraries = check_shared_libraries(&cache, &images, log);
    timings.total = started.elapsed().as_secs_f64();
    timings.compress_seconds = COMPRESS_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    timings.compress_bytes = COMPRESS_BYTES.load(Ordering::Relaxed);
    timings.peak_rss_kib = peak_rss_kib();
    timings.bytecode_files_compiled = COMPILED_FILES.load(Ordering::Relaxed);
    let mut report = BuildReport {
        destination: publish::describe(&opts.destination),
        digest: publishable.digest(),
        index_digest: publishable.index.as_ref().map(|(_, d)| d.clone()),
        platforms: platform_reports,
        timings,
        blobs_uploaded_bytes: blobs.iter().map(|b| b.bytes_sent).sum(),
        blobs: Vec::new(),
        missing_libraries,
    };
    report.attach_blob_actions(blobs);
    Ok(report)
}

/// Shared libraries the images' extension modules need and lack, when each
/// base's file list is known (else a verbose note); never fails the build.
fn check_shared_libraries(
    cache: &Cache,
    images: &[assemble::AssembledImage],
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

/// (layer, kind, where it came from)
type Built = (NewLayer, LayerKind, LayerSource);

/// Layers left out (no files), with the reason, for the report.
type Omitted = Vec<OmittedLayer>;

fn omitted(kind: LayerKind, reason: &str) -> OmittedLayer {
    OmittedLayer {
        kind,
        reason: reason.to_string(),
    }
}

/// What a layer is built from: its entries, the scratch dir holding their
/// files (if any), and the content digests its key was made of.
type LayerInputs = (Vec<Entry>, Option<tempfile::TempDir>, FileDigests);

/// Runs blocking work without stalling the runtime's other tasks.
fn off_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Reuses the layer for `key` from the caches or builds it from `entries()`.
fn cached_layer(
    cache: &LayerStore,
    key: &str,
    created_by: &str,
    kind: LayerKind,
    opts: &BuildOptions,
    entries: impl FnOnce() -> Result<LayerInputs>,
) -> Result<Built> {
    let _lock = cache
        .lock(key)
        .map_err(io(cache.context("cannot lock the cache")))?;
    let (record, source) = match cache.find(key) {
        Some(found) => found,
        None => {
            opts.log.step(&format!(
                "building {}",
                created_by.trim_start_matches("slipway: ")
            ));
            // `_scratch` holds the entries' files until the layer is written.
            let (entries, _scratch, digests) = entries()?;
            (
                write_into_cache(cache, key, &entries, opts.epoch, &digests)?,
                LayerSource::Built,
            )
        }
    };
    opts.log.cache(key, source != LayerSource::Built);
    Ok((
        NewLayer {
            record,
            created_by: created_by.to_string(),
        },
        kind,
        source,
    ))
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

/// Time and bytes of layer writing, for the report's timings (one build per process).
static COMPRESS_NANOS: AtomicU64 = AtomicU64::new(0);
static COMPRESS_BYTES: AtomicU64 = AtomicU64::new(0);
/// `.py` files compiled by this build (not taken from the per-wheel store).
static COMPILED_FILES: AtomicU64 = AtomicU64::new(0);

/// Packs `entries` (checked against `digests`, see
/// [`tarball::write_layer_checked`]) into the blob store under `key`.
fn write_into_cache(
    cache: &LayerStore,
    key: &str,
    entries: &[Entry],
    epoch: u64,
    digests: &FileDigests,
) -> Result<LayerRecord> {
    let scratch = cache
        .temp_dir("layer")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    let started = Instant::now();
    let blob = tarball::write_layer_checked(
        entries,
        epoch,
        &scratch.path().join("layer.tar.gz"),
        digests,
    )
    .map_err(source_error(&format!(
        "cannot write layer `{key}` in `{}`",
        scratch.path().display()
    )))?;
    COMPRESS_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    COMPRESS_BYTES.fetch_add(blob.uncompressed_size, Ordering::Relaxed);
    cache
        .insert_blob(&blob.path, &blob.digest)
        .map_err(io(cache.context("cannot write to the cache")))?;
    let record = LayerRecord {
        digest: blob.digest,
        diff_id: blob.diff_id,
        size: blob.size,
        uncompressed_size: blob.uncompressed_size,
    };
    cache
        .remember(key, &record)
        .map_err(io(cache.context("cannot write to the cache")))?;
    Ok(record)
}

/// Compiles `sources`; the returned dir holds the `.pyc` files the entries point at.
/// `lower` is the layer the sources come from: the bytecode layer copies its
/// directories' owners and modes.
fn compile(
    opts: &BuildOptions,
    cache: &Cache,
    facts: &PythonFacts,
    sources: &[(PathBuf, String)],
    lower: &[Entry],
    owner: Owner,
) -> Result<(tempfile::TempDir, Vec<Entry>)> {
    let python = find_python(opts, facts)?;
    let scratch = cache
        .temp_dir("pyc")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    let compiled = bytecode::compile_report(&python, sources, scratch.path(), owner)
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))?;
    COMPILED_FILES.fetch_add(compiled.compiled_files as u64, Ordering::Relaxed);
    compiled.warn_skipped();
    Ok((scratch, layers::normalise_over(compiled.entries, lower)))
}

/// Site-packages bytecode assembled from the per-wheel store, compiling
/// only the wheels it has never seen.
fn compile_wheels(
    opts: &BuildOptions,
    cache: &Cache,
    facts: &PythonFacts,
    lower: &[Entry],
    owner: Owner,
) -> Result<Vec<Entry>> {
    let python = find_python(opts, facts)?;
    let scratch = cache
        .temp_dir("pyc")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    let wrap = |e| Error::wrap(ErrorKind::Input, e, None);
    let groups = bytecode::wheels::groups(lower, &facts.site_packages).map_err(wrap)?;
    let compiled = bytecode::wheels::compile_groups(
        &python,
        &groups,
        &bytecode::wheels::WheelStore::in_cache(cache.root()),
        scratch.path(),
        owner,
        bytecode::default_workers().map_err(wrap)?,
    )
    .map_err(wrap)?;
    COMPILED_FILES.fetch_add(compiled.compiled_files as u64, Ordering::Relaxed);
    compiled.warn_skipped();
    Ok(layers::normalise_over(compiled.entries, lower))
}

fn find_python(opts: &BuildOptions, facts: &PythonFacts) -> Result<PathBuf> {
    let memos = layers::tool_version::memo_dir(&opts.cache_dir);
    bytecode::find_python(&facts.version, opts.python.as_deref(), Some(&memos))
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))
}

fn uv_version(uv: &Path, cache: &Cache) -> Result<String> {
    layers::tool_version::version(uv, &layers::tool_version::memo_dir(cache.root())).map_err(|e| {
        Error::new(
            ErrorKind::Input,
            format!("cannot run uv (`{}`): {e}", uv.display()),
        )
        .with_hint("install uv (`pip install uv`) or point `--uv` / `SLIPWAY_UV` at it")
    })
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
