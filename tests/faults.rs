//! Faults in the network and corrupt content (issue 6, items 1 and 2):
//! `slipway build --push` through a fault-injecting proxy in front of a real
//! registry. Each fault is either retried and the build gives the clean
//! build's digest, or the build fails naming the registry, the operation and
//! the status. Whatever happens, the tag (asked of the registry directly)
//! points at the complete new image or still at the old one, and the cache
//! holds only blobs that hash to their names.
//!
//! The base is pulled through the proxy's second address (a different
//! registry name for the same registry), so its layers are downloaded and
//! uploaded rather than mounted: downloads and uploads both meet the faults.

#[path = "support/builds.rs"]
mod builds;
mod common;

use builds::*;
use common::fault_proxy::{Counts, Fault, FaultProxy, Rule};
use common::image::push_test_image;
use common::registry::Registry;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const REPO: &str = "team/app";
const TAG: &str = "1";
/// Bound on one build in these tests.
const BUILD_LIMIT: Duration = Duration::from_secs(90);

/// A registry holding the base and an "old" image under `team/app:1`, a
/// proxy in front of it, the seed recipe and a warm copy of the seed cache.
struct Env {
    registry: Registry,
    proxy: FaultProxy,
    old: String,
    work: TempDir,
    recipe: PathBuf,
    cache: PathBuf,
}

impl Env {
    fn start() -> Option<Env> {
        if missing_prerequisites() {
            return None;
        }
        let clean = seed();
        let registry = Registry::start();
        push_alpine(&registry);
        let old = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(push_test_image(
                &registry.client(),
                registry.addr(),
                REPO,
                TAG,
            ))
            .manifest_digest
            .to_string();
        assert_ne!(old, clean.digest);
        let proxy = FaultProxy::start(registry.addr());
        let work = tempfile::tempdir().unwrap();
        let recipe = make_recipe(&work.path().join("src"), "seed");
        let cache = work.path().join("cache");
        copy_seed_cache(&cache);
        Some(Env {
            registry,
            proxy,
            old,
            work,
            recipe,
            cache,
        })
    }

    /// `slipway build --push PROXY/team/app:1 --json`, base via the proxy's other address.
    fn command(&self) -> Command {
        let mut cmd = slipway(&self.recipe, &self.cache, self.proxy.alt_addr());
        cmd.arg("--push")
            .arg(format!("{}/{REPO}:{TAG}", self.proxy.addr()))
            .arg("--json");
        cmd
    }

    fn build(&self, args: &[&str]) -> Output {
        run_bounded(self.command().args(args), BUILD_LIMIT)
    }

    /// The build succeeded with the clean digest, and the tag points at it.
    fn assert_clean_success(&self, out: &Output) {
        let report = report(out);
        assert_eq!(
            report["digest"],
            seed().digest.as_str(),
            "same digest as a clean build"
        );
        let now = self.assert_tag_intact();
        assert_eq!(now, seed().digest, "the tag points at the new image");
        check_cache(&self.cache, false);
        self.assert_faults_happened(true);
    }

