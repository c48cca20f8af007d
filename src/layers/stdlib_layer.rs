//! The stdlib bytecode layer (`[python] stdlib_bytecode`): the base's own
//! standard library compiled by the CPython of the base's minor version,
//! keyed by the base, the mode (and the modules chosen), the interpreter's
//! magic number and the layer format.
//!
//! For `"imported"`, what each of the image's code layers imports is
//! remembered per layer digest, and what each stdlib module imports per
//! base: an app edit re-reads only the app layer, and the base only when
//! the app imports a stdlib module it didn't before. The base's layers are
//! read only when the layer (or the base's import graph) is not cached.

use super::layer_cache::{cached_layer, compile_in_scratch, find_python, Built};
use super::options::LayerOptions;
use super::outcome::LayerKind;
use super::plan;
use super::store::LayerStore;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{io, Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::bytecode::{self, sources, stdlib, BytecodeError};
use crate::layers::Owner;
use crate::off_async_workers;
use crate::recipe::StdlibBytecode;
use crate::resolve::{self, BaseImage};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer for `base`, or None when the recipe asks for none. `built`
/// are the image's other new layers (the `"imported"` scan reads its code
/// from them).
pub async fn build_stdlib_layer(
    cache: &LayerStore<'_>,
    opts: &LayerOptions<'_>,
    base: &BaseImage,
    facts: &PythonFacts,
    built: &[Built],
) -> Result<Option<Built>> {
    let mode = opts.recipe.python.stdlib_bytecode;
    if mode == StdlibBytecode::Off {
        return Ok(None);
    }
    let python = find_python(opts, facts)?;
    let memos = crate::layers::tool_version::memo_dir(cache.root());
    let magic = bytecode::magic(&python, Some(&memos)).map_err(input_error)?;
    let names = match mode {
        StdlibBytecode::Imported => Some(off_async_workers(|| {
            names_imported(opts, cache, &python, built)
        })?),
        _ => None,
    };
    let graph_key =
        Digest::of(plan::stdlib_graph_key(&base.image.manifest_digest, &magic).as_bytes());
    let known_graph = names
        .as_ref()
        .and_then(|_| cache.facts::<stdlib::ImportGraph>(&graph_key));
    let known_modules = names
        .as_ref()
        .zip(known_graph.as_ref())
        .map(|(names, graph)| stdlib::reach(graph, names));
    let key_of = |modules: Option<&BTreeSet<String>>| {
        plan::stdlib_bytecode_key(&plan::StdlibInputs {
            base_manifest: &base.image.manifest_digest,
            mode,
            selection_format: stdlib::SELECTION_FORMAT,
            modules,
            magic: &magic,
            epoch: opts.epoch,
        })
    };
    let known_key = match mode {
        StdlibBytecode::All => Some(key_of(None)),
        _ => known_modules.as_ref().map(|m| key_of(Some(m))),
    };
    let base_layers = match known_key.is_none_or(|key| cache.layer(&key).is_none()) {
        true => base_layer_files(cache, base, opts).await?,
        false => Vec::new(),
    };
    off_async_workers(|| {
        let scratch = cache
            .temp_dir("stdlib")
            .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
        let stdlib_dir = stdlib_dir(facts);
        let read = BaseStdlib {
            layers: &base_layers,
            dir: &stdlib_dir,
            scratch: scratch.path(),
            base: &base.name.to_string(),
            read: std::cell::OnceCell::new(),
        };
        let stdlib = || read.get();
        let modules = match (names, known_modules) {
            (Some(names), None) => Some(reached(cache, &python, stdlib()?, &names, &graph_key)?),
            (_, known) => known,
        };
        let key = key_of(modules.as_ref());
        let built = cached_layer(
            cache,
            &key,
            stdlib::CREATED_BY,
            LayerKind::StdlibBytecode,
            opts,
            || {
                let chosen = stdlib()?.chosen(modules.as_ref());
                compile_stdlib(cache, opts, &python, &chosen, &facts.version)
            },
        )?;
        Ok(Some(built))
    })
}

/// Where the stdlib is in the image: `usr/local/lib/python3.13/`.
fn stdlib_dir(facts: &PythonFacts) -> String {
    let prefix = facts.prefix.trim_matches('/');
    format!("{prefix}/lib/python{}/", facts.version)
}

/// The files of the base's layers, fetched into the cache.
async fn base_layer_files(
    cache: &LayerStore<'_>,
    base: &BaseImage,
    opts: &LayerOptions<'_>,
) -> Result<Vec<PathBuf>> {
    opts.log.step("reading the base's standard library");
    let mut files = Vec::new();
    for layer in &base.manifest.layers {
        let path = resolve::fetch_blob(cache, base.source.as_ref(), &layer.digest)
            .await
            .map_err(|e| e.into_error(cache.root()))?;
        files.push(path);
    }
    Ok(files)
}

/// The stdlib modules `names` reach, by the base's import graph (worked
/// out from its sources now and kept in the cache under `graph_key`).
fn reached(
    cache: &LayerStore,
    python: &Path,
    stdlib: &Stdlib,
    names: &BTreeSet<String>,
    graph_key: &Digest,
) -> Result<BTreeSet<String>> {
    let graph =
        stdlib::import_graph(python, &stdlib.sources(), &stdlib.packages).map_err(input_error)?;
    cache
        .put_facts(graph_key, &graph)
        .map_err(io(cache.context("cannot write to the cache")))?;
    Ok(stdlib::reach(&graph, names))
}

/// Compiles the chosen stdlib modules with the base's CPython.
fn compile_stdlib(
    cache: &LayerStore,
    opts: &LayerOptions,
    python: &Path,
    chosen: &[(PathBuf, String)],
    version: &str,
) -> Result<super::layer_cache::LayerInputs> {
    opts.log.step(&format!(
        "compiling {} stdlib modules for Python {version}",
        chosen.len()
    ));
    let (out, entries) = compile_in_scratch(
        cache,
        python,
        chosen,
        &crate::layers::bytecode::read_file,
        Owner::default(),
    )?;
    Ok((entries, Some(out), Default::default()))
}

/// The base's standard library sources, read out of its layers on first
/// use only (a cached layer needs none of them).
struct BaseStdlib<'a> {
    /// The base's layer blobs, lowest first; empty when the layer was cached.
    layers: &'a [PathBuf],
    /// `usr/local/lib/python3.13/`
    dir: &'a str,
    scratch: &'a Path,
    base: &'a str,
    read: std::cell::OnceCell<Stdlib>,
}

