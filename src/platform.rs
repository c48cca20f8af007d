//! Target platforms (`linux/amd64`, `linux/arm64/v8`) and how each maps to wheel tags.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// The C library of a base image, which decides musllinux vs manylinux wheels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Libc {
    Musl,
    Glibc { major: u32, minor: u32 },
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Libc::Musl => f.write_str("musl"),
            Libc::Glibc { major, minor } => write!(f, "glibc {major}.{minor}"),
        }
    }
}

pub const KNOWN_ARCHITECTURES: &[&str] = &["amd64", "arm64"];

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(variant.to_string())),
            _ => {
                return Err(format!(
                    "platform `{text}` is not of the form `os/arch[/variant]` (e.g. `linux/amd64`)"
                ))
            }
        };
        if os != "linux" {
            return Err(format!(
                "platform `{text}`: only `linux` images are supported"
            ));
        }
        if !KNOWN_ARCHITECTURES.contains(&arch) {
            return Err(format!(
                "platform `{text}`: unknown architecture `{arch}` (supported: {})",
                KNOWN_ARCHITECTURES.join(", ")
            ));
        }
        // arm64's only variant is v8; normalise it away so `linux/arm64/v8` == `linux/arm64`.
        let variant = variant.filter(|v| !(arch == "arm64" && v == "v8"));
        Ok(Platform {
            architecture: arch.to_string(),
            os: os.to_string(),
            variant,
        })
    }

    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            _ => "amd64",
        };
        Platform {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform satisfies this wanted platform.
    pub fn matches(&self, other: &Platform) -> bool {
        let norm = |p: &Platform| {
            p.variant
                .clone()
                .filter(|v| !(p.architecture == "arm64" && v == "v8"))
        };
        self.os == other.os && self.architecture == other.architecture && norm(self) == norm(other)
    }

    /// The CPU name used in wheel tags and ELF machine checks.
    pub fn cpu(&self) -> &'static str {
        match self.architecture.as_str() {
            "arm64" => "aarch64",
            _ => "x86_64",
        }
    }

    /// The `--python-platform` value uv wants for this platform and libc.
    pub fn uv_python_platform(&self, libc: &Libc) -> String {
        match libc {
            Libc::Musl => format!("{}-unknown-linux-musl", self.cpu()),
            // uv knows manylinux_2_17 and 2_28..=2_40; clamp to what it knows.
            Libc::Glibc { minor, .. } => {
                let minor = if *minor >= 28 { (*minor).min(40) } else { 17 };
                format!("{}-manylinux_2_{minor}", self.cpu())
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(Platform::parse("linux/sparc")
            .unwrap_err()
            .contains("unknown architecture"));
        assert!(Platform::parse("windows/amd64").is_err());
        assert!(Platform::parse("amd64").is_err());
    }

    #[test]
    fn maps_to_uv_targets() {
        let amd = Platform::parse("linux/amd64").unwrap();
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            amd.uv_python_platform(&Libc::Musl),
            "x86_64-unknown-linux-musl"
        );
        assert_eq!(
            arm.uv_python_platform(&Libc::Glibc {
                major: 2,
                minor: 36
            }),
            "aarch64-manylinux_2_36"
        );
        assert_eq!(
            amd.uv_python_platform(&Libc::Glibc {
                major: 2,
                minor: 24
            }),
            "x86_64-manylinux_2_17"
        );
    }
}
