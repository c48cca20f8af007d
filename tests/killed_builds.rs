//! Builds killed mid-way (issue 6, item 3): `kill -9` while uv runs, while
//! layers and bytecode are written, while pushing, while an OCI layout or
//! docker-archive is written, and at random moments. After each kill the
//! cache holds no partial entry (a killed build's scratch dir is allowed
//! until the next build cleans it up), outputs are complete or absent, the
//! tag is untouched; a rerun succeeds with the clean build's digest and
//! leaves nothing in the cache's `tmp/`.
//!
//! Each build runs in its own process group and the whole group is killed,
//! as CI runners and terminals do, so uv and python children die with it.

#[path = "support/builds.rs"]
mod builds;
mod common;

use builds::*;
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::image::{push_test_image, validate_archive, validate_layout};
use common::registry::Registry;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn spawn(cmd: &mut Command) -> Child {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slipway")
}

/// `kill -9` the build and everything it started; true if it was still
/// running (false: it had already finished).
fn kill9(child: &mut Child) -> bool {
    let running = child.try_wait().unwrap().is_none();
    let pid = child.id();
    // Its process group (it leads one): uv and python go with it.
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{pid}")])
        .status();
    let _ = child.kill();
    let status = child.wait().unwrap();
    running && status.code().is_none()
}

/// Waits until `ready()` or the child exits; true if `ready()` came first.
fn wait_until(child: &mut Child, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("neither the moment to kill nor the end of the build came within {limit:?}");
}

/// Names of entries two levels under the cache's `tmp/` (scratch dirs of
/// builds: `tmp/build-XXXX.d/<prefix>XXXX`), with whether they hold `file`.
fn scratch(cache: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(builds) = std::fs::read_dir(cache.join("tmp")) else {
        return found;
    };
    for build in builds.filter_map(Result::ok) {
        let Ok(entries) = std::fs::read_dir(build.path()) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            found.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    found
}

fn has_scratch(cache: &Path, prefix: &str, inner: &str) -> bool {
    scratch(cache).iter().any(|(name, path)| {
        name.starts_with(prefix) && (inner.is_empty() || path.join(inner).exists())
    })
}

/// After a kill: no partial entry; the only scratch is a dead build's.
fn check_after_kill(cache: &Path) {
    if !cache.exists() {
        return;
    }
    check_cache(cache, true);
    if let Ok(entries) = std::fs::read_dir(cache.join("tmp")) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name.starts_with("build-"),
                "unexpected scratch entry tmp/{name}"
            );
        }
    }
}

/// The digests a surviving output may have: the old image's or the new one's
/// (manifest digests for a layout, config digests for a docker-archive).
struct Outcomes<'a> {
    layout: &'a [&'a str],
    archive: &'a [&'a str],
}

/// The OCI layout at `dir` is absent, or a copy of it reads in full (every
/// blob hashed, every layer unpacked and its diff_id checked) as exactly one
/// of the allowed images; skopeo reads it too.
fn layout_complete_or_absent(dir: &Path, allowed: &[&str]) {
    if !dir.exists() {
        return;
    }
    let copy = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(dir)
            .arg(copy.path().join("layout")),
    );
    let valid = validate_layout(&copy.path().join("layout"));
    assert!(
        allowed.contains(&valid.top.as_str()),
        "{} survived as {}, neither the old nor the new image ({allowed:?})",
        dir.display(),
        valid.top
    );
    skopeo_inspect_ok(&format!("oci:{}/layout:latest", copy.path().display()))
        .unwrap_or_else(|e| panic!("skopeo cannot read {}: {e}", dir.display()));
}

/// The docker-archive `file` is absent, or a copy of it unpacks in full as
/// exactly one of the allowed images (by config digest).
fn archive_complete_or_absent(file: &Path, allowed: &[&str]) {
    if !file.exists() {
        return;
    }
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("image.tar");
    std::fs::copy(file, &copied).unwrap();
    let valid = validate_archive(&copied);
    assert!(
        allowed.contains(&valid.top.as_str()),
        "{} survived as config {}, neither the old nor the new image ({allowed:?})",
        file.display(),
        valid.top
    );
}

fn outputs_complete_or_absent(layout: &Path, archive: &Path, allowed: &Outcomes) {
    layout_complete_or_absent(layout, allowed.layout);
    archive_complete_or_absent(archive, allowed.archive);
}

struct Env {
    registry: Registry,
    work: tempfile::TempDir,
    recipe: PathBuf,
    old: String,
}

impl Env {
    fn start() -> Option<Env> {
        if missing_prerequisites() || skip_or_fail_skopeo() {
            return None;
        }
        seed();
        let registry = Registry::start();
        push_alpine(&registry);
        let old = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(push_test_image(
                &registry.client(),
                registry.addr(),
                "team/app",
                "1",
            ))
            .manifest_digest
            .to_string();
        let work = tempfile::tempdir().unwrap();
        let recipe = make_recipe(&work.path().join("src"), "seed");
        Some(Env {
            registry,
            work,
            recipe,
            old,
        })
    }

