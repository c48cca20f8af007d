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

/// Loads the config; a missing file is an empty config, a bad one an error.
pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| format!("config `{}`: {}", path.display(), e.to_string().trim_end())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(format!("cannot read config `{}`: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(load(Some(&dir.path().join("none.toml")))
            .unwrap()
            .mirrors
            .is_empty());
    }
}
