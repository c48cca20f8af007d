//! Where a build looks its layers up: the local cache, then the cache repo
//! (a hit is downloaded, checked against its entry and kept locally, so
//! every later stage reads it like any cached layer). Layers built here are
//! written to the cache repo once all are built ([`LayerStore::write_behind`]).

use super::outcome::LayerSource;
use crate::cache::{Cache, LayerRecord};
use crate::cache_repo::{self, CacheRepo};
use crate::digest::Digest;
use crate::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

pub struct LayerStore<'a> {
    local: &'a Cache,
    remote: Option<Remote<'a>>,
    on_built: Option<BuiltHook<'a>>,
}

/// Told of each layer this build writes: its record and its blob's file in
/// the local cache (the build sends it to the destination early).
pub type BuiltHook<'a> = Box<dyn Fn(&LayerRecord, std::path::PathBuf) + Send + Sync + 'a>;

struct Remote<'a> {
    repo: CacheRepo<'a>,
    /// Layer builders run on plain threads; the repo's client is async.
    runtime: tokio::runtime::Handle,
    /// Layers built by this build: written to the repo.
    built: Mutex<BTreeMap<String, LayerRecord>>,
    /// Layers the local cache had: written if the repo lacks them.
    found_locally: Mutex<BTreeMap<String, LayerRecord>>,
    /// Facts learnt by this build (key, JSON): written to the repo.
    facts: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Keys this build took from the repo (a second lookup finds them
    /// locally, and still says where they came from).
    taken: Mutex<BTreeSet<String>>,
    /// Keys the repo lacked: a second lookup in this build is not sent.
    missed: Mutex<BTreeSet<String>>,
}

impl std::ops::Deref for LayerStore<'_> {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        self.local
    }
}

