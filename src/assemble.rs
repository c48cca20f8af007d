//! Stage 5, "assemble": pure functions from a base image, new layers and the
//! recipe's image settings to config, manifest and index bytes. No I/O here.

pub mod recorded;

use crate::digest::Digest;
use crate::image::{BlobSource, Image, Layer};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::recipe::ImageSettings;
use crate::resolve::BaseImage;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub use crate::layers::outcome::NewLayer;

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("the image would have {} layers ({base_layers} from base `{base}` + {new_layers} new); container runtimes refuse more than 127", base_layers + new_layers)]
    TooManyLayers {
        base: String,
        base_layers: usize,
        new_layers: usize,
    },
    #[error("base image config is not a JSON object with `config` and `rootfs`")]
    BadBaseConfig,
}

pub const MAX_LAYERS: usize = 127;

pub use crate::oci::rfc3339;

pub fn assemble(
    base: &BaseImage,
    new_layers: &[NewLayer],
    settings: &ImageSettings,
    epoch: u64,
    extra_annotations: &BTreeMap<String, String>,
) -> Result<Image, AssembleError> {
    if base.manifest.layers.len() + new_layers.len() > MAX_LAYERS {
        return Err(AssembleError::TooManyLayers {
            base: base.name.to_string(),
            base_layers: base.manifest.layers.len(),
            new_layers: new_layers.len(),
        });
    }
    let created = rfc3339(epoch);
    let config = new_config(base, new_layers, settings, &created)?;
    let config_bytes = serde_json::to_vec(&config).expect("JSON values serialise");
    let config_digest = Digest::of(&config_bytes);

    let layers = layers(base, new_layers);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.base.name".to_string(),
        base.name.to_string(),
    );
    annotations.insert(
        "org.opencontainers.image.base.digest".to_string(),
        base.top_digest.to_string(),
    );
    annotations.insert("org.opencontainers.image.created".to_string(), created);
    annotations.extend(extra_annotations.clone());
    annotations.extend(settings.annotations.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: oci::OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        annotations: Some(annotations),
    };
    let manifest_bytes = oci::to_canonical_bytes(&manifest);
    Ok(Image {
        platform: base.image.platform.clone(),
        manifest_digest: Digest::of(&manifest_bytes),
        manifest: manifest_bytes,
        config: config_bytes,
        config_digest,
        layers,
    })
}

/// The base's config with the settings applied, `created` set and a
/// diff_id and a history entry per new layer.
fn new_config(
    base: &BaseImage,
    new_layers: &[NewLayer],
    settings: &ImageSettings,
    created: &str,
) -> Result<Value, AssembleError> {
    let mut config = base.config.clone();
    if !config.is_object() {
        return Err(AssembleError::BadBaseConfig);
    }
    config["created"] = json!(created);
    apply_settings(&mut config["config"], settings);
    let object = config.as_object_mut().ok_or(AssembleError::BadBaseConfig)?;
    let rootfs = object
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let diff_ids = rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or(AssembleError::BadBaseConfig)?;
    diff_ids.extend(new_layers.iter().map(|l| json!(l.record.diff_id)));
    let history = object.entry("history").or_insert_with(|| json!([]));
    let history = history.as_array_mut().ok_or(AssembleError::BadBaseConfig)?;
    for layer in new_layers {
        history.push(
            json!({"created": created, "created_by": layer.created_by, "comment": "slipway"}),
        );
    }
    Ok(config)
}

/// The base's layers (their blobs where the base lives), then the new
/// ones (in the cache).
fn layers(base: &BaseImage, new_layers: &[NewLayer]) -> Vec<Layer> {
    let mut layers: Vec<Layer> = base
        .image
        .layers
        .iter()
        .map(|l| Layer {
            descriptor: Descriptor {
                // Same bytes, OCI name: an OCI manifest should not carry Docker layer types.
                media_type: if l.descriptor.media_type == oci::DOCKER_LAYER_GZIP {
                    oci::OCI_LAYER_GZIP.into()
                } else {
                    l.descriptor.media_type.clone()
                },
                digest: l.descriptor.digest.clone(),
                size: l.descriptor.size,
                platform: None,
                annotations: None,
            },
            diff_id: l.diff_id.clone(),
            blob: l.blob.clone(),
        })
        .collect();
    layers.extend(new_layers.iter().map(|l| Layer {
        descriptor: Descriptor {
            media_type: oci::OCI_LAYER_GZIP.into(),
            digest: l.record.digest.clone(),
            size: l.record.size,
            platform: None,
            annotations: None,
        },
        diff_id: l.record.diff_id.clone(),
        blob: BlobSource::Cache,
    }));
    layers
}

/// An OCI index over several platforms' manifests, in the recipe's order.
pub fn index(images: &[Image], annotations: &BTreeMap<String, String>) -> (Vec<u8>, Digest) {
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: images
            .iter()
            .map(|img| Descriptor {
                media_type: oci::OCI_MANIFEST.into(),
                digest: img.manifest_digest.clone(),
                size: img.manifest.len() as u64,
                platform: Some(img.platform.clone()),
                annotations: None,
            })
            .collect(),
        annotations: (!annotations.is_empty()).then(|| annotations.clone()),
    };
    let bytes = oci::to_canonical_bytes(&index);
    let digest = Digest::of(&bytes);
    (bytes, digest)
}

