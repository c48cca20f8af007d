//! CycloneDX 1.6 JSON: the image as the metadata component; base, app and
//! distributions as components it depends on.

use super::{tool_name, SbomInput};
use crate::assemble::rfc3339;
use crate::digest::Digest;
use serde_json::json;

pub fn render(input: &SbomInput) -> Vec<u8> {
    let mut components = vec![json!({
        "type": "container",
        "bom-ref": "base",
        "name": input.base.name,
        "version": input.base.digest.as_str(),
        "hashes": [{"alg": "SHA-256", "content": input.base.digest.hex()}],
    })];
    if input.app_source.is_some() || input.app_revision.is_some() {
        let mut app = json!({"type": "application", "bom-ref": "app", "name": "app"});
        if let Some(revision) = &input.app_revision {
            app["version"] = json!(revision);
        }
        if let Some(source) = &input.app_source {
            app["externalReferences"] = json!([{"type": "vcs", "url": source}]);
        }
        components.push(app);
    }
    for dist in &input.dists {
        let mut component = json!({
            "type": "library",
            "bom-ref": dist.purl(),
            "name": dist.name,
            "version": dist.version,
            "purl": dist.purl(),
            "properties": [
                {"name": "slipway:dist-info", "value": format!("/{}", dist.dist_info)},
                {"name": "slipway:record-sha256", "value": dist.record.hex()},
            ],
        });
        match (dist.spdx_license(), &dist.license) {
            (Some(expression), _) => {
                component["licenses"] = json!([{"expression": expression}]);
            }
            (None, Some(text)) => {
                component["licenses"] = json!([{"license": {"name": text}}]);
            }
            (None, None) => {}
        }
        if let Some(sha) = &dist.wheel_sha256 {
            component["hashes"] = json!([{"alg": "SHA-256", "content": sha}]);
        }
        components.push(component);
    }
    let refs: Vec<&str> = components
        .iter()
        .filter_map(|c| c["bom-ref"].as_str())
        .collect();
    let dependencies = json!([{"ref": "image", "dependsOn": refs}]);
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(&input.image),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(input.epoch),
            "tools": {"components": [{"type": "application", "name": "slipway", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": format!("image {}", input.platform),
                "version": input.image.as_str(),
                "hashes": [{"alg": "SHA-256", "content": input.image.hex()}],
            },
            "properties": [{"name": "slipway:tool", "value": tool_name()}],
        },
        "components": components,
        "dependencies": dependencies,
    });
    super::spdx::to_bytes(&bom)
}

/// A name-based (version 5 layout) UUID from the image digest: stable per build.
fn serial_number(image: &Digest) -> String {
    let hex = Digest::of(image.as_str().as_bytes()).hex().to_string();
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    format!(
        "urn:uuid:{}-{}-5{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_uuids() {
        let serial = serial_number(&Digest::of(b"x"));
        let uuid = serial.strip_prefix("urn:uuid:").unwrap();
        let parts: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('5'));
        assert!("89ab".contains(&parts[3][..1]));
        assert_eq!(serial, serial_number(&Digest::of(b"x")));
    }
}
