//! Shared integration-test harness: a real Distribution registry on
//! 127.0.0.1 (plain, htpasswd or token auth), a token server for it, and a
//! small test image to push, and a scripted fake server for failures.
#![allow(dead_code)]

pub mod fake_server;
pub mod fault_proxy;
pub mod fixtures;
pub mod hostile;
pub mod image;
pub mod registry;
pub mod runnable;
pub mod token_server;
pub mod tools;

/// Whether `tool` is an executable on PATH (or a path that exists).
pub fn has_tool(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return executable(std::path::Path::new(tool));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(tool))))
        .unwrap_or(false)
}

/// Whether this is CI (`CI=true` or `CI=1`), where missing prerequisites fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the test must be skipped because `tool` is missing: in CI
/// (`CI=true`) a missing tool is a failure instead.
///
/// ```ignore
/// if skip_or_fail("docker-registry") { return; }
/// ```
pub fn skip_or_fail(tool: &str) -> bool {
    !has_tool(tool) && skip_or_fail_because(&format!("`{tool}` is not installed"))
}

/// The one way a test skips: `why` names the missing prerequisite and the
/// fix. Outside CI it prints `skipping: why` and returns true; in CI it fails.
pub fn skip_or_fail_because(why: &str) -> bool {
    if in_ci() {
        panic!("required in CI: {why}");
    }
    eprintln!("skipping: {why}");
    true
}
