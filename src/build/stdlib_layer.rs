//! The stdlib bytecode layer (`[python] stdlib_bytecode`): the base's own
//! standard library compiled by the CPython of the base's minor version,
//! keyed by the base, the mode (and the modules chosen), the interpreter's
//! magic number and the layer format. The base's layers are read only when
//! the layer (or the `"imported"` scan) is not in the cache yet.

use super::failures::in_cache;
use super::{cached_layer, find_python, off_async_workers, BuildOptions, Built};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::bytecode::{self, sources, stdlib};
use crate::layers::Owner;
use crate::plan;
use crate::recipe::StdlibBytecode;
use crate::registry::RegistryClient;
use crate::report::LayerKind;
use crate::resolve::{self, BaseImage};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The layer for `base`, or None when the recipe asks for none. `built`
/// are the image's other new layers (the `"imported"` scan reads its code
/// from them).
pub(super) async fn build_stdlib_layer(
    client: &RegistryClient,
    cache: &Cache,
    opts: &BuildOptions,
    base: &BaseImage,
    facts: &PythonFacts,
    built: &[Built],
) -> Result<Option<Built>> {
    let mode = opts.recipe.python.stdlib_bytecode;
    if mode == StdlibBytecode::Off {
        return Ok(None);
    }
    let python = find_python(opts, facts)?;
    let magic = bytecode::magic(&python).map_err(|e| Error::wrap(ErrorKind::Input, e, None))?;
    let code_layers: Vec<&Digest> = code_layers(built).collect();
    let scan_key =
        Digest::of(plan::stdlib_scan_key(&base.manifest_digest, &magic, &code_layers).as_bytes());
    let known_modules = match mode {
        StdlibBytecode::Imported => cache.facts::<BTreeSet<String>>(&scan_key),
        _ => None,
    };
    let key_of = |modules: Option<&BTreeSet<String>>| {
        plan::stdlib_bytecode_key(&plan::StdlibInputs {
            base_manifest: &base.manifest_digest,
            mode,
            selection_format: stdlib::SELECTION_FORMAT,
            modules,
            magic: &magic,
            epoch: opts.epoch,
        })
    };
    let cached_key = match (mode, &known_modules) {
        (StdlibBytecode::All, _) => Some(key_of(None)),
        (_, Some(modules)) => Some(key_of(Some(modules))),
        _ => None,
    };
    let needs_base = cached_key
        .as_ref()
        .is_none_or(|key| cache.layer(key).is_none());
    let mut base_layers = Vec::new();
    if needs_base {
        opts.log.step("reading the base's standard library");
        for layer in &base.manifest.layers {
            let path = resolve::fetch_blob(client, cache, &base.location, &layer.digest)
                .await
                .map_err(|e| e.into_error(cache.root()))?;
            base_layers.push(path);
        }
    }
    off_async_workers(|| {
        let scratch = cache
            .temp_dir("stdlib")
            .map_err(io(in_cache(cache, "cannot create a temp dir in the cache")))?;
        let stdlib_dir = format!(
            "{}/lib/python{}/",
            facts.prefix.trim_matches('/'),
            facts.version
        );
        let read_stdlib = || -> Result<Stdlib> {
            let files = sources::extract(
                &base_layers,
                &|path| path.starts_with(&stdlib_dir) && path.ends_with(".py"),
                &scratch.path().join("stdlib"),
            )
            .map_err(io(format!(
                "cannot read the standard library of base `{}`",
                base.name
            )))?;
            Ok(Stdlib::new(&stdlib_dir, files))
        };
        let stdlib_files = std::cell::OnceCell::new();
        let stdlib_files = || -> Result<&Stdlib> {
            if stdlib_files.get().is_none() {
                let _ = stdlib_files.set(read_stdlib()?);
            }
            Ok(stdlib_files.get().expect("just set"))
        };
        let modules = match (mode, known_modules) {
            (StdlibBytecode::Imported, None) => {
                let modules = scan(opts, cache, &python, stdlib_files()?, built, &scratch)?;
                cache
                    .put_facts(&scan_key, &modules)
                    .map_err(io(in_cache(cache, "cannot write to the cache")))?;
                Some(modules)
            }
            (_, known) => known,
        };
        let key = key_of(modules.as_ref());
        cached_layer(
            cache,
            &key,
            stdlib::CREATED_BY,
            LayerKind::StdlibBytecode,
            opts,
            || {
                let stdlib = stdlib_files()?;
                let chosen: Vec<(PathBuf, String)> = stdlib
                    .modules
                    .iter()
                    .filter(|(module, _)| modules.as_ref().is_none_or(|m| m.contains(*module)))
                    .map(|(_, (file, image_path))| (file.clone(), format!("/{image_path}")))
                    .collect();
                opts.log.step(&format!(
                    "compiling {} stdlib modules for Python {}",
                    chosen.len(),
                    facts.version
                ));
                let out = cache
                    .temp_dir("pyc")
                    .map_err(io(in_cache(cache, "cannot create a temp dir in the cache")))?;
                let compiled =
                    bytecode::compile_report(&python, &chosen, out.path(), Owner::default())
                        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))?;
                super::COMPILED_FILES.fetch_add(
                    compiled.compiled_files as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                compiled.warn_skipped();
                Ok((compiled.entries, Some(out), Default::default()))
            },
        )
        .map(Some)
    })
}

