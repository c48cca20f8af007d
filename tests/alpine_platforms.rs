//! One build, two platforms, from the committed python:3.13-alpine stand-in
//! (an index with linux/amd64, linux/arm64 and an attestation entry): the
//! result is an image index of two manifests; each platform got musllinux
//! wheels and ELF extension modules for its own machine; the size report
//! names the site-packages layer with both sizes; and that layer carries no
//! caches, no `__pycache__`, no host paths.

mod common;

use common::fixtures::{repo_root, run_ok, sha256_digest, wheelhouse};
use common::registry::Registry;
use common::skip_or_fail;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

/// An OCI image layout on disk.
struct Layout(PathBuf);

impl Layout {
    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let bytes = std::fs::read(self.0.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", self.0.display()));
        assert_eq!(
            sha256_digest(&bytes),
            digest,
            "blob content matches its digest"
        );
        bytes
    }

    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).expect("a JSON blob")
    }

    /// The top descriptor of `index.json` (there is one image here).
    fn top(&self) -> Value {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.0.join("index.json")).unwrap()).unwrap();
        index["manifests"][0].clone()
    }

    /// `os/arch` → manifest, for every platform of the (nested) index,
    /// including `unknown/unknown` entries.
    fn manifests_by_platform(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut pending = vec![self.top()];
        while let Some(desc) = pending.pop() {
            let digest = desc["digest"].as_str().unwrap();
            let doc = self.json(digest);
            if let Some(children) = doc["manifests"].as_array() {
                pending.extend(children.iter().cloned());
            } else {
                let p = &desc["platform"];
                let key = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or("?"),
                    p["architecture"].as_str().unwrap_or("?")
                );
                out.insert(key, doc);
            }
        }
        out
    }
}

/// A layer's files: path (without leading `./` or `/`) → (kind, content).
struct LayerFiles {
    entries: BTreeMap<String, (tar::EntryType, Vec<u8>)>,
    uncompressed: u64,
}

fn read_layer(gz: &[u8]) -> LayerFiles {
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut tar_bytes)
        .expect("gunzip the layer");
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for entry in archive.entries().expect("a tar layer") {
        let mut entry = entry.expect("a tar entry");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        let kind = entry.header().entry_type();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.insert(path, (kind, content));
    }
    LayerFiles {
        entries,
        uncompressed: tar_bytes.len() as u64,
    }
}

/// One row of slipway's size table.
#[derive(Debug)]
struct Row {
    kind: String,
    compressed: String,
    uncompressed: String,
    digest_prefix: String,
}

/// slipway's per-layer table on stderr: platform → rows, in layer order.
fn size_table(stderr: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stderr.lines() {
        if line.starts_with("linux/") {
            let platform = line.split_whitespace().next().unwrap().to_string();
            out.entry(platform.clone()).or_default();
            current = Some(platform);
            continue;
        }
        let Some(platform) = &current else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        // kind, compressed (n unit | n B), uncompressed (n unit | -), cache, digest
        let Some(digest) = words.last().filter(|w| w.starts_with("sha256:")) else {
            continue;
        };
        let mut rest = &words[1..words.len() - 2];
        let mut take = || -> String {
            if rest.first() == Some(&"-") {
                rest = &rest[1..];
                return "-".into();
            }
            let value = format!("{} {}", rest[0], rest[1]);
            rest = &rest[2..];
            value
        };
        let compressed = take();
        let uncompressed = take();
        out.get_mut(platform).unwrap().push(Row {
            kind: words[0].to_string(),
            compressed,
            uncompressed,
            digest_prefix: digest.to_string(),
        });
    }
    out
}

/// ELF e_machine of `bytes` (little-endian ELF64), if it is one.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() > 20 && &bytes[..4] == b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1)
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

