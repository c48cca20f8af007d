//! Hostile and unlucky local inputs (issue 11): the cache never holds a
//! layer whose bytes differ from its key, nothing escapes the source tree,
//! the base stays the base, and a huge installed file does not blow up
//! memory. Each case runs the real binary (or, where the timing cannot be
//! staged from outside, the library's own stages), and every failing case
//! leaves a valid cache (every blob hashes to its name) and no output.
//!
//! `tests/BAD_INPUT.md` ("Local inputs") lists each failing case with its message.

mod common;
#[path = "support/inputs.rs"]
mod inputs;

use common::skip_or_fail;
use inputs::{alpine_layout, assert_cache_whole, gunzip_if, run, sha256_hex, tar_paths, Work};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An app-only recipe on the committed alpine base; `app` is appended to `[app]`.
fn recipe(work: &Work, app: &str, image: &str) -> PathBuf {
    work.recipe(&format!(
        "base = \"python:3.13-alpine\"\n\n[app]\nsource = \"app\"\nbytecode = false\n{app}\n[image]\n{image}\n"
    ))
}

/// The image's manifest in an OCI layout (single platform).
fn manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    blob_json(layout, digest)
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The uncompressed tar of the image's last layer (the app layer here).
fn top_layer(layout: &Path) -> Vec<u8> {
    let manifest = manifest(layout);
    let layers = manifest["layers"].as_array().unwrap();
    let digest = layers.last().unwrap()["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    gunzip_if(std::fs::read(path).unwrap())
}

/// Asserts a failed build's exit code and message, that it wrote no output
/// and that the cache is whole; returns stderr.
fn assert_fails(work: &Work, out: &inputs::Outcome, code: i32, says: &[&str]) -> String {
    assert_eq!(out.code, Some(code), "stderr:\n{}", out.stderr);
    for s in says {
        assert!(
            out.stderr.contains(s),
            "stderr lacks `{s}`:\n{}",
            out.stderr
        );
    }
    assert!(!work.out().exists(), "an output was written");
    assert_cache_whole(&work.cache());
    out.stderr.clone()
}

/// The app layer's listing as its cache key sees it, read back from the
/// layer's tar: so a key can be recomputed from the bytes cached under it.
fn listing_of(tar_bytes: &[u8]) -> Vec<slipway::layers::plan::ListingLine> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut listing = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_string();
        let header = entry.header();
        let mode = header.mode().unwrap();
        let owner = slipway::layers::Owner {
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
        };
        let content = match header.entry_type() {
            tar::EntryType::Directory => "dir".to_string(),
            tar::EntryType::Symlink => format!(
                "symlink:{}",
                entry.link_name().unwrap().unwrap().to_string_lossy()
            ),
            _ => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                format!("sha256:{}", sha256_hex(&bytes))
            }
        };
        listing.push((path, mode, owner, content));
    }
    listing
}

/// Every `app-*` layer record in the cache names a blob whose tar gives back
/// exactly the record's key.
fn assert_app_layers_match_their_keys(cache: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(cache.join("layers")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".json").filter(|k| k.starts_with("app-")) else {
            continue;
        };
        let record: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        let digest = record["digest"].as_str().unwrap();
        let blob = cache
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let tar_bytes = gunzip_if(std::fs::read(blob).unwrap());
        let rebuilt = slipway::layers::plan::app_key_of_listing(&listing_of(&tar_bytes), 0);
        assert_eq!(
            rebuilt, key,
            "layer `{digest}` holds other bytes than its key says"
        );
        checked += 1;
    }
    checked
}

// ------------------------------------------------------------- 1. one read

