//! slipway: Python application → small, reproducible OCI image, with no daemon and no root.
//!
//! The pipeline (see DESIGN.md), one module per stage:
//! `recipe` → `resolve` (+ `facts`) → `plan` → `layers` → `assemble` → `publish`.
//! `registry` and `cache` are the edges that touch the outside world.

pub mod assemble;
pub mod build;
pub mod bundle;
pub mod cache;
pub mod cache_repo;
pub mod config;
pub mod digest;
pub mod error;
pub mod facts;
pub mod image;
pub mod init;
pub mod inspect;
pub mod layers;
pub mod layout;
pub mod oci;
pub mod platform;
pub mod progress;
pub mod provenance;
pub mod publish;
pub mod rebase;
pub mod recipe;
pub mod reference;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod sanitize;
pub mod sbom;
pub mod sharedlibs;
pub mod validate;

/// A mutex's guard, poisoned or not: the data behind slipway's mutexes (maps
/// of tokens, layers, queued uploads) stays whole if a holder panicked.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking work (files, tar, gzip, child processes) from async code
/// without stalling the runtime's other tasks: on the multi-threaded runtime
/// the worker hands its tasks over first; elsewhere (tests) it just runs.
pub(crate) fn off_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
