//! The image checker the other tests rely on (`common::image::validate_*`)
//! accepts a whole image and rejects each kind of damage a killed or buggy
//! writer could leave: a truncated or missing layer, a layer whose content
//! differs from its diff_id, a descriptor with the wrong size.

mod common;

use common::fixtures::{alpine_layout, run_ok};
use common::image::validate_layout;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A writable copy of the committed alpine stand-in (an index of two
/// platforms and an attestation).
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let copy = dir.join("layout");
    run_ok(Command::new("cp").arg("-r").arg(alpine_layout()).arg(&copy));
    copy
}

/// The biggest blob in the layout (a layer).
fn biggest_blob(layout: &Path) -> PathBuf {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

fn rejects(layout: &Path) -> String {
    let result = std::panic::catch_unwind(|| validate_layout(layout));
    let err = result.expect_err("validate_layout accepted a damaged layout");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_whole_layout_is_valid() {
    let valid = validate_layout(&alpine_layout());
    let platforms: Vec<&str> = valid.images.iter().map(|i| i.platform.as_str()).collect();
    assert!(platforms.contains(&"linux/amd64"), "{platforms:?}");
    assert!(platforms.contains(&"linux/arm64"), "{platforms:?}");
    assert!(valid.images.iter().all(|i| !i.diff_ids.is_empty()));
}

#[test]
fn a_truncated_layer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let blob = biggest_blob(&layout);
    let len = std::fs::metadata(&blob).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let message = rejects(&layout);
    assert!(message.contains("size"), "{message}");
}

#[test]
fn a_missing_layer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    std::fs::remove_file(biggest_blob(&layout)).unwrap();
    let message = rejects(&layout);
    assert!(message.contains("blob"), "{message}");
}

/// Same size, other bytes: the digest check catches it.
#[test]
fn a_changed_layer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let blob = biggest_blob(&layout);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let message = rejects(&layout);
    assert!(message.contains("does not hash to its name"), "{message}");
}

/// A config whose diff_ids do not describe its layers, re-hashed and
/// re-referenced so every descriptor is consistent: only unpacking the
/// layers catches it.
#[test]
fn a_config_that_lies_about_its_layers_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layout = copy_of_fixture(dir.path());
    let blobs = layout.join("blobs/sha256");
    // Find a config blob: JSON with rootfs.diff_ids.
    let (config_path, mut config) = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find_map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            v["rootfs"]["diff_ids"].is_array().then_some((p, v))
        })
        .expect("a config in the fixture");
    let old_hex = config_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    config["rootfs"]["diff_ids"][0] = serde_json::json!(format!("sha256:{}", "0".repeat(64)));
    let bytes = serde_json::to_vec(&config).unwrap();
    common::image::replace_blob(&layout, &old_hex, &bytes);
    let message = rejects(&layout);
    assert!(message.contains("diff_ids differ"), "{message}");
}
