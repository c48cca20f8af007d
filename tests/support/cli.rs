//! Helpers for the tests that drive the `slipway` binary (inspect, init,
//! interop, progress): the wheelhouse, the committed alpine base, a command
//! isolated from the user's cache and credentials, and output checks.
//!
//! Include with `#[path = "support/cli.rs"] mod cli;` after `mod common;`.
#![allow(dead_code)]

#[allow(unused_imports)] // not every including test uses every fixture
pub use crate::common::fixtures::{
    alpine_layout, push_alpine, repo_root, run_ok, sha256_digest, skopeo_raw, tools_missing,
    wheelhouse,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `slipway ARGS` with its cache in `cache` and no docker credentials.
pub fn slipway(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env("SLIPWAY_CACHE_DIR", cache);
    cmd.env("DOCKER_CONFIG", cache.join("no-docker-config"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// `slipway build RECIPE` offline from the wheelhouse, base from the committed layout.
pub fn build_offline(cache: &Path, recipe: &Path, wheels: &Path) -> Command {
    let mut cmd = slipway(cache);
    cmd.arg("build").arg(recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.arg("--offline").arg("--find-links").arg(wheels);
    cmd
}

/// Copies a dir tree (files, dirs, symlinks), skipping names in `skip`.
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name.to_string_lossy() == *s) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest, skip);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), dest).unwrap();
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
