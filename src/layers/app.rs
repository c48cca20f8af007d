//! The app layer's entries: the source dir walked in sorted order, honouring
//! default excludes, the recipe's excludes and `.dockerignore`.

use super::{Entry, Owner};
use std::path::{Path, PathBuf};

/// Always excluded, before the recipe's and `.dockerignore`'s patterns.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".env",
    ".env.*",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    "*.pem",
    "*.key",
];

pub struct AppSource<'a> {
    pub source_dir: &'a Path,
    /// Absolute destination in the image, e.g. `/app`.
    pub destination: &'a str,
    pub excludes: &'a [String],
    pub owner: Owner,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("source dir `{0}` does not exist or is not a directory")]
    MissingSource(PathBuf),
    #[error("`{path}` is a symlink to `{target}`, which points outside the source dir")]
    SymlinkOutside { path: PathBuf, target: String },
    #[error("`{path}` is an absolute symlink (to `{target}`); make it relative to stay inside the source dir")]
    AbsoluteSymlink { path: PathBuf, target: String },
    #[error("`{path}` is a {kind}, which cannot be put in an image layer")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("file name `{}` is not valid UTF-8", path.display())]
    NonUtf8Name { path: PathBuf },
    #[error("bad exclude pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Walks the source dir and returns the layer's entries (normalised) plus the
/// `.py` files to compile as `(file on disk, path in image)`.
pub fn collect(source: &AppSource) -> Result<Vec<Entry>, AppError> {
    let _ = source;
    todo!("app::collect")
}
