//! SPDX 2.3 JSON: one package for the image, its base, the app and each
//! distribution; the image CONTAINS the rest.

use super::{tool_name, Dist, SbomInput};
use crate::assemble::rfc3339;
use serde_json::{json, Value};

pub fn render(input: &SbomInput) -> Vec<u8> {
    let created = rfc3339(input.epoch);
    let image_id = "SPDXRef-Image";
    let base_id = "SPDXRef-Base";
    let mut packages = vec![
        container_package(image_id, &format!("image {}", input.platform), &input.image),
        container_package(base_id, &input.base.name, &input.base.digest),
    ];
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}),
        json!({"spdxElementId": image_id, "relationshipType": "DESCENDANT_OF", "relatedSpdxElement": base_id}),
    ];
    if input.app_source.is_some() || input.app_revision.is_some() {
        let app = app_package(input);
        packages.push(app);
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-App"}));
    }
    for dist in &input.dists {
        let id = format!(
            "SPDXRef-pypi-{}",
            spdx_id_safe(&format!("{}-{}", dist.normalised_name(), dist.version))
        );
        let package = dist_package(dist, &id, &created);
        packages.push(package);
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("slipway image {}", input.image),
        // Unique per image and stable per build: the manifest digest names it.
        "documentNamespace": format!("https://spdx.org/spdxdocs/slipway/{}", input.image.hex()),
        "creationInfo": {"created": created, "creators": [format!("Tool: {}", tool_name())]},
        "packages": packages,
        "relationships": relationships,
    });
    to_bytes(&document)
}

/// The image or its base: a container known by its digest.
fn container_package(id: &str, name: &str, digest: &crate::digest::Digest) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": digest.as_str(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
        "copyrightText": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
    })
}

/// The app's own code, located by its git remote and revision when known.
fn app_package(input: &SbomInput) -> Value {
    let mut app = json!({
        "SPDXID": "SPDXRef-App",
        "name": "app",
        "downloadLocation": match (&input.app_source, &input.app_revision) {
            (Some(source), Some(revision)) if source.contains("://") => format!("git+{source}@{revision}"),
            _ => "NOASSERTION".into(),
        },
        "filesAnalyzed": false,
        "primaryPackagePurpose": "APPLICATION",
        "copyrightText": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
    });
    if let Some(revision) = &input.app_revision {
        app["versionInfo"] = json!(revision);
    }
    if let Some(source) = &input.app_source {
        app["sourceInfo"] = json!(format!("from {source}"));
    }
    app
}

/// One installed distribution, with its purl and the wheel's hash.
fn dist_package(dist: &Dist, id: &str, created: &str) -> Value {
    let mut package = json!({
        "SPDXID": id,
        "name": dist.name,
        "versionInfo": dist.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "copyrightText": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": dist.spdx_license().unwrap_or_else(|| "NOASSERTION".into()),
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": dist.purl()}],
        "annotations": [{
            "annotationDate": created,
            "annotationType": "OTHER",
            "annotator": format!("Tool: {}", tool_name()),
            "comment": format!("dist-info: /{}; RECORD {}", dist.dist_info, dist.record),
        }],
    });
    if let Some(sha) = &dist.wheel_sha256 {
        package["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sha}]);
    }
    if let (Some(text), None) = (&dist.license, dist.spdx_license()) {
        package["licenseComments"] = json!(format!("METADATA says: {text}"));
    }
    package
}

/// SPDX ids allow letters, digits, `.` and `-`.
fn spdx_id_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(super) fn to_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::sbom::{tests::dist, BaseRef};

    #[test]
    fn same_input_same_bytes_whatever_the_order() {
        let mut input = SbomInput {
            image: Digest::of(b"m"),
            platform: "linux/amd64".into(),
            base: BaseRef {
                name: "docker.io/library/python:3.13-slim".into(),
                digest: Digest::of(b"b"),
            },
            dists: vec![dist("b", "1", None), dist("a", "2", Some("MIT"))],
            app_source: Some("https://example.invalid/app.git".into()),
            app_revision: Some("abc".into()),
            epoch: 0,
        };
        let one = crate::sbom::render(&input, crate::sbom::Format::Spdx);
        input.dists.reverse();
        assert_eq!(one, crate::sbom::render(&input, crate::sbom::Format::Spdx));
        let doc: Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(doc["packages"].as_array().unwrap().len(), 5);
        assert_eq!(
            doc["packages"][3]["externalRefs"][0]["referenceLocator"],
            "pkg:pypi/a@2"
        );
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    }
}