/// Builds run while a thread rewrites random source files in place (torn
/// writes of other sizes and contents): a build either succeeds or fails
/// naming a changed file, and no app layer is ever cached under a key its
/// bytes do not match.
#[test]
fn rewrites_during_builds_never_poison_the_cache() {
    let work = Work::new();
    let files: Vec<PathBuf> = (0..6)
        .map(|i| work.write(&format!("app/mod{i}.py"), &format!("X = {i}\n")))
        .collect();
    let recipe = recipe(&work, "", "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let files = files.clone();
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(11);
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let file = &files[rng.usize(..files.len())];
                let size = rng.usize(1..400_000);
                let body = format!("# {round}\n{}", "x".repeat(size));
                std::fs::write(file, body).unwrap();
                round += 1;
                // Quiet spells let some builds through.
                let pause = if rng.u8(..10) == 0 { 150 } else { 2 };
                std::thread::sleep(std::time::Duration::from_millis(pause));
            }
            round
        })
    };
    let (mut ok, mut changed) = (0, 0);
    for _ in 0..12 {
        let out = run(&mut work.build_to_layout(&recipe));
        match out.code {
            Some(0) => ok += 1,
            Some(1) => {
                println!("{}", out.stderr.trim());
                assert!(
                    out.stderr.contains("changed while slipway was reading it"),
                    "{}",
                    out.stderr
                );
                changed += 1;
            }
            other => panic!("exit {other:?}:\n{}", out.stderr),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    let settled = run(&mut work.build_to_layout(&recipe));
    assert_eq!(settled.code, Some(0), "{}", settled.stderr);
    println!("{rounds} rewrites; builds: {ok} ok, {changed} saw a change");
    assert_cache_whole(&work.cache());
    let checked = assert_app_layers_match_their_keys(&work.cache());
    assert!(checked >= 1, "no app layer was cached");
    // The settled build's image holds the files as they are now.
    let listing = listing_of(&top_layer(&work.out()));
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let line = listing
            .iter()
            .find(|l| l.0 == format!("app/mod{i}.py"))
            .unwrap();
        assert_eq!(line.3, format!("sha256:{}", sha256_hex(&bytes)));
    }
}

/// A file replaced between the walk and the read (another inode, a symlink
/// to a secret) fails the key's read, naming it; never the target's bytes.
#[test]
fn files_swapped_after_listing_are_refused() {
    use slipway::layers::app::{collect, AppSource};
    type Swap = fn(&Path, &Path);
    let cases: &[(&str, Swap, &str)] = &[
        (
            "symlink",
            |tree, dir| {
                std::fs::remove_file(tree.join("a.py")).unwrap();
                std::os::unix::fs::symlink(dir.join("shadow"), tree.join("a.py")).unwrap();
            },
            "it is now a symlink",
        ),
        (
            "replaced",
            |tree, _| {
                // Created while the old one exists: another inode for sure.
                std::fs::write(tree.join("a.py.new"), "A = 2\n").unwrap();
                std::fs::rename(tree.join("a.py.new"), tree.join("a.py")).unwrap();
            },
            "it was replaced by another file",
        ),
        (
            "rewritten",
            |tree, _| {
                let file = tree.join("a.py");
                std::fs::write(&file, "A = 2\n").unwrap();
                let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(later)
                    .unwrap();
            },
            "it was modified",
        ),
        (
            "fifo",
            |tree, _| {
                std::fs::remove_file(tree.join("a.py")).unwrap();
                let status = Command::new("mkfifo")
                    .arg(tree.join("a.py"))
                    .status()
                    .unwrap();
                assert!(status.success());
            },
            "it is no longer a regular file",
        ),
    ];
    for (name, swap, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("a.py"), "A = 1\n").unwrap();
        std::fs::write(dir.path().join("shadow"), "root:SECRET:1\n").unwrap();
        let entries = collect(&AppSource {
            source_dir: &tree,
            destination: "/app",
            excludes: &[],
            owner: Default::default(),
        })
        .unwrap()
        .entries;
        slipway::layers::plan::file_digests(&entries).unwrap();
        swap(&tree, dir.path());
        let err = slipway::layers::plan::file_digests(&entries).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(says), "{name}: {text}");
        assert!(
            text.contains("a.py` changed while slipway was reading it"),
            "{name}: {text}"
        );
        let packed =
            slipway::layers::tarball::write_layer(&entries, 0, &dir.path().join("layer.tgz"));
        let err = packed.expect_err(name).to_string();
        assert!(err.contains(says), "{name}: {err}");
    }
}

// ------------------------------------------------------ 2. a verified cache

