//! Golden digests: "the same recipe and inputs give the same digest on any
//! machine", tested across machines. Each recipe in recipes/ (and each
//! platform set the tests build) is built offline from the pinned
//! wheelhouse (`target/wheelhouse`) and the test bases, and must give the
//! digest committed in `tests/golden-digests.toml`.
//!
//! What could make a digest machine-dependent is held fixed or varied:
//! - git: the recipe dir is copied to a temp dir outside any git work tree
//!   (the source/revision annotations follow HEAD), and `SOURCE_DATE_EPOCH`
//!   is set explicitly;
//! - environment: each build runs with a cleared environment, its own HOME,
//!   slipway and uv caches; one case is built again with umask 077, modes
//!   go-rwx, a deeper path, another cache dir, TZ and locale, and must agree;
//! - host tools: uv and the CPython that compiles bytecode are inputs; their
//!   versions are recorded beside the digests so a mismatch says whether
//!   they differ;
//! - bases: the python:3.13-alpine stand-in is committed (its bytes are
//!   pinned), so its cases pin the whole image digest. The runnable
//!   python:3.13-slim stand-in is built on each machine by scripts/setup from
//!   the Debian mirror of the day and the host's CPython, so it is NOT
//!   byte-reproducible across machines: its case pins only slipway's own
//!   layers (their digests; a gzip digest fixes the diff_id too).
//!
//! `SLIPWAY_UPDATE_GOLDEN=1 cargo test --test golden` rewrites the file.

mod common;

use common::fixtures::{alpine_layout, repo_root, run_ok, sha256_hex, wheelhouse};
use common::image::validate_layout;
use common::tools::{find_python313, find_uv, version_line};
use common::{skip_or_fail, skip_or_fail_because};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const GOLDEN_FILE: &str = "tests/golden-digests.toml";
const EPOCH: &str = "1700000000";

/// Which test base a case builds on.
#[derive(Clone, Copy)]
enum Base {
    /// The committed stand-in: the whole image digest is pinned.
    Alpine,
    /// Built per machine by scripts/setup: only slipway's layers are pinned.
    RunnableSlim,
}

struct Case {
    /// The recipe, relative to recipes/.
    recipe: &'static str,
    platforms: &'static [&'static str],
    base: Base,
}

const CASES: &[Case] = &[
    Case {
        recipe: "fastapi-demo/alpine.toml",
        platforms: &["linux/amd64"],
        base: Base::Alpine,
    },
    Case {
        recipe: "fastapi-demo/alpine.toml",
        platforms: &["linux/amd64", "linux/arm64"],
        base: Base::Alpine,
    },
    Case {
        recipe: "flask-gunicorn/alpine.toml",
        platforms: &["linux/amd64"],
        base: Base::Alpine,
    },
    Case {
        recipe: "cli-tool/alpine.toml",
        platforms: &["linux/amd64"],
        base: Base::Alpine,
    },
    Case {
        recipe: "fastapi-demo/slim.toml",
        platforms: &["linux/amd64"],
        base: Base::RunnableSlim,
    },
];

impl Case {
    fn key(&self) -> String {
        format!("{} {}", self.recipe, self.platforms.join("+"))
    }

    fn base_layout(&self) -> PathBuf {
        match self.base {
            Base::Alpine => alpine_layout(),
            Base::RunnableSlim => repo_root().join("target/runnable-base/layout"),
        }
    }

