//! `slipway bundle`, the connected side: resolve the base and the wheels
//! for every platform of the recipe and write them into the bundle dir
//! (or tar), keeping what is already there and matches.

use super::base::{self, BaseCounts};
use super::staging::{self, Staging};
use super::wheels::{self, Compile, Pin};
use super::{
    platform_slug, recipe_inputs, BaseRecord, InputRecord, Manifest, PlatformRecord, WheelRecord,
    BUILD_REQUIREMENTS, FORMAT, MANIFEST_FILE,
};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{io, Error, ErrorKind, Result};
use crate::layers::{bytecode, project};
use crate::progress::Log;
use crate::recipe::Recipe;
use crate::registry::RegistryClient;
use crate::resolve;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Wheels downloaded at once.
const PARALLEL_FETCHES: usize = 4;

pub struct MakeOptions {
    pub recipe: Recipe,
    /// A dir, or a `.tar` file.
    pub out: PathBuf,
    pub cache_dir: PathBuf,
    pub mirrors: BTreeMap<String, String>,
    /// Read the base from this OCI layout instead of a registry.
    pub base_layout: Option<PathBuf>,
    /// A CPython of the base's minor version (runs uv's resolver).
    pub python: Option<PathBuf>,
    pub uv: PathBuf,
    /// For wheel downloads.
    pub timeout: Duration,
    pub log: Log,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MakeReport {
    pub out: String,
    pub base: String,
    pub base_digest: Digest,
    pub platforms: Vec<String>,
    pub base_blobs: BaseCounts,
    pub wheels: usize,
    pub wheels_fetched: usize,
    pub bytes_fetched: u64,
    pub files: usize,
}

impl MakeReport {
    pub fn summary(&self) -> String {
        format!(
            "bundle {}\n  base     {}@{} ({})\n  blobs    {} ({} copied, {} kept)\n  wheels   {} ({} fetched, {} kept, {} bytes)\n  files    {}\n",
            self.out,
            self.base,
            self.base_digest,
            self.platforms.join(", "),
            self.base_blobs.wanted.len(),
            self.base_blobs.copied,
            self.base_blobs.kept,
            self.wheels,
            self.wheels_fetched,
            self.wheels - self.wheels_fetched,
            self.bytes_fetched,
            self.files,
        )
    }
}

/// Every wheel the bundle holds: file name → (pin, the platforms using it).
type AllPins = BTreeMap<String, (Pin, Vec<String>)>;

/// The pins of every platform and of the build backend, with what they
/// wrote into the bundle.
#[derive(Default)]
struct Pinned {
    all: AllPins,
    platforms: Vec<PlatformRecord>,
    /// File names under `requirements/` this run wrote.
    requirements: BTreeSet<String>,
    build_requirements: Option<String>,
    /// The recipe's requirements files or project lock, hashed.
    inputs: Vec<InputRecord>,
}

pub async fn make(client: &RegistryClient, opts: &MakeOptions) -> Result<MakeReport> {
    let cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let staging = Staging::open(&cache, &opts.out)?;
    let work = staging.work_dir(&opts.out);

    let (bases, all_facts) = crate::resolve::resolve_bases(
        client,
        &cache,
        &opts.recipe,
        opts.base_layout.as_deref(),
        &opts.mirrors,
        &opts.log,
    )
    .await?;
    opts.log.step("copying the base into the bundle");
    let counts = base::write(&cache, &bases, &work.join("base"))
        .await
        .map_err(|e| {
            let kind = match &e {
                base::BaseError::Io(e) if crate::publish::BlobError::of(e).is_some() => {
                    return crate::publish::blob_failure(e)
                }
                base::BaseError::Source(e) => e.kind(),
                base::BaseError::Resolve(resolve::ResolveError::Registry(_)) => ErrorKind::Registry,
                _ => ErrorKind::Other,
            };
            Error::hinted(kind)(e)
        })?;

    let scratch = cache
        .temp_dir("bundle")
        .map_err(io("cannot create a temp dir in the cache"))?;
    let pinned = pin_everything(opts, &bases, &all_facts, scratch.path(), work)?;
    let fetched = fetch_wheels(opts, &pinned.all, &work.join("wheels")).await?;

    staging::prune(&work.join("wheels"), &pinned.all.keys().cloned().collect())?;
    staging::prune(&work.join("requirements"), &pinned.requirements)?;
    staging::prune(&work.join("base/blobs/sha256"), &counts.wanted)?;

    let manifest = manifest_of(opts, &bases[0], &counts, pinned, work)?;
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    staging::write_file(work, MANIFEST_FILE, &json)?;
    staging.finish(&opts.out, &opts.log)?;
    Ok(MakeReport {
        out: opts.out.display().to_string(),
        base: manifest.base.reference.clone(),
        base_digest: manifest.base.digest.clone(),
        platforms: manifest
            .base
            .platforms
            .iter()
            .map(|p| p.platform.clone())
            .collect(),
        wheels: manifest.wheels.len(),
        wheels_fetched: fetched.iter().filter(|b| **b > 0).count(),
        bytes_fetched: fetched.iter().sum(),
        files: manifest.files.len() + 1,
        base_blobs: counts,
    })
}

/// Resolves the wheels of every platform (and the project's build backend
/// for the host), writing each set's hash-pinned requirements file.
fn pin_everything(
    opts: &MakeOptions,
    bases: &[resolve::BaseImage],
    all_facts: &[crate::facts::PythonFacts],
    scratch: &Path,
    work: &Path,
) -> Result<Pinned> {
    let python = host_python(opts, &all_facts[0].version);
    let deps = DependencySources::new(
        &opts.recipe,
        &opts.uv,
        (&python, &all_facts[0].version),
        scratch,
    )?;
    let mut pinned = Pinned::default();
    for (base, facts) in bases.iter().zip(all_facts) {
        let platform = base.image.platform.to_string();
        let python_platform = facts.platform.uv_python_platform(&facts.libc);
        let requirements = if deps.inputs.is_empty() {
            None
        } else {
            opts.log.step(&format!(
                "resolving wheels for {python_platform}, Python {}",
                facts.version
            ));
            let slug = platform_slug(&platform);
            let python = host_python(opts, &facts.version);
            let target = (facts.version.as_str(), Some(python_platform.as_str()));
            let pins = compile(opts, &deps.inputs, &python, target, scratch, &slug)?;
            deps.check_locked(&pins, &platform)?;
            let rel = format!("requirements/{slug}.txt");
            let header = format!(
                "slipway bundle: {platform} ({python_platform}, Python {}); install with --require-hashes",
                facts.version
            );
            let text = wheels::requirements_text(&header, &pins);
            staging::write_file(work, &rel, text.as_bytes())?;
            add_pins(&mut pinned.all, pins, &platform)?;
            pinned.requirements.insert(format!("{slug}.txt"));
            Some(rel)
        };
        pinned.platforms.push(PlatformRecord {
            platform,
            manifest: base.image.manifest_digest.clone(),
            python_version: facts.version.clone(),
            libc: facts.libc.to_string(),
            python_platform,
            requirements,
        });
    }
    if let Some(p) = deps.project.as_ref().filter(|p| p.needs_build_env()) {
        opts.log
            .step("resolving the project's build backend for the host");
        let input = scratch.join("build-requires.txt");
        std::fs::write(&input, p.build_requires.join("\n") + "\n")
            .map_err(io("cannot write to the cache"))?;
        let version = &all_facts[0].version;
        let python = host_python(opts, version);
        let pins = compile(opts, &[input], &python, (version, None), scratch, "build")?;
        let text = wheels::requirements_text(
            "slipway bundle: the project's build requirements (host); --build-constraints with --require-hashes",
            &pins,
        );
        staging::write_file(work, BUILD_REQUIREMENTS, text.as_bytes())?;
        add_pins(&mut pinned.all, pins, "build")?;
        pinned.requirements.insert("build.txt".to_string());
        pinned.build_requirements = Some(BUILD_REQUIREMENTS.to_string());
    }
    pinned.inputs = deps.records;
    Ok(pinned)
}

/// Downloads every pinned wheel not already in `wheel_dir` (hash-checked);
/// the bytes fetched per wheel, 0 for those kept.
async fn fetch_wheels(opts: &MakeOptions, all: &AllPins, wheel_dir: &Path) -> Result<Vec<u64>> {
    std::fs::create_dir_all(wheel_dir).map_err(io("cannot create the wheel dir"))?;
    opts.log.step(&format!("fetching {} wheels", all.len()));
    let http = reqwest::Client::builder()
        .timeout(opts.timeout)
        .build()
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot make an HTTP client: {e}")))?;
    let py = &opts.recipe.python;
    let indexes: Vec<_> = py
        .index_url
        .iter()
        .chain(&py.extra_index_urls)
        .map(|url| crate::layers::uv::IndexUrl::parse(url))
        .collect();
    stream::iter(all.values())
        .map(|(pin, _)| wheels::fetch(&http, pin, wheel_dir, &indexes))
        .buffer_unordered(PARALLEL_FETCHES)
        .try_collect()
        .await
        .map_err(|e| {
            let kind = match e {
                wheels::WheelError::Io { .. } => ErrorKind::Other,
                _ => ErrorKind::Dependencies,
            };
            Error::wrap(kind, e, None)
        })
}

/// `bundle.json`: the recipe, the base, the inputs, every wheel and every
/// file of the bundle with its hash.
fn manifest_of(
    opts: &MakeOptions,
    base: &resolve::BaseImage,
    counts: &BaseCounts,
    pinned: Pinned,
    work: &Path,
) -> Result<Manifest> {
    let recipe = &opts.recipe;
    Ok(Manifest {
        format: FORMAT,
        created_by: format!("slipway {}", env!("CARGO_PKG_VERSION")),
        recipe: InputRecord {
            path: recipe
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: crate::digest::digest_file(&recipe.file)
                .map_err(io(format!("cannot read `{}`", recipe.file.display())))?
                .0,
        },
        base: BaseRecord {
            reference: base.name.to_string(),
            digest: base.top_digest.clone(),
            media_type: counts.top.0.clone(),
            platforms: pinned.platforms,
        },
        inputs: pinned.inputs,
        build_requirements: pinned.build_requirements,
        wheels: pinned
            .all
            .into_values()
            .map(|(pin, platforms)| WheelRecord {
                file: format!("wheels/{}", pin.file),
                name: wheels::normalise(&pin.name),
                version: pin.version,
                sha256: pin.sha256,
                platforms,
            })
            .collect(),
        files: staging::list_files(work)?,
    })
}

/// What the wheels are resolved from: the recipe's requirements files, or a
/// project's exported lock (whose hashes every resolved wheel must match).
struct DependencySources {
    inputs: Vec<PathBuf>,
    records: Vec<InputRecord>,
    project: Option<project::Project>,
    /// normalised name → (version, hashes) from the project's lock.
    locked: Option<BTreeMap<String, (String, Vec<Digest>)>>,
}

impl DependencySources {
    fn new(
        recipe: &Recipe,
        uv: &Path,
        (python, python_version): (&Path, &str),
        scratch: &Path,
    ) -> Result<DependencySources> {
        let records = recipe_inputs(recipe).map_err(Error::hinted(ErrorKind::Input))?;
        let py = &recipe.python;
        let Some(dir) = &py.project else {
            return Ok(DependencySources {
                inputs: py.requirements.clone(),
                records,
                project: None,
                locked: None,
            });
        };
        let project_err = |e: project::ProjectError| Error::hinted(ErrorKind::Dependencies)(e);
        let project = project::Project::load(dir, py.package.as_deref()).map_err(project_err)?;
        let exported = scratch.join("project-requirements.txt");
        project::export(uv, python, python_version, &project, &exported, py.offline)
            .map_err(project_err)?;
        let text = std::fs::read_to_string(&exported).map_err(io("cannot read uv's export"))?;
        let locked = wheels::parse_requirements(&text)
            .into_iter()
            .map(|p| (wheels::normalise(&p.name), (p.version, p.hashes)))
            .collect();
        let mut inputs = py.requirements.clone();
        inputs.push(exported);
        Ok(DependencySources {
            inputs,
            records,
            project: Some(project),
            locked: Some(locked),
        })
    }

