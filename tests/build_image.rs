//! `slipway build` as a user runs it (the binary), against a real registry,
//! real uv and wheels (from the wheelhouse `scripts/wheelhouse` filled), with
//! skopeo and umoci checking the result independently.

mod common;

use common::fixtures::{push_alpine, repo_root, run_ok, sha256_hex, skopeo_raw, wheelhouse};
use common::registry::Registry;
use common::skip_or_fail;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools_missing() -> bool {
    ["docker-registry", "skopeo", "umoci", "uv"]
        .iter()
        .any(|t| skip_or_fail(t))
}

/// A small app: a module, a package, an executable script, an in-tree
/// symlink, and things that must never reach the image.
fn make_app(dir: &Path) {
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("app.py"), "from fastapi import FastAPI\napp = FastAPI()\n\n@app.get('/')\ndef root():\n    return {'ok': True}\n").unwrap();
    std::fs::write(dir.join("pkg/__init__.py"), "VALUE = 1\n").unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("pkg/__init__.py", dir.join("link.py")).unwrap();
    std::fs::write(dir.join(".env"), "SECRET=planted-secret-value\n").unwrap();
    std::fs::write(dir.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(dir.join("notes/todo.md"), "internal\n").unwrap();
    std::fs::write(dir.join(".dockerignore"), "notes\n").unwrap();
}

