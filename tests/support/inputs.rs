//! Helpers for the bad-input and secrets tests: a work dir with an app and a
//! recipe, `slipway build` isolated from the user's cache, config and
//! credentials, the checks that a failed build wrote nothing (no output, no
//! tag, no partial cache entry), tiny hand-made base layouts, and a search of
//! every blob of an image (gzip layers decompressed) for planted strings.
//!
//! Include with `#[path = "support/inputs.rs"] mod inputs;` after `mod common;`.
#![allow(dead_code)]

#[allow(unused_imports)] // not every including test uses every fixture
pub use crate::common::fixtures::{
    alpine_layout, repo_root, sha256_hex, tools_missing, wheelhouse,
};
use crate::common::registry::Registry;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp dir holding an app (`app/main.py`), recipes, the cache and the outputs.
pub struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::Builder::new()
            .prefix("slipway-input-")
            .tempdir()
            .expect("create a work dir");
        let work = Work { dir };
        work.write("app/main.py", "print('hello')\n");
        work
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn app(&self) -> PathBuf {
        self.path().join("app")
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// Where `--oci-layout` writes (must stay absent after a failure).
    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Where `--docker-archive` writes (must stay absent after a failure).
    pub fn archive(&self) -> PathBuf {
        self.path().join("image.tar")
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `recipe.toml` with exactly `text`.
    pub fn recipe(&self, text: &str) -> PathBuf {
        self.write("recipe.toml", text)
    }

    /// `slipway build RECIPE` with the cache in the work dir and no user
    /// config, docker config or credentials from the environment.
    pub fn build(&self, recipe: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build").arg(recipe);
        isolate(&mut cmd, self.path());
        cmd
    }

    /// [`Work::build`] with the committed alpine base and `--oci-layout out`.
    pub fn build_to_layout(&self, recipe: &Path) -> Command {
        let mut cmd = self.build(recipe);
        cmd.arg("--base-layout").arg(alpine_layout());
        cmd.arg("--oci-layout").arg(self.out());
        cmd
    }
}

/// Points every place slipway reads user state at `dir` (which has none).
pub fn isolate(cmd: &mut Command, dir: &Path) {
    cmd.env("SLIPWAY_CACHE_DIR", dir.join("cache"));
    cmd.env("DOCKER_CONFIG", dir.join("no-docker-config"));
    cmd.env("SLIPWAY_CONFIG", dir.join("no-slipway-config.toml"));
    cmd.env("HOME", dir.join("home"));
    cmd.env("XDG_CONFIG_HOME", dir.join("home/.config"));
    cmd.env("XDG_CACHE_HOME", dir.join("home/.cache"));
    for var in [
        "SLIPWAY_REGISTRY_USERNAME",
        "SLIPWAY_REGISTRY_PASSWORD",
        "SOURCE_DATE_EPOCH",
        "SLIPWAY_UV",
    ] {
        cmd.env_remove(var);
    }
}

pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Outcome {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Panics unless the cache at `root` is whole: `tmp/` is empty, every blob
/// hashes to its name, and every `layers/*.json` names a blob that is there
/// with the recorded size.
pub fn assert_cache_whole(root: &Path) {
    if !root.exists() {
        return;
    }
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        tmp.is_empty(),
        "partial files left in the cache's tmp/: {tmp:?}"
    );
    let blobs = root.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            entry.file_name().to_string_lossy(),
            "cache blob {} does not match its name",
            entry.path().display()
        );
    }
    for entry in std::fs::read_dir(root.join("layers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let record: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", entry.path().display()));
        let digest = record["digest"]
            .as_str()
            .expect("a layer record has a digest");
        let blob = blobs.join(digest.trim_start_matches("sha256:"));
        let size = std::fs::metadata(&blob)
            .unwrap_or_else(|_| {
                panic!(
                    "{} names a blob that is not in the cache",
                    entry.path().display()
                )
            })
            .len();
        assert_eq!(
            Some(size),
            record["size"].as_u64(),
            "{}",
            entry.path().display()
        );
    }
}

/// Panics unless `repository:tag` is absent from `registry` (asked with the
/// registry's own credentials).
pub fn assert_no_tag(registry: &Registry, repository: &str, tag: &str) {
    let client = registry.authenticated_client();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let found = runtime.block_on(client.get_manifest(registry.addr(), repository, tag));
    match found {
        Ok(m) => panic!(
            "`{repository}:{tag}` exists in the registry after a failed build ({})",
            m.digest
        ),
        Err(e) => assert_eq!(e.status(), Some(404), "asking for the tag: {e}"),
    }
}

/// Writes a docker `config.json` for `registry` into `dir` (the
/// `DOCKER_CONFIG` dir) with `user`:`pass` as base64 `auth`.
pub fn docker_config(dir: &Path, registry: &str, user: &str, pass: &str) -> PathBuf {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let config = json!({"auths": {registry: {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

/// Every blob of an OCI layout, gzip layers decompressed: (digest, bytes).
pub fn layout_blobs(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let raw = std::fs::read(entry.path()).unwrap();
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            gunzip_if(raw),
        ));
    }
    out.push((
        "index.json".into(),
        std::fs::read(layout.join("index.json")).unwrap(),
    ));
    out
}

/// Decompresses gzip bytes; anything else is returned as it is.
pub fn gunzip_if(raw: Vec<u8>) -> Vec<u8> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut plain)
            .expect("a gzip blob decompresses");
        plain
    } else {
        raw
    }
}

/// The paths of the entries of a (decompressed) tar layer.
pub fn tar_paths(tar_bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    let Ok(entries) = archive.entries() else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

/// A gzip'd tar holding `files` ((path, contents); directories end in `/`).
pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o755);
            header.set_size(contents.len() as u64);
        }
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// Writes a single-platform (linux/amd64) OCI layout at `dir`, tagged
/// `tag`, with these layers (each a gzip'd tar) and config `env`.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], env: &[&str]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let (digest, size) = put(layer);
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }));
        diff_ids.push(format!("sha256:{}", sha256_hex(&gunzip_if(layer.clone()))));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env, "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}
