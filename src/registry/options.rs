//! How the registry client behaves: plain-HTTP and HTTPS exceptions,
//! timeouts, the body watchdog, retries, where credentials come from.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (host[:port]) that may be spoken to over plain HTTP.
    /// Loopback hosts (127.0.0.0/8, localhost, [::1]) always may. A bare host
    /// matches every port.
    pub insecure: Vec<String>,
    /// Loopback registries (host[:port]) that speak HTTPS (loopback
    /// registries are otherwise spoken to over plain HTTP).
    pub https: Vec<String>,
    /// Timeout for connecting and for each read.
    pub timeout: Duration,
    /// The watchdog on bodies: fail when fewer than `min_rate` bytes/s
    /// arrived over `min_rate_window` (a drip that keeps each read alive).
    pub min_rate: u64,
    pub min_rate_window: Duration,
    /// The most one blob transfer may take, however fast it moves.
    pub blob_deadline: Duration,
    /// The registry `SLIPWAY_REGISTRY_USERNAME` / `PASSWORD` belong to, and
    /// those credentials: used for that registry only (see the README,
    /// "Where credentials go").
    pub env_credentials: Option<(String, super::Credentials)>,
    /// Attempts per request for 429 / 5xx / connection errors.
    pub retries: u32,
    /// Docker config (`~/.docker/config.json` or `$DOCKER_CONFIG/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Log each request (credentials redacted) to stderr.
    pub verbose: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            https: Vec::new(),
            timeout: Duration::from_secs(30),
            min_rate: DEFAULT_MIN_RATE_KIB * 1024,
            min_rate_window: Duration::from_secs(DEFAULT_MIN_RATE_SECONDS),
            blob_deadline: Duration::from_secs(DEFAULT_BLOB_DEADLINE_SECONDS),
            env_credentials: None,
            retries: 4,
            docker_config: None,
            verbose: false,
        }
    }
}

/// Defaults of the body watchdog: under 10 KiB/s for 30 s fails, and no
/// blob may take longer than an hour.
pub const DEFAULT_MIN_RATE_KIB: u64 = 10;
pub const DEFAULT_MIN_RATE_SECONDS: u64 = 30;
pub const DEFAULT_BLOB_DEADLINE_SECONDS: u64 = 3600;
