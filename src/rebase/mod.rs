//! `slipway rebase`: puts an image's slipway layers, byte for byte, on a new
//! (patched) base, re-applying the settings the build recorded in the label
//! `dev.slipway.settings` (see `recorded`), so the result is exactly what a
//! full rebuild on that base gives. Refused when the base facts slipway's
//! layers depend on changed. This file is pure, like `assemble`; `run` does
//! the reading, resolving and publishing.

pub mod run;

use crate::assemble::recorded::{self, LayerFacts, Recorded};
use crate::assemble::{self, AssembleError, NewLayer};
use crate::cache::LayerRecord;
use crate::digest::Digest;
use crate::image::Image;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::resolve::BaseImage;
use serde_json::Value;
use std::collections::BTreeMap;

/// Annotations `assemble` writes itself: not carried over from the old image.
const OWN_ANNOTATIONS: &[&str] = &[
    "org.opencontainers.image.base.name",
    "org.opencontainers.image.base.digest",
    "org.opencontainers.image.created",
];

/// One platform of the image being rebased, as read from its registry or layout.
#[derive(Clone, Debug)]
pub struct OldImage {
    pub platform: Platform,
    pub manifest_digest: Digest,
    pub config: Value,
    pub layers: Vec<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    #[error(
        "the {platform} image was not built by slipway with its settings recorded (no `{}` label)",
        recorded::LABEL
    )]
    NotRecorded { platform: String },
    #[error("the {platform} image: {message}")]
    Bad { platform: String, message: String },
    #[error(
        "the {platform} image has a stdlib bytecode layer, compiled from its old base's standard library"
    )]
    StdlibBytecode { platform: String },
    #[error("the new base differs in facts slipway's layers depend on:\n{table}")]
    FactsChanged { table: String },
    #[error(transparent)]
    Assemble(#[from] AssembleError),
}

impl crate::error::Hint for RebaseError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RebaseError::NotRecorded { .. } | RebaseError::Bad { .. } => {
                "rebuild it with `slipway build` (a current slipway records what rebase needs)".into()
            }
            RebaseError::StdlibBytecode { .. } => "rebuild with `slipway build` on the new base (`[python] stdlib_bytecode` compiles the base's own `.py` files, which the new base may change)".into(),
            RebaseError::FactsChanged { .. } => "rebuild with `slipway build` on the new base: its wheels and bytecode must be made for these facts".into(),
            RebaseError::Assemble(_) => return None,
        })
    }
}

impl OldImage {
    /// What the build recorded in the config.
    pub fn recorded(&self) -> Result<Recorded, RebaseError> {
        Recorded::from_config(&self.config)
            .ok_or_else(|| RebaseError::NotRecorded {
                platform: self.platform.to_string(),
            })?
            .map_err(|message| self.bad(message))
    }

    fn bad(&self, message: String) -> RebaseError {
        RebaseError::Bad {
            platform: self.platform.to_string(),
            message,
        }
    }

