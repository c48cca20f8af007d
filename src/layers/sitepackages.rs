//! The site-packages layer: `uv pip install` for the TARGET platform into a
//! staging prefix, then mapped onto the base interpreter's real paths.
//!
//! [`install`] runs uv (wheels only unless told otherwise, copies not links,
//! no installer metadata, no bytecode, no interpreter downloads). [`collect`]
//! turns the staging prefix into entries: `lib/python*/site-packages` (named
//! after the interpreter uv ran, whatever the target version) goes to the
//! image's site-packages, `bin` to its bin dir, anything else under the prefix
//! (data files) to the same place under the image's prefix; console scripts
//! get the image interpreter's shebang and RECORD files stay true.

pub use super::uv::{
    command, install, packages_not_found, packages_without_wheels, wheels_command, InstallReport,
    UvInstall,
};
use super::wheelfix::{fix_staging, read_capped};
use super::{normalise, Entry, EntryKind, Owner};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the image's interpreter lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonLayout {
    /// e.g. `/usr/local/lib/python3.13/site-packages`.
    pub site_packages: String,
    /// e.g. `/usr/local/bin`.
    pub bin_dir: String,
    /// e.g. `/usr/local/bin/python3.13` (console scripts' shebang).
    pub interpreter: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SitePackagesError {
    #[error(
        "no wheel of {} for `{platform}` (Python {python_version}); pick versions that \
         ship one, or set `allow_sdist = true` to build on the host\n{detail}",
        packages.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    )]
    NoWheel {
        packages: Vec<String>,
        platform: String,
        python_version: String,
        /// uv's explanation.
        detail: String,
    },
    #[error(
        "{} not in the wheel dirs ({}) and the build is offline\n{detail}",
        packages.iter().map(|p| format!("`{p}` is")).collect::<Vec<_>>().join(", "),
        find_links.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
    )]
    NotInFindLinks {
        packages: Vec<String>,
        find_links: Vec<String>,
        /// uv's explanation.
        detail: String,
    },
    #[error("`uv pip install` failed ({status}):\n{stderr}")]
    Uv { status: String, stderr: String },
    #[error("could not run `{}`", uv.display())]
    UvNotRunnable {
        uv: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("staging dir `{}` is not empty", .0.display())]
    StagingNotEmpty(PathBuf),
    #[error("unexpected layout in staging dir: {0}")]
    Layout(String),
    #[error("`{path}` is a {kind}, which cannot be put in an image layer")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("file name `{}` is not valid UTF-8", .0.display())]
    NonUtf8Name(PathBuf),
    #[error("an installed file is named `{0}`: names starting with `.wh.` delete files of the layers below")]
    WhiteoutName(String),
    #[error("reading `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SitePackagesError + '_ {
    move |source| SitePackagesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Maps the staging prefix onto `layout`, fixing scripts and RECORDs in place
/// first. Entries under site-packages, bin and the prefix get `owner`; the
/// directories above them are root-owned (mode 0755). Fails if the staging
/// dir's path remains in any file.
pub fn collect(
    staging: &Path,
    layout: &PythonLayout,
    owner: Owner,
) -> Result<Vec<Entry>, SitePackagesError> {
    let site_rel = find_site_dir(staging)?;
    let map = PathMap::new(layout, site_rel.as_deref());
    let changes = fix_staging(staging, site_rel.as_deref(), &layout.interpreter)
        .map_err(|(path, source)| SitePackagesError::Io { path, source })?;

    let mut entries = Vec::new();
    let mut walk = walkdir::WalkDir::new(staging)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(item) = walk.next() {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(staging).to_path_buf();
            SitePackagesError::Io {
                path,
                source: e.into(),
            }
        })?;
        let path = item.path();
        let rel = path.strip_prefix(staging).expect("walk stays in its root");
        let file_type = item.file_type();
        if dropped(rel, file_type.is_dir()) || changes.dropped.contains(rel) {
            if file_type.is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let rel_str = rel
            .to_str()
            .ok_or_else(|| SitePackagesError::NonUtf8Name(path.to_path_buf()))?;
        let Some(image_path) = map.image_path(rel_str)? else {
            continue;
        };
        if item.file_name().as_encoded_bytes().starts_with(b".wh.") {
            return Err(SitePackagesError::WhiteoutName(image_path));
        }
        let meta = item.metadata().map_err(|e| SitePackagesError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let (kind, mode) = kind_and_mode(path, file_type, &meta)?;
        entries.push(Entry {
            path: image_path,
            kind,
            mode,
            owner,
        });
    }
    // Whether a file still names the staging dir is checked as the layer
    // is packed (each byte is read once): see `host_paths`.
    Ok(normalise(entries, Owner::default()))
}

