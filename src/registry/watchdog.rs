//! The stall guard on response bodies: a minimum rate over a window (a
//! server dripping one byte a second keeps every read alive, so a per-read
//! timeout never fires) and a deadline for the whole body.

use super::error::{Context, RegistryError, TransportKind};
use super::origin::redact_url;
use super::transport::{transport_error, Request};
use reqwest::Response;
use std::time::{Duration, Instant};

pub struct Watchdog {
    min_rate: u64,
    window: Duration,
    limit: Duration,
    deadline: Instant,
    window_start: Instant,
    window_bytes: u64,
}

/// Why a body was given up on.
#[derive(Debug, PartialEq, Eq)]
pub enum Stall {
    /// Fewer than `bytes` arrived in `window`.
    TooSlow { bytes: u64, window: Duration },
    /// The whole body took longer than this.
    Deadline(Duration),
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::TooSlow { bytes, window } => write!(
                f,
                "only {bytes} bytes arrived in {} s, under the minimum rate \
                 (--min-rate KiB/s over --min-rate-seconds)",
                window.as_secs_f64()
            ),
            Stall::Deadline(limit) => write!(
                f,
                "the transfer took longer than {} s (--blob-deadline)",
                limit.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for Stall {}

impl Watchdog {
    /// `min_rate` in bytes/s over `window`; `limit` for the whole body.
    pub fn new(min_rate: u64, window: Duration, limit: Duration) -> Watchdog {
        let now = Instant::now();
        let limit = limit.min(Duration::from_secs(365 * 24 * 3600));
        Watchdog {
            limit,
            min_rate,
            window: window.max(Duration::from_millis(100)),
            deadline: now + limit,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Counts `n` bytes; an error once the rate or the deadline is missed.
    pub fn advance(&mut self, n: u64) -> Result<(), Stall> {
        self.window_bytes = self.window_bytes.saturating_add(n);
        self.check(Instant::now())
    }

    fn check(&mut self, now: Instant) -> Result<(), Stall> {
        if now >= self.deadline {
            return Err(Stall::Deadline(self.limit));
        }
        if now.duration_since(self.window_start) >= self.window {
            let wanted = (self.min_rate as f64 * self.window.as_secs_f64()) as u64;
            if self.window_bytes < wanted {
                return Err(Stall::TooSlow {
                    bytes: self.window_bytes,
                    window: self.window,
                });
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }

    /// The next chunk of `response`, or the stall that stopped it.
    pub async fn next_chunk(
        &mut self,
        context: &Context,
        request: &Request,
        response: &mut Response,
    ) -> Result<Option<bytes::Bytes>, RegistryError> {
        loop {
            let wake = (self.window_start + self.window).min(self.deadline);
            let outcome = tokio::time::timeout_at(wake.into(), response.chunk()).await;
            let result = match outcome {
                Ok(Ok(Some(chunk))) => self.advance(chunk.len() as u64).map(|()| Some(chunk)),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => {
                    return Err(transport_error(context, &request.method, &request.url, e))
                }
                Err(_) => match self.check(Instant::now()) {
                    Ok(()) => continue,
                    Err(stall) => Err(stall),
                },
            };
            return result.map_err(|stall| RegistryError::Transport {
                context: Box::new(context.clone()),
                method: request.method.to_string(),
                url: redact_url(&request.url),
                kind: TransportKind::Timeout,
                source: Box::new(stall),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drip_fails_the_window_and_a_flow_passes() {
        let mut dog = Watchdog::new(1024, Duration::from_secs(2), Duration::from_secs(60));
        let start = dog.window_start;
        dog.advance(10).unwrap();
        assert_eq!(
            dog.check(start + Duration::from_secs(3)),
            Err(Stall::TooSlow {
                bytes: 10,
                window: Duration::from_secs(2)
            })
        );
        let mut dog = Watchdog::new(1024, Duration::from_secs(2), Duration::from_secs(60));
        let start = dog.window_start;
        dog.window_bytes = 4096;
        assert_eq!(dog.check(start + Duration::from_secs(3)), Ok(()));
        assert_eq!(dog.window_bytes, 0, "a new window begins");
        assert!(matches!(
            dog.check(start + Duration::from_secs(61)),
            Err(Stall::Deadline(_))
        ));
    }
}
