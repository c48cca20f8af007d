//! Stage 6, "publish": moves an assembled image to its destination — a
//! registry, an OCI image layout dir or a docker-archive tar. One module per
//! destination; each writes atomically (tags last, temp + rename for files).

pub mod archive;
pub mod layout;
pub mod registry;

use crate::assemble::AssembledImage;
use crate::digest::Digest;
use crate::resolve::BaseImage;

/// Everything a publisher needs: one image per platform (with the base it was
/// built on, whose layers may still live at the base's location) and the
/// index over them when there is more than one.
pub struct Publishable<'a> {
    pub images: Vec<(&'a AssembledImage, &'a BaseImage)>,
    pub index: Option<(Vec<u8>, Digest)>,
}

impl Publishable<'_> {
    /// The digest a user pulls: the index's, else the only manifest's.
    pub fn digest(&self) -> Digest {
        match &self.index {
            Some((_, digest)) => digest.clone(),
            None => self.images[0].0.manifest_digest.clone(),
        }
    }

    /// The top-level document: (media type, bytes).
    pub fn top(&self) -> (&'static str, &[u8]) {
        match &self.index {
            Some((bytes, _)) => (crate::oci::OCI_INDEX, bytes),
            None => (crate::oci::OCI_MANIFEST, &self.images[0].0.manifest),
        }
    }
}

/// What happened to one blob during a push.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobAction {
    /// The destination already had it.
    Existing,
    Mounted,
    Uploaded,
    /// Written to a layout or archive.
    Written,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BlobReport {
    pub digest: Digest,
    pub action: BlobAction,
    pub bytes_sent: u64,
}
