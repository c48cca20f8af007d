//! Blob operations: HEAD, pull (digest checked, never left partial),
//! cross-repository mount and upload (a new session and a re-opened file on
//! each retry).

use super::auth::{pull_scope, push_scope};
use super::client::{check_digest, RegistryClient, BLOB_BYTES_LIMIT};
use super::error::{Context, RegistryError, TransportKind};
use super::origin::redact_url;
use super::transport::{protocol, Body, Request};
use crate::digest::{Digest, HashingWriter};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::io::Write as _;
use std::path::Path;
use tokio::io::AsyncWriteExt;

impl RegistryClient {
    /// GET a small blob (a config) into memory, digest checked.
    pub async fn get_blob_bytes(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        let context = Context::new("pull blob", registry, repository).with_reference(digest);
        let request = Request::new(Method::GET, self.blob_url(&context, digest)?);
        // A body cut short is retried like a 503: the whole GET again.
        self.retrying(|| async {
            let response = self
                .expect_once(
                    &context,
                    &request,
                    &[pull_scope(repository)],
                    StatusCode::OK,
                )
                .await?;
            let limit = self.declared_size(digest).map_or(BLOB_BYTES_LIMIT, |size| {
                size.min(BLOB_BYTES_LIMIT as u64) as usize
            });
            let bytes = self
                .transport
                .read_limited(&context, &request, response, limit)
                .await?;
            check_digest(&context, digest, Digest::of(&bytes))?;
            Ok(bytes)
        })
        .await
    }

    /// Stream a blob into `dest` (written to a temp file beside it, digest
    /// checked, then renamed). Returns its size.
    pub async fn pull_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let context = Context::new("pull blob", registry, repository).with_reference(digest);
        self.retrying(|| self.pull_blob_once(&context, digest, None, dest))
            .await
    }

    /// `pull_blob` of a blob of a known `size`: more or fewer bytes fail.
    pub async fn pull_blob_of_size(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let context = Context::new("pull blob", registry, repository).with_reference(digest);
        self.retrying(|| self.pull_blob_once(&context, digest, Some(size), dest))
            .await
    }

    async fn pull_blob_once(
        &self,
        context: &Context,
        digest: &Digest,
        size: Option<u64>,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let request = Request::new(Method::GET, self.blob_url(context, digest)?);
        let mut response = self
            .expect_once(
                context,
                &request,
                &[pull_scope(&context.repository)],
                StatusCode::OK,
            )
            .await?;
        let io_error = |action, path: &Path| io_error(context, action, path);
        let (temp, mut file) = partial_file(context, dest)?;
        let mut hasher = HashingWriter::new(std::io::sink());
        let label = format!("pull {}", &digest.as_str()[..digest.as_str().len().min(19)]);
        // The manifest's word for the size, else the answer's: reading stops
        // as soon as the body passes it, so an endless body fills no disk.
        let declared = size
            .or_else(|| self.declared_size(digest))
            .or(response.content_length());
        let mut transfer = crate::progress::current().transfer(&label, declared);
        let mut watchdog = self.transport.watchdog();
        let mut received: u64 = 0;
        while let Some(chunk) = watchdog
            .next_chunk(context, &request, &mut response)
            .await?
        {
            received += chunk.len() as u64;
            if let Some(size) = declared.filter(|size| received > *size) {
                return Err(protocol(
                    context,
                    format!(
                        "GET `{}` sent more than the blob's declared {size} bytes",
                        redact_url(&request.url)
                    ),
                ));
            }
            hasher.write_all(&chunk).expect("hashing into a sink");
            transfer.advance(chunk.len() as u64);
            file.write_all(&chunk)
                .await
                .map_err(io_error("write", temp.path()))?;
        }
        file.flush().await.map_err(io_error("write", temp.path()))?;
        drop(file);
        let (_, actual, size) = hasher.finish();
        if let Some(declared) = declared.filter(|declared| size < *declared) {
            // Cut short: retried like a broken connection.
            return Err(RegistryError::Transport {
                context: Box::new(context.clone()),
                method: request.method.to_string(),
                url: redact_url(&request.url),
                kind: TransportKind::Body,
                source: format!("the body ended after {size} of its declared {declared} bytes")
                    .into(),
            });
        }
        check_digest(context, digest, actual)?;
        temp.persist(dest)
            .map_err(|e| io_error("write", dest)(e.error))?;
        Ok(size)
    }

    /// HEAD a blob: its size if the repository has it.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let context = Context::new("check blob", registry, repository).with_reference(digest);
        let request = Request::new(Method::HEAD, self.blob_url(&context, digest)?);
        let response = self
            .transport
            .send(&context, &request, &[pull_scope(repository)])
            .await?;
        match response.status() {
            StatusCode::OK => {
                let size = response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                match size {
                    Some(size) => Ok(Some(size)),
                    None => Err(protocol(
                        &context,
                        "the answer has no Content-Length".into(),
                    )),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .transport
                .error_from(&context, &request, response)
                .await),
        }
    }

    /// Try a cross-repository mount from `from_repository` on the same registry.
    /// Ok(true) when mounted; Ok(false) when the registry declined (caller uploads).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let context = Context::new("mount blob", registry, repository).with_reference(digest);
        let mut url = self
            .transport
            .url(&context, &format!("{repository}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from_repository);
        let request = Request::new(Method::POST, url);
        let scopes = [push_scope(repository), pull_scope(from_repository)];
        let response = match self.transport.send(&context, &request, &scopes).await {
            Ok(response) => response,
            // The token server refused the source's pull scope: upload instead.
            Err(RegistryError::Status { status, .. }) if (400..500).contains(&status) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // An upload session was opened instead: cancel it.
                if let Ok(location) = location(&context, &request.url, response.headers()) {
                    let cancel = Request::new(Method::DELETE, location);
                    let _ = self
                        .transport
                        .send_with(&context, &cancel, &scopes, 1)
                        .await;
                }
                Ok(false)
            }
            status if status.is_client_error() => Ok(false),
            _ => Err(self
                .transport
                .error_from(&context, &request, response)
                .await),
        }
    }

    /// Upload a blob from a file (re-opened on each retry). Returns bytes sent.
    pub async fn push_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let context = Context::new("push blob", registry, repository).with_reference(digest);
        // Each attempt opens a new upload session and re-opens the file.
        self.retrying(|| self.push_blob_once(&context, digest, path))
            .await
    }

    async fn push_blob_once(
        &self,
        context: &Context,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| RegistryError::Io {
                context: Box::new(context.clone()),
                action: "read",
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let scopes = [push_scope(&context.repository)];
        let url = self
            .transport
            .url(context, &format!("{}/blobs/uploads/", context.repository))?;
        let start = Request::new(Method::POST, url);
        let response = self
            .transport
            .send_with(context, &start, &scopes, 1)
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.transport.error_from(context, &start, response).await);
        }
        let mut url = location(context, &start.url, response.headers())?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let put = Request::new(Method::PUT, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::File(path.to_path_buf()));
        let response = self.transport.send_with(context, &put, &scopes, 1).await?;
        if !response.status().is_success() {
            return Err(self.transport.error_from(context, &put, response).await);
        }
        Ok(size)
    }

    fn blob_url(&self, context: &Context, digest: &Digest) -> Result<Url, RegistryError> {
        self.transport
            .url(context, &format!("{}/blobs/{digest}", context.repository))
    }
}

