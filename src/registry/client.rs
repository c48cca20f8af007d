//! Distribution API operations used by resolve (pulls) and publish (pushes),
//! with digest checks on everything fetched: the client, its options and the
//! manifest operations (blobs are in `blobs`).

use super::auth::{pull_scope, push_scope};
use super::error::{Context, RegistryError};
use super::transport::{Body, Request, Transport};
use crate::digest::Digest;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};

pub use super::options::{
    RegistryOptions, DEFAULT_BLOB_DEADLINE_SECONDS, DEFAULT_MIN_RATE_KIB, DEFAULT_MIN_RATE_SECONDS,
};

/// A manifest or index as fetched, digest verified.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What manifests we can read, best first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIMIT: usize = 4 << 20;
/// Configs read whole (containerd caps them at 8 MiB too).
pub(super) const BLOB_BYTES_LIMIT: usize = crate::oci::JSON_LIMIT as usize;

/// A registry client; clones share their connections, tokens and credentials.
#[derive(Clone)]
pub struct RegistryClient {
    pub options: RegistryOptions,
    pub(super) transport: std::sync::Arc<Transport>,
    /// Blob sizes the fetched manifests declared: a pull stops as soon as
    /// it passes this.
    pub(super) declared_sizes:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Digest, u64>>>,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        Ok(RegistryClient {
            transport: std::sync::Arc::new(Transport::new(options.clone())?),
            options,
            declared_sizes: Default::default(),
        })
    }

    /// GET a manifest or index by tag or digest. The bytes are checked against
    /// the digest when `reference` is a digest (and against Docker-Content-Digest).
    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        self.get_manifest_with(registry, repository, reference, true)
            .await
    }

    /// Like `get_manifest`, but the sizes it declares are not taken as
    /// bounds for other pulls of the same digests: for manifests from a
    /// source trusted less than the image's own (the cache repo's entries).
    pub async fn get_untrusted_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        self.get_manifest_with(registry, repository, reference, false)
            .await
    }

    async fn get_manifest_with(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        remember_sizes: bool,
    ) -> Result<FetchedManifest, RegistryError> {
        let context = Context::new("pull manifest", registry, repository).with_reference(reference);
        let url = self
            .transport
            .url(&context, &format!("{repository}/manifests/{reference}"))?;
        let request = Request::new(Method::GET, url).header(ACCEPT, MANIFEST_ACCEPT);
        // A body cut short is retried like a 503: the whole GET again.
        self.retrying(|| self.get_manifest_once(&context, &request, reference, remember_sizes))
            .await
    }

    async fn get_manifest_once(
        &self,
        context: &Context,
        request: &Request,
        reference: &str,
        remember_sizes: bool,
    ) -> Result<FetchedManifest, RegistryError> {
        let response = self
            .expect_once(
                context,
                request,
                &[pull_scope(&context.repository)],
                StatusCode::OK,
            )
            .await?;
        let headers = response.headers().clone();
        let bytes = self
            .transport
            .read_limited(context, request, response, MANIFEST_LIMIT)
            .await?;
        let digest = Digest::of(&bytes);
        let wanted = Digest::parse(reference).ok();
        for expected in wanted.into_iter().chain(header_digest(&headers)) {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    context: Box::new(context.clone()),
                    expected,
                    actual: digest,
                });
            }
        }
        if remember_sizes {
            self.remember_sizes(&bytes);
        }
        let media_type = media_type(&headers, &bytes);
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Notes the sizes a manifest declares for its config and layers (the
    /// smaller claim wins when two manifests disagree).
    fn remember_sizes(&self, manifest: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Descriptor {
            digest: String,
            size: u64,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let Ok(manifest) = serde_json::from_slice::<Manifest>(manifest) else {
            return;
        };
        let mut sizes = self
            .declared_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for descriptor in manifest.config.into_iter().chain(manifest.layers) {
            if let Ok(digest) = Digest::parse(&descriptor.digest) {
                let size = sizes.entry(digest).or_insert(descriptor.size);
                *size = (*size).min(descriptor.size);
            }
        }
    }

    pub(super) fn declared_size(&self, digest: &Digest) -> Option<u64> {
        self.declared_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
            .copied()
    }

    /// HEAD a manifest: its digest if the registry has it.
    pub async fn manifest_digest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let context =
            Context::new("check manifest", registry, repository).with_reference(reference);
        let url = self
            .transport
            .url(&context, &format!("{repository}/manifests/{reference}"))?;
        let request = Request::new(Method::HEAD, url).header(ACCEPT, MANIFEST_ACCEPT);
        let response = self
            .transport
            .send(&context, &request, &[pull_scope(repository)])
            .await?;
        match response.status() {
            StatusCode::OK => match header_digest(response.headers()) {
                Some(digest) => Ok(Some(digest)),
                // Some registries leave the header off a HEAD: hash a GET.
                None => Ok(Some(
                    self.get_manifest(registry, repository, reference)
                        .await?
                        .digest,
                )),
            },
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .transport
                .error_from(&context, &request, response)
                .await),
        }
    }

    /// PUT a manifest or index under a tag or digest; returns its digest.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let context = Context::new("push manifest", registry, repository).with_reference(reference);
        let url = self
            .transport
            .url(&context, &format!("{repository}/manifests/{reference}"))?;
        let request = Request::new(Method::PUT, url)
            .header(CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes.to_vec()));
        let response = self
            .transport
            .send(&context, &request, &[push_scope(repository)])
            .await?;
        if !response.status().is_success() {
            return Err(self
                .transport
                .error_from(&context, &request, response)
                .await);
        }
        Ok(header_digest(response.headers()).unwrap_or_else(|| Digest::of(bytes)))
    }

    /// Runs one whole exchange (request and answer body) up to `retries`
    /// times: a retryable status (429, 5xx), no answer, or a body cut short
    /// or stalled start it over, after the answer's Retry-After or a backoff.
    /// Each attempt sends once (see `expect_once`), so `--retries N` means N
    /// attempts, not N per stage.
    pub(super) async fn retrying<T, F, Fut>(&self, once: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        super::retry::with_retries(self.options.retries, once, super::retry::result_delay).await
    }

    /// Send once (a 401 answered), and turn any status but `wanted` into an error.
    pub(super) async fn expect_once(
        &self,
        context: &Context,
        request: &Request,
        scopes: &[String],
        wanted: StatusCode,
    ) -> Result<Response, RegistryError> {
        let response = self
            .transport
            .send_with(context, request, scopes, 1)
            .await?;
        if response.status() == wanted {
            Ok(response)
        } else {
            Err(self.transport.error_from(context, request, response).await)
        }
    }
}

