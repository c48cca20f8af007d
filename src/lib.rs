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
pub mod plan;
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
