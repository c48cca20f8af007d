//! Part of stage 2, "resolve base": what the base's Python is (minor version,
//! libc, architecture, interpreter and site-packages paths). Read from the
//! config's `PYTHON_VERSION` like the official images, else from the layers'
//! file list; facts the recipe states are checked against what is found.

use crate::platform::{Libc, Platform};
use crate::recipe::{parse_minor, StatedFacts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonFacts {
    /// `3.13`
    pub version: String,
    /// `3.13.14` when the base says so.
    pub full_version: Option<String>,
    pub libc: Libc,
    pub platform: Platform,
    /// `/usr/local`
    pub prefix: String,
    /// `/usr/local/bin/python3.13`
    pub interpreter: String,
    /// `/usr/local/lib/python3.13/site-packages`
    pub site_packages: String,
    /// `/usr/local/bin`
    pub bin_dir: String,
}

/// What a scan of the base's layers found (later layers override earlier ones).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerScan {
    /// Every path (no leading slash) → symlink target, or None for other kinds.
    pub paths: BTreeMap<String, Option<String>>,
    /// glibc version read from `libc.so.6` or dpkg's status, if seen.
    pub glibc: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("base image `{base}` has no Python: no `PYTHON_VERSION` in its config and no `python3.X` in /usr/local/bin or /usr/bin")]
    NoPython { base: String },
    #[error("base image `{base}` has no Python: {why}, but `{path}` is not in its layers")]
    MissingInterpreter {
        base: String,
        path: String,
        why: String,
    },
    #[error("base image `{base}`: cannot tell its C library (no /lib/ld-musl-*.so.1 and no glibc loader)")]
    UnknownLibc { base: String },
    #[error("the recipe says {what} is `{stated}` ({at}), but base image `{base}` has `{found}`")]
    Contradiction {
        base: String,
        what: &'static str,
        stated: String,
        found: String,
        /// Where the recipe states it: "`python.version` in `recipe.toml`, line 7".
        at: String,
    },
}

impl crate::error::Hint for FactsError {
    fn hint(&self) -> Option<String> {
        match self {
            FactsError::NoPython { .. } => Some("use a Python base image such as `python:3.13-alpine`, or state `[python] version` and `interpreter` in the recipe".into()),
            FactsError::MissingInterpreter { .. } => Some("use a base image that has Python (e.g. `python:3.13-alpine`), or state `[python] interpreter` if it lives elsewhere".into()),
            FactsError::UnknownLibc { .. } => Some("state it in the recipe: `[python] libc = \"musl\"` or `\"glibc-2.36\"`".into()),
            FactsError::Contradiction { .. } => Some("fix or remove the `[python]` fact in the recipe, or pick a base image that matches it".into()),
        }
    }
}

