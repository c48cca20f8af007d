//! The layers below the app's: site-packages (third-party dependencies),
//! the project layer (the project's own wheels) and their bytecode.

use super::layer_cache::{
    cached_layer, compile, compile_ahead, compile_wheels, find_python, omitted, uv_version,
    write_into_cache, Built, Omitted,
};
use super::options::LayerOptions;
use super::outcome::NewLayer;
use super::outcome::{LayerKind, LayerSource};
use super::plan;
use super::store::LayerStore;
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::project::{normalise_name, ProjectError};
use crate::layers::resolution::{self, HeldBack};
use crate::layers::{
    self, app, bytecode, deflated, deps, local_wheels, sitepackages, tarball, Entry, Owner,
};
use std::path::{Path, PathBuf};

/// A CPython for uv to run (any will do when none of the base's minor is found).
fn host_python(opts: &LayerOptions, facts: &PythonFacts) -> PathBuf {
    find_python(opts, facts)
        .ok()
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// What the site-packages and project layers of one platform share.
struct Target<'a> {
    facts: &'a PythonFacts,
    owner: Owner,
    python_platform: String,
    /// Found on first use: probing an interpreter costs a process start,
    /// and only planning a project or an install (a cache miss) needs one.
    host_python: std::sync::OnceLock<PathBuf>,
    uv_version: String,
    scratch: &'a Path,
    /// The index URLs without credentials: a rotated password keeps the layers.
    index_url: Option<String>,
    extra_index_urls: Vec<String>,
}

impl Target<'_> {
    /// What the layer of an install into `staging` is checked for as it is
    /// packed: no file may still name the staging dir.
    fn checks(&self, staging: &str) -> tarball::Checks {
        tarball::Checks {
            host_paths: sitepackages::host_paths(&self.scratch.join(staging)),
            ..Default::default()
        }
    }

    fn host_python(&self, opts: &LayerOptions) -> &Path {
        self.host_python
            .get_or_init(|| host_python(opts, self.facts))
    }

    fn install(
        &self,
        opts: &LayerOptions,
        cache: &LayerStore,
        spec: InstallSpec,
    ) -> Result<Vec<Entry>> {
        let staging = self.scratch.join(spec.staging);
        sitepackages::install(&sitepackages::UvInstall {
            uv: opts.uv.to_path_buf(),
            host_python: self.host_python(opts).to_path_buf(),
            requirements: spec.deps.requirements.clone(),
            require_hashes: spec.deps.require_hashes,
            wheels: spec.wheels,
            python_platform: self.python_platform.clone(),
            python_version: self.facts.version.clone(),
            index_url: spec.deps.index_url.clone(),
            extra_index_urls: spec.deps.extra_index_urls.clone(),
            find_links: spec.deps.find_links.clone(),
            offline: spec.deps.offline,
            allow_sdist: opts.recipe.python.allow_sdist,
            staging: staging.clone(),
        })
        .map_err(|e| {
            let hint = opts.pinned.map(|b| b.missing_hint());
            Error::wrap(ErrorKind::Dependencies, e, hint)
        })?;
        let layout = sitepackages::PythonLayout {
            site_packages: self.facts.site_packages.clone(),
            bin_dir: self.facts.bin_dir.clone(),
            interpreter: self.facts.interpreter.clone(),
        };
        let entries = sitepackages::collect(&staging, &layout, self.owner)
            .map_err(|e| Error::wrap(ErrorKind::Dependencies, e, None))?;
        let replaced = sitepackages::interpreter_files(&staging, &layout, &entries)
            .map_err(|e| Error::wrap(ErrorKind::Dependencies, e, None))?;
        warn_interpreter_files(&replaced);
        // Kept with the layer's key so a build that reuses the layer warns
        // too (shared through the cache repo only when there is something to say).
        let key = interpreter_files_key(spec.key);
        let _ = if replaced.is_empty() {
            cache.put_facts(&key, &replaced)
        } else {
            cache.share_facts(&key, &replaced)
        };
        Ok(layers::normalise(entries, Owner::default()))
    }

    /// The inputs of a layer installed from `files` (requirements or wheels).
    fn inputs<'a>(
        &'a self,
        opts: &LayerOptions,
        cache: &LayerStore,
        deps: &'a deps::Dependencies,
        files: Vec<(String, crate::digest::Digest)>,
    ) -> Result<plan::SitePackagesInputs<'a>> {
        let find_links = deps
            .find_links
            .iter()
            .map(|l| {
                Ok((
                    l.clone(),
                    plan::find_links_listing(l, |f| cache.file_digest(f))?,
                ))
            })
            .collect::<std::io::Result<_>>()
            .map_err(io("cannot read the find-links dir"))?;
        Ok(plan::SitePackagesInputs {
            uv_version: &self.uv_version,
            python_platform: &self.python_platform,
            facts: self.facts,
            requirement_files: files,
            index_url: self.index_url.as_deref(),
            extra_index_urls: &self.extra_index_urls,
            find_links,
            offline: deps.offline,
            allow_sdist: opts.recipe.python.allow_sdist,
            reuse_wheel_compression: opts.recipe.python.reuse_wheel_compression,
            epoch: opts.epoch,
            owner: self.owner,
        })
    }
}

