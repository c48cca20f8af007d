//! What the site-packages and project layers install for one platform, and
//! the files whose contents decide it (they feed the layers' cache keys):
//! the recipe's requirements files or a project's exported lock (the
//! site-packages layer); a project's own wheel and those of the workspace
//! members it depends on (the project layer, so an edit rebuilds only it);
//! or, for an offline build from a bundle, the bundle's hash-pinned
//! requirements and wheels in place of the recipe's sources.

use super::project::{self, Project, ProjectError, WheelBuild};
use crate::digest::Digest;
use crate::recipe::PythonSettings;
use std::path::{Path, PathBuf};

/// An offline source of wheels for one platform (from `slipway bundle`).
#[derive(Clone, Debug)]
pub struct Pinned {
    /// The wheel dir.
    pub wheels: PathBuf,
    /// Hash-pinned requirements for this platform.
    pub requirements: PathBuf,
    /// Hash-pinned build requirements of the project (when it needs a build env).
    pub build_requirements: Option<PathBuf>,
}

pub struct Request<'a> {
    pub python: &'a PythonSettings,
    /// Install from here instead of the recipe's index and find-links.
    pub pinned: Option<&'a Pinned>,
    pub uv: &'a Path,
    /// A CPython of the target's minor version (runs uv and build backends).
    pub host_python: &'a Path,
    /// The target's Python (`3.13`), for lock hints.
    pub python_version: &'a str,
    /// Holds the exported requirements and the project's wheel; must outlive the install.
    pub scratch: &'a Path,
}

#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    pub requirements: Vec<PathBuf>,
    pub require_hashes: bool,
    /// The project layer: local wheels installed without dependencies.
    pub wheels: Vec<PathBuf>,
    /// (name, content digest) of every wheel in `wheels`.
    pub wheel_key_files: Vec<(String, Digest)>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub offline: bool,
    /// (name, content digest) of every file that decides what is installed.
    pub key_files: Vec<(String, Digest)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("cannot read requirements file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for DepsError {
    fn hint(&self) -> Option<String> {
        match self {
            DepsError::Project(e) => e.hint(),
            DepsError::Read { .. } => Some("fix `[python] requirements` in the recipe".into()),
        }
    }
}

pub fn plan(req: &Request) -> Result<Dependencies, DepsError> {
    let py = req.python;
    let mut deps = Dependencies {
        index_url: py.index_url.clone(),
        extra_index_urls: py.extra_index_urls.clone(),
        find_links: py.find_links.clone(),
        offline: py.offline,
        ..Dependencies::default()
    };
    if let Some(pinned) = req.pinned {
        deps.requirements.push(pinned.requirements.clone());
        deps.require_hashes = true;
        deps.index_url = None;
        deps.extra_index_urls.clear();
        deps.find_links = vec![pinned.wheels.to_string_lossy().into_owned()];
        deps.offline = true;
    } else {
        deps.requirements.extend(py.requirements.iter().cloned());
    }
    for file in deps.requirements.clone() {
        deps.key_files.push(digest(&file)?);
    }
    let Some(dir) = &py.project else {
        return Ok(deps);
    };
    let project = Project::load(dir, py.package.as_deref())?;
    // The export also names the workspace members the package depends on;
    // from a bundle only those are used (its pins replace the rest).
    let exported = project::export(
        req.uv,
        req.host_python,
        req.python_version,
        &project,
        &req.scratch.join("project-requirements.txt"),
        deps.offline,
    )?;
    if req.pinned.is_none() {
        // Keyed by the pins themselves (not pyproject.toml or uv.lock): an
        // edit that leaves the dependencies alone leaves this layer alone.
        if exported.has_requirements {
            deps.key_files.push(digest(&exported.requirements)?);
            deps.requirements.push(exported.requirements);
        }
        deps.require_hashes = exported.hashed;
    }
    let mut local_dirs = exported.local_dirs;
    if project.is_package {
        local_dirs.insert(0, project.dir.clone());
    }
    for (i, dir) in local_dirs.iter().enumerate() {
        let wheel = project::build_wheel(
            dir,
            &WheelBuild {
                uv: req.uv.to_path_buf(),
                python: req.host_python.to_path_buf(),
                out_dir: req.scratch.join(format!("project-wheel-{i}")),
                index_url: deps.index_url.clone(),
                extra_index_urls: deps.extra_index_urls.clone(),
                find_links: deps.find_links.clone(),
                offline: deps.offline,
                build_constraints: req.pinned.and_then(|p| p.build_requirements.clone()),
            },
        )?;
        deps.wheel_key_files.push(digest(&wheel)?);
        deps.wheels.push(wheel);
    }
    Ok(deps)
}

fn digest(path: &Path) -> Result<(String, Digest), DepsError> {
    crate::digest::named_file_digest(path).map_err(|source| DepsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// One `name==version` line of a requirements file with its hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLine {
    pub name: String,
    pub version: String,
    pub hashes: Vec<Digest>,
}

/// Reads `name==version [; marker] --hash=sha256:...` lines (continuations
/// joined, comments and options skipped).
pub fn parse_requirements(text: &str) -> Vec<PinLine> {
    requirement_lines(text)
        .iter()
        .filter(|line| !line.starts_with('-'))
        .filter_map(|line| pin_line(line))
        .collect()
}

/// The pins, when every requirement of `text` is an exact `name==version`
/// line (no range, wildcard, option or `-r`); None otherwise.
pub fn exact_pins(text: &str) -> Option<Vec<PinLine>> {
    requirement_lines(text)
        .iter()
        .map(|line| pin_line(line))
        .map(|pin| pin.filter(|p| !p.version.contains(['*', ',', '<', '>', '=', '!', '~'])))
        .collect()
}

/// The lines that say something: continuations joined, comments dropped.
fn requirement_lines(text: &str) -> Vec<String> {
    text.replace("\\\n", " ")
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

fn pin_line(line: &str) -> Option<PinLine> {
    let (name, version) = line.split_whitespace().next()?.split_once("==")?;
    let hashes = line
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("--hash="))
        .filter_map(|h| Digest::parse(h).ok())
        .collect();
    Some(PinLine {
        name: name.to_string(),
        version: version.trim_end_matches(';').to_string(),
        hashes,
    })
}