    fn push_cmd(&self, cache: &Path, registry: &str) -> Command {
        let mut cmd = slipway(&self.recipe, cache, self.registry.addr());
        cmd.arg("--push")
            .arg(format!("{registry}/team/app:1"))
            .arg("--json");
        cmd
    }

    fn assert_tag_intact(&self) -> String {
        assert_tag_old_or_new(
            self.registry.addr(),
            "team/app",
            "1",
            Some(&self.old),
            &seed().digest,
        )
    }

    /// Runs the build to the end: the clean digest, the tag on it, a tidy cache.
    fn rerun(&self, cache: &Path) {
        let out = run_bounded(&mut self.push_cmd(cache, self.registry.addr()), LIMIT);
        let report = report(&out);
        assert_eq!(
            report["digest"],
            seed().digest.as_str(),
            "the rerun gives the clean digest"
        );
        assert_eq!(self.assert_tag_intact(), seed().digest);
        check_cache(cache, false);
    }
}

fn skip_or_fail_skopeo() -> bool {
    common::skip_or_fail("skopeo")
}

/// Kills at each stage of a cold build in turn (app bytecode, uv, the
/// site-packages layer, its bytecode), each time on the same cache, then
/// lets it finish. A stage the build got past before the kill (the moment
/// is polled) is tried again on a fresh cache: every stage gets its kill,
/// however fast or loaded the machine.
#[test]
fn killed_at_each_stage_then_rerun() {
    let Some(env) = Env::start() else { return };
    let cache = env.work.path().join("cache");
    // (what, the moment: a scratch dir `prefix` holding `inner`)
    let stages: [(&str, &str, &str); 4] = [
        ("app bytecode", "pyc", ""),
        ("uv install", "site-packages", "prefix"),
        ("site-packages layer", "layer", "layer.tar.gz"),
        ("site-packages bytecode", "pyc", ""),
    ];
    let mut misses = 0;
    for (what, prefix, inner) in stages {
        let mut on = cache.clone();
        while !kill_at_stage(&env, &on, what, prefix, inner) {
            misses += 1;
            assert!(misses <= 6, "the kill missed its stage {misses} times");
            on = env.work.path().join(format!("fresh-cache-{misses}"));
        }
    }
    eprintln!("every stage killed; {misses} tries missed their moment");
    env.rerun(&cache);
}

/// Runs a build on `cache` and kills it at the moment of `what`; true if it
/// was killed there. Checks the cache and the tag either way.
fn kill_at_stage(env: &Env, cache: &Path, what: &str, prefix: &str, inner: &str) -> bool {
    let mut child = spawn(&mut env.push_cmd(cache, env.registry.addr()));
    // The site-packages layer and its bytecode come after uv's dir exists.
    let mut after_uv = !matches!(what, "site-packages layer" | "site-packages bytecode");
    let hit = wait_until(&mut child, LIMIT, || {
        after_uv |= has_scratch(cache, "site-packages", "");
        after_uv && has_scratch(cache, prefix, inner)
    });
    let killed = hit && kill9(&mut child);
    if !hit {
        let _ = child.wait();
    }
    check_after_kill(cache);
    assert_eq!(
        tag_digest(env.registry.addr(), "team/app", "1")
            .as_deref()
            .map(|d| d == env.old || d == seed().digest),
        Some(true)
    );
    killed
}

/// Kills at random moments (seeded) of builds on one cache, alternating
/// the three destinations; then a rerun.
#[test]
fn killed_at_random_moments_then_rerun() {
    let Some(env) = Env::start() else { return };
    let cache = env.work.path().join("cache");
    let layout = env.work.path().join("out/layout");
    let archive = env.work.path().join("out/image.tar");
    let mut rng = fastrand::Rng::with_seed(6);
    let mut killed = 0;
    // Delays up to a cold build's time; a build that finishes first (the
    // cache fills, later builds are quicker) lowers the bound to its time.
    // Rounds go on until 4 kills landed mid-build (the event that matters),
    // whatever this machine's speed; 24 rounds without them is a failure.
    let mut upper = seed().build_time.max(Duration::from_millis(500));
    let mut round = 0;
    while killed < 4 {
        assert!(
            round < 24,
            "only {killed} of {round} builds were killed mid-way"
        );
        let mut cmd = match round % 3 {
            0 => env.push_cmd(&cache, env.registry.addr()),
            1 => {
                let mut cmd = slipway(&env.recipe, &cache, env.registry.addr());
                cmd.arg("--oci-layout").arg(&layout);
                cmd
            }
            _ => {
                let mut cmd = slipway(&env.recipe, &cache, env.registry.addr());
                cmd.arg("--docker-archive").arg(&archive);
                cmd
            }
        };
        let delay = upper
            .mul_f64(rng.f64() * 0.95)
            .max(Duration::from_millis(50));
        let mut child = spawn(&mut cmd);
        let started = Instant::now();
        if !wait_until(&mut child, LIMIT, || started.elapsed() >= delay) {
            upper = started.elapsed();
        }
        let was_running = kill9(&mut child);
        eprintln!(
            "round {round}: kill -9 after {delay:?}: {}",
            if was_running {
                "killed"
            } else {
                "had finished"
            }
        );
        killed += usize::from(was_running);
        round += 1;
        check_after_kill(&cache);
        // Every round builds the seed recipe: absent, or the seed image.
        let seed = seed();
        outputs_complete_or_absent(
            &layout,
            &archive,
            &Outcomes {
                layout: &[&seed.digest],
                archive: &[&seed.config_digest],
            },
        );
        env.assert_tag_intact();
    }
    env.rerun(&cache);
}

