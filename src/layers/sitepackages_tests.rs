use super::*;
use crate::layers::bytecode::find_python;
use crate::layers::wheelfix::record_hash;
use std::process::Command;

const LAYOUT_ROOT: &str = "usr/local/lib/python3.13/site-packages";

fn layout() -> PythonLayout {
    PythonLayout {
        site_packages: "/usr/local/lib/python3.13/site-packages".into(),
        bin_dir: "/usr/local/bin".into(),
        interpreter: "/usr/local/bin/python3.13".into(),
    }
}

fn spec(python: &Path, staging: &Path, platform: &str) -> UvInstall {
    UvInstall {
        uv: PathBuf::from("uv"),
        host_python: python.to_path_buf(),
        requirements: Vec::new(),
        require_hashes: false,
        wheels: Vec::new(),
        python_platform: platform.into(),
        python_version: "3.13".into(),
        index_url: None,
        extra_index_urls: Vec::new(),
        find_links: Vec::new(),
        offline: false,
        allow_sdist: false,
        staging: staging.to_path_buf(),
    }
}

#[test]
fn uv_unpacks_wheels_beside_the_staging_dir() {
    let staging = Path::new("/cache/tmp/build-1.d/site-packages7/staging");
    let spec = spec(Path::new("python3.13"), staging, "x86_64-manylinux_2_28");
    for cmd in [command(&spec), wheels_command(&spec)] {
        let tmpdir = cmd
            .get_envs()
            .find(|(k, _)| *k == "TMPDIR")
            .and_then(|(_, v)| v);
        assert_eq!(tmpdir, staging.parent().map(Path::as_os_str), "{cmd:?}");
    }
}

