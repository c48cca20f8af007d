//! A small valid image (one gzip layer, a config, an OCI manifest) and a
//! helper that pushes it with the client; and `validate_layout` /
//! `validate_archive`, which read an image on disk in full and check every
//! invariant (the checker every test that produces an image can run).

use sha2::{Digest as _, Sha256};
use slipway::digest::Digest;
use slipway::registry::RegistryClient;
use std::io::{Read, Write};
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
    let fail = |e: slipway::registry::RegistryError| -> ! { panic!("{e} (hint: {:?})", e.hint()) };
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
// Validation of a whole image on disk.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const GZIP_LAYERS: &[&str] = &[
    OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];
const TAR_LAYERS: &[&str] = &["application/vnd.oci.image.layer.v1.tar"];

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

/// Reads the OCI layout at `dir` in full and panics on the first broken
/// invariant: `oci-layout`; every descriptor's blob present with its size and
/// digest; the media types of descriptors, documents and layers known and
/// consistent; each config's `rootfs.diff_ids` equal to its layers, every
/// layer decompressed and read as a tar to its end; the index's platforms
/// equal to the configs'.
pub fn validate_layout(dir: &Path) -> Validated {
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("oci-layout"))
            .unwrap_or_else(|e| panic!("{}: no oci-layout file: {e}", dir.display())),
    )
    .expect("oci-layout is JSON");
    assert_eq!(marker["imageLayoutVersion"], "1.0.0", "{}", dir.display());
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json"))
            .unwrap_or_else(|e| panic!("{}: no index.json: {e}", dir.display())),
    )
    .expect("index.json is JSON");
    assert_eq!(index["schemaVersion"], 2, "index.json: {index}");
    let top = index["manifests"]
        .as_array()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| panic!("index.json lists no manifests: {index}"));
    let mut images = Vec::new();
    for desc in top {
        validate_descriptor(dir, desc, &mut images);
    }
    Validated {
        top: top[0]["digest"].as_str().unwrap().to_string(),
        images,
    }
}

/// The bytes of the blob `desc` names, checked against its size and digest.
fn layout_blob(dir: &Path, desc: &serde_json::Value) -> PathBuf {
    let digest = desc["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("descriptor without a digest: {desc}"));
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {desc}"));
    let path = dir.join("blobs/sha256").join(hex);
    let (size, got) = hash_file(&path);
    assert_eq!(
        Some(size),
        desc["size"].as_u64(),
        "blob {digest}: size differs from its descriptor"
    );
    assert_eq!(
        got,
        digest,
        "blob {} does not hash to its name",
        path.display()
    );
    path
}

fn validate_descriptor(dir: &Path, desc: &serde_json::Value, images: &mut Vec<ValidImage>) {
    let path = layout_blob(dir, desc);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .expect("a manifest or index is JSON");
    let media_type = desc["mediaType"].as_str().unwrap_or_default();
    if let Some(own) = doc["mediaType"].as_str() {
        assert_eq!(
            own, media_type,
            "{}: mediaType differs from its descriptor",
            desc["digest"]
        );
    }
    assert_eq!(doc["schemaVersion"], 2, "{}", desc["digest"]);
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            let children = doc["manifests"]
                .as_array()
                .expect("an index lists manifests");
            for child in children {
                validate_descriptor(dir, child, images);
            }
        }
        OCI_MANIFEST | DOCKER_MANIFEST if is_attestation(desc) => {
            // Build attestations (in-toto layers, not a filesystem): bytes only.
            for blob in doc["layers"].as_array().into_iter().flatten() {
                layout_blob(dir, blob);
            }
            layout_blob(dir, &doc["config"]);
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let image = validate_manifest(dir, desc, &doc);
            if let Some(platform) = desc.get("platform") {
                let named = format!(
                    "{}/{}",
                    platform["os"].as_str().unwrap_or("?"),
                    platform["architecture"].as_str().unwrap_or("?")
                );
                assert_eq!(
                    named, image.platform,
                    "index platform vs config of {}",
                    desc["digest"]
                );
            }
            images.push(image);
        }
        other => panic!("unknown manifest media type `{other}`: {desc}"),
    }
}

