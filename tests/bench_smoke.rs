//! `bench/run --smoke`: one run of each slipway benchmark case (no buildah),
//! so the benchmark script can't rot. Timings are printed, never asserted;
//! what is asserted are the benchmark's invariants that don't depend on speed.

mod common;

use std::process::Command;

#[test]
fn bench_smoke_runs_and_its_invariants_hold() {
    for tool in ["docker-registry", "skopeo", "umoci", "uv", "mmdebstrap"] {
        if common::skip_or_fail(tool) {
            return;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/bench/run"))
        .arg("--smoke")
        .env("SLIPWAY", env!("CARGO_BIN_EXE_slipway"))
        .output()
        .expect("run bench/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/run --smoke failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    for case in ["cold", "no change", "one app file changed", "two platforms"] {
        assert!(stdout.contains(case), "table lists `{case}`:\n{stdout}");
    }
    assert!(
        stdout.contains("MET  no-change rebuild builds no layer"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MET  no base-layer bytes sent when the destination has them"),
        "{stdout}"
    );
    // The per-wheel bytecode store: counted from the builds' --json reports.
    for met in [
        "MET  issue 18: adding one dependency compiles only that wheel's files",
        "MET  issue 18: a warm per-wheel store compiles no site-packages file",
        "MET  issue 14: a fresh runner with a warm registry cache builds no layer",
    ] {
        assert!(stdout.contains(met), "{met}:\n{stdout}");
    }
}
