//! The wheels uv will most likely install from local find-links dirs (for
//! each pinned requirement, the wheels of that name and version whose tags
//! fit the target), and where a wheel's entries install. Read ahead of and
//! beside the install: their bytecode is compiled while uv runs
//! (`bytecode::ahead`), and their deflate streams are copied into the
//! site-packages layer ([`super::deflated`]). A wrong guess only costs
//! CPU: whatever is taken from a guessed wheel is checked against the
//! installed files.

use crate::layers::project::normalise_name;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The wheels in local find-links dirs named by a pinned requirement, at
/// its version, with tags CPython `version` on `python_platform` can
/// install; sorted.
pub fn pinned(
    requirements: &[PathBuf],
    find_links: &[String],
    python_platform: &str,
    version: &str,
) -> Vec<PathBuf> {
    let pins: BTreeMap<String, String> = requirements
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| crate::layers::deps::parse_requirements(&text))
        .map(|pin| (normalise_name(&pin.name), pin.version))
        .collect();
    let mut found = Vec::new();
    for dir in find_links.iter().map(Path::new).filter(|d| d.is_dir()) {
        let Ok(listing) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(tags) = WheelName::parse(&name) else {
                continue;
            };
            let pinned = pins.get(&normalise_name(tags.name)) == Some(&tags.version.to_string());
            if pinned && tags.fits(python_platform, version) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Where a wheel's entry installs.
#[derive(Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// Below site-packages, at this relative path.
    SitePackages(&'a str),
    /// In another scheme (scripts, headers, data).
    Elsewhere,
    /// An absolute name or one that climbs (`..`): the wheel is not to be
    /// read further.
    Climbs,
}

/// `<dist>.data/purelib/x` and `platlib/x` install as `x`, the other
/// `.data` schemes outside site-packages, every other entry as named.
pub fn place(name: &str) -> Place<'_> {
    if name.starts_with('/') || name.contains('\\') || name.split('/').any(|p| p == "..") {
        return Place::Climbs;
    }
    match name.split_once(".data/") {
        Some((dist, rest)) if !dist.contains('/') => match rest.split_once('/') {
            Some(("purelib" | "platlib", path)) => Place::SitePackages(path),
            _ => Place::Elsewhere,
        },
        _ => Place::SitePackages(name),
    }
}

/// `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`
struct WheelName<'a> {
    name: &'a str,
    version: &'a str,
    python: &'a str,
    abi: &'a str,
    platform: &'a str,
}

impl<'a> WheelName<'a> {
    fn parse(file: &'a str) -> Option<WheelName<'a>> {
        let parts: Vec<&str> = file.strip_suffix(".whl")?.split('-').collect();
        let (name, version) = (parts.first()?, parts.get(1)?);
        let [python, abi, platform] = parts.get(parts.len().checked_sub(3)?..)? else {
            return None;
        };
        (parts.len() == 5 || parts.len() == 6).then_some(WheelName {
            name,
            version,
            python,
            abi,
            platform,
        })
    }

    /// Whether CPython `version` on `python_platform` could install it (a
    /// loose check: a guess that fits too much only costs CPU).
    fn fits(&self, python_platform: &str, version: &str) -> bool {
        let minor = version.replace('.', "");
        let python =
            self.python.split('.').any(|tag| {
                tag == "py3" || tag == format!("py{minor}") || tag == format!("cp{minor}")
            }) || self.abi == "abi3";
        let arch = python_platform.split('-').next().unwrap_or_default();
        let family = if python_platform.contains("musl") {
            "musllinux"
        } else {
            "manylinux"
        };
        let platform = self.platform.split('.').any(|tag| {
            tag == "any"
                || (tag.ends_with(arch) && (tag.starts_with(family) || tag.starts_with("linux")))
        });
        python && platform
    }
}

#[cfg(test)]
mod tests {
    use super::{place, Place, WheelName};

    #[test]
    fn entries_install_below_site_packages_unless_another_scheme_or_climbing() {
        assert_eq!(place("demo/x.py"), Place::SitePackages("demo/x.py"));
        assert_eq!(
            place("demo-1.0.data/purelib/x.py"),
            Place::SitePackages("x.py")
        );
        assert_eq!(
            place("demo-1.0.data/platlib/a/x.so"),
            Place::SitePackages("a/x.so")
        );
        assert_eq!(place("demo-1.0.data/scripts/tool"), Place::Elsewhere);
        assert_eq!(
            place("demo/sub.data/purelib/x.py"),
            Place::SitePackages("demo/sub.data/purelib/x.py")
        );
        for climbing in ["../x.py", "/etc/x", "demo/../../x", "demo\\x.py"] {
            assert_eq!(place(climbing), Place::Climbs, "{climbing}");
        }
    }

    #[test]
    fn wheel_tags_fit_the_target_loosely() {
        let fits = |file: &str, platform: &str| {
            WheelName::parse(file).is_some_and(|w| w.fits(platform, "3.13"))
        };
        let glibc = "x86_64-manylinux_2_36";
        let musl = "x86_64-unknown-linux-musl";
        assert!(fits("idna-3.20-py3-none-any.whl", glibc));
        assert!(fits("idna-3.20-py3-none-any.whl", musl));
        let core =
            "pydantic_core-2.50.4-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
        assert!(fits(core, glibc));
        assert!(!fits(core, musl));
        assert!(!fits(core, "aarch64-manylinux_2_36"));
        assert!(fits(
            "pydantic_core-2.50.4-cp313-cp313-musllinux_1_1_x86_64.whl",
            musl
        ));
        assert!(!fits(
            "pydantic_core-2.50.4-cp312-cp312-manylinux_2_17_x86_64.whl",
            glibc
        ));
        assert!(fits("x-1.0-cp39-abi3-manylinux_2_17_x86_64.whl", glibc));
        assert!(fits("x-1.0-1build-py3-none-any.whl", glibc));
        assert!(WheelName::parse("x-1.0.tar.gz").is_none());
        assert!(WheelName::parse("x-1.0-py3.whl").is_none());
    }
}
