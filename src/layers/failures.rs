//! Errors of `slipway build`'s stages turned into CLI errors, with the exit
//! code by cause: a local file or the cache is 1 (naming the path), a base
//! that lies is 2, a registry 3.

use crate::error::{io, Error, ErrorKind, Hint};
use crate::layers;

/// An error reading the user's files: unreadable is bad input (2), changed
/// under the build is local I/O (1); both name the file.
pub fn source_error(context: &str) -> impl Fn(std::io::Error) -> Error + '_ {
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
