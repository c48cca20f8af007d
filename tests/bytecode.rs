//! The bytecode compiler pool and the per-wheel store, with real wheels, real
//! uv and a real CPython 3.13: the same layer bytes whatever the number of
//! workers, and a new combination of known wheels compiles only the new one.

mod common;

use common::fixtures::{repo_root, wheelhouse};
use common::skip_or_fail;
use slipway::layers::bytecode::{self, wheels};
use slipway::layers::sitepackages::{self, PythonLayout, UvInstall};
use slipway::layers::{normalise_over, tarball, Entry, Owner};
use std::path::{Path, PathBuf};

const SITE: &str = "/usr/local/lib/python3.13/site-packages";

fn python313() -> Option<PathBuf> {
    if skip_or_fail("uv") {
        return None;
    }
    Some(
        bytecode::find_python("3.13", None, None)
            .expect("a CPython 3.13 (scripts/setup installs one)"),
    )
}

/// Installs `requirements` (pinned names from the demo's list) from the
/// wheelhouse with real uv and maps them onto the image's site-packages.
fn site_packages(python: &Path, wheels: &Path, dir: &Path, requirements: &[&str]) -> Vec<Entry> {
    let pins =
        std::fs::read_to_string(repo_root().join("recipes/fastapi-demo/requirements.txt")).unwrap();
    let chosen: Vec<&str> = pins
        .lines()
        .filter(|l| {
            requirements
                .iter()
                .any(|r| l.starts_with(&format!("{r}==")))
        })
        .collect();
    assert_eq!(
        chosen.len(),
        requirements.len(),
        "{requirements:?} in {pins}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let list = dir.join("requirements.txt");
    std::fs::write(&list, chosen.join("\n")).unwrap();
    let staging = dir.join("prefix");
    sitepackages::install(&UvInstall {
        uv: PathBuf::from("uv"),
        host_python: python.to_path_buf(),
        requirements: vec![list],
        require_hashes: false,
        wheels: Vec::new(),
        python_platform: "x86_64-manylinux_2_36".into(),
        python_version: "3.13".into(),
        index_url: None,
        extra_index_urls: Vec::new(),
        find_links: vec![wheels.to_string_lossy().into_owned()],
        offline: true,
        allow_sdist: false,
        staging: staging.clone(),
    })
    .unwrap();
    let layout = PythonLayout {
        site_packages: SITE.into(),
        bin_dir: "/usr/local/bin".into(),
        interpreter: "/usr/local/bin/python3.13".into(),
    };
    let entries = sitepackages::collect(&staging, &layout, Owner::default()).unwrap();
    slipway::layers::normalise(entries, Owner::default())
}

fn layer_digest(entries: Vec<Entry>, lower: &[Entry], out: &Path) -> String {
    let entries = normalise_over(entries, lower);
    tarball::write_layer(&entries, 0, out)
        .unwrap()
        .digest
        .to_string()
}

/// The cpython #129724 reproducer: `b.py` compiles to other bytes when the
/// same process compiled `a.py` first. Plus enough files for several units.
fn app_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = vec![
        ("a.py".to_string(), "import foo\n".to_string()),
        (
            "b.py".to_string(),
            "a = {\"foo\", 2, 3}\n\ndef f():\n    b = {\"foo\", 2, 3}\n".to_string(),
        ),
    ];
    for i in 0..3 * bytecode::UNIT_FILES {
        let body = format!("X = {{'k{i}', {i}, 'foo'}}\ndef f{i}(y):\n    return y in X\n");
        files.push((format!("pkg/m{i:03}.py"), body));
    }
    files
        .into_iter()
        .map(|(rel, body)| {
            let path = dir.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
            (path, format!("/app/{rel}"))
        })
        .collect()
}

