//! Missing shared libraries found at build time: numpy (and greenlet) on a
//! base without libstdc++ make `slipway build` warn, naming the extension
//! module and the library, and `slipway inspect` list them; on the faithful
//! python:3.13-slim stand-in (Debian minbase, which has libstdc++6) neither
//! says anything.
//!
//! The base without libstdc++ is the slim stand-in plus one layer of
//! whiteouts deleting libstdc++.so.6*: the same base minus that library.

mod common;

use common::fixtures::{run_ok, sha256_digest, tools_missing, wheelhouse};
use common::registry::Registry;
use common::runnable::Base;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const NUMPY_CORE: &str =
    "/usr/local/lib/python3.13/site-packages/numpy/_core/_multiarray_umath.cpython-313-x86_64-linux-gnu.so";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    std::fs::write(blob(layout, &digest), bytes).unwrap();
    digest
}

/// A copy of the slim stand-in at `dest` with one more layer that whites out
/// every `libstdc++.so.6*` of its first layer. Returns how many it removed.
fn slim_without_libstdcxx(slim: &Path, dest: &Path) -> usize {
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    for entry in std::fs::read_dir(slim.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dest.join("blobs/sha256").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::copy(slim.join("oci-layout"), dest.join("oci-layout")).unwrap();
    let index = read_json(&slim.join("index.json"));
    let mdesc = &index["manifests"][0];
    let mut manifest = read_json(&blob(slim, mdesc["digest"].as_str().unwrap()));
    let mut config = read_json(&blob(slim, manifest["config"]["digest"].as_str().unwrap()));

    // The names to delete, from the base layer itself.
    let first = std::fs::File::open(blob(
        slim,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(first));
    let mut gone = Vec::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path
            .rsplit('/')
            .next()
            .unwrap()
            .starts_with("libstdc++.so.6")
        {
            gone.push(path);
        }
    }
    let mut layer = tar::Builder::new(Vec::new());
    for path in &gone {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        layer
            .append_data(&mut header, format!("{dir}/.wh.{name}"), std::io::empty())
            .unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, &layer).unwrap();
    let gz = gz.finish().unwrap();
    let layer_digest = write_blob(dest, &gz);

    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha256_digest(&layer)));
    let history = config["history"].as_array_mut().unwrap();
    let at = history.len() - 1; // before the final CMD
    history.insert(
        at,
        json!({"created_by": "RUN apt-get purge libstdc++6 # test: no libstdc++"}),
    );
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(write_blob(dest, &config));
    manifest["config"]["size"] = json!(config.len());
    manifest["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": gz.len(),
    }));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut index = index.clone();
    index["manifests"][0]["digest"] = json!(write_blob(dest, &manifest));
    index["manifests"][0]["size"] = json!(manifest.len());
    std::fs::write(dest.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    gone.len()
}

/// Builds tests/apps/sql-numpy (slim recipe) to an OCI layout with the base
/// from `registry`; returns (--json report, stderr).
fn build_sql_numpy(registry: &Registry, out: &Path, cache: &Path) -> (Value, String) {
    let recipe = common::fixtures::repo_root().join("tests/apps/sql-numpy/slim.toml");
    let built = run_ok(
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("build")
            .arg(recipe)
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", registry.addr()))
            .arg("--offline")
            .arg("--find-links")
            .arg(wheelhouse().unwrap())
            .arg("--cache-dir")
            .arg(cache)
            .arg("--oci-layout")
            .arg(out)
            .arg("--json")
            .env("DOCKER_CONFIG", cache.join("no-docker-config")),
    );
    let report: Value = serde_json::from_slice(&built.stdout).unwrap();
    (report, String::from_utf8_lossy(&built.stderr).into_owned())
}

fn inspect_missing(layout: &Path) -> Value {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("inspect")
            .arg(format!("oci:{}:latest", layout.display()))
            .arg("--json"),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["platforms"][0]["missing_libraries"].clone()
}

#[test]
fn numpy_on_a_base_without_libstdcxx_warns_and_the_faithful_slim_base_does_not() {
    if tools_missing(&["docker-registry", "skopeo", "uv", "python3"]) || wheelhouse().is_none() {
        return;
    }
    let Some(slim) = Base::Slim.layout() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let lacking = tmp.path().join("no-libstdcxx");
    assert!(
        slim_without_libstdcxx(&slim, &lacking) > 0,
        "the slim stand-in has libstdc++"
    );

    // A base without libstdc++: warned at build time and listed by inspect.
    let registry = Registry::start();
    Base::Slim.push(&lacking, &registry);
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("lacking-image");
    let (report, stderr) = build_sql_numpy(&registry, &out, &cache);
    let missing = report["missing_libraries"].as_array().unwrap();
    assert!(
        missing.contains(&json!({"module": NUMPY_CORE, "library": "libstdc++.so.6"})),
        "{missing:?}"
    );
    assert!(
        stderr.contains(&format!("warning: {NUMPY_CORE} needs libstdc++.so.6")),
        "{stderr}"
    );
    // Nothing else is missing: the rest of each module's needs are in the
    // image (libc, libm) or bundled by its wheel (numpy.libs/).
    assert!(
        missing.iter().all(|m| m["library"] == "libstdc++.so.6"),
        "{missing:?}"
    );
    let listed = inspect_missing(&out);
    assert_eq!(
        &listed, &report["missing_libraries"],
        "inspect and build agree"
    );
    // Learned once for this base: its file list is in the cache.
    let lists = std::fs::read_dir(cache.join("filelists")).unwrap().count();
    assert_eq!(lists, 1);

    // The faithful slim stand-in: nothing missing, no warning.
    let registry = Registry::start();
    Base::Slim.push(&slim, &registry);
    let out = tmp.path().join("slim-image");
    let (report, stderr) = build_sql_numpy(&registry, &out, &cache);
    assert_eq!(report["missing_libraries"], json!([]), "{report}");
    assert!(!stderr.contains("warning:"), "{stderr}");
    assert_eq!(inspect_missing(&out), json!([]));
}
