//! The fuzz targets' bodies, shared by the cargo-fuzz binaries
//! (`fuzz_targets/*.rs`, nightly + libFuzzer) and the main crate's stable
//! smoke test (`tests/fuzz_smoke.rs` includes this file with `#[path]`).
//!
//! Each takes arbitrary bytes and must never panic; where a parse succeeds,
//! it also checks a property the rest of slipway relies on.

use slipway::error::Hint;
use slipway::facts::{self, LayerScan};
use slipway::oci::{self, Index, Manifest};
use slipway::platform::{Libc, Platform};
use slipway::recipe::{self, StatedFacts};
use slipway::reference::Reference;
use std::path::Path;

/// `slipway::recipe::parse` on any text: a recipe or an error, never a
/// panic (the error paths look up keys and lines by byte offsets).
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match recipe::parse(text, Path::new("fuzz/recipe.toml")) {
        Ok(recipe) => {
            assert!(
                !recipe.platforms.is_empty(),
                "a recipe always has a platform"
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("fuzz/recipe.toml"),
                "errors name the file: {message}"
            );
            let _ = e.hint();
        }
    }
}

/// `Reference::parse`: what it accepts prints as a reference that parses
/// back to the same thing (slipway prints references into annotations,
/// reports and errors, and users paste them back).
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Reference::parse(text) {
        Ok(r) => {
            assert!(!r.registry.is_empty() && !r.repository.is_empty(), "{r:?}");
            assert!(r.tag.is_some() || r.digest.is_some(), "{r:?}");
            let printed = r.to_string();
            let again = Reference::parse(&printed)
                .unwrap_or_else(|e| panic!("`{text}` → `{printed}` does not parse: {e}"));
            assert_eq!(again, r, "`{text}` → `{printed}`");
            assert!(!r.reference_str().is_empty());
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// Manifests and indexes as slipway reads them from registries and
/// layouts: whatever parses re-serialises canonically, and the canonical
/// bytes parse back to the same bytes.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let bytes = oci::to_canonical_bytes(&manifest);
        let again: Manifest = serde_json::from_slice(&bytes).expect("canonical manifest parses");
        assert_eq!(oci::to_canonical_bytes(&again), bytes);
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        let bytes = oci::to_canonical_bytes(&index);
        let again: Index = serde_json::from_slice(&bytes).expect("canonical index parses");
        assert_eq!(oci::to_canonical_bytes(&again), bytes);
        for entry in &index.manifests {
            let _ = oci::is_index(&entry.media_type) || oci::is_manifest(&entry.media_type);
        }
    }
}

/// `facts::detect` on any config JSON (and, from the first byte, with or
/// without a layer scan and stated facts): facts or an error, never a panic.
pub fn config(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let platform = Platform::parse("linux/amd64").expect("a platform");
    let mut stated = StatedFacts::default();
    if selector & 1 != 0 {
        stated.version = Some("3.13".into());
    }
    if selector & 2 != 0 {
        stated.libc = Some(Libc::Musl);
    }
    if selector & 4 != 0 {
        stated.interpreter = Some("/usr/local/bin/python3.13".into());
        stated.site_packages = Some("/usr/local/lib/python3.13/site-packages".into());
    }
    let mut scan = LayerScan::default();
    if selector & 8 != 0 {
        // Paths named by the config's own strings, so they can meet.
        collect_strings(&config, &mut |s| {
            scan.paths
                .insert(s.trim_start_matches('/').to_string(), None);
        });
        scan.paths.insert("lib/ld-musl-x86_64.so.1".into(), None);
    }
    let scan = (selector & 16 != 0).then_some(&scan);
    let _ = facts::needs_scan(&config, &stated);
    let _ = facts::config_python_version(&config);
    match facts::detect("fuzz/base", &platform, &config, scan, &stated) {
        Ok(found) => {
            assert!(!found.version.is_empty(), "{found:?}");
            let json = serde_json::to_vec(&found).expect("facts serialise");
            let again: facts::PythonFacts = serde_json::from_slice(&json).expect("facts parse");
            assert_eq!(again, found);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            let _ = e.hint();
        }
    }
}

fn collect_strings(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, f)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, f)),
        _ => {}
    }
}

/// `.dockerignore` text, then (after a NUL) paths one per line: patterns
/// parse or fail with a reason, never a panic, and matching keeps Docker's
/// parent rule (an excluded dir excludes what is under it unless a `!`
/// pattern re-includes it; with no `!` pattern that is unconditional).
pub fn dockerignore(data: &[u8]) {
    use slipway::layers::dockerignore::Matcher;
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let mut matcher = Matcher::default();
    if let Err((line, reason)) = matcher.add_file_text(patterns) {
        assert!(!line.is_empty() && !reason.is_empty());
        return;
    }
    let reincludes = patterns.lines().any(|l| l.trim().starts_with('!'));
    for path in paths.lines().take(64) {
        let path = path.trim_matches('/');
        if path.is_empty() {
            continue;
        }
        let excluded = matcher.is_excluded(path);
        if excluded && !reincludes {
            assert!(
                matcher.is_excluded(&format!("{path}/child")),
                "`{path}` is excluded but `{path}/child` is not"
            );
        }
        if excluded {
            let _ = matcher.must_descend(path);
        }
    }
}
