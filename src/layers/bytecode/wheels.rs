//! Site-packages bytecode compiled once per wheel, ever.
//!
//! A wheel's `.pyc` files depend only on its `.py` files, where they are
//! installed and the interpreter's magic number; the pool compiles each wheel
//! in units of its own (never shared with another wheel), so its bytes don't
//! depend on which other wheels are installed. Each wheel's output is kept in
//! a [`WheelStore`] under a key of exactly those inputs, and the layer is
//! assembled from the store: a new combination of known wheels compiles only
//! the wheels never seen before, with the same bytes as a full compile.

use super::{pool, pyc_entries, BytecodeError, Compiled};
use crate::digest::Digest;
use crate::layers::{Entry, EntryKind, Owner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bump when what a stored wheel holds (or how it is keyed) changes.
const STORE_FORMAT: u32 = 3;

/// Per-wheel bytecode: `<root>/<key>/index.json` and the packs its units
/// wrote, `<root>/<key>/files/unit-N.pack`.
pub struct WheelStore {
    root: PathBuf,
}

/// What a stored wheel holds: its `.pyc` image paths, each with its pack
/// (under `files/`), offset and size; and the sources that did not compile.
#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    compiled: Vec<(String, String, u64, u64)>,
    skipped: Vec<(String, String)>,
}

/// The `.py` sources of one installed distribution (or of none: files no
/// RECORD claims), as (file on disk, absolute image path).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub sources: Vec<(PathBuf, String)>,
}

impl WheelStore {
    /// The store inside a cache dir (same file system as its scratch dirs).
    pub fn in_cache(cache_root: &Path) -> WheelStore {
        WheelStore {
            root: cache_root.join(format!("bytecode-wheels-v{STORE_FORMAT}")),
        }
    }

    /// The stored output for `key`, if complete.
    fn get(&self, key: &str) -> Option<pool::Answer> {
        let dir = self.root.join(key);
        let index: Index =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
        let mut compiled = Vec::with_capacity(index.compiled.len());
        let mut packs: BTreeMap<String, u64> = BTreeMap::new();
        for (pyc, pack, offset, size) in index.compiled {
            let plain = !pack.is_empty() && !pack.contains('/') && !pack.starts_with('.');
            if !plain || pyc.split('/').any(|part| part == "..") {
                return None;
            }
            let file = dir.join("files").join(&pack);
            if !packs.contains_key(&pack) {
                packs.insert(pack.clone(), std::fs::metadata(&file).ok()?.len());
            }
            // A pack shorter than its index says is an incomplete entry.
            if offset.checked_add(size)? > packs[&pack] {
                return None;
            }
            let pack = file;
            compiled.push((pyc, pool::PycSlice { pack, offset, size }));
        }
        Some(pool::Answer {
            compiled,
            failed: index.skipped,
        })
    }

    /// Moves a finished `dir` (with `files/`) in under `key`, replacing an
    /// incomplete entry; another build's identical entry wins a race.
    fn put(&self, key: &str, dir: &Path, index: &Index, trash: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::write(dir.join("index.json"), serde_json::to_vec(index)?)?;
        let target = self.root.join(key);
        if std::fs::rename(dir, &target).is_ok() || self.get(key).is_some() {
            return Ok(());
        }
        // An incomplete entry (a killed build's): move it aside, then retry.
        std::fs::rename(&target, trash)?;
        std::fs::rename(dir, &target)
    }
}

/// Whether `path` (an image path, with or without its leading `/`) lies in
/// a `tests` or `test` directory below `site_packages`: a package's own test
/// suite (numpy, scipy and pandas ship theirs), or a stray top-level
/// `tests` package. `numpy/testing` and the like are code, not tests.
pub fn in_tests_dir(path: &str, site_packages: &str) -> bool {
    let Some(below) = path
        .trim_start_matches('/')
        .strip_prefix(site_packages.trim_matches('/'))
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return false;
    };
    let mut dirs = below.split('/').rev().skip(1);
    dirs.any(|dir| dir == "tests" || dir == "test")
}

