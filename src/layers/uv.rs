//! Every uv command slipway runs starts at [`uv`] (the flags every call
//! shares) and takes its index settings from [`index_args`] (credentials by
//! environment only). Here too: `uv pip install` for the target platform
//! into a staging prefix (part of the site-packages layer, see
//! [`super::sitepackages`]).

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

/// `uv SUBCOMMAND...` with what every call shares: no colour, never an
/// interpreter download, no stdin. Every uv process slipway starts is made
/// here (the version probe aside, see `tool_version`).
pub fn uv(program: &std::path::Path, subcommand: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(subcommand)
        .args(["--color", "never", "--no-python-downloads"])
        .stdin(Stdio::null());
    cmd
}

/// Where uv may look for packages: `--offline --no-index` or the indexes,
/// plus find-links either way. Shared by install, `uv build` and `uv pip compile`.
///
/// An index URL's `user:password@` never reaches uv's command line (any
/// process can read it): the index is named and the credentials go in the
/// per-index variables uv documents, `UV_INDEX_<NAME>_USERNAME` / `_PASSWORD`.
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
        let indexes = index_url
            .map(|url| ("--default-index", url))
            .into_iter()
            .chain(extra_index_urls.iter().map(|url| ("--index", url.as_str())));
        for (i, (flag, url)) in indexes.enumerate() {
            let index = IndexUrl::parse(url);
            match &index.credentials {
                Some((username, password)) => {
                    let name = format!("slipway{i}");
                    let var = format!("UV_INDEX_{}", name.to_uppercase());
                    cmd.arg(flag).arg(format!("{name}={}", index.url));
                    cmd.env(format!("{var}_USERNAME"), username)
                        .env(format!("{var}_PASSWORD"), password);
                }
                None => {
                    cmd.args([flag, &index.url]);
                }
            }
        }
    }
    for link in find_links {
        cmd.args(["--find-links", link]);
    }
}

/// An index URL with its user info taken out.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexUrl {
    /// The URL without `user:password@`.
    pub url: String,
    /// (user, password), percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for IndexUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.credentials.as_ref().map(|(u, _)| u.as_str());
        write!(f, "IndexUrl({:?}, user {user:?}, password ****)", self.url)
    }
}

impl IndexUrl {
    /// `https://user:pw@host/simple`; a string that is not a URL is kept as is.
    pub fn parse(text: &str) -> IndexUrl {
        let Ok(mut url) = url::Url::parse(text) else {
            return IndexUrl {
                url: text.to_string(),
                credentials: None,
            };
        };
        if url.username().is_empty() && url.password().is_none() {
            return IndexUrl {
                url: text.to_string(),
                credentials: None,
            };
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (decode(url.username()), decode(url.password().unwrap_or("")));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        IndexUrl {
            url: url.to_string(),
            credentials: Some(credentials),
        }
    }

    /// The basic `Authorization` for `target` when it is on this index's
    /// origin (scheme, host, port): never for another host.
    pub fn authorization_for(&self, target: &url::Url) -> Option<String> {
        let (username, password) = self.credentials.as_ref()?;
        let own = url::Url::parse(&self.url).ok()?;
        if own.origin() != target.origin() {
            return None;
        }
        use base64::Engine as _;
        let raw = format!("{username}:{password}");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
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

/// The `uv pip install` command line for `spec`'s requirements files.
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
    let mut cmd = uv(&spec.uv, &["pip", "install"]);
    cmd.arg("--python")
        .arg(&spec.host_python)
        .arg("--prefix")
        .arg(&spec.staging)
        .args(["--python-platform", &spec.python_platform])
        .args(["--python-version", &spec.python_version])
        .args(["--no-installer-metadata", "--no-compile-bytecode"]);
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
    // Its files can be hardlinked into the staging dir (uv copies where it
    // can't): nobody else will ever see them, and the big set's 250 MB need
    // no copy. Files of a kept cache are copied, so the staging dir never
    // shares an inode with a cache that outlives the build.
    let link_mode = if has_local_wheels(&spec.find_links) {
        cmd.arg("--no-cache");
        "hardlink"
    } else {
        "copy"
    };
    // uv unpacks wheels under TMPDIR: beside the staging dir, so hardlinks
    // work whatever file system /tmp is on, the unpacked files are created
    // where the cache is (not in a RAM-backed /tmp), and a killed build's
    // leftovers go with its scratch dir.
    if let Some(scratch) = spec.staging.parent() {
        cmd.env("TMPDIR", scratch);
    }
    cmd.args(["--link-mode", link_mode])
        .env("UV_LINK_MODE", link_mode)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_credentials_go_to_uvs_per_index_variables_not_its_arguments() {
        let mut cmd = Command::new("uv");
        let extra = vec![
            "https://extra.example/simple".to_string(),
            "https://bot:p%40ss@two.example:8443/simple".to_string(),
        ];
        index_args(
            &mut cmd,
            false,
            Some("https://me%20x:s3cret@idx.example/simple"),
            &extra,
            &[],
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--default-index",
                "slipway0=https://idx.example/simple",
                "--index",
                "https://extra.example/simple",
                "--index",
                "slipway2=https://two.example:8443/simple",
            ]
        );
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        for pair in [
            ("UV_INDEX_SLIPWAY0_USERNAME", "me x"),
            ("UV_INDEX_SLIPWAY0_PASSWORD", "s3cret"),
            ("UV_INDEX_SLIPWAY2_USERNAME", "bot"),
            ("UV_INDEX_SLIPWAY2_PASSWORD", "p@ss"),
        ] {
            assert!(
                envs.contains(&(pair.0.to_string(), pair.1.to_string())),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn index_credentials_authorize_their_own_origin_only() {
        let index = IndexUrl::parse("https://u:p@idx.example/simple");
        assert!(!format!("{index:?}").contains(":p@") && !format!("{index:?}").contains("\"p\""));
        let same = url::Url::parse("https://idx.example/files/a.whl").unwrap();
        assert_eq!(
            index.authorization_for(&same).as_deref(),
            Some("Basic dTpw")
        );
        for other in [
            "https://files.example/a.whl",
            "http://idx.example/a.whl",
            "https://idx.example:444/a.whl",
        ] {
            let other = url::Url::parse(other).unwrap();
            assert_eq!(index.authorization_for(&other), None, "{other}");
        }
        let plain = IndexUrl::parse("https://idx.example/simple");
        assert_eq!(plain.credentials, None);
        assert_eq!(plain.authorization_for(&same), None);
    }
}
