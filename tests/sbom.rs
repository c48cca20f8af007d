//! The SBOM attached to every image: found through the referrers tag schema
//! with plain HTTP GETs against a real registry, validated by independent
//! tools (spdx-tools' `pyspdxtools`, cyclonedx-python-lib's JSON validator,
//! installed by scripts/setup into target/sbom-tools), identical on rebuild,
//! listing exactly the image's `*.dist-info` dirs.

mod common;

use common::fixtures::{push_alpine, repo_root, run_ok, sha256_digest, sha256_hex, wheelhouse};
use common::registry::Registry;
use common::skip_or_fail;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const SPDX: &str = "application/spdx+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

fn sbom_tools() -> Option<PathBuf> {
    let python = repo_root().join("target/sbom-tools/bin/python");
    if skip_or_fail(python.to_str().unwrap()) {
        return None;
    }
    Some(python)
}

/// A plain HTTP/1.0 GET against the loopback registry: (status, body).
fn http_get(addr: &str, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

fn get_json(addr: &str, path: &str, accept: &str) -> Value {
    let (status, body) = http_get(addr, path, accept);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

const ACCEPT_ANY: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

struct Setup {
    registry: Registry,
    work: tempfile::TempDir,
    recipe: PathBuf,
    wheels: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        if ["docker-registry", "skopeo", "uv", "git"]
            .iter()
            .any(|t| skip_or_fail(t))
        {
            return None;
        }
        let wheels = wheelhouse()?;
        let registry = Registry::start();
        push_alpine(&registry);
        let work = tempfile::tempdir().unwrap();
        let app = work.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("main.py"), "import fastapi\n").unwrap();
        let git = |args: &[&str]| {
            run_ok(
                Command::new("git")
                    .arg("-C")
                    .arg(&app)
                    .args(args)
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    // HEAD's commit time is the default SOURCE_DATE_EPOCH.
                    .env("GIT_COMMITTER_DATE", "2023-11-14T22:13:20Z")
                    .env("GIT_AUTHOR_DATE", "2023-11-14T22:13:20Z"),
            );
        };
        git(&["init", "-q"]);
        git(&[
            "remote",
            "add",
            "origin",
            "https://git.example.org/team/app.git",
        ]);
        git(&["add", "."]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "app",
        ]);
        // Every pin hashed (as `uv export` of a lock writes it): a pure wheel
        // has one hash, so its sha256 is known; platform wheels have several.
        let text =
            std::fs::read_to_string(repo_root().join("recipes/fastapi-demo/requirements.txt"))
                .unwrap();
        let mut pinned = String::new();
        for line in text.lines().filter(|l| l.contains("==")) {
            let (name, version) = line.split_once("==").unwrap();
            let prefix = format!("{}-{version}-", name.replace('-', "_"));
            pinned.push_str(line);
            for entry in std::fs::read_dir(&wheels).unwrap() {
                let path = entry.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().to_lowercase();
                if file.starts_with(&prefix) {
                    pinned.push_str(&format!(
                        " --hash=sha256:{}",
                        sha256_hex(&std::fs::read(&path).unwrap())
                    ));
                }
            }
            pinned.push('\n');
        }
        std::fs::write(work.path().join("requirements.txt"), pinned).unwrap();
        let recipe = work.path().join("recipe.toml");
        std::fs::write(
            &recipe,
            "base = \"python:3.13-alpine\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[python]\nrequirements = [\"requirements.txt\"]\n[app]\nsource = \"app\"\n[image]\ncmd = [\"python\", \"main.py\"]\n",
        )
        .unwrap();
        Some(Setup {
            registry,
            work,
            recipe,
            wheels,
        })
    }

    fn slipway(&self, cache: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.env("SLIPWAY_CACHE_DIR", self.work.path().join(cache));
        cmd.env("DOCKER_CONFIG", self.work.path().join("no-docker-config"));
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn build(&self, cache: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build").arg(&self.recipe);
        cmd.args(["--offline", "--find-links"]).arg(&self.wheels);
        cmd.args([
            "--registry-mirror",
            &format!("docker.io={}", self.registry.addr()),
        ]);
        cmd.args(extra);
        cmd.env("SLIPWAY_CACHE_DIR", self.work.path().join(cache));
        cmd.env("DOCKER_CONFIG", self.work.path().join("no-docker-config"));
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd.arg("-q");
        cmd
    }

    fn push(&self, cache: &str, image: &str, extra: &[&str]) {
        let dest = format!("{}/{image}", self.registry.addr());
        run_ok(self.build(cache, extra).arg("--push").arg(dest));
    }
}