#[test]
fn bytecode_layers_are_byte_identical_with_one_and_two_workers() {
    let Some(python) = python313() else { return };
    let Some(wheels) = wheelhouse() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sources = app_tree(&tmp.path().join("app"));
    let mut digests = Vec::new();
    for workers in [1, 2, 3] {
        let out = tmp.path().join(format!("app-{workers}"));
        let compiled = bytecode::compile_with_workers(
            &python,
            &sources,
            &bytecode::read_file,
            &out,
            Owner::default(),
            workers,
        )
        .unwrap();
        assert_eq!(compiled.compiled_files, sources.len());
        assert_eq!(
            compiled.entries.len(),
            sources.len() + 2,
            "files + 2 __pycache__"
        );
        digests.push(layer_digest(compiled.entries, &[], &out.join("layer.tgz")));
    }
    assert_eq!(digests[0], digests[1], "1 vs 2 workers");
    assert_eq!(digests[0], digests[2], "1 vs 3 workers");

    // Site-packages: per-wheel units, 1 and 2 workers, each with a fresh store.
    let entries = site_packages(
        &python,
        &wheels,
        &tmp.path().join("sp"),
        &["h11", "idna", "click"],
    );
    let groups = wheels::groups(&entries, SITE).unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["click-8.5.1", "h11-0.16.0", "idna-3.20"]);
    let mut digests = Vec::new();
    for workers in [1, 2] {
        let cache = tmp.path().join(format!("cache-{workers}"));
        let scratch = cache.join("scratch");
        let compiled = wheels::compile_groups(
            &python,
            &groups,
            &wheels::WheelStore::in_cache(&cache),
            &scratch,
            Owner::default(),
            workers,
        )
        .unwrap();
        digests.push(layer_digest(
            compiled.entries,
            &entries,
            &cache.join("layer.tgz"),
        ));
    }
    assert_eq!(digests[0], digests[1], "site-packages, 1 vs 2 workers");
}

#[test]
fn a_wheel_compiles_the_same_whatever_was_compiled_before() {
    let Some(python) = python313() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sources = app_tree(&tmp.path().join("app"));
    let b_only: Vec<_> = sources[1..2].to_vec();
    let pyc = "app/__pycache__/b.cpython-313.pyc";
    let read = |entries: &[Entry]| {
        slipway::layers::read_entry(entries.iter().find(|e| e.path == pyc).unwrap()).unwrap()
    };
    // a.py and b.py in one group share a unit: b's bytes show the history.
    let together = bytecode::compile_with_workers(
        &python,
        &sources[..2],
        &bytecode::read_file,
        &tmp.path().join("t"),
        Owner::default(),
        1,
    )
    .unwrap();
    let alone = bytecode::compile_with_workers(
        &python,
        &b_only,
        &bytecode::read_file,
        &tmp.path().join("b"),
        Owner::default(),
        1,
    )
    .unwrap();
    assert_ne!(
        read(&together.entries),
        read(&alone.entries),
        "cpython #129724 reproduced"
    );
    // In two groups (two wheels), b.py compiles as if alone, on one worker too.
    let groups = vec![
        wheels::Group {
            name: "a".into(),
            sources: sources[..1].to_vec(),
        },
        wheels::Group {
            name: "b".into(),
            sources: b_only.clone(),
        },
    ];
    let cache = tmp.path().join("cache");
    let split = wheels::compile_groups(
        &python,
        &groups,
        &wheels::WheelStore::in_cache(&cache),
        &cache.join("scratch"),
        Owner::default(),
        1,
    )
    .unwrap();
    assert_eq!(read(&split.entries), read(&alone.entries));
}

#[test]
fn adding_one_dependency_compiles_only_that_wheel() {
    let Some(python) = python313() else { return };
    let Some(wheels) = wheelhouse() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let compile = |entries: &[Entry], cache: &Path| {
        let groups = wheels::groups(entries, SITE).unwrap();
        let scratch = tempfile::tempdir_in(tmp.path()).unwrap();
        let compiled = wheels::compile_groups(
            &python,
            &groups,
            &wheels::WheelStore::in_cache(cache),
            scratch.path(),
            Owner::default(),
            2,
        )
        .unwrap();
        let out = scratch.path().join("layer.tgz");
        (
            compiled.compiled_files,
            groups,
            layer_digest(compiled.entries, entries, &out),
        )
    };
    let store = tmp.path().join("store");
    let two = site_packages(&python, &wheels, &tmp.path().join("two"), &["h11", "idna"]);
    let (first, groups, _) = compile(&two, &store);
    let two_files: usize = groups.iter().map(|g| g.sources.len()).sum();
    assert_eq!(first, two_files);
    assert!(first > 10, "{first}");

    let three = site_packages(
        &python,
        &wheels,
        &tmp.path().join("three"),
        &["h11", "idna", "click"],
    );
    let (second, groups, warm) = compile(&three, &store);
    let click = groups
        .iter()
        .find(|g| g.name.starts_with("click-"))
        .unwrap();
    assert_eq!(
        second,
        click.sources.len(),
        "only click's files are compiled"
    );
    let (again, _, _) = compile(&three, &store);
    assert_eq!(again, 0, "nothing new the third time");

    let (fresh, _, cold) = compile(&three, &tmp.path().join("fresh-store"));
    assert_eq!(fresh, second + first);
    assert_eq!(
        warm, cold,
        "assembled from the store = a fresh full compile"
    );
}