/// The staging dirs (in the build's scratch dir) uv installs into.
const SITE_PACKAGES_STAGING: &str = "prefix";
const PROJECT_STAGING: &str = "project-prefix";

struct InstallSpec<'a> {
    /// The layer's cache key.
    key: &'a str,
    deps: &'a deps::Dependencies,
    wheels: Vec<PathBuf>,
    staging: &'static str,
}

/// The new layers below the app's, what was left out, what the wheel-only
/// resolution held back, and the hash-pinned requirements (as `uv export`
/// or the bundle wrote them) that say which wheel each dist came from.
pub type PythonLayers = (Vec<Built>, Omitted, Vec<HeldBack>, Vec<String>);

/// Where the interpreter files a layer's wheels install are remembered.
fn interpreter_files_key(layer_key: &str) -> crate::digest::Digest {
    crate::digest::Digest::of(format!("interpreter-files\n{layer_key}").as_bytes())
}

/// What a reused layer's install warned about, said again.
fn warn_cached_interpreter_files(cache: &LayerStore, layer_key: &str, source: LayerSource) {
    let key = interpreter_files_key(layer_key);
    let replaced: Option<Vec<sitepackages::InterpreterFile>> = match source {
        LayerSource::CacheRepo => cache.shared_facts(&key),
        _ => cache.facts(&key),
    };
    if let Some(replaced) = replaced {
        warn_interpreter_files(&replaced);
    }
}

fn warn_interpreter_files(replaced: &[sitepackages::InterpreterFile]) {
    for file in replaced {
        let by = file.dist.as_deref().map_or_else(
            || "a wheel".to_string(),
            |d| format!("`{}`", crate::sanitize::escape(d)),
        );
        eprintln!(
            "warning: {by} installs `/{}` in the interpreter's own directories (from its `.data` dir): \
             it replaces or shadows the base's Python file of that name; check that the wheel is what you meant to install",
            crate::sanitize::escape(&file.path)
        );
    }
}

/// An index URL without its user info.
fn bare(url: &str) -> String {
    crate::layers::uv::IndexUrl::parse(url).url
}

