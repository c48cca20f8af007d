//! HTTP for the registry client: the scheme per registry, a 401 answered
//! once (see `token`) and the request sent again, retries with backoff, and
//! request logging with secrets redacted.

use super::auth::AuthCache;
use super::credentials::{Credentials, Secret};
use super::error::{parse_api_errors, Context, RegistryError, TransportKind};
use super::options::RegistryOptions;
use super::origin::{host_of, is_loopback, redact_url, same_origin, OriginPolicy};
use super::retry;
use super::watchdog::Watchdog;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::{Method, Response, StatusCode, Url};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A request that can be sent again: a file body is re-opened each time.
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
}

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }
}

pub struct Transport {
    pub(super) options: RegistryOptions,
    /// Built on first use, by [`ClientKind`]: each build loads the system's
    /// root certificates, and most runs speak to one kind of host only.
    clients: [std::sync::OnceLock<reqwest::Client>; 4],
    pub(super) auth: AuthCache,
    pub(super) origin: OriginPolicy,
    pub(super) credentials: tokio::sync::Mutex<HashMap<String, Option<Credentials>>>,
}

const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Which HTTP client a request goes through: loopback hosts are never
/// proxied; uploads have no read timeout (nothing is read while the body
/// is sent), an idle watch instead (see `send_watched`).
#[derive(Clone, Copy)]
enum ClientKind {
    Remote = 0,
    Loopback = 1,
    RemoteUpload = 2,
    LoopbackUpload = 3,
}

impl Transport {
    pub fn new(options: RegistryOptions) -> Result<Transport, RegistryError> {
        let origin = OriginPolicy {
            insecure: options.insecure.clone(),
        };
        Ok(Transport {
            clients: Default::default(),
            options,
            origin,
            auth: AuthCache::default(),
            credentials: Default::default(),
        })
    }

    /// The client for `kind`, built the first time it is needed.
    fn client(&self, kind: ClientKind) -> Result<&reqwest::Client, RegistryError> {
        let slot = &self.clients[kind as usize];
        if let Some(client) = slot.get() {
            return Ok(client);
        }
        let loopback = matches!(kind, ClientKind::Loopback | ClientKind::LoopbackUpload);
        let upload = matches!(kind, ClientKind::RemoteUpload | ClientKind::LoopbackUpload);
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .redirect(self.origin.redirect_policy())
            .connect_timeout(self.options.timeout);
        if !upload {
            builder = builder.read_timeout(self.options.timeout);
        }
        if loopback {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| RegistryError::Other {
            registry: String::new(),
            message: format!("cannot set up the HTTP client: {}", e.without_url()),
        })?;
        Ok(slot.get_or_init(|| client))
    }

    /// `http://127.0.0.1:5000`, `https://registry-1.docker.io`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let tls = self
            .options
            .https
            .iter()
            .any(|h| h == registry || h == host_of(registry));
        let plain = (is_loopback(registry) && !tls)
            || self
                .options
                .insecure
                .iter()
                .any(|i| i == registry || i == host_of(registry));
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// `<base>/v2/<path>`.
    pub fn url(&self, context: &Context, path: &str) -> Result<Url, RegistryError> {
        let text = format!("{}/v2/{path}", self.base_url(&context.registry));
        Url::parse(&text).map_err(|_| protocol(context, format!("`{text}` is not a valid URL")))
    }

    /// Send with auth and the configured retries.
    pub async fn send(
        &self,
        context: &Context,
        request: &Request,
        scopes: &[String],
    ) -> Result<Response, RegistryError> {
        self.send_with(context, request, scopes, self.options.retries)
            .await
    }

    /// The registry's own origin (`<base>/v2/`).
    pub fn registry_url(&self, context: &Context) -> Result<Url, RegistryError> {
        self.url(context, "")
    }