/// An index entry for a build attestation (`unknown/unknown`), which is no image.
fn is_attestation(desc: &serde_json::Value) -> bool {
    desc["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
        || (desc["platform"]["os"] == "unknown" && desc["platform"]["architecture"] == "unknown")
}

fn validate_manifest(dir: &Path, desc: &serde_json::Value, doc: &serde_json::Value) -> ValidImage {
    let config_desc = &doc["config"];
    let config_type = config_desc["mediaType"].as_str().unwrap_or_default();
    let config_path = layout_blob(dir, config_desc);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_path).unwrap()).expect("the config is JSON");
    let layers = doc["layers"].as_array().expect("a manifest lists layers");
    let mut diff_ids = Vec::new();
    for layer in layers {
        let layer_type = layer["mediaType"].as_str().unwrap_or_default();
        let gzip = GZIP_LAYERS.contains(&layer_type);
        assert!(
            gzip || TAR_LAYERS.contains(&layer_type),
            "unknown layer media type `{layer_type}` in {}",
            desc["digest"]
        );
        let path = layout_blob(dir, layer);
        diff_ids.push(read_layer_in_full(&path, gzip));
    }
    let manifest_is_oci = desc["mediaType"] == OCI_MANIFEST;
    assert_eq!(
        config_type,
        if manifest_is_oci {
            OCI_CONFIG
        } else {
            DOCKER_CONFIG
        },
        "config media type in {}",
        desc["digest"]
    );
    validated_config(
        &config,
        config_desc["digest"].as_str().unwrap(),
        diff_ids,
        Some(desc),
    )
}

/// Checks `rootfs` against the layers' diff_ids; the image it describes.
fn validated_config(
    config: &serde_json::Value,
    config_digest: &str,
    diff_ids: Vec<String>,
    manifest: Option<&serde_json::Value>,
) -> ValidImage {
    assert_eq!(config["rootfs"]["type"], "layers", "config {config_digest}");
    let named: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        named, diff_ids,
        "config {config_digest}: diff_ids differ from the layers"
    );
    ValidImage {
        manifest_digest: manifest.map(|m| m["digest"].as_str().unwrap().to_string()),
        config_digest: config_digest.to_string(),
        platform: format!(
            "{}/{}",
            config["os"].as_str().unwrap_or("?"),
            config["architecture"].as_str().unwrap_or("?")
        ),
        diff_ids,
    }
}

/// Decompresses (if `gzip`) and reads the layer as a tar to its end, every
/// entry's content included; its diff_id. Streams: memory stays small.
fn read_layer_in_full(path: &Path, gzip: bool) -> String {
    let file = std::fs::File::open(path).unwrap();
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive
            .entries()
            .unwrap_or_else(|e| panic!("{}: not a tar: {e}", path.display()))
        {
            let mut entry = entry.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::io::copy(&mut entry, &mut std::io::sink())
                .unwrap_or_else(|e| panic!("{}: truncated entry: {e}", path.display()));
        }
    }
    // The rest (end-of-archive blocks, padding) belongs to the diff_id too.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("sha256:{}", hex::encode(hashing.hasher.finalize()))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Whether `path` starts with the gzip magic (docker-archive layers may be either).
fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| magic == [0x1f, 0x8b])
}

/// (size, `sha256:HEX`) of a file, streamed.
fn hash_file(path: &Path) -> (u64, String) {
    let mut file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("blob {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).unwrap();
    (size, format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Unpacks the docker-archive `file` into a temp dir and checks it in full:
/// one `manifest.json` entry; the config hashes to its name; every layer file
/// read as a tar to its end, its hash equal to the config's diff_id. The top
/// digest is the config's (the image ID `docker load` reports).
pub fn validate_archive(file: &Path) -> Validated {
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(file).unwrap())
        .unpack(dir.path())
        .unwrap_or_else(|e| panic!("{}: not a complete tar: {e}", file.display()));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("manifest.json"))
            .unwrap_or_else(|e| panic!("{}: no manifest.json: {e}", file.display())),
    )
    .expect("manifest.json is JSON");
    let entries = manifest.as_array().expect("manifest.json is a list");
    assert_eq!(entries.len(), 1, "{manifest}");
    let config_name = entries[0]["Config"].as_str().expect("a Config entry");
    let (_, config_digest) = hash_file(&dir.path().join(config_name));
    assert!(
        config_name.ends_with(config_digest.trim_start_matches("sha256:")),
        "config {config_name} hashes to {config_digest}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(config_name)).unwrap())
            .expect("the config is JSON");
    let diff_ids = entries[0]["Layers"]
        .as_array()
        .expect("a Layers list")
        .iter()
        .map(|l| {
            let path = dir.path().join(l.as_str().unwrap());
            read_layer_in_full(&path, is_gzip(&path))
        })
        .collect();
    let image = validated_config(&config, &config_digest, diff_ids, None);
    Validated {
        top: config_digest,
        images: vec![image],
    }
}
