//! Running `uv pip install` for the target platform into a staging prefix
//! (part of the site-packages layer, see [`super::sitepackages`]).

use super::sitepackages::{io_error, SitePackagesError};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What to install and how.
#[derive(Clone, Debug)]
pub struct UvInstall {
    pub uv: PathBuf,
    /// The CPython uv runs to install (ideally of the target's minor version:
    /// `--prefix` names `lib/pythonX.Y` after it).
    pub host_python: PathBuf,
    /// Requirements files (`-r`).
    pub requirements: Vec<PathBuf>,
    /// Every requirement must be pinned with a hash (`--require-hashes`).
    pub require_hashes: bool,
    /// Local wheels installed after the requirements, without their
    /// dependencies (a project's own wheel).
    pub wheels: Vec<PathBuf>,
    /// uv's target triple, e.g. `x86_64-unknown-linux-musl`.
    pub python_platform: String,
    /// The base image's Python, e.g. `3.13`.
    pub python_version: String,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    /// Wheel directories or URLs (`--find-links`).
    pub find_links: Vec<String>,
    /// No network: `--offline --no-index`, wheels from `find_links` only.
    pub offline: bool,
    /// Allow building sdists (on the host!) when no wheel fits.
    pub allow_sdist: bool,
    /// The prefix to install into; must not exist or be empty.
    pub staging: PathBuf,
}

/// What [`install`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// `(name, version)` of every installed distribution, sorted.
    pub packages: Vec<(String, String)>,
    /// uv's stderr (its progress report).
    pub log: String,
}

/// The `uv pip install` command line for `spec`'s requirements files.
/// Where uv may look for packages: `--offline --no-index` or the indexes,
/// plus find-links either way. Shared by install, `uv build` and `uv pip compile`.
pub fn index_args(
    cmd: &mut Command,
    offline: bool,
    index_url: Option<&str>,
    extra_index_urls: &[String],
    find_links: &[String],
) {
    if offline {
        cmd.args(["--offline", "--no-index"]);
    } else {
        if let Some(url) = index_url {
            cmd.args(["--index-url", url]);
        }
        for url in extra_index_urls {
            cmd.args(["--extra-index-url", url]);
        }
    }
    for link in find_links {
        cmd.args(["--find-links", link]);
    }
}

/// Whether a local dir among `find_links` holds a wheel.
fn has_local_wheels(find_links: &[String]) -> bool {
    find_links
        .iter()
        .filter_map(|link| std::fs::read_dir(link).ok())
        .flat_map(|dir| dir.filter_map(Result::ok))
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".whl"))
}

pub fn command(spec: &UvInstall) -> Command {
    let mut cmd = base_command(spec);
    if spec.require_hashes {
        cmd.arg("--require-hashes");
    }
    for file in &spec.requirements {
        cmd.arg("-r").arg(file);
    }
    cmd
}

/// The `uv pip install --no-deps` command line for `spec`'s local wheels.
pub fn wheels_command(spec: &UvInstall) -> Command {
    let mut cmd = base_command(spec);
    cmd.arg("--no-deps").args(&spec.wheels);
    cmd
}

