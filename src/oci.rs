//! The few OCI / Docker types slipway reads and writes, with fields in a fixed
//! order so serialised bytes are stable (oci-spec's HashMaps are not).

use crate::digest::Digest;
use crate::platform::Platform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Media types accepted when fetching a manifest by tag.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The largest index, manifest or config read whole (containerd caps configs
/// at 8 MiB): parsed into a tree, tiny JSON values cost ~30x their bytes.
pub const JSON_LIMIT: u64 = 8 << 20;

/// Reads a JSON document, refusing one larger than [`JSON_LIMIT`] without
/// reading past it.
pub fn read_json_capped(reader: impl Read, what: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(JSON_LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > JSON_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{what} is larger than {} MiB, the most slipway reads",
                JSON_LIMIT >> 20
            ),
        ));
    }
    Ok(bytes)
}

// The layer tar format: compression told by magic bytes, whiteouts.

/// A layer's tar stream, gzip'd or plain (told by its first bytes).
pub fn tar_reader<R: Read + Send + 'static>(raw: R) -> std::io::Result<Box<dyn Read + Send>> {
    let mut reader = std::io::BufReader::new(raw);
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// What a whiteout entry hides.
pub enum Whiteout {
    /// `.wh..wh..opq` in DIR: what lower layers have below `DIR/` (given with its `/`).
    Opaque(String),
    /// `.wh.NAME`: the path and everything below it.
    Path(String),
}

impl Whiteout {
    /// The whiteout `path` (normalised, no leading `/`) is; None for other paths.
    pub fn of(path: &str) -> Option<Whiteout> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        let hidden = name.strip_prefix(".wh.")?;
        Some(if hidden == ".wh..opq" {
            Whiteout::Opaque(dir)
        } else {
            Whiteout::Path(format!("{dir}{hidden}"))
        })
    }

    /// Whether it hides `path` (for [`Whiteout::Opaque`], when from a lower layer).
    pub fn hides(&self, path: &str, from_lower_layer: bool) -> bool {
        match self {
            Whiteout::Opaque(dir) => from_lower_layer && path.starts_with(dir.as_str()),
            Whiteout::Path(gone) => {
                path == gone
                    || path
                        .strip_prefix(gone.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Serialises with no whitespace; the structs above fix field order and maps are BTreeMaps.
pub fn to_canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("OCI types always serialise")
}

/// RFC 3339 UTC for a Unix time (an image's `created`), without pulling
/// in a date crate for one function.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
