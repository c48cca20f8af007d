//! `slipway init` on the recipes/ examples with their recipe files removed
//! (and on a locked project with a console script): the recipe it writes
//! parses, says what the example's own recipe says, and builds offline.

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every example under recipes/ (a dir holding at least one recipe `.toml`).
fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("recipes"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !recipe_files(p).is_empty())
        .collect();
    dirs.sort();
    dirs
}

/// The recipe files of an example: its `.toml` files other than pyproject.toml.
fn recipe_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && n != "pyproject.toml")
        .collect()
}

fn init(cache: &Path, dir: &Path) -> std::process::Output {
    slipway(cache).arg("init").arg(dir).output().unwrap()
}

fn parse(path: &Path) -> slipway::recipe::Recipe {
    let text = std::fs::read_to_string(path).unwrap();
    slipway::recipe::parse(&text, path)
        .unwrap_or_else(|e| panic!("the generated recipe does not parse: {e}\n{text}"))
}

/// The example's own recipe, for comparison (its first `.toml`, sorted).
fn original(dir: &Path) -> slipway::recipe::Recipe {
    let mut files = recipe_files(dir);
    files.sort();
    slipway::recipe::load(&dir.join(&files[0])).unwrap()
}

#[test]
fn init_writes_a_recipe_that_builds_for_every_example() {
    if tools_missing(&["uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let examples = examples();
    assert!(
        examples.iter().any(|d| d.ends_with("fastapi-demo")),
        "{examples:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    for example in examples {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let dir = work.path().join(&name);
        let skip: Vec<String> = recipe_files(&example);
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        copy_tree(&example, &dir, &skip);

        let out = init(&cache, &dir);
        assert!(out.status.success(), "{name}: {out:?}");
        let path = dir.join("slipway.toml");
        let recipe = parse(&path);
        let want = original(&example);
        let text = std::fs::read_to_string(&path).unwrap();
        // The same way of starting the app as the hand-written recipe.
        assert_eq!(
            recipe.image.cmd, want.image.cmd,
            "{name}: cmd differs from the example's:\n{text}"
        );
        assert_eq!(
            recipe.image.entrypoint, want.image.entrypoint,
            "{name}:\n{text}"
        );
        assert_eq!(
            recipe.python.project.is_some(),
            want.python.project.is_some(),
            "{name}:\n{text}"
        );
        assert_eq!(
            recipe.python.requirements.len(),
            want.python.requirements.len(),
            "{name}:\n{text}"
        );
        assert!(
            text.lines().filter(|l| l.starts_with('#')).count() > 10,
            "commented:\n{text}"
        );

        let layout = work.path().join(format!("{name}-image"));
        let report = json_of(&run_ok(
            build_offline(&cache, &path, &wheels)
                .arg("--oci-layout")
                .arg(&layout)
                .arg("--json"),
        ));
        let layers = report["platforms"][0]["layers"].as_array().unwrap();
        for kind in ["site-packages", "app"] {
            assert!(
                layers.iter().any(|l| l["kind"] == kind),
                "{name}: no {kind} layer: {report}"
            );
        }
    }
}

#[test]
fn init_refuses_to_overwrite_unless_forced() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let dir = work.path().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.py"),
        "from flask import Flask\n\napp = Flask(__name__)\n",
    )
    .unwrap();
    std::fs::write(dir.join("requirements.txt"), "flask==3.1.0\n").unwrap();
    let recipe = dir.join("slipway.toml");
    std::fs::write(&recipe, "# mine\n").unwrap();

    let out = init(&cache, &dir);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&recipe).unwrap(), "# mine\n");

    run_ok(slipway(&cache).arg("init").arg("--force").arg(&dir));
    let parsed = parse(&recipe);
    assert_eq!(
        parsed.image.cmd.unwrap(),
        ["gunicorn", "--bind", "0.0.0.0:8000", "app:app"]
    );
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(
        text.contains("gunicorn is not among the dependencies"),
        "{text}"
    );
    // --print writes nothing.
    std::fs::remove_file(&recipe).unwrap();
    let out = run_ok(slipway(&cache).args(["init", "--print"]).arg(&dir));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[image]"));
    assert!(!recipe.exists());
}

/// A packaged project locked by uv, started by its console script.
fn make_cli_project(dir: &Path, wheels: &Path) {
    std::fs::create_dir_all(dir.join("src/hello_cli")).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        r#"[project]
name = "hello-cli"
version = "0.1.0"
requires-python = ">=3.13"
dependencies = ["click"]

[project.scripts]
hello = "hello_cli:main"

[build-system]
requires = ["uv_build>=0.8,<0.14"]
build-backend = "uv_build"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("src/hello_cli/__init__.py"),
        "import click\n\n@click.command()\ndef main():\n    click.echo('hello')\n",
    )
    .unwrap();
    run_ok(
        Command::new("uv")
            .args(["lock", "--offline", "--no-index", "--find-links"])
            .arg(wheels)
            .args(["--python", "3.13", "--no-python-downloads", "--directory"])
            .arg(dir),
    );
}

#[test]
fn init_picks_the_console_script_of_a_locked_project() {
    if tools_missing(&["uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let dir = work.path().join("hello");
    make_cli_project(&dir, &wheels);
    run_ok(slipway(&cache).arg("init").arg(&dir));
    let recipe = parse(&dir.join("slipway.toml"));
    assert_eq!(recipe.python.project.as_deref(), Some(dir.as_path()));
    assert_eq!(recipe.image.entrypoint.unwrap(), ["hello"]);
    assert!(recipe.python.requirements.is_empty());
}