    /// Send with auth: a 401 is answered (token or basic) and the request
    /// sent once more. Non-2xx answers are returned for the caller to judge.
    /// A request to another origin (an upload Location elsewhere) is sent
    /// without credentials, and never from HTTPS to plain HTTP.
    pub async fn send_with(
        &self,
        context: &Context,
        request: &Request,
        scopes: &[String],
        attempts: u32,
    ) -> Result<Response, RegistryError> {
        let registry = self.registry_url(context)?;
        if !same_origin(&registry, &request.url) {
            self.origin
                .check_downgrade(&registry, &request.url)
                .map_err(|message| protocol(context, message))?;
            return self.send_plain(context, request, None, attempts).await;
        }
        let authorization = self.authorization(context, scopes).await?;
        let response = self
            .send_plain(context, request, authorization.as_ref(), attempts)
            .await?;
        // Only the registry's own challenge is answered: a 401 from where a
        // redirect led (blob storage) must not pick the token realm.
        if response.status() != StatusCode::UNAUTHORIZED || !same_origin(&registry, response.url())
        {
            return Ok(response);
        }
        let header = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !self
            .answer_challenge(context, scopes, header.as_deref())
            .await?
        {
            return Ok(response);
        }
        let authorization = self.authorization(context, scopes).await?;
        self.send_plain(context, request, authorization.as_ref(), attempts)
            .await
    }

    /// Send as is, retrying connection errors, 429 and 5xx.
    pub(super) async fn send_plain(
        &self,
        context: &Context,
        request: &Request,
        authorization: Option<&Secret>,
        attempts: u32,
    ) -> Result<Response, RegistryError> {
        retry::with_retries(
            attempts,
            || self.attempt(context, request, authorization),
            retry::response_delay,
        )
        .await
    }