    /// slipway's layers: the trailing ones whose history says `slipway`.
    pub fn slipway_layers(&self) -> Result<Vec<NewLayer>, RebaseError> {
        let history: Vec<&Value> = self.config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .collect();
        let diff_ids: Vec<&str> = self.config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if history.len() != self.layers.len() || diff_ids.len() != self.layers.len() {
            return Err(self.bad(format!(
                "{} layers, {} diff_ids and {} layer history entries do not line up",
                self.layers.len(),
                diff_ids.len(),
                history.len()
            )));
        }
        let ours = history
            .iter()
            .rev()
            .take_while(|h| h["comment"] == "slipway")
            .count();
        let from = self.layers.len() - ours;
        let stdlib = crate::layers::bytecode::stdlib::CREATED_BY;
        if history[from..].iter().any(|h| h["created_by"] == stdlib) {
            return Err(RebaseError::StdlibBytecode {
                platform: self.platform.to_string(),
            });
        }
        (from..self.layers.len())
            .map(|i| {
                let diff_id = Digest::parse(diff_ids[i]).map_err(|e| self.bad(e))?;
                Ok(NewLayer {
                    record: LayerRecord {
                        digest: self.layers[i].digest.clone(),
                        diff_id,
                        size: self.layers[i].size,
                        uncompressed_size: 0,
                    },
                    created_by: history[i]["created_by"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
            })
            .collect()
    }

    /// The manifest annotations to carry over (provenance, the recipe's own).
    pub fn carried_annotations(&self) -> BTreeMap<String, String> {
        let mut out = self.annotations.clone();
        out.retain(|k, _| !OWN_ANNOTATIONS.contains(&k.as_str()));
        out
    }
}

/// (platform, fact, recorded, new) for every fact that differs, any platform.
pub type FactChanges = Vec<(String, &'static str, String, String)>;

/// Refuses when any platform's new base has other facts than were recorded.
pub fn check_facts(pairs: &[(&OldImage, &Recorded, LayerFacts)]) -> Result<(), RebaseError> {
    let changes: FactChanges = pairs
        .iter()
        .flat_map(|(image, recorded, new)| {
            recorded
                .facts
                .differences(new)
                .into_iter()
                .map(|(fact, old, new)| (image.platform.to_string(), fact, old, new))
        })
        .collect();
    if changes.is_empty() {
        return Ok(());
    }
    Err(RebaseError::FactsChanged {
        table: side_by_side(&changes),
    })
}

fn side_by_side(changes: &FactChanges) -> String {
    let rows: Vec<[String; 4]> =
        std::iter::once(["platform", "fact", "image", "new base"].map(String::from))
            .chain(
                changes
                    .iter()
                    .map(|(p, f, o, n)| [p.clone(), f.to_string(), o.clone(), n.clone()]),
            )
            .collect();
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            format!(
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The image on `base`: its slipway layers, settings and annotations as the
/// build made them, assembled exactly as `build` does.
pub fn rebase(
    image: &OldImage,
    recorded: &Recorded,
    base: &BaseImage,
) -> Result<Image, RebaseError> {
    let layers = image.slipway_layers()?;
    let settings = recorded.image_settings(&BTreeMap::new());
    Ok(assemble::assemble(
        base,
        &layers,
        &settings,
        recorded.epoch,
        &image.carried_annotations(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Hint;
    use crate::platform::Libc;

    #[test]
    fn side_by_side_names_platform_fact_and_both_values() {
        let facts = |libc| LayerFacts {
            python: "3.13".into(),
            libc,
            interpreter: "/usr/local/bin/python3.13".into(),
            site_packages: "/usr/local/lib/python3.13/site-packages".into(),
            bin_dir: "/usr/local/bin".into(),
        };
        let image = OldImage {
            platform: Platform::parse("linux/arm64").unwrap(),
            manifest_digest: Digest::of(b"m"),
            config: serde_json::json!({}),
            layers: Vec::new(),
            annotations: BTreeMap::new(),
        };
        let recorded = Recorded {
            settings: Default::default(),
            facts: facts(Libc::Musl),
            epoch: 0,
        };
        let err = check_facts(&[(
            &image,
            &recorded,
            facts(Libc::Glibc {
                major: 2,
                minor: 36,
            }),
        )])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linux/arm64  libc"), "{text}");
        assert!(
            text.contains("musl") && text.contains("glibc 2.36"),
            "{text}"
        );
        assert!(err.hint().unwrap().contains("rebuild"));
        assert!(check_facts(&[(&image, &recorded, facts(Libc::Musl))]).is_ok());
    }

    #[test]
    fn finds_slipway_layers_at_the_end() {
        let d = |s: &str| Digest::of(s.as_bytes());
        let desc = |s: &str| Descriptor {
            media_type: crate::oci::OCI_LAYER_GZIP.into(),
            digest: d(s),
            size: 1,
            platform: None,
            annotations: None,
        };
        let image = OldImage {
            platform: Platform::host(),
            manifest_digest: d("m"),
            config: serde_json::json!({
                "rootfs": {"diff_ids": [d("b"), d("s")]},
                "history": [{"created_by": "base"}, {"empty_layer": true}, {"created_by": "slipway: app", "comment": "slipway"}],
            }),
            layers: vec![desc("B"), desc("S")],
            annotations: BTreeMap::from([
                (
                    "org.opencontainers.image.created".to_string(),
                    "x".to_string(),
                ),
                (
                    "org.opencontainers.image.revision".to_string(),
                    "abc".to_string(),
                ),
            ]),
        };
        let layers = image.slipway_layers().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].record.digest, d("S"));
        assert_eq!(layers[0].record.diff_id, d("s"));
        assert_eq!(layers[0].created_by, "slipway: app");
        assert_eq!(image.carried_annotations().len(), 1);

        let mut with_stdlib = image.clone();
        with_stdlib.config["history"][2]["created_by"] =
            crate::layers::bytecode::stdlib::CREATED_BY.into();
        let err = with_stdlib.slipway_layers().unwrap_err();
        assert!(matches!(err, RebaseError::StdlibBytecode { .. }), "{err}");
        assert!(err.hint().unwrap().contains("stdlib_bytecode"));
    }
}