impl BaseStdlib<'_> {
    fn get(&self) -> Result<&Stdlib> {
        if let Some(stdlib) = self.read.get() {
            return Ok(stdlib);
        }
        if self.layers.is_empty() {
            // The layer was cached a moment ago: never build it from nothing.
            return Err(Error::new(
                ErrorKind::Other,
                "the stdlib bytecode layer left the cache during the build".to_string(),
            )
            .with_hint("run the build again"));
        }
        let dir = self.dir;
        let files = sources::extract(
            self.layers,
            &|path| path.starts_with(dir) && path.ends_with(".py"),
            self.scratch,
        )
        .map_err(io(format!(
            "cannot read the standard library of base `{}`",
            self.base
        )))?;
        let found = Stdlib::new(dir, files);
        if found.modules.is_empty() {
            return Err(Error::new(
                ErrorKind::Input,
                format!(
                    "base `{}` has no standard library sources (`.py`) under `/{dir}`",
                    self.base
                ),
            )
            .with_hint(
                "leave `[python] stdlib_bytecode` out for this base: there is nothing to compile",
            ));
        }
        Ok(self.read.get_or_init(|| found))
    }
}

fn input_error(e: BytecodeError) -> Error {
    Error::wrap(ErrorKind::Input, e, None)
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

    /// Module → its source on disk.
    fn sources(&self) -> BTreeMap<String, PathBuf> {
        self.modules
            .iter()
            .map(|(module, (file, _))| (module.clone(), file.clone()))
            .collect()
    }

    /// (source, absolute image path) of `modules` (None: all).
    fn chosen(&self, modules: Option<&BTreeSet<String>>) -> Vec<(PathBuf, String)> {
        self.modules
            .iter()
            .filter(|(module, _)| modules.is_none_or(|m| m.contains(*module)))
            .map(|(_, (file, image_path))| (file.clone(), format!("/{image_path}")))
            .collect()
    }
}

/// The absolute module names the image's code layers (site-packages,
/// project, app; read back from the cache) import, each layer's remembered
/// under its digest.
fn names_imported(
    opts: &LayerOptions,
    cache: &Cache,
    python: &Path,
    built: &[Built],
) -> Result<BTreeSet<String>> {
    let code_layers = built.iter().filter(|(_, kind, _)| {
        matches!(
            kind,
            LayerKind::SitePackages | LayerKind::Project | LayerKind::App
        )
    });
    let mut names = BTreeSet::new();
    for (layer, _, _) in code_layers {
        let digest = &layer.record.digest;
        let key = Digest::of(plan::stdlib_names_key(digest).as_bytes());
        if let Some(known) = cache.facts::<BTreeSet<String>>(&key) {
            names.extend(known);
            continue;
        }
        opts.log.step(&format!("finding what `{digest}` imports"));
        let blob = cache.verified_blob(digest).ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("layer `{digest}` left the cache during the build"),
            )
            .with_hint("run the build again")
        })?;
        let scratch = cache
            .temp_dir("imports")
            .map_err(io(cache.context("cannot create a temp dir in the cache")))?;
        let files = sources::extract(&[blob], &|path| path.ends_with(".py"), scratch.path())
            .map_err(io(cache.context("cannot read a layer of the image")))?;
        let files: Vec<PathBuf> = files.into_values().collect();
        let found = stdlib::names_imported(python, &files).map_err(input_error)?;
        cache
            .put_facts(&key, &found)
            .map_err(io(cache.context("cannot write to the cache")))?;
        names.extend(found);
    }
    Ok(names)
}