fn base_command(spec: &UvInstall) -> Command {
    let mut cmd = Command::new(&spec.uv);
    cmd.args(["pip", "install", "--python"])
        .arg(&spec.host_python)
        .arg("--prefix")
        .arg(&spec.staging)
        .args(["--python-platform", &spec.python_platform])
        .args(["--python-version", &spec.python_version])
        .args([
            "--link-mode",
            "copy",
            "--no-python-downloads",
            "--no-installer-metadata",
            "--no-compile-bytecode",
            "--color",
            "never",
        ]);
    if !spec.allow_sdist {
        cmd.arg("--no-build");
    }
    index_args(
        &mut cmd,
        spec.offline,
        spec.index_url.as_deref(),
        &spec.extra_index_urls,
        &spec.find_links,
    );
    // uv caches a find-links wheel by its file name: a wheel rebuilt under
    // the same name would install the cached old one (slipway's key saw the
    // new bytes, so this build is a miss and must install them). uv refuses
    // `--refresh` offline, so local wheels go through a throwaway cache.
    if has_local_wheels(&spec.find_links) {
        cmd.arg("--no-cache");
    }
    cmd.env("UV_LINK_MODE", "copy")
        .env("UV_NO_INSTALLER_METADATA", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env_remove("UV_COMPILE_BYTECODE")
        .stdin(Stdio::null());
    cmd
}

/// Runs uv into `spec.staging` (created if missing).
pub fn install(spec: &UvInstall) -> Result<InstallReport, SitePackagesError> {
    let staging = &spec.staging;
    std::fs::create_dir_all(staging).map_err(io_error(staging))?;
    if std::fs::read_dir(staging)
        .map_err(io_error(staging))?
        .next()
        .is_some()
    {
        return Err(SitePackagesError::StagingNotEmpty(staging.clone()));
    }
    let mut log = String::new();
    if !spec.requirements.is_empty() {
        log.push_str(&run(spec, command(spec))?);
    }
    if !spec.wheels.is_empty() {
        log.push_str(&run(spec, wheels_command(spec))?);
    }
    let mut packages: Vec<(String, String)> = log
        .lines()
        .filter_map(|line| line.trim().strip_prefix("+ "))
        .filter_map(|pkg| pkg.split_once("=="))
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect();
    packages.sort();
    Ok(InstallReport { packages, log })
}

/// Runs one uv command; its stderr on success, a typed error on failure.
fn run(spec: &UvInstall, mut cmd: Command) -> Result<String, SitePackagesError> {
    // uv's stderr lines become the progress spinner's message as they come.
    let output = crate::progress::output_with_details(&mut cmd).map_err(|source| {
        SitePackagesError::UvNotRunnable {
            uv: spec.uv.clone(),
            source,
        }
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        return Ok(stderr);
    }
    let packages = packages_without_wheels(&stderr);
    if !packages.is_empty() {
        return Err(SitePackagesError::NoWheel {
            packages,
            platform: spec.python_platform.clone(),
            python_version: spec.python_version.clone(),
            detail: stderr.trim().to_string(),
        });
    }
    if spec.offline {
        let packages = packages_not_found(&stderr);
        if !packages.is_empty() {
            return Err(SitePackagesError::NotInFindLinks {
                packages,
                find_links: spec.find_links.clone(),
                detail: stderr.trim().to_string(),
            });
        }
    }
    Err(SitePackagesError::Uv {
        status: output.status.to_string(),
        stderr: stderr.trim().to_string(),
    })
}

/// Names the packages an offline uv could not find: "Because x was not
/// found in the provided package locations", "x was not found in the cache".
pub fn packages_not_found(stderr: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for marker in [
        " was not found in the provided package locations",
        " was not found in the cache",
        " was not found in the package registry",
    ] {
        for (i, _) in stderr.match_indices(marker) {
            if let Some(word) = stderr[..i].split_whitespace().last() {
                names.insert(bare_name(word));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.into_iter().collect()
}

/// Names the packages uv's resolver error blames for lacking a usable wheel:
/// "Wheels are required for `x`", "Wheels are available for `x` ... on the
/// following platform", "x==1 has no usable wheels", "all versions of x have
/// no usable wheels", "x==1 has no wheels with a matching platform tag".
pub fn packages_without_wheels(stderr: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for hint in ["Wheels are required for `", "Wheels are available for `"] {
        for (i, _) in stderr.match_indices(hint) {
            let rest = &stderr[i + hint.len()..];
            if let Some(end) = rest.find('`') {
                names.insert(rest[..end].to_string());
            }
        }
    }
    for marker in [" has no usable wheels", " has no wheels with a matching"] {
        for (i, _) in stderr.match_indices(marker) {
            if let Some(word) = stderr[..i].split_whitespace().last() {
                names.insert(bare_name(word));
            }
        }
    }
    for marker in [" have no usable wheels", " have no wheels with a matching"] {
        for (i, _) in stderr.match_indices(marker) {
            let before = &stderr[..i];
            if let Some(j) = before.rfind("all versions of ") {
                names.insert(bare_name(&before[j + "all versions of ".len()..]));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.into_iter().collect()
}

/// `pyyaml==5.3` → `pyyaml`.
fn bare_name(word: &str) -> String {
    let end = word
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.[]".contains(c)))
        .unwrap_or(word.len());
    let name = &word[..end];
    name.split('[').next().unwrap_or(name).to_string()
}
