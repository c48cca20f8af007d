//! A small valid image (one gzip layer, a config, an OCI manifest) and a
//! helper that pushes it with the client; and `validate_layout` /
//! `validate_archive`, which check an image on disk in full with the
//! library's `slipway::validate` (the checker every test that produces an
//! image can run) and panic listing every problem.

use slipway::digest::Digest;
use slipway::image::archive::Archive;
use slipway::inspect::source::Source;
use slipway::registry::RegistryClient;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub struct TestImage {
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
    pub diff_id: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// Holds `layer` and `config` as files, for `push_blob`.
    pub dir: TempDir,
}

impl TestImage {
    /// An image whose one file, `/hello.txt`, holds `seed` (different seeds,
    /// different digests).
    pub fn new(seed: &str) -> TestImage {
        let tar = layer_tar(seed.as_bytes());
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).unwrap();
        let layer = gz.finish().unwrap();
        let layer_digest = Digest::of(&layer);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
        })
        .to_string()
        .into_bytes();
        let config_digest = Digest::of(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest.as_str(), "size": layer.len()}],
            "annotations": {"org.example.seed": seed},
        })
        .to_string()
        .into_bytes();
        let manifest_digest = Digest::of(&manifest);
        let dir = tempfile::tempdir().expect("create the image's temp dir");
        std::fs::write(dir.path().join("layer"), &layer).unwrap();
        std::fs::write(dir.path().join("config"), &config).unwrap();
        TestImage {
            layer,
            layer_digest,
            diff_id,
            config,
            config_digest,
            manifest,
            manifest_digest,
            dir,
        }
    }

    pub fn layer_path(&self) -> PathBuf {
        self.dir.path().join("layer")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config")
    }
}

fn layer_tar(content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path("hello.txt").unwrap();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder.append(&header, content).unwrap();
    builder.into_inner().unwrap()
}

/// Push `image` (blobs the repository lacks, then the manifest under `tag`);
/// returns the manifest digest the registry reports. Panics with the error
/// and its hint on failure.
pub async fn push_image(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    tag: &str,
    image: &TestImage,
) -> Digest {
    let fail = |e: slipway::registry::RegistryError| -> ! {
        panic!("{e} (hint: {:?})", slipway::error::Hint::hint(&e))
    };
    for (digest, path) in [
        (&image.layer_digest, image.layer_path()),
        (&image.config_digest, image.config_path()),
    ] {
        let present = client
            .blob_exists(registry, repository, digest)
            .await
            .unwrap_or_else(|e| fail(e));
        if present.is_none() {
            client
                .push_blob(registry, repository, digest, &path)
                .await
                .unwrap_or_else(|e| fail(e));
        }
    }
    client
        .put_manifest(registry, repository, tag, OCI_MANIFEST, &image.manifest)
        .await
        .unwrap_or_else(|e| fail(e))
}

/// Build a test image seeded with `registry/repository:tag` and push it.
pub async fn push_test_image(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    tag: &str,
) -> TestImage {
    let image = TestImage::new(&format!("{registry}/{repository}:{tag}"));
    push_image(client, registry, repository, tag, &image).await;
    image
}

// ---------------------------------------------------------------------------
// Validation of a whole image on disk, by the library's checker.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One image (a platform's manifest) found valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidImage {
    /// None in a docker-archive (it has no manifest blob).
    pub manifest_digest: Option<String>,
    pub config_digest: String,
    /// `os/architecture` from the config.
    pub platform: String,
    pub diff_ids: Vec<String>,
}

/// A valid image on disk: the digest its top level names (index.json's
/// first manifest; a docker-archive's config) and every image in it.
#[derive(Debug, Clone)]
pub struct Validated {
    pub top: String,
    pub images: Vec<ValidImage>,
}

/// Checks the OCI layout at `dir` in full with `slipway::validate` and
/// panics listing every problem (see that module for what is checked).
pub fn validate_layout(dir: &Path) -> Validated {
    validated(
        &dir.display().to_string(),
        Source::Layout {
            source: slipway::image::layout::LayoutSource::new(dir),
            tag: None,
        },
    )
}

/// Checks the docker-archive `file` in full with `slipway::validate`; the
/// top digest is the config's (the image ID `docker load` reports).
pub fn validate_archive(file: &Path) -> Validated {
    let archive = Archive::open(file)
        .unwrap_or_else(|e| panic!("{}: not a complete tar: {e}", file.display()));
    validated(&file.display().to_string(), Source::Archive(archive))
}

fn validated(name: &str, source: Source) -> Validated {
    // Its own runtime on its own thread: callers may be inside one already.
    let validation = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(slipway::validate::validate(&source))
        })
        .join()
        .unwrap()
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let problems: Vec<String> = validation.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        problems.is_empty(),
        "{name} is not a valid image:\n{}",
        problems.join("\n")
    );
    Validated {
        top: validation.top.expect("a valid image has a top").to_string(),
        images: validation
            .images
            .into_iter()
            .map(|i| ValidImage {
                manifest_digest: i.manifest_digest.map(String::from),
                config_digest: i.config_digest.to_string(),
                platform: i.platform,
                diff_ids: i.diff_ids.into_iter().map(String::from).collect(),
            })
            .collect(),
    }
}

/// Writes `bytes` into the OCI layout as a new blob in place of the blob
/// `old_hex`, and rewrites every document on the way from index.json down to
/// it (indexes, manifests) so every descriptor stays consistent. The new
/// blob's hex.
pub fn replace_blob(layout: &Path, old_hex: &str, bytes: &[u8]) -> String {
    let blobs = layout.join("blobs/sha256");
    let new_hex = super::fixtures::sha256_hex(bytes);
    std::fs::write(blobs.join(&new_hex), bytes).unwrap();
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let replacement = (format!("sha256:{old_hex}"), new_hex.clone(), bytes.len());
    if repoint_children(&blobs, &mut index, &replacement) {
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }
    new_hex
}

/// Re-points `doc`'s descriptors that lead to the replaced blob; whether any did.
fn repoint_children(
    blobs: &Path,
    doc: &mut serde_json::Value,
    replacement: &(String, String, usize),
) -> bool {
    let mut changed = false;
    if doc["config"].is_object() {
        changed |= repoint(blobs, &mut doc["config"], replacement);
    }
    for key in ["manifests", "layers"] {
        for desc in doc[key].as_array_mut().into_iter().flatten() {
            changed |= repoint(blobs, desc, replacement);
        }
    }
    changed
}

/// Re-points `desc` when it names the replaced blob or a document leading to it.
fn repoint(
    blobs: &Path,
    desc: &mut serde_json::Value,
    replacement: &(String, String, usize),
) -> bool {
    let (old, new_hex, new_size) = replacement;
    if desc["digest"] == old.as_str() {
        desc["digest"] = serde_json::json!(format!("sha256:{new_hex}"));
        desc["size"] = serde_json::json!(new_size);
        return true;
    }
    let media_type = desc["mediaType"].as_str().unwrap_or_default();
    if !(media_type.contains("manifest") || media_type.contains("index")) {
        return false;
    }
    let hex = desc["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(blobs.join(hex)).unwrap_or_default(),
    ) else {
        return false;
    };
    if !repoint_children(blobs, &mut doc, replacement) {
        return false;
    }
    let bytes = serde_json::to_vec(&doc).unwrap();
    let hex = super::fixtures::sha256_hex(&bytes);
    std::fs::write(blobs.join(&hex), &bytes).unwrap();
    desc["digest"] = serde_json::json!(format!("sha256:{hex}"));
    desc["size"] = serde_json::json!(bytes.len());
    true
}
