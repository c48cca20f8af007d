//! The registry client's one retry policy: which outcomes are worth
//! another attempt, how long to wait (the answer's `Retry-After`, else an
//! exponential backoff) and the loop every retrying call goes through.

use super::error::RegistryError;
use reqwest::header::HeaderMap;
use reqwest::Response;
use std::future::Future;
use std::time::Duration;

const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Statuses that say "try again": timeout, rate limit, server trouble.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Runs `once` up to `attempts` times (at least once): `delay` says, for an
/// outcome of attempt N, whether to try again and after how long.
pub async fn with_retries<T, E, F, Fut>(
    attempts: u32,
    mut once: F,
    delay: impl Fn(&Result<T, E>, u32) -> Option<Duration>,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = once().await;
        match delay(&outcome, attempt).filter(|_| attempt < attempts) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return outcome,
        }
    }
}

/// For one HTTP exchange: a retryable status (after its Retry-After) or a
/// temporary transport error.
pub fn response_delay(outcome: &Result<Response, RegistryError>, attempt: u32) -> Option<Duration> {
    match outcome {
        Ok(response) if is_retryable_status(response.status().as_u16()) => {
            Some(retry_after(response.headers()).unwrap_or_else(|| backoff(attempt)))
        }
        Ok(_) => None,
        Err(e) => error_delay(e, attempt),
    }
}

/// For a whole call (request and body): a temporary error, after the
/// registry's Retry-After when it gave one.
pub fn error_delay(error: &RegistryError, attempt: u32) -> Option<Duration> {
    if !error.is_temporary() {
        return None;
    }
    Some(match error {
        RegistryError::Status {
            retry_after: Some(delay),
            ..
        } => *delay,
        _ => backoff(attempt),
    })
}

/// For [`with_retries`] over calls returning `Result<T, RegistryError>`.
pub fn result_delay<T>(outcome: &Result<T, RegistryError>, attempt: u32) -> Option<Duration> {
    outcome.as_ref().err().and_then(|e| error_delay(e, attempt))
}

/// 200 ms, 400 ms, 800 ms... capped at 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_CAP)
}

pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After: <seconds>`, capped at 30 s. (HTTP dates fall back to backoff.)
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 3600 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 501] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }
}