fn requirements(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("requirements.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn file_bytes(entries: &[Entry], path: &str) -> Vec<u8> {
    let entry = entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no entry `{path}`"));
    match &entry.kind {
        EntryKind::File { source, size, .. } => {
            let bytes = std::fs::read(source).unwrap();
            assert_eq!(bytes.len() as u64, *size, "{path}");
            bytes
        }
        other => panic!("{path} is {other:?}"),
    }
}

/// Builds `demo-1.0-py3-none-any.whl` (a console script, a data-dir script and
/// a data file) into `dir` with the given Python.
fn make_wheel(python: &Path, dir: &Path) {
    let script = r##"
import base64, hashlib, sys, zipfile
files = {
    "demo/__init__.py": "def main():\n    print('demo')\n",
    "demo-1.0.data/scripts/demo-tool": "#!python\nimport demo\ndemo.main()\n",
    "demo-1.0.data/data/share/demo/notes.txt": "notes\n",
    "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo = demo:main\n",
}
record = []
with zipfile.ZipFile(sys.argv[1] + "/demo-1.0-py3-none-any.whl", "w") as whl:
    for name, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
        whl.writestr(name, data)
    record.append("demo-1.0.dist-info/RECORD,,")
    whl.writestr("demo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"##;
    let status = Command::new(python)
        .args(["-I", "-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Offline install from a local wheelhouse, no network: console and data scripts point at the image's
/// interpreter whatever form uv wrote, and the result is the same bytes from a
/// plain host path, a spaced one (`/bin/sh` launcher) and a 3.11 host.
#[test]
fn offline_wheelhouse_install_maps_and_fixes_everything() {
    let python = find_python("3.13", None, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let wheelhouse = tmp.path().join("wheels");
    std::fs::create_dir(&wheelhouse).unwrap();
    make_wheel(&python, &wheelhouse);
    let spaced_dir = tmp.path().join("with space");
    std::fs::create_dir(&spaced_dir).unwrap();
    let spaced = spaced_dir.join("python3.13");
    std::os::unix::fs::symlink(&python, &spaced).unwrap();
    let reqs = requirements(tmp.path(), "demo==1.0\n");
    let py311 = python.parent().unwrap().parent().unwrap().parent().unwrap();
    let py311 = std::fs::read_dir(py311)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/python3.11"))
        .find(|p| p.exists());

    let mut hosts = vec![python.clone(), spaced.clone()];
    hosts.extend(py311);
    let mut results = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let staging = tmp.path().join(format!("stage{i}"));
        let mut spec = spec(host, &staging, "x86_64-unknown-linux-musl");
        spec.requirements = vec![reqs.clone()];
        spec.find_links = vec![wheelhouse.to_string_lossy().into_owned()];
        spec.offline = true;
        let report = install(&spec).unwrap();
        assert_eq!(report.packages, [("demo".to_string(), "1.0".to_string())]);
        if i == 1 {
            let raw = std::fs::read_to_string(staging.join("bin/demo")).unwrap();
            assert!(raw.starts_with("#!/bin/sh\n'''exec' "), "{raw}");
        }
        let raw_site = std::fs::read_dir(staging.join("lib")).unwrap().count();
        assert_eq!(raw_site, 1);

        let entries = collect(&staging, &layout(), Owner::default()).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"usr/local/bin/demo"), "{paths:?}");
        assert!(paths.contains(&"usr/local/bin/demo-tool"), "{paths:?}");
        assert!(
            paths.contains(&"usr/local/share/demo/notes.txt"),
            "{paths:?}"
        );
        assert!(paths.contains(&"usr/local/lib/python3.13/site-packages/demo/__init__.py"));
        assert!(!paths
            .iter()
            .any(|p| p.ends_with("uv_cache.json") || p.ends_with(".lock")));
        assert!(!paths.iter().any(|p| p.contains("python3.11")), "{paths:?}");
        assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted");

        let demo = file_bytes(&entries, "usr/local/bin/demo");
        assert!(demo.starts_with(b"#!/usr/local/bin/python3.13\n"));
        let tool = file_bytes(&entries, "usr/local/bin/demo-tool");
        assert_eq!(
            tool,
            b"#!/usr/local/bin/python3.13\nimport demo\ndemo.main()\n"
        );
        let record = file_bytes(
            &entries,
            &format!("{LAYOUT_ROOT}/demo-1.0.dist-info/RECORD"),
        );
        let record = String::from_utf8(record).unwrap();
        let line = format!("../../../bin/demo,{},{}", record_hash(&demo), demo.len());
        assert!(record.lines().any(|l| l == line), "{record}");
        assert!(!record.contains("uv_cache.json"), "{record}");

        let mut needles = vec![
            staging.to_string_lossy().into_owned(),
            host.to_string_lossy().into_owned(),
            python.to_string_lossy().into_owned(),
            tmp.path().to_string_lossy().into_owned(),
        ];
        needles.extend(std::fs::canonicalize(host).map(|p| p.to_string_lossy().into_owned()));
        assert_eq!(find_host_paths(&entries, &needles), Vec::<String>::new());
        // Collecting again (scripts already rewritten) gives the same result.
        assert_eq!(
            collect(&staging, &layout(), Owner::default()).unwrap(),
            entries
        );
        results.push(entries);
    }
    let contents = |entries: &[Entry]| -> Vec<(String, u32, Option<Vec<u8>>)> {
        entries
            .iter()
            .map(|e| {
                let bytes = match &e.kind {
                    EntryKind::File { source, .. } => Some(std::fs::read(source).unwrap()),
                    _ => None,
                };
                (e.path.clone(), e.mode, bytes)
            })
            .collect()
    };
    for other in &results[1..] {
        assert!(
            contents(&results[0]) == contents(other),
            "same layer from every host"
        );
    }
}

/// What uv writes without `--no-installer-metadata` (or with
/// `UV_COMPILE_BYTECODE`): dropped, with their RECORD lines.
#[test]
fn installer_leftovers_are_dropped_with_their_record_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("lib/python3.13/site-packages");
    let info = site.join("demo-1.0.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::create_dir_all(site.join("demo/__pycache__")).unwrap();
    std::fs::write(tmp.path().join(".lock"), "").unwrap();
    std::fs::write(site.join("demo/__init__.py"), "").unwrap();
    std::fs::write(site.join("demo/__pycache__/__init__.cpython-313.pyc"), "x").unwrap();
    std::fs::write(info.join("uv_cache.json"), r#"{"timestamp":1}"#).unwrap();
    std::fs::write(
        info.join("direct_url.json"),
        r#"{"url":"file:///wheels/demo.whl"}"#,
    )
    .unwrap();
    std::fs::write(info.join("INSTALLER"), "uv\n").unwrap();
    let record = "demo/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
                  demo/__pycache__/__init__.cpython-313.pyc,,\n\
                  demo-1.0.dist-info/INSTALLER,sha256=x,3\n\
                  demo-1.0.dist-info/direct_url.json,sha256=y,33\n\
                  demo-1.0.dist-info/uv_cache.json,sha256=z,15\n\
                  demo-1.0.dist-info/RECORD,,\n";
    std::fs::write(info.join("RECORD"), record).unwrap();
    let entries = collect(tmp.path(), &layout(), Owner { uid: 7, gid: 8 }).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "usr",
            "usr/local",
            "usr/local/lib",
            "usr/local/lib/python3.13",
            LAYOUT_ROOT,
            "usr/local/lib/python3.13/site-packages/demo",
            "usr/local/lib/python3.13/site-packages/demo-1.0.dist-info",
            "usr/local/lib/python3.13/site-packages/demo-1.0.dist-info/INSTALLER",
            "usr/local/lib/python3.13/site-packages/demo-1.0.dist-info/RECORD",
            "usr/local/lib/python3.13/site-packages/demo/__init__.py",
        ]
    );
    assert_eq!(
        entries[4].owner,
        Owner::default(),
        "site-packages itself: root"
    );
    assert_eq!(entries[5].owner, Owner { uid: 7, gid: 8 });
    let record = file_bytes(
        &entries,
        &format!("{LAYOUT_ROOT}/demo-1.0.dist-info/RECORD"),
    );
    assert_eq!(
        String::from_utf8(record).unwrap(),
        "demo/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
         demo-1.0.dist-info/INSTALLER,sha256=x,3\n\
         demo-1.0.dist-info/RECORD,,\n"
    );
}

#[test]
fn a_leftover_staging_path_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("lib/python3.13/site-packages/pkg");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("paths.pth"),
        format!("{}/src\n", tmp.path().display()),
    )
    .unwrap();
    let entries = collect(tmp.path(), &layout(), Owner::default()).unwrap();
    // Refused as the layer is packed.
    let checks = crate::layers::tarball::Checks {
        host_paths: host_paths(tmp.path()),
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let err = crate::layers::tarball::write_layer_checked(
        &entries,
        0,
        &out.path().join("l.tgz"),
        &checks,
    )
    .unwrap_err();
    let leak = crate::layers::tarball::HostPathLeak::of(&err).expect("a host path leak");
    assert_eq!(leak.0, [format!("{LAYOUT_ROOT}/pkg/paths.pth")]);
}

#[test]
fn resolver_errors_name_the_packages() {
    let sdist_only = "error: No solution found when resolving dependencies\n  cause: Because \
        pyyaml==5.3 has no usable wheels and you require pyyaml==5.3, we can conclude that your \
        requirements are unsatisfiable.\n\nhint: Wheels are required for `pyyaml` because \
        building from source is disabled for all packages (i.e., with `--no-build`)";
    assert_eq!(packages_without_wheels(sdist_only), ["pyyaml"]);
    let all = "cause: Because all versions of psycopg2 have no usable wheels and you require \
        psycopg2, we can conclude...";
    assert_eq!(packages_without_wheels(all), ["psycopg2"]);
    let platform = "cause: Because torch==2.5.0 has no wheels with a matching platform tag \
        (e.g., `musllinux_1_2_x86_64`) and you require torch==2.5.0, ...\n\nhint: Wheels are \
        available for `torch` (v2.5.0) on the following platform: `manylinux1_x86_64`";
    assert_eq!(packages_without_wheels(platform), ["torch"]);
    assert!(packages_without_wheels("error: Failed to fetch: `https://x`").is_empty());
}

/// Real uv and PyPI: a package with only an sdist, and one with only
/// manylinux wheels while the target is musllinux.
#[test]
fn missing_wheels_for_the_target_are_reported_by_name() {
    let python = find_python("3.13", None, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (req, name) in [("pyyaml==5.3\n", "pyyaml"), ("torch==2.5.0\n", "torch")] {
        let mut spec = spec(&python, &tmp.path().join(name), "x86_64-unknown-linux-musl");
        spec.requirements = vec![requirements(tmp.path(), req)];
        match install(&spec) {
            Err(e @ SitePackagesError::NoWheel { .. }) => {
                let SitePackagesError::NoWheel { ref packages, .. } = e else {
                    unreachable!()
                };
                assert_eq!(packages, &[name.to_string()]);
                let text = e.to_string();
                assert!(text.contains("x86_64-unknown-linux-musl"), "{text}");
                assert!(text.contains(&format!("`{name}`")), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Other failures carry uv's text.
    let mut spec = spec(
        &python,
        &tmp.path().join("bad"),
        "x86_64-unknown-linux-musl",
    );
    spec.requirements = vec![tmp.path().join("missing.txt")];
    match install(&spec) {
        Err(SitePackagesError::Uv { stderr, .. }) => assert!(stderr.contains("missing.txt")),
        other => panic!("{other:?}"),
    }
}

/// ELF `e_machine` of a shared object.
fn elf_machine(bytes: &[u8]) -> u16 {
    assert_eq!(&bytes[..4], b"\x7fELF");
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// Real uv and PyPI: FastAPI + uvicorn for two musl targets.
#[test]
fn fastapi_for_musl_on_two_architectures() {
    let python = find_python("3.13", None, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let reqs = requirements(tmp.path(), "fastapi\nuvicorn\n");
    for (platform, arch, machine) in [
        ("x86_64-unknown-linux-musl", "x86_64", 0x3e),
        ("aarch64-unknown-linux-musl", "aarch64", 0xb7),
    ] {
        let staging = tmp.path().join(arch);
        let mut spec = spec(&python, &staging, platform);
        spec.requirements = vec![reqs.clone()];
        let report = install(&spec).unwrap();
        assert!(report.packages.iter().any(|(n, _)| n == "pydantic-core"));
        let entries = collect(&staging, &layout(), Owner::default()).unwrap();

        let wheel = entries
            .iter()
            .find(|e| e.path.contains("/pydantic_core-") && e.path.ends_with(".dist-info/WHEEL"))
            .unwrap();
        let wheel = String::from_utf8(file_bytes(&entries, &wheel.path)).unwrap();
        let tag = wheel.lines().find(|l| l.starts_with("Tag: ")).unwrap();
        assert!(tag.contains("cp313") && tag.contains("musllinux_"), "{tag}");
        assert!(tag.ends_with(&format!("_{arch}")), "{tag}");

        let objects: Vec<&Entry> = entries.iter().filter(|e| e.path.ends_with(".so")).collect();
        assert!(!objects.is_empty());
        for so in objects {
            assert_eq!(
                elf_machine(&file_bytes(&entries, &so.path)),
                machine,
                "{}",
                so.path
            );
        }
        let uvicorn = file_bytes(&entries, "usr/local/bin/uvicorn");
        assert!(uvicorn.starts_with(b"#!/usr/local/bin/python3.13\n"));
        assert!(!entries.iter().any(|e| e.path.contains("__pycache__")));

        let needles = [
            staging.to_string_lossy().into_owned(),
            python.to_string_lossy().into_owned(),
            python
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        ];
        assert_eq!(find_host_paths(&entries, &needles), Vec::<String>::new());
    }
}

/// Data files in the interpreter's own dirs are found and named by the
/// RECORD that lists them; site-packages, scripts and other data files are not.
#[test]
fn interpreter_files_are_the_ones_in_the_interpreters_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("lib/python3.11/site-packages");
    let info = site.join("odd_pkg-2.0.dist-info");
    std::fs::create_dir_all(site.join("odd_pkg")).unwrap();
    std::fs::create_dir_all(&info).unwrap();
    for dir in ["bin", "include/python3.13", "share/doc"] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
    }
    for file in [
        "lib/python3.11/site-packages/odd_pkg/__init__.py",
        "lib/python3.11/os.py",
        "bin/python3",
        "bin/odd-tool",
        "include/python3.13/Python.h",
        "share/doc/README",
    ] {
        std::fs::write(tmp.path().join(file), "").unwrap();
    }
    std::fs::write(
        info.join("RECORD"),
        "odd_pkg/__init__.py,,\n../os.py,,\n../../../bin/python3,,\n../../../share/doc/README,,\n",
    )
    .unwrap();
    let entries = collect(tmp.path(), &layout(), Owner::default()).unwrap();
    let found = interpreter_files(tmp.path(), &layout(), &entries).unwrap();
    let dist = |d: &str| Some(d.to_string());
    assert_eq!(
        found,
        [
            InterpreterFile {
                path: "usr/local/bin/python3".into(),
                dist: dist("odd_pkg 2.0")
            },
            InterpreterFile {
                path: "usr/local/include/python3.13/Python.h".into(),
                dist: None
            },
            InterpreterFile {
                path: "usr/local/lib/python3.13/os.py".into(),
                dist: dist("odd_pkg 2.0")
            },
        ]
    );
}

/// Entry paths whose file bytes (or symlink target) contain any of `needles`,
/// e.g. the staging dir or the host interpreter's path: what the layer
/// writer refuses.
fn find_host_paths(entries: &[Entry], needles: &[String]) -> Vec<String> {
    use crate::layers::tarball;
    let out = tempfile::tempdir().unwrap();
    let checks = tarball::Checks {
        host_paths: needles.to_vec(),
        ..Default::default()
    };
    match tarball::write_layer_checked(entries, 0, &out.path().join("l.tgz"), &checks) {
        Ok(_) => Vec::new(),
        Err(e) => tarball::HostPathLeak::of(&e)
            .expect("only a leak")
            .0
            .clone(),
    }
}
