//! Air-gapped builds. On a connected machine, `slipway bundle` ([`make`])
//! gathers everything a recipe needs into one dir (or tar):
//!
//! - `base/`: the base image for the recipe's platforms as an OCI image
//!   layout, tagged with the recipe's base reference (index bytes kept, so
//!   the image's `base.digest` annotation is the same as online);
//! - `wheels/`: exactly the wheels each platform installs;
//! - `requirements/<os>-<arch>.txt`: those wheels, hash-pinned
//!   (`requirements/build.txt`: a project's build backend, when it needs one);
//! - `bundle.json`: the recipe's inputs, the base's digests and every file
//!   with its sha256.
//!
//! `slipway build --bundle DIR` ([`Bundle::open`]) checks all of that first,
//! naming any file that is missing or does not match, then builds with no
//! network: the base from the layout, uv offline with `--require-hashes`.

mod archive;
mod base;
mod make;
mod staging;
mod wheels;

pub use make::{make, MakeOptions, MakeReport};

use crate::digest::Digest;
use crate::layers::deps::Pinned;
use crate::platform::Platform;
use crate::recipe::Recipe;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "bundle.json";
pub const FORMAT: u32 = 1;
pub const BUILD_REQUIREMENTS: &str = "requirements/build.txt";

/// `bundle.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created_by: String,
    /// The recipe file it was made from (name and digest, for reference).
    pub recipe: InputRecord,
    pub base: BaseRecord,
    /// Requirements files, or a project's `pyproject.toml` and `uv.lock`
    /// (paths relative to the recipe's dir): a build checks they are unchanged.
    pub inputs: Vec<InputRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_requirements: Option<String>,
    pub wheels: Vec<WheelRecord>,
    /// Every file of the bundle but this one.
    pub files: Vec<FileRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    pub sha256: Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// The recipe's base, normalised (`docker.io/library/python:3.13-alpine`).
    pub reference: String,
    /// What it pointed at (the index for multi-platform bases).
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<PlatformRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRecord {
    pub platform: String,
    pub manifest: Digest,
    pub python_version: String,
    pub libc: String,
    /// uv's target triple.
    pub python_platform: String,
    /// `requirements/<os>-<arch>.txt`, when the recipe has Python dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelRecord {
    /// `wheels/<file name>`.
    pub file: String,
    pub name: String,
    pub version: String,
    pub sha256: Digest,
    /// The platforms (or `build`) that install it.
    pub platforms: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("`{}` is not a slipway bundle (no {MANIFEST_FILE})", dir.display())]
    NotABundle { dir: PathBuf },
    #[error("bundle `{}`: {message}", dir.display())]
    Invalid { dir: PathBuf, message: String },
    #[error("bundle `{}` holds base `{bundled}`, but the recipe's base is `{wanted}`", dir.display())]
    WrongBase {
        dir: PathBuf,
        bundled: String,
        wanted: String,
    },
    #[error("bundle `{}` has nothing for platform `{platform}` (it has: {available})", dir.display())]
    NoPlatform {
        dir: PathBuf,
        platform: String,
        available: String,
    },
    #[error("{} changed since bundle `{}` was made", changed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "), dir.display())]
    Stale { dir: PathBuf, changed: Vec<String> },
    #[error("bundle `{}` is damaged:\n{}", dir.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Damaged { dir: PathBuf, problems: Vec<String> },
    #[error(transparent)]
    Project(#[from] crate::layers::project::ProjectError),
    #[error("reading `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for BundleError {
    fn hint(&self) -> Option<String> {
        let remake = "make it again on a connected machine: `slipway bundle RECIPE --out DIR`";
        Some(match self {
            BundleError::NotABundle { .. } => {
                format!("pass the dir (or tar) `slipway bundle` wrote; {remake}")
            }
            BundleError::Damaged { .. } => {
                format!("a file is corrupt or was changed after bundling; {remake}")
            }
            BundleError::Io { .. } => return None,
            BundleError::Project(e) => return e.hint(),
            _ => format!("the bundle was made for another recipe or version of it; {remake}"),
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `linux/arm64/v8` → `linux-arm64-v8`.
pub fn platform_slug(platform: &str) -> String {
    platform.replace('/', "-")
}

/// The recipe's dependency inputs, with paths relative to the recipe's dir.
pub fn recipe_inputs(recipe: &Recipe) -> Result<Vec<InputRecord>, BundleError> {
    let dir = recipe.file.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = recipe.python.requirements.clone();
    if let Some(project) = &recipe.python.project {
        // A workspace member's lock (and the workspace's own pyproject) is
        // at the workspace root.
        let loaded =
            crate::layers::project::Project::load(project, recipe.python.package.as_deref())?;
        files.push(loaded.pyproject());
        let root_pyproject = loaded.root.join("pyproject.toml");
        if loaded.root != loaded.dir && root_pyproject.is_file() {
            files.push(root_pyproject);
        }
        files.push(loaded.lock());
    }
    files
        .iter()
        .map(|file| {
            let (sha256, _) = crate::digest::digest_file(file).map_err(io_err(file))?;
            Ok(InputRecord {
                path: relative_to(dir, file),
                sha256,
            })
        })
        .collect()
}

/// `path` as seen from `dir` (`../../uv.lock` for a workspace's lock), so a
/// bundle made in one checkout opens in another. Written by hand: one
/// lexical walk over canonical paths, not worth a dependency.
fn relative_to(dir: &Path, path: &Path) -> String {
    let (Ok(dir), Ok(path)) = (dir.canonicalize(), path.canonicalize()) else {
        return path.to_string_lossy().trim_start_matches("./").to_string();
    };
    let common = dir
        .components()
        .zip(path.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in dir.components().skip(common) {
        rel.push("..");
    }
    for part in path.components().skip(common) {
        rel.push(part);
    }
    rel.to_string_lossy().into_owned()
}

/// A bundle opened for an offline build: checked against the recipe and
/// against its own `bundle.json`.
#[derive(Debug)]
pub struct Bundle {
    /// The dir or tar as given.
    pub path: PathBuf,
    /// The bundle's dir (a tar's unpacked copy).
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Where a tar bundle was unpacked (removed on drop).
    _unpacked: Option<tempfile::TempDir>,
}

impl Bundle {
    /// Opens `path` (a bundle dir, or a tar of one, unpacked under
    /// `scratch_parent`), checks it was made for `recipe` (base, platforms,
    /// unchanged inputs) and that every file matches its recorded sha256
    /// and every wheel its pin.
    pub fn open(
        path: &Path,
        recipe: &Recipe,
        scratch_parent: &Path,
    ) -> Result<Bundle, BundleError> {
        let (dir, unpacked) = if path.is_file() {
            let tmp = tempfile::Builder::new()
                .prefix("bundle-")
                .tempdir_in(scratch_parent)
                .map_err(io_err(scratch_parent))?;
            archive::unpack(path, tmp.path()).map_err(io_err(path))?;
            (tmp.path().to_path_buf(), Some(tmp))
        } else {
            (path.to_path_buf(), None)
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&manifest_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::NotABundle {
                    dir: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let invalid = |message: String| BundleError::Invalid {
            dir: path.to_path_buf(),
            message,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{MANIFEST_FILE} is not valid: {e}")))?;
        if manifest.format != FORMAT {
            return Err(invalid(format!(
                "{MANIFEST_FILE} has format {}, this slipway reads {FORMAT}",
                manifest.format
            )));
        }
        let bundle = Bundle {
            path: path.to_path_buf(),
            dir,
            manifest,
            _unpacked: unpacked,
        };
        bundle.check_recipe(path, recipe)?;
        bundle.verify(path)?;
        Ok(bundle)
    }

    /// The base image's OCI layout.
    pub fn base_layout(&self) -> PathBuf {
        self.dir.join("base")
    }

    fn check_recipe(&self, shown: &Path, recipe: &Recipe) -> Result<(), BundleError> {
        let m = &self.manifest;
        if m.base.reference != recipe.base.to_string() {
            return Err(BundleError::WrongBase {
                dir: shown.to_path_buf(),
                bundled: m.base.reference.clone(),
                wanted: recipe.base.to_string(),
            });
        }
        for platform in &recipe.platforms {
            self.platform(shown, platform)?;
        }
        let now = recipe_inputs(recipe)?;
        let mut changed = Vec::new();
        for input in &now {
            if !m.inputs.contains(input) {
                changed.push(input.path.clone());
            }
        }
        for old in &m.inputs {
            if !now.iter().any(|n| n.path == old.path) {
                changed.push(old.path.clone());
            }
        }
        if !changed.is_empty() {
            return Err(BundleError::Stale {
                dir: shown.to_path_buf(),
                changed,
            });
        }
        Ok(())
    }

    fn platform(&self, shown: &Path, platform: &Platform) -> Result<&PlatformRecord, BundleError> {
        let platforms = &self.manifest.base.platforms;
        platforms
            .iter()
            .find(|p| Platform::parse(&p.platform).is_ok_and(|b| platform.matches(&b)))
            .ok_or_else(|| BundleError::NoPlatform {
                dir: shown.to_path_buf(),
                platform: platform.to_string(),
                available: platforms
                    .iter()
                    .map(|p| p.platform.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Every recorded file present with its size and sha256; every pinned
    /// requirement matched by a wheel of the bundle.
    fn verify(&self, shown: &Path) -> Result<(), BundleError> {
        let mut problems = Vec::new();
        let mut actual: BTreeMap<&str, Digest> = BTreeMap::new();
        for file in &self.manifest.files {
            let path = self.dir.join(&file.path);
            match crate::digest::digest_file(&path) {
                Ok((digest, size)) => {
                    if digest != file.sha256 || size != file.size {
                        problems.push(format!(
                            "`{}` does not match {MANIFEST_FILE}: it hashes to `{digest}` ({size} bytes), expected `{}` ({} bytes)",
                            file.path, file.sha256, file.size
                        ));
                    }
                    actual.insert(&file.path, digest);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(format!("`{}` is missing", file.path));
                }
                Err(e) => problems.push(format!("`{}` cannot be read: {e}", file.path)),
            }
        }
        let mut requirement_files: Vec<&str> = self
            .manifest
            .base
            .platforms
            .iter()
            .filter_map(|p| p.requirements.as_deref())
            .collect();
        requirement_files.extend(self.manifest.build_requirements.as_deref());
        for req in requirement_files {
            let text = std::fs::read_to_string(self.dir.join(req)).unwrap_or_default();
            for pin in wheels::parse_requirements(&text) {
                let candidates: Vec<&WheelRecord> = self
                    .manifest
                    .wheels
                    .iter()
                    .filter(|w| {
                        wheels::normalise(&w.name) == wheels::normalise(&pin.name)
                            && w.version == pin.version
                    })
                    .collect();
                if candidates.is_empty() {
                    problems.push(format!(
                        "`{req}` pins `{}=={}`, but the bundle has no wheel of it",
                        pin.name, pin.version
                    ));
                    continue;
                }
                let matched = candidates.iter().any(|w| {
                    actual
                        .get(w.file.as_str())
                        .is_some_and(|d| pin.hashes.contains(d))
                });
                if !matched {
                    for w in candidates {
                        let found = actual
                            .get(w.file.as_str())
                            .map(|d| format!("hashes to `{d}`"))
                            .unwrap_or_else(|| "is missing".into());
                        problems.push(format!(
                            "`{}` {found}, which is not the hash `{req}` pins for `{}=={}`",
                            w.file, pin.name, pin.version
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BundleError::Damaged {
                dir: shown.to_path_buf(),
                problems,
            })
        }
    }
}

/// An offline build installs the bundle's wheels, pinned by hash.
impl crate::layers::options::PinnedWheels for Bundle {
    /// The wheel dir and pinned requirements for one platform's install.
    fn pinned(&self, platform: &Platform) -> crate::error::Result<Pinned> {
        let record = self
            .platform(&self.path, platform)
            .map_err(crate::error::Error::hinted(crate::error::ErrorKind::Input))?;
        let requirements = record.requirements.as_ref().ok_or_else(|| {
            crate::error::Error::hinted(crate::error::ErrorKind::Input)(BundleError::Invalid {
                dir: self.path.clone(),
                message: format!(
                    "no requirements for `{}`: it was made for a recipe without Python dependencies",
                    record.platform
                ),
            })
        })?;
        Ok(Pinned {
            wheels: self.dir.join("wheels"),
            requirements: self.dir.join(requirements),
            build_requirements: self
                .manifest
                .build_requirements
                .as_ref()
                .map(|b| self.dir.join(b)),
        })
    }

    /// What to do when uv wanted something the bundle lacks.
    fn missing_hint(&self) -> String {
        format!(
            "the bundle `{}` lacks what uv asked for (the build is offline): make the bundle again on a connected machine with `slipway bundle RECIPE --out DIR`",
            self.path.display()
        )
    }
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