    /// Every wheel resolved from a project's lock must be one the lock lists.
    fn check_locked(&self, pins: &[Pin], platform: &str) -> Result<()> {
        let Some(locked) = &self.locked else {
            return Ok(());
        };
        for pin in pins {
            let Some((version, hashes)) = locked.get(&wheels::normalise(&pin.name)) else {
                continue; // from the recipe's own requirements files
            };
            // A lock made from a local wheel dir lists no hashes: the
            // version is all it pins (the bundle records the hash from here on).
            let hash_unlisted = !hashes.is_empty() && !hashes.contains(&pin.sha256);
            if version != &pin.version || hash_unlisted {
                return Err(Error::new(
                    ErrorKind::Dependencies,
                    format!(
                        "for {platform}, `{}=={}` resolved to `{}` ({}), which `uv.lock` does not list",
                        pin.name, pin.version, pin.file, pin.sha256
                    ),
                )
                .with_hint("the index serves other files than when the lock was made: run `uv lock --refresh` in the project"));
            }
        }
        Ok(())
    }
}

fn host_python(opts: &MakeOptions, version: &str) -> PathBuf {
    let memos = crate::layers::tool_version::memo_dir(&opts.cache_dir);
    bytecode::find_python_with_uv(&opts.uv, version, opts.python.as_deref(), Some(&memos))
        .unwrap_or_else(|_| PathBuf::from("python3"))
}

/// Pins `inputs` for the target (Python version, uv's platform; None: the host).
fn compile(
    opts: &MakeOptions,
    inputs: &[PathBuf],
    python: &Path,
    (version, python_platform): (&str, Option<&str>),
    scratch: &Path,
    name: &str,
) -> Result<Vec<Pin>> {
    let py = &opts.recipe.python;
    wheels::compile(&Compile {
        uv: &opts.uv,
        python,
        inputs,
        python_version: version,
        python_platform,
        index_url: py.index_url.as_deref(),
        extra_index_urls: &py.extra_index_urls,
        find_links: &py.find_links,
        offline: py.offline,
        scratch,
        name,
    })
    .map_err(|e| {
        let kind = match e {
            wheels::WheelError::Io { .. } => ErrorKind::Other,
            _ => ErrorKind::Dependencies,
        };
        Error::wrap(kind, e, None)
    })
}

/// Adds `pins` (used by `platform`) to the set keyed by file name.
fn add_pins(all: &mut AllPins, pins: Vec<Pin>, platform: &str) -> Result<()> {
    for pin in pins {
        match all.get_mut(&pin.file) {
            Some((existing, _)) if existing.sha256 != pin.sha256 => {
                return Err(Error::wrap(
                    ErrorKind::Dependencies,
                    wheels::WheelError::Conflict {
                        file: pin.file.clone(),
                        a: existing.sha256.clone(),
                        b: pin.sha256.clone(),
                    },
                    Some("use one index for the recipe's packages".into()),
                ))
            }
            Some((_, platforms)) => platforms.push(platform.to_string()),
            None => {
                all.insert(pin.file.clone(), (pin, vec![platform.to_string()]));
            }
        }
    }
    Ok(())
}