/// An installed file's entry kind and mode; anything but a file, dir or
/// symlink is refused.
fn kind_and_mode(
    path: &Path,
    file_type: std::fs::FileType,
    meta: &std::fs::Metadata,
) -> Result<(EntryKind, u32), SitePackagesError> {
    Ok(if file_type.is_dir() {
        (EntryKind::Dir, 0o755)
    } else if file_type.is_file() {
        let exec = meta.permissions().mode() & 0o111 != 0;
        let kind = EntryKind::File {
            source: path.to_path_buf(),
            size: meta.len(),
            listed: None,
        };
        (kind, if exec { 0o755 } else { 0o644 })
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(path).map_err(io_error(path))?;
        let target = target
            .to_str()
            .ok_or_else(|| SitePackagesError::NonUtf8Name(path.to_path_buf()))?;
        let kind = EntryKind::Symlink {
            target: target.to_string(),
        };
        (kind, 0o777)
    } else {
        return Err(SitePackagesError::SpecialFile {
            path: path.to_path_buf(),
            kind: if file_type.is_fifo() {
                "FIFO"
            } else {
                "special file"
            },
        });
    })
}

/// One `*.dist-info` dir of an install: its METADATA headers (up to the
/// first blank line, from at most its first MiB, as text) and its RECORD's
/// digest. Read from the staging dir when the layer is written and kept
/// beside it (see [`dist_info_key`]), so the SBOM need not decompress the
/// layer to find them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DistInfo {
    /// The dir's path in the layer (no leading slash).
    pub dir: String,
    pub metadata: String,
    pub record: crate::digest::Digest,
}

/// METADATA bytes read: its headers come first (a long description follows).
const METADATA_LIMIT: u64 = 1 << 20;

/// Where a layer's [`DistInfo`]s are kept in the cache's facts.
pub fn dist_info_key(layer: &crate::digest::Digest) -> crate::digest::Digest {
    crate::digest::Digest::of(format!("dist-info\n{layer}").as_bytes())
}

/// The dist-info files among a layer's files, gathered as they go by
/// (from a layer's tar or from the files it is packed from).
#[derive(Default)]
pub struct DistInfoFiles {
    metadata: std::collections::BTreeMap<String, String>,
    records: std::collections::BTreeMap<String, crate::digest::Digest>,
}

impl DistInfoFiles {
    /// Reads the file at layer path `path` (opened by `open`, only if it is
    /// one) when it is a METADATA or RECORD directly in a `*.dist-info` dir.
    pub fn add<R: std::io::Read>(
        &mut self,
        path: &str,
        open: impl FnOnce() -> std::io::Result<R>,
    ) -> std::io::Result<()> {
        use std::io::Read as _;
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let Some((dir, file)) = path.rsplit_once('/') else {
            return Ok(());
        };
        if !dir.ends_with(".dist-info") || dir.contains(".dist-info/") {
            return Ok(());
        }
        match file {
            "METADATA" => {
                let mut bytes = Vec::new();
                open()?.take(METADATA_LIMIT).read_to_end(&mut bytes)?;
                let text = metadata_headers(&String::from_utf8_lossy(&bytes));
                self.metadata.insert(dir.to_string(), text);
            }
            "RECORD" => {
                let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
                std::io::copy(&mut open()?, &mut hashing)?;
                self.records.insert(dir.to_string(), hashing.finish().1);
            }
            _ => {}
        }
        Ok(())
    }

