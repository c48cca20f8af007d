//! End to end on both runnable bases: fastapi-demo, flask-gunicorn, cli-tool
//! and an app with SQLAlchemy (its C++ greenlet) and numpy, each built for the
//! python:3.13-alpine stand-in (musl 1.2.5, CPython built with musl-gcc) and
//! the python:3.13-slim stand-in (Debian minbase), pushed to a loopback
//! registry, pulled back with skopeo, unpacked with umoci and run rootless
//! (`unshare -r -m` + chroot, read-only root) with the image's own entrypoint,
//! env and workdir; each answers (HTTP GET or its output).
//!
//! Bytecode: `python3 -v` imports the app's modules in the image on the
//! read-only root; every site-packages and app module must be loaded from a
//! `.pyc` of the bytecode layers (`# code object from '...pyc'`), none compiled
//! from source and none written.
//!
//! And a real container runtime: podman (runc, a private store) pulls images
//! from the registry and runs them, and `podman load`s slipway's
//! docker-archive, named by `--tag`.
//!
//! Offline: wheels from `scripts/wheelhouse`, bases from vendor-test-images.

mod common;

use common::fixtures::{repo_root, run_ok, tools_missing, wheelhouse};
use common::registry::{free_port, Registry};
use common::runnable::{http_get, podman, unpack, Base, Started, Unpacked, PODMAN_RUN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SITE: &str = "/usr/local/lib/python3.13/site-packages";

/// How an app answers.
enum Answer {
    /// GET / gives JSON with `env` = `production`.
    Http,
    /// Its output for these arguments (after the entrypoint).
    Cli(&'static [&'static str]),
}

struct App {
    name: &'static str,
    dir: &'static str,
    answer: Answer,
    /// Imported with `python3 -v` in the image (from the workdir).
    probe: &'static str,
    /// Modules that must come from a `.pyc` (paths without `.cpython-313.pyc`).
    pyc: &'static [&'static str],
    /// Extension modules that must load (`# extension module 'X' loaded`).
    extensions: &'static [&'static str],
}

const APPS: &[App] = &[
    App {
        name: "fastapi-demo",
        dir: "recipes/fastapi-demo",
        answer: Answer::Http,
        probe: "import app, fastapi, pydantic_core",
        pyc: &["/app/__pycache__/app", "fastapi/__pycache__/__init__"],
        extensions: &["pydantic_core._pydantic_core"],
    },
    App {
        name: "flask-gunicorn",
        dir: "recipes/flask-gunicorn",
        answer: Answer::Http,
        probe: "import app, flask, gunicorn.app.wsgiapp, markupsafe",
        pyc: &[
            "/app/__pycache__/app",
            "flask/__pycache__/__init__",
            "gunicorn/__pycache__/__init__",
        ],
        extensions: &["markupsafe._speedups"],
    },
    App {
        name: "cli-tool",
        dir: "recipes/cli-tool",
        answer: Answer::Cli(&["--top", "1", "/etc/passwd"]),
        probe: "import tally.cli, click",
        pyc: &["tally/__pycache__/cli", "click/__pycache__/__init__"],
        extensions: &[],
    },
    App {
        name: "sql-numpy",
        dir: "tests/apps/sql-numpy",
        answer: Answer::Cli(&["10", "20", "12"]),
        probe: "import app, sqlalchemy, numpy, greenlet",
        pyc: &[
            "/app/__pycache__/app",
            "sqlalchemy/__pycache__/__init__",
            "numpy/__pycache__/__init__",
            "greenlet/__pycache__/__init__",
        ],
        extensions: &["greenlet._greenlet", "numpy._core._multiarray_umath"],
    },
];

/// Copies an app's recipe dir to `dest` with its alpine recipe retargeted at
/// `base`; returns the recipe file.
fn recipe_for(app: &App, base: Base, dest: &Path) -> PathBuf {
    copy_dir(&repo_root().join(app.dir), dest);
    let text = std::fs::read_to_string(dest.join("alpine.toml")).unwrap();
    assert!(
        text.contains("\"python:3.13-alpine\""),
        "{}: {text}",
        app.name
    );
    let text = text.replace(
        "\"python:3.13-alpine\"",
        &format!("\"python:{}\"", base.tag()),
    );
    let recipe = dest.join(format!("{}.toml", base.name()));
    std::fs::write(&recipe, text).unwrap();
    recipe
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".venv", "__pycache__", "dist"].iter().any(|n| name == *n) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &dest.join(&name));
        } else {
            std::fs::copy(&path, dest.join(&name)).unwrap();
        }
    }
}

