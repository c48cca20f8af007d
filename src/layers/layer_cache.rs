//! Every layer the build makes goes through here: looked up by its key in
//! the caches (local, then the cache repo) or built, packed and stored
//! under it; bytecode compiled with the base's CPython; the counters the
//! report's timings read.

use super::failures::source_error;
use super::options::LayerOptions;
use super::outcome::NewLayer;
use super::outcome::{LayerKind, LayerSource, OmittedLayer};
use super::store::LayerStore;
use crate::cache::{Cache, LayerRecord};
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::tarball::{self, Checks};
use crate::layers::{self, bytecode, Entry, Owner};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// (layer, kind, where it came from)
pub type Built = (NewLayer, LayerKind, LayerSource);

/// Layers left out (no files), with the reason, for the report.
pub type Omitted = Vec<OmittedLayer>;

pub fn omitted(kind: LayerKind, reason: &str) -> OmittedLayer {
    OmittedLayer {
        kind,
        reason: reason.to_string(),
    }
}

/// What a layer is built from: its entries, the scratch dir holding their
/// files (if any), and what they are checked for as they are packed (the
/// content digests its key was made of, host paths).
pub type LayerInputs = (Vec<Entry>, Option<tempfile::TempDir>, Checks);

/// Reuses the layer for `key` from the caches or builds it from `entries()`.
pub fn cached_layer(
    cache: &LayerStore,
    key: &str,
    created_by: &str,
    kind: LayerKind,
    opts: &LayerOptions,
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
            let (entries, _scratch, checks) = entries()?;
            (
                write_into_cache(cache, key, &entries, opts.epoch, &checks)?,
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

/// Time and bytes of layer writing, for the report's timings (one build per process).
pub static COMPRESS_NANOS: AtomicU64 = AtomicU64::new(0);
pub static COMPRESS_BYTES: AtomicU64 = AtomicU64::new(0);
/// `.py` files compiled by this build (not taken from the per-wheel store).
pub static COMPILED_FILES: AtomicU64 = AtomicU64::new(0);

/// Packs `entries` (checked as `checks` says, see [`tarball::Checks`]) into
/// the blob store under `key`.
pub fn write_into_cache(
    cache: &LayerStore,
    key: &str,
    entries: &[Entry],
    epoch: u64,
    checks: &Checks,
) -> Result<LayerRecord> {
    let scratch = cache
        .temp_dir("layer")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    // One layer is compressed at a time: each compression uses every core,
    // so two at once finish no sooner and hold twice the buffers (the site-
    // packages layer and its bytecode, on the big set: ~8 MiB of peak RSS).
    static COMPRESSING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _compressing = crate::lock(&COMPRESSING);
    let started = Instant::now();
    let blob =
        tarball::write_layer_checked(entries, epoch, &scratch.path().join("layer.tar.gz"), checks)
            .map_err(|e| match tarball::HostPathLeak::of(&e) {
                Some(leak) => Error::new(ErrorKind::Dependencies, leak.to_string()),
                None => source_error(&format!(
                    "cannot write layer `{key}` in `{}`",
                    scratch.path().display()
                ))(e),
            })?;
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
pub fn compile(
    opts: &LayerOptions,
    cache: &Cache,
    facts: &PythonFacts,
    sources: &[(PathBuf, String)],
    read: &bytecode::ReadSource<'_>,
    lower: &[Entry],
    owner: Owner,
) -> Result<(tempfile::TempDir, Vec<Entry>)> {
    let python = find_python(opts, facts)?;
    let (scratch, entries) = compile_in_scratch(cache, &python, sources, read, owner)?;
    Ok((scratch, layers::normalise_over(entries, lower)))
}

/// Compiles `sources` with `python` into a scratch dir of the cache (which
/// holds the `.pyc` files the entries point at), counted for the report.
pub fn compile_in_scratch(
    cache: &Cache,
    python: &Path,
    sources: &[(PathBuf, String)],
    read: &bytecode::ReadSource<'_>,
    owner: Owner,
) -> Result<(tempfile::TempDir, Vec<Entry>)> {
    let scratch = cache
        .temp_dir("pyc")
        .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
    let compiled =
        bytecode::compile_report(python, sources, read, scratch.path(), owner).map_err(|e| {
            match e {
                // A checked source (the app's) changed or is unreadable: the
                // error its own reader gave, with that error's kind.
                bytecode::BytecodeError::Source(e) => {
                    super::failures::source_error("cannot read a source to compile")(e)
                }
                e => Error::wrap(ErrorKind::Input, e, None),
            }
        })?;
    COMPILED_FILES.fetch_add(compiled.compiled_files as u64, Ordering::Relaxed);
    compiled.warn_skipped();
    Ok((scratch, compiled.entries))
}

/// Site-packages bytecode assembled from the per-wheel store, compiling
/// only the wheels it has never seen.
pub fn compile_wheels(
    opts: &LayerOptions,
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

/// Fills the per-wheel store from `wheels`, the local wheels uv is about to
/// install (see [`bytecode::ahead`]), until `installed` is set; best effort:
/// what fails or is left here is compiled after the install. Returns the
/// files compiled.
pub fn compile_ahead(
    opts: &LayerOptions,
    cache: &Cache,
    facts: &PythonFacts,
    wheels: &[PathBuf],
    installed: &std::sync::atomic::AtomicBool,
) -> usize {
    let compile = || -> Result<usize> {
        let python = find_python(opts, facts)?;
        let scratch = cache
            .temp_dir("pyc-ahead")
            .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
        let wrap = |e| Error::wrap(ErrorKind::Input, e, None);
        bytecode::ahead::compile_ahead(&bytecode::ahead::Ahead {
            python: &python,
            wheels,
            site_packages: &facts.site_packages,
            tests: opts.recipe.python.tests_bytecode,
            store: &bytecode::wheels::WheelStore::in_cache(cache.root()),
            scratch: scratch.path(),
            workers: bytecode::default_workers().map_err(wrap)?,
            enough: installed,
        })
        .map_err(wrap)
    };
    match compile() {
        Ok(files) => {
            COMPILED_FILES.fetch_add(files as u64, Ordering::Relaxed);
            opts.log
                .detail(&format!("{files} files compiled ahead of the install"));
            files
        }
        Err(e) => {
            opts.log
                .detail(&format!("no bytecode compiled ahead of the install: {e}"));
            0
        }
    }
}

pub fn find_python(opts: &LayerOptions, facts: &PythonFacts) -> Result<PathBuf> {
    let memos = layers::tool_version::memo_dir(opts.cache_dir);
    bytecode::find_python(&facts.version, opts.python, Some(&memos))
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))
}

pub fn uv_version(uv: &Path, cache: &Cache) -> Result<String> {
    layers::tool_version::version(uv, &layers::tool_version::memo_dir(cache.root())).map_err(|e| {
        Error::new(
            ErrorKind::Input,
            format!("cannot run uv (`{}`): {e}", uv.display()),
        )
        .with_hint("install uv (`pip install uv`) or point `--uv` / `SLIPWAY_UV` at it")
    })
}