/// Groups the `.py` files among `entries` by the distribution whose
/// `*.dist-info/RECORD` (under `site_packages`, an image path) lists them.
pub fn groups(entries: &[Entry], site_packages: &str) -> Result<Vec<Group>, BytecodeError> {
    let site = site_packages.trim_matches('/');
    let mut owner_of: BTreeMap<String, String> = BTreeMap::new();
    for entry in entries {
        let EntryKind::File { source, .. } = &entry.kind else {
            continue;
        };
        let Some(dist) = entry
            .path
            .strip_prefix(site)
            .and_then(|p| p.strip_prefix('/'))
            .and_then(|p| p.strip_suffix(".dist-info/RECORD"))
            .filter(|d| !d.contains('/'))
        else {
            continue;
        };
        let record = std::fs::read_to_string(source).map_err(|e| BytecodeError::Io {
            path: source.clone(),
            source: e,
        })?;
        for path in crate::layers::wheelfix::record_paths(&record) {
            let image = crate::layers::wheelfix::join_relative(site, &path);
            if image.ends_with(".py") {
                owner_of.entry(image).or_insert_with(|| dist.to_string());
            }
        }
    }
    let mut by_name: BTreeMap<String, Group> = BTreeMap::new();
    for (source, image) in crate::layers::python_sources(entries) {
        let name = owner_of
            .get(image.trim_start_matches('/'))
            .cloned()
            .unwrap_or_default();
        let group = by_name.entry(name.clone()).or_insert_with(|| Group {
            name,
            sources: Vec::new(),
        });
        group.sources.push((source, image));
    }
    Ok(by_name.into_values().collect())
}

/// The store key of a group: its image paths and source digests, the
/// interpreter's magic number and the unit size.
fn group_key(group: &Group, magic: &str) -> Result<String, BytecodeError> {
    let mut listing = Vec::with_capacity(group.sources.len());
    for (source, image) in &group.sources {
        let (digest, _) = crate::digest::digest_file(source).map_err(|e| BytecodeError::Io {
            path: source.clone(),
            source: e,
        })?;
        listing.push((image.clone(), digest));
    }
    Ok(key_of(listing, magic))
}

/// The store key of a wheel's `.py` files, given as (image path, digest).
pub(super) fn key_of(mut listing: Vec<(String, Digest)>, magic: &str) -> String {
    listing.sort();
    let listing: Vec<(&str, String)> = listing
        .iter()
        .map(|(image, digest)| (image.as_str(), digest.to_string()))
        .collect();
    let inputs = serde_json::to_vec(&(
        "wheel-bytecode",
        STORE_FORMAT,
        magic,
        "unchecked-hash",
        pool::UNIT_FILES,
        listing,
    ))
    .expect("serialisable");
    Digest::of(&inputs).hex().to_string()
}

/// Compiles the groups the store lacks (with `workers` processes, in
/// `scratch`, a dir on the store's file system) and returns every group's
/// `.pyc` entries from the store. `compiled_files` counts only new work.
pub fn compile_groups(
    python: &Path,
    groups: &[Group],
    store: &WheelStore,
    scratch: &Path,
    owner: Owner,
    workers: usize,
) -> Result<Compiled, BytecodeError> {
    // Only a build that compiles gets here: no memo across builds (the
    // process remembers what the stdlib layer asked).
    let magic = super::magic(python, None)?;
    let keys = groups
        .iter()
        .map(|g| group_key(g, &magic))
        .collect::<Result<Vec<_>, _>>()?;
    let keyed: Vec<(&str, &[(PathBuf, String)])> = keys
        .iter()
        .zip(groups)
        .map(|(key, group)| (key.as_str(), group.sources.as_slice()))
        .collect();
    let never = std::sync::atomic::AtomicBool::new(false);
    let compiled_files = compile_missing(
        python,
        &keyed,
        store,
        scratch,
        &pool::read_file,
        workers,
        &never,
    )?;
    let mut compiled = Vec::new();
    let mut skipped = Vec::new();
    for key in &keys {
        let stored = store.get(key).ok_or_else(|| BytecodeError::Io {
            path: store.root.join(key),
            source: std::io::Error::other("stored bytecode disappeared"),
        })?;
        compiled.extend(stored.compiled);
        skipped.extend(stored.failed);
    }
    Ok(Compiled {
        entries: pyc_entries(compiled, owner),
        skipped,
        compiled_files,
    })
}