/// The upload `Location`, absolute or relative to the request.
fn location(context: &Context, base: &Url, headers: &HeaderMap) -> Result<Url, RegistryError> {
    let value = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| protocol(context, "the upload answer has no Location".into()))?;
    base.join(value)
        .map_err(|_| protocol(context, "the upload Location is not a valid URL".into()))
}

/// An I/O error of a registry operation, naming what was done to which file.
fn io_error<'a>(
    context: &'a Context,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    let path = path.to_path_buf();
    move |source| RegistryError::Io {
        context: Box::new(context.clone()),
        action,
        path,
        source,
    }
}

/// A temp file beside `dest` (persisted under its name only once the blob
/// checks out) and an async handle to write it.
fn partial_file(
    context: &Context,
    dest: &Path,
) -> Result<(tempfile::NamedTempFile, tokio::fs::File), RegistryError> {
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(io_error(context, "create a file in", dir))?;
    let file = temp
        .as_file()
        .try_clone()
        .map_err(io_error(context, "write", temp.path()))?;
    Ok((temp, tokio::fs::File::from_std(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn context() -> Context {
        Context::new("push blob", "r", "app")
    }

    #[test]
    fn locations_absolute_and_relative() {
        let base = Url::parse("http://127.0.0.1:5000/v2/app/blobs/uploads/").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static("/v2/app/blobs/uploads/u1?_state=s"),
        );
        let mut url = location(&context(), &base, &headers).unwrap();
        url.query_pairs_mut().append_pair("digest", "sha256:ab");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u1?_state=s&digest=sha256%3Aab"
        );
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://cdn.example/up/u2"),
        );
        let mut url = location(&context(), &base, &headers).unwrap();
        url.query_pairs_mut().append_pair("digest", "sha256:ab");
        assert_eq!(url.as_str(), "https://cdn.example/up/u2?digest=sha256%3Aab");
    }
}
