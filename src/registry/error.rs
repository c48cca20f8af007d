//! One structured error for every registry failure: what was being done
//! (operation, registry, repository), the request (method and redacted URL),
//! the status and the registry's own error codes. `is_temporary` drives
//! retries; `hint` names what a user can fix.

use crate::digest::Digest;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What the client was doing when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// e.g. "pull manifest", "push blob".
    pub operation: &'static str,
    pub registry: String,
    pub repository: String,
    /// The tag or digest concerned, if any.
    pub reference: Option<String>,
}

impl Context {
    pub fn new(operation: &'static str, registry: &str, repository: &str) -> Context {
        Context {
            operation,
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: None,
        }
    }

    pub fn with_reference(mut self, reference: impl fmt::Display) -> Context {
        self.reference = Some(reference.to_string());
        self
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}/{}`",
            self.operation, self.registry, self.repository
        )?;
        if let Some(reference) = &self.reference {
            write!(f, " (`{reference}`)")?;
        }
        Ok(())
    }
}

/// One entry of a registry's `{"errors": [{"code", "message"}]}` body.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The error codes and messages of a registry's JSON error body (empty when
/// the body is not one).
pub fn parse_api_errors(body: &[u8]) -> Vec<ApiError> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<ApiError>,
    }
    // Printed later: escape what a hostile registry could put in them.
    let errors = serde_json::from_slice::<Body>(body)
        .map(|b| b.errors)
        .unwrap_or_default();
    errors
        .into_iter()
        .map(|e| ApiError {
            code: crate::sanitize::escape(&e.code).into_owned(),
            message: crate::sanitize::escape(&e.message).into_owned(),
        })
        .collect()
}

/// Why a request got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Refused,
    Connect,
    Timeout,
    Tls,
    /// The connection broke while the body was streaming.
    Body,
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Refused => "connection refused",
            TransportKind::Connect => "cannot connect",
            TransportKind::Timeout => "timed out",
            TransportKind::Tls => "TLS handshake failed",
            TransportKind::Body => "connection broken while transferring the body",
            TransportKind::Other => "request failed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected status.
    #[error("{context}: {method} `{url}` returned {}{}", status_text(*.status), codes_text(.errors))]
    Status {
        context: Box<Context>,
        method: String,
        /// Redacted: no credentials, no query string.
        url: String,
        status: u16,
        errors: Vec<ApiError>,
        retry_after: Option<Duration>,
    },
    /// No HTTP answer (connection, TLS, timeout, broken body).
    #[error("{context}: {method} `{url}`: {kind}")]
    Transport {
        context: Box<Context>,
        method: String,
        url: String,
        kind: TransportKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Content did not hash to the digest it was asked for or announced with.
    #[error("{context}: digest mismatch: expected `{expected}`, got `{actual}`")]
    DigestMismatch {
        context: Box<Context>,
        expected: Digest,
        actual: Digest,
    },
    #[error("{context}: cannot {action} `{}`", .path.display())]
    Io {
        context: Box<Context>,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The registry's answer made no sense (missing header, bad digest...).
    #[error("{context}: {message}")]
    Protocol {
        context: Box<Context>,
        message: String,
    },
    /// Configuration and credentials problems.
    #[error("registry `{registry}`: {message}")]
    Other { registry: String, message: String },
}

fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn codes_text(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{}: {}", e.code, e.message),
            (false, true) => e.code.clone(),
            _ => e.message.clone(),
        })
        .collect();
    format!(" ({})", parts.join("; "))
}

impl RegistryError {
    /// What was being done, when known.
    pub fn context(&self) -> Option<&Context> {
        match self {
            RegistryError::Status { context, .. }
            | RegistryError::Transport { context, .. }
            | RegistryError::DigestMismatch { context, .. }
            | RegistryError::Io { context, .. }
            | RegistryError::Protocol { context, .. } => Some(context),
            RegistryError::Other { .. } => None,
        }
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (429, 5xx, connection errors).
    pub fn is_temporary(&self) -> bool {
        match self {
            RegistryError::Status { status, errors, .. } => {
                super::retry::is_retryable_status(*status)
                    || errors
                        .iter()
                        .any(|e| e.code == "TOOMANYREQUESTS" || e.code == "UNAVAILABLE")
            }
            RegistryError::Transport { kind, .. } => matches!(
                kind,
                TransportKind::Refused
                    | TransportKind::Connect
                    | TransportKind::Timeout
                    | TransportKind::Body
            ),
            _ => false,
        }
    }
}

impl crate::error::Hint for RegistryError {
    /// What the user can do about it, for the errors users can fix.
    fn hint(&self) -> Option<String> {
        let registry = self.context().map(|c| c.registry.as_str()).unwrap_or("");
        match self {
            RegistryError::Status {
                status, context, ..
            } => match status {
                401 => Some(format!(
                    "check the credentials for `{registry}`: `docker login {registry}` (config.json in $DOCKER_CONFIG or ~/.docker), or SLIPWAY_REGISTRY_USERNAME / SLIPWAY_REGISTRY_PASSWORD (for the registry pushed to, or the one SLIPWAY_REGISTRY_HOST names)"
                )),
                307 | 308 if context.operation == "push blob" => Some(format!(
                    "`{registry}` redirected the upload elsewhere: slipway does not send a layer (or credentials) to another place than the registry's upload session; check the registry's storage settings"
                )),
                403 => Some(format!(
                    "the credentials for `{registry}` are not allowed this on `{}`: check the account's permissions",
                    context.repository
                )),
                404 => Some(format!(
                    "repository or tag not found: check `{registry}/{}`",
                    context.repository
                )),
                429 => Some(format!(
                    "`{registry}` is rate limiting: wait, or log in for a higher limit"
                )),
                _ => None,
            },
            RegistryError::Transport { kind, url, .. } => match kind {
                TransportKind::Refused => {
                    let root = url.split("/v2/").next().unwrap_or(url);
                    let plain = if root.starts_with("https://") {
                        format!("; if it speaks plain HTTP, pass --insecure-registry `{registry}`")
                    } else {
                        String::new()
                    };
                    Some(format!("is the registry running at `{root}`? check its host and port{plain}"))
                }
                TransportKind::Connect => Some(format!(
                    "cannot reach `{registry}`: check its name, the network, and any proxy settings"
                )),
                TransportKind::Tls => Some(format!(
                    "for a registry that speaks plain HTTP use --insecure-registry `{registry}`; for a private CA set SSL_CERT_FILE"
                )),
                TransportKind::Timeout => Some(format!(
                    "`{registry}` did not answer in time, or too slowly: check the network; --timeout, --min-rate, --min-rate-seconds and --blob-deadline set the limits"
                )),
                _ => None,
            },
            RegistryError::DigestMismatch { .. } => Some(format!(
                "the content from `{registry}` is corrupt (in its storage, a mirror or a proxy): retry, or check the registry"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Hint;

    fn status_error(status: u16, errors: Vec<ApiError>) -> RegistryError {
        RegistryError::Status {
            context: Box::new(
                Context::new("pull manifest", "127.0.0.1:5000", "app").with_reference("latest"),
            ),
            method: "GET".into(),
            url: "http://127.0.0.1:5000/v2/app/manifests/latest".into(),
            status,
            errors,
            retry_after: None,
        }
    }

    #[test]
    fn parses_registry_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            parse_api_errors(body),
            vec![ApiError {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into()
            }]
        );
        assert!(parse_api_errors(b"<html>").is_empty());
    }

    #[test]
    fn status_message_names_everything() {
        let e = status_error(
            404,
            vec![ApiError {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into(),
            }],
        );
        assert_eq!(
            e.to_string(),
            "pull manifest `127.0.0.1:5000/app` (`latest`): GET `http://127.0.0.1:5000/v2/app/manifests/latest` returned 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert!(e.hint().unwrap().contains("not found"));
        assert!(!e.is_temporary());
    }

    #[test]
    fn temporary_and_hints() {
        assert!(status_error(503, vec![]).is_temporary());
        assert!(status_error(429, vec![]).is_temporary());
        assert!(!status_error(401, vec![]).is_temporary());
        assert!(status_error(401, vec![])
            .hint()
            .unwrap()
            .contains("docker login 127.0.0.1:5000"));
    }
}