/// Compiles each (key, sources) group the store lacks, in `scratch`, and
/// puts it in the store; the number of files compiled. Once `enough` is set
/// no new group is started; one not finished is left out of the store.
pub(super) fn compile_missing(
    python: &Path,
    groups: &[(&str, &[(PathBuf, String)])],
    store: &WheelStore,
    scratch: &Path,
    read: &pool::ReadSource<'_>,
    workers: usize,
    enough: &std::sync::atomic::AtomicBool,
) -> Result<usize, BytecodeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BytecodeError::Io { path, source }
    };
    let missing: Vec<usize> = (0..groups.len())
        .filter(|&i| store.get(groups[i].0).is_none())
        .collect();
    let mut units = Vec::new();
    let mut unit_group = Vec::new();
    for &i in &missing {
        let dir = scratch.join(format!("g{i}")).join("files");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for unit in pool::units(groups[i].1, &dir)? {
            units.push(unit);
            unit_group.push(i);
        }
    }
    let mut fresh: BTreeMap<usize, Index> = missing
        .iter()
        .map(|&i| {
            (
                i,
                Index {
                    compiled: Vec::new(),
                    skipped: Vec::new(),
                },
            )
        })
        .collect();
    let mut compiled_files = 0;
    let answers = pool::run_until(python, &units, read, workers, enough)?;
    // A group with a unit not compiled (stopped early) is not stored.
    for (answer, i) in answers.iter().zip(&unit_group) {
        if answer.is_none() {
            fresh.remove(i);
        }
    }
    for (answer, i) in answers.into_iter().zip(unit_group) {
        let (Some(answer), Some(index)) = (answer, fresh.get_mut(&i)) else {
            continue;
        };
        compiled_files += answer.compiled.len() + answer.failed.len();
        for (pyc, slice) in answer.compiled {
            let pack = slice.pack.file_name().unwrap_or_default();
            let pack = pack.to_string_lossy().into_owned();
            index.compiled.push((pyc, pack, slice.offset, slice.size));
        }
        index.skipped.extend(answer.failed);
    }
    for (i, index) in &fresh {
        let dir = scratch.join(format!("g{i}"));
        let trash = scratch.join(format!("trash{i}"));
        store
            .put(groups[*i].0, &dir, index, &trash)
            .map_err(io(&dir))?;
    }
    Ok(compiled_files)
}

#[cfg(test)]
mod tests {
    use super::{in_tests_dir, Index, WheelStore};

    #[test]
    fn a_stored_wheel_is_believed_only_when_its_packs_hold_what_the_index_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = WheelStore::in_cache(dir.path());
        let entry = |key: &str, compiled: Vec<(String, String, u64, u64)>, pack_len: usize| {
            let files = store.root.join(key).join("files");
            std::fs::create_dir_all(&files).unwrap();
            std::fs::write(files.join("unit-0.pack"), vec![7u8; pack_len]).unwrap();
            let index = Index {
                compiled,
                skipped: vec![("/a/bad.py".into(), "why".into())],
            };
            let json = serde_json::to_vec(&index).unwrap();
            std::fs::write(store.root.join(key).join("index.json"), json).unwrap();
        };
        let pyc = |path: &str, pack: &str, offset, size| {
            (path.to_string(), pack.to_string(), offset, size)
        };
        entry(
            "good",
            vec![
                pyc("/a/x.pyc", "unit-0.pack", 0, 4),
                pyc("/a/y.pyc", "unit-0.pack", 4, 6),
            ],
            10,
        );
        let got = store.get("good").expect("a complete entry");
        assert_eq!(got.compiled.len(), 2);
        assert_eq!((got.compiled[1].1.offset, got.compiled[1].1.size), (4, 6));
        assert!(got.compiled[1].1.pack.ends_with("good/files/unit-0.pack"));
        assert_eq!(got.failed.len(), 1);
        entry("short", vec![pyc("/a/x.pyc", "unit-0.pack", 4, 7)], 10);
        entry(
            "elsewhere",
            vec![pyc("/a/x.pyc", "../good/files/unit-0.pack", 0, 1)],
            10,
        );
        entry("hidden", vec![pyc("/a/x.pyc", ".unit-0.pack", 0, 1)], 10);
        entry("missing", vec![pyc("/a/x.pyc", "unit-1.pack", 0, 1)], 10);
        entry(
            "escapes",
            vec![pyc("/a/../../x.pyc", "unit-0.pack", 0, 1)],
            10,
        );
        entry(
            "overflow",
            vec![pyc("/a/x.pyc", "unit-0.pack", u64::MAX, 2)],
            10,
        );
        for key in [
            "short",
            "elsewhere",
            "hidden",
            "missing",
            "escapes",
            "overflow",
            "absent",
        ] {
            assert!(store.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn test_dirs_are_found_below_site_packages_only() {
        let site = "/usr/local/lib/python3.13/site-packages";
        for path in [
            "usr/local/lib/python3.13/site-packages/numpy/_core/tests/test_a.py",
            "/usr/local/lib/python3.13/site-packages/tests/__init__.py",
            "/usr/local/lib/python3.13/site-packages/pkg/test/x/y.py",
        ] {
            assert!(in_tests_dir(path, site), "{path}");
        }
        for path in [
            "/usr/local/lib/python3.13/site-packages/numpy/testing/utils.py",
            "/usr/local/lib/python3.13/site-packages/pkg/tests.py",
            "/usr/local/lib/python3.13/site-packages/pkg/test_tests.py",
            "/usr/local/lib/python3.13/site-packages-tests/a/tests/b.py",
            "/usr/local/lib/python3.13/tests/x.py",
            "/app/tests/test_app.py",
        ] {
            assert!(!in_tests_dir(path, site), "{path}");
        }
    }
}
