//! Early uploads to a registry destination: a layer's blob goes up as soon
//! as it is built, while the rest of the build (bytecode compilation, mostly)
//! goes on, so publishing finds it there. Best effort: an early upload that
//! fails is left to the publish step, which retries it and reports the error.

use super::{BlobAction, BlobReport};
use crate::digest::Digest;
use crate::lock;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Uploads at once (publish's own limit).
const PARALLEL: usize = 4;

pub struct EarlyPush {
    offers: Mutex<Option<mpsc::UnboundedSender<(Digest, PathBuf)>>>,
    task: Mutex<Option<JoinHandle<Vec<BlobReport>>>>,
}

impl EarlyPush {
    /// Starts the uploader on the current tokio runtime (None outside one).
    pub fn start(client: &RegistryClient, dest: &Reference) -> Option<EarlyPush> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (offers, mut offered) = mpsc::unbounded_channel::<(Digest, PathBuf)>();
        let (client, dest) = (client.clone(), dest.clone());
        let task = runtime.spawn(async move {
            let slots = Arc::new(Semaphore::new(PARALLEL));
            let mut seen = BTreeSet::new();
            let mut uploads = Vec::new();
            while let Some((digest, path)) = offered.recv().await {
                if !seen.insert(digest.clone()) {
                    continue;
                }
                let (client, dest, slots) = (client.clone(), dest.clone(), slots.clone());
                uploads.push(tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await.ok()?;
                    upload(&client, &dest, digest, path).await
                }));
            }
            let mut reports = Vec::new();
            for upload in uploads {
                reports.extend(upload.await.ok().flatten());
            }
            reports
        });
        Some(EarlyPush {
            offers: Mutex::new(Some(offers)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Queues a freshly built blob (its file in the local cache). Slipway
    /// wrote and hashed it just now, so it is sent as it is; the registry
    /// checks the digest.
    pub fn offer(&self, digest: &Digest, path: PathBuf) {
        if let Some(offers) = lock(&self.offers).as_ref() {
            let _ = offers.send((digest.clone(), path));
        }
    }

    /// Takes no more offers and waits for every upload: publishing must
    /// not upload a blob while this still does (Distribution can then
    /// refuse a manifest naming it). The blobs this uploaded.
    pub async fn finish(&self) -> Vec<BlobReport> {
        lock(&self.offers).take();
        let task = lock(&self.task).take();
        match task {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for EarlyPush {
    /// A build that fails before publishing stops uploading.
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Uploads one blob the destination lacks; None when it had it already, or
/// when the upload failed (publishing tries again and reports it).
async fn upload(
    client: &RegistryClient,
    dest: &Reference,
    digest: Digest,
    path: PathBuf,
) -> Option<BlobReport> {
    let (registry, repository) = (&dest.registry, &dest.repository);
    let existing = client.blob_exists(registry, repository, &digest).await;
    if existing.ok()?.is_some() {
        return None;
    }
    let sent = client.push_blob(registry, repository, &digest, &path).await;
    Some(BlobReport {
        digest,
        action: BlobAction::Uploaded,
        bytes_sent: sent.ok()?,
    })
}

/// Publish's reports with the early uploads' folded in: a blob uploaded
/// early was found `Existing` by publish, but this build sent it.
pub fn merge(mut published: Vec<BlobReport>, early: Vec<BlobReport>) -> Vec<BlobReport> {
    for report in early {
        if let Some(found) = published.iter_mut().find(|p| p.digest == report.digest) {
            if found.action == BlobAction::Existing {
                *found = report;
            }
        }
    }
    published
}