    /// The build failed as a registry error (exit 3) whose message names the
    /// registry, the operation and each of `words`; the tag is still the old image.
    fn assert_failure(
        &self,
        out: &Output,
        registry: &str,
        operation: &str,
        words: &[&str],
    ) -> String {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "a registry error:\n{stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no `error:` line in:\n{stderr}"));
        assert!(
            error.contains(registry),
            "names the registry `{registry}`: {error}"
        );
        assert!(
            error.contains(operation),
            "names the operation `{operation}`: {error}"
        );
        for word in words {
            assert!(stderr.contains(word), "says `{word}`:\n{stderr}");
        }
        let now = self.assert_tag_intact();
        assert_eq!(now, self.old, "a failed build leaves the tag alone");
        check_cache(&self.cache, false);
        self.assert_faults_happened(false);
        stderr
    }

    /// The tag (on the registry itself, not through the proxy) points at
    /// the complete new image or at the old one.
    fn assert_tag_intact(&self) -> String {
        assert_tag_old_or_new(
            self.registry.addr(),
            REPO,
            TAG,
            Some(&self.old),
            &seed().digest,
        )
    }

    fn fired(&self) -> usize {
        self.proxy.fired().len()
    }

    /// The requests a rule picked really got their fault: the proxy's counts
    /// of what it did match the faults fired, kind by kind (counts land just
    /// after the client sees the fault: wait a moment for the last). After a
    /// failed build (`all` false) requests running in parallel may have been
    /// abandoned before their fault: then at least one of each kind happened.
    fn assert_faults_happened(&self, all: bool) -> Counts {
        let fired = self.proxy.fired();
        let of = |pick: fn(&Fault) -> bool| {
            fired
                .iter()
                .filter(|e| e.fault.as_ref().is_some_and(pick))
                .count()
        };
        let resets = of(|f| matches!(f, Fault::Reset { .. }));
        let statuses = of(|f| matches!(f, Fault::Status(_) | Fault::TooManyRequests { .. }));
        let stalls = of(|f| {
            matches!(
                f,
                Fault::Stall(_) | Fault::StallUpload(_) | Fault::StallBody(_)
            )
        });
        let cut = of(|f| matches!(f, Fault::Truncate));
        let corrupted = of(|f| matches!(f, Fault::Corrupt));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = self.proxy.counts();
            let pairs = [
                (c.resets, resets),
                (c.statuses, statuses),
                (c.stalls, stalls),
                (c.bodies_cut, cut),
                (c.bodies_corrupted, corrupted),
            ];
            let done = pairs.iter().all(|&(happened, fired)| {
                happened <= fired && (happened == fired || (!all && happened >= fired.min(1)))
            });
            if done || Instant::now() > deadline {
                assert!(
                    done,
                    "the faults fired ({resets} resets, {statuses} statuses, {stalls} stalls, \
                     {cut} cuts, {corrupted} corruptions) did not happen: {c:?}\n{fired:?}"
                );
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---- resets mid-upload ----

#[test]
fn reset_mid_upload_is_retried() {
    let Some(env) = Env::start() else { return };
    // Every blob upload (base layers, new layers, config) breaks once.
    env.proxy
        .add(Rule::new("PUT", "/blobs/uploads/", Fault::Reset { after: 256 << 10 }).times(3));
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 3);
    assert_eq!(env.proxy.counts().resets, 3, "three uploads broken midway");
}

#[test]
fn reset_mid_upload_without_retries_fails_and_keeps_the_tag() {
    let Some(env) = Env::start() else { return };
    env.proxy
        .add(Rule::new("PUT", "/blobs/uploads/", Fault::Reset { after: 256 << 10 }).always());
    let out = env.build(&["--retries", "1"]);
    env.assert_failure(&out, env.proxy.addr(), "push blob", &["PUT"]);
    assert!(env.proxy.counts().resets >= 1);
}

// ---- 5xx ----

#[test]
fn http_500_on_the_tag_is_retried() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(
        Rule::new(
            "PUT",
            &format!("/{REPO}/manifests/{TAG}"),
            Fault::Status(500),
        )
        .times(2),
    );
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 2);
}

#[test]
fn http_502_on_upload_start_is_retried() {
    let Some(env) = Env::start() else { return };
    env.proxy
        .add(Rule::new("POST", "/blobs/uploads/", Fault::Status(502)).times(3));
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 3);
}

#[test]
fn http_503_on_base_manifest_and_blob_checks_is_retried() {
    let Some(env) = Env::start() else { return };
    env.proxy
        .add(Rule::new("GET", "/manifests/3.13-alpine", Fault::Status(503)).times(2));
    env.proxy
        .add(Rule::new("HEAD", "/blobs/sha256:", Fault::Status(503)).times(2));
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 4);
}

#[test]
fn http_503_on_the_tag_until_retries_run_out_fails_naming_it() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(
        Rule::new(
            "PUT",
            &format!("/{REPO}/manifests/{TAG}"),
            Fault::Status(503),
        )
        .always(),
    );
    let out = env.build(&["--retries", "2"]);
    env.assert_failure(
        &out,
        env.proxy.addr(),
        "push manifest",
        &["503 Service Unavailable", "PUT"],
    );
    assert_eq!(env.fired(), 2, "--retries 2: two attempts");
}

#[test]
fn http_500_on_blob_upload_without_retries_fails_naming_it() {
    let Some(env) = Env::start() else { return };
    env.proxy
        .add(Rule::new("PUT", "/blobs/uploads/", Fault::Status(500)).always());
    let out = env.build(&["--retries", "1"]);
    env.assert_failure(
        &out,
        env.proxy.addr(),
        "push blob",
        &["500 Internal Server Error"],
    );
}

