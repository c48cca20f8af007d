//! The SBOMs attached to an image manifest: through the referrers tag schema
//! (`sha256-<hex>` tag) on a registry, through index.json in an OCI layout.

use super::source::Source;
use super::InspectError;
use crate::digest::Digest;
use crate::registry::RegistryClient;
use crate::sbom::referrer;

/// An SBOM artifact that refers to an image manifest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttachedSbom {
    pub artifact_type: String,
    /// The artifact manifest's digest.
    pub digest: Digest,
}

impl Source {
    /// The SBOMs that name `subject` (a platform manifest) as their subject.
    pub async fn sboms(&self, subject: &Digest) -> Result<Vec<AttachedSbom>, InspectError> {
        let listed = match self {
            Source::Registry { .. } => match self.remote() {
                Some((client, registry, repository)) => {
                    registry_listed(client, registry, repository, subject).await?
                }
                None => Vec::new(),
            },
            Source::Layout { source, .. } => {
                let path = source.dir().join("index.json");
                let bytes = std::fs::File::open(&path)
                    .and_then(|f| crate::oci::read_json_capped(f, "index.json"))
                    .map_err(InspectError::io(&path))?;
                let mut out = Vec::new();
                for (kind, digest) in referrer::listed_sboms(&bytes) {
                    let manifest: serde_json::Value =
                        serde_json::from_slice(&self.blob_bytes(&digest, true).await?)
                            .map_err(|e| InspectError::Bad(format!("referrer `{digest}`: {e}")))?;
                    if manifest["subject"]["digest"].as_str() == Some(subject.as_str()) {
                        out.push((kind, digest));
                    }
                }
                out
            }
            _ => Vec::new(),
        };
        Ok(listed
            .into_iter()
            .map(|(artifact_type, digest)| AttachedSbom {
                artifact_type,
                digest,
            })
            .collect())
    }

    /// The SBOM document an artifact manifest carries (its one layer).
    pub async fn sbom_document(&self, artifact: &Digest) -> Result<Vec<u8>, InspectError> {
        let manifest: serde_json::Value =
            serde_json::from_slice(&self.blob_bytes(artifact, true).await?)
                .map_err(|e| InspectError::Bad(format!("referrer `{artifact}`: {e}")))?;
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| InspectError::Bad(format!("referrer `{artifact}` has no layer")))?;
        self.blob_bytes(&layer, false).await
    }
}

async fn registry_listed(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    subject: &Digest,
) -> Result<Vec<(String, Digest)>, InspectError> {
    let tag = referrer::fallback_tag(subject);
    if client
        .manifest_digest(registry, repository, &tag)
        .await?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let index = client.get_manifest(registry, repository, &tag).await?;
    Ok(referrer::listed_sboms(&index.bytes))
}
