//! Which Python distributions weigh what: the image's files (all layers,
//! whiteouts applied) under each `site-packages`, assigned to distributions by
//! their `*.dist-info/RECORD`; bytecode to the distribution of its source, and
//! anything left to the distribution owning its top-level package.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One file of the merged file system.
#[derive(Clone, Debug)]
pub struct FileInfo {
    pub size: u64,
    pub layer: usize,
}

/// The image's file system as the layers build it up (regular files only).
#[derive(Default, Debug)]
pub struct MergedFs {
    pub files: BTreeMap<String, FileInfo>,
    /// `SITE/NAME-VERSION.dist-info` → RECORD text.
    pub records: BTreeMap<String, String>,
    /// Extension modules → the shared libraries they need.
    pub elf: BTreeMap<String, crate::sharedlibs::ElfNeeds>,
}

impl MergedFs {
    /// `path` without a leading `./` or `/` and without a trailing `/`.
    pub fn normalise(path: &str) -> String {
        path.trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string()
    }

    /// Applies a whiteout entry (`.wh.NAME` or the opaque `.wh..wh..opq`) of layer `layer`.
    /// Returns false when `path` is not a whiteout.
    pub fn whiteout(&mut self, path: &str, layer: usize) -> bool {
        let Some(whiteout) = crate::oci::Whiteout::of(path) else {
            return false;
        };
        self.files
            .retain(|p, f| !whiteout.hides(p, f.layer < layer));
        // Records are re-read each layer: an opaque dir hides all of them.
        self.records.retain(|p, _| !whiteout.hides(p, true));
        let files = &self.files;
        self.elf.retain(|p, _| files.contains_key(p));
        true
    }

    pub fn add_file(&mut self, path: String, size: u64, layer: usize) {
        self.files.insert(path, FileInfo { size, layer });
    }

    /// Whether the content of `path` is wanted (a RECORD in a site dir).
    pub fn wants_content(path: &str) -> bool {
        path.ends_with(".dist-info/RECORD") && site_dir_of(path).is_some()
    }

    /// Records (or forgets, for `None`: not ELF) what extension module `path` needs.
    pub fn set_elf(&mut self, path: &str, needs: Option<crate::sharedlibs::ElfNeeds>) {
        match needs {
            Some(needs) => self.elf.insert(path.to_string(), needs),
            None => self.elf.remove(path),
        };
    }

    /// The shared libraries extension modules need that no file provides.
    pub fn missing_libraries(&self) -> Vec<crate::sharedlibs::MissingLib> {
        let mut files = crate::sharedlibs::FileList::default();
        for path in self.files.keys() {
            files.insert(path);
        }
        files.missing(&self.elf)
    }

    pub fn add_record(&mut self, path: &str, text: String) {
        if let Some(dist_info) = path.strip_suffix("/RECORD") {
            self.records.insert(dist_info.to_string(), text);
        }
    }
}