    /// The dirs that hold both a METADATA and a RECORD, sorted by dir.
    pub fn finish(mut self) -> Vec<DistInfo> {
        self.metadata
            .into_iter()
            .filter_map(|(dir, metadata)| {
                let record = self.records.remove(&dir)?;
                Some(DistInfo {
                    dir,
                    metadata,
                    record,
                })
            })
            .collect()
    }
}

/// The METADATA headers: the lines before the first empty one.
fn metadata_headers(text: &str) -> String {
    let mut headers = String::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        headers.push_str(line);
        headers.push('\n');
    }
    headers
}

/// The dist-info dirs among `entries` (a layer's, files on disk).
pub fn dist_infos(entries: &[Entry]) -> std::io::Result<Vec<DistInfo>> {
    let mut files = DistInfoFiles::default();
    for entry in entries {
        if let EntryKind::File { source, .. } = &entry.kind {
            files.add(&entry.path, || std::fs::File::open(source))?;
        }
    }
    Ok(files.finish())
}

/// The paths no installed file may still name (a script or record uv wrote
/// with the staging dir in it): the layer's writer refuses those files
/// (`tarball::Checks::host_paths`).
pub fn host_paths(staging: &Path) -> Vec<String> {
    let mut paths = vec![staging.to_string_lossy().into_owned()];
    if let Ok(canonical) = staging.canonicalize() {
        paths.push(canonical.to_string_lossy().into_owned());
    }
    paths.dedup();
    paths
}

/// An installed file a wheel puts in the interpreter's own directories
/// (through its `.data/data` or `.data/headers`): it replaces or shadows the
/// base's Python, e.g. a `lib/python3.13/os.py` of its own.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterpreterFile {
    /// Image path, no leading slash.
    pub path: String,
    /// The distribution (`name version`) whose RECORD lists it, when one does.
    pub dist: Option<String>,
}

/// The entries (from [`collect`] on `staging`) that land in the standard
/// library, the interpreter's include dir, `libpython*` or `bin/python*`.
/// Scripts and site-packages are a wheel's to write; these are the base's.
pub fn interpreter_files(
    staging: &Path,
    layout: &PythonLayout,
    entries: &[Entry],
) -> Result<Vec<InterpreterFile>, SitePackagesError> {
    let site = layout.site_packages.trim_matches('/');
    let Some(stdlib) = site.strip_suffix("/site-packages") else {
        return Ok(Vec::new());
    };
    let Some((lib, python_dir)) = stdlib.rsplit_once('/') else {
        return Ok(Vec::new());
    };
    let prefix = lib.strip_suffix("lib").unwrap_or(lib);
    let include = format!("{prefix}include/{python_dir}");
    let libpython = format!("{lib}/lib{python_dir}");
    let bin_python = format!("{}/python", layout.bin_dir.trim_matches('/'));
    let under = |path: &str, dir: &str| path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    let paths: Vec<&str> = entries
        .iter()
        .filter(|e| !matches!(e.kind, EntryKind::Dir))
        .map(|e| e.path.as_str())
        .filter(|p| {
            (under(p, stdlib) && !under(p, site))
                || under(p, &include)
                || p.starts_with(&libpython)
                || p.starts_with(&bin_python)
        })
        .collect();
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let owners = record_owners(staging, layout)?;
    Ok(paths
        .into_iter()
        .map(|path| InterpreterFile {
            path: path.to_string(),
            dist: owners.get(path).cloned(),
        })
        .collect())
}

