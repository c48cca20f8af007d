//! Images in an OCI image layout dir (`--base-layout`, a bundle's `base/`,
//! `oci:DIR`), read through [`crate::layout::Layout`].

use super::{Document, ImageSource, SourceError};
use crate::digest::{Digest, HashingWriter};
use crate::layout::{Layout, LayoutError};
use crate::reference::Reference;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct LayoutSource {
    layout: Layout,
}

impl LayoutSource {
    pub fn new(dir: &Path) -> LayoutSource {
        LayoutSource {
            layout: Layout::new(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        self.layout.dir()
    }

    /// The blob's path in the layout (present or not).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob_path(digest)
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Layout {
            path: self.dir().to_path_buf(),
            message,
        }
    }

    /// A layout's errors as a source reports them: a blob that doesn't
    /// match its digest is its own case (the layout lies), the rest name
    /// the layout.
    fn layout_error(&self, error: LayoutError) -> SourceError {
        match error {
            LayoutError::Mismatch {
                path,
                expected,
                actual,
            } => SourceError::Mismatch {
                path,
                expected,
                actual,
            },
            LayoutError::Read { path, source } if path.ends_with("index.json") => {
                self.error(format!("cannot read index.json: {source}"))
            }
            LayoutError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                let hex = path.file_name().unwrap_or_default().to_string_lossy();
                self.error(format!("missing blob `sha256:{hex}` ({source})"))
            }
            LayoutError::Read { source, .. } => self.error(source.to_string()),
            LayoutError::Invalid { message, .. } => self.error(format!("index.json: {message}")),
        }
    }

    fn document(&self, digest: &Digest, media_type: String) -> Result<Document, SourceError> {
        let bytes = self
            .layout
            .small_blob(digest)
            .map_err(|e| self.layout_error(e))?;
        Ok(Document {
            bytes,
            media_type,
            digest: digest.clone(),
        })
    }
}

#[async_trait::async_trait]
impl ImageSource for LayoutSource {
    /// By digest; else the entry whose ref name is the full name, then the
    /// tag, else the only entry of a one-entry index.
    async fn top(&self, name: &Reference) -> Result<Document, SourceError> {
        let index = self.layout.index().map_err(|e| self.layout_error(e))?;
        let full_name = name.to_string();
        let entry = match &name.digest {
            Some(d) => index.manifests.iter().find(|m| &m.digest == d),
            None => {
                let names: Vec<&str> = [Some(full_name.as_str()), name.tag.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                crate::layout::find_entry(&index, &names)
            }
        }
        .ok_or_else(|| self.error(format!("no entry for `{name}` in index.json")))?;
        self.document(&entry.digest, entry.media_type.clone())
    }

    async fn manifest(&self, digest: &Digest) -> Result<Document, SourceError> {
        self.document(digest, String::new())
    }

    async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        self.layout
            .small_blob(digest)
            .map_err(|e| self.layout_error(e))
    }

    async fn copy_blob(&self, digest: &Digest, dest: &Path) -> Result<(), SourceError> {
        let source = self.blob_path(digest);
        let mut reader = std::fs::File::open(&source)
            .map_err(|e| self.error(format!("missing blob `{digest}` ({e})")))?;
        let write_error = |source| SourceError::Write {
            path: dest.to_path_buf(),
            source,
        };
        let mut writer = HashingWriter::new(std::fs::File::create(dest).map_err(write_error)?);
        std::io::copy(&mut reader, &mut writer).map_err(write_error)?;
        let (_, actual, _) = writer.finish();
        if &actual != digest {
            return Err(SourceError::Mismatch {
                path: source,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}