#[test]
fn http_502_on_the_base_manifest_until_retries_run_out_fails_naming_the_mirror() {
    let Some(env) = Env::start() else { return };
    env.proxy
        .add(Rule::new("GET", "/manifests/", Fault::Status(502)).always());
    let out = env.build(&["--retries", "3"]);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull manifest",
        &["502 Bad Gateway"],
    );
    assert_eq!(env.fired(), 3);
}

#[test]
fn http_503_on_mount_is_retried() {
    let Some(env) = Env::start() else { return };
    // Base and destination on one registry name: base layers are mounted.
    env.proxy
        .add(Rule::new("POST", "mount=", Fault::Status(503)).times(2));
    let mut cmd = slipway(&env.recipe, &env.cache, env.proxy.addr());
    cmd.arg("--push")
        .arg(format!("{}/{REPO}:{TAG}", env.proxy.addr()))
        .arg("--json");
    let out = run_bounded(&mut cmd, BUILD_LIMIT);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 2);
    let mounts = env
        .proxy
        .log()
        .iter()
        .filter(|e| e.target.contains("mount=") && e.status == Some(201))
        .count();
    assert!(
        mounts >= 1,
        "base layers mounted after the 503s: {:?}",
        env.proxy.log()
    );
}

// ---- 429 ----

#[test]
fn too_many_requests_waits_for_retry_after() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(Rule::new(
        "GET",
        "/manifests/3.13-alpine",
        Fault::TooManyRequests { retry_after: 2 },
    ));
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 1);
    let asked: Vec<_> = env
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.target.contains("/manifests/3.13-alpine"))
        .collect();
    assert!(asked.len() >= 2, "{asked:?}");
    let waited = asked[1].at - asked[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "asked again after Retry-After (2 s), not after {waited:?}"
    );
}

#[test]
fn too_many_requests_on_upload_is_retried() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::TooManyRequests { retry_after: 1 },
        )
        .times(2),
    );
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 2);
}

#[test]
fn too_many_requests_until_retries_run_out_fails_naming_it() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(
        Rule::new(
            "GET",
            "/blobs/sha256:",
            Fault::TooManyRequests { retry_after: 1 },
        )
        .always(),
    );
    let out = env.build(&["--retries", "2"]);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull blob",
        &["429 Too Many Requests", "rate limiting"],
    );
}

// ---- stalls past the timeout ----

#[test]
fn stalled_answers_time_out_and_are_retried() {
    let Some(env) = Env::start() else { return };
    let stall = Fault::Stall(Duration::from_secs(30));
    // The biggest upload stops being read halfway (first: the first rule
    // that fires wins) ...
    let hex = seed()
        .layer("site-packages")
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    env.proxy.add(Rule::new(
        "PUT",
        &hex,
        Fault::StallUpload(Duration::from_secs(30)),
    ));
    // ... and answers never come.
    env.proxy
        .add(Rule::new("GET", "/manifests/3.13-alpine", stall.clone()));
    env.proxy
        .add(Rule::new("PUT", "/blobs/uploads/", stall.clone()));
    env.proxy
        .add(Rule::new("PUT", &format!("/{REPO}/manifests/{TAG}"), stall));
    let out = env.build(&["--timeout", "2"]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 4, "{:?}", env.proxy.fired());
    // Events, not the wall clock: slipway hung up on each withheld answer
    // before its 30 s stall ended, and sent the stalled upload again while
    // that stall still went on.
    let counts = env.proxy.counts();
    assert_eq!(counts.stalls, 4, "{counts:?}");
    assert_eq!(
        counts.stalls_abandoned, 3,
        "gave up on each stalled answer: {counts:?}"
    );
    let puts: Vec<_> = env
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT" && e.target.contains(&hex))
        .collect();
    assert!(
        puts.len() >= 2,
        "the stalled upload was sent again: {puts:?}"
    );
    assert!(
        puts[1].at - puts[0].at < Duration::from_secs(30),
        "retried before the stall ended: {puts:?}"
    );
}

#[test]
fn stalled_download_midway_times_out_and_is_retried() {
    let Some(env) = Env::start() else { return };
    // The base's layers (the big blob GETs); the config is small and fetched first.
    let layer = &seed().base_layers[0];
    env.proxy.add(Rule::new(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::StallBody(Duration::from_secs(30)),
    ));
    let out = env.build(&["--timeout", "2"]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 1);
    let counts = env.proxy.counts();
    assert_eq!(
        counts.stalls_abandoned, 1,
        "gave up on the stalled body: {counts:?}"
    );
    assert!(counts.bytes_withheld > 0, "{counts:?}");
}