pub fn build_python_layers(
    opts: &LayerOptions,
    cache: &LayerStore,
    facts: &PythonFacts,
    owner: Owner,
) -> Result<PythonLayers> {
    let py = &opts.recipe.python;
    if py.requirements.is_empty() && py.project.is_none() {
        return Ok(Default::default());
    }
    let scratch = cache
        .temp_dir("site-packages")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    let host_python_found = std::sync::OnceLock::new();
    let planning_python = match py.project {
        Some(_) => host_python_found
            .get_or_init(|| host_python(opts, facts))
            .clone(),
        None => PathBuf::from("python3"), // not run: requirements need no planning
    };
    let pinned = match opts.pinned {
        Some(wheels) => Some(wheels.pinned(&facts.platform)?),
        None => None,
    };
    let deps = deps::plan(&deps::Request {
        python: py,
        pinned: pinned.as_ref(),
        uv: opts.uv,
        host_python: &planning_python,
        python_version: &facts.version,
        scratch: scratch.path(),
    })
    .map_err(|e| {
        let kind = match e {
            deps::DepsError::Read { .. }
            | deps::DepsError::Project(
                ProjectError::NoMember { .. } | ProjectError::VirtualRoot { .. },
            ) => ErrorKind::Input,
            deps::DepsError::Project(_) => ErrorKind::Dependencies,
        };
        Error::hinted(kind)(e)
    })?;
    let pins = deps
        .requirements
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .collect();
    let target = Target {
        facts,
        owner,
        python_platform: facts.platform.uv_python_platform(&facts.libc),
        host_python: host_python_found,
        uv_version: uv_version(opts.uv, cache)?,
        scratch: scratch.path(),
        index_url: deps.index_url.as_deref().map(bare),
        extra_index_urls: deps.extra_index_urls.iter().map(|u| bare(u)).collect(),
    };
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    let mut held = Vec::new();
    if deps.requirements.is_empty() {
        left_out.push(omitted(
            LayerKind::SitePackages,
            "the project has no third-party dependencies",
        ));
    } else {
        // Keyed once: the key reads (and hashes) every find-links wheel.
        let key =
            plan::site_packages_key(&target.inputs(opts, cache, &deps, deps.key_files.clone())?);
        // The hold-back check (two `uv pip compile` runs, ~0.2 CPU-s on a
        // cold build) only warns: it runs beside the install, not before it.
        // When every requirement is an exact pin it waits: a pinned version
        // can't be held back, so only an install that brought in a package
        // no line pins needs it (and then it runs after).
        let pinned = exact_pins(&deps.requirements);
        let (layers, beside) = std::thread::scope(|scope| {
            let check = pinned
                .is_none()
                .then(|| scope.spawn(|| held_back(opts, cache, &target, &deps, &key)));
            let layers = site_packages_layers(opts, cache, &target, &deps, key.clone());
            let beside = check.map(|check| check.join().expect("the hold-back check thread"));
            (layers, beside)
        });
        let (layers, installed) = layers?;
        held = match (beside, pinned, installed) {
            (Some(held), _, _) => held,
            (None, Some(pinned), Some(installed)) if installed.is_subset(&pinned) => {
                // Remembered as a check's answer is: a rebuild that reuses
                // the layer (or a runner sharing the cache repo) asks no one.
                let _ = cache.share_facts(&held_back_key(&key), &Vec::<HeldBack>::new());
                Vec::new()
            }
            _ => held_back(opts, cache, &target, &deps, &key),
        };
        out.extend(layers);
    }
    if !deps.wheels.is_empty() {
        out.extend(project_layers(opts, cache, &target, &deps)?);
    }
    Ok((out, left_out, held, pins))
}

/// The names the requirement files pin (normalised), when every one of
/// their requirements is a `name==version` line; None otherwise.
fn exact_pins(files: &[PathBuf]) -> Option<std::collections::BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    for file in files {
        let pins = deps::exact_pins(&std::fs::read_to_string(file).ok()?)?;
        names.extend(pins.iter().map(|p| normalise_name(&p.name)));
    }
    Some(names)
}

/// The distributions an install put in site-packages (normalised names).
fn installed_dists(entries: &[Entry], site_packages: &str) -> std::collections::BTreeSet<String> {
    let site = site_packages.trim_matches('/');
    entries
        .iter()
        .filter_map(|e| e.path.strip_prefix(site)?.strip_prefix('/'))
        .filter_map(|below| below.split('/').next()?.strip_suffix(".dist-info"))
        .filter_map(|dir| dir.split('-').next())
        .map(normalise_name)
        .collect()
}

/// With wheels only and unpinned requirements: the packages held below what
/// sdists would give (two `uv pip compile` runs, ~1 s; remembered per
/// resolution input so a cached build still warns without paying again).
fn held_back(
    opts: &LayerOptions,
    cache: &LayerStore,
    target: &Target,
    deps: &deps::Dependencies,
    site_packages_key: &str,
) -> Vec<HeldBack> {
    if opts.recipe.python.allow_sdist || deps.require_hashes || deps.requirements.is_empty() {
        return Vec::new();
    }
    let key = held_back_key(site_packages_key);
    if let Some(held) = cache.shared_facts::<Vec<HeldBack>>(&key) {
        return held;
    }
    opts.log
        .step("checking what wheels-only resolution holds back");
    let held = resolution::held_back(&resolution::Compile {
        uv: opts.uv,
        host_python: target.host_python(opts),
        requirements: &deps.requirements,
        python_platform: &target.python_platform,
        python_version: &target.facts.version,
        index_url: deps.index_url.as_deref(),
        extra_index_urls: &deps.extra_index_urls,
        find_links: &deps.find_links,
        offline: deps.offline,
    });
    let _ = cache.share_facts(&key, &held);
    held
}

