//! What a build records in the image config (label `dev.slipway.settings`)
//! so `rebase` can redo the build's last step without the recipe: the
//! recipe's image settings, the base facts slipway's layers depend on, and
//! SOURCE_DATE_EPOCH.

use crate::facts::PythonFacts;
use crate::platform::Libc;
use crate::recipe::ImageSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LABEL: &str = "dev.slipway.settings";

/// The facts slipway's layers depend on; a new base must have the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFacts {
    pub python: String,
    pub libc: Libc,
    pub interpreter: String,
    pub site_packages: String,
    pub bin_dir: String,
}

impl From<&PythonFacts> for LayerFacts {
    fn from(f: &PythonFacts) -> LayerFacts {
        LayerFacts {
            python: f.version.clone(),
            libc: f.libc.clone(),
            interpreter: f.interpreter.clone(),
            site_packages: f.site_packages.clone(),
            bin_dir: f.bin_dir.clone(),
        }
    }
}

impl LayerFacts {
    /// (fact, recorded, found) for each that differs.
    pub fn differences(&self, new: &LayerFacts) -> Vec<(&'static str, String, String)> {
        let pairs = [
            ("Python minor", self.python.clone(), new.python.clone()),
            ("libc", self.libc.to_string(), new.libc.to_string()),
            (
                "interpreter",
                self.interpreter.clone(),
                new.interpreter.clone(),
            ),
            (
                "site-packages",
                self.site_packages.clone(),
                new.site_packages.clone(),
            ),
            ("scripts dir", self.bin_dir.clone(), new.bin_dir.clone()),
        ];
        pairs.into_iter().filter(|(_, a, b)| a != b).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The recipe's `[image]` settings (annotations live in the manifest).
    pub settings: ImageSettings,
    pub facts: LayerFacts,
    pub epoch: u64,
}

impl Recorded {
    pub fn new(settings: &ImageSettings, facts: &PythonFacts, epoch: u64) -> Recorded {
        Recorded {
            settings: ImageSettings {
                annotations: BTreeMap::new(),
                ..settings.clone()
            },
            facts: facts.into(),
            epoch,
        }
    }

    /// Reads the label from an image config, if the image has one.
    pub fn from_config(config: &serde_json::Value) -> Option<Result<Recorded, String>> {
        let text = config["config"]["Labels"][LABEL].as_str()?;
        Some(serde_json::from_str(text).map_err(|e| format!("label `{LABEL}` is not valid: {e}")))
    }

    /// The settings to assemble with: the recipe's plus this record as a label.
    pub fn image_settings(&self, annotations: &BTreeMap<String, String>) -> ImageSettings {
        let mut labels = self.settings.labels.clone();
        labels.insert(
            LABEL.to_string(),
            serde_json::to_string(self).expect("records serialise"),
        );
        ImageSettings {
            labels,
            annotations: annotations.clone(),
            ..self.settings.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn facts(version: &str, libc: Libc) -> PythonFacts {
        PythonFacts {
            version: version.into(),
            full_version: None,
            libc,
            platform: Platform::host(),
            prefix: "/usr/local".into(),
            interpreter: format!("/usr/local/bin/python{version}"),
            site_packages: format!("/usr/local/lib/python{version}/site-packages"),
            bin_dir: "/usr/local/bin".into(),
        }
    }

    #[test]
    fn round_trips_through_the_label() {
        let settings = ImageSettings {
            cmd: Some(vec!["app".into()]),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let recorded = Recorded::new(&settings, &facts("3.13", Libc::Musl), 7);
        let applied = recorded.image_settings(&BTreeMap::new());
        let config = serde_json::json!({"config": {"Labels": applied.labels}});
        let back = Recorded::from_config(&config).unwrap().unwrap();
        assert_eq!(back, recorded);
        assert_eq!(back.image_settings(&BTreeMap::new()).labels, applied.labels);
    }

    #[test]
    fn names_each_fact_that_differs() {
        let old = LayerFacts::from(&facts("3.13", Libc::Musl));
        let new = LayerFacts::from(&facts(
            "3.12",
            Libc::Glibc {
                major: 2,
                minor: 36,
            },
        ));
        let names: Vec<_> = old.differences(&new).iter().map(|d| d.0).collect();
        assert_eq!(
            names,
            ["Python minor", "libc", "interpreter", "site-packages"]
        );
        assert!(old.differences(&old).is_empty());
    }
}