/// `slipway build` offline from the wheelhouse, the base from `registry`.
fn slipway_build(recipe: &Path, registry: &Registry, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("build")
        .arg(recipe)
        .arg("--registry-mirror")
        .arg(format!("docker.io={}", registry.addr()))
        .arg("--offline")
        .arg("--find-links")
        .arg(wheelhouse().expect("wheelhouse"))
        .arg("--cache-dir")
        .arg(cache)
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env("SOURCE_DATE_EPOCH", "1700000000");
    cmd
}

/// The app's command for a run on `port`: 8000 swapped, gunicorn bound.
fn command_on_port(args: &[String], port: u16) -> Vec<String> {
    let mut out: Vec<String> = args
        .iter()
        .map(|a| {
            if a == "8000" {
                port.to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    if out.iter().any(|a| a.ends_with("gunicorn")) {
        out.extend(["--bind".into(), format!("127.0.0.1:{port}")]);
    }
    out
}

fn check_http_answer(body: &str, what: &str) {
    let answer: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {body}"));
    assert_eq!(answer["env"], "production", "{what}: {answer}");
    assert_eq!(answer["message"], "Hello from slipway", "{what}: {answer}");
}

/// What the CLI app must print, computed from the image's own files.
fn check_cli_output(app: &App, out: &str, rootfs: Option<&Path>, what: &str) {
    match app.name {
        "cli-tool" => {
            if let Some(rootfs) = rootfs {
                let lines = std::fs::read_to_string(rootfs.join("etc/passwd"))
                    .unwrap()
                    .lines()
                    .count();
                assert!(
                    out.starts_with(&format!("lines {lines}\n")),
                    "{what}: {out}"
                );
            }
            assert!(out.contains("\nwords "), "{what}: {out}");
        }
        "sql-numpy" => {
            let answer: Value = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"));
            assert_eq!(answer["sum"], 10 + 20 + 12, "{what}: {answer}");
            assert_eq!(answer["greenlet"], "3.5.6", "{what}: {answer}");
            assert_eq!(answer["numpy"], "2.5.5", "{what}: {answer}");
        }
        other => panic!("no CLI check for {other}"),
    }
}

/// Runs the app in the unpacked image and checks its answer.
fn run_and_check(app: &App, image: &Unpacked, work: &Path, what: &str) {
    match app.answer {
        Answer::Http => {
            let port = free_port();
            let log = work.join("app.log");
            let mut started = Started::spawn(
                &mut image.command(&command_on_port(&image.args, port)),
                &log,
            );
            let body = http_get(port, "/", Duration::from_secs(180), &mut || {
                !started.exited()
            });
            let body = body.unwrap_or_else(|| {
                panic!(
                    "{what}: no answer on port {port}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            check_http_answer(&body, what);
        }
        Answer::Cli(extra) => {
            let mut argv = image.args.clone();
            if app.name == "cli-tool" {
                argv.truncate(1); // the entrypoint, without the default `--help`
            }
            argv.extend(extra.iter().map(|s| s.to_string()));
            let out = run_ok(&mut image.command(&argv));
            check_cli_output(
                app,
                &String::from_utf8_lossy(&out.stdout),
                Some(&image.rootfs),
                what,
            );
        }
    }
}

/// `python3 -v` imports inside the image: modules come from the .pyc layers.
fn check_bytecode(app: &App, image: &Unpacked, what: &str) {
    let out =
        run_ok(&mut image.command(&["python3".into(), "-v".into(), "-c".into(), app.probe.into()]));
    let log = String::from_utf8_lossy(&out.stderr);
    for module in app.pyc {
        let pyc = if module.starts_with('/') {
            format!("{module}.cpython-313.pyc")
        } else {
            format!("{SITE}/{module}.cpython-313.pyc")
        };
        assert!(
            log.contains(&format!("# code object from '{pyc}'")),
            "{what}: {pyc} not used; python3 -v said:\n{log}"
        );
    }
    for ext in app.extensions {
        assert!(
            log.contains(&format!("# extension module '{ext}' loaded from '{SITE}/")),
            "{what}: extension {ext} not loaded from site-packages:\n{log}"
        );
    }
    let compiled: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from /"))
        .filter(|p| p.starts_with("app/") || p.contains("/site-packages/"))
        .collect();
    assert!(
        compiled.is_empty(),
        "{what}: compiled from source: {compiled:?}"
    );
    let wrote: Vec<&str> = log.lines().filter(|l| l.starts_with("# wrote")).collect();
    assert!(wrote.is_empty(), "{what}: bytecode written: {wrote:?}");
}

fn tools_ready() -> bool {
    !tools_missing(&[
        "python3",
        "docker-registry",
        "skopeo",
        "umoci",
        "uv",
        "unshare",
        "chroot",
    ])
}

/// Every app, built for `base`, runs rootless, answers, imports from bytecode.
fn every_app_runs_on(base: Base) {
    if !tools_ready() || wheelhouse().is_none() {
        return;
    }
    let Some(layout) = base.layout() else { return };
    let registry = Registry::start();
    base.push(&layout, &registry);
    let tmp = tempfile::tempdir().unwrap();
    for app in APPS {
        let what = format!("{} on {}", app.name, base.name());
        let work = tmp.path().join(app.name);
        let recipe = recipe_for(app, base, &work.join("recipe"));
        let reference = format!("{}/e2e/{}-{}:1", registry.addr(), app.name, base.name());
        let started = std::time::Instant::now();
        let built = run_ok(
            slipway_build(&recipe, &registry, &tmp.path().join("cache"))
                .arg("--push")
                .arg(&reference),
        );
        eprintln!(
            "{what}: built in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&built.stdout).trim()
        );
        let image = unpack(&format!("docker://{reference}"), &work);
        run_and_check(app, &image, &work, &what);
        check_bytecode(app, &image, &what);
        eprintln!("{what}: answers, imports from bytecode");
    }
}

#[test]
fn every_app_runs_on_the_alpine_stand_in() {
    every_app_runs_on(Base::Alpine);
}

#[test]
fn every_app_runs_on_the_slim_stand_in() {
    every_app_runs_on(Base::Slim);
}

/// podman pulls from the loopback registry and runs (fastapi over HTTP,
/// cli-tool's output), and loads the docker-archive of sql-numpy by its tag.
fn podman_runs_on(base: Base) {
    if !tools_ready() || tools_missing(&["podman", "runc"]) || wheelhouse().is_none() {
        return;
    }
    let Some(layout) = base.layout() else { return };
    let registry = Registry::start();
    base.push(&layout, &registry);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let store = tmp.path().join("podman");

    // From the registry: an HTTP app and a CLI.
    for app in APPS
        .iter()
        .filter(|a| ["fastapi-demo", "cli-tool"].contains(&a.name))
    {
        let what = format!("podman: {} on {}", app.name, base.name());
        let recipe = recipe_for(app, base, &tmp.path().join(app.name));
        let reference = format!("{}/e2e/{}-{}:1", registry.addr(), app.name, base.name());
        run_ok(
            slipway_build(&recipe, &registry, &cache)
                .arg("--push")
                .arg(&reference),
        );
        match app.answer {
            Answer::Http => {
                let port = free_port();
                let log = tmp.path().join(format!("{}.log", app.name));
                let mut cmd = podman(&store);
                cmd.args(PODMAN_RUN).arg(&reference).args([
                    "uvicorn",
                    "app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ]);
                let mut started = Started::spawn(&mut cmd, &log);
                let body = http_get(port, "/", Duration::from_secs(300), &mut || {
                    !started.exited()
                });
                let body = body.unwrap_or_else(|| {
                    panic!(
                        "{what}: no answer on {port}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
                check_http_answer(&body, &what);
            }
            Answer::Cli(args) => {
                let out = run_ok(podman(&store).args(PODMAN_RUN).arg(&reference).args(args));
                check_cli_output(app, &String::from_utf8_lossy(&out.stdout), None, &what);
            }
        }
        eprintln!("{what}: answers");
    }

    // A docker-archive, loaded under the name given with --tag.
    let app = APPS.iter().find(|a| a.name == "sql-numpy").unwrap();
    let what = format!("podman load: {} on {}", app.name, base.name());
    let recipe = recipe_for(app, base, &tmp.path().join(app.name));
    let archive = tmp.path().join("sql-numpy.tar");
    let tag = format!("localhost/e2e/sql-numpy:{}", base.name());
    run_ok(
        slipway_build(&recipe, &registry, &cache)
            .arg("--docker-archive")
            .arg(&archive)
            .arg("--tag")
            .arg(&tag),
    );
    let loaded = run_ok(podman(&store).arg("load").arg("--input").arg(&archive));
    let loaded = String::from_utf8_lossy(&loaded.stdout);
    assert!(loaded.contains(&tag), "{what}: podman load said: {loaded}");
    let Answer::Cli(args) = app.answer else {
        unreachable!()
    };
    let out = run_ok(podman(&store).args(PODMAN_RUN).arg(&tag).args(args));
    check_cli_output(app, &String::from_utf8_lossy(&out.stdout), None, &what);
    eprintln!("{what}: answers");
}

#[test]
fn podman_runs_alpine_images_from_the_registry_and_an_archive() {
    podman_runs_on(Base::Alpine);
}

#[test]
fn podman_runs_slim_images_from_the_registry_and_an_archive() {
    podman_runs_on(Base::Slim);
}
