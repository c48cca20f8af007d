//! The distributions in a site-packages layer: every `*.dist-info` dir's
//! METADATA headers and RECORD digest, read as the layer streams by. And the
//! wheel hashes a lock or bundle pins, from requirement files.

use super::{normalise, Dist};
use crate::cache::{Cache, LayerRecord};
use crate::digest::Digest;
use crate::layers::sitepackages::{dist_info_key, DistInfo, DistInfoFiles};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

/// The distributions in slipway's cached layers, read once per layer and
/// remembered beside the cache's facts (keyed by the layer's digest): from
/// the dist-info files the build that wrote the layer kept, or else from
/// the layer itself.
pub fn in_cached_layers(cache: &Cache, layers: &[&LayerRecord]) -> io::Result<Vec<Dist>> {
    let mut out = Vec::new();
    for layer in layers {
        let dists = match cache.facts::<Vec<Dist>>(&layer.digest) {
            Some(dists) => dists,
            None => {
                let dists = match cache.facts::<Vec<DistInfo>>(&dist_info_key(&layer.digest)) {
                    Some(infos) => from_dist_infos(infos),
                    None => in_layer(std::fs::File::open(cache.blob_path(&layer.digest))?)?,
                };
                cache.put_facts(&layer.digest, &dists)?;
                dists
            }
        };
        out.extend(dists);
    }
    out.sort();
    Ok(out)
}

/// The distributions in one layer (a tar, gzip'd or not), sorted.
pub fn in_layer(reader: impl Read) -> io::Result<Vec<Dist>> {
    let mut reader = io::BufReader::new(reader);
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let plain: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut files = DistInfoFiles::default();
    let mut archive = tar::Archive::new(plain);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        files.add(&path, || Ok(&mut entry))?;
    }
    Ok(from_dist_infos(files.finish()))
}

/// The distributions of a layer's dist-info files, sorted (as [`in_layer`]).
pub fn from_dist_infos(infos: Vec<DistInfo>) -> Vec<Dist> {
    let mut dists: Vec<Dist> = infos
        .into_iter()
        .map(|info| from_metadata(&info.dir, &info.metadata, info.record))
        .collect();
    dists.sort();
    dists
}

/// One dist from its METADATA text (RFC 822 style headers up to the first blank line).
fn from_metadata(dist_info: &str, text: &str, record: Digest) -> Dist {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue; // continuation of a long field (a License text): its first line is enough
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let first = |key: &str| {
        headers
            .iter()
            .find(|(k, v)| k == key && !v.is_empty() && v != "UNKNOWN")
            .map(|(_, v)| v.clone())
    };
    let dir_name = dist_info.rsplit('/').next().unwrap_or(dist_info);
    let (dir_dist, dir_version) = dir_name
        .trim_end_matches(".dist-info")
        .split_once('-')
        .unwrap_or((dir_name, ""));
    let mut classifiers: Vec<String> = headers
        .iter()
        .filter(|(k, v)| k == "classifier" && v.starts_with("License ::"))
        .map(|(_, v)| v.clone())
        .collect();
    classifiers.sort();
    Dist {
        name: first("name").unwrap_or_else(|| dir_dist.to_string()),
        version: first("version").unwrap_or_else(|| dir_version.to_string()),
        dist_info: dist_info.to_string(),
        license: first("license-expression").or_else(|| first("license")),
        classifiers,
        record,
        wheel_sha256: None,
    }
}

/// (normalised name, version) → wheel sha256s.
pub type Pins = BTreeMap<(String, String), Vec<String>>;

/// Normalised name → the sha256s that requirement files (`uv export` of a
/// lock, a bundle's pinned list) give for `NAME==VERSION --hash=sha256:…`,
/// from the files' texts.
pub fn pins_in(texts: &[String]) -> Pins {
    let mut out = Pins::new();
    for text in texts {
        for line in text.replace("\\\n", " ").lines() {
            let line = line.split(" #").next().unwrap_or(line);
            let mut words = line.split_whitespace();
            let Some(requirement) = words.next() else {
                continue;
            };
            let requirement = requirement.split(';').next().unwrap_or(requirement);
            let Some((name, version)) = requirement.split_once("==") else {
                continue;
            };
            let name = normalise(name.split('[').next().unwrap_or(name));
            let hashes = words
                .filter_map(|w| w.strip_prefix("--hash=sha256:"))
                .map(str::to_string);
            out.entry((name, version.to_string()))
                .or_default()
                .extend(hashes);
        }
    }
    out
}

/// Fills in `wheel_sha256` where the pins name exactly one wheel.
pub fn attach_wheel_hashes(dists: &mut [Dist], pins: &Pins) {
    for dist in dists {
        if let Some([only]) = pins
            .get(&(dist.normalised_name(), dist.version.clone()))
            .map(Vec::as_slice)
        {
            dist.wheel_sha256 = Some(only.clone());
        }
    }
}