/// Killed while blobs upload and while the tag is written (a proxy stalls
/// them): the tag still points at the old image; a rerun pushes the new one.
#[test]
fn killed_while_pushing_then_rerun() {
    let Some(env) = Env::start() else { return };
    let cache = env.work.path().join("cache");
    copy_seed_cache(&cache);
    let proxy = FaultProxy::start(env.registry.addr());
    for rule in [
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::Stall(Duration::from_secs(60)),
        )
        .nth(2),
        Rule::new(
            "PUT",
            "/team/app/manifests/1",
            Fault::Stall(Duration::from_secs(60)),
        ),
    ] {
        proxy.clear();
        proxy.add(rule);
        let mut child = spawn(&mut env.push_cmd(&cache, proxy.addr()));
        assert!(
            wait_until(&mut child, LIMIT, || !proxy.fired().is_empty()),
            "the build reached the stalled request"
        );
        assert!(kill9(&mut child), "killed while stalled");
        check_after_kill(&cache);
        assert_eq!(
            tag_digest(env.registry.addr(), "team/app", "1").as_deref(),
            Some(env.old.as_str()),
            "the tag is written last: still the old image"
        );
    }
    env.rerun(&cache);
}

/// Killed while an OCI layout or docker-archive is being written (over a
/// complete one from an earlier build): the output is complete or absent.
#[test]
fn killed_while_writing_outputs() {
    let Some(env) = Env::start() else { return };
    let cache = env.work.path().join("cache");
    copy_seed_cache(&cache);
    let out_dir = env.work.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let layout = out_dir.join("layout");
    let archive = out_dir.join("image.tar");
    let other = make_recipe(&env.work.path().join("other"), "other");
    let staging_exists = |prefix: &str| {
        std::fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
    };
    // The image `other` gives, built once elsewhere: the "new" outcome.
    let new = report(&run_bounded(
        slipway(&other, &cache, env.registry.addr())
            .arg("--oci-layout")
            .arg(env.work.path().join("other-layout"))
            .arg("--json"),
        LIMIT,
    ));
    let seed = seed();
    let new_config = new["platforms"][0]["config_digest"].as_str().unwrap();
    let allowed = Outcomes {
        layout: &[&seed.digest, new["digest"].as_str().unwrap()],
        archive: &[&seed.config_digest, new_config],
    };
    let mut caught = 0;
    for (dest_flag, dest, staging) in [
        ("--oci-layout", &layout, ".slipway-layout-"),
        ("--docker-archive", &archive, ".slipway-archive-"),
    ] {
        // A complete output (of the old image) first.
        let out = run_bounded(
            slipway(&env.recipe, &cache, env.registry.addr())
                .arg(dest_flag)
                .arg(dest),
            LIMIT,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        if dest == &layout {
            layout_complete_or_absent(&layout, &[&seed.digest]);
        } else {
            archive_complete_or_absent(&archive, &[&seed.config_digest]);
        }
        // Kill builds of `other` until one dies while this output is being
        // written (the event under test), at most 8 tries.
        let mut tries = 0;
        loop {
            assert!(
                tries < 8,
                "no kill landed while {dest_flag} was written in {tries} tries"
            );
            tries += 1;
            let mut child = spawn(
                slipway(&other, &cache, env.registry.addr())
                    .arg(dest_flag)
                    .arg(dest),
            );
            let hit =
                wait_until(&mut child, LIMIT, || staging_exists(staging)) && kill9(&mut child);
            outputs_complete_or_absent(&layout, &archive, &allowed);
            check_after_kill(&cache);
            if hit {
                caught += 1;
                break;
            }
        }
    }
    eprintln!("{caught} kills landed while an output was being written");
    assert_eq!(caught, 2, "one kill landed while each output was written");
    // Reruns write complete outputs.
    for (flag, dest) in [("--oci-layout", &layout), ("--docker-archive", &archive)] {
        let out = run_bounded(
            slipway(&env.recipe, &cache, env.registry.addr())
                .arg(flag)
                .arg(dest),
            LIMIT,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let old = Outcomes {
        layout: &[&seed.digest],
        archive: &[&seed.config_digest],
    };
    outputs_complete_or_absent(&layout, &archive, &old);
    assert!(
        layout.exists() && archive.exists(),
        "the reruns wrote both outputs"
    );
    check_cache(&cache, false);
}
