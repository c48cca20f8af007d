//! What building the layers needs from the build: the recipe, where the
//! cache and the output are, the tools, the epoch, the log, and (offline)
//! the bundle's pinned wheels. Borrowed plain data, so `layers` never
//! imports the stages that call it.

use super::deps::Pinned;
use crate::error::Result;
use crate::platform::Platform;
use crate::progress::Log;
use crate::recipe::Recipe;
use std::path::Path;

pub struct LayerOptions<'a> {
    pub recipe: &'a Recipe,
    pub cache_dir: &'a Path,
    /// The build's own output when it is a local file or dir: never packed.
    pub output: Option<&'a Path>,
    /// CPython of the base's minor version for bytecode (else found).
    pub python: Option<&'a Path>,
    pub uv: &'a Path,
    /// `SOURCE_DATE_EPOCH`: every file's mtime.
    pub epoch: u64,
    pub log: &'a Log,
    /// Offline from a bundle: its pinned wheels replace the recipe's sources.
    pub pinned: Option<&'a dyn PinnedWheels>,
}

/// Where an offline build's wheels come from (a bundle implements it).
pub trait PinnedWheels: Sync {
    /// The wheel dir and hash-pinned requirements for `platform`.
    fn pinned(&self, platform: &Platform) -> Result<Pinned>;
    /// What to do when uv asked for something the wheels lack.
    fn missing_hint(&self) -> String;
}