#[test]
fn one_build_for_amd64_and_arm64_gives_an_index_with_the_right_wheels_and_sizes() {
    for tool in ["docker-registry", "skopeo", "uv"] {
        if skip_or_fail(tool) {
            return;
        }
    }
    let Some(wheels) = wheelhouse() else { return };
    let registry = Registry::start();
    let fixture = Layout(repo_root().join("vendor-test-images/python-3.13-alpine"));
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:3.13-alpine", fixture.0.display()))
            .arg(format!(
                "docker://{}/library/python:3.13-alpine",
                registry.addr()
            )),
    );
    let fixture_manifests = fixture.manifests_by_platform();
    assert!(
        fixture_manifests.contains_key("unknown/unknown"),
        "the fixture has an attestation entry to skip: {:?}",
        fixture_manifests.keys()
    );

    let work = tempfile::tempdir().unwrap();
    let recipe_dir = work.path().join("recipe");
    std::fs::create_dir(&recipe_dir).unwrap();
    let src = repo_root().join("recipes/fastapi-demo");
    for name in ["alpine.toml", "app.py", "requirements.txt", ".dockerignore"] {
        std::fs::copy(src.join(name), recipe_dir.join(name)).unwrap();
    }
    let cache = work.path().join("cache");
    let image = format!("{}/test/multi:1", registry.addr());
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("build")
            .arg(recipe_dir.join("alpine.toml"))
            .args(["--platform", "linux/amd64", "--platform", "linux/arm64"])
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", registry.addr()))
            .arg("--offline")
            .arg("--find-links")
            .arg(&wheels)
            .arg("--push")
            .arg(&image)
            .env("SLIPWAY_CACHE_DIR", &cache)
            .env("DOCKER_CONFIG", work.path().join("no-docker-config"))
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}{stdout}");

    // An OCI index with exactly the two platforms (no attestation entry).
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .stdout;
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert!(
        stdout.ends_with(&format!("@{}", sha256_digest(&raw))),
        "slipway printed the index digest: {stdout}"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");

    // Every blob, through an independent client.
    let copy = Layout(work.path().join("oci"));
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:t", copy.0.display())),
    );
    let built = copy.manifests_by_platform();
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );

    let table = size_table(&stderr);
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"],
        "a size table per platform:\n{stderr}"
    );

    let host_paths: Vec<String> = [
        work.path().to_path_buf(),
        cache.clone(),
        wheels.clone(),
        repo_root(),
        PathBuf::from("/root/.pyenv"),
    ]
    .iter()
    .map(|p| p.to_string_lossy().into_owned())
    .collect();
    // (Not `$HOME` itself: upstream wheels carry their builders' `/root/...`.)

    for (platform, (arch_tag, machine)) in [
        ("linux/amd64", ("x86_64", 0x3Eu16)),
        ("linux/arm64", ("aarch64", 0xB7u16)),
    ] {
        let manifest = &built[platform];
        let config = copy.json(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(
            format!("linux/{}", config["architecture"].as_str().unwrap()),
            platform
        );
        // The base layers are the fixture's layers for this platform.
        let base_layers = fixture_manifests[platform]["layers"].as_array().unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), base_layers.len() + 4, "{manifest}");
        for (ours, theirs) in layers.iter().zip(base_layers) {
            assert_eq!(ours["digest"], theirs["digest"], "{platform}: base layer");
        }

        // The size table lists the layers in order, with both sizes for ours.
        let rows = &table[platform];
        assert_eq!(rows.len(), layers.len(), "{platform}: {rows:?}");
        for (row, layer) in rows.iter().zip(layers) {
            assert!(
                layer["digest"]
                    .as_str()
                    .unwrap()
                    .starts_with(&row.digest_prefix),
                "{platform}: {row:?} vs {layer}"
            );
            assert_eq!(
                row.compressed,
                slipway::report::human(layer["size"].as_u64().unwrap()),
                "{platform}: {row:?}"
            );
        }
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let site_at = kinds
            .iter()
            .position(|k| *k == "site-packages")
            .unwrap_or_else(|| panic!("{platform}: no site-packages row in {kinds:?}"));
        assert_eq!(
            &kinds[site_at..],
            [
                "site-packages",
                "site-packages-bytecode",
                "app",
                "app-bytecode"
            ]
        );
        let site_row = &rows[site_at];
        let site_digest = layers[site_at]["digest"].as_str().unwrap();
        let site_gz = copy.blob(site_digest);
        let site = read_layer(&site_gz);
        assert_eq!(
            site_row.uncompressed,
            slipway::report::human(site.uncompressed),
            "{platform}: uncompressed size of the site-packages layer"
        );
        assert_ne!(site_row.compressed, "-");

        // Wheels for this platform: musllinux, this machine.
        let site_dir = "usr/local/lib/python3.13/site-packages/";
        let wheel = site
            .entries
            .iter()
            .find(|(p, _)| {
                p.starts_with(&format!("{site_dir}pydantic_core-"))
                    && p.ends_with(".dist-info/WHEEL")
            })
            .map(|(_, (_, c))| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_else(|| panic!("{platform}: no pydantic_core WHEEL"));
        let tags: Vec<&str> = wheel
            .lines()
            .filter_map(|l| l.strip_prefix("Tag: "))
            .collect();
        assert!(!tags.is_empty(), "{wheel}");
        for tag in &tags {
            assert!(
                tag.starts_with("cp313-cp313-musllinux_") && tag.ends_with(&format!("_{arch_tag}")),
                "{platform}: wheel tag {tag}"
            );
        }
        let shared: Vec<(&String, u16)> = site
            .entries
            .iter()
            .filter(|(p, (k, _))| p.ends_with(".so") && k.is_file())
            .map(|(p, (_, c))| {
                (
                    p,
                    elf_machine(c).unwrap_or_else(|| panic!("{p} is not a 64-bit LE ELF")),
                )
            })
            .collect();
        assert!(
            shared
                .iter()
                .any(|(p, _)| p.contains("pydantic_core/_pydantic_core")),
            "{platform}: pydantic_core's extension module: {shared:?}"
        );
        for (path, m) in &shared {
            assert_eq!(*m, machine, "{platform}: {path} is ELF for machine {m:#x}");
        }

        // Nothing from the host or the installer in the site-packages layer.
        for (path, (kind, content)) in &site.entries {
            let name = path.trim_end_matches('/').rsplit('/').next().unwrap();
            assert!(
                !path.split('/').any(|c| c == "__pycache__") && !name.ends_with(".pyc"),
                "{platform}: bytecode belongs in its own layer: {path}"
            );
            assert!(
                name != ".lock" && name != "uv_cache.json",
                "{platform}: {path}"
            );
            assert!(
                path.starts_with("usr/local/")
                    || "usr/local".starts_with(path.trim_end_matches('/')),
                "{platform}: only /usr/local: {path}"
            );
            if !kind.is_file() {
                continue;
            }
            if name == "direct_url.json" {
                assert!(
                    !String::from_utf8_lossy(content).contains("file://"),
                    "{platform}: {path}"
                );
            }
            for host in &host_paths {
                assert!(
                    memchr::memmem::find(content, host.as_bytes()).is_none(),
                    "{platform}: host path `{host}` in {path}"
                );
            }
        }

        // The bytecode for it is in the next layer, and only bytecode.
        let pyc = read_layer(&copy.blob(layers[site_at + 1]["digest"].as_str().unwrap()));
        assert!(pyc.entries.contains_key(&format!(
            "{site_dir}fastapi/__pycache__/__init__.cpython-313.pyc"
        )));
        for (path, (kind, _)) in &pyc.entries {
            assert!(
                !kind.is_file() || path.ends_with(".pyc"),
                "{platform}: not bytecode: {path}"
            );
        }
    }

    // The same wheels would be wrong for the other machine: the two
    // site-packages layers differ, the app layers are shared.
    let layer_digest =
        |p: &str, i: usize| built[p]["layers"].as_array().unwrap()[i]["digest"].clone();
    let n = built["linux/amd64"]["layers"].as_array().unwrap().len();
    assert_ne!(
        layer_digest("linux/amd64", n - 4),
        layer_digest("linux/arm64", n - 4)
    );
    assert_eq!(
        layer_digest("linux/amd64", n - 2),
        layer_digest("linux/arm64", n - 2)
    );
}