/// purl → wheel sha256, as an earlier SBOM (SPDX or CycloneDX) of ours states them.
pub fn wheel_hashes_in(document: &[u8]) -> BTreeMap<String, String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(document) else {
        return BTreeMap::new();
    };
    let spdx = doc["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let purl = p["externalRefs"][0]["referenceLocator"].as_str()?;
            let sha = p["checksums"][0]["checksumValue"].as_str()?;
            Some((purl.to_string(), sha.to_string()))
        });
    let cyclonedx = doc["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let purl = c["purl"].as_str()?;
            let sha = c["hashes"][0]["content"].as_str()?;
            Some((purl.to_string(), sha.to_string()))
        });
    spdx.chain(cyclonedx)
        .filter(|(purl, sha)| {
            purl.starts_with("pkg:pypi/")
                && sha.len() == 64
                && sha.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn reads_dist_info_dirs() {
        let site = "usr/local/lib/python3.13/site-packages";
        let layer = tar_of(&[
            (&format!("{site}/idna-3.10.dist-info/METADATA"), "Metadata-Version: 2.1\nName: idna\nVersion: 3.10\nClassifier: License :: OSI Approved :: BSD License\nLicense-Expression: BSD-3-Clause\n\nLicense: not a header\n"),
            (&format!("{site}/idna-3.10.dist-info/RECORD"), "idna/__init__.py,,\n"),
            (&format!("{site}/idna/__init__.py"), ""),
            (&format!("{site}/norecord-1.dist-info/METADATA"), "Name: norecord\n"),
        ]);
        let dists = in_layer(&layer[..]).unwrap();
        assert_eq!(dists.len(), 1, "{dists:?}");
        assert_eq!(dists[0].name, "idna");
        assert_eq!(dists[0].version, "3.10");
        assert_eq!(dists[0].license.as_deref(), Some("BSD-3-Clause"));
        assert_eq!(dists[0].record, Digest::of(b"idna/__init__.py,,\n"));
        assert_eq!(dists[0].dist_info, format!("{site}/idna-3.10.dist-info"));
    }

    #[test]
    fn dist_info_files_kept_at_write_time_give_what_the_layer_gives() {
        use crate::layers::{normalise, Entry, EntryKind, Owner};
        let dir = tempfile::tempdir().unwrap();
        let site = "usr/local/lib/python3.13/site-packages";
        let files = [
            (format!("{site}/idna-3.10.dist-info/METADATA"), "Metadata-Version: 2.1\r\nName: idna\r\nVersion: 3.10\r\nClassifier: License :: OSI Approved :: BSD License\r\n  continued\r\n\r\nLicense: not a header\n".to_string()),
            (format!("{site}/idna-3.10.dist-info/RECORD"), "idna/__init__.py,,\n".to_string()),
            (format!("{site}/idna/__init__.py"), String::new()),
            (format!("{site}/norecord-1.dist-info/METADATA"), "Name: norecord\n".to_string()),
            (format!("{site}/pkg/inner.dist-info/METADATA"), "Name: nested\n".to_string()),
            (format!("{site}/pkg/inner.dist-info/RECORD"), String::new()),
            (format!("{site}/big-1.dist-info/METADATA"), format!("Name: big\nSummary: {}\n", "x".repeat(2 << 20))),
            (format!("{site}/big-1.dist-info/RECORD"), "big.py,,\n".to_string()),
        ];
        let entries: Vec<Entry> = files
            .iter()
            .enumerate()
            .map(|(i, (path, text))| {
                let source = dir.path().join(i.to_string());
                std::fs::write(&source, text).unwrap();
                Entry {
                    path: path.clone(),
                    kind: EntryKind::File {
                        source,
                        size: text.len() as u64,
                        listed: None,
                    },
                    mode: 0o644,
                    owner: Owner::default(),
                }
            })
            .collect();
        let entries = normalise(entries, Owner::default());
        let layer = dir.path().join("layer.tgz");
        crate::layers::tarball::write_layer(&entries, 0, &layer).unwrap();
        let from_layer = in_layer(std::fs::File::open(&layer).unwrap()).unwrap();
        let kept = crate::layers::sitepackages::dist_infos(&entries).unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(from_dist_infos(kept), from_layer);
        assert_eq!(from_layer.len(), 3);
    }

    #[test]
    fn single_pins_become_wheel_hashes() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let pins = pins_in(&[format!(
            "Idna==3.10 \\\n    --hash=sha256:{a}\nmany==1.0 --hash=sha256:{a} --hash=sha256:{b}\n"
        )]);
        let mut dists = vec![
            crate::sbom::tests::dist("idna", "3.10", None),
            crate::sbom::tests::dist("many", "1.0", None),
        ];
        attach_wheel_hashes(&mut dists, &pins);
        assert_eq!(dists[0].wheel_sha256.as_deref(), Some(a.as_str()));
        assert_eq!(dists[1].wheel_sha256, None);
    }

    #[test]
    fn wheel_hashes_come_back_from_either_format() {
        let mut d = crate::sbom::tests::dist("idna", "3.10", None);
        d.wheel_sha256 = Some("c".repeat(64));
        let input = crate::sbom::SbomInput {
            image: Digest::of(b"m"),
            platform: "linux/amd64".into(),
            base: crate::sbom::BaseRef {
                name: "b".into(),
                digest: Digest::of(b"b"),
            },
            dists: vec![d.clone(), crate::sbom::tests::dist("x", "1", None)],
            app_source: None,
            app_revision: None,
            epoch: 0,
        };
        for format in [crate::sbom::Format::Spdx, crate::sbom::Format::CycloneDx] {
            let hashes = wheel_hashes_in(&crate::sbom::render(&input, format));
            assert_eq!(hashes.len(), 1, "{format:?}");
            assert_eq!(hashes[&d.purl()], "c".repeat(64));
        }
        assert!(wheel_hashes_in(b"not json").is_empty());
    }
}