impl<'a> LayerStore<'a> {
    /// `repo` is used only inside a tokio runtime (the CLI's); without one
    /// the build uses the local cache alone.
    pub fn new(local: &'a Cache, repo: Option<CacheRepo<'a>>) -> LayerStore<'a> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let remote = repo.zip(runtime).map(|(repo, runtime)| Remote {
            repo,
            runtime,
            built: Mutex::default(),
            found_locally: Mutex::default(),
            facts: Mutex::default(),
            taken: Mutex::default(),
            missed: Mutex::default(),
        });
        LayerStore {
            local,
            remote,
            on_built: None,
        }
    }

    /// The store, telling `hook` of every layer it records as built.
    pub fn on_built(self, hook: BuiltHook<'a>) -> LayerStore<'a> {
        LayerStore {
            on_built: Some(hook),
            ..self
        }
    }

    /// The cache repo's reference, when one is in use and answering.
    pub fn repo(&self) -> Option<&crate::reference::Reference> {
        self.remote
            .as_ref()
            .filter(|r| !r.repo.is_off())
            .map(|r| &r.repo.reference)
    }

    /// The layer for `key`, and where it came from; None: build it.
    pub fn find(&self, key: &str) -> Option<(LayerRecord, LayerSource)> {
        if let Some(record) = self.local.layer(key) {
            let Some(remote) = &self.remote else {
                return Some((record, LayerSource::Cache));
            };
            if lock(&remote.taken).contains(key) {
                return Some((record, LayerSource::CacheRepo));
            }
            lock(&remote.found_locally).insert(key.to_string(), record.clone());
            return Some((record, LayerSource::Cache));
        }
        let remote = self.remote.as_ref()?;
        if lock(&remote.missed).contains(key) {
            return None;
        }
        let Some(record) = remote.fetch(self.local, key) else {
            lock(&remote.missed).insert(key.to_string());
            return None;
        };
        lock(&remote.taken).insert(key.to_string());
        Some((record, LayerSource::CacheRepo))
    }

    /// Records a layer built for `key` locally, and queues it for the repo.
    pub fn remember(&self, key: &str, record: &LayerRecord) -> std::io::Result<()> {
        self.local.put_layer(key, record)?;
        if let Some(hook) = &self.on_built {
            hook(record, self.local.blob_path(&record.digest));
        }
        if let Some(remote) = &self.remote {
            lock(&remote.built).insert(key.to_string(), record.clone());
            lock(&remote.found_locally).remove(key);
        }
        Ok(())
    }

    /// Facts remembered under `key`: from the local cache, else the repo
    /// (then kept locally too).
    pub fn shared_facts<T: serde::de::DeserializeOwned + serde::Serialize>(
        &self,
        key: &Digest,
    ) -> Option<T> {
        if let Some(facts) = self.local.facts(key) {
            return Some(facts);
        }
        let remote = self.remote.as_ref()?;
        let bytes = match remote
            .runtime
            .block_on(remote.repo.lookup_facts(key.as_str()))
        {
            Ok(found) => found?,
            Err(refused) => {
                remote.repo.warn_refused(key.as_str(), &refused);
                return None;
            }
        };
        let facts: T = serde_json::from_slice(&bytes).ok()?;
        let _ = self.local.put_facts(key, &facts);
        Some(facts)
    }

    /// Remembers facts under `key` locally, and queues them for the repo.
    pub fn share_facts<T: serde::Serialize>(&self, key: &Digest, facts: &T) -> std::io::Result<()> {
        self.local.put_facts(key, facts)?;
        if let Some(remote) = &self.remote {
            let bytes = serde_json::to_vec(facts).map_err(std::io::Error::other)?;
            lock(&remote.facts).insert(key.to_string(), bytes);
        }
        Ok(())
    }

    /// Writes the built layers to the cache repo, and those found only
    /// locally that it lacks. Never fails: faults are warned about once.
    pub async fn write_behind(&self) {
        let Some(remote) = &self.remote else {
            return;
        };
        let Ok(empty_config) = self.local.put_blob_bytes(cache_repo::entry::EMPTY_CONFIG) else {
            return;
        };
        let empty_config = self.local.blob_path(&empty_config);
        let built = std::mem::take(&mut *lock(&remote.built));
        let found = std::mem::take(&mut *lock(&remote.found_locally));
        for (key, record) in &found {
            if remote.repo.is_off() {
                return;
            }
            if remote.repo.lookup(key).await.is_ok_and(|hit| hit.is_some()) {
                continue;
            }
            let blob = self.local.blob_path(&record.digest);
            remote.repo.store(key, record, &blob, &empty_config).await;
        }
        for (key, record) in &built {
            let blob = self.local.blob_path(&record.digest);
            remote.repo.store(key, record, &blob, &empty_config).await;
        }
        let facts = std::mem::take(&mut *lock(&remote.facts));
        for (key, bytes) in &facts {
            let Ok(digest) = self.local.put_blob_bytes(bytes) else {
                continue;
            };
            let document = self.local.blob_path(&digest);
            remote
                .repo
                .store_facts(key, bytes, &document, &empty_config)
                .await;
        }
    }
}

impl Remote<'_> {
    /// A hit's layer, downloaded (unless the local cache has its blob),
    /// checked against its entry and recorded in the local cache.
    fn fetch(&self, local: &Cache, key: &str) -> Option<LayerRecord> {
        let refused = |refused| {
            self.repo.warn_refused(key, &refused);
            None
        };
        let record = match self.runtime.block_on(self.repo.lookup(key)) {
            Ok(hit) => hit?,
            Err(refused_entry) => return refused(refused_entry),
        };
        let _scratch;
        let (path, downloaded) = match local.verified_blob(&record.digest) {
            Some(path) => (path, false),
            None => {
                _scratch = local.temp_dir("cache-repo").ok()?;
                let dest = _scratch.path().join("layer.tar.gz");
                match self.runtime.block_on(self.repo.download(&record, &dest)) {
                    Ok(true) => (dest, true),
                    Ok(false) => return None,
                    Err(refused_blob) => return refused(refused_blob),
                }
            }
        };
        if let Err(refused_layer) = cache_repo::verify_layer(&path, &record) {
            return refused(refused_layer);
        }
        if downloaded {
            local.insert_blob(&path, &record.digest).ok()?;
        }
        local.put_layer(key, &record).ok()?;
        Some(record)
    }
}