fn write_recipe(dir: &Path, platforms: &str, extra: &str) -> PathBuf {
    std::fs::copy(
        repo_root().join("recipes/fastapi-demo/requirements.txt"),
        dir.join("requirements.txt"),
    )
    .unwrap();
    let recipe = format!(
        r#"base = "python:3.13-alpine"
platforms = {platforms}

[python]
requirements = ["requirements.txt"]
{extra}
[app]
source = "app"

[image]
cmd = ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"]
workdir = "/app"
env = {{ APP_ENV = "production" }}
ports = ["8000/tcp"]
labels = {{ "org.opencontainers.image.title" = "test-app" }}
"#
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

struct Build<'a> {
    registry: &'a Registry,
    cache: PathBuf,
    wheels: PathBuf,
}

impl Build<'_> {
    fn command(&self, recipe: &Path) -> Command {
        self.command_with_base_from(self.registry.addr(), recipe)
    }

    /// [`Build::command`] with the base pulled from `addr` (a proxy in front of the registry).
    fn command_with_base_from(&self, addr: &str, recipe: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build").arg(recipe);
        cmd.arg("--registry-mirror")
            .arg(format!("docker.io={addr}"));
        cmd.arg("--offline").arg("--find-links").arg(&self.wheels);
        cmd.env("SLIPWAY_CACHE_DIR", &self.cache);
        cmd.env("DOCKER_CONFIG", self.cache.join("no-docker-config"));
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// Builds and pushes; returns the `--json` report.
    fn push(&self, recipe: &Path, image: &str) -> Value {
        self.push_to(self.registry.addr(), recipe, image)
    }

    /// [`Build::push`] to the registry at `addr` (a proxy in front of it).
    fn push_to(&self, addr: &str, recipe: &Path, image: &str) -> Value {
        let out = run_ok(
            self.command(recipe)
                .arg("--push")
                .arg(format!("{addr}/{image}"))
                .arg("--json"),
        );
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON document")
    }
}

/// skopeo copy to an OCI dir, then umoci unpack --rootless; returns the rootfs.
fn unpack(image: &str, dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(image)
            .arg(format!("oci:{}:t", layout.display())),
    );
    let bundle = dir.join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// A registry holding the alpine stand-in, plus an app and its recipe in a temp dir.
struct Setup {
    registry: Registry,
    work: tempfile::TempDir,
    recipe: PathBuf,
    wheels: PathBuf,
}

impl Setup {
    /// None when a tool or the wheelhouse is missing outside CI.
    fn new() -> Option<Setup> {
        if tools_missing() {
            return None;
        }
        let wheels = wheelhouse()?;
        let registry = Registry::start();
        push_alpine(&registry);
        let work = tempfile::tempdir().unwrap();
        make_app(&work.path().join("app"));
        let recipe = write_recipe(work.path(), r#"["linux/amd64"]"#, "");
        Some(Setup {
            registry,
            work,
            recipe,
            wheels,
        })
    }

    fn build(&self) -> Build<'_> {
        Build {
            registry: &self.registry,
            cache: self.work.path().join("cache"),
            wheels: self.wheels.clone(),
        }
    }
}

#[test]
fn pushes_an_image_that_skopeo_and_umoci_accept() {
    let Some(setup) = Setup::new() else { return };
    let (registry, work, recipe) = (&setup.registry, &setup.work, &setup.recipe);
    let build = setup.build();
    let report = build.push(recipe, "test/app:1");
    let digest = report["digest"].as_str().unwrap().to_string();
    let image = format!("docker://{}/test/app:1", registry.addr());

    // The manifest skopeo sees hashes to the digest slipway printed.
    let manifest = skopeo_raw(&[], &image);
    assert_eq!(format!("sha256:{}", sha256_hex(&manifest)), digest);
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        "docker.io/library/python:3.13-alpine"
    );

    let config: Value = serde_json::from_slice(&skopeo_raw(&["--config"], &image)).unwrap();
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_ENV=production"), "{env:?}");
    assert!(
        env.iter().any(|e| e.starts_with("PATH=/usr/local/bin")),
        "base Env kept: {env:?}"
    );
    assert!(env.contains(&"PYTHON_VERSION=3.13.14"), "{env:?}");
    assert_eq!(config["config"]["Cmd"][0], "uvicorn");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert!(config["config"]["ExposedPorts"]["8000/tcp"].is_object());
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "test-app"
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), manifest["layers"].as_array().unwrap().len());
    assert_eq!(
        diff_ids.len(),
        2 + 4,
        "base layers + site-packages, its bytecode, app, app bytecode"
    );
    let config_text = serde_json::to_string(&config).unwrap();
    assert!(!config_text.contains("planted-secret-value"));
    assert!(
        !config_text.contains(&*work.path().to_string_lossy()),
        "no host paths in the config: {config_text}"
    );

    // The destination registry had the base layers (the mirror is the same
    // registry), so slipway never downloaded them: none is in its cache.
    for layer in manifest["layers"].as_array().unwrap().iter().take(2) {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(
            !build.cache.join("blobs/sha256").join(hex).exists(),
            "base layer {hex} was downloaded"
        );
    }

    // umoci verifies every diff_id and size while unpacking.
    let rootfs = unpack(&image, work.path());
    let site = rootfs.join("usr/local/lib/python3.13/site-packages");
    assert!(site.join("fastapi/__init__.py").is_file());
    assert!(
        site.join("fastapi/__pycache__/__init__.cpython-313.pyc")
            .is_file(),
        "site-packages bytecode"
    );
    assert!(rootfs.join("app/app.py").is_file());
    assert!(
        rootfs.join("app/__pycache__/app.cpython-313.pyc").is_file(),
        "app bytecode"
    );
    assert!(rootfs
        .join("app/pkg/__pycache__/__init__.cpython-313.pyc")
        .is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("app/link.py")).unwrap(),
        PathBuf::from("pkg/__init__.py")
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("app/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("app/app.py"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    for never in [".env", ".git", "notes", "__pycache__/x"] {
        assert!(
            !rootfs.join("app").join(never).exists(),
            "{never} must not be in the image"
        );
    }
    let uvicorn = std::fs::read_to_string(rootfs.join("usr/local/bin/uvicorn")).unwrap();
    assert!(
        uvicorn.starts_with("#!/usr/local/bin/python3.13\n"),
        "shebang points at the image's interpreter: {uvicorn}"
    );
    // Wheels were chosen for the target: musllinux x86_64.
    let wheel = std::fs::read_dir(&site)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("pydantic_core-")
        })
        .expect("pydantic_core installed")
        .path()
        .join("WHEEL");
    let wheel = std::fs::read_to_string(wheel).unwrap();
    assert!(
        wheel.contains("musllinux") && wheel.contains("x86_64"),
        "{wheel}"
    );
    // No host paths anywhere in site-packages.
    let cache = build.cache.to_string_lossy().into_owned();
    for entry in walkdir::WalkDir::new(&site)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let name = entry.file_name().to_string_lossy();
        assert!(
            name != "uv_cache.json" && name != ".lock",
            "{}",
            entry.path().display()
        );
        if name == "direct_url.json" || name == "RECORD" || name.ends_with(".py") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !text.contains(&cache),
                "host path in {}",
                entry.path().display()
            );
            assert!(
                name != "direct_url.json" || !text.contains("file://"),
                "{}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn same_recipe_from_two_copies_gives_the_same_digest() {
    if tools_missing() {
        return;
    }
    let Some(wheels) = wheelhouse() else { return };
    let registry = Registry::start();
    push_alpine(&registry);
    let mut digests = Vec::new();
    for (i, umask_mode) in [(0, 0o644), (1, 0o600)] {
        let work = tempfile::tempdir().unwrap();
        make_app(&work.path().join("app"));
        // Different mtimes and permission noise on the second copy.
        let py = work.path().join("app/app.py");
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(umask_mode)).unwrap();
        let when =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * (i + 1));
        std::fs::File::options()
            .write(true)
            .open(&py)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let recipe = write_recipe(work.path(), r#"["linux/amd64"]"#, "");
        let build = Build {
            registry: &registry,
            cache: work.path().join("cache"),
            wheels: wheels.clone(),
        };
        let report = build.push(&recipe, &format!("test/repro:{i}"));
        digests.push(report);
    }
    let layers = |r: &Value| {
        r["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{} {}", l["kind"], l["digest"]))
            .collect::<Vec<_>>()
    };
    assert_eq!(layers(&digests[0]), layers(&digests[1]), "same layers");
    assert_eq!(
        digests[0]["digest"], digests[1]["digest"],
        "two builds from two copies must give one digest"
    );
}