/// The app's bytecode is compiled from the bytes its key was made from: the
/// pool reads each source through the app's reader (the compiler never opens
/// it), and a file rewritten after it was digested fails the compile as a
/// changed source, writing no `.pyc` for it.
#[test]
fn app_bytecode_compiles_the_bytes_its_key_names() {
    let Some(python) = python313() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("a.py"), "A = 1\n").unwrap();
    std::fs::write(app.join("b.py"), "B = 2\n").unwrap();
    let entries = slipway::layers::app::collect(&slipway::layers::app::AppSource {
        source_dir: &app,
        destination: "/app",
        excludes: &[],
        owner: Owner::default(),
    })
    .unwrap()
    .entries;
    let digests = slipway::layers::plan::file_digests(&entries).unwrap();
    let sources = slipway::layers::python_sources(&entries);
    let read = slipway::layers::verified_source_reader(&entries, &digests);
    let out = tmp.path().join("out");
    let compiled =
        bytecode::compile_with_workers(&python, &sources, &read, &out, Owner::default(), 2)
            .unwrap();
    assert_eq!(compiled.compiled_files, 2);

    // Same size, other bytes: only the digest can tell.
    std::fs::write(app.join("b.py"), "B = 3\n").unwrap();
    let out = tmp.path().join("out-changed");
    let err = bytecode::compile_with_workers(&python, &sources, &read, &out, Owner::default(), 1)
        .unwrap_err();
    assert!(matches!(err, bytecode::BytecodeError::Source(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("b.py` changed while slipway was reading it"),
        "{text}"
    );
    assert!(
        !out.join("app/__pycache__/b.cpython-313.pyc").exists(),
        "no .pyc from bytes the key doesn't name"
    );
}

/// What is compiled ahead, from the wheels themselves while uv installs, is
/// what the installed site-packages needs: afterwards the per-wheel store
/// has every group (nothing is compiled) and the layer is byte-identical to
/// one compiled from the installed files into an empty store.
#[test]
fn bytecode_compiled_ahead_from_the_wheels_is_what_the_install_needs() {
    let Some(python) = python313() else { return };
    let Some(wheels) = wheelhouse() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let installed = site_packages(
        &python,
        &wheels,
        &tmp.path().join("install"),
        &["h11", "idna", "click"],
    );
    let store = wheels::WheelStore::in_cache(&tmp.path().join("ahead"));
    let requirements = [tmp.path().join("install/requirements.txt")];
    let find_links = [wheels.to_string_lossy().into_owned()];
    let local = slipway::layers::local_wheels::pinned(
        &requirements,
        &find_links,
        "x86_64-manylinux_2_36",
        "3.13",
    );
    let ahead = |installed: bool| {
        let scratch = tempfile::tempdir_in(tmp.path()).unwrap();
        bytecode::ahead::compile_ahead(&bytecode::ahead::Ahead {
            python: &python,
            wheels: &local,
            site_packages: SITE,
            tests: true,
            store: &store,
            scratch: scratch.path(),
            workers: 2,
            enough: &std::sync::atomic::AtomicBool::new(installed),
        })
        .unwrap()
    };
    // Told the install is done before it starts: it takes no work and
    // stores nothing.
    assert_eq!(ahead(true), 0);
    assert!(!tmp.path().join("ahead").exists(), "nothing stored");
    let ahead = ahead(false);
    let compile = |store: &wheels::WheelStore| {
        let groups = wheels::groups(&installed, SITE).unwrap();
        let scratch = tempfile::tempdir_in(tmp.path()).unwrap();
        let compiled =
            wheels::compile_groups(&python, &groups, store, scratch.path(), Owner::default(), 2)
                .unwrap();
        let sources: usize = groups
            .iter()
            .filter(|g| !g.name.is_empty())
            .map(|g| g.sources.len())
            .sum();
        let out = scratch.path().join("layer.tgz");
        let digest = layer_digest(compiled.entries, &installed, &out);
        (compiled.compiled_files, sources, digest)
    };
    let (after_ahead, sources, from_store) = compile(&store);
    assert_eq!(ahead, sources, "every installed wheel's files, no more");
    assert_eq!(after_ahead, 0, "nothing left to compile after the install");
    let fresh = wheels::WheelStore::in_cache(&tmp.path().join("fresh"));
    let (compiled, _, full) = compile(&fresh);
    assert_eq!(compiled, sources);
    assert_eq!(from_store, full);
}
