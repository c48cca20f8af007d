//! A thin client for the Distribution (OCI registry) API on reqwest: the
//! `/v2/` challenge, bearer tokens and basic auth, manifests and blobs, with
//! digest checks, retries and redacted errors. Written by hand because
//! oci-client cannot mount across repositories with pull scope on the source,
//! re-auth on 401, or read docker's config.json (see DESIGN.md).
//!
//! Mirrors are not applied here: callers pick the host (see `resolve`).
//!
//! `client` (options, manifests) and `blobs` are the operations; `transport`
//! sends with retries; `token` and `auth` answer challenges; `credentials`
//! reads docker's config; `error` is the one error type.

pub mod auth;
mod blobs;
pub mod client;
pub mod credentials;
pub mod error;
mod options;
mod origin;
mod retry;
mod tags;
mod token;
mod transport;
mod watchdog;

pub use client::{FetchedManifest, RegistryClient, RegistryOptions};
pub use credentials::{Credentials, Secret};
pub use error::{RegistryError, TransportKind};