#[test]
fn slow_uploads_that_keep_moving_do_not_time_out() {
    let Some(env) = Env::start() else { return };
    // An app with 16 MiB of incompressible data: its layer's upload is
    // paced to take three times the timeout, with no pause near it.
    let dir = env.work.path().join("big");
    let recipe = make_recipe(&dir, "big");
    let mut rng = fastrand::Rng::with_seed(16);
    let noise: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(16 << 20)
        .collect();
    std::fs::write(dir.join("app/data.bin"), noise).unwrap();
    env.proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::SlowUpload(Duration::from_secs(6)),
        )
        .always(),
    );
    let mut cmd = slipway(&recipe, &env.cache, env.proxy.alt_addr());
    cmd.arg("--push")
        .arg(format!("{}/{REPO}:{TAG}", env.proxy.addr()));
    cmd.args(["--json", "--timeout", "2", "--retries", "1"]);
    let started = Instant::now();
    let out = run_bounded(&mut cmd, BUILD_LIMIT);
    let digest = report(&out)["digest"].as_str().unwrap().to_string();
    assert!(started.elapsed() > Duration::from_secs(6));
    // The big layer's upload really was paced: ~10 MiB in 32 steps (its
    // last 6 MiB go at full speed), and none of it timed out.
    let counts = env.proxy.counts();
    assert!(counts.bytes_slowed >= 8 << 20, "{counts:?}");
    assert!(counts.slow_pauses >= 32, "{counts:?}");
    let slowed_puts = env
        .proxy
        .fired()
        .iter()
        .filter(|e| e.status == Some(201))
        .count();
    assert_eq!(slowed_puts, env.fired(), "every paced upload was accepted");
    let now = assert_tag_old_or_new(env.registry.addr(), REPO, TAG, Some(&env.old), &digest);
    assert_eq!(now, digest);
    check_cache(&env.cache, false);
}

#[test]
fn stalls_until_retries_run_out_fail_naming_the_timeout() {
    let Some(env) = Env::start() else { return };
    env.proxy.add(
        Rule::new(
            "PUT",
            &format!("/{REPO}/manifests/{TAG}"),
            Fault::Stall(Duration::from_secs(30)),
        )
        .always(),
    );
    let out = env.build(&["--timeout", "1", "--retries", "2"]);
    env.assert_failure(&out, env.proxy.addr(), "push manifest", &["timed out"]);
    // The proxy notices a hang-up on its next 20 ms poll: give it a moment
    // after slipway's exit before reading what it saw.
    let mut counts = env.proxy.counts();
    let waited = Instant::now();
    while counts.stalls_abandoned < 2 && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        counts = env.proxy.counts();
    }
    assert_eq!(
        counts.stalls_abandoned, 2,
        "both attempts given up: {counts:?}"
    );
}

// ---- downloads cut short ----

#[test]
fn downloads_cut_short_are_retried() {
    let Some(env) = Env::start() else { return };
    // Every blob download (the base's config and layers) and the base's
    // manifests break once.
    env.proxy
        .add(Rule::new("GET", "/blobs/sha256:", Fault::Truncate).times(3));
    env.proxy
        .add(Rule::new("GET", "/manifests/", Fault::Truncate).times(2));
    let out = env.build(&[]);
    env.assert_clean_success(&out);
    assert_eq!(env.fired(), 5);
    let counts = env.proxy.counts();
    assert_eq!(counts.bodies_cut, 5, "{counts:?}");
    assert!(counts.bytes_withheld > 0, "{counts:?}");
}

#[test]
fn downloads_cut_short_until_retries_run_out_fail_naming_them() {
    let Some(env) = Env::start() else { return };
    let layer = &seed().base_layers[0];
    env.proxy
        .add(Rule::new("GET", &format!("/blobs/{layer}"), Fault::Truncate).always());
    let out = env.build(&["--retries", "2"]);
    env.assert_failure(&out, env.proxy.alt_addr(), "pull blob", &["GET"]);
    assert!(!env
        .cache
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap())
        .exists());
}

// ---- corrupt content (item 2) ----

/// The build is refused with a digest mismatch naming the registry, and the
/// corrupt blob is nowhere in the cache.
fn assert_refused_as_corrupt(
    env: &Env,
    out: &Output,
    registry: &str,
    operation: &str,
    digest: &str,
) {
    let stderr = env.assert_failure(
        out,
        registry,
        operation,
        &["digest mismatch", digest, "corrupt"],
    );
    let present = check_cache(&env.cache, false);
    assert!(
        !present.contains(&digest.strip_prefix("sha256:").unwrap().to_string()),
        "{stderr}"
    );
}