#[test]
fn changing_one_app_file_rebuilds_only_the_app_layers() {
    let Some(setup) = Setup::new() else { return };
    let (work, recipe) = (&setup.work, &setup.recipe);
    let build = setup.build();
    let first = build.push(recipe, "test/app:1");
    std::fs::write(work.path().join("app/pkg/__init__.py"), "VALUE = 2\n").unwrap();
    let second = build.push(recipe, "test/app:2");
    assert_ne!(first["digest"], second["digest"]);
    let layers = second["platforms"][0]["layers"].as_array().unwrap();
    let by_kind = |kind: &str| {
        layers
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} layer"))
    };
    for kind in ["site-packages", "site-packages-bytecode"] {
        assert_eq!(by_kind(kind)["reused"], true, "{kind} comes from the cache");
        assert_eq!(
            by_kind(kind)["action"],
            "existing",
            "{kind} is not pushed again"
        );
    }
    for kind in ["app", "app-bytecode"] {
        assert_eq!(by_kind(kind)["reused"], false, "{kind} is rebuilt");
        assert_eq!(by_kind(kind)["action"], "uploaded");
    }
    // Base layers were already in the destination repository's registry.
    for layer in layers.iter().filter(|l| l["kind"] == "base") {
        assert_ne!(layer["action"], "uploaded");
    }
    // And nothing changed: no layer is built at all.
    let third = build.push(recipe, "test/app:3");
    assert_eq!(third["digest"], second["digest"]);
    assert!(third["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["reused"] == true));
}

/// A layer goes up as soon as it is built: the site-packages layer's upload
/// is finished before publishing checks the image's config (made only once
/// the layers are), the report still says this build uploaded it, with its
/// size, and publishing neither checks nor sends that blob again. Nor does it
/// ask for the manifest of an image with a layer this build made.
#[test]
fn new_layers_are_uploaded_while_the_build_goes_on() {
    let Some(setup) = Setup::new() else { return };
    let proxy = common::fault_proxy::FaultProxy::start(setup.registry.addr());
    let report = setup
        .build()
        .push_to(proxy.addr(), &setup.recipe, "test/early:1");
    let layers = report["platforms"][0]["layers"].as_array().unwrap();
    let site = layers
        .iter()
        .find(|l| l["kind"] == "site-packages")
        .expect("a site-packages layer");
    assert_eq!(site["action"], "uploaded");
    let digest = site["digest"].as_str().unwrap();
    let sent = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == digest)
        .expect("the layer's blob report");
    assert_eq!(sent["action"], "uploaded");
    assert_eq!(sent["bytes_sent"], site["size"]);
    let requests: Vec<String> = proxy
        .log()
        .iter()
        .map(|e| format!("{} {}", e.method, e.target))
        .collect();
    let position = |wanted: &dyn Fn(&str) -> bool| requests.iter().position(|r| wanted(r));
    let encoded = digest.replace(':', "%3A");
    let uploaded = position(&|r: &str| {
        r.starts_with("PUT /v2/test/early/blobs/uploads/")
            && (r.contains(digest) || r.contains(&encoded))
    })
    .unwrap_or_else(|| panic!("no upload of {digest}: {requests:?}"));
    let config = report["platforms"][0]["config_digest"].as_str().unwrap();
    let published = position(&|r: &str| r == format!("HEAD /v2/test/early/blobs/{config}"))
        .unwrap_or_else(|| panic!("publishing never checked the config {config}: {requests:?}"));
    assert!(uploaded < published, "{requests:?}");
    let about_layer = requests
        .iter()
        .filter(|r| r.contains(digest) || r.contains(&encoded))
        .count();
    assert_eq!(about_layer, 2, "one HEAD and one upload: {requests:?}");
    let manifest = report["digest"].as_str().unwrap();
    assert!(
        !requests.contains(&format!("HEAD /v2/test/early/manifests/{manifest}")),
        "{requests:?}"
    );
}