/// Applies the recipe's image settings on top of the base's `config` object.
fn apply_settings(config: &mut Value, settings: &ImageSettings) {
    if !config.is_object() {
        *config = json!({});
    }
    if !settings.env.is_empty() {
        let mut env: Vec<String> = config["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for (key, value) in &settings.env {
            let line = format!("{key}={value}");
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str()))
            {
                Some(existing) => *existing = line,
                None => env.push(line),
            }
        }
        config["Env"] = json!(env);
    }
    if let Some(entrypoint) = &settings.entrypoint {
        config["Entrypoint"] = json!(entrypoint);
        // As in a Dockerfile, a new ENTRYPOINT drops the base's CMD.
        if settings.cmd.is_none() {
            config["Cmd"] = Value::Null;
        }
    }
    if let Some(cmd) = &settings.cmd {
        config["Cmd"] = json!(cmd);
    }
    if let Some(workdir) = &settings.workdir {
        config["WorkingDir"] = json!(workdir);
    }
    if let Some(user) = &settings.user {
        config["User"] = json!(user);
    }
    if !settings.ports.is_empty() {
        let ports = config
            .as_object_mut()
            .expect("made an object above")
            .entry("ExposedPorts")
            .or_insert_with(|| json!({}));
        for port in &settings.ports {
            let port = if port.contains('/') {
                port.clone()
            } else {
                format!("{port}/tcp")
            };
            ports[port] = json!({});
        }
    }
    if !settings.labels.is_empty() {
        let labels = config
            .as_object_mut()
            .expect("made an object above")
            .entry("Labels")
            .or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in &settings.labels {
            labels[k] = json!(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::LayerRecord;
    use crate::reference::Reference;

    fn base() -> BaseImage {
        let source: std::sync::Arc<dyn crate::image::ImageSource> =
            std::sync::Arc::new(crate::image::layout::LayoutSource::new("/nowhere".as_ref()));
        let layer = Descriptor {
            media_type: oci::DOCKER_LAYER_GZIP.into(),
            digest: Digest::of(b"base layer"),
            size: 10,
            platform: None,
            annotations: None,
        };
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "PYTHON_VERSION=3.13.14"], "Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"base tar")]},
            "history": [{"created_by": "base"}]
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.into()),
            config: Descriptor {
                media_type: oci::OCI_CONFIG.into(),
                digest: Digest::of(&config_bytes),
                size: config_bytes.len() as u64,
                platform: None,
                annotations: None,
            },
            layers: vec![layer.clone()],
            annotations: None,
        };
        let manifest_bytes = oci::to_canonical_bytes(&manifest);
        BaseImage {
            name: Reference::parse("python:3.13-alpine").unwrap(),
            source: source.clone(),
            top_digest: Digest::of(b"index"),
            image: Image {
                platform: crate::platform::Platform::host(),
                manifest_digest: Digest::of(&manifest_bytes),
                manifest: manifest_bytes,
                config_digest: manifest.config.digest.clone(),
                config: config_bytes,
                layers: vec![Layer {
                    descriptor: layer,
                    diff_id: Digest::of(b"base tar"),
                    blob: BlobSource::Source(source),
                }],
            },
            manifest,
            config,
        }
    }

    fn layer(name: &str) -> NewLayer {
        NewLayer {
            record: LayerRecord {
                digest: Digest::of(name.as_bytes()),
                diff_id: Digest::of(b"tar"),
                size: 3,
                uncompressed_size: 9,
            },
            created_by: format!("slipway: {name}"),
        }
    }

    #[test]
    fn applies_settings_and_appends_layers() {
        let settings = ImageSettings {
            entrypoint: Some(vec!["uvicorn".into()]),
            env: [
                ("APP_ENV".to_string(), "production".to_string()),
                ("PATH".to_string(), "/x".to_string()),
            ]
            .into(),
            ports: vec!["8000".into()],
            workdir: Some("/app".into()),
            ..Default::default()
        };
        let img = assemble(
            &base(),
            &[layer("site-packages"), layer("app")],
            &settings,
            0,
            &BTreeMap::new(),
        )
        .unwrap();
        let config: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(
            config["config"]["Env"],
            json!(["PATH=/x", "PYTHON_VERSION=3.13.14", "APP_ENV=production"])
        );
        assert_eq!(config["config"]["Cmd"], Value::Null);
        assert_eq!(config["config"]["ExposedPorts"], json!({"8000/tcp": {}}));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        assert_eq!(config["history"].as_array().unwrap().len(), 3);
        let manifest: Manifest = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(manifest.layers.len(), 3);
        assert_eq!(manifest.layers[0].media_type, oci::OCI_LAYER_GZIP);
        assert_eq!(img.new_from(), 1);
        assert!(matches!(img.layers[0].blob, BlobSource::Source(_)));
        assert!(matches!(img.layers[1].blob, BlobSource::Cache));
        assert_eq!(img.layers[1].diff_id, Digest::of(b"tar"));
        assert_eq!(manifest.config.digest, img.config_digest);
        assert_eq!(
            manifest.annotations.unwrap()["org.opencontainers.image.base.name"],
            "docker.io/library/python:3.13-alpine"
        );
    }

    #[test]
    fn same_inputs_same_bytes_and_layer_limit() {
        let a = assemble(
            &base(),
            &[layer("x")],
            &ImageSettings::default(),
            7,
            &BTreeMap::new(),
        )
        .unwrap();
        let b = assemble(
            &base(),
            &[layer("x")],
            &ImageSettings::default(),
            7,
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(a.manifest, b.manifest);
        let many: Vec<NewLayer> = (0..127).map(|i| layer(&i.to_string())).collect();
        assert!(matches!(
            assemble(
                &base(),
                &many,
                &ImageSettings::default(),
                0,
                &BTreeMap::new()
            ),
            Err(AssembleError::TooManyLayers {
                base_layers: 1,
                new_layers: 127,
                ..
            })
        ));
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
