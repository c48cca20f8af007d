//! The app's layers for `slipway build`: its files (keyed and packed from the
//! same bytes, retried once when a file changes under the build) and their
//! bytecode, with slipway's own files kept out of the tree.

use super::failures::source_error;
use super::layer_cache::{cached_layer, compile, omitted, Built, Omitted};
use super::options::LayerOptions;
use super::outcome::LayerKind;
use super::plan;
use super::store::LayerStore;
use crate::error::{Error, ErrorKind, Result};
use crate::facts::PythonFacts;
use crate::layers::{self, app, Owner};
use std::path::Path;

/// The recipe's excludes plus slipway's own files when they sit inside the
/// source tree: the recipe, the cache and the output, and the dirs above the
/// output that hold nothing else (made by slipway for it, e.g. `build/` of
/// `--oci-layout build/image`), so a build never packs its own inputs or
/// last image and two builds of the same tree give the same app layer.
fn excludes_with_outputs(opts: &LayerOptions, source_dir: &Path) -> Vec<String> {
    let mut excludes = opts.recipe.app.excludes.clone();
    let source = std::fs::canonicalize(source_dir).unwrap_or_else(|_| source_dir.to_path_buf());
    let output = opts.output.map(Path::to_path_buf);
    let own = [opts.cache_dir.to_path_buf(), opts.recipe.file.clone()];
    for (path, is_output) in own
        .into_iter()
        .map(|p| (p, false))
        .chain(output.map(|p| (p, true)))
    {
        let absolute = if path.is_absolute() {
            path
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        let parent = absolute
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok());
        let mut resolved = parent
            .zip(absolute.file_name())
            .map(|(p, n)| p.join(n))
            .unwrap_or(absolute);
        if is_output {
            // Climb while the parent holds only this path.
            while let Some(parent) = resolved
                .parent()
                .filter(|p| p.starts_with(&source) && *p != source)
            {
                let only_child = std::fs::read_dir(parent)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name())
                            .collect::<Vec<_>>()
                    })
                    .is_ok_and(|names| {
                        names.len() == 1 && Some(names[0].as_os_str()) == resolved.file_name()
                    });
                if !only_child {
                    break;
                }
                resolved = parent.to_path_buf();
            }
        }
        if let Ok(inside) = resolved.strip_prefix(&source) {
            if let Some(inside) = inside.to_str().filter(|s| !s.is_empty()) {
                excludes.push(format!("/{inside}"));
            }
        }
    }
    excludes
}

/// The app bytecode layer's key: what the `.pyc` depend on (the `.py`
/// files and the dirs whose owners and modes their `__pycache__` parents
/// copy), so an edited README or requirements file compiles nothing.
fn bytecode_key(
    entries: &[layers::Entry],
    digests: &layers::tarball::FileDigests,
    opts: &LayerOptions,
    facts: &PythonFacts,
) -> String {
    let inputs: Vec<layers::Entry> = entries
        .iter()
        .filter(|e| e.kind == layers::EntryKind::Dir || e.path.ends_with(".py"))
        .cloned()
        .collect();
    plan::bytecode_key(&plan::app_key(&inputs, digests, opts.epoch), &facts.version)
}

pub fn build_app_layers(
    opts: &LayerOptions,
    cache: &LayerStore,
    facts: &PythonFacts,
    owner: Owner,
) -> Result<(Vec<Built>, Omitted)> {
    let recipe = &opts.recipe;
    let Some(source_dir) = &recipe.app.source else {
        return Ok(Default::default());
    };
    let excludes = excludes_with_outputs(opts, source_dir);
    // A file rewritten between the two reads (key, then pack) fails the
    // attempt without caching anything; one more attempt reads it settled.
    match app_layers_once(opts, cache, facts, owner, source_dir, &excludes) {
        Err(e)
            if e.kind == ErrorKind::Other && e.message.contains(layers::SourceError::CHANGED) =>
        {
            opts.log
                .step("an app file changed during the build; reading the app again");
            app_layers_once(opts, cache, facts, owner, source_dir, &excludes)
        }
        other => other,
    }
}

fn app_layers_once(
    opts: &LayerOptions,
    cache: &LayerStore,
    facts: &PythonFacts,
    owner: Owner,
    source_dir: &Path,
    excludes: &[String],
) -> Result<(Vec<Built>, Omitted)> {
    let recipe = &opts.recipe;
    let collected = app::collect(&app::AppSource {
        source_dir,
        destination: &recipe.app.destination,
        excludes,
        owner,
    })
    .map_err(|e| {
        let hint = e.hint(source_dir);
        Error::wrap(ErrorKind::Input, e, hint)
    })?;
    for warning in &collected.warnings {
        eprintln!("warning: {warning}");
    }
    let entries = collected.entries;
    let digests =
        plan::file_digests(&entries).map_err(source_error("cannot read the app's files"))?;
    let key = plan::app_key(&entries, &digests, opts.epoch);
    let files_layer = || {
        cached_layer(
            cache,
            &key,
            &format!("slipway: app → {}", recipe.app.destination),
            LayerKind::App,
            opts,
            || {
                let checks = layers::tarball::Checks {
                    digests: digests.clone(),
                    ..Default::default()
                };
                Ok((entries.clone(), None, checks))
            },
        )
    };
    if !recipe.app.bytecode {
        return Ok((vec![files_layer()?], Vec::new()));
    }
    if !entries.iter().any(|e| e.path.ends_with(".py")) {
        let left_out = omitted(
            LayerKind::AppBytecode,
            "the app has no .py files to compile",
        );
        return Ok((vec![files_layer()?], vec![left_out]));
    }
    let bkey = bytecode_key(&entries, &digests, opts, facts);
    let bytecode_layer = || {
        cached_layer(
            cache,
            &bkey,
            "slipway: app bytecode",
            LayerKind::AppBytecode,
            opts,
            || {
                let sources = layers::python_sources(&entries);
                let read = layers::verified_source_reader(&entries, &digests);
                compile(opts, cache, facts, &sources, &read, &entries, owner)
                    .map(|(dir, e)| (e, Some(dir), Default::default()))
            },
        )
    };
    // The two layers share only the read-only entries: packing the files
    // overlaps the compiler's start-up and compile (the one-file rebuild's
    // critical path).
    let (files, bytecode) = std::thread::scope(|s| {
        let files = s.spawn(files_layer);
        let bytecode = bytecode_layer();
        (
            files.join().expect("the app files layer panicked"),
            bytecode,
        )
    });
    Ok((vec![files?, bytecode?], Vec::new()))
}
