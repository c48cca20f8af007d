//! After "layers": the image's software bill of materials. Plain data in
//! ([`SbomInput`]: the base, the distributions slipway installed, the app),
//! document bytes out (SPDX 2.3 or CycloneDX 1.6 JSON), with no clock and no
//! randomness, so the same build gives the same SBOM digest. `dists` reads the
//! distributions from a site-packages layer; `referrer` wraps an SBOM as an
//! OCI 1.1 referrer of the image manifest it describes.

pub mod cyclonedx;
pub mod dists;
pub mod referrer;
pub mod spdx;

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// Which document to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Spdx,
    CycloneDx,
}

impl Format {
    /// `spdx`, `cyclonedx` or `none` (→ `None`).
    pub fn parse(text: &str) -> Result<Option<Format>, String> {
        match text {
            "spdx" | "spdx-json" => Ok(Some(Format::Spdx)),
            "cyclonedx" | "cyclonedx-json" => Ok(Some(Format::CycloneDx)),
            "none" => Ok(None),
            other => Err(format!(
                "unknown SBOM format `{other}`: use `spdx`, `cyclonedx` or `none`"
            )),
        }
    }

    /// The referrer's `artifactType` and the SBOM blob's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Spdx => SPDX_MEDIA_TYPE,
            Format::CycloneDx => CYCLONEDX_MEDIA_TYPE,
        }
    }
}

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// One installed distribution, as its `*.dist-info` dir describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dist {
    /// As METADATA spells it (`Pydantic-Core`, `pydantic_core`).
    pub name: String,
    pub version: String,
    /// The `*.dist-info` dir in the image (no leading slash).
    pub dist_info: String,
    /// `License-Expression`, else `License`, else the license classifiers.
    pub license: Option<String>,
    pub classifiers: Vec<String>,
    /// Digest of the RECORD file: pins every installed file.
    pub record: Digest,
    /// The installed wheel's sha256 when the lock or bundle names exactly one.
    pub wheel_sha256: Option<String>,
}

impl Dist {
    /// PEP 503 normalised: lower case, runs of `-_.` → `-`.
    pub fn normalised_name(&self) -> String {
        normalise(&self.name)
    }

    /// `pkg:pypi/NAME@VERSION` (purl spec: normalised name, `+` escaped).
    pub fn purl(&self) -> String {
        format!(
            "pkg:pypi/{}@{}",
            self.normalised_name(),
            self.version.replace('+', "%2B")
        )
    }

    /// A valid SPDX license expression for it, if METADATA gives one.
    pub fn spdx_license(&self) -> Option<String> {
        let parses = |text: &str| {
            let text = text.trim();
            (!text.is_empty()
                && !text.contains('\n')
                && !text.contains("LicenseRef")
                && ::spdx::Expression::parse(text).is_ok())
            .then(|| text.to_string())
        };
        if let Some(found) = self.license.as_deref().and_then(parses) {
            return Some(found);
        }
        let ids: Vec<&str> = self
            .classifiers
            .iter()
            .filter_map(|c| classifier_license(c))
            .collect();
        match ids.as_slice() {
            [] => None,
            ids => Some(ids.join(" OR ")),
        }
    }
}

/// The license a trove classifier names unambiguously (others are skipped).
fn classifier_license(classifier: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        ("MIT License", "MIT"),
        ("Apache Software License", "Apache-2.0"),
        ("ISC License (ISCL)", "ISC"),
        ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
        ("Python Software Foundation License", "PSF-2.0"),
        ("The Unlicense (Unlicense)", "Unlicense"),
    ];
    let last = classifier.rsplit("::").next()?.trim();
    classifier
        .starts_with("License ::")
        .then(|| {
            KNOWN
                .iter()
                .find(|(name, _)| *name == last)
                .map(|(_, id)| *id)
        })
        .flatten()
}

pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The base image the SBOM's image was built on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRef {
    /// `docker.io/library/python:3.13-slim`
    pub name: String,
    pub digest: Digest,
}

/// Everything one platform's SBOM says, sorted and free of clocks.
#[derive(Clone, Debug)]
pub struct SbomInput {
    /// The image manifest it describes.
    pub image: Digest,
    pub platform: String,
    pub base: BaseRef,
    pub dists: Vec<Dist>,
    /// `org.opencontainers.image.source` / `.revision`, when known.
    pub app_source: Option<String>,
    pub app_revision: Option<String>,
    /// SOURCE_DATE_EPOCH: the only time written.
    pub epoch: u64,
}

pub fn render(input: &SbomInput, format: Format) -> Vec<u8> {
    let mut input = input.clone();
    input.dists.sort();
    input.dists.dedup();
    match format {
        Format::Spdx => spdx::render(&input),
        Format::CycloneDx => cyclonedx::render(&input),
    }
}

/// The SBOM of one platform's `image` built on `base`, as a referrer of its
/// manifest; source and revision come from the image's `annotations`.
pub fn referrer_for(
    image: &crate::image::Image,
    base: &crate::resolve::BaseImage,
    dists: Vec<Dist>,
    annotations: &std::collections::BTreeMap<String, String>,
    epoch: u64,
    format: Format,
) -> referrer::Referrer {
    let input = SbomInput {
        image: image.manifest_digest.clone(),
        platform: image.platform.to_string(),
        base: BaseRef {
            name: base.name.to_string(),
            digest: base.top_digest.clone(),
        },
        dists,
        app_source: annotations.get(crate::provenance::SOURCE).cloned(),
        app_revision: annotations.get(crate::provenance::REVISION).cloned(),
        epoch,
    };
    referrer::Referrer::new(
        render(&input, format),
        format,
        &image.manifest_digest,
        image.manifest.len() as u64,
        epoch,
    )
}

pub(crate) fn tool_name() -> String {
    format!("slipway-{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn dist(name: &str, version: &str, license: Option<&str>) -> Dist {
        Dist {
            name: name.into(),
            version: version.into(),
            dist_info: format!("usr/local/lib/python3.13/site-packages/{name}-{version}.dist-info"),
            license: license.map(str::to_string),
            classifiers: vec!["License :: OSI Approved :: MIT License".into()],
            record: Digest::of(name.as_bytes()),
            wheel_sha256: None,
        }
    }

    #[test]
    fn purls_and_licenses() {
        let d = dist("Pydantic_Core", "2.5.0+local", Some("BSD-3-Clause"));
        assert_eq!(d.purl(), "pkg:pypi/pydantic-core@2.5.0%2Blocal");
        assert_eq!(d.spdx_license().as_deref(), Some("BSD-3-Clause"));
        // Free text falls back to the classifiers.
        let d = dist("x", "1", Some("Copyright (c) someone, all rights reserved"));
        assert_eq!(d.spdx_license().as_deref(), Some("MIT"));
        let mut d = dist("x", "1", Some("BSD"));
        d.classifiers.clear();
        assert_eq!(d.spdx_license(), None);
    }

    #[test]
    fn formats() {
        assert_eq!(Format::parse("spdx"), Ok(Some(Format::Spdx)));
        assert_eq!(Format::parse("none"), Ok(None));
        assert!(Format::parse("xml").unwrap_err().contains("`xml`"));
    }
}
