//! `slipway inspect --check`: exit 0 on a whole image (OCI layout,
//! docker-archive, registry), exit 2 naming the blob and the damage on a
//! broken copy (truncated layer, wrong diff_id, wrong size in a descriptor,
//! missing blob).

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use common::fixtures::{alpine_layout, push_alpine, run_ok, tools_missing};
use common::registry::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(cache: &Path, image: &str) -> Output {
    slipway(cache)
        .args(["inspect", "--check"])
        .arg(image)
        .output()
        .unwrap()
}

fn assert_valid(cache: &Path, image: &str, images: usize) {
    let out = check(cache, image);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.contains(&format!("is valid: {images} image(s)")),
        "{stdout}"
    );
}

/// Exit 2 and stderr naming `blob` with each of `words`; the stderr.
fn assert_invalid(cache: &Path, layout: &Path, blob: &str, words: &[&str]) -> String {
    let out = check(cache, &format!("oci:{}", layout.display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = stderr
        .lines()
        .find(|l| l.contains(blob) && words.iter().all(|w| l.contains(w)))
        .unwrap_or_else(|| panic!("no problem naming {blob} with {words:?}:\n{stderr}"));
    assert!(line.starts_with("  sha256:"), "{line}");
    stderr
}

/// A writable copy of the committed alpine stand-in (two platforms and an attestation).
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let copy = dir.join("layout");
    run_ok(Command::new("cp").arg("-r").arg(alpine_layout()).arg(&copy));
    copy
}

/// The first amd64 manifest of the layout: (its hex, the document).
fn amd64_manifest(layout: &Path) -> (String, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &Value| -> (String, Value) {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        let doc =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        (hex.to_string(), doc)
    };
    let (_, top) = blob(&index["manifests"][0]["digest"]);
    let entry = top["manifests"]
        .as_array()
        .expect("the fixture is an index")
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    blob(&entry["digest"])
}

#[test]
fn whole_images_pass_the_check() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    assert_valid(&cache, &format!("oci:{}", alpine_layout().display()), 2);
    if tools_missing(&["skopeo", "docker-registry"]) {
        return;
    }
    let archive = work.path().join("alpine.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--override-arch", "amd64"])
            .arg(format!("oci:{}:3.13-alpine", alpine_layout().display()))
            .arg(format!("docker-archive:{}", archive.display())),
    );
    assert_valid(&cache, &format!("docker-archive:{}", archive.display()), 1);
    let registry = Registry::start();
    push_alpine(&registry);
    let reference = format!("{}/library/python:3.13-alpine", registry.addr());
    assert_valid(&cache, &reference, 2);
    // --json: the same verdict as a document.
    let out = run_ok(
        slipway(&cache)
            .args(["inspect", "--check", "--json"])
            .arg(&reference),
    );
    let report = json_of(&out);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["images"].as_array().unwrap().len(), 2, "{report}");
}

#[test]
fn a_truncated_layer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let (_, manifest) = amd64_manifest(&layout);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    let path = layout.join("blobs/sha256").join(&layer[7..]);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let stderr = assert_invalid(&dir.path().join("cache"), &layout, layer, &["size"]);
    assert!(
        stderr.contains(&format!("{layer}: not a whole (gzip'd) tar")),
        "{stderr}"
    );
}

#[test]
fn a_wrong_diff_id_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let (_, manifest) = amd64_manifest(&layout);
    let config_hex = manifest["config"]["digest"].as_str().unwrap()[7..].to_string();
    let config_path = layout.join("blobs/sha256").join(&config_hex);
    let mut config: Value = serde_json::from_slice(&std::fs::read(config_path).unwrap()).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    config["rootfs"]["diff_ids"][0] = Value::from(wrong.as_str());
    let new_hex =
        common::image::replace_blob(&layout, &config_hex, &serde_json::to_vec(&config).unwrap());
    let stderr = assert_invalid(
        &dir.path().join("cache"),
        &layout,
        &new_hex,
        &["diff_ids differ", "layer 0", &wrong],
    );
    assert_eq!(stderr.matches("  sha256:").count(), 1, "{stderr}");
}

#[test]
fn a_wrong_size_in_a_descriptor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let (manifest_hex, mut manifest) = amd64_manifest(&layout);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = Value::from(size + 1);
    common::image::replace_blob(
        &layout,
        &manifest_hex,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let stderr = assert_invalid(
        &dir.path().join("cache"),
        &layout,
        &layer,
        &[&format!(
            "size {size} differs from its descriptor's {}",
            size + 1
        )],
    );
    assert_eq!(stderr.matches("  sha256:").count(), 1, "{stderr}");
}

#[test]
fn a_missing_blob_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let (_, manifest) = amd64_manifest(&layout);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    std::fs::remove_file(layout.join("blobs/sha256").join(&layer[7..])).unwrap();
    assert_invalid(
        &dir.path().join("cache"),
        &layout,
        layer,
        &["blob missing or unreadable"],
    );
}

/// What slipway itself writes passes: a built OCI layout and docker-archive.
#[test]
fn slipways_own_outputs_pass_the_check() {
    if tools_missing(&["uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let recipe = repo_root().join("recipes/fastapi-demo/alpine.toml");
    let layout = work.path().join("out");
    let archive = work.path().join("app.tar");
    run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--oci-layout")
            .arg(&layout),
    );
    run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--docker-archive")
            .arg(&archive),
    );
    assert_valid(&cache, &format!("oci:{}", layout.display()), 1);
    assert_valid(&cache, &format!("docker-archive:{}", archive.display()), 1);
}
