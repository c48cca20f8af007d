//! An SBOM as an OCI 1.1 referrer: an artifact manifest (`artifactType`,
//! empty config, the SBOM as its one layer, `subject` = the image manifest),
//! plus the referrers tag schema's index (`sha256-<hex>` tag) that registries
//! without the referrers API, and OCI layouts, are searched through.

use super::Format;
use crate::assemble::rfc3339;
use crate::digest::Digest;
use crate::oci;
use serde_json::{json, Value};

pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// One SBOM ready to publish: its blob, the empty config and its manifest.
#[derive(Clone, Debug)]
pub struct Referrer {
    pub subject: Digest,
    pub artifact_type: &'static str,
    pub sbom: Vec<u8>,
    pub sbom_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

impl Referrer {
    /// Wraps `sbom` as a referrer of the image manifest `subject` (`size` bytes).
    pub fn new(sbom: Vec<u8>, format: Format, subject: &Digest, size: u64, epoch: u64) -> Referrer {
        let artifact_type = format.media_type();
        let sbom_digest = Digest::of(&sbom);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": Digest::of(EMPTY_CONFIG),
                "size": EMPTY_CONFIG.len(),
                "data": "e30=",
            },
            "layers": [{"mediaType": artifact_type, "digest": sbom_digest, "size": sbom.len()}],
            "subject": {"mediaType": oci::OCI_MANIFEST, "digest": subject, "size": size},
            "annotations": {"org.opencontainers.image.created": rfc3339(epoch)},
        });
        let manifest = serde_json::to_vec(&manifest).expect("JSON values serialise");
        Referrer {
            subject: subject.clone(),
            artifact_type,
            manifest_digest: Digest::of(&manifest),
            manifest,
            sbom_digest,
            sbom,
        }
    }

    /// Its entry in a referrers index (and in an OCI layout's index.json).
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": oci::OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
            "annotations": {"org.opencontainers.image.created": self.created()},
        })
    }

    fn created(&self) -> String {
        serde_json::from_slice::<Value>(&self.manifest)
            .ok()
            .and_then(|m| {
                m["annotations"]["org.opencontainers.image.created"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }
}

/// The referrers tag schema's tag for a subject: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The referrers index with `referrer` added to what the registry had
/// (`existing`, untrusted: entries that are not descriptors are dropped);
/// None when it is already listed.
pub fn merged_index(existing: Option<&[u8]>, referrer: &Referrer) -> Option<Vec<u8>> {
    let mut manifests: Vec<Value> = existing
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|index| index["manifests"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| {
            d["digest"]
                .as_str()
                .is_some_and(|s| Digest::parse(s).is_ok())
                && d["mediaType"].is_string()
                && d["size"].is_u64()
        })
        .collect();
    if manifests
        .iter()
        .any(|d| d["digest"] == json!(referrer.manifest_digest))
    {
        return None;
    }
    manifests.push(referrer.descriptor());
    let index = json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": manifests});
    Some(serde_json::to_vec(&index).expect("JSON values serialise"))
}

/// The SBOM artifacts an index lists: (artifactType, manifest digest), skipping others.
pub fn listed_sboms(index: &[u8]) -> Vec<(String, Digest)> {
    let Ok(index) = serde_json::from_slice::<Value>(index) else {
        return Vec::new();
    };
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let kind = d["artifactType"].as_str()?;
            if kind != super::SPDX_MEDIA_TYPE && kind != super::CYCLONEDX_MEDIA_TYPE {
                return None;
            }
            Some((kind.to_string(), Digest::parse(d["digest"].as_str()?).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_once_and_keeps_others() {
        let subject = Digest::of(b"image");
        let r = Referrer::new(b"{}".to_vec(), Format::Spdx, &subject, 10, 0);
        let first = merged_index(None, &r).unwrap();
        assert_eq!(merged_index(Some(&first), &r), None);
        let other = Referrer::new(b"[]".to_vec(), Format::CycloneDx, &subject, 10, 0);
        let both = merged_index(Some(&first), &other).unwrap();
        let listed = listed_sboms(&both);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].1, r.manifest_digest);
        assert_eq!(fallback_tag(&subject), format!("sha256-{}", subject.hex()));
        let manifest: Value = serde_json::from_slice(&r.manifest).unwrap();
        assert_eq!(manifest["subject"]["digest"], subject.as_str());
        assert_eq!(
            manifest["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
