//! A cache-repo entry as plain data: the tag a layer key is stored under,
//! the small OCI artifact (an image manifest with an `artifactType`) that
//! records the layer, and the checks an entry read back must pass. No I/O.

use crate::cache::LayerRecord;
use crate::digest::Digest;
use crate::oci::{Descriptor, OCI_LAYER_GZIP, OCI_MANIFEST};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever slipway's layer bytes change for unchanged inputs (tar
/// headers, gzip backend or level, path layout): old entries then miss.
pub const LAYER_FORMAT_VERSION: u32 = 1;
pub const ARTIFACT_TYPE: &str = "application/vnd.slipway.layer-cache.v1";
/// The OCI "empty" config an artifact without a config of its own names.
pub const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Every layer entry's tag starts so; prune touches no other tags than these two.
pub const TAG_PREFIX: &str = "slipway-layer-";
/// Facts entries: a small JSON document a build learnt at some cost (what a
/// wheels-only resolution holds back), so a fresh runner need not run uv for it.
pub const FACTS_TAG_PREFIX: &str = "slipway-facts-";
pub const FACTS_ARTIFACT_TYPE: &str = "application/vnd.slipway.facts.v1";
pub const FACTS_MEDIA_TYPE: &str = "application/vnd.slipway.facts.v1+json";
/// Facts are a few KiB; more is refused before it is read.
pub const FACTS_LIMIT: u64 = 1 << 20;
pub const CREATED: &str = "org.opencontainers.image.created";
const KEY: &str = "dev.slipway.cache.key";
const FORMAT: &str = "dev.slipway.cache.layer-format";
const DIFF_ID: &str = "dev.slipway.cache.diff-id";
const UNCOMPRESSED_SIZE: &str = "dev.slipway.cache.uncompressed-size";
/// Entries are a few hundred bytes; anything bigger is not one of ours.
pub const ENTRY_LIMIT: usize = 64 * 1024;
/// No layer slipway writes comes near this; a larger claim is a lie.
const LAYER_SIZE_LIMIT: u64 = 64 << 30;

/// The tag for `key`: a digest of the key and the layer format, because
/// tags allow only `[A-Za-z0-9_.-]`, at most 128 characters.
pub fn tag(key: &str) -> String {
    let digest =
        Digest::of(format!("slipway layer format {LAYER_FORMAT_VERSION}\n{key}").as_bytes());
    format!("{TAG_PREFIX}{}", digest.hex())
}

/// The tag for the facts stored under `key`.
pub fn facts_tag(key: &str) -> String {
    let digest =
        Digest::of(format!("slipway facts format {LAYER_FORMAT_VERSION}\n{key}").as_bytes());
    format!("{FACTS_TAG_PREFIX}{}", digest.hex())
}

/// Whether `tag` names an entry of either kind (what prune looks at).
pub fn is_entry_tag(tag: &str) -> bool {
    tag.starts_with(TAG_PREFIX) || tag.starts_with(FACTS_TAG_PREFIX)
}

fn empty_config() -> Descriptor {
    Descriptor {
        media_type: EMPTY_CONFIG_TYPE.into(),
        digest: Digest::of(EMPTY_CONFIG),
        size: EMPTY_CONFIG.len() as u64,
        platform: None,
        annotations: None,
    }
}

fn entry_annotations(key: &str, created: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CREATED.to_string(), created.to_string()),
        (KEY.to_string(), key.to_string()),
        (FORMAT.to_string(), LAYER_FORMAT_VERSION.to_string()),
    ])
}

/// The facts entry for `key`: the JSON document `facts` as its config, and
/// the empty descriptor as its one layer (OCI 1.1's advice for artifacts).
pub fn facts_manifest(key: &str, facts: &[u8], created: &str) -> Vec<u8> {
    let entry = EntryManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        artifact_type: FACTS_ARTIFACT_TYPE.into(),
        config: Descriptor {
            media_type: FACTS_MEDIA_TYPE.into(),
            digest: Digest::of(facts),
            size: facts.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: vec![empty_config()],
        annotations: entry_annotations(key, created),
    };
    crate::oci::to_canonical_bytes(&entry)
}

