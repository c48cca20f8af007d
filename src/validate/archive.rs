//! A docker-archive has no manifest blob: `manifest.json` names a config
//! file and layer files, so the checks are the config's name against its
//! hash and each layer file read to its end against the config's diff_ids.

use super::{read_bounded, stream, Checker};
use crate::digest::Digest;
use crate::image::archive::Archive;
use crate::inspect::InspectError;
use std::path::Path;

impl Checker<'_> {
    /// A docker-archive: `manifest.json`, each config (its name its hash),
    /// each layer read to its end and compared with the config's diff_ids.
    pub(super) async fn archive(&mut self, archive: &Archive) -> Option<Digest> {
        let manifest = archive
            .read_entry("manifest.json")
            .map_err(InspectError::from)
            .and_then(|r| read_bounded(r).map_err(InspectError::io(Path::new("manifest.json"))));
        let entries: Vec<serde_json::Value> = match manifest.map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                self.problem("manifest.json", format!("not a list of images: {e}"));
                return None;
            }
            Err(e) => {
                self.problem("manifest.json", e.to_string());
                return None;
            }
        };
        if entries.is_empty() {
            self.problem("manifest.json", "lists no image");
        }
        for entry in &entries {
            self.archive_image(archive, entry).await;
        }
        self.images.first().map(|i| i.config_digest.clone())
    }

    async fn archive_image(&mut self, archive: &Archive, entry: &serde_json::Value) {
        let Some(config_name) = entry["Config"].as_str() else {
            self.problem(
                "manifest.json",
                format!("an entry without `Config`: {entry}"),
            );
            return;
        };
        let bytes = archive
            .read_entry(config_name)
            .map_err(InspectError::from)
            .and_then(|r| read_bounded(r).map_err(InspectError::io(Path::new(config_name))));
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return self.problem(config_name, e.to_string()),
        };
        let config_digest = Digest::of(&bytes);
        if !config_name
            .trim_end_matches(".json")
            .ends_with(config_digest.hex())
        {
            self.problem(
                config_name,
                format!("hashes to {config_digest}, not to its name"),
            );
        }
        let config: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(e) => return self.problem(config_name, format!("not a config: {e}")),
        };
        let mut diff_ids = Vec::new();
        for name in entry["Layers"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            let read = match archive.read_entry(name) {
                Ok(reader) => stream::read_off_the_workers(reader, true).await,
                Err(e) => {
                    self.problem(name, e.to_string());
                    diff_ids.push(None);
                    continue;
                }
            };
            // The archive names layers by path: only the tar itself can be wrong.
            diff_ids.push(match (read.io_error, read.tar) {
                (Some(e), _) => {
                    self.problem(name, format!("unreadable: {e}"));
                    None
                }
                (None, Some(Err(e))) => {
                    self.problem(name, format!("not a whole (gzip'd) tar: {e}"));
                    None
                }
                (None, tar) => tar.and_then(Result::ok),
            });
        }
        let image = self.image(None, &config_digest, &config, diff_ids);
        self.images.push(image);
    }
}