    async fn attempt(
        &self,
        context: &Context,
        request: &Request,
        authorization: Option<&Secret>,
    ) -> Result<Response, RegistryError> {
        let upload = matches!(request.body, Body::File(_));
        let loopback = request.url.host_str().is_some_and(is_loopback);
        let client = self.client(match (loopback, upload) {
            (true, false) => ClientKind::Loopback,
            (true, true) => ClientKind::LoopbackUpload,
            (false, false) => ClientKind::Remote,
            (false, true) => ClientKind::RemoteUpload,
        })?;
        // When the upload last took body bytes (or started).
        let progress = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        let mut builder = client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(secret) = authorization {
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                protocol(
                    context,
                    "a credential holds characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            Body::File(path) => {
                let (len, body) = file_body(context, path, progress.clone()).await?;
                builder.header(CONTENT_LENGTH, len).body(body)
            }
        };
        let result = if upload {
            let deadline = tokio::time::Instant::now() + self.options.blob_deadline;
            send_watched(builder.send(), &progress, self.options.timeout, deadline).await
        } else {
            builder.send().await.map_err(Some)
        };
        if self.options.verbose {
            let outcome = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(Some(e)) => format!("error: {}", classify(e)),
                Err(None) => format!("error: {}", TransportKind::Timeout),
            };
            crate::progress::print_line(&format!(
                "registry: {} {} -> {outcome}",
                request.method,
                redact_url(&request.url)
            ));
        }
        result.map_err(|e| match e {
            Some(e) => transport_error(context, &request.method, &request.url, e),
            None => RegistryError::Transport {
                context: Box::new(context.clone()),
                method: request.method.to_string(),
                url: redact_url(&request.url),
                kind: TransportKind::Timeout,
                source: format!(
                    "the upload made no progress for {} s (--timeout), or took longer than {} s (--blob-deadline)",
                    self.options.timeout.as_secs_f64(),
                    self.options.blob_deadline.as_secs_f64()
                )
                .into(),
            },
        })
    }

    /// A registry's non-success answer as an error, with its error codes.
    pub async fn error_from(
        &self,
        context: &Context,
        request: &Request,
        response: Response,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let retry_after = retry::retry_after(response.headers());
        let body = self
            .read_limited(context, request, response, ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        RegistryError::Status {
            context: Box::new(context.clone()),
            method: request.method.to_string(),
            url: redact_url(&request.url),
            status,
            errors: parse_api_errors(&body),
            retry_after,
        }
    }

    /// The body watchdog for one transfer (see `watchdog`).
    pub fn watchdog(&self) -> Watchdog {
        Watchdog::new(
            self.options.min_rate,
            self.options.min_rate_window,
            self.options.blob_deadline,
        )
    }

    /// The whole body, refusing more than `limit` bytes (and a drip).
    pub async fn read_limited(
        &self,
        context: &Context,
        request: &Request,
        mut response: Response,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut body = Vec::new();
        let mut watchdog = self.watchdog();
        while let Some(chunk) = watchdog.next_chunk(context, request, &mut response).await? {
            if body.len() + chunk.len() > limit {
                return Err(protocol(
                    context,
                    format!(
                        "the answer to {} `{}` is larger than {limit} bytes",
                        request.method,
                        redact_url(&request.url)
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

pub fn protocol(context: &Context, message: String) -> RegistryError {
    RegistryError::Protocol {
        context: Box::new(context.clone()),
        message,
    }
}

pub fn transport_error(
    context: &Context,
    method: &Method,
    url: &Url,
    error: reqwest::Error,
) -> RegistryError {
    RegistryError::Transport {
        context: Box::new(context.clone()),
        method: method.to_string(),
        url: redact_url(url),
        kind: classify(&error),
        source: Box::new(error.without_url()),
    }
}

/// Sends an upload, giving up (`Err(None)`) once no body bytes have been
/// taken for `timeout` — the registry stopped reading — or, after the last
/// of them, no answer came within `timeout`. An idle timeout: a slow upload
/// that keeps moving is not cut off, as a read timeout would cut it (no
/// answer is read while the body is being sent).
async fn send_watched(
    send: impl std::future::Future<Output = reqwest::Result<Response>>,
    progress: &std::sync::Mutex<std::time::Instant>,
    timeout: Duration,
    deadline: tokio::time::Instant,
) -> Result<Response, Option<reqwest::Error>> {
    tokio::pin!(send);
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            result = &mut send => return result.map_err(Some),
            _ = tokio::time::sleep(tick) => {
                if progress.lock().unwrap().elapsed() > timeout
                    || tokio::time::Instant::now() >= deadline
                {
                    return Err(None);
                }
            }
        }
    }
}

fn classify(error: &reqwest::Error) -> TransportKind {
    if error.is_timeout() {
        return TransportKind::Timeout;
    }
    let mut chain = String::new();
    let mut refused = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain.push_str(&e.to_string().to_lowercase());
        chain.push('\n');
        source = e.source();
    }
    let tls = ["certificate", "tls", "ssl", "handshake", "corrupt message"]
        .iter()
        .any(|word| chain.contains(word));
    if refused {
        TransportKind::Refused
    } else if tls {
        TransportKind::Tls
    } else if error.is_connect() || error.is_request() {
        TransportKind::Connect
    } else if error.is_body() || error.is_decode() {
        TransportKind::Body
    } else {
        TransportKind::Other
    }
}

/// A file to upload as a streamed body (its length, the body): the bytes
/// sent feed a progress bar (see `crate::progress`) and `last_progress`.
async fn file_body(
    context: &Context,
    path: &std::path::Path,
    last_progress: std::sync::Arc<std::sync::Mutex<std::time::Instant>>,
) -> Result<(u64, reqwest::Body), RegistryError> {
    let io_error = |source| RegistryError::Io {
        context: Box::new(context.clone()),
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io_error)?;
    let len = file.metadata().await.map_err(io_error)?.len();
    let label = path.file_name().map_or_else(String::new, |n| {
        let n = n.to_string_lossy();
        format!("push sha256:{}", &n[..n.len().min(12)])
    });
    let mut transfer = crate::progress::current().transfer(&label, Some(len));
    let stream =
        futures::TryStreamExt::inspect_ok(tokio_util::io::ReaderStream::new(file), move |chunk| {
            transfer.advance(chunk.len() as u64);
            *last_progress.lock().unwrap() = std::time::Instant::now();
        });
    Ok((len, reqwest::Body::wrap_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(insecure: &[&str]) -> Transport {
        Transport::new(RegistryOptions {
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn schemes() {
        let t = transport(&["reg.lan:5000", "other.lan"]);
        assert_eq!(t.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(t.base_url("127.1.2.3"), "http://127.1.2.3");
        assert_eq!(t.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(t.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(t.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(t.base_url("reg.lan:6000"), "https://reg.lan:6000");
        assert_eq!(t.base_url("other.lan:1234"), "http://other.lan:1234");
        assert_eq!(t.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(t.base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(t.base_url("128.0.0.1"), "https://128.0.0.1");
    }

    #[test]
    fn request_headers_hide_secrets_in_debug() {
        let mut value = HeaderValue::from_static("Bearer sekrit");
        value.set_sensitive(true);
        assert!(!format!("{value:?}").contains("sekrit"));
    }
}