/// Where the hold-back check's answer for a site-packages key is remembered.
fn held_back_key(site_packages_key: &str) -> crate::digest::Digest {
    crate::digest::Digest::of(site_packages_key.as_bytes())
}

fn site_packages_layers(
    opts: &LayerOptions,
    cache: &LayerStore,
    target: &Target,
    deps: &deps::Dependencies,
    key: String,
) -> Result<(Vec<Built>, Option<std::collections::BTreeSet<String>>)> {
    let py = &opts.recipe.python;
    let facts = target.facts;
    let python_platform = &target.python_platform;
    let bkey = plan::site_packages_bytecode_key(&key, &facts.version, py.tests_bytecode);
    let label = format!(
        "slipway: site-packages for {} ({python_platform})",
        facts.platform
    );
    let _lock = cache
        .lock(&key)
        .map_err(io(cache.context("cannot lock the cache")))?;
    if let Some(reused) = reuse_site_packages(opts, cache, (&key, &bkey), &label) {
        return Ok((reused, None));
    }
    opts.log.cache(&key, false);
    opts.log.step(&format!(
        "installing wheels for {python_platform}, Python {}",
        facts.version
    ));
    // While uv installs, the wheels it will most likely install are
    // compiled into the per-wheel store. Once it is done they start no new
    // wheel; the bytecode layer waits for the wheels they started (it would
    // compile the same files), finds them there and compiles the rest, while
    // the site-packages layer is compressed at once.
    let installed = std::sync::atomic::AtomicBool::new(false);
    // What both read ahead of and beside the install.
    let local_wheels = if py.bytecode || py.reuse_wheel_compression {
        local_wheels::pinned(
            &deps.requirements,
            &deps.find_links,
            python_platform,
            &facts.version,
        )
    } else {
        Vec::new()
    };
    let (entries, record, bytecode) = std::thread::scope(|scope| -> Result<_> {
        let ahead = scope.spawn(|| {
            py.bytecode
                .then(|| compile_ahead(opts, cache, facts, &local_wheels, &installed))
        });
        // `reuse_wheel_compression`: big files of local wheels (a
        // find-links dir, a bundle) go into the layer as the wheels' own
        // deflate streams. Opt-in: an index leaves no wheel file to take
        // streams from, so the same pins from an index would give the
        // same files with other gzip bytes, another digest.
        let deflated = py
            .reuse_wheel_compression
            .then(|| scope.spawn(|| deflated::list(&local_wheels, &facts.site_packages)));
        let entries = target.install(
            opts,
            cache,
            InstallSpec {
                key: &key,
                deps,
                wheels: Vec::new(),
                staging: SITE_PACKAGES_STAGING,
            },
        );
        installed.store(true, std::sync::atomic::Ordering::Relaxed);
        let entries = entries?;
        opts.log.step("writing the site-packages layer");
        let (record, bytecode) = std::thread::scope(|inner| {
            let bytecode = inner.spawn(|| {
                ahead.join().expect("the ahead-of-install bytecode thread");
                py.bytecode
                    .then(|| {
                        site_packages_bytecode(opts, cache, facts, &entries, target.owner, &bkey)
                    })
                    .transpose()
            });
            let checks = tarball::Checks {
                deflated: std::sync::Arc::new(match deflated {
                    Some(listing) => deflated::installed(
                        listing.join().expect("the wheel listing thread"),
                        &entries,
                    ),
                    None => Default::default(),
                }),
                ..target.checks(SITE_PACKAGES_STAGING)
            };
            let record = write_into_cache(cache, &key, &entries, opts.epoch, &checks);
            if let Ok(record) = &record {
                // For the SBOM, which otherwise decompresses the whole layer
                // to find them (~0.6 s on the big set); best effort.
                if let Ok(infos) = sitepackages::dist_infos(&entries) {
                    let _ = cache.share_facts(&sitepackages::dist_info_key(&record.digest), &infos);
                }
            }
            (record, bytecode.join().expect("the bytecode thread"))
        });
        Ok((entries, record, bytecode))
    })?;
    let dists = installed_dists(&entries, &facts.site_packages);
    let mut out = vec![(
        NewLayer {
            record: record?,
            created_by: label,
        },
        LayerKind::SitePackages,
        LayerSource::Built,
    )];
    out.extend(bytecode?);
    Ok((out, Some(dists)))
}