/// Image path → the `.dist-info` (name without the suffix) whose RECORD
/// lists it, for the files RECORDs place outside site-packages (`../`).
fn record_owners(
    staging: &Path,
    layout: &PythonLayout,
) -> Result<std::collections::BTreeMap<String, String>, SitePackagesError> {
    let mut owners = std::collections::BTreeMap::new();
    let Some(site_rel) = find_site_dir(staging)? else {
        return Ok(owners);
    };
    let map = PathMap::new(layout, Some(&site_rel));
    let site = staging.join(&site_rel);
    for entry in std::fs::read_dir(&site).map_err(io_error(&site))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(dist) = name.strip_suffix(".dist-info") else {
            continue;
        };
        let record = entry.path().join("RECORD");
        let Ok(bytes) = read_capped(&record) else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let listed = line.split(',').next().unwrap_or("");
            if !listed.starts_with("../") {
                continue;
            }
            // Resolved lexically: the path need not exist, and `..` never
            // climbs above the staging dir.
            let staged = super::wheelfix::join_relative(site_rel.to_str().unwrap_or(""), listed);
            if let Ok(Some(image_path)) = map.image_path(&staged) {
                // `name-version` → `name version`
                let dist = dist
                    .rsplit_once('-')
                    .map_or(dist.to_string(), |(n, v)| format!("{n} {v}"));
                owners.insert(image_path, dist);
            }
        }
    }
    Ok(owners)
}

/// `lib/pythonX.Y/site-packages` relative to `staging`, if anything was installed.
fn find_site_dir(staging: &Path) -> Result<Option<PathBuf>, SitePackagesError> {
    let lib = staging.join("lib");
    if !lib.exists() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map_err(io_error(&lib))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| {
            PathBuf::from("lib")
                .join(e.file_name())
                .join("site-packages")
        })
        .filter(|rel| staging.join(rel).is_dir())
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(SitePackagesError::Layout(format!(
            "several site-packages dirs: {found:?}"
        ))),
    }
}

/// Staging-relative paths → image paths.
struct PathMap {
    /// `(staging prefix, image prefix)`, most specific first.
    rules: Vec<(String, String)>,
}

impl PathMap {
    fn new(layout: &PythonLayout, site_rel: Option<&Path>) -> PathMap {
        let site = layout.site_packages.trim_matches('/').to_string();
        let bin = layout.bin_dir.trim_matches('/').to_string();
        let mut rules = Vec::new();
        if let Some(site_rel) = site_rel {
            let site_rel = site_rel.to_string_lossy().into_owned();
            let python_rel = site_rel.trim_end_matches("/site-packages").to_string();
            rules.push((site_rel, site.clone()));
            if let Some((python_dir, _)) = site.rsplit_once('/') {
                rules.push((python_rel, python_dir.to_string()));
            }
        }
        rules.push(("bin".to_string(), bin));
        // Data files: the image prefix is site-packages minus `lib/pythonX.Y/site-packages`.
        let parts: Vec<&str> = site.split('/').collect();
        let n = parts.len();
        if n >= 3 && parts[n - 1] == "site-packages" && parts[n - 3] == "lib" {
            rules.push((String::new(), parts[..n - 3].join("/")));
        }
        PathMap { rules }
    }

    /// `Ok(None)` for the mapped dirs themselves and their ancestors (`lib`,
    /// `lib/pythonX.Y`, `bin`: normalise adds those, root-owned); an error
    /// for a path no rule places (data files when the image has no prefix).
    fn image_path(&self, rel: &str) -> Result<Option<String>, SitePackagesError> {
        for (from, to) in &self.rules {
            if rel == from || from.starts_with(&format!("{rel}/")) {
                return Ok(None);
            }
            let rest = if from.is_empty() {
                Some(rel)
            } else {
                rel.strip_prefix(from.as_str())
                    .and_then(|r| r.strip_prefix('/'))
            };
            if let Some(rest) = rest {
                return Ok(Some(if to.is_empty() {
                    rest.to_string()
                } else {
                    format!("{to}/{rest}")
                }));
            }
        }
        Err(SitePackagesError::Layout(format!(
            "no place in the image for `{rel}`: site-packages is not under `<prefix>/lib/pythonX.Y/`"
        )))
    }
}

/// Left out wherever they are: uv's lock, bytecode (compiled separately).
fn dropped(rel: &Path, is_dir: bool) -> bool {
    if rel == Path::new(".lock") {
        return true;
    }
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (is_dir && name == "__pycache__")
        || (!is_dir && (name.ends_with(".pyc") || name.ends_with(".pyo")))
}

#[cfg(test)]
#[path = "sitepackages_tests.rs"]
mod tests;
