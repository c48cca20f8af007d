//! Shared libraries an image's Python extension modules need (ELF DT_NEEDED)
//! that nothing in the image provides: not the module's RUNPATH/RPATH, not its
//! wheel's bundled libraries (`SITE/*.libs/`, what auditwheel vendors), not
//! the system library dirs. Such a module fails at import (`ImportError:
//! libstdc++.so.6: cannot open shared object file`), e.g. numpy's manylinux
//! wheel on a base without libstdc++6.
//!
//! ELF parsing is goblin's; this module only resolves names against a file list.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// An extension module's dynamic-linking needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfNeeds {
    /// DT_NEEDED names.
    pub needed: Vec<String>,
    /// DT_RUNPATH then DT_RPATH directories (may hold `$ORIGIN`).
    pub search: Vec<String>,
}

/// A library a module needs that the image lacks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MissingLib {
    /// The module's path in the image (`/usr/local/lib/…/x.so`).
    pub module: String,
    /// The DT_NEEDED name (`libstdc++.so.6`).
    pub library: String,
}

/// Largest shared object read to learn its needs (bounded memory).
pub const MAX_MODULE_BYTES: u64 = 512 << 20;

/// Whether `path` (normalised, no leading `/`) is a compiled extension module
/// to check: a shared object in a site dir, not one of a wheel's bundled libs.
pub fn is_extension_module(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    (name.ends_with(".so") || name.contains(".so."))
        && site_dir_of(path).is_some()
        && !path.split('/').any(|part| part.ends_with(".libs"))
}

/// The needs of an ELF shared object; None when `bytes` is not ELF.
pub fn elf_needs(bytes: &[u8]) -> Option<ElfNeeds> {
    let elf = goblin::elf::Elf::parse(bytes).ok()?;
    let split = |paths: &[&str]| -> Vec<String> {
        paths
            .iter()
            .flat_map(|p| p.split(':'))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut search = split(&elf.runpaths);
    search.extend(split(&elf.rpaths));
    Some(ElfNeeds {
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        search,
    })
}

/// Dirs the dynamic loader searches by default (and the image's own
/// /usr/local/lib, where the official images put libpython).
const LIB_DIRS: &[&str] = &["lib", "lib64", "usr/lib", "usr/lib64", "usr/local/lib"];

/// The file names the loader finds without help: files (or links) directly
/// in a library dir or in its multiarch subdir (`usr/lib/x86_64-linux-gnu`).
pub fn system_libraries<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for path in paths {
        let Some((dir, name)) = path.rsplit_once('/') else {
            continue;
        };
        let in_lib_dir = LIB_DIRS.contains(&dir)
            || dir
                .rsplit_once('/')
                .is_some_and(|(parent, sub)| LIB_DIRS.contains(&parent) && sub.contains("-linux-"));
        if in_lib_dir {
            names.insert(name.to_string());
        }
    }
    names
}

/// `path` with `.` and `..` resolved (no leading `/`).
fn normalise(path: &str) -> String {
    crate::layers::wheelfix::join_relative("", path)
}

/// An image's files (all layers, whiteouts applied), and the names of the
/// libraries wheels bundle in `SITE/NAME.libs/`.
#[derive(Default, Debug)]
pub struct FileList {
    paths: BTreeSet<String>,
    /// `(SITE, NAME)` for every file in a `.libs` dir of a site dir.
    bundled: BTreeSet<(String, String)>,
}

impl FileList {
    pub fn insert(&mut self, path: &str) {
        if let Some(site) = site_dir_of(path) {
            let rest = &path[site.len()..];
            let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
            if parts.len() == 2 && parts[0].ends_with(".libs") {
                self.bundled
                    .insert((site.to_string(), parts[1].to_string()));
            }
        }
        self.paths.insert(path.to_string());
    }