/// The descriptor of the facts document a facts entry for `key` names.
pub fn parse_facts(bytes: &[u8], key: &str) -> Result<Descriptor, EntryError> {
    let entry = parse_entry(bytes, key, FACTS_ARTIFACT_TYPE)?;
    if entry.config.media_type != FACTS_MEDIA_TYPE || entry.config.size > FACTS_LIMIT {
        return Err(EntryError::BadLayer(format!(
            "a facts document of type `{}` and {} bytes",
            crate::sanitize::escape(&entry.config.media_type),
            entry.config.size
        )));
    }
    Ok(entry.config)
}

#[derive(Serialize, Deserialize)]
struct EntryManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "artifactType")]
    artifact_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
}

/// The entry manifest for `key` → `record`, created at `created` (RFC 3339).
pub fn manifest(key: &str, record: &LayerRecord, created: &str) -> Vec<u8> {
    let layer_annotations = BTreeMap::from([
        (DIFF_ID.to_string(), record.diff_id.to_string()),
        (
            UNCOMPRESSED_SIZE.to_string(),
            record.uncompressed_size.to_string(),
        ),
    ]);
    let entry = EntryManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        artifact_type: ARTIFACT_TYPE.into(),
        config: empty_config(),
        layers: vec![Descriptor {
            media_type: OCI_LAYER_GZIP.into(),
            digest: record.digest.clone(),
            size: record.size,
            platform: None,
            annotations: Some(layer_annotations),
        }],
        annotations: entry_annotations(key, created),
    };
    crate::oci::to_canonical_bytes(&entry)
}

/// Why an entry read back is not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("it is not a slipway layer-cache entry ({0})")]
    Foreign(String),
    #[error("it records key `{found}`, not the key its tag stands for")]
    OtherKey { found: String },
    #[error("it was written by layer format {found}, this slipway writes {LAYER_FORMAT_VERSION}")]
    OtherFormat { found: String },
    #[error("its layer descriptor is not usable ({0})")]
    BadLayer(String),
}

/// The layer an entry for `key` records, after checking everything that
/// came from outside: media and artifact types, the key and format it
/// claims, one gzip layer of a plausible size, a parseable diff_id.
pub fn parse(bytes: &[u8], key: &str) -> Result<LayerRecord, EntryError> {
    let entry = parse_entry(bytes, key, ARTIFACT_TYPE)?;
    let [layer] = entry.layers.as_slice() else {
        return Err(EntryError::BadLayer(format!(
            "{} layers, not one",
            entry.layers.len()
        )));
    };
    if layer.media_type != OCI_LAYER_GZIP {
        return Err(EntryError::BadLayer("not a gzip'd tar".into()));
    }
    if layer.size == 0 || layer.size > LAYER_SIZE_LIMIT {
        return Err(EntryError::BadLayer(format!("size {}", layer.size)));
    }
    let annotation = |name| layer.annotations.as_ref().and_then(|a| a.get(name));
    let diff_id = annotation(DIFF_ID)
        .and_then(|d| Digest::parse(d).ok())
        .ok_or_else(|| EntryError::BadLayer("no diff_id".into()))?;
    let uncompressed_size = annotation(UNCOMPRESSED_SIZE)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s <= LAYER_SIZE_LIMIT * 64)
        .ok_or_else(|| EntryError::BadLayer("no uncompressed size".into()))?;
    Ok(LayerRecord {
        digest: layer.digest.clone(),
        diff_id,
        size: layer.size,
        uncompressed_size,
    })
}

