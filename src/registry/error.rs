//! One structured error for every registry failure.

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry `{registry}`: {message}")]
    Other { registry: String, message: String },
}
