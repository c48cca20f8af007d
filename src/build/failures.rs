//! Errors of `slipway build`'s stages turned into CLI errors, with the exit
//! code by cause: a local file or the cache is 1 (naming the path), a base
//! that lies is 2, a registry 3.

use crate::cache::Cache;
use crate::error::{io, Error, ErrorKind, Hint};
use crate::layers;
use crate::publish;

/// An I/O error context naming the cache dir (local I/O errors name their path).
pub(super) fn in_cache(cache: &Cache, what: &str) -> String {
    format!("{what} `{}`", cache.root().display())
}

/// A blob that does not match its descriptor: a base descriptor that lies
/// is bad input, a corrupt cache file local I/O.
pub(super) fn blob_failure(e: &std::io::Error) -> Error {
    match publish::BlobError::of(e) {
        Some(blob) => {
            let kind = if blob.is_bad_input() {
                ErrorKind::Input
            } else {
                ErrorKind::Other
            };
            Error::new(kind, blob.to_string()).with_optional_hint(blob.hint())
        }
        None => io("cannot publish")(std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// An error reading the user's files: unreadable is bad input (2), changed
/// under the build is local I/O (1); both name the file.
pub(super) fn source_error(context: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| match layers::SourceError::of(&e) {
        Some(source) => {
            let kind = match source {
                layers::SourceError::Changed { .. } => ErrorKind::Other,
                layers::SourceError::Unreadable { .. } => ErrorKind::Input,
            };
            Error::new(kind, source.to_string()).with_optional_hint(source.hint())
        }
        None => io(context.to_string())(e),
    }
}
