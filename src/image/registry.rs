//! Images in a registry, read through the registry client (which bounds and
//! checks every manifest and blob it fetches).

use super::{Document, ImageSource, SourceError};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone)]
pub struct RegistrySource {
    client: RegistryClient,
    /// The registry actually contacted (a mirror when one is configured).
    registry: String,
    repository: String,
}

impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl RegistrySource {
    pub fn new(
        client: &RegistryClient,
        name: &Reference,
        mirrors: &BTreeMap<String, String>,
    ) -> RegistrySource {
        RegistrySource {
            client: client.clone(),
            registry: mirrors
                .get(&name.registry)
                .cloned()
                .unwrap_or_else(|| name.registry.clone()),
            repository: name.repository.clone(),
        }
    }
}

impl RegistrySource {
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }
}

#[async_trait::async_trait]
impl ImageSource for RegistrySource {
    async fn top(&self, name: &Reference) -> Result<Document, SourceError> {
        let m = self
            .client
            .get_manifest(&self.registry, &self.repository, &name.reference_str())
            .await?;
        Ok(Document {
            bytes: m.bytes,
            media_type: m.media_type,
            digest: m.digest,
        })
    }

    async fn manifest(&self, digest: &Digest) -> Result<Document, SourceError> {
        let m = self
            .client
            .get_manifest(&self.registry, &self.repository, digest.as_str())
            .await?;
        // A registry that answers a generic type declares nothing useful.
        let media_type = if m.media_type == "application/json" {
            String::new()
        } else {
            m.media_type
        };
        Ok(Document {
            bytes: m.bytes,
            media_type,
            digest: m.digest,
        })
    }

    async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        Ok(self
            .client
            .get_blob_bytes(&self.registry, &self.repository, digest)
            .await?)
    }

    async fn copy_blob(&self, digest: &Digest, dest: &Path) -> Result<(), SourceError> {
        self.client
            .pull_blob(&self.registry, &self.repository, digest, dest)
            .await?;
        Ok(())
    }

    fn registry_repository(&self) -> Option<(&str, &str)> {
        Some((&self.registry, &self.repository))
    }
}