/// An entry of `artifact_type` for `key` in the layer format of this slipway.
fn parse_entry(bytes: &[u8], key: &str, artifact_type: &str) -> Result<EntryManifest, EntryError> {
    let entry: EntryManifest =
        serde_json::from_slice(bytes).map_err(|e| EntryError::Foreign(e.to_string()))?;
    if entry.schema_version != 2 || entry.media_type != OCI_MANIFEST {
        return Err(EntryError::Foreign("not an OCI image manifest".into()));
    }
    if entry.artifact_type != artifact_type {
        return Err(EntryError::Foreign(format!(
            "artifactType `{}`",
            crate::sanitize::escape(&entry.artifact_type)
        )));
    }
    let found_key = entry.annotations.get(KEY).cloned().unwrap_or_default();
    if found_key != key {
        return Err(EntryError::OtherKey {
            found: crate::sanitize::escape(&found_key).into_owned(),
        });
    }
    let format = entry.annotations.get(FORMAT).cloned().unwrap_or_default();
    if format != LAYER_FORMAT_VERSION.to_string() {
        return Err(EntryError::OtherFormat {
            found: crate::sanitize::escape(&format).into_owned(),
        });
    }
    Ok(entry)
}

/// The entry's creation time (seconds since the epoch), for prune.
pub fn created(bytes: &[u8]) -> Option<u64> {
    let entry: EntryManifest = serde_json::from_slice(bytes).ok()?;
    if entry.artifact_type != ARTIFACT_TYPE && entry.artifact_type != FACTS_ARTIFACT_TYPE {
        return None;
    }
    parse_rfc3339(entry.annotations.get(CREATED)?)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what [`crate::oci::rfc3339`] writes) as
/// seconds since the epoch; any other shape is None.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of rfc3339's.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LayerRecord {
        LayerRecord {
            digest: Digest::of(b"gz"),
            diff_id: Digest::of(b"tar"),
            size: 2,
            uncompressed_size: 3,
        }
    }

    #[test]
    fn tags_are_valid_and_differ_by_key() {
        let a = tag("k1");
        assert!(a.len() <= 128 && a.starts_with(TAG_PREFIX));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        assert_ne!(a, tag("k2"));
    }

    #[test]
    fn an_entry_round_trips_and_is_checked() {
        let bytes = manifest("k1", &record(), &crate::oci::rfc3339(86400));
        assert_eq!(parse(&bytes, "k1"), Ok(record()));
        assert_eq!(created(&bytes), Some(86400));
        for seconds in [0, 951_782_400, 1_798_761_599, 4_102_444_800] {
            let text = crate::oci::rfc3339(seconds);
            assert_eq!(parse_rfc3339(&text), Some(seconds), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert!(matches!(
            parse(&bytes, "k2"),
            Err(EntryError::OtherKey { .. })
        ));
        let text = String::from_utf8(bytes).unwrap();
        let other_format = text.replace(
            "\"dev.slipway.cache.layer-format\":\"1\"",
            "\"dev.slipway.cache.layer-format\":\"0\"",
        );
        assert!(matches!(
            parse(other_format.as_bytes(), "k1"),
            Err(EntryError::OtherFormat { .. })
        ));
        let foreign = text.replace(ARTIFACT_TYPE, "application/x-other");
        assert!(matches!(
            parse(foreign.as_bytes(), "k1"),
            Err(EntryError::Foreign(_))
        ));
        let no_diff_id = text.replace(DIFF_ID, "x");
        assert!(matches!(
            parse(no_diff_id.as_bytes(), "k1"),
            Err(EntryError::BadLayer(_))
        ));
        assert!(parse(b"[]", "k1").is_err());
        let facts = facts_manifest("k1", b"[]", &crate::oci::rfc3339(0));
        assert_eq!(parse_facts(&facts, "k1").unwrap().digest, Digest::of(b"[]"));
        assert!(
            parse(&facts, "k1").is_err(),
            "a facts entry is no layer entry"
        );
        assert!(parse_facts(&facts, "k2").is_err());
    }
}