#[test]
fn corrupt_layer_download_is_refused_and_not_cached() {
    let Some(env) = Env::start() else { return };
    let layer = &seed().base_layers[0];
    env.proxy
        .add(Rule::new("GET", &format!("/blobs/{layer}"), Fault::Corrupt).always());
    let out = env.build(&[]);
    assert_refused_as_corrupt(&env, &out, env.proxy.alt_addr(), "pull blob", layer);
}

#[test]
fn corrupt_config_download_is_refused() {
    let Some(env) = Env::start() else { return };
    // The first blob GET of a build is the base's config.
    env.proxy
        .add(Rule::new("GET", "/blobs/sha256:", Fault::Corrupt).always());
    let out = env.build(&[]);
    let stderr = text(&out.stderr);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull blob",
        &["digest mismatch"],
    );
    assert!(stderr.contains("corrupt"), "{stderr}");
}

#[test]
fn corrupt_manifests_are_refused() {
    let Some(env) = Env::start() else { return };
    // By tag (checked against Docker-Content-Digest) ...
    env.proxy
        .add(Rule::new("GET", "/manifests/3.13-alpine", Fault::Corrupt));
    let out = env.build(&[]);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull manifest",
        &["digest mismatch", "3.13-alpine"],
    );
    // ... and by digest (the platform's manifest, checked against its digest).
    env.proxy.clear();
    env.proxy
        .add(Rule::new("GET", "/manifests/sha256:", Fault::Corrupt));
    let out = env.build(&[]);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull manifest",
        &["digest mismatch"],
    );
}

#[test]
fn registry_storing_a_corrupt_layer_is_refused() {
    let Some(env) = Env::start() else { return };
    // The registry's own storage is corrupt: no proxy fault at all.
    let layer = &seed().base_layers[0];
    let path = env.registry.blob_data_path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = env.build(&[]);
    assert_refused_as_corrupt(&env, &out, env.proxy.alt_addr(), "pull blob", layer);
    assert_eq!(env.fired(), 0);
    assert_eq!(
        env.proxy.counts(),
        Counts::default(),
        "the proxy did nothing"
    );
}

#[test]
fn registry_storing_a_corrupt_platform_manifest_is_refused() {
    let Some(env) = Env::start() else { return };
    // The amd64 manifest of the base's index, corrupted in storage.
    let (_, _, index) = http(
        env.registry.addr(),
        "GET",
        "/v2/library/python/manifests/3.13-alpine",
    );
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = env.registry.blob_data_path(&amd64);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b' ');
    std::fs::write(&path, bytes).unwrap();
    let out = env.build(&[]);
    env.assert_failure(
        &out,
        env.proxy.alt_addr(),
        "pull manifest",
        &["digest mismatch", &amd64],
    );
}

#[test]
fn layout_base_with_a_tampered_blob_is_refused_naming_the_file() {
    let Some(env) = Env::start() else { return };
    let layout = env.work.path().join("base-layout");
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(repo_root().join("vendor-test-images/python-3.13-alpine"))
            .arg(&layout),
    );
    let tamper = |digest: &str| {
        let path = layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let build = || {
        let mut cmd = env.command();
        cmd.arg("--base-layout").arg(&layout);
        run_bounded(&mut cmd, BUILD_LIMIT)
    };
    // A base layer: read when pushing (the destination lacks it).
    let layer = &seed().base_layers[0];
    let path = tamper(layer);
    let out = build();
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file:\n{stderr}"
    );
    assert!(stderr.contains("does not match its digest"), "{stderr}");
    assert_tag_old_or_new(
        env.registry.addr(),
        REPO,
        TAG,
        Some(&env.old),
        &seed().digest,
    );
    assert_eq!(
        tag_digest(env.registry.addr(), REPO, TAG).as_deref(),
        Some(env.old.as_str())
    );
    let present = check_cache(&env.cache, false);
    assert!(!present.contains(&layer.strip_prefix("sha256:").unwrap().to_string()));
    // The index itself (read first).
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let top = index["manifests"][0]["digest"].as_str().unwrap();
    let path = tamper(top);
    let out = build();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file:\n{stderr}"
    );
    assert_eq!(
        tag_digest(env.registry.addr(), REPO, TAG).as_deref(),
        Some(env.old.as_str())
    );
    check_cache(&env.cache, false);
}