pub(super) fn check_digest(
    context: &Context,
    expected: &Digest,
    actual: Digest,
) -> Result<(), RegistryError> {
    if actual == *expected {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        context: Box::new(context.clone()),
        expected: expected.clone(),
        actual,
    })
}

fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

/// Content-Type, unless it is generic; then the manifest's own `mediaType`.
fn media_type(headers: &HeaderMap, bytes: &[u8]) -> String {
    let header = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    if header.starts_with("application/vnd.") {
        return header;
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes)
        .ok()
        .and_then(|t| t.media_type)
        .unwrap_or(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::path::Path;

    #[test]
    fn futures_are_send_and_the_client_is_shared() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<RegistryClient>();
        let client = RegistryClient::new(RegistryOptions::default()).unwrap();
        let digest = Digest::of(b"");
        send(&client.get_manifest("r", "a", "t"));
        send(&client.manifest_digest("r", "a", "t"));
        send(&client.get_blob_bytes("r", "a", &digest));
        send(&client.pull_blob("r", "a", &digest, Path::new("x")));
        send(&client.blob_exists("r", "a", &digest));
        send(&client.mount_blob("r", "a", &digest, "b"));
        send(&client.push_blob("r", "a", &digest, Path::new("x")));
        send(&client.put_manifest("r", "a", "t", "m", b"{}"));
        send(&client.get_untrusted_manifest("r", "a", "t"));
        send(&client.pull_blob_of_size("r", "a", &digest, 1, Path::new("x")));
        send(&client.list_tags("r", "a"));
        send(&client.delete_manifest("r", "a", &digest));
    }

    #[test]
    fn media_type_from_header_or_body() {
        let mut headers = HeaderMap::new();
        let body = br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(
            media_type(&headers, body),
            "application/vnd.oci.image.index.v1+json"
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        );
        assert_eq!(
            media_type(&headers, body),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}