pub use crate::layers::wheelfix::{join_relative, record_paths};
pub use crate::sharedlibs::site_dir_of;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Distribution {
    pub name: String,
    pub version: String,
    /// Bytes of its files (uncompressed), bytecode included.
    pub size: u64,
    /// Of which `.pyc`.
    pub bytecode_size: u64,
    pub files: usize,
    /// Indexes of the layers its files are in.
    pub layers: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Breakdown {
    pub site_packages: Vec<String>,
    /// Every file under the site dirs plus the scripts RECORDs name elsewhere.
    pub total_size: u64,
    /// Heaviest first.
    pub distributions: Vec<Distribution>,
    /// Files no distribution claims.
    pub unowned_size: u64,
    pub unowned_files: usize,
}

/// Splits `fastapi-0.165.0.dist-info` into (`fastapi`, `0.165.0`).
fn name_version(dist_info: &str) -> (String, String) {
    let base = dist_info.rsplit('/').next().unwrap_or(dist_info);
    let base = base.trim_end_matches(".dist-info");
    match base.split_once('-') {
        Some((n, v)) => (n.to_string(), v.to_string()),
        None => (base.to_string(), String::new()),
    }
}

/// `pkg/__pycache__/mod.cpython-313.pyc` → `pkg/mod.py`.
fn source_of_pyc(path: &str) -> Option<String> {
    let (dir, file) = path.rsplit_once("/__pycache__/")?;
    let stem = file.strip_suffix(".pyc")?;
    let module = stem.split('.').next()?;
    Some(format!("{dir}/{module}.py"))
}

/// The installed distributions, and who owns what: each file its RECORD
/// lists, and each top-level name under site-packages (index into `dists`).
struct Owners {
    dists: Vec<Distribution>,
    owner: BTreeMap<String, usize>,
    top_level: BTreeMap<String, usize>,
}

fn owners(fs: &MergedFs) -> Owners {
    let mut dists: Vec<Distribution> = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut top_level: BTreeMap<String, usize> = BTreeMap::new();
    for (dist_info, record) in &fs.records {
        let Some(site) = site_dir_of(&format!("{dist_info}/")).map(str::to_string) else {
            continue;
        };
        let (name, version) = name_version(dist_info);
        let i = dists.len();
        dists.push(Distribution {
            name,
            version,
            size: 0,
            bytecode_size: 0,
            files: 0,
            layers: Vec::new(),
        });
        owner.insert(format!("{dist_info}/RECORD"), i);
        for relative in record_paths(record) {
            let path = join_relative(&site, &relative);
            if let Some(inside) = path.strip_prefix(&format!("{site}/")) {
                if let Some((top, _)) = inside.split_once('/') {
                    if !top.ends_with(".dist-info") && top != "__pycache__" && top != ".." {
                        top_level.entry(format!("{site}/{top}")).or_insert(i);
                    }
                }
            }
            owner.insert(path, i);
        }
    }
    Owners {
        dists,
        owner,
        top_level,
    }
}

/// The size breakdown, or None when the image has no site-packages.
pub fn breakdown(fs: &MergedFs) -> Option<Breakdown> {
    let sites: BTreeSet<&str> = fs.files.keys().filter_map(|p| site_dir_of(p)).collect();
    if sites.is_empty() {
        return None;
    }
    let Owners {
        mut dists,
        owner,
        top_level,
    } = owners(fs);
    let mut total = 0;
    let mut unowned_size = 0;
    let mut unowned_files = 0;
    let mut layers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); dists.len()];
    for (path, info) in &fs.files {
        let site = site_dir_of(path);
        let owned = owner.get(path).copied().or_else(|| {
            let site = site?;
            let by_source = source_of_pyc(path).and_then(|s| owner.get(&s).copied());
            by_source.or_else(|| {
                let inside = path.strip_prefix(&format!("{site}/"))?;
                let top = inside.split('/').next()?;
                top_level.get(&format!("{site}/{top}")).copied()
            })
        });
        match owned {
            Some(i) => {
                let d = &mut dists[i];
                d.size += info.size;
                d.files += 1;
                if path.ends_with(".pyc") {
                    d.bytecode_size += info.size;
                }
                layers[i].insert(info.layer);
            }
            None if site.is_some() => {
                unowned_size += info.size;
                unowned_files += 1;
            }
            None => continue,
        }
        total += info.size;
    }
    for (d, l) in dists.iter_mut().zip(layers) {
        d.layers = l.into_iter().collect();
    }
    dists.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    Some(Breakdown {
        site_packages: sites.into_iter().map(str::to_string).collect(),
        total_size: total,
        distributions: dists,
        unowned_size,
        unowned_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "usr/local/lib/python3.13/site-packages";

    fn fs() -> MergedFs {
        let mut fs = MergedFs::default();
        let files = [
            ("fastapi/__init__.py", 100, 1),
            ("fastapi/routing.py", 900, 1),
            ("fastapi-0.1.dist-info/RECORD", 50, 1),
            ("fastapi/__pycache__/routing.cpython-313.pyc", 700, 2),
            ("fastapi/new_untracked.py", 5, 1),
            ("pydantic_core/_core.so", 4000, 1),
            ("pydantic_core-2.0.dist-info/RECORD", 40, 1),
            ("stray.py", 3, 1),
        ];
        for (p, size, layer) in files {
            fs.add_file(format!("{SITE}/{p}"), size, layer);
        }
        fs.add_file("usr/local/bin/fastapi".into(), 10, 1);
        fs.add_file("usr/local/bin/python3".into(), 10, 0);
        fs.add_record(
            &format!("{SITE}/fastapi-0.1.dist-info/RECORD"),
            "fastapi/__init__.py,sha256=x,100\nfastapi/routing.py,sha256=y,900\n\"fastapi-0.1.dist-info/RECORD\",,\n../../../bin/fastapi,sha256=z,10\n".into(),
        );
        fs.add_record(
            &format!("{SITE}/pydantic_core-2.0.dist-info/RECORD"),
            "pydantic_core/_core.so,sha256=a,4000\n".into(),
        );
        fs
    }

    #[test]
    fn assigns_files_bytecode_and_scripts_to_distributions() {
        let b = breakdown(&fs()).unwrap();
        assert_eq!(b.site_packages, vec![SITE.to_string()]);
        let names: Vec<&str> = b.distributions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["pydantic_core", "fastapi"]);
        let fastapi = &b.distributions[1];
        assert_eq!(fastapi.version, "0.1");
        assert_eq!(fastapi.size, 100 + 900 + 50 + 700 + 5 + 10);
        assert_eq!(fastapi.bytecode_size, 700);
        assert_eq!(fastapi.layers, vec![1, 2]);
        assert_eq!(b.unowned_files, 1);
        assert_eq!(b.unowned_size, 3);
        assert_eq!(b.total_size, 4000 + 40 + 1765 + 3);
    }

    #[test]
    fn whiteouts_remove_files() {
        let mut fs = fs();
        assert!(fs.whiteout(&format!("{SITE}/.wh.pydantic_core"), 3));
        assert!(fs.whiteout(&format!("{SITE}/.wh.pydantic_core-2.0.dist-info"), 3));
        let b = breakdown(&fs).unwrap();
        assert_eq!(b.distributions.len(), 1);
        assert!(fs.whiteout(&format!("{SITE}/fastapi/.wh..wh..opq"), 3));
        assert!(!fs.files.contains_key(&format!("{SITE}/fastapi/routing.py")));
        assert!(!fs.whiteout("usr/bin/x", 3));
    }
}