/// A flipped bit in a cached layer is found, removed and rebuilt with a
/// warning; a corrupt cached base layer is fetched again; layout blobs are
/// copies, so editing the output leaves the cache alone.
#[test]
fn corrupt_cache_entries_are_rebuilt_and_outputs_are_copies() {
    let work = Work::new();
    let recipe = recipe(&work, "", "");
    let first = run(&mut work.build_to_layout(&recipe));
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let manifest1 = manifest(&work.out());
    let layers = manifest1["layers"].as_array().unwrap().clone();
    let hex = |d: &Value| d["digest"].as_str().unwrap()[7..].to_string();
    let app = hex(layers.last().unwrap());
    let base = hex(&layers[0]);
    let cache_blob = |h: &str| work.cache().join("blobs/sha256").join(h);
    let out_blob = |h: &str| work.out().join("blobs/sha256").join(h);
    {
        use std::os::unix::fs::MetadataExt;
        let (c, o) = (
            std::fs::metadata(cache_blob(&app)).unwrap(),
            std::fs::metadata(out_blob(&app)).unwrap(),
        );
        assert_ne!(
            (c.dev(), c.ino()),
            (o.dev(), o.ino()),
            "a hard link into the cache"
        );
    }
    std::fs::write(out_blob(&app), b"edited output").unwrap();
    assert_cache_whole(&work.cache());

    for h in [&app, &base] {
        let mut bytes = std::fs::read(cache_blob(h)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(cache_blob(h), bytes).unwrap();
    }
    let second = run(&mut work.build_to_layout(&recipe));
    println!("{}", second.stderr.trim());
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(
        second.stderr.matches("does not match its digest").count() >= 2,
        "{}",
        second.stderr
    );
    assert_eq!(manifest(&work.out()), manifest1, "the same image again");
    for h in [&app, &base] {
        let bytes = std::fs::read(out_blob(h)).unwrap();
        assert_eq!(sha256_hex(&bytes), *h);
    }
    assert_cache_whole(&work.cache());
}

/// A cache blob corrupted after the cache lookup (between build and
/// publish) is refused while it is copied into the output: exit 1 naming it.
#[test]
fn publish_refuses_a_blob_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"layer bytes").unwrap();
    let digest = slipway::digest::Digest::of(b"layer bytes");
    let ok = slipway::publish::copy_verified(&blob, Vec::new(), &digest, 11, "layer 2");
    assert_eq!(ok.unwrap(), b"layer bytes");
    let err = slipway::publish::copy_verified(&blob, std::io::sink(), &digest, 10, "base layer 1")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("base layer 1 is 11 bytes, but its descriptor says 10"),
        "{err}"
    );
    std::fs::write(&blob, b"layer bytez").unwrap();
    let err = slipway::publish::copy_verified(&blob, std::io::sink(), &digest, 11, "layer 2")
        .unwrap_err();
    assert!(
        err.to_string().contains("layer 2: the cache's copy"),
        "{err}"
    );
    assert!(!blob.exists(), "the corrupt copy is removed");
}

// ------------------------------------------- 3. find-links keyed by content

/// Builds `name-1.0-py3-none-any.whl` holding `name/__init__.py` = `body`
/// (fixed zip times, so equal-length bodies give equal-size wheels) and,
/// when `zeros` > 0, `name/zeros.bin` of that many zero bytes.
fn make_wheel(dir: &Path, name: &str, body: &str, zeros: u64) -> PathBuf {
    make_wheel_with(dir, name, body, zeros, None)
}

