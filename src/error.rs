//! The error the CLI prints: a message, its causes, a hint, and the kind that
//! picks the exit code. Each stage keeps its own typed error; this wraps them.

use std::fmt;

/// Exit codes, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 1: anything else (I/O, internal).
    Other = 1,
    /// 2: the recipe, the command line or the source tree is wrong.
    Input = 2,
    /// 3: a registry refused, failed or could not be reached.
    Registry = 3,
    /// 4: Python dependencies could not be resolved or installed.
    Dependencies = 4,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    cause: Option<Cause>,
}

/// What an [`Error`] keeps of where it came from: the whole chain, typed.
#[derive(Debug)]
enum Cause {
    /// A stage's error whose Display is the message: its sources are the causes.
    Wrapped(Box<dyn std::error::Error + Send + Sync>),
    /// An error under the message (e.g. the I/O error under "cannot write X").
    Under(Box<dyn std::error::Error + Send + Sync>),
}

/// A stage error's advice to the user: what to change, where.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            cause: None,
        }
    }

    /// Wraps a stage's error: its Display becomes the message, its whole
    /// source chain stays reachable through [`std::error::Error::source`].
    pub fn wrap<E: std::error::Error + Send + Sync + 'static>(
        kind: ErrorKind,
        error: E,
        hint: Option<String>,
    ) -> Error {
        Error {
            kind,
            message: error.to_string(),
            hint,
            cause: Some(Cause::Wrapped(Box::new(error))),
        }
    }

    /// For `map_err`: wraps a stage's error with its own hint.
    pub fn hinted<E: Hint + std::error::Error + Send + Sync + 'static>(
        kind: ErrorKind,
    ) -> impl FnOnce(E) -> Error {
        move |error| {
            let hint = error.hint();
            Error::wrap(kind, error, hint)
        }
    }

    /// `message`, caused by `error`.
    pub fn caused_by<E: std::error::Error + Send + Sync + 'static>(
        kind: ErrorKind,
        message: impl Into<String>,
        error: E,
    ) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            cause: Some(Cause::Under(Box::new(error))),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_optional_hint(mut self, hint: Option<String>) -> Error {
        self.hint = hint;
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind as i32
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Some(Cause::Wrapped(error)) => error.source(),
            Some(Cause::Under(error)) => Some(error.as_ref()),
            None => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds "while doing X" context to I/O errors.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error::caused_by(ErrorKind::Other, context, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    impl Hint for Outer {
        fn hint(&self) -> Option<String> {
            Some("do this".into())
        }
    }

    fn chain(error: &Error) -> Vec<String> {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        causes
    }

    /// Every level of a wrapped error's chain is kept, typed, in order.
    #[test]
    fn wrapping_keeps_the_whole_cause_chain() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = Error::hinted(ErrorKind::Input)(Outer(Middle(inner)));
        assert_eq!(error.message, "outer");
        assert_eq!(error.hint.as_deref(), Some("do this"));
        assert_eq!(chain(&error), ["middle", "gone"]);
        let io_error = io("cannot write x")(std::io::Error::other("disk full"));
        assert_eq!(chain(&io_error), ["disk full"]);
    }
}