/// Platform → manifest digest of a pushed index.
fn platform_manifests(addr: &str, repo: &str, tag: &str) -> Vec<(String, String)> {
    let index = get_json(addr, &format!("/v2/{repo}/manifests/{tag}"), ACCEPT_ANY);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let arch = m["platform"]["architecture"].as_str().unwrap().to_string();
            (arch, m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The referrers tag schema: `sha256-<hex>` → index of artifacts → the SBOM blob.
/// Returns (artifact manifest digest, SBOM bytes).
fn sbom_via_tag(addr: &str, repo: &str, subject: &str, artifact_type: &str) -> (String, Vec<u8>) {
    let tag = subject.replace(':', "-");
    let referrers = get_json(
        addr,
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.oci.image.index.v1+json",
    );
    let entries: Vec<&Value> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["artifactType"] == artifact_type)
        .collect();
    assert_eq!(entries.len(), 1, "{referrers}");
    let digest = entries[0]["digest"].as_str().unwrap().to_string();
    let (status, manifest_bytes) =
        http_get(addr, &format!("/v2/{repo}/manifests/{digest}"), ACCEPT_ANY);
    assert_eq!(status, 200);
    assert_eq!(sha256_digest(&manifest_bytes), digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["artifactType"], artifact_type);
    assert_eq!(
        manifest["subject"]["digest"], subject,
        "the SBOM refers to its image manifest"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (status, sbom) = http_get(addr, &format!("/v2/{repo}/blobs/{layer}"), "*/*");
    assert_eq!(status, 200);
    assert_eq!(sha256_digest(&sbom), layer);
    (digest, sbom)
}

/// `(name, version)` of every `*.dist-info` dir in the image's layers.
fn dist_info_dirs(addr: &str, repo: &str, manifest: &str) -> BTreeSet<(String, String)> {
    let manifest = get_json(
        addr,
        &format!("/v2/{repo}/manifests/{manifest}"),
        ACCEPT_ANY,
    );
    let mut out = BTreeSet::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let (status, blob) = http_get(addr, &format!("/v2/{repo}/blobs/{digest}"), "*/*");
        assert_eq!(status, 200);
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&blob[..]));
        for entry in archive.entries().unwrap() {
            let path = entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for part in path.split('/') {
                if let Some(stem) = part.strip_suffix(".dist-info") {
                    let (name, version) = stem.split_once('-').unwrap();
                    out.insert((name.replace('_', "-").to_lowercase(), version.to_string()));
                }
            }
        }
    }
    out
}

fn validate_spdx(python: &Path, bytes: &[u8], dir: &Path) {
    let file = dir.join("sbom.spdx.json");
    std::fs::write(&file, bytes).unwrap();
    run_ok(
        Command::new(python.with_file_name("pyspdxtools"))
            .arg("-i")
            .arg(&file),
    );
}

fn validate_cyclonedx(python: &Path, bytes: &[u8], dir: &Path) {
    let file = dir.join("sbom.cdx.json");
    std::fs::write(&file, bytes).unwrap();
    let script = "import sys\nfrom cyclonedx.schema import SchemaVersion\nfrom cyclonedx.validation.json import JsonStrictValidator\nerrors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif errors:\n    sys.exit(repr(errors))\n";
    run_ok(Command::new(python).arg("-c").arg(script).arg(&file));
}

