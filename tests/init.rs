//! `slipway init` on the recipes/ examples with their recipe files removed
//! (and on a locked project with a console script): the recipe it writes
//! parses, says what the example's own recipe says, and builds offline.

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use std::path::{Path, PathBuf};

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
        // The same way of starting the app as the hand-written recipe (whose
        // default arguments for an entrypoint are a matter of taste).
        assert_eq!(
            recipe.image.entrypoint, want.image.entrypoint,
            "{name}: entrypoint differs from the example's:\n{text}"
        );
        if want.image.entrypoint.is_none() {
            assert_eq!(
                recipe.image.cmd, want.image.cmd,
                "{name}: cmd differs from the example's:\n{text}"
            );
        }
        assert_eq!(
            recipe.app.source.is_some(),
            want.app.source.is_some(),
            "{name}: [app] layer or not, as the example:\n{text}"
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
        assert!(
            layers.iter().any(|l| l["kind"] == "site-packages"),
            "{name}: no site-packages layer: {report}"
        );
        assert_eq!(
            layers.iter().any(|l| l["kind"] == "app"),
            want.app.source.is_some(),
            "{name}: {report}"
        );
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