/// The base's config (and layers) are fetched once: a rebuild takes the cache's copy
/// (checked against its digest) and asks the registry only where the tag
/// points now. A cache copy that no longer matches is fetched again.
#[test]
fn a_rebuild_reads_the_base_config_from_the_cache() {
    let Some(setup) = Setup::new() else { return };
    let proxy = common::fault_proxy::FaultProxy::start(setup.registry.addr());
    let build = setup.build();
    let build_via_proxy = |tag: &str| {
        let mut cmd = build.command_with_base_from(proxy.addr(), &setup.recipe);
        cmd.arg("--push")
            .arg(format!("{}/test/config:{tag}", setup.registry.addr()))
            .arg("--json");
        let out = run_ok(&mut cmd);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let blob_gets = |from: usize| {
        proxy.log()[from..]
            .iter()
            .filter(|e| e.method == "GET" && e.target.contains("/blobs/"))
            .map(|e| e.target.clone())
            .collect::<Vec<_>>()
    };
    let first = build_via_proxy("1");
    // The config first, then the base's layers (the alpine stand-in's libc
    // is found in them).
    let config = blob_gets(0);
    assert!(!config.is_empty());
    let digest = config[0].rsplit('/').next().unwrap().replace("%3A", ":");
    let before = proxy.log().len();
    let second = build_via_proxy("2");
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(blob_gets(before), Vec::<String>::new());
    assert!(
        proxy.log()[before..]
            .iter()
            .any(|e| e.method == "GET" && e.target.ends_with("/manifests/3.13-alpine")),
        "the tag is still resolved"
    );
    // A copy that doesn't hash to its digest is not believed.
    let cached = build
        .cache
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&cached, bytes).unwrap();
    let before = proxy.log().len();
    let third = build_via_proxy("3");
    assert_eq!(third["digest"], first["digest"]);
    assert_eq!(blob_gets(before), config[..1].to_vec());
}

/// With every requirement an exact pin (the demo's list) the hold-back
/// check (`uv pip compile`, twice) never runs: a pinned version can't be
/// held back, the cold build sees the install brought in nothing unpinned
/// and remembers that, so a rebuild that reuses the layer asks nothing either.
#[test]
fn exactly_pinned_requirements_need_no_hold_back_check() {
    let Some(setup) = Setup::new() else { return };
    let uv = common::tools::find_uv().expect("uv");
    let log = setup.work.path().join("uv-calls.log");
    let logged = setup.work.path().join("uv-logged");
    std::fs::write(
        &logged,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            uv.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&logged, std::fs::Permissions::from_mode(0o755)).unwrap();
    let build = setup.build();
    for tag in ["1", "2"] {
        let mut cmd = build.command(&setup.recipe);
        cmd.arg("--uv")
            .arg(&logged)
            .arg("--push")
            .arg(format!("{}/test/pinned:{tag}", setup.registry.addr()));
        run_ok(&mut cmd);
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls
            .lines()
            .filter(|l| l.starts_with("pip install"))
            .count(),
        1,
        "{calls}"
    );
    assert!(!calls.contains("pip compile"), "{calls}");
}

/// A rebuild that changed nothing asks the destination for the manifest by
/// digest and, since the repository holds it (and so every blob it names),
/// checks no blob: one HEAD and the tag's PUT, no request under `/blobs/`.
/// A push to another repository of the same registry still checks each blob.
#[test]
fn an_unchanged_image_pushes_only_its_tag() {
    let Some(setup) = Setup::new() else { return };
    let proxy = common::fault_proxy::FaultProxy::start(setup.registry.addr());
    let build = setup.build();
    let push_via_proxy = |image: &str| build.push_to(proxy.addr(), &setup.recipe, image);
    let first = push_via_proxy("test/same:1");
    let before = proxy.log().len();
    let second = push_via_proxy("test/same:2");
    assert_eq!(first["digest"], second["digest"]);
    let requests: Vec<String> = proxy.log()[before..]
        .iter()
        .map(|e| format!("{} {}", e.method, e.target))
        .collect();
    assert!(
        requests.iter().all(|r| !r.contains("/blobs/")),
        "no blob request: {requests:?}"
    );
    let manifest = second["digest"].as_str().unwrap();
    assert!(
        requests.contains(&format!("HEAD /v2/test/same/manifests/{manifest}")),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"PUT /v2/test/same/manifests/2".to_string()),
        "{requests:?}"
    );
    assert!(second["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "existing" && b["bytes_sent"] == 0));

    // Another repository lacks the manifest: its blobs are checked (and
    // mounted or uploaded) one by one.
    let before = proxy.log().len();
    push_via_proxy("other/same:1");
    assert!(
        proxy.log()[before..]
            .iter()
            .any(|e| e.target.contains("/v2/other/same/blobs/")),
        "a repository without the manifest gets its blobs"
    );
    let raw = skopeo_raw(
        &[],
        &format!("docker://{}/other/same:1", setup.registry.addr()),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        manifest,
        "skopeo reads the same manifest"
    );
}
