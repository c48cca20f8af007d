//! `[python] stdlib_bytecode`, end to end on the runnable stand-ins: the
//! demo app built with `"all"`, `"imported"` and without the option; the
//! stdlib-bytecode layer's `.pyc` paths, magic and flags; the same bytes with
//! 1 and 2 compiler workers and across caches; and a real interpreter in the
//! unpacked image (rootless chroot, read-only root) loading the stdlib from
//! that layer instead of compiling it. Also `[python] tests_bytecode`: the
//! site-packages bytecode of packages' test dirs, left out unless asked.

mod common;
#[path = "support/inputs.rs"]
mod inputs;

use common::fixtures::{repo_root, wheelhouse};
use common::runnable::{unpack, Base, Unpacked};
use common::tools::find_python313;
use common::{skip_or_fail, skip_or_fail_because};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const STDLIB: &str = "usr/local/lib/python3.13/";

fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let tools = ["uv", "skopeo", "umoci", "unshare", "chroot"];
    if tools.iter().any(|t| skip_or_fail(t)) {
        return None;
    }
    let wheels = wheelhouse()?;
    let python = find_python313().expect("a CPython 3.13 (scripts/setup installs one)");
    Some((wheels, python))
}

/// [`prerequisites`] and the runnable python:3.13-slim stand-in's layout:
/// (wheelhouse, CPython 3.13, base layout).
fn slim_prerequisites() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let (wheels, python) = prerequisites()?;
    Some((wheels, python, Base::Slim.layout()?))
}

/// The demo app and its requirements in `dir`, with a recipe on `base`
/// holding `stdlib_bytecode = MODE` (none for `None`).
fn demo_recipe(dir: &Path, base: Base, mode: Option<&str>) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    let demo = repo_root().join("recipes/fastapi-demo");
    std::fs::copy(demo.join("app.py"), app.join("app.py")).unwrap();
    std::fs::copy(demo.join("requirements.txt"), dir.join("requirements.txt")).unwrap();
    let line = mode.map_or(String::new(), |m| format!("stdlib_bytecode = \"{m}\"\n"));
    let recipe = format!(
        "base = \"python:{}\"\nplatforms = [\"linux/amd64\"]\nsource_date_epoch = 1700000000\n\
         [python]\nrequirements = [\"requirements.txt\"]\n{line}\
         [app]\nsource = \"app\"\n[image]\nworkdir = \"/app\"\n",
        base.tag()
    );
    let path = dir.join(format!("{}-{}.toml", base.name(), mode.unwrap_or("off")));
    std::fs::write(&path, recipe).unwrap();
    path
}

struct Built {
    report: Value,
    layout: PathBuf,
}

impl Built {
    /// The digest of the layer of `kind` (none: None).
    fn layer(&self, kind: &str) -> Option<String> {
        self.report["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .map(|l| l["digest"].as_str().unwrap().to_string())
    }

    /// (path, bytes) of every file in the layer of `kind`.
    fn files(&self, kind: &str) -> Vec<(String, Vec<u8>)> {
        let digest = self
            .layer(kind)
            .unwrap_or_else(|| panic!("no {kind} layer"));
        let hex = digest.trim_start_matches("sha256:");
        let blob = std::fs::File::open(self.layout.join("blobs/sha256").join(hex)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
        let mut files = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                files.push((path, bytes));
            }
        }
        files
    }
}

