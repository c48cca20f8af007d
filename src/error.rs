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
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// Wraps a stage's error: its Display becomes the message, its source chain is kept.
    pub fn wrap<E: std::error::Error + Send + Sync + 'static>(
        kind: ErrorKind,
        error: E,
        hint: Option<String>,
    ) -> Error {
        Error {
            kind,
            message: error.to_string(),
            hint,
            source: error.source().map(|s| s.to_string().into()),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
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
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds "while doing X" context to I/O errors.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error {
        kind: ErrorKind::Other,
        message: context,
        hint: None,
        source: Some(Box::new(e)),
    }
}
