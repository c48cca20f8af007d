//! What became of each layer a build wanted, as the report shows it: its
//! kind, where it came from, or why it was left out.

use crate::cache::LayerRecord;
use serde::Serialize;

/// A layer slipway made, with the history line that explains it.
#[derive(Clone, Debug)]
pub struct NewLayer {
    pub record: LayerRecord,
    pub created_by: String,
}

/// Where a layer of the image came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerSource {
    /// The base image's, untouched.
    Base,
    /// Built by this build.
    Built,
    /// Taken from the local cache.
    Cache,
    /// Taken from the cache repo (`--cache-repo`).
    CacheRepo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    Base,
    /// `.pyc` for the base's standard library (`[python] stdlib_bytecode`).
    StdlibBytecode,
    SitePackages,
    SitePackagesBytecode,
    App,
    AppBytecode,
    /// The project's own wheel (and its workspace members').
    Project,
    ProjectBytecode,
}

/// A layer the build left out because it would hold no files.
#[derive(Clone, Debug, Serialize)]
pub struct OmittedLayer {
    pub kind: LayerKind,
    pub reason: String,
}