/// `slipway build` to an OCI layout with `workers` compiler workers.
fn build(recipe: &Path, base: &Path, wheels: &Path, cache: &Path, workers: usize) -> Built {
    let layout = cache.with_extension(format!(
        "{}-out",
        recipe.file_stem().unwrap().to_string_lossy()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("build").arg(recipe).arg("--json").arg("--quiet");
    inputs::isolate(&mut cmd, cache.parent().unwrap());
    cmd.env("SLIPWAY_CACHE_DIR", cache)
        .env("SLIPWAY_JOBS", workers.to_string())
        .arg("--base-layout")
        .arg(base)
        .args(["--offline", "--find-links"])
        .arg(wheels)
        .arg("--oci-layout")
        .arg(&layout);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "build of {} failed: {}",
        recipe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Built {
        report: serde_json::from_slice(&out.stdout).unwrap(),
        layout,
    }
}

fn python_magic(python: &Path) -> Vec<u8> {
    let out = Command::new(python)
        .args([
            "-I",
            "-c",
            "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The module names of a stdlib-bytecode layer's `.pyc` files, each checked:
/// `STDLIB/…/__pycache__/NAME.cpython-313.pyc`, the interpreter's magic, and
/// the unchecked-hash flags (a root-owned read-only file needs no rewrite).
fn modules_in(files: &[(String, Vec<u8>)], magic: &[u8]) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for (path, bytes) in files {
        let rest = path
            .strip_prefix(STDLIB)
            .unwrap_or_else(|| panic!("{path} is outside the stdlib"));
        let (dir, name) = rest.rsplit_once("__pycache__/").unwrap_or(("", rest));
        let stem = name
            .strip_suffix(".cpython-313.pyc")
            .unwrap_or_else(|| panic!("{path} is not a __pycache__ .pyc"));
        assert!(dir.is_empty() || dir.ends_with('/'), "{path}");
        assert!(rest.contains("__pycache__/"), "{path}");
        assert_eq!(&bytes[..4], magic, "{path}: magic");
        assert_eq!(bytes[4..8], [1, 0, 0, 0], "{path}: unchecked-hash flags");
        let package = dir.trim_end_matches('/').replace('/', ".");
        modules.insert(match (package.as_str(), stem) {
            (p, "__init__") => p.to_string(),
            ("", s) => s.to_string(),
            (p, s) => format!("{p}.{s}"),
        });
    }
    modules
}

/// `python3 -v -c CODE` in the unpacked image, rootless on a read-only root.
fn verbose_import(image: &Unpacked, code: &str) -> String {
    let argv = ["python3", "-v", "-c", code].map(String::from);
    let out = image.command(&argv).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "python3 -c {code:?} failed:\n{log}");
    log
}

/// Stdlib modules compiled from source at import (`code object from /…py`,
/// unquoted) and `.pyc` files the interpreter tried to write.
fn compiled_at_import(log: &str) -> (Vec<&str>, Vec<&str>) {
    let compiled = log
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from /"))
        .filter(|p| p.starts_with(STDLIB) && !p.contains("site-packages"))
        .collect();
    let wrote = log.lines().filter(|l| l.starts_with("# wrote")).collect();
    (compiled, wrote)
}

fn unpacked(built: &Built, dir: &Path) -> Unpacked {
    std::fs::create_dir_all(dir).unwrap();
    unpack(&format!("oci:{}:latest", built.layout.display()), dir)
}

#[test]
fn slim_stdlib_pyc_are_right_reproducible_and_used_on_a_read_only_root() {
    let Some((wheels, python, base)) = slim_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let magic = python_magic(&python);
    let (one, two) = (tmp.path().join("cache-1"), tmp.path().join("cache-2"));

    let mut modules = Vec::new();
    let mut layers = Vec::new();
    for mode in ["all", "imported"] {
        let recipe = demo_recipe(tmp.path(), Base::Slim, Some(mode));
        let a = build(&recipe, &base, &wheels, &one, 1);
        let b = build(&recipe, &base, &wheels, &two, 2);
        assert_eq!(
            a.layer("stdlib-bytecode"),
            b.layer("stdlib-bytecode"),
            "{mode}: 1 and 2 workers, two caches"
        );
        assert_eq!(
            a.report["digest"], b.report["digest"],
            "{mode}: image digest"
        );
        let again = build(&recipe, &base, &wheels, &one, 2);
        assert_eq!(
            a.report["digest"], again.report["digest"],
            "{mode}: rebuilt"
        );
        let stdlib_layer = &again.report["platforms"][0]["layers"][2];
        assert_eq!(stdlib_layer["kind"], "stdlib-bytecode", "lowest new layer");
        assert_eq!(stdlib_layer["reused"], true, "{mode}: cached");
        common::image::validate_layout(&a.layout);
        modules.push(modules_in(&a.files("stdlib-bytecode"), &magic));
        layers.push(a);
    }
    let (all, imported) = (&modules[0], &modules[1]);
    for wanted in [
        "json",
        "json.decoder",
        "asyncio",
        "asyncio.events",
        "encodings.utf_8",
        "typing",
    ] {
        assert!(imported.contains(wanted), "`{wanted}` not in imported");
    }
    assert!(
        imported.is_subset(all),
        "{:?}",
        imported.difference(all).collect::<Vec<_>>()
    );
    assert!(
        imported.len() < all.len(),
        "imported {} vs all {}",
        imported.len(),
        all.len()
    );
    for left_out in ["idlelib", "tkinter", "turtledemo"] {
        assert!(
            !all.iter().any(|m| m.split('.').next() == Some(left_out)),
            "{left_out}"
        );
    }
    assert!(all.contains("turtle") && all.contains("xml.dom.minidom") && all.len() > 400);

    // Without the option: no layer, and the same interpreter compiles the
    // stdlib from source at every start (the control for the checks below).
    let recipe = demo_recipe(tmp.path(), Base::Slim, None);
    let off = build(&recipe, &base, &wheels, &one, 2);
    assert_eq!(off.layer("stdlib-bytecode"), None);
    let image = unpacked(&off, &tmp.path().join("run-off"));
    let log = verbose_import(&image, "import app, json, asyncio");
    let (compiled, _) = compiled_at_import(&log);
    assert!(compiled.len() > 50, "without stdlib bytecode: {compiled:?}");

    for (mode, built) in ["all", "imported"].iter().zip(&layers) {
        let image = unpacked(built, &tmp.path().join(format!("run-{mode}")));
        assert_stdlib_from_pyc(&image, mode);
    }
}

/// The demo's imports load every stdlib module from a `.pyc` (json's and
/// asyncio's among them): none compiled from source, none written.
fn assert_stdlib_from_pyc(image: &Unpacked, what: &str) {
    let log = verbose_import(image, "import app, json, asyncio");
    let (compiled, wrote) = compiled_at_import(&log);
    assert!(
        compiled.is_empty(),
        "{what}: compiled from source: {compiled:?}"
    );
    assert!(wrote.is_empty(), "{what}: wrote {wrote:?}");
    for module in ["json/__pycache__/__init__", "asyncio/__pycache__/events"] {
        let from_pyc = format!("code object from '/{STDLIB}{module}.cpython-313.pyc'");
        assert!(log.contains(&from_pyc), "{what}: {from_pyc} not in:\n{log}");
    }
}

#[test]
fn alpine_imported_stdlib_loads_from_pyc() {
    let Some((wheels, python)) = prerequisites() else {
        return;
    };
    let Some(base) = Base::Alpine.layout() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let recipe = demo_recipe(tmp.path(), Base::Alpine, Some("imported"));
    let built = build(&recipe, &base, &wheels, &tmp.path().join("cache"), 2);
    let modules = modules_in(&built.files("stdlib-bytecode"), &python_magic(&python));
    assert!(modules.contains("asyncio") && modules.contains("json"));
    let image = unpacked(&built, &tmp.path().join("run"));
    assert_stdlib_from_pyc(&image, "alpine, imported");
}

#[test]
fn bad_values_name_the_file_line_and_key_and_exit_2() {
    let work = inputs::Work::new();
    for (value, says) in [
        ("\"everything\"", "`python.stdlib_bytecode` = `everything`"),
        ("true", "stdlib_bytecode"),
    ] {
        let recipe = work.recipe(&format!(
            "base = \"python:3.13-slim\"\n\n[python]\nstdlib_bytecode = {value}\n"
        ));
        let out = inputs::run(&mut work.build_to_layout(&recipe));
        assert_eq!(out.code, Some(2), "{value}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{value}: {}", out.stderr);
        assert!(out.stderr.contains("recipe.toml"), "{}", out.stderr);
        assert!(out.stderr.contains("line 4"), "{value}: {}", out.stderr);
        assert!(
            out.stderr.contains("stdlib_bytecode = \"imported\""),
            "{}",
            out.stderr
        );
        assert!(!work.out().exists(), "nothing written");
    }
}

/// A made-up musl base whose stdlib the test controls: `json` (a package
/// with a relative import), `other`, and `gone` (removed by a whiteout in
/// the second layer).
fn synthetic_base(dir: &Path, with_stdlib: bool) {
    let mut lower = vec![
        ("lib/ld-musl-x86_64.so.1", &b"\x7fELF stub"[..]),
        ("usr/local/bin/python3.13", b"\x7fELF stub"),
    ];
    if with_stdlib {
        lower.extend([
            (
                "usr/local/lib/python3.13/json/__init__.py",
                &b"from .decoder import X\n"[..],
            ),
            ("usr/local/lib/python3.13/json/decoder.py", b"X = 1\n"),
            ("usr/local/lib/python3.13/other.py", b"Y = 2\n"),
            ("usr/local/lib/python3.13/gone.py", b"Z = 3\n"),
            ("usr/local/lib/python3.13/idlelib/run.py", b"W = 4\n"),
        ]);
    }
    let upper = [("usr/local/lib/python3.13/.wh.gone.py", &b""[..])];
    inputs::write_layout(
        dir,
        "3.13-alpine",
        &[inputs::tar_gz(&lower), inputs::tar_gz(&upper)],
        &["PYTHON_VERSION=3.13.14"],
    );
}

#[test]
fn a_base_stdlib_is_read_through_whiteouts_and_an_empty_one_is_refused() {
    if find_python313().is_none()
        && skip_or_fail_because("no CPython 3.13 (scripts/setup installs one)")
    {
        return;
    }
    let work = inputs::Work::new();
    work.write("app/main.py", "import json\n");
    let base = work.path().join("base");
    synthetic_base(&base, true);
    let pyc = |module: &str| format!("{STDLIB}{module}.cpython-313.pyc");
    for (mode, wanted, unwanted) in [
        (
            "all",
            vec![
                "json/__pycache__/__init__",
                "json/__pycache__/decoder",
                "__pycache__/other",
            ],
            vec!["__pycache__/gone", "idlelib/__pycache__/run"],
        ),
        (
            "imported",
            vec!["json/__pycache__/__init__", "json/__pycache__/decoder"],
            vec!["__pycache__/other", "__pycache__/gone"],
        ),
    ] {
        let recipe = work.recipe(&format!(
            "base = \"python:3.13-alpine\"\n[python]\nstdlib_bytecode = \"{mode}\"\n[app]\nsource = \"app\"\n"
        ));
        let out = inputs::run(
            work.build(&recipe)
                .arg("--base-layout")
                .arg(&base)
                .arg("--oci-layout")
                .arg(work.out())
                .arg("--json"),
        );
        assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
        let built = Built {
            report: serde_json::from_str(&out.stdout).unwrap(),
            layout: work.out(),
        };
        let paths: Vec<String> = built
            .files("stdlib-bytecode")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        for module in wanted {
            assert!(
                paths.contains(&pyc(module)),
                "{mode}: {module} not in {paths:?}"
            );
        }
        for module in unwanted {
            assert!(
                !paths.contains(&pyc(module)),
                "{mode}: {module} in {paths:?}"
            );
        }
    }

    let empty = work.path().join("empty-base");
    synthetic_base(&empty, false);
    let recipe = work.recipe("base = \"python:3.13-alpine\"\n[python]\nstdlib_bytecode = \"all\"\n[app]\nsource = \"app\"\n");
    std::fs::remove_dir_all(work.out()).unwrap();
    let out = inputs::run(
        work.build(&recipe)
            .arg("--base-layout")
            .arg(&empty)
            .arg("--oci-layout")
            .arg(work.out()),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("has no standard library sources"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("leave `[python] stdlib_bytecode` out"),
        "{}",
        out.stderr
    );
    assert!(!work.out().exists(), "nothing written");
}

/// greenlet ships its test suite in `greenlet/tests`: by default those files
/// get no `.pyc` (the rest of greenlet does), `tests_bytecode = true` gives
/// every one of them its `.pyc`, and the site-packages layer is the same.
#[test]
fn packages_test_dirs_get_bytecode_only_when_asked() {
    let Some((wheels, _, base)) = slim_prerequisites() else {
        return;
    };
    let greenlet = std::fs::read_dir(&wheels)
        .unwrap()
        .flatten()
        .find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("greenlet-")?.split('-').next()?;
            Some(version.to_string())
        })
        .expect("a greenlet wheel in the wheelhouse");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("app")).unwrap();
    std::fs::write(tmp.path().join("app/main.py"), "import greenlet\n").unwrap();
    std::fs::write(
        tmp.path().join("requirements.txt"),
        format!("greenlet=={greenlet}\n"),
    )
    .unwrap();
    let recipe = |name: &str, line: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "base = \"python:3.13-slim\"\nplatforms = [\"linux/amd64\"]\n\
                 [python]\nrequirements = [\"requirements.txt\"]\n{line}[app]\nsource = \"app\"\n"
            ),
        )
        .unwrap();
        path
    };
    let cache = tmp.path().join("cache");
    let default = build(&recipe("default.toml", ""), &base, &wheels, &cache, 2);
    let with_tests = build(
        &recipe("tests.toml", "tests_bytecode = true\n"),
        &base,
        &wheels,
        &cache,
        2,
    );
    assert_eq!(
        default.layer("site-packages"),
        with_tests.layer("site-packages")
    );
    assert_ne!(
        default.layer("site-packages-bytecode"),
        with_tests.layer("site-packages-bytecode")
    );
    let test_sources: BTreeSet<String> = default
        .files("site-packages")
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.contains("/greenlet/tests/") && p.ends_with(".py"))
        .collect();
    assert!(test_sources.len() > 5, "{test_sources:?}");
    let pycs = |built: &Built| -> Vec<String> {
        let files = built.files("site-packages-bytecode");
        files.into_iter().map(|(path, _)| path).collect()
    };
    let (without, with) = (pycs(&default), pycs(&with_tests));
    let in_tests = |list: &[String]| list.iter().filter(|p| p.contains("/tests/")).count();
    assert_eq!(in_tests(&without), 0, "{without:?}");
    assert_eq!(in_tests(&with), test_sources.len(), "{with:?}");
    let init = "greenlet/__pycache__/__init__.cpython-313.pyc";
    assert!(without.iter().any(|p| p.ends_with(init)), "{without:?}");
    assert_eq!(without.len() + test_sources.len(), with.len());
}