/// The cached site-packages layer and its bytecode layer, when both are
/// there: reused only together, since building one installs and the
/// install gives both.
fn reuse_site_packages(
    opts: &LayerOptions,
    cache: &LayerStore,
    (key, bkey): (&str, &str),
    label: &str,
) -> Option<Vec<Built>> {
    // Looked up together: from a cache repo each is a manifest and a blob
    // (checked as it is pulled), and the two are written together.
    let (found, bytecode) = std::thread::scope(|scope| {
        let bytecode = opts
            .recipe
            .python
            .bytecode
            .then(|| scope.spawn(|| cache.find(bkey)));
        let found = cache.find(key);
        (
            found,
            bytecode.map(|b| b.join().expect("the bytecode lookup")),
        )
    });
    let (layer, source) = found?;
    let bytecode = match bytecode {
        Some(found) => Some(found?),
        None => None,
    };
    if source == LayerSource::CacheRepo {
        // Kept locally for the SBOM, which then reads the dist-info dirs
        // from them instead of decompressing the layer.
        let _ = cache.shared_facts::<Vec<sitepackages::DistInfo>>(&sitepackages::dist_info_key(
            &layer.digest,
        ));
    }
    opts.log.cache(key, true);
    warn_cached_interpreter_files(cache, key, source);
    let mut out = vec![(
        NewLayer {
            record: layer,
            created_by: label.to_string(),
        },
        LayerKind::SitePackages,
        source,
    )];
    out.extend(bytecode.map(|(record, source)| {
        (
            NewLayer {
                record,
                created_by: "slipway: site-packages bytecode".into(),
            },
            LayerKind::SitePackagesBytecode,
            source,
        )
    }));
    Some(out)
}

/// The site-packages bytecode layer, keyed by the `.py` files themselves, so
/// platforms whose wheels ship the same Python sources (most of them) share
/// one bytecode layer: compiled, compressed and pushed once. `bkey` (the
/// site-packages inputs' key) becomes an alias.
pub fn site_packages_bytecode(
    opts: &LayerOptions,
    cache: &LayerStore,
    facts: &PythonFacts,
    entries: &[Entry],
    owner: Owner,
    bkey: &str,
) -> Result<Built> {
    // What is compiled: without `tests_bytecode`, the entries less the
    // sources in packages' test dirs (the key and the compile both see this).
    let test_source = |e: &Entry| {
        e.path.ends_with(".py") && bytecode::wheels::in_tests_dir(&e.path, &facts.site_packages)
    };
    let keep_all = opts.recipe.python.tests_bytecode || !entries.iter().any(test_source);
    let compiled_from: std::borrow::Cow<[Entry]> = if keep_all {
        entries.into()
    } else {
        let kept: Vec<Entry> = entries
            .iter()
            .filter(|e| !test_source(e))
            .cloned()
            .collect();
        kept.into()
    };
    let left_out = entries.len() - compiled_from.len();
    if left_out > 0 {
        opts.log.step(&format!(
            "no bytecode for {left_out} files in packages' test dirs (`[python] tests_bytecode = true` compiles them)"
        ));
    }
    let py_entries: Vec<Entry> = compiled_from
        .iter()
        .filter(|e| e.path.ends_with(".py"))
        .cloned()
        .collect();
    let py_digests = plan::file_digests(&py_entries).map_err(io("cannot read site-packages"))?;
    let content_key = plan::bytecode_key(
        &plan::app_key(&py_entries, &py_digests, opts.epoch),
        &facts.version,
    );
    let built = cached_layer(
        cache,
        &content_key,
        "slipway: site-packages bytecode",
        LayerKind::SitePackagesBytecode,
        opts,
        || {
            opts.log.step("compiling site-packages bytecode");
            compile_wheels(opts, cache, facts, &compiled_from, owner)
                .map(|e| (e, None, Default::default()))
        },
    )?;
    cache
        .remember(bkey, &built.0.record)
        .map_err(io(cache.context("cannot write to the cache")))?;
    Ok(built)
}