/// The Python version from an official-image style config (`PYTHON_VERSION=3.13.14`).
pub fn config_python_version(config: &serde_json::Value) -> Option<String> {
    config["config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .find_map(|env| env.strip_prefix("PYTHON_VERSION=").map(str::to_string))
}

/// Whether facts can be decided without looking inside the layers.
/// Official-style bases (`PYTHON_VERSION` in Env, an Alpine or a Debian
/// release named in the history) need no scan, so their layers are never
/// downloaded when the destination registry already has them.
pub fn needs_scan(config: &serde_json::Value, stated: &StatedFacts) -> bool {
    let libc_known = stated.libc.is_some() || history_libc_exact(config).is_some();
    !libc_known || (config_python_version(config).is_none() && stated.version.is_none())
}

/// The libc the history names exactly: musl for Alpine; glibc with its
/// version for a Debian release named by its codename.
pub fn history_libc_exact(config: &serde_json::Value) -> Option<Libc> {
    const DEBIAN_GLIBC: &[(&str, u32)] = &[
        ("buster", 28),
        ("bullseye", 31),
        ("bookworm", 36),
        ("trixie", 41),
    ];
    match history_libc(config)? {
        Libc::Musl => Some(Libc::Musl),
        Libc::Glibc { .. } => {
            let text = history_text(config);
            let mut named = DEBIAN_GLIBC
                .iter()
                .filter(|(codename, _)| text.contains(codename));
            match (named.next(), named.next()) {
                (Some((_, minor)), None) => Some(Libc::Glibc {
                    major: 2,
                    minor: *minor,
                }),
                _ => None,
            }
        }
    }
}

fn history_text(config: &serde_json::Value) -> String {
    config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|h| h["created_by"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn detect(
    base: &str,
    platform: &Platform,
    config: &serde_json::Value,
    scan: Option<&LayerScan>,
    stated: &StatedFacts,
) -> Result<PythonFacts, FactsError> {
    let detect = Detect {
        base,
        config,
        scan,
        stated,
    };
    let full_version = config_python_version(config);
    let version = detect.version(full_version.as_deref())?;
    let libc = detect.libc()?;
    // Official images put Python in /usr/local; distro Pythons live in /usr.
    let in_usr_local = |p: &str| scan.is_none_or(|s| s.paths.contains_key(p));
    let prefix =
        if full_version.is_some() || in_usr_local(&format!("usr/local/bin/python{version}")) {
            "/usr/local"
        } else {
            "/usr"
        };
    let interpreter = detect.interpreter(prefix, &version, full_version.as_deref())?;
    let site_packages = stated
        .site_packages
        .clone()
        .unwrap_or_else(|| format!("{prefix}/lib/python{version}/site-packages"));
    Ok(PythonFacts {
        version,
        full_version,
        libc,
        platform: platform.clone(),
        bin_dir: format!("{prefix}/bin"),
        prefix: prefix.to_string(),
        interpreter,
        site_packages,
    })
}

/// What [`detect`] weighs: what the base says (config, files) against what
/// the recipe states.
struct Detect<'a> {
    base: &'a str,
    config: &'a serde_json::Value,
    scan: Option<&'a LayerScan>,
    stated: &'a StatedFacts,
}

impl Detect<'_> {
    fn contradiction(
        &self,
        what: &'static str,
        key: &str,
        stated: &str,
        found: &str,
    ) -> FactsError {
        let place = self
            .stated
            .origin
            .get(key)
            .map_or("the recipe".into(), String::clone);
        FactsError::Contradiction {
            base: self.base.to_string(),
            what,
            stated: stated.to_string(),
            found: found.to_string(),
            at: format!("`python.{key}` in {place}"),
        }
    }

    /// `3.13`: from the config's PYTHON_VERSION, else the files, else stated.
    fn version(&self, full_version: Option<&str>) -> Result<String, FactsError> {
        let found_minor = full_version
            .and_then(parse_minor)
            .or_else(|| self.scan.and_then(scan_python_minor))
            .map(|(a, b)| format!("{a}.{b}"));
        match (&self.stated.version, &found_minor) {
            (Some(s), Some(f)) if parse_minor(s) != parse_minor(f) => {
                Err(self.contradiction("the Python version", "version", s, f))
            }
            (_, Some(f)) => Ok(f.clone()),
            (Some(s), None) => Ok(parse_minor(s)
                .map(|(a, b)| format!("{a}.{b}"))
                .unwrap_or_else(|| s.clone())),
            (None, None) => Err(FactsError::NoPython {
                base: self.base.to_string(),
            }),
        }
    }

    fn libc(&self) -> Result<Libc, FactsError> {
        let found_libc = self
            .scan
            .and_then(scan_libc)
            .or_else(|| history_libc_exact(self.config));
        // Without a scan, the config's history still tells Alpine from Debian.
        if let (Some(s), None, Some(family)) =
            (&self.stated.libc, &found_libc, history_libc(self.config))
        {
            if std::mem::discriminant(s) != std::mem::discriminant(&family) {
                let found = match family {
                    Libc::Musl => "musl",
                    Libc::Glibc { .. } => "glibc",
                };
                return Err(self.contradiction("the C library", "libc", &s.to_string(), found));
            }
        }
        match (&self.stated.libc, &found_libc) {
            (Some(s), Some(f)) if !same_libc(s, f) => {
                Err(self.contradiction("the C library", "libc", &s.to_string(), &f.to_string()))
            }
            (Some(s), _) => Ok(s.clone()),
            (None, Some(f)) => Ok(f.clone()),
            (None, None) => Err(FactsError::UnknownLibc {
                base: self.base.to_string(),
            }),
        }
    }

    fn interpreter(
        &self,
        prefix: &str,
        version: &str,
        full_version: Option<&str>,
    ) -> Result<String, FactsError> {
        let found_interpreter = format!("{prefix}/bin/python{version}");
        let in_files = |path: &str| {
            self.scan
                .is_none_or(|scan| scan.paths.contains_key(path.trim_start_matches('/')))
        };
        match &self.stated.interpreter {
            Some(s) if !in_files(s) => {
                Err(self.contradiction("the interpreter", "interpreter", s, &found_interpreter))
            }
            Some(s) => Ok(s.clone()),
            // Learned from the base's files: the interpreter must be among them.
            None if !in_files(&found_interpreter) => {
                let why = match full_version {
                    Some(v) => format!("its config says `PYTHON_VERSION={v}`"),
                    None => format!("its layers name Python {version}"),
                };
                Err(FactsError::MissingInterpreter {
                    base: self.base.to_string(),
                    path: found_interpreter,
                    why,
                })
            }
            None => Ok(found_interpreter),
        }
    }
}

/// The libc family the config's history names (`apk add`, an alpine rootfs:
/// musl; `apt-get`, a debian rootfs: glibc), when it names exactly one.
fn history_libc(config: &serde_json::Value) -> Option<Libc> {
    config["history"].as_array()?;
    let text = history_text(config);
    let musl = text.contains("apk add") || text.contains("alpine-minirootfs");
    let glibc = text.contains("apt-get")
        || text.contains("debian")
        || text.contains("debstrap")
        || text.contains("dnf install");
    match (musl, glibc) {
        (true, false) => Some(Libc::Musl),
        (false, true) => Some(Libc::Glibc {
            major: 2,
            minor: 28,
        }),
        _ => None,
    }
}

/// A stated `glibc` with the default minor matches any glibc found.
fn same_libc(stated: &Libc, found: &Libc) -> bool {
    match (stated, found) {
        (Libc::Musl, Libc::Musl) => true,
        (Libc::Glibc { .. }, Libc::Glibc { .. }) => {
            stated == found
                || *stated
                    == (Libc::Glibc {
                        major: 2,
                        minor: 28,
                    })
        }
        _ => false,
    }
}

fn scan_python_minor(scan: &LayerScan) -> Option<(u32, u32)> {
    ["usr/local/bin/python3.", "usr/bin/python3."]
        .iter()
        .find_map(|prefix| {
            scan.paths
                .keys()
                .filter_map(|p| p.strip_prefix(prefix))
                .filter_map(|minor| minor.parse::<u32>().ok())
                .max()
                .map(|minor| (3, minor))
        })
}

fn scan_libc(scan: &LayerScan) -> Option<Libc> {
    let has = |pred: &dyn Fn(&str) -> bool| scan.paths.keys().any(|p| pred(p));
    if has(&|p| p.starts_with("lib/ld-musl-")) {
        return Some(Libc::Musl);
    }
    let glibc_loader = has(&|p| {
        let name = p.rsplit('/').next().unwrap_or(p);
        name.starts_with("ld-linux") || name == "libc.so.6"
    });
    if glibc_loader || scan.glibc.is_some() {
        let (major, minor) = scan.glibc.unwrap_or((2, 28));
        return Some(Libc::Glibc { major, minor });
    }
    None
}

/// Finds `release version 2.36` (libc.so.6's banner) or dpkg's `Package: libc6` version.
pub fn glibc_version_in(bytes: &[u8]) -> Option<(u32, u32)> {
    let text = String::from_utf8_lossy(bytes);
    if let Some(i) = text.find("Package: libc6\n") {
        let block = &text[i..];
        let block = &block[..block.find("\n\n").unwrap_or(block.len())];
        let version = block.lines().find_map(|l| l.strip_prefix("Version: "))?;
        return parse_minor(version.split(['-', '+']).next()?);
    }
    let i = text.find("release version ")?;
    parse_minor(
        text[i + "release version ".len()..]
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?,
    )
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