/// [`make_wheel`] with one more (empty) file at `extra` inside the wheel.
fn make_wheel_with(dir: &Path, name: &str, body: &str, zeros: u64, extra: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let wheel = dir.join(format!("{name}-1.0-py3-none-any.whl"));
    let script = r#"
import base64, hashlib, sys, zipfile
wheel, name, body, zeros = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
extra = sys.argv[5] if len(sys.argv) > 5 else None
dist = f"{name}-1.0.dist-info"
def rec(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
files = {
    f"{name}/__init__.py": body,
    f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
    f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
if extra:
    files[extra] = b""
record = [f"{p},{rec(d)},{len(d)}" for p, d in files.items()]
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
    for path, data in files.items():
        z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    if zeros:
        h, chunk, left = hashlib.sha256(), b"\0" * (1 << 20), zeros
        info = zipfile.ZipInfo(f"{name}/zeros.bin", (2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n]); h.update(chunk[:n]); left -= n
        digest = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        record.append(f"{name}/zeros.bin,sha256={digest},{zeros}")
    record.append(f"{dist}/RECORD,,")
    z.writestr(zipfile.ZipInfo(f"{dist}/RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .args([name, body, &zeros.to_string()])
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
    wheel
}

/// A recipe installing `name` offline from `wheels`.
fn wheel_recipe(work: &Work, name: &str, wheels: &Path) -> PathBuf {
    work.write("requirements.txt", &format!("{name}\n"));
    work.recipe(&format!(
        "base = \"python:3.13-alpine\"\n\n[python]\nrequirements = [\"requirements.txt\"]\nfind_links = [\"{}\"]\noffline = true\nbytecode = false\n",
        wheels.display()
    ))
}

fn uv_missing() -> bool {
    skip_or_fail("uv")
}

#[test]
fn a_rebuilt_local_wheel_of_the_same_name_and_size_is_installed_anew() {
    if uv_missing() {
        return;
    }
    let work = Work::new();
    let wheels = work.path().join("wheels");
    let recipe = wheel_recipe(&work, "demo", &wheels);
    let one = make_wheel(&wheels, "demo", "VERSION = 'AAAA'\n", 0);
    let size = std::fs::metadata(&one).unwrap().len();
    let first = run(&mut work.build_to_layout(&recipe));
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(inputs::contains(&top_layer(&work.out()), "AAAA"));
    make_wheel(&wheels, "demo", "VERSION = 'BBBB'\n", 0);
    assert_eq!(std::fs::metadata(&one).unwrap().len(), size, "same size");
    let second = run(&mut work.build_to_layout(&recipe));
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let layer = top_layer(&work.out());
    assert!(
        inputs::contains(&layer, "BBBB"),
        "the old wheel's layer was reused"
    );
    assert!(!inputs::contains(&layer, "AAAA"));
    assert_cache_whole(&work.cache());
}

/// A wheel shipping a `.wh.` name would delete a base file (the whiteout
/// rule applies to every new layer): refused, naming it.
#[test]
fn a_wheel_with_a_whiteout_name_is_refused() {
    if uv_missing() {
        return;
    }
    let work = Work::new();
    let wheels = work.path().join("wheels");
    make_wheel_with(&wheels, "sneaky", "X = 1\n", 0, Some("sneaky/.wh.os.py"));
    let recipe = wheel_recipe(&work, "sneaky", &wheels);
    let out = run(&mut work.build_to_layout(&recipe));
    println!("{}", out.stderr.trim());
    assert_fails(
        &work,
        &out,
        4,
        &[
            "an installed file is named `",
            "sneaky/.wh.os.py`: names starting with `.wh.`",
        ],
    );
}

// ------------------------------------- 18. a wheel replacing the base's Python

/// A wheel whose `.data/data` holds `lib/python3.13/os.py` installs (it is
/// the user's choice) but is named in a warning, on the first build and
/// again when the layer is reused; a plain wheel gets no such warning.
#[test]
fn a_wheel_replacing_a_standard_library_file_is_a_warning() {
    if uv_missing() {
        return;
    }
    const WARNING: &str =
        "installs `/usr/local/lib/python3.13/os.py` in the interpreter's own directories";
    let plain = Work::new();
    let wheels = plain.path().join("wheels");
    make_wheel(&wheels, "plain", "X = 1\n", 0);
    let out = run(&mut plain.build_to_layout(&wheel_recipe(&plain, "plain", &wheels)));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        !out.stderr.contains("interpreter's own directories"),
        "{}",
        out.stderr
    );

    let work = Work::new();
    let wheels = work.path().join("wheels");
    make_wheel_with(
        &wheels,
        "shadow",
        "X = 1\n",
        0,
        Some("shadow-1.0.data/data/lib/python3.13/os.py"),
    );
    let recipe = wheel_recipe(&work, "shadow", &wheels);
    for build in ["first", "reused"] {
        let out = run(&mut work.build_to_layout(&recipe));
        println!("{build}: {}", out.stderr.trim());
        assert_eq!(out.code, Some(0), "{build}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("warning: `shadow 1.0` {WARNING}")),
            "{build} build lacks the warning:\n{}",
            out.stderr
        );
    }
    let names = inputs::tar_paths(&top_layer(&work.out()));
    assert!(
        names.iter().any(|n| n == "usr/local/lib/python3.13/os.py"),
        "{names:?}"
    );
    assert_cache_whole(&work.cache());
}

// ------------------------------------------------- 10. the wheel bomb

/// A wheel holding a 3 GiB file of zeros installs with slipway's own peak
/// RSS (VmHWM from /proc, in the `--json` report) under 256 MiB.
#[test]
fn a_wheel_with_a_3_gib_file_builds_in_bounded_memory() {
    if uv_missing() {
        return;
    }
    let work = Work::new();
    let wheels = work.path().join("wheels");
    make_wheel(&wheels, "bomb", "X = 1\n", 3 << 30);
    let recipe = wheel_recipe(&work, "bomb", &wheels);
    let out = run(work.build_to_layout(&recipe).arg("--json"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let peak_kib = report["timings"]["peak_rss_kib"].as_u64().unwrap();
    println!("peak RSS {} MiB", peak_kib / 1024);
    assert!(peak_kib > 0, "no peak RSS in the report");
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
    assert_cache_whole(&work.cache());
}

// ---------------------------------------- 4, 5, 7. what lands in the image

/// Refused destinations and source names: exit 2, the reason, nothing written.
#[test]
fn system_and_whiteout_destinations_and_whiteout_names_are_refused() {
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        (
            "root",
            "destination = \"/\"",
            None,
            &["destination `/` is the base image's own root directory"],
        ),
        (
            "usr_local_bin",
            "destination = \"/usr/local/bin\"",
            None,
            &[
                "destination `/usr/local/bin` is the base image's own system directory",
                "`user` would own it",
            ],
        ),
        (
            "etc",
            "destination = \"/etc\"",
            None,
            &["destination `/etc` is the base image's own system directory"],
        ),
        (
            "opaque_whiteout",
            "destination = \"/.wh..wh..opq\"",
            None,
            &["destination `/.wh..wh..opq` has a part starting with `.wh.`"],
        ),
        (
            "whiteout_file",
            "",
            Some("bin/.wh.python3"),
            &[
                "bin/.wh.python3` has a name starting with `.wh.`",
                "hint: rename it",
            ],
        ),
    ];
    for (name, app, file, says) in cases {
        let work = Work::new();
        if let Some(file) = file {
            work.write(&format!("app/{file}"), "");
        }
        let recipe = recipe(&work, app, "user = \"1000:1000\"");
        let out = run(&mut work.build_to_layout(&recipe));
        println!("{name}: {}", out.stderr.trim());
        assert_fails(&work, &out, 2, says);
    }
}

/// `/tmp/app` leaves `/tmp` to the base (no entry, so its 1777 stays); the
/// user owns the destination and what is below it only.
#[test]
fn the_base_keeps_the_destinations_parents() {
    let work = Work::new();
    work.write("app/pkg/mod.py", "");
    let recipe = recipe(&work, "destination = \"/tmp/app\"", "user = \"1000:1000\"");
    let out = run(&mut work.build_to_layout(&recipe));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let tar_bytes = top_layer(&work.out());
    let listing = listing_of(&tar_bytes);
    let paths: Vec<&str> = listing.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tmp/app",
            "tmp/app/main.py",
            "tmp/app/pkg",
            "tmp/app/pkg/mod.py"
        ]
    );
    assert!(listing.iter().all(|l| l.2.uid == 1000 && l.2.gid == 1000));
}

// ------------------------------------------------------------ 8. secrets

#[test]
fn default_secret_excludes_ignore_case_and_cover_credential_files() {
    let work = Work::new();
    let secrets = [
        ".ENV",
        "ID_RSA",
        "server.PEM",
        ".git-credentials",
        ".npmrc",
        ".aws/credentials",
        ".docker/config.json",
        ".kube/config",
        ".ssh/deploy_key",
        "conf/.pgpass",
        "deploy/site.ovpn",
    ];
    for secret in secrets {
        work.write(&format!("app/{secret}"), "planted-local-secret\n");
    }
    work.write("app/keep.PEM", "kept: re-included\n");
    work.write("app/.dockerignore", "!keep.PEM\n");
    let recipe = recipe(&work, "", "");
    let out = run(&mut work.build_to_layout(&recipe));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let layer = top_layer(&work.out());
    let paths = tar_paths(&layer);
    assert!(
        !inputs::contains(&layer, "planted-local-secret"),
        "{paths:?}"
    );
    assert!(paths.contains(&"app/keep.PEM".to_string()), "{paths:?}");
    assert!(paths.contains(&"app/main.py".to_string()), "{paths:?}");
}

// ------------------------------------------------------- 9. own files out

/// `source = "."` with the recipe inside and `--oci-layout build/image`:
/// neither the recipe nor `build/` reaches the app layer, and two runs give
/// one digest.
#[test]
fn the_recipe_and_the_output_stay_out_of_the_app_layer() {
    let work = Work::new();
    let recipe =
        work.recipe("base = \"python:3.13-alpine\"\n\n[app]\nsource = \".\"\nbytecode = false\n");
    let build = || {
        let mut cmd = work.build(&recipe);
        cmd.current_dir(work.path());
        cmd.arg("--base-layout").arg(alpine_layout());
        cmd.arg("--oci-layout").arg("build/image");
        cmd.arg("--cache-dir").arg(work.cache());
        run(&mut cmd)
    };
    let first = build();
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let index = || std::fs::read(work.path().join("build/image/index.json")).unwrap();
    let one = index();
    let second = build();
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(index(), one, "a second run gives another image");
    let paths = tar_paths(&top_layer(&work.path().join("build/image")));
    assert!(paths.contains(&"app/app/main.py".to_string()), "{paths:?}");
    for own in ["recipe.toml", "build", "cache"] {
        assert!(
            !paths
                .iter()
                .any(|p| p.trim_end_matches('/') == format!("app/{own}")),
            "{own} packed: {paths:?}"
        );
    }
}

// --------------------------------------------------- 14. base descriptors

/// Rewrites the single-platform layout at `dir`: `edit` changes the
/// manifest and config JSON; blobs and index are rewritten to match.
fn patch_layout(dir: &Path, edit: impl Fn(&mut Value, &mut Value)) {
    let mut manifest = manifest(dir);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config = blob_json(dir, &config_digest);
    edit(&mut manifest, &mut config);
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (digest, size) = put(config.to_string().as_bytes());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put(manifest.to_string().as_bytes());
    let path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    std::fs::write(path, index.to_string()).unwrap();
}

/// A base with one layer (holding `noise` incompressible bytes), Python
/// stated in its env; build it with [`stated_recipe`].
fn small_base(work: &Work, noise: usize) -> PathBuf {
    let base = work.path().join("base");
    let mut rng = fastrand::Rng::with_seed(14);
    let bytes: Vec<u8> = (0..noise).map(|_| rng.u8(..)).collect();
    let layer = inputs::tar_gz(&[("etc/os-release", b"ID=test\n"), ("noise", &bytes)]);
    inputs::write_layout(&base, "3.13-alpine", &[layer], &["PYTHON_VERSION=3.13.14"]);
    base
}

/// An app-only recipe stating the C library [`small_base`] cannot show.
fn stated_recipe(work: &Work) -> PathBuf {
    work.recipe(
        "base = \"python:3.13-alpine\"\n\n[python]\nlibc = \"musl\"\n\n[app]\nsource = \"app\"\nbytecode = false\n",
    )
}

#[test]
fn base_descriptors_that_lie_are_refused() {
    type Edit = fn(&mut Value, &mut Value);
    let cases: &[(&str, Edit, &[&str], &[&str])] = &[
        (
            "size",
            |m, _| m["layers"][0]["size"] = 10.into(),
            &["--oci-layout"],
            &["base layer 1 `sha256:", "but its descriptor says 10"],
        ),
        (
            "size_archive",
            |m, _| m["layers"][0]["size"] = 10.into(),
            &["--docker-archive"],
            &["base layer 1 `sha256:", "but its descriptor says 10"],
        ),
        (
            "sha512_diff_id",
            |_, c| c["rootfs"]["diff_ids"][0] = format!("sha512:{}", "ab".repeat(64)).into(),
            &["--oci-layout"],
            &[
                "diff_id of layer 1 in the config",
                "does not start with `sha256:`",
            ],
        ),
    ];
    for (name, edit, flag, says) in cases {
        let work = Work::new();
        let base = small_base(&work, 0);
        patch_layout(&base, edit);
        let recipe = stated_recipe(&work);
        let mut cmd = work.build(&recipe);
        cmd.arg("--base-layout").arg(&base).arg(flag[0]);
        cmd.arg(if flag[0] == "--oci-layout" {
            work.out()
        } else {
            work.archive()
        });
        let out = run(&mut cmd);
        println!("{name}: {}", out.stderr.trim());
        assert_fails(&work, &out, 2, says);
        assert!(!work.archive().exists(), "{name}: an archive was written");
    }
}

/// The same lie caught while pushing: the base layer is uploaded from the
/// cache (the base is a layout), checked first; no tag appears.
#[test]
fn a_base_descriptor_that_lies_is_refused_before_a_push() {
    if skip_or_fail("docker-registry") {
        return;
    }
    let registry = common::registry::Registry::start();
    let work = Work::new();
    let base = small_base(&work, 0);
    patch_layout(&base, |m, _| m["layers"][0]["size"] = 10.into());
    let recipe = stated_recipe(&work);
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(&base);
    cmd.arg("--push")
        .arg(format!("{}/team/app:1", registry.addr()));
    let out = run(&mut cmd);
    assert_fails(
        &work,
        &out,
        2,
        &["base layer 1 `sha256:", "but its descriptor says 10"],
    );
    inputs::assert_no_tag(&registry, "team/app", "1");
}

// ------------------------------------------------------------ 16. messages

/// An unreadable source file is bad input (2) naming the file. Run as an
/// unprivileged user when the tests run as root (root reads anything).
#[test]
fn an_unreadable_source_file_is_named() {
    let work = Work::new();
    let secret = work.write("app/private.py", "X = 1\n");
    let recipe = recipe(&work, "", "");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let mut cmd = work.build_to_layout(&recipe);
    if unsafe_is_root() {
        if skip_or_fail("setpriv") {
            return;
        }
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(work.path())
            .status()
            .unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        let inner = cmd;
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        cmd.arg(inner.get_program()).args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
    }
    let out = run(&mut cmd);
    println!("{}", out.stderr.trim());
    assert_fails(
        &work,
        &out,
        2,
        &[
            "cannot read `",
            "private.py`: Permission denied",
            "hint: make it readable",
        ],
    );
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// A full disk under the cache while the base is copied in: exit 1 naming
/// the path, not the registry's 3. The cache sits on a 256 KiB tmpfs in a
/// user and mount namespace of the test's own.
#[test]
fn a_full_disk_under_the_cache_is_local_io_naming_the_path() {
    if skip_or_fail("unshare") {
        return;
    }
    let work = Work::new();
    let base = small_base(&work, 1 << 20);
    let recipe = stated_recipe(&work);
    let cache = work.cache();
    std::fs::create_dir_all(&cache).unwrap();
    let mut inner = work.build(&recipe);
    inner.arg("--base-layout").arg(&base);
    inner.arg("--oci-layout").arg(work.out());
    let mut script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{}' && exec",
        cache.display()
    );
    script.push_str(&format!(" '{}'", inner.get_program().to_string_lossy()));
    for arg in inner.get_args() {
        script.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", &script]);
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let out = run(&mut cmd);
    println!("{}", out.stderr.trim());
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("in the cache"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&*cache.to_string_lossy()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(!work.out().exists());
}

// ------------------------------------------------------------ 18. warnings

#[test]
fn a_hard_link_from_outside_the_tree_is_a_warning() {
    let work = Work::new();
    let inside = work.write("app/shared.py", "X = 1\n");
    std::fs::hard_link(&inside, work.path().join("elsewhere.py")).unwrap();
    let recipe = recipe(&work, "", "");
    let out = run(&mut work.build_to_layout(&recipe));
    println!("{}", out.stderr.trim());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("warning: `")
            && out
                .stderr
                .contains("shared.py` is hard-linked from outside the source dir"),
        "{}",
        out.stderr
    );
}