    /// The golden entries this build gives: the image digest, or (on the
    /// per-machine base) one entry per layer slipway made.
    fn pins(&self, report: &Value) -> Vec<(String, String)> {
        match self.base {
            Base::Alpine => vec![(self.key(), report["digest"].as_str().unwrap().to_string())],
            Base::RunnableSlim => report["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| {
                    let platform = p["platform"].as_str().unwrap().to_string();
                    p["layers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|l| l["kind"] != "base")
                        .map(move |l| {
                            (
                                format!("{} {platform} layer {}", self.recipe, str_of(&l["kind"])),
                                str_of(&l["digest"]),
                            )
                        })
                })
                .collect(),
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// The host tools every build uses, and their versions.
struct Tools {
    python: PathBuf,
    uv: PathBuf,
    wheels: PathBuf,
    versions: BTreeMap<String, String>,
}

/// How one build's environment differs from the plain one.
#[derive(Default)]
struct Perturbed {
    umask_077: bool,
    extra_depth: bool,
}

/// Copies the recipe's dir into `work` (outside any git tree) and builds it
/// to an OCI layout; returns the `--json` report.
fn build(case: &Case, tools: &Tools, work: &Path, how: &Perturbed) -> Value {
    let recipe = repo_root().join("recipes").join(case.recipe);
    let src_dir = recipe.parent().unwrap();
    let mut dir = work.join("recipe");
    if how.extra_depth {
        dir = work.join("a much/longer path/to the/recipe");
    }
    copy_tree(src_dir, &dir);
    if how.umask_077 {
        restrict_modes(&dir);
    }
    assert!(
        !in_git_tree(&dir),
        "{} is inside a git work tree: set TMPDIR outside it",
        dir.display()
    );
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new("sh");
    let umask = if how.umask_077 { "077" } else { "022" };
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(dir.join(recipe.file_name().unwrap()))
        .arg("--base-layout")
        .arg(case.base_layout())
        .arg("--offline")
        .arg("--find-links")
        .arg(&tools.wheels)
        .arg("--python")
        .arg(&tools.python)
        .arg("--uv")
        .arg(&tools.uv)
        .arg("--cache-dir")
        .arg(work.join("slipway-cache"))
        .arg("--oci-layout")
        .arg(work.join("out"))
        .arg("--json");
    for platform in case.platforms {
        cmd.args(["--platform", platform]);
    }
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("UV_CACHE_DIR", work.join("uv-cache"))
        .env("DOCKER_CONFIG", home.join("no-docker-config"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .current_dir(work);
    if how.umask_077 {
        cmd.env("TZ", "Pacific/Chatham").env("LC_ALL", "C");
    } else {
        cmd.env("TZ", "UTC").env("LANG", "C.UTF-8");
    }
    let out = run_ok(&mut cmd);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json report of {} ({e}):\n{}",
            case.key(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    // The digest pinned is that of a whole, valid image.
    let valid = validate_layout(&work.join("out"));
    assert_eq!(valid.top, str_of(&report["digest"]), "{}", case.key());
    assert_eq!(valid.images.len(), case.platforms.len(), "{}", case.key());
    report
}

/// Copies `from` to `to` recursively (files, dirs, symlinks), skipping `.git`.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
    {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What a checkout under umask 077 gives: no access for group and others.
fn restrict_modes(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_symlink() {
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode();
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o700))
            .unwrap();
    }
}

fn in_git_tree(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

/// The committed file: `[built-with]` versions and `[digests]`.
struct Golden {
    built_with: BTreeMap<String, String>,
    digests: BTreeMap<String, String>,
}

fn read_golden() -> Golden {
    let path = repo_root().join(GOLDEN_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = |name: &str| -> BTreeMap<String, String> {
        table
            .get(name)
            .and_then(|v| v.as_table())
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    Golden {
        built_with: section("built-with"),
        digests: section("digests"),
    }
}

fn write_golden(golden: &Golden) {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = String::from(
        "# Golden digests, checked by tests/golden.rs on every machine: each recipe\n\
         # built offline from target/wheelhouse and the test bases, SOURCE_DATE_EPOCH\n\
         # = 1700000000, outside any git tree. Cases on the per-machine runnable\n\
         # python:3.13-slim stand-in pin only slipway's own layers.\n\
         # Rewrite with: SLIPWAY_UPDATE_GOLDEN=1 cargo test --test golden\n\
         # A digest that changes on purpose is updated in the same commit, with the\n\
         # reason in the commit message.\n\n[built-with]\n",
    );
    for (k, v) in &golden.built_with {
        text += &format!("{} = {}\n", quote(k), quote(v));
    }
    text += "\n[digests]\n";
    for (k, v) in &golden.digests {
        text += &format!("{} = {}\n", quote(k), quote(v));
    }
    std::fs::write(repo_root().join(GOLDEN_FILE), text).unwrap();
}

fn host_tools() -> Option<Tools> {
    let wheels = wheelhouse()?;
    let python = find_python313().unwrap_or_else(|| {
        panic!("no CPython 3.13 (set SLIPWAY_PYTHON, or install one with pyenv or uv)")
    });
    let uv = find_uv().unwrap_or_else(|| panic!("no uv executable (not a shim) found"));
    let versions = BTreeMap::from([
        (
            "python".to_string(),
            version_line(
                &python,
                &["-c", "import platform; print(platform.python_version())"],
            ),
        ),
        ("uv".to_string(), version_line(&uv, &["--version"])),
        ("wheelhouse".to_string(), wheelhouse_digest(&wheels)),
    ]);
    Some(Tools {
        python,
        uv,
        wheels,
        versions,
    })
}

/// One digest over the wheelhouse's wheels (names and bytes, sorted): the
/// pinned wheels are inputs too.
fn wheelhouse_digest(dir: &Path) -> String {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    wheels.sort();
    let listing: String = wheels
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            format!(
                "{} {}\n",
                sha256_hex(&bytes),
                p.file_name().unwrap().to_string_lossy()
            )
        })
        .collect();
    format!("sha256:{}", sha256_hex(listing.as_bytes()))
}

/// Whether the runnable base exists (scripts/setup builds it); a failure in CI.
fn have_runnable_base() -> bool {
    let layout = repo_root().join("target/runnable-base/layout");
    if layout.join("index.json").is_file() {
        return true;
    }
    !skip_or_fail_because(&format!(
        "no runnable base at {}: run scripts/setup (or vendor-test-images/make-runnable-base)",
        layout.display()
    ))
}

#[test]
fn every_recipe_builds_to_its_committed_digest() {
    if skip_or_fail("uv") {
        return;
    }
    let Some(tools) = host_tools() else { return };
    let with_slim = have_runnable_base();
    let golden = read_golden();

    let mut got: BTreeMap<String, String> = BTreeMap::new();
    let mut reports: BTreeMap<String, Value> = BTreeMap::new();
    for case in CASES {
        if matches!(case.base, Base::RunnableSlim) && !with_slim {
            continue;
        }
        let work = tempfile::tempdir().unwrap();
        let report = build(case, &tools, work.path(), &Perturbed::default());
        eprintln!("{}: {}", case.key(), report["digest"]);
        got.extend(case.pins(&report));
        reports.insert(case.key(), report);
    }

    if updating() {
        let mut digests = golden.digests.clone();
        digests.extend(got.clone());
        write_golden(&Golden {
            built_with: tools.versions.clone(),
            digests,
        });
        eprintln!("rewrote {GOLDEN_FILE}: {got:#?}");
        return;
    }

    let mut wrong = Vec::new();
    for (key, digest) in &got {
        match golden.digests.get(key) {
            Some(want) if want == digest => {}
            Some(want) => wrong.push(format!("{key}: built {digest}, committed {want}")),
            None => wrong.push(format!("{key}: built {digest}, nothing committed")),
        }
    }
    let stale: Vec<&String> = golden
        .digests
        .keys()
        .filter(|k| !got.contains_key(*k))
        .filter(|k| with_slim || !k.contains("slim.toml"))
        .collect();
    assert!(
        stale.is_empty(),
        "{GOLDEN_FILE} pins cases no test builds: {stale:?}"
    );
    if !wrong.is_empty() {
        let tools_differ = if golden.built_with == tools.versions {
            "the host tools are the ones recorded".to_string()
        } else {
            format!(
                "the host tools differ: recorded {:?}, here {:?}",
                golden.built_with, tools.versions
            )
        };
        let layers: Vec<String> = reports
            .iter()
            .map(|(k, r)| format!("{k}: {}", layer_summary(r)))
            .collect();
        panic!(
            "image digests differ from {GOLDEN_FILE} ({tools_differ}):\n{}\n\nlayers built:\n{}\n\n\
             If the change is on purpose, run `SLIPWAY_UPDATE_GOLDEN=1 cargo test --test golden` \
             and commit the file with the reason in the message.",
            wrong.join("\n"),
            layers.join("\n")
        );
    }
}

fn updating() -> bool {
    std::env::var("SLIPWAY_UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn layer_summary(report: &Value) -> String {
    report["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["layers"].as_array().unwrap().iter())
        .map(|l| format!("{} {}", str_of(&l["kind"]), str_of(&l["digest"])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One case again, as another machine might build it: files 0600/0700 and
/// umask 077, a deeper path with spaces, another cache dir, another time zone
/// and locale. The digest must be the committed one.
#[test]
fn a_differently_set_up_machine_gets_the_committed_digest() {
    if skip_or_fail("uv") {
        return;
    }
    if updating() {
        return; // the other test is rewriting the file
    }
    let Some(tools) = host_tools() else { return };
    let case = &CASES[0];
    let work = tempfile::tempdir().unwrap();
    let how = Perturbed {
        umask_077: true,
        extra_depth: true,
    };
    let report = build(case, &tools, work.path(), &how);
    let golden = read_golden();
    let want = golden
        .digests
        .get(&case.key())
        .unwrap_or_else(|| panic!("{GOLDEN_FILE} has no entry for {}", case.key()));
    assert_eq!(
        &str_of(&report["digest"]),
        want,
        "{} built under umask 077 in {} differs from the committed digest: {}",
        case.key(),
        work.path().display(),
        layer_summary(&report)
    );
}

#[test]
fn every_recipe_has_a_golden_case() {
    let mut recipes = Vec::new();
    for dir in std::fs::read_dir(repo_root().join("recipes")).unwrap() {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).into_iter().flatten() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "toml")
                && file.file_name().unwrap() != "pyproject.toml"
            {
                let rel = file.strip_prefix(repo_root().join("recipes")).unwrap();
                recipes.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    recipes.sort();
    assert!(!recipes.is_empty());
    for recipe in &recipes {
        assert!(
            CASES.iter().any(|c| c.recipe == recipe),
            "recipes/{recipe} has no golden case in tests/golden.rs"
        );
    }
}
