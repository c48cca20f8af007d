//! `slipway bundle`, the connected side: resolve the base and the wheels
//! for every platform of the recipe and write them into the bundle dir
//! (or tar), keeping what is already there and matches.

use super::base::{self, write_atomic, BaseCounts};
use super::wheels::{self, Compile, Pin};
use super::{
    archive, platform_slug, recipe_inputs, BaseRecord, FileRecord, InputRecord, Manifest,
    PlatformRecord, WheelRecord, BUILD_REQUIREMENTS, FORMAT, MANIFEST_FILE,
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

pub async fn make(client: &RegistryClient, opts: &MakeOptions) -> Result<MakeReport> {
    let recipe = &opts.recipe;
    let log = &opts.log;
    let cache = Cache::open(&opts.cache_dir).map_err(io(format!(
        "cannot open cache dir `{}`",
        opts.cache_dir.display()
    )))?;
    let as_tar = opts.out.extension().is_some_and(|x| x == "tar");
    let staging = if as_tar {
        let dir = cache
            .temp_dir("bundle-out")
            .map_err(io("cannot create a temp dir in the cache"))?;
        if opts.out.is_file() {
            archive::unpack(&opts.out, dir.path())
                .map_err(io(format!("cannot read `{}`", opts.out.display())))?;
        }
        Some(dir)
    } else {
        let foreign = std::fs::read_dir(&opts.out).is_ok_and(|mut d| d.next().is_some())
            && !opts.out.join(MANIFEST_FILE).is_file();
        if foreign {
            return Err(Error::new(
                ErrorKind::Input,
                format!("`{}` is neither empty nor a bundle", opts.out.display()),
            )
            .with_hint("pass a new or empty dir, or a bundle to update"));
        }
        if opts.out.join(MANIFEST_FILE).is_file() {
            // An update: in place, so only what is missing is fetched;
            // bundle.json is rewritten last.
            None
        } else {
            // A new bundle is made beside its place and renamed into it at
            // the end: a failed run leaves no half-made bundle behind.
            let parent = match opts.out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            std::fs::create_dir_all(parent)
                .map_err(io(format!("cannot create `{}`", parent.display())))?;
            let dir = tempfile::Builder::new()
                .prefix(".slipway-bundle-")
                .tempdir_in(parent)
                .map_err(io(format!(
                    "cannot create a temp dir in `{}`",
                    parent.display()
                )))?;
            Some(dir)
        }
    };
    let work = staging.as_ref().map_or(opts.out.as_path(), |d| d.path());

    let (bases, all_facts) = crate::resolve::resolve_bases(
        client,
        &cache,
        recipe,
        opts.base_layout.as_deref(),
        &opts.mirrors,
        log,
    )
    .await?;
    log.step("copying the base into the bundle");
    let counts = base::write(&cache, &bases, &work.join("base"))
        .await
        .map_err(|e| {
            let kind = match &e {
                base::BaseError::Source(e) => e.kind(),
                base::BaseError::Resolve(resolve::ResolveError::Registry(_)) => ErrorKind::Registry,
                _ => ErrorKind::Other,
            };
            Error::hinted(kind)(e)
        })?;

    let scratch = cache
        .temp_dir("bundle")
        .map_err(io("cannot create a temp dir in the cache"))?;
    let python = host_python(opts, &all_facts[0].version);
    let deps = DependencySources::new(
        recipe,
        &opts.uv,
        (&python, &all_facts[0].version),
        scratch.path(),
    )?;
    let mut platform_records = Vec::new();
    let mut all_pins: BTreeMap<String, (Pin, Vec<String>)> = BTreeMap::new();
    let mut keep_requirements = BTreeSet::new();
    for (base, facts) in bases.iter().zip(&all_facts) {
        let platform = base.platform.to_string();
        let python_platform = facts.platform.uv_python_platform(&facts.libc);
        let python = host_python(opts, &facts.version);
        let requirements = if deps.inputs.is_empty() {
            None
        } else {
            log.step(&format!(
                "resolving wheels for {python_platform}, Python {}",
                facts.version
            ));
            let slug = platform_slug(&platform);
            let pins = compile(
                opts,
                &deps.inputs,
                &python,
                &facts.version,
                Some(&python_platform),
                scratch.path(),
                &slug,
            )?;
            deps.check_locked(&pins, &platform)?;
            let rel = format!("requirements/{slug}.txt");
            let header = format!(
                "slipway bundle: {platform} ({python_platform}, Python {}); install with --require-hashes",
                facts.version
            );
            write_file(
                work,
                &rel,
                wheels::requirements_text(&header, &pins).as_bytes(),
            )?;
            add_pins(&mut all_pins, pins, &platform)?;
            keep_requirements.insert(format!("{slug}.txt"));
            Some(rel)
        };
        platform_records.push(PlatformRecord {
            platform,
            manifest: base.manifest_digest.clone(),
            python_version: facts.version.clone(),
            libc: facts.libc.to_string(),
            python_platform,
            requirements,
        });
    }
    let build_requirements = match &deps.project {
        Some(p) if p.needs_build_env() => {
            log.step("resolving the project's build backend for the host");
            let input = scratch.path().join("build-requires.txt");
            std::fs::write(&input, p.build_requires.join("\n") + "\n")
                .map_err(io("cannot write to the cache"))?;
            let version = &all_facts[0].version;
            let python = host_python(opts, version);
            let pins = compile(
                opts,
                &[input],
                &python,
                version,
                None,
                scratch.path(),
                "build",
            )?;
            let text = wheels::requirements_text(
                "slipway bundle: the project's build requirements (host); --build-constraints with --require-hashes",
                &pins,
            );
            write_file(work, BUILD_REQUIREMENTS, text.as_bytes())?;
            add_pins(&mut all_pins, pins, "build")?;
            keep_requirements.insert("build.txt".to_string());
            Some(BUILD_REQUIREMENTS.to_string())
        }
        _ => None,
    };

    let wheel_dir = work.join("wheels");
    std::fs::create_dir_all(&wheel_dir).map_err(io("cannot create the wheel dir"))?;
    log.step(&format!("fetching {} wheels", all_pins.len()));
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
    let fetched: Vec<u64> = stream::iter(all_pins.values())
        .map(|(pin, _)| wheels::fetch(&http, pin, &wheel_dir, &indexes))
        .buffer_unordered(PARALLEL_FETCHES)
        .try_collect()
        .await
        .map_err(|e| {
            let kind = match e {
                wheels::WheelError::Io { .. } => ErrorKind::Other,
                _ => ErrorKind::Dependencies,
            };
            Error::wrap(kind, e, None)
        })?;

    prune(&wheel_dir, &all_pins.keys().cloned().collect())?;
    prune(&work.join("requirements"), &keep_requirements)?;
    prune(&work.join("base/blobs/sha256"), &counts.wanted)?;

    let files = list_files(work)?;
    let manifest = Manifest {
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
            reference: bases[0].name.to_string(),
            digest: bases[0].top_digest.clone(),
            media_type: counts.top.0.clone(),
            platforms: platform_records,
        },
        inputs: deps.records.clone(),
        build_requirements,
        wheels: all_pins
            .values()
            .map(|(pin, platforms)| WheelRecord {
                file: format!("wheels/{}", pin.file),
                name: wheels::normalise(&pin.name),
                version: pin.version.clone(),
                sha256: pin.sha256.clone(),
                platforms: platforms.clone(),
            })
            .collect(),
        files,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    write_file(work, MANIFEST_FILE, &json)?;
    if as_tar {
        log.step(&format!("writing `{}`", opts.out.display()));
        archive::pack(work, &opts.out)
            .map_err(io(format!("cannot write `{}`", opts.out.display())))?;
    } else if let Some(dir) = staging {
        let cannot = || {
            io(format!(
                "cannot move the bundle into `{}`",
                opts.out.display()
            ))
        };
        // A temp dir is 0700; a bundle dir is as any other dir made here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(cannot())?;
        // An empty dir the user made for it gives way (checked above).
        if opts.out.is_dir() {
            std::fs::remove_dir(&opts.out).map_err(cannot())?;
        }
        std::fs::rename(dir.path(), &opts.out).map_err(cannot())?;
        let _ = dir.keep();
    }
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
        wheels: all_pins.len(),
        wheels_fetched: fetched.iter().filter(|b| **b > 0).count(),
        bytes_fetched: fetched.iter().sum(),
        files: manifest.files.len() + 1,
        base_blobs: counts,
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

fn compile(
    opts: &MakeOptions,
    inputs: &[PathBuf],
    python: &Path,
    version: &str,
    python_platform: Option<&str>,
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
fn add_pins(
    all: &mut BTreeMap<String, (Pin, Vec<String>)>,
    pins: Vec<Pin>,
    platform: &str,
) -> Result<()> {
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

fn write_file(work: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let path = work.join(rel);
    write_atomic(&path, bytes).map_err(io(format!("cannot write `{}`", path.display())))
}

/// Removes files in `dir` whose names are not in `keep` (stale wheels,
/// blobs, requirements, interrupted temp files).
fn prune(dir: &Path, keep: &BTreeSet<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())
                .map_err(io(format!("cannot remove `{}`", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Every file of the bundle (but `bundle.json`) with its sha256, sorted.
fn list_files(work: &Path) -> Result<Vec<FileRecord>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(work).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(|e| io("cannot list the bundle")(e.into()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(work)
            .expect("walk stays in its root")
            .to_string_lossy()
            .into_owned();
        if rel == MANIFEST_FILE {
            continue;
        }
        let (sha256, size) = crate::digest::digest_file(entry.path())
            .map_err(io(format!("cannot read `{}`", entry.path().display())))?;
        files.push(FileRecord {
            path: rel,
            sha256,
            size,
        });
    }
    Ok(files)
}