/// The digests of the layers holding the image's own code (not bytecode).
fn code_layers(built: &[Built]) -> impl Iterator<Item = &Digest> {
    built
        .iter()
        .filter(|(_, kind, _)| {
            matches!(
                kind,
                LayerKind::SitePackages | LayerKind::Project | LayerKind::App
            )
        })
        .map(|(layer, _, _)| &layer.record.digest)
}

/// The base's stdlib sources: module → (file on disk, image path).
struct Stdlib {
    modules: BTreeMap<String, (PathBuf, String)>,
    packages: BTreeSet<String>,
}

impl Stdlib {
    fn new(stdlib_dir: &str, files: sources::Sources) -> Stdlib {
        let mut modules = BTreeMap::new();
        let mut packages = BTreeSet::new();
        for (image_path, file) in files {
            let relative = &image_path[stdlib_dir.len()..];
            let Some(module) = stdlib::module_of(relative) else {
                continue;
            };
            if relative.ends_with("__init__.py") {
                packages.insert(module.clone());
            }
            modules.insert(module, (file, image_path));
        }
        Stdlib { modules, packages }
    }
}

/// The stdlib modules the image's code (its site-packages, project and app
/// layers, read back from the cache) reaches.
fn scan(
    opts: &BuildOptions,
    cache: &Cache,
    python: &std::path::Path,
    stdlib: &Stdlib,
    built: &[Built],
    scratch: &tempfile::TempDir,
) -> Result<BTreeSet<String>> {
    opts.log
        .step("finding the stdlib modules the image's code imports");
    let code = code_layers(built)
        .map(|digest| {
            cache.verified_blob(digest).ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("layer `{digest}` left the cache during the build"),
                )
                .with_hint("run the build again")
            })
        })
        .collect::<Result<Vec<PathBuf>>>()?;
    let roots = sources::extract(
        &code,
        &|path| path.ends_with(".py"),
        &scratch.path().join("code"),
    )
    .map_err(io(in_cache(cache, "cannot read the image's new layers")))?;
    let by_module: BTreeMap<String, PathBuf> = stdlib
        .modules
        .iter()
        .map(|(module, (file, _))| (module.clone(), file.clone()))
        .collect();
    let roots: Vec<PathBuf> = roots.into_values().collect();
    stdlib::imported(python, &by_module, &stdlib.packages, &roots)
        .map_err(|e| Error::wrap(ErrorKind::Input, e, None))
}