    pub fn has(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// What `modules` (path → needs) need that these files lack. Sorted.
    pub fn missing(&self, modules: &BTreeMap<String, ElfNeeds>) -> Vec<MissingLib> {
        let system = system_libraries(self.paths());
        let mut out = Vec::new();
        for (module, needs) in modules {
            let origin = module.rsplit_once('/').map_or("", |(d, _)| d);
            let site = site_dir_of(module);
            for lib in &needs.needed {
                let provided = if lib.contains('/') {
                    self.has(&normalise(lib))
                } else {
                    system.contains(lib)
                        || needs.search.iter().any(|dir| {
                            let dir = dir.replace("${ORIGIN}", origin).replace("$ORIGIN", origin);
                            self.has(&normalise(&format!("{dir}/{lib}")))
                        })
                        || site.is_some_and(|site| {
                            self.bundled.contains(&(site.to_string(), lib.clone()))
                        })
                };
                if !provided {
                    out.push(MissingLib {
                        module: format!("/{module}"),
                        library: lib.clone(),
                    });
                }
            }
        }
        out.sort();
        out
    }
}

/// The `.../site-packages` (or `dist-packages`) dir a path lies in.
pub fn site_dir_of(path: &str) -> Option<&str> {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = path.find(marker) {
            return Some(&path[..i + marker.len() - 1]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "usr/local/lib/python3.13/site-packages";

    fn needs(libs: &[&str], search: &[&str]) -> ElfNeeds {
        ElfNeeds {
            needed: libs.iter().map(|s| s.to_string()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn extension_modules_are_shared_objects_in_site_dirs_outside_bundled_libs() {
        assert!(is_extension_module(&format!(
            "{SITE}/numpy/_core/_multiarray_umath.cpython-313-x86_64-linux-gnu.so"
        )));
        assert!(is_extension_module(&format!(
            "{SITE}/greenlet/_greenlet.abi3.so"
        )));
        assert!(!is_extension_module(&format!(
            "{SITE}/numpy.libs/libscipy_openblas64_-ff651d7f.so"
        )));
        assert!(!is_extension_module(
            "usr/lib/x86_64-linux-gnu/libstdc++.so.6"
        ));
        assert!(!is_extension_module(&format!("{SITE}/numpy/__init__.py")));
    }

    #[test]
    fn libraries_are_found_in_lib_dirs_runpaths_and_bundled_dirs() {
        let mut files = FileList::default();
        for p in [
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            "lib/ld-musl-x86_64.so.1",
            "usr/local/lib/libpython3.13.so.1.0",
            &format!("{SITE}/numpy.libs/libscipy_openblas64_-ff651d7f.so"),
            &format!("{SITE}/pkg/vendored/libfoo.so.1"),
            "opt/elsewhere/libbar.so",
        ] {
            files.insert(p);
        }
        let module = format!("{SITE}/numpy/_core/_multiarray_umath.so");
        let mut modules = BTreeMap::new();
        modules.insert(
            module.clone(),
            needs(
                &[
                    "libc.so.6",
                    "libpython3.13.so.1.0",
                    "libscipy_openblas64_-ff651d7f.so",
                    "libfoo.so.1",
                    "libstdc++.so.6",
                    "libbar.so",
                ],
                &["$ORIGIN/../../pkg/vendored"],
            ),
        );
        assert_eq!(
            files.missing(&modules),
            vec![
                MissingLib {
                    module: format!("/{module}"),
                    library: "libbar.so".into()
                },
                MissingLib {
                    module: format!("/{module}"),
                    library: "libstdc++.so.6".into()
                },
            ]
        );
    }

    #[test]
    fn multiarch_subdirs_count_but_arbitrary_subdirs_do_not() {
        let names = system_libraries([
            "usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "usr/lib/python3/libnot.so",
            "lib/libc.musl-x86_64.so.1",
        ]);
        assert!(names.contains("libstdc++.so.6"));
        assert!(names.contains("libc.musl-x86_64.so.1"));
        assert!(!names.contains("libnot.so"));
    }

    #[test]
    fn elf_needs_reads_a_real_shared_object_and_rejects_other_bytes() {
        // The test binary's own libc: a real ELF with DT_NEEDED entries.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = elf_needs(&exe).expect("the test executable is ELF");
        assert!(
            needs.needed.iter().any(|n| n.starts_with("libc.so")),
            "{needs:?}"
        );
        assert_eq!(elf_needs(b"#!/bin/sh\necho not elf\n"), None);
    }
}
