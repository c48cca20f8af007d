//! The pipeline run end to end for `slipway build`: recipe → resolve → plan →
//! layers → assemble → publish. Each stage is a module; this file only wires
//! them together and turns their errors into CLI errors.

use crate::assemble::{self, NewLayer};
use crate::cache::{Cache, LayerRecord};
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::{self, PythonFacts};
use crate::layers::{self, app, bytecode, deps, sitepackages, tarball, Entry, Owner};
use crate::plan;
use crate::publish::{self, BlobReport, Publishable};
use crate::recipe::{Destination, Recipe};
use crate::registry::RegistryClient;
use crate::report::{BuildReport, LayerKind, PlatformReport, Timings};
use crate::resolve::{self, BaseImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
    pub log: crate::report::Log,
}

pub async fn build(client: &RegistryClient, opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let recipe = &opts.recipe;
    let cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let log = &opts.log;

    let t = Instant::now();
    let (bases, all_facts) = resolve_bases(
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
    let t = Instant::now();
    let app_layers = build_app_layers(opts, &cache, &all_facts[0], owner)?;
    timings.app = t.elapsed().as_secs_f64();

    let mut images = Vec::new();
    let mut platform_reports = Vec::new();
    let t = Instant::now();
    // source, revision and version from git; created and base.* come from assemble.
    let annotations = crate::provenance::for_build(recipe);
    for (base, facts) in bases.iter().zip(&all_facts) {
        let mut new_layers = build_site_packages_layers(opts, &cache, facts, owner)?;
        new_layers.extend(app_layers.iter().cloned());
        let image = assemble::assemble(
            base,
            &new_layers
                .iter()
                .map(|(l, _, _)| l.clone())
                .collect::<Vec<_>>(),
            &recipe.image,
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
        platform_reports.push(PlatformReport::new(&image, base, facts, &new_layers));
        images.push(image);
    }
    timings.site_packages = t.elapsed().as_secs_f64();
    let index = (images.len() > 1).then(|| assemble::index(&images, &annotations));
    let publishable = Publishable {
        images: images.iter().zip(&bases).collect(),
        index,
    };

    let t = Instant::now();
    let blobs = publish_to(
        client,
        &cache,
        &publishable,
        &opts.destination,
        &opts.tags,
        log,
    )
    .await?;
    timings.publish = t.elapsed().as_secs_f64();
    let missing_libraries = check_shared_libraries(&cache, &images, log);
    timings.total = started.elapsed().as_secs_f64();
    timings.compress_seconds = COMPRESS_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    timings.compress_bytes = COMPRESS_BYTES.load(Ordering::Relaxed);
    timings.peak_rss_kib = peak_rss_kib();
    let mut report = BuildReport {
        destination: describe(&opts.destination),
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
    log: &crate::report::Log,
) -> Vec<crate::sharedlibs::MissingLib> {
    let mut missing = Vec::new();
    for image in images {
        match crate::sharedlibs::check_build(cache, image) {
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

/// Resolves the recipe's base for each platform and learns its Python facts
/// (shared by `build` and `bundle`).
pub async fn resolve_bases(
    client: &RegistryClient,
    cache: &Cache,
    recipe: &Recipe,
    base_layout: Option<&Path>,
    mirrors: &BTreeMap<String, String>,
    log: &crate::report::Log,
) -> Result<(Vec<BaseImage>, Vec<PythonFacts>)> {
    log.step(&format!("resolving base `{}`", recipe.base));
    let bases = resolve::resolve(
        client,
        &recipe.base,
        base_layout,
        mirrors,
        &recipe.platforms,
    )
    .await
    .map_err(|e| {
        let hint = e.hint();
        let kind = if matches!(e, resolve::ResolveError::Registry(_)) {
            ErrorKind::Registry
        } else {
            ErrorKind::Input
        };
        Error::wrap(kind, e, hint)
    })?;
    let mut all_facts = Vec::new();
    for base in &bases {
        all_facts.push(base_facts(client, cache, base, recipe).await?);
    }
    Ok((bases, all_facts))
}

/// Facts for one platform's base: from the cache, else the config (+ a scan
/// of the base layers when the config alone can't tell), then checked
/// against what the recipe states.
pub async fn base_facts(
    client: &RegistryClient,
    cache: &Cache,
    base: &BaseImage,
    recipe: &Recipe,
) -> Result<PythonFacts> {
    let stated = &recipe.python.stated;
    let name = base.name.to_string();
    let scan = if facts::needs_scan(&base.config, stated) {
        match cache.facts::<facts::LayerScan>(&base.manifest_digest) {
            Some(scan) => Some(scan),
            None => {
                let mut files = Vec::new();
                for layer in &base.manifest.layers {
                    let path = resolve::fetch_blob(client, cache, &base.location, &layer.digest)
                        .await
                        .map_err(|e| {
                            let hint = e.hint();
                            Error::wrap(ErrorKind::Registry, e, hint)
                        })?;
                    files.push(path);
                }
                let scan = resolve::scan_layers(&files)
                    .map_err(io(format!("cannot read the layers of base `{name}`")))?;
                cache
                    .put_facts(&base.manifest_digest, &scan)
                    .map_err(io("cannot write to the cache"))?;
                Some(scan)
            }
        }
    } else {
        None
    };
    facts::detect(&name, &base.platform, &base.config, scan.as_ref(), stated).map_err(|e| {
        let hint = e.hint();
        Error::wrap(ErrorKind::Input, e, hint)
    })
}

/// The recipe's excludes plus slipway's own cache and output when they sit
/// inside the source tree, so a build never packs its own cache or last image.
fn excludes_with_outputs(opts: &BuildOptions, source_dir: &Path) -> Vec<String> {
    let mut excludes = opts.recipe.app.excludes.clone();
    let source = std::fs::canonicalize(source_dir).unwrap_or_else(|_| source_dir.to_path_buf());
    let output = match &opts.destination {
        Destination::OciLayout(dir) => Some(dir.clone()),
        Destination::DockerArchive(file) => Some(file.clone()),
        Destination::Push(_) => None,
    };
    for path in std::iter::once(opts.cache_dir.clone()).chain(output) {
        let absolute = if path.is_absolute() {
            path
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        let parent = absolute
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok());
        let resolved = parent
            .zip(absolute.file_name())
            .map(|(p, n)| p.join(n))
            .unwrap_or(absolute);
        if let Ok(inside) = resolved.strip_prefix(&source) {
            if let Some(inside) = inside.to_str().filter(|s| !s.is_empty()) {
                excludes.push(format!("/{inside}"));
            }
        }
    }
    excludes
}

/// (layer, kind, reused?)
type Built = (NewLayer, LayerKind, bool);

fn build_app_layers(
    opts: &BuildOptions,
    cache: &Cache,
    facts: &PythonFacts,
    owner: Owner,
) -> Result<Vec<Built>> {
    let recipe = &opts.recipe;
    let Some(source_dir) = &recipe.app.source else {
        return Ok(Vec::new());
    };
    let excludes = excludes_with_outputs(opts, source_dir);
    let entries = app::collect(&app::AppSource {
        source_dir,
        destination: &recipe.app.destination,
        excludes: &excludes,
        owner,
    })
    .map_err(|e| {
        let hint = e.hint(source_dir);
        Error::wrap(ErrorKind::Input, e, hint)
    })?;
    let key = plan::app_key(&entries, opts.epoch).map_err(io("cannot read the app's files"))?;
    let mut out = vec![cached_layer(
        cache,
        &key,
        &format!("slipway: app → {}", recipe.app.destination),
        LayerKind::App,
        opts,
        || Ok((entries.clone(), None)),
    )?];
    if recipe.app.bytecode {
        let sources = app::python_sources(&entries);
        let bkey = plan::bytecode_key(&key, &facts.version);
        out.push(cached_layer(
            cache,
            &bkey,
            "slipway: app bytecode",
            LayerKind::AppBytecode,
            opts,
            || {
                compile(opts, cache, facts, &sources, &entries, owner)
                    .map(|(dir, e)| (e, Some(dir)))
            },
        )?);
    }
    Ok(out)
}

fn build_site_packages_layers(
    opts: &BuildOptions,
    cache: &Cache,
    facts: &PythonFacts,
    owner: Owner,
) -> Result<Vec<Built>> {
    let py = &opts.recipe.python;
    if py.requirements.is_empty() && py.project.is_none() {
        return Ok(Vec::new());
    }
    let python_platform = facts.platform.uv_python_platform(&facts.libc);
    let scratch = cache
        .temp_dir("site-packages")
        .map_err(io("cannot create a temp dir in the cache"))?;
    let host_python = find_python(opts, facts)
        .ok()
        .unwrap_or_else(|| PathBuf::from("python3"));
    let pinned = match &opts.bundle {
        Some(bundle) => Some(bundle.pinned(&facts.platform).map_err(|e| {
            let hint = e.hint();
            Error::wrap(ErrorKind::Input, e, hint)
        })?),
        None => None,
    };
    let deps = deps::plan(&deps::Request {
        python: py,
        pinned: pinned.as_ref(),
        uv: &opts.uv,
        host_python: &host_python,
        scratch: scratch.path(),
    })
    .map_err(|e| {
        let hint = e.hint();
        let kind = match e {
            deps::DepsError::Read { .. } => ErrorKind::Input,
            deps::DepsError::Project(_) => ErrorKind::Dependencies,
        };
        Error::wrap(kind, e, hint)
    })?;
    let uv_version = uv_version(&opts.uv)?;
    let inputs = plan::SitePackagesInputs {
        uv_version: &uv_version,
        python_platform: &python_platform,
        facts,
        requirement_files: deps.key_files.clone(),
        index_url: deps.index_url.as_deref(),
        extra_index_urls: &deps.extra_index_urls,
        find_links: deps
            .find_links
            .iter()
            .map(|l| (l.clone(), plan::find_links_listing(l)))
            .collect(),
        offline: deps.offline,
        allow_sdist: py.allow_sdist,
        epoch: opts.epoch,
        owner,
    };
    let key = plan::site_packages_key(&inputs);
    let bkey = plan::bytecode_key(&key, &facts.version);
    let label = format!(
        "slipway: site-packages for {} ({python_platform})",
        facts.platform
    );
    let _lock = cache.lock(&key).map_err(io("cannot lock the cache"))?;
    if let (Some(layer), Some(bytecode)) = (
        cache.layer(&key),
        cache.layer(&bkey).filter(|_| py.bytecode),
    ) {
        opts.log.cache(&key, true);
        return Ok(vec![
            (
                NewLayer {
                    record: layer,
                    created_by: label,
                },
                LayerKind::SitePackages,
                true,
            ),
            (
                NewLayer {
                    record: bytecode,
                    created_by: "slipway: site-packages bytecode".into(),
                },
                LayerKind::SitePackagesBytecode,
                true,
            ),
        ]);
    }
    if !py.bytecode {
        if let Some(layer) = cache.layer(&key) {
            opts.log.cache(&key, true);
            return Ok(vec![(
                NewLayer {
                    record: layer,
                    created_by: label,
                },
                LayerKind::SitePackages,
                true,
            )]);
        }
    }
    opts.log.cache(&key, false);
    opts.log.step(&format!(
        "installing wheels for {python_platform}, Python {}",
        facts.version
    ));
    let staging = scratch.path().join("prefix");
    sitepackages::install(&sitepackages::UvInstall {
        uv: opts.uv.clone(),
        host_python,
        requirements: deps.requirements.clone(),
        require_hashes: deps.require_hashes,
        wheels: deps.wheels.clone(),
        python_platform: python_platform.clone(),
        python_version: facts.version.clone(),
        index_url: deps.index_url.clone(),
        extra_index_urls: deps.extra_index_urls.clone(),
        find_links: deps.find_links.clone(),
        offline: deps.offline,
        allow_sdist: py.allow_sdist,
        staging: staging.clone(),
    })
    .map_err(|e| {
        let hint = opts.bundle.as_ref().map(|b| b.missing_hint());
        Error::wrap(ErrorKind::Dependencies, e, hint)
    })?;
    let layout = sitepackages::PythonLayout {
        site_packages: facts.site_packages.clone(),
        bin_dir: facts.bin_dir.clone(),
        interpreter: facts.interpreter.clone(),
    };
    let entries = sitepackages::collect(&staging, &layout, owner)
        .map_err(|e| Error::wrap(ErrorKind::Dependencies, e, None))?;
    let entries = layers::normalise(entries, Owner::default());
    opts.log.step("writing the site-packages layer");
    let record = write_into_cache(cache, &key, &entries, opts.epoch)?;
    let mut out = vec![(
        NewLayer {
            record,
            created_by: label,
        },
        LayerKind::SitePackages,
        false,
    )];
    if py.bytecode {
        // Keyed by the `.py` files themselves, so platforms whose wheels ship
        // the same Python sources (most of them) share one bytecode layer:
        // compiled, compressed and pushed once. `bkey` becomes an alias.
        let sources = app::python_sources(&entries);
        let py_entries: Vec<Entry> = entries
            .iter()
            .filter(|e| e.path.ends_with(".py"))
            .cloned()
            .collect();
        let content_key = plan::bytecode_key(
            &plan::app_key(&py_entries, opts.epoch).map_err(io("cannot read site-packages"))?,
            &facts.version,
        );
        let (built, kind, reused) = cached_layer(
            cache,
            &content_key,
            "slipway: site-packages bytecode",
            LayerKind::SitePackagesBytecode,
            opts,
            || {
                opts.log.step("compiling site-packages bytecode");
                compile(opts, cache, facts, &sources, &entries, owner)
                    .map(|(dir, e)| (e, Some(dir)))
            },
        )?;
        cache
            .put_layer(&bkey, &built.record)
            .map_err(io("cannot write to the cache"))?;
        out.push((built, kind, reused));
    }
    Ok(out)
}

/// Reuses the layer for `key` from the cache or builds it from `entries()`.
fn cached_layer(
    cache: &Cache,
    key: &str,
    created_by: &str,
    kind: LayerKind,
    opts: &BuildOptions,
    entries: impl FnOnce() -> Result<(Vec<Entry>, Option<tempfile::TempDir>)>,
) -> Result<Built> {
    let _lock = cache.lock(key).map_err(io("cannot lock the cache"))?;
    let (record, reused) = match cache.layer(key) {
        Some(record) => (record, true),
        None => {
            opts.log.step(&format!(
                "building {}",
                created_by.trim_start_matches("slipway: ")
            ));
            // `_scratch` holds the entries' files until the layer is written.
            let (entries, _scratch) = entries()?;
            (write_into_cache(cache, key, &entries, opts.epoch)?, false)
        }
    };
    opts.log.cache(key, reused);
    Ok((
        NewLayer {
            record,
            created_by: created_by.to_string(),
        },
        kind,
        reused,
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

fn write_into_cache(
    cache: &Cache,
    key: &str,
    entries: &[Entry],
    epoch: u64,
) -> Result<LayerRecord> {
    let scratch = cache
        .temp_dir("layer")
        .map_err(io("cannot create a temp dir in the cache"))?;
    let started = Instant::now();
    let blob = tarball::write_layer(entries, epoch, &scratch.path().join("layer.tar.gz"))
        .map_err(io(format!("cannot write layer `{key}`")))?;
    COMPRESS_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    COMPRESS_BYTES.fetch_add(blob.uncompressed_size, Ordering::Relaxed);
    cache
        .insert_blob(&blob.path, &blob.digest)
        .map_err(io("cannot write to the cache"))?;
    let record = LayerRecord {
        digest: blob.digest,
        diff_id: blob.diff_id,
        size: blob.size,
        uncompressed_size: blob.uncompressed_size,
    };
    cache
        .put_layer(key, &record)
        .map_err(io("cannot write to the cache"))?;
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
        .map_err(io("cannot create a temp dir in the cache"))?;
    let entries = bytecode::compile(&python, sources, scratch.path(), owner)
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))?;
    Ok((scratch, layers::normalise_over(entries, lower)))
}

fn find_python(opts: &BuildOptions, facts: &PythonFacts) -> Result<PathBuf> {
    bytecode::find_python(&facts.version, opts.python.as_deref())
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))
}

fn uv_version(uv: &Path) -> Result<String> {
    let out = std::process::Command::new(uv)
        .arg("--version")
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Input,
                format!("cannot run uv (`{}`): {e}", uv.display()),
            )
            .with_hint("install uv (`pip install uv`) or point `--uv` / `SLIPWAY_UV` at it")
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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

async fn publish_to(
    client: &RegistryClient,
    cache: &Cache,
    image: &Publishable<'_>,
    dest: &Destination,
    tags: &[crate::reference::Reference],
    log: &crate::report::Log,
) -> Result<Vec<BlobReport>> {
    if !matches!(dest, Destination::Push(_)) {
        // Layouts and archives hold every blob: bring base layers into the cache.
        for (img, base) in &image.images {
            for layer in &img.layers[..img.new_from] {
                resolve::fetch_blob(client, cache, &base.location, &layer.digest)
                    .await
                    .map_err(|e| {
                        let hint = e.hint();
                        Error::wrap(ErrorKind::Registry, e, hint)
                    })?;
            }
        }
    }
    let local = |d: &crate::digest::Digest| cache.blob_path(d);
    match dest {
        Destination::Push(reference) => {
            log.step(&format!("pushing to `{reference}`"));
            publish::registry::push(client, cache, image, reference)
                .await
                .map_err(|e| {
                    let hint = e.hint();
                    Error::wrap(ErrorKind::Registry, e, hint)
                })
        }
        Destination::OciLayout(dir) => {
            log.step(&format!("writing OCI layout `{}`", dir.display()));
            publish::layout::write(image, dir, "latest", &local)
                .map_err(io(format!("cannot write OCI layout `{}`", dir.display())))
        }
        Destination::DockerArchive(file) => {
            log.step(&format!("writing docker archive `{}`", file.display()));
            let scratch = cache
                .temp_dir("archive")
                .map_err(io("cannot create a temp dir in the cache"))?;
            publish::archive::write(image, file, tags, scratch.path(), &local).map_err(|e| {
                let hint = e.hint();
                Error::wrap(ErrorKind::Other, e, hint)
            })
        }
    }
}

fn describe(dest: &Destination) -> String {
    match dest {
        Destination::Push(r) => r.to_string(),
        Destination::OciLayout(d) => format!("oci:{}", d.display()),
        Destination::DockerArchive(f) => format!("docker-archive:{}", f.display()),
    }
}
