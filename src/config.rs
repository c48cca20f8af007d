//! User configuration (`~/.config/slipway/config.toml`, or `$SLIPWAY_CONFIG`):
//! registry mirrors and registries allowed over plain HTTP, for sites whose
//! recipes say `python:3.13-alpine` but whose images live on an internal registry.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Registry host → host that serves it for pulls, e.g. `"docker.io" = "registry.internal:5000"`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    /// Registries that may be spoken to over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// The registry repository shared as a layer cache (`--cache-repo`).
    #[serde(default)]
    pub cache_repo: Option<String>,
}

pub fn default_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLIPWAY_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("slipway").join("config.toml"))
}

/// What a config file looks like, for errors about one.
pub const CONFIG_HINT: &str = "the config file holds `insecure_registries = [\"HOST:PORT\"]` and a `[mirrors]` table of `\"docker.io\" = \"HOST:PORT\"` (see the README)";

/// What a mirror looks like, for errors about one.
pub const MIRROR_HINT: &str =
    "give the registry and the host that mirrors it: `--registry-mirror docker.io=registry.internal:5000`";

/// Loads the config; a missing file is an empty config, a bad one an error.
pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let config: Config = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| format!("config `{}`: {}", path.display(), e.to_string().trim_end()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(format!("cannot read config `{}`: {e}", path.display())),
    };
    for (from, to) in &config.mirrors {
        for host in [from, to] {
            check_host(host).map_err(|e| {
                format!("config `{}`: mirror `{from}` = `{to}`: {e}", path.display())
            })?;
        }
    }
    Ok(config)
}

/// `FROM=TO` of `--registry-mirror`: two registry hosts (`HOST[:PORT]`).
pub fn parse_mirror(text: &str) -> Result<(String, String), String> {
    let (from, to) = text
        .split_once('=')
        .ok_or_else(|| format!("--registry-mirror `{text}` is not FROM=TO"))?;
    for host in [from, to] {
        check_host(host).map_err(|e| format!("--registry-mirror `{text}`: {e}"))?;
    }
    Ok((from.to_string(), to.to_string()))
}

/// A registry name as references spell it: `HOST[:PORT]`, no scheme, no path.
fn check_host(host: &str) -> Result<(), String> {
    let bad = || Err(format!("`{host}` is not a registry HOST[:PORT]"));
    if host.is_empty() || host.contains("://") || host.contains(['/', ' ', '@']) {
        return bad();
    }
    match host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        Some((name, port)) if name.is_empty() || !port.parse::<u16>().is_ok_and(|p| p > 0) => bad(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mirror_flags() {
        assert_eq!(
            parse_mirror("docker.io=127.0.0.1:5000").unwrap(),
            ("docker.io".to_string(), "127.0.0.1:5000".to_string())
        );
        for bad in [
            "docker.io",
            "docker.io=",
            "=m:5000",
            "docker.io=http://m:5000",
            "docker.io=m:99999",
            "docker.io=m/v2",
        ] {
            assert!(parse_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_mirrors_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "insecure_registries = [\"r:5000\"]\n[mirrors]\n\"docker.io\" = \"127.0.0.1:5000\"\n",
        )
        .unwrap();
        let config = load(Some(&path)).unwrap();
        assert_eq!(config.mirrors["docker.io"], "127.0.0.1:5000");
        std::fs::write(&path, "mirror = 1\n").unwrap();
        assert!(load(Some(&path)).unwrap_err().contains("mirror"));
        std::fs::write(&path, "[mirrors]\n\"docker.io\" = \"https://m/v2\"\n").unwrap();
        assert!(load(Some(&path)).unwrap_err().contains("HOST[:PORT]"));
        assert!(load(Some(&dir.path().join("none.toml")))
            .unwrap()
            .mirrors
            .is_empty());
    }
}
