//! Honest resolution: with wheels only (`allow_sdist` off), uv may settle on
//! an older version of a package whose newer releases ship no wheel for the
//! target. Two `uv pip compile` runs (wheels only, and sdists allowed; both
//! answered from uv's cache, nothing is built) tell which packages that holds
//! back, so the build can say so instead of shipping them silently.

use super::uv::index_args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

/// What to resolve: the same inputs `uv pip install` gets.
pub struct Compile<'a> {
    pub uv: &'a std::path::Path,
    pub host_python: &'a std::path::Path,
    pub requirements: &'a [PathBuf],
    pub python_platform: &'a str,
    pub python_version: &'a str,
    pub index_url: Option<&'a str>,
    pub extra_index_urls: &'a [String],
    pub find_links: &'a [String],
    pub offline: bool,
}

/// A package the wheel-only resolution holds below what sdists would give.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldBack {
    pub name: String,
    pub wheels_only: String,
    pub with_sdists: String,
}

impl std::fmt::Display for HeldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} is installed, but {} has no wheel for this platform (set `[python] allow_sdist = true` to build it)",
            self.name, self.wheels_only, self.with_sdists
        )
    }
}

/// The packages held back; empty when either resolution fails (the install
/// itself reports real resolution errors).
pub fn held_back(spec: &Compile) -> Vec<HeldBack> {
    let (Some(wheels), Some(sdists)) = (compile(spec, true), compile(spec, false)) else {
        return Vec::new();
    };
    wheels
        .into_iter()
        .filter_map(|(name, wheels_only)| {
            let with_sdists = sdists.get(&name)?.clone();
            (version_key(&wheels_only) < version_key(&with_sdists)).then_some(HeldBack {
                name,
                wheels_only,
                with_sdists,
            })
        })
        .collect()
}

fn compile(spec: &Compile, no_build: bool) -> Option<BTreeMap<String, String>> {
    let mut cmd = super::uv::uv(spec.uv, &["pip", "compile"]);
    cmd.args(["--quiet", "--no-header", "--no-annotate"])
        .arg("--python")
        .arg(spec.host_python)
        .args(["--python-platform", spec.python_platform])
        .args(["--python-version", spec.python_version]);
    if no_build {
        cmd.arg("--no-build");
    }
    index_args(
        &mut cmd,
        spec.offline,
        spec.index_url,
        spec.extra_index_urls,
        spec.find_links,
    );
    cmd.args(spec.requirements)
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    Some(pins(&String::from_utf8_lossy(&out.stdout)))
}

/// `name==version` lines → name → version.
fn pins(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split(';').next()?.trim().split_once("=="))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// `1.10.2rc1` → [1, 10, 2]: release numbers compare numerically.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_release_numbers() {
        assert!(version_key("0.9.5") < version_key("0.9.7.1"));
        assert!(version_key("0.10") > version_key("0.9.7"));
        let p = pins("flask==3.1.3\nflasgger==0.9.5 ; python_version >= '3'\n");
        assert_eq!(p["flasgger"], "0.9.5");
    }
}
