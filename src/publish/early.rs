//! Early uploads to a registry destination: a layer's blob goes up as soon
//! as it is built, while the rest of the build (bytecode compilation, mostly)
//! goes on. Publishing starts without waiting for them all: for a blob
//! offered here it awaits this upload instead of sending the blob itself
//! (two uploads of one blob at once can make Distribution refuse a manifest
//! naming it). Best effort: an early upload that fails is left to the
//! publish step, which retries it and reports the error.

use crate::digest::Digest;
use crate::lock;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Uploads at once (publish's own limit).
const PARALLEL: usize = 4;

/// What an early upload found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination had the blob already.
    Existing,
    /// Sent: the bytes.
    Uploaded(u64),
    /// The check or the upload failed: publishing tries again.
    Failed,
}

type Upload = Shared<BoxFuture<'static, Outcome>>;

pub struct EarlyPush {
    runtime: tokio::runtime::Handle,
    client: RegistryClient,
    dest: Reference,
    slots: Arc<Semaphore>,
    uploads: Mutex<BTreeMap<Digest, (Upload, AbortHandle)>>,
}

impl EarlyPush {
    /// An uploader on the current tokio runtime (None outside one).
    pub fn start(client: &RegistryClient, dest: &Reference) -> Option<EarlyPush> {
        Some(EarlyPush {
            runtime: tokio::runtime::Handle::try_current().ok()?,
            client: client.clone(),
            dest: dest.clone(),
            slots: Arc::new(Semaphore::new(PARALLEL)),
            uploads: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts uploading a freshly built blob (its file in the local cache),
    /// once per digest. Slipway wrote and hashed it just now, so it is sent
    /// as it is; the registry checks the digest.
    pub fn offer(&self, digest: &Digest, path: PathBuf) {
        let mut uploads = lock(&self.uploads);
        if uploads.contains_key(digest) {
            return;
        }
        let (client, dest, slots) = (self.client.clone(), self.dest.clone(), self.slots.clone());
        let blob = digest.clone();
        let task = self.runtime.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return Outcome::Failed;
            };
            upload(&client, &dest, &blob, path).await
        });
        let abort = task.abort_handle();
        let upload = task
            .map(|done| done.unwrap_or(Outcome::Failed))
            .boxed()
            .shared();
        uploads.insert(digest.clone(), (upload, abort));
    }

    /// Whether `digest` was offered: this build made the blob.
    pub fn offered(&self, digest: &Digest) -> bool {
        lock(&self.uploads).contains_key(digest)
    }

    /// The early upload of `digest`, if it was offered; publishing awaits
    /// it instead of uploading the blob itself.
    pub fn upload_of(&self, digest: &Digest) -> Option<Upload> {
        lock(&self.uploads)
            .get(digest)
            .map(|(upload, _)| upload.clone())
    }
}

impl Drop for EarlyPush {
    /// Uploads still going when the build ends (it failed, or the blob is
    /// in no image) stop.
    fn drop(&mut self) {
        for (_, abort) in lock(&self.uploads).values() {
            abort.abort();
        }
    }
}

async fn upload(
    client: &RegistryClient,
    dest: &Reference,
    digest: &Digest,
    path: PathBuf,
) -> Outcome {
    let (registry, repository) = (&dest.registry, &dest.repository);
    match client.blob_exists(registry, repository, digest).await {
        Ok(Some(_)) => Outcome::Existing,
        Ok(None) => match client.push_blob(registry, repository, digest, &path).await {
            Ok(sent) => Outcome::Uploaded(sent),
            Err(_) => Outcome::Failed,
        },
        Err(_) => Outcome::Failed,
    }
}