/// The project's own wheel and its workspace members' wheels, installed
/// without dependencies, and their bytecode: keyed by the wheels alone, so
/// a code edit rebuilds these two small layers and nothing else.
fn project_layers(
    opts: &LayerOptions,
    cache: &LayerStore,
    target: &Target,
    deps: &deps::Dependencies,
) -> Result<Vec<Built>> {
    let facts = target.facts;
    let local = deps::Dependencies {
        offline: true,
        ..deps::Dependencies::default()
    };
    let key =
        plan::project_key(&target.inputs(opts, cache, &local, deps.wheel_key_files.clone())?);
    let bkey = plan::bytecode_key(&key, &facts.version);
    let bytecode = opts.recipe.python.bytecode;
    let found = cache.find(&key).map(|(_, source)| source);
    let cached = found.is_some() && (!bytecode || cache.find(&bkey).is_some());
    let entries = if let (true, Some(source)) = (cached, found) {
        warn_cached_interpreter_files(cache, &key, source);
        Vec::new()
    } else {
        opts.log.step("installing the project's wheel");
        target.install(
            opts,
            cache,
            InstallSpec {
                key: &key,
                deps: &local,
                wheels: deps.wheels.clone(),
                staging: PROJECT_STAGING,
            },
        )?
    };
    let label = format!(
        "slipway: project for {} ({})",
        facts.platform, target.python_platform
    );
    let mut out = vec![cached_layer(
        cache,
        &key,
        &label,
        LayerKind::Project,
        opts,
        || Ok((entries.clone(), None, target.checks(PROJECT_STAGING))),
    )?];
    if bytecode {
        let sources = app::python_sources(&entries);
        out.push(cached_layer(
            cache,
            &bkey,
            "slipway: project bytecode",
            LayerKind::ProjectBytecode,
            opts,
            || {
                compile(
                    opts,
                    cache,
                    facts,
                    &sources,
                    &bytecode::read_file,
                    &entries,
                    target.owner,
                )
                .map(|(dir, e)| (e, Some(dir), Default::default()))
            },
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{exact_pins, installed_dists};
    use crate::layers::{Entry, EntryKind};

    #[test]
    fn only_requirements_that_are_all_exact_pins_skip_the_hold_back_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let pinned = file(
            "pinned.txt",
            "# generated\nPydantic_Core==2.50.4 \\\n    --hash=sha256:00\nidna==3.20 ; python_version >= '3.8'\n",
        );
        let names = exact_pins(std::slice::from_ref(&pinned)).expect("all pinned");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["idna", "pydantic-core"]
        );
        for loose in [
            "idna>=3\n",
            "idna==3.*\n",
            "idna\n",
            "-r other.txt\nidna==3.20\n",
            "idna===3.20\n",
        ] {
            let loose = file("loose.txt", loose);
            assert!(exact_pins(&[pinned.clone(), loose]).is_none());
        }
        assert!(exact_pins(&[dir.path().join("missing.txt")]).is_none());
    }

    #[test]
    fn installed_dists_are_named_by_their_dist_info_dirs() {
        let site = "/usr/local/lib/python3.13/site-packages";
        let entry = |path: &str| Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            owner: Default::default(),
        };
        let entries = [
            entry("usr/local/lib/python3.13/site-packages/pydantic_core-2.50.4.dist-info"),
            entry("usr/local/lib/python3.13/site-packages/pydantic_core-2.50.4.dist-info/RECORD"),
            entry("usr/local/lib/python3.13/site-packages/idna"),
            entry("usr/local/lib/python3.13/site-packages/Idna-3.20.dist-info/METADATA"),
            entry("usr/local/bin/uvicorn"),
        ];
        assert_eq!(
            installed_dists(&entries, site)
                .into_iter()
                .collect::<Vec<_>>(),
            ["idna", "pydantic-core"]
        );
    }
}
