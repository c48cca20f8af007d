//! End to end, as a user sees the product: `demo/run` builds
//! recipes/fastapi-demo/slim.toml onto the runnable python:3.13-slim stand-in,
//! pushes it to a loopback registry, pulls it back with skopeo, unpacks it with
//! `umoci unpack --rootless`, runs the image's own entrypoint rootless
//! (`unshare -r -m` + chroot, read-only root) and talks to the app over HTTP;
//! then imports the app with `python3 -v` in the same way to prove the
//! interpreter uses the bytecode layers.
//!
//! And the rootless proof: the whole `slipway build` (pull, uv, layers, push)
//! as an unprivileged user, giving the digest a root build gives.
//!
//! Nothing reaches the network but loopback: wheels come from the wheelhouse
//! `scripts/wheelhouse` filled (`--offline --find-links`).

mod common;

use common::fixtures::{in_ci, push_alpine, repo_root, run_ok, wheelhouse};
use common::registry::{free_port, Registry};
use common::tools::{find_python313, find_uv};
use common::{skip_or_fail, skip_or_fail_because};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` in its own process group; kills the group after `limit`.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("timed out after {limit:?}: killing process group {pid}");
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        })
    };
    let out = child.wait_with_output().expect("wait for the command");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    out
}

/// Builds (or finds cached) the runnable python:3.13-slim stand-in; prints
/// how long it took.
fn runnable_base() -> PathBuf {
    let layout = repo_root().join("target/runnable-base/layout");
    let started = Instant::now();
    let out = run_with_limit(
        Command::new("python3")
            .arg(repo_root().join("vendor-test-images/make-runnable-base"))
            .arg("--out")
            .arg(&layout),
        Duration::from_secs(900),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "make-runnable-base failed ({}):\n{stderr}",
        out.status
    );
    eprintln!(
        "runnable base ready in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        stderr
            .lines()
            .find(|l| l.contains("up to date"))
            .map_or("built", |_| "cached")
    );
    layout
}

/// The tools `demo/run` needs.
const DEMO_TOOLS: [&str; 10] = [
    "bash",
    "python3",
    "docker-registry",
    "skopeo",
    "umoci",
    "uv",
    "mmdebstrap",
    "unshare",
    "chroot",
    "curl",
];

/// The wheelhouse, once `demo/run`'s tools and the runnable base are there
/// (None: skipped, outside CI).
fn demo_prerequisites() -> Option<PathBuf> {
    if DEMO_TOOLS.iter().any(|t| skip_or_fail(t)) {
        return None;
    }
    let wheels = wheelhouse()?;
    runnable_base();
    Some(wheels)
}

/// `demo/run` on `recipe` (relative to the repo, or absolute): build, push,
/// pull with skopeo, unpack with umoci, run rootless, ask the app. Returns
/// the temp dir (holding `port`, the port the app listened on), the kept
/// work dir and what the demo printed; panics if it failed.
fn run_demo(wheels: &Path, recipe: &Path) -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let port = free_port();
    std::fs::write(tmp.path().join("port"), port.to_string()).unwrap();
    let started = Instant::now();
    let out = run_with_limit(
        Command::new("bash")
            .arg(repo_root().join("demo/run"))
            .current_dir(repo_root())
            .env("SKIP_SETUP", "1")
            .env("SLIPWAY", env!("CARGO_BIN_EXE_slipway"))
            .env(
                "SLIPWAY_ARGS",
                format!("--offline --find-links {}", wheels.display()),
            )
            .env("SLIPWAY_CACHE_DIR", tmp.path().join("cache"))
            .env("DEMO_WORK", &work)
            .env("DEMO_PORT", port.to_string())
            .env("DEMO_RECIPE", recipe)
            .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
            .env_remove("SOURCE_DATE_EPOCH"),
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "demo/run took {:.1}s:\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "demo/run failed ({}):\n{stdout}",
        out.status
    );
    (tmp, work, stdout)
}

#[test]
fn demo_image_runs_rootless_and_serves_the_app_from_bytecode() {
    let Some(wheels) = demo_prerequisites() else {
        return;
    };
    let (tmp, work, stdout) = run_demo(&wheels, Path::new("recipes/fastapi-demo/slim.toml"));
    let port: u16 = std::fs::read_to_string(tmp.path().join("port"))
        .unwrap()
        .parse()
        .unwrap();

    // The app's answer over loopback, from the image's own entrypoint and env.
    let answer = std::fs::read_to_string(work.join("answer.json")).expect("answer.json");
    let answer: Value = serde_json::from_str(answer.trim())
        .unwrap_or_else(|e| panic!("the app's answer is not JSON ({e}): {answer}"));
    assert_eq!(answer["env"], "production", "{answer}");
    assert!(answer["message"].is_string(), "{answer}");
    assert!(
        stdout.contains("\"production\""),
        "the demo prints the answer: {stdout}"
    );

    // The demo stopped the app it started.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the app still listens on {port} after demo/run"
    );

    // What was pushed is what ran: the pushed reference carries a digest.
    let pushed = std::fs::read_to_string(work.join("pushed.txt")).unwrap();
    assert!(
        pushed.contains("/demo/fastapi:latest@sha256:"),
        "pushed: {pushed}"
    );
    let build_log = std::fs::read_to_string(work.join("build.log")).unwrap();
    assert!(build_log.contains("site-packages-bytecode"), "{build_log}");

    // The interpreter, on a read-only root, loads the app and its
    // dependencies from the bytecode layers and compiles none of them.
    let imports = std::fs::read_to_string(work.join("imports.log")).expect("imports.log");
    for pyc in [
        "/usr/local/lib/python3.13/site-packages/fastapi/__pycache__/__init__.cpython-313.pyc",
        "/app/__pycache__/app.cpython-313.pyc",
    ] {
        assert!(
            imports.contains(&format!("code object from '{pyc}'")),
            "{pyc} not used; python3 -v said:\n{imports}"
        );
    }
    let wrote: Vec<&str> = imports
        .lines()
        .filter(|l| l.starts_with("# wrote"))
        .collect();
    assert!(wrote.is_empty(), "bytecode written at import: {wrote:?}");
    // Source compiled on import (`code object from /path.py`, unquoted):
    // only the base's own stdlib may be, never site-packages or the app.
    let compiled: Vec<&str> = imports
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from /"))
        .filter(|p| p.starts_with("app/") || p.contains("/site-packages/"))
        .collect();
    assert!(compiled.is_empty(), "compiled from source: {compiled:?}");
    let from_pyc = imports
        .lines()
        .filter(|l| l.starts_with("# code object from '") && l.ends_with(".pyc'"))
        .count();
    assert!(from_pyc > 50, "only {from_pyc} modules from .pyc");
}

/// `[python] reuse_wheel_compression`: the site-packages layer holds the
/// wheels' own deflate streams as gzip members of their own. skopeo,
/// umoci and the image's interpreter read it as any layer (the app ran,
/// importing pydantic_core's 5 MB extension from such a member), and the
/// unpacked file is the wheel's.
#[test]
fn demo_image_with_the_wheels_own_compression_runs_and_unpacks_to_the_wheels_files() {
    let Some(wheels) = demo_prerequisites() else {
        return;
    };
    let copy = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(repo_root().join("recipes/fastapi-demo"))
            .arg(copy.path()),
    );
    let recipe = copy.path().join("fastapi-demo/slim.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let text = text.replace("[python]\n", "[python]\nreuse_wheel_compression = true\n");
    assert!(text.contains("reuse_wheel_compression"), "{text}");
    std::fs::write(&recipe, text).unwrap();
    let (_tmp, work, _) = run_demo(&wheels, &recipe);
    let answer = std::fs::read_to_string(work.join("answer.json")).expect("answer.json");
    assert!(answer.contains("\"production\""), "{answer}");

    // The layer skopeo pulled that holds the extension.
    let so = "usr/local/lib/python3.13/site-packages/pydantic_core/_pydantic_core.cpython-313-x86_64-linux-gnu.so";
    let blobs = work.join("oci/blobs/sha256");
    let holds_so = |blob: &Path| {
        let file = std::fs::File::open(blob).unwrap();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
        let Ok(entries) = archive.entries() else {
            return false;
        };
        entries
            .flatten()
            .any(|e| e.path().is_ok_and(|p| p.to_string_lossy() == so))
    };
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .find(|p| holds_so(p))
        .expect("a layer holding pydantic_core's extension");
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("pydantic_core-")
                && name.contains("manylinux")
                && name.contains("x86_64")
        })
        .expect("pydantic_core's x86_64 manylinux wheel in the wheelhouse");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let entry = "pydantic_core/_pydantic_core.cpython-313-x86_64-linux-gnu.so";
    let mut expected = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(entry).unwrap(), &mut expected).unwrap();
    // The layer skopeo pulled holds the wheel's own deflate stream verbatim.
    let index = zip.index_for_name(entry).unwrap();
    let mut stream = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_index_raw(index).unwrap(), &mut stream).unwrap();
    let blob = std::fs::read(&layer).unwrap();
    assert!(
        memchr::memmem::find(&blob, &stream).is_some(),
        "the wheel's {} byte deflate stream is not in {}",
        stream.len(),
        layer.display()
    );
    // umoci unpacked the wheel's bytes.
    let unpacked = std::fs::read(work.join("bundle/rootfs").join(so)).unwrap();
    assert!(
        unpacked == expected,
        "the unpacked extension is not the wheel's"
    );
}

// ---------------------------------------------------------------------------
// Rootless proof.

/// The unprivileged user the rootless test creates (when run as root).
const BUILD_USER: &str = "slipway-build";

fn euid() -> u32 {
    let out = run_ok(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let out = Command::new("id").arg(user).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let uid = run_ok(Command::new("id").args(["-u", user])).stdout;
    let gid = run_ok(Command::new("id").args(["-g", user])).stdout;
    Some((
        String::from_utf8_lossy(&uid).trim().parse().ok()?,
        String::from_utf8_lossy(&gid).trim().parse().ok()?,
    ))
}

/// `cmd` run as `user` with no capabilities (setpriv drops them with the uid),
/// no setuid helper, no user namespace, and only the environment given.
fn as_user(user: &str, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    cmd
}

/// Whether `user` can run `path` (`--version`).
fn user_can_run(user: &str, path: &Path) -> bool {
    as_user(user, path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `user` can list `dir`.
fn user_can_list(user: &str, dir: &Path) -> bool {
    as_user(user, Path::new("/bin/ls"))
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Ancestors of `path` that others cannot traverse (e.g. `/root`, 0700).
fn untraversable_ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .skip(1)
        .filter(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
        .collect()
}

/// Adds `o+x` to `dir` (traverse, not list).
fn grant_traverse(dir: &Path) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))
        .unwrap_or_else(|e| panic!("chmod o+x {}: {e}", dir.display()));
    eprintln!(
        "rootless: granted o+x on {} (was {:o})",
        dir.display(),
        mode & 0o7777
    );
}

/// Copies recipes/fastapi-demo (alpine recipe) into `dir`, readable by all.
fn copy_demo_recipe(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = repo_root().join("recipes/fastapi-demo");
    for name in ["alpine.toml", "app.py", "requirements.txt", ".dockerignore"] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir.join("alpine.toml")
}

const EPOCH: &str = "1700000000";

/// `slipway build` arguments shared by the user's and root's builds; each
/// pushes to its own repository `WHO/app:1.0` (the tag is in the manifest's
/// annotations, so it stays the same).
fn build_args(
    cmd: &mut Command,
    recipe: &Path,
    registry: &Registry,
    wheels: &Path,
    python: &Path,
    uv: &Path,
    who: &str,
) {
    cmd.arg("build")
        .arg(recipe)
        .arg("--registry-mirror")
        .arg(format!("docker.io={}", registry.addr()))
        .arg("--offline")
        .arg("--find-links")
        .arg(wheels)
        .arg("--python")
        .arg(python)
        .arg("--uv")
        .arg(uv)
        .arg("--push")
        .arg(format!("{}/{who}/app:1.0", registry.addr()))
        .arg("--json")
        .env("SOURCE_DATE_EPOCH", EPOCH);
}

fn report_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn whole_build_runs_as_an_unprivileged_user_and_matches_a_root_build() {
    for tool in ["docker-registry", "skopeo", "uv", "setpriv", "id"] {
        if skip_or_fail(tool) {
            return;
        }
    }
    let Some(wheels) = wheelhouse() else { return };
    let python = find_python313().unwrap_or_else(|| {
        panic!("no CPython 3.13 (set SLIPWAY_PYTHON, or install one with pyenv or uv)")
    });
    let uv = find_uv().unwrap_or_else(|| panic!("no uv executable (not a shim) found"));
    let slipway = PathBuf::from(env!("CARGO_BIN_EXE_slipway"));
    let registry = Registry::start();
    push_alpine(&registry);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let recipe = copy_demo_recipe(&tmp.path().join("recipe"));

    if euid() != 0 {
        // Already unprivileged: the build as ourselves proves it runs, but
        // there is no user to switch to and no root build to compare with.
        // In CI that comparison is the point: run the suite as root there.
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let mut cmd = Command::new(&slipway);
        build_args(&mut cmd, &recipe, &registry, &wheels, &python, &uv, "user");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home);
        let report = report_of(&run_ok(&mut cmd));
        eprintln!("built as uid {} ({})", euid(), report["digest"]);
        skip_or_fail_because(
            "not root: no root build to compare the unprivileged build with              (run as root to create the build user)",
        );
        return;
    }
    // The build user must be able to run slipway, uv and the Python, and read the
    // wheelhouse. A pyenv under /root (0700) is not reachable: in CI, grant
    // traverse (o+x, not list) on the dirs in the way; elsewhere, say so.
    let needed = [&slipway, &uv, &python, &wheels];
    let blocked: Vec<PathBuf> = {
        let mut dirs: Vec<PathBuf> = needed
            .iter()
            .flat_map(|p| untraversable_ancestors(p))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    };
    if !blocked.is_empty() {
        if !in_ci() {
            // Outside CI the test does not chmod the host's dirs.
            skip_or_fail_because(&format!(
                "an unprivileged user cannot reach {} (behind {:?}); run with \
                 CI=true to let the test chmod o+x them",
                needed
                    .iter()
                    .filter(|p| blocked.iter().any(|d| p.starts_with(d)))
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                blocked
            ));
            return;
        }
        for dir in &blocked {
            grant_traverse(dir);
        }
    }
    if skip_or_fail("useradd") {
        return;
    }
    if user_ids(BUILD_USER).is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
            .arg(BUILD_USER)
            .status()
            .expect("run useradd");
        // Another test process may have created it in the meantime.
        assert!(
            status.success() || user_ids(BUILD_USER).is_some(),
            "useradd {BUILD_USER} failed: {status}"
        );
    }
    let (uid, gid) = user_ids(BUILD_USER).expect("the build user exists");
    assert_ne!(uid, 0);

    for exe in [&slipway, &uv, &python] {
        assert!(
            user_can_run(BUILD_USER, exe),
            "`{BUILD_USER}` cannot run {}",
            exe.display()
        );
    }
    assert!(
        user_can_list(BUILD_USER, &wheels),
        "`{BUILD_USER}` cannot read {}",
        wheels.display()
    );

    // The user's own HOME: uv's cache and slipway's cache (defaults) go there.
    let user_home = tmp.path().join("user-home");
    std::fs::create_dir(&user_home).unwrap();
    std::os::unix::fs::chown(&user_home, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&user_home, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Really unprivileged: its own uid, no capabilities, no user namespace.
    let status = run_ok(as_user(BUILD_USER, Path::new("/bin/sh")).args([
        "-c",
        "id -u; grep -E '^Cap(Prm|Eff):' /proc/self/status; cat /proc/self/uid_map",
    ]));
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("rootless: the build user:\n{status}");
    assert!(status.starts_with(&format!("{uid}\n")), "{status}");
    assert!(
        status.contains("CapPrm:\t0000000000000000")
            && status.contains("CapEff:\t0000000000000000"),
        "{status}"
    );
    let uid_map: Vec<&str> = status.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(
        uid_map,
        ["0", "0", "4294967295"],
        "the initial user namespace"
    );

    // 1. The whole build as the user, first, so nothing is in the registry's
    //    destination repository yet: pull, uv, layers, every push.
    let started = Instant::now();
    let mut cmd = as_user(BUILD_USER, &slipway);
    build_args(&mut cmd, &recipe, &registry, &wheels, &python, &uv, "user");
    cmd.env("HOME", &user_home).current_dir(tmp.path());
    let out = cmd.output().expect("run slipway as the build user");
    assert!(
        out.status.success(),
        "slipway build as `{BUILD_USER}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let user_report = report_of(&out);
    eprintln!(
        "rootless: build as `{BUILD_USER}` took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let new_layers: Vec<&Value> = user_report["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "base")
        .collect();
    assert_eq!(new_layers.len(), 4, "{user_report}");
    for layer in &new_layers {
        assert_eq!(layer["reused"], false, "built by the user: {layer}");
        assert_eq!(layer["action"], "uploaded", "pushed by the user: {layer}");
    }
    // Its caches are its own, in its HOME.
    assert!(
        user_home.join(".cache/slipway").is_dir(),
        "slipway's cache in the user's HOME"
    );
    let owner = |p: &Path| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(p).unwrap());
    assert_eq!(owner(&user_home.join(".cache/slipway")), uid);

    // 2. The same recipe built by root (own HOME and caches, same epoch).
    let root_home = tmp.path().join("root-home");
    std::fs::create_dir(&root_home).unwrap();
    let mut cmd = Command::new(&slipway);
    build_args(&mut cmd, &recipe, &registry, &wheels, &python, &uv, "root");
    cmd.env("HOME", &root_home)
        .env("DOCKER_CONFIG", root_home.join("no-docker-config"))
        .env_remove("SLIPWAY_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("UV_CACHE_DIR")
        .current_dir(tmp.path());
    let root_report = report_of(&run_ok(&mut cmd));

    let layers = |r: &Value| -> Vec<String> {
        r["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{} {}", l["kind"], l["digest"]))
            .collect()
    };
    assert_eq!(
        layers(&user_report),
        layers(&root_report),
        "the unprivileged build and the root build give the same layers"
    );
    // What the registry serves under both names is the same, byte for byte.
    let raw = |who: &str, config: bool| {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        if config {
            cmd.arg("--config");
        }
        cmd.arg(format!("docker://{}/{who}/app:1.0", registry.addr()));
        String::from_utf8(run_ok(&mut cmd).stdout).unwrap()
    };
    assert_eq!(
        raw("user", true),
        raw("root", true),
        "the unprivileged build and the root build give one config"
    );
    assert_eq!(
        raw("user", false),
        raw("root", false),
        "the unprivileged build and the root build give one manifest"
    );
    assert_eq!(
        user_report["digest"], root_report["digest"],
        "the unprivileged build and the root build give one digest"
    );
}