#[test]
fn spdx_attached_to_each_platform_found_by_tag_valid_and_stable() {
    let Some(python) = sbom_tools() else { return };
    let Some(setup) = Setup::new() else { return };
    let addr = setup.registry.addr().to_string();
    setup.push("cache-a", "team/app:1", &[]);
    let manifests = platform_manifests(&addr, "team/app", "1");
    assert_eq!(manifests.len(), 2);
    let mut first_digests = Vec::new();
    for (arch, subject) in &manifests {
        let (artifact, sbom) = sbom_via_tag(&addr, "team/app", subject, SPDX);
        first_digests.push(artifact);
        validate_spdx(&python, &sbom, setup.work.path());
        let doc: Value = serde_json::from_slice(&sbom).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            doc["creationInfo"]["created"], "2023-11-14T22:13:20Z",
            "SOURCE_DATE_EPOCH (HEAD's commit time by default), not the clock"
        );
        let packages = doc["packages"].as_array().unwrap();
        // The package list is exactly the image's dist-info dirs.
        let mut listed = BTreeSet::new();
        for p in packages {
            let Some(purl) = p["externalRefs"][0]["referenceLocator"].as_str() else {
                continue;
            };
            let version = p["versionInfo"].as_str().unwrap();
            let name = p["name"].as_str().unwrap().replace('_', "-").to_lowercase();
            assert_eq!(purl, format!("pkg:pypi/{name}@{version}"));
            listed.insert((name, version.to_string()));
        }
        let in_image = dist_info_dirs(&addr, "team/app", subject);
        assert!(in_image.len() >= 10, "{in_image:?}");
        assert_eq!(listed, in_image, "{arch}");
        // The base by name and digest; the app by source and revision.
        let base = packages
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-Base")
            .unwrap();
        assert_eq!(base["name"], "docker.io/library/python:3.13-alpine");
        let image_manifest = get_json(
            &addr,
            &format!("/v2/team/app/manifests/{subject}"),
            ACCEPT_ANY,
        );
        assert_eq!(
            base["versionInfo"],
            image_manifest["annotations"]["org.opencontainers.image.base.digest"]
        );
        let app = packages
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-App")
            .unwrap();
        assert_eq!(
            app["versionInfo"],
            image_manifest["annotations"]["org.opencontainers.image.revision"]
        );
        assert!(app["downloadLocation"]
            .as_str()
            .unwrap()
            .starts_with("git+https://git.example.org/team/app.git@"));
        // License from METADATA; the wheel's sha256 where the pins name one wheel.
        let fastapi = packages.iter().find(|p| p["name"] == "fastapi").unwrap();
        assert_eq!(fastapi["licenseDeclared"], "MIT");
        let wheel = setup.wheels.join("fastapi-0.165.0-py3-none-any.whl");
        assert_eq!(
            fastapi["checksums"][0]["checksumValue"],
            sha256_hex(&std::fs::read(wheel).unwrap())
        );
        let core = packages
            .iter()
            .find(|p| p["name"] == "pydantic_core")
            .unwrap();
        assert!(
            core["checksums"].is_null(),
            "several wheels pinned: none claimed"
        );
        assert!(
            packages.iter().any(|p| p["annotations"][0]["comment"]
                .as_str()
                .is_some_and(|c| c.contains("RECORD sha256:"))),
            "RECORD digests"
        );

        // `slipway sbom` prints the same document; `inspect` says one is attached.
        let image = format!("{addr}/team/app:1");
        let out = run_ok(setup.slipway("cache-a").args([
            "sbom",
            &image,
            "--platform",
            &format!("linux/{arch}"),
        ]));
        assert_eq!(out.stdout, sbom);
    }
    let out = run_ok(setup.slipway("cache-a").args([
        "inspect",
        "--no-contents",
        &format!("{addr}/team/app:1"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(&format!("({SPDX})")).count(), 2, "{text}");

    // A rebuild from an empty cache, pushed again: the same SBOMs, listed once.
    setup.push("cache-b", "team/app:1", &[]);
    for ((_, subject), first) in manifests.iter().zip(&first_digests) {
        let (again, _) = sbom_via_tag(&addr, "team/app", subject, SPDX);
        assert_eq!(&again, first, "same build, same SBOM digest");
    }
}

#[test]
fn cyclonedx_on_request_none_when_asked_and_in_layouts() {
    let Some(python) = sbom_tools() else { return };
    let Some(setup) = Setup::new() else { return };
    let addr = setup.registry.addr().to_string();
    setup.push("cache", "team/cdx:1", &["--sbom-format", "cyclonedx"]);
    for (_, subject) in platform_manifests(&addr, "team/cdx", "1") {
        let (_, sbom) = sbom_via_tag(&addr, "team/cdx", &subject, CYCLONEDX);
        validate_cyclonedx(&python, &sbom, setup.work.path());
        let bom: Value = serde_json::from_slice(&sbom).unwrap();
        assert_eq!(bom["specVersion"], "1.6");
        assert!(bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["purl"] == "pkg:pypi/fastapi@0.165.0"));
    }

    setup.push("cache", "team/none:1", &["--sbom-format", "none"]);
    for (_, subject) in platform_manifests(&addr, "team/none", "1") {
        let tag = subject.replace(':', "-");
        let (status, _) = http_get(&addr, &format!("/v2/team/none/manifests/{tag}"), ACCEPT_ANY);
        assert_eq!(status, 404, "no SBOM with --sbom-format none");
    }
    let x = setup.work.path().join("x");
    let out = setup
        .build(
            "cache",
            &["--sbom-format", "xml", "--oci-layout", x.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`xml`"));

    // An OCI layout carries the SBOMs too; the image stays its first entry.
    let layout = setup.work.path().join("layout");
    run_ok(&mut setup.build("cache", &["--oci-layout", layout.to_str().unwrap()]));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        entries.iter().filter(|e| e["artifactType"] == SPDX).count(),
        2
    );
    let out = run_ok(setup.slipway("cache").args([
        "sbom",
        &format!("oci:{}", layout.display()),
        "--platform",
        "linux/arm64",
    ]));
    validate_spdx(&python, &out.stdout, setup.work.path());
    if !skip_or_fail("skopeo") {
        common::fixtures::skopeo_raw(&[], &format!("oci:{}:latest", layout.display()));
    }
}

/// The referrers of a two-platform image share one blob, the empty config:
/// it goes up once. Two uploads of it at once made Distribution refuse a
/// referrer's manifest now and then (`DIGEST_INVALID`, `MANIFEST_BLOB_UNKNOWN`).
#[test]
fn the_referrers_shared_empty_config_is_uploaded_once() {
    let Some(setup) = Setup::new() else { return };
    let proxy = common::fault_proxy::FaultProxy::start(setup.registry.addr());
    let dest = format!("{}/team/once:1", proxy.addr());
    run_ok(setup.build("cache", &[]).arg("--push").arg(&dest));
    let subjects = platform_manifests(setup.registry.addr(), "team/once", "1");
    assert_eq!(subjects.len(), 2, "a two-platform image: {subjects:?}");
    let empty_config = sha256_digest(b"{}").replace(':', "%3A");
    let uploads: Vec<String> = proxy
        .log()
        .iter()
        .filter(|e| e.method == "PUT" && e.target.contains(&format!("digest={empty_config}")))
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(uploads.len(), 1, "uploaded once: {uploads:?}");
    for (_, subject) in &subjects {
        let (_, sbom) = sbom_via_tag(setup.registry.addr(), "team/once", subject, SPDX);
        assert!(!sbom.is_empty());
    }
}
