//! `slipway inspect` on images slipway built — an OCI layout, a registry
//! (multi-platform) and a docker-archive — checked against skopeo's view of
//! the same image, and the Python breakdown naming the real wheels.

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use common::registry::Registry;
use serde_json::Value;
use std::path::Path;

/// The manifest's digests and sizes equal what `inspect` reports for `platform`.
fn assert_matches_manifest(platform: &Value, manifest_raw: &[u8], config_raw: &[u8]) {
    assert_eq!(platform["manifest_digest"], sha256_digest(manifest_raw));
    let manifest: Value = serde_json::from_slice(manifest_raw).unwrap();
    let config: Value = serde_json::from_slice(config_raw).unwrap();
    assert_eq!(platform["config_digest"], manifest["config"]["digest"]);
    assert_eq!(platform["config_digest"], sha256_digest(config_raw));
    let layers = platform["layers"].as_array().unwrap();
    let expected = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), expected.len());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    for ((got, want), diff_id) in layers.iter().zip(expected).zip(diff_ids) {
        assert_eq!(got["digest"], want["digest"]);
        assert_eq!(got["size"], want["size"]);
        assert_eq!(got["media_type"], want["mediaType"]);
        assert_eq!(&got["diff_id"], diff_id);
        assert!(got["uncompressed_size"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        platform["annotations"], manifest["annotations"],
        "manifest annotations"
    );
    assert_eq!(platform["config"]["cmd"], config["config"]["Cmd"]);
}

/// fastapi and pydantic_core are in the breakdown, heaviest first.
fn assert_breakdown(platform: &Value) {
    let python = &platform["python"];
    let dists = python["distributions"].as_array().unwrap();
    let size_of = |name: &str| {
        dists
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the breakdown: {python}"))["size"]
            .as_u64()
            .unwrap()
    };
    assert!(size_of("fastapi") > 100_000);
    assert!(size_of("pydantic_core") > 1_000_000);
    let sizes: Vec<u64> = dists.iter().map(|d| d["size"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "heaviest first");
    assert_eq!(dists[0]["name"], "pydantic_core", "the heaviest wheel");
    let fastapi = dists.iter().find(|d| d["name"] == "fastapi").unwrap();
    assert!(
        fastapi["bytecode_size"].as_u64().unwrap() > 0,
        "bytecode layer attributed"
    );
}

fn inspect_json(cache: &Path, image: &str) -> Value {
    json_of(&run_ok(
        slipway(cache).args(["inspect", "--json"]).arg(image),
    ))
}

#[test]
fn inspects_an_oci_layout_and_a_docker_archive_like_skopeo() {
    if tools_missing(&["skopeo", "uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let recipe = repo_root().join("recipes/fastapi-demo/alpine.toml");
    let layout = work.path().join("out");
    let built = json_of(&run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--oci-layout")
            .arg(&layout)
            .arg("--json"),
    ));

    let image = format!("oci:{}:latest", layout.display());
    let report = inspect_json(&cache, &format!("oci:{}", layout.display()));
    assert_eq!(report["digest"], built["digest"]);
    let platforms = report["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let platform = &platforms[0];
    assert_eq!(platform["platform"], "linux/amd64");
    assert_matches_manifest(
        platform,
        &skopeo_raw(&[], &image),
        &skopeo_raw(&["--config"], &image),
    );
    // Uncompressed sizes agree with the build's own report.
    for (got, built) in platform["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(built["platforms"][0]["layers"].as_array().unwrap())
    {
        if built["kind"] != "base" {
            assert_eq!(got["uncompressed_size"], built["uncompressed_size"]);
        }
    }
    let history: Vec<&str> = platform["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["created_by"].as_str())
        .collect();
    assert!(
        history
            .iter()
            .any(|h| h.starts_with("slipway: site-packages")),
        "{history:?}"
    );
    assert_breakdown(platform);

    // The human summary names the same things.
    let out = run_ok(
        slipway(&cache)
            .arg("inspect")
            .arg(format!("oci:{}", layout.display())),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "linux/amd64",
        "pydantic_core 2.50.4",
        "fastapi 0.165.0",
        "slipway: app bytecode",
        "WorkingDir  /app",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }

    // The same image as a docker-archive: same config, layers as stored there.
    let archive = work.path().join("app.tar");
    run_ok(
        build_offline(&cache, &recipe, &wheels)
            .arg("--docker-archive")
            .arg(&archive)
            .arg("--quiet"),
    );
    let report = inspect_json(&cache, &format!("docker-archive:{}", archive.display()));
    let platform = &report["platforms"][0];
    let skopeo_config = skopeo_raw(
        &["--config"],
        &format!("docker-archive:{}", archive.display()),
    );
    assert_eq!(platform["config_digest"], sha256_digest(&skopeo_config));
    let config: Value = serde_json::from_slice(&skopeo_config).unwrap();
    for (layer, diff_id) in platform["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        // docker-archive layers are stored uncompressed: their digest is the diff_id.
        assert_eq!(&layer["digest"], diff_id);
        assert_eq!(layer["size"], layer["uncompressed_size"]);
    }
    assert_breakdown(platform);
}

#[test]
fn inspects_a_multi_platform_image_in_a_registry_like_skopeo() {
    if tools_missing(&["docker-registry", "skopeo", "uv"]) {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let registry = Registry::start();
    push_alpine(&registry);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let recipe = repo_root().join("recipes/fastapi-demo/alpine.toml");
    let reference = format!("{}/demo/app:1", registry.addr());
    let built = json_of(&run_ok(
        slipway(&cache)
            .arg("build")
            .arg(&recipe)
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", registry.addr()))
            .args(["--offline", "--find-links"])
            .arg(&wheels)
            .args(["--platform", "linux/amd64", "--platform", "linux/arm64"])
            .arg("--push")
            .arg(&reference)
            .arg("--json"),
    ));

    let image = format!("docker://{reference}");
    let index_raw = skopeo_raw(&[], &image);
    let report = inspect_json(&cache, &reference);
    assert_eq!(report["digest"], sha256_digest(&index_raw));
    assert_eq!(report["digest"], built["digest"]);
    assert_eq!(
        report["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms = report["platforms"].as_array().unwrap();
    let names: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    for platform in platforms {
        let arch = platform["platform"].as_str().unwrap().replace("linux/", "");
        let by_digest = format!(
            "docker://{}@{}",
            reference.rsplit_once(':').unwrap().0,
            platform["manifest_digest"].as_str().unwrap()
        );
        let manifest = skopeo_raw(&[], &by_digest);
        let config = skopeo_raw(&["--config"], &by_digest);
        assert_matches_manifest(platform, &manifest, &config);
        assert_breakdown(platform);
        let core = platform["python"]["distributions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "pydantic_core")
            .unwrap();
        assert!(core["size"].as_u64().unwrap() > 0, "{arch}: {core}");
    }

    // --platform keeps one; --no-contents skips the layers' bytes.
    let one = json_of(&run_ok(
        slipway(&cache)
            .args([
                "inspect",
                "--json",
                "--no-contents",
                "--platform",
                "linux/arm64",
            ])
            .arg(&reference),
    ));
    let platforms = one["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    assert_eq!(platforms[0]["platform"], "linux/arm64");
    assert!(platforms[0]["python"].is_null());
    assert!(platforms[0]["layers"][0]["uncompressed_size"].is_null());
}

#[test]
fn inspect_errors_name_the_problem_and_exit_with_its_code() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    // A tag the layout does not have: bad input (2).
    let out = slipway(&cache)
        .arg("inspect")
        .arg(format!("oci:{}:nope", alpine_layout().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tagged `nope`") && stderr.contains("3.13-alpine"),
        "{stderr}"
    );
    // A repository the registry does not have: registry error (3).
    let registry = Registry::start();
    let out = slipway(&cache)
        .arg("inspect")
        .arg(format!("{}/no/such:1", registry.addr()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
