//! What `slipway build` prints while it runs: spinners and bars in a
//! terminal (driven through a pseudo-terminal with util-linux `script`, and
//! rendered with a terminal emulator to see what a user would see), plain
//! lines when stderr is not a terminal, nothing with `--quiet`.

#[path = "support/cli.rs"]
mod cli;
mod common;

use cli::*;
use common::registry::Registry;
use std::process::{Command, Output, Stdio};

const COLUMNS: u16 = 200;
const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `cmd` run in a pseudo-terminal of COLUMNS columns; its stdout holds
/// everything the terminal received (stdout and stderr of `cmd`).
fn in_terminal(cmd: &Command) -> Output {
    let mut line = format!("stty cols {COLUMNS} rows 50; exec");
    line.push(' ');
    line.push_str(&quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(&arg.to_string_lossy()));
    }
    let mut script = Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => script.env(key, v),
            None => script.env_remove(key),
        };
    }
    script
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .expect("run script")
}

/// The screen a terminal shows after receiving `raw` (tall enough to keep everything).
fn render(raw: &[u8]) -> Vec<String> {
    let nonzero = |n: u16| std::num::NonZeroU16::new(n).expect("not zero");
    let mut parser = vt100::Parser::new(nonzero(2000), nonzero(COLUMNS), 0);
    parser.process(raw);
    // Row by row: a line that fills the width and wraps is still its own row.
    let mut lines: Vec<String> = parser
        .screen()
        .rows(0, COLUMNS)
        .map(|l| l.trim_end().to_string())
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

struct Setup {
    registry: Registry,
    work: tempfile::TempDir,
    wheels: std::path::PathBuf,
}

fn setup() -> Option<Setup> {
    if tools_missing(&["docker-registry", "skopeo", "uv", "script"]) {
        return None;
    }
    let wheels = wheelhouse()?;
    let registry = Registry::start();
    push_alpine(&registry);
    Some(Setup {
        registry,
        work: tempfile::tempdir().unwrap(),
        wheels,
    })
}

impl Setup {
    fn cache(&self) -> std::path::PathBuf {
        self.work.path().join("cache")
    }

    fn reference(&self, tag: &str) -> String {
        format!("{}/progress/demo:{tag}", self.registry.addr())
    }

    /// `slipway build` of the demo, pushed to the test registry as `tag`.
    fn build(&self, tag: &str) -> Command {
        let mut cmd = slipway(&self.cache());
        cmd.arg("build")
            .arg(repo_root().join("recipes/fastapi-demo/alpine.toml"))
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", self.registry.addr()))
            .args(["--offline", "--find-links"])
            .arg(&self.wheels)
            .arg("--push")
            .arg(self.reference(tag));
        cmd
    }
}

fn assert_digest_line(line: &str, reference: &str) {
    let digest = line
        .strip_prefix(&format!("{reference}@sha256:"))
        .unwrap_or_else(|| panic!("not `{reference}@sha256:...`: {line:?}"));
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{line:?}"
    );
}

#[test]
fn a_terminal_gets_spinners_and_bars_then_a_clean_table() {
    let Some(s) = setup() else { return };
    let out = in_terminal(&s.build("tty"));
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{raw}");

    // While it ran: spinners, uv's own output folded into one, byte bars.
    assert!(raw.contains(SPINNER), "no spinner frames:\n{raw}");
    assert!(raw.contains("\x1b["), "no terminal control sequences");
    let uv_said = ["Resolved ", "Prepared ", "Installed ", "+ fastapi=="];
    assert!(
        uv_said.iter().any(|s| raw.contains(s)),
        "uv's output is not shown:\n{raw}"
    );
    assert!(raw.contains("push sha256:"), "no upload bar:\n{raw}");

    // What is left on the screen: one ✓ line per step, the table, the digest.
    let screen = render(&out.stdout);
    let text = screen.join("\n");
    for step in [
        "✓ resolving base `docker.io/library/python:3.13-alpine` (",
        "✓ installing wheels for x86_64-unknown-linux-musl, Python 3.13 (",
        "✓ writing the site-packages layer (",
        "✓ building app → /app (",
        "✓ pushing to `",
    ] {
        assert!(
            screen.iter().any(|l| l.starts_with(step)),
            "no `{step}` line on:\n{text}"
        );
    }
    assert!(
        !text.contains(SPINNER),
        "a spinner was left behind:\n{text}"
    );
    assert!(
        !text.contains("push sha256:"),
        "a bar was left behind:\n{text}"
    );
    let header = screen
        .iter()
        .position(|l| l.starts_with("  layer "))
        .unwrap_or_else(|| panic!("no layer table:\n{text}"));
    assert!(
        screen[header - 1].starts_with("linux/amd64  sha256:"),
        "{text}"
    );
    assert!(screen[header + 1..]
        .iter()
        .any(|l| l.starts_with("  site-packages ")));
    assert!(screen[header + 1..]
        .iter()
        .any(|l| l.starts_with("  total ")));
    assert_digest_line(screen.last().unwrap(), &s.reference("tty"));
    // Nothing is drawn after the result.
    let tail = &raw[raw.rfind("  total ").unwrap()..];
    assert!(!tail.contains('\x1b'), "drawing after the table: {tail:?}");

    // --quiet in a terminal: the result and nothing else.
    let out = in_terminal(s.build("quiet").arg("--quiet"));
    assert!(out.status.success());
    let screen = render(&out.stdout);
    assert_eq!(screen.len(), 1, "{screen:?}");
    assert_digest_line(&screen[0], &s.reference("quiet"));
}

#[test]
fn ci_logs_get_plain_lines_and_quiet_gets_none() {
    let Some(s) = setup() else { return };
    let out = run_ok(s.build("plain").stderr(Stdio::piped()));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "escape codes in a log:\n{stderr}");
    assert!(
        !stderr.contains(SPINNER) && !stderr.contains('✓'),
        "{stderr}"
    );
    for line in [
        "  resolving base `docker.io/library/python:3.13-alpine`",
        "  installing wheels for x86_64-unknown-linux-musl, Python 3.13",
        "  building app bytecode",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "no `{line}` line in:\n{stderr}"
        );
    }
    // Each upload is one line with its size and time.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("    push sha256:") && l.ends_with('s')),
        "{stderr}"
    );
    assert!(stderr.contains("  layer "), "the table: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_digest_line(stdout.trim_end(), &s.reference("plain"));

    // --verbose: every registry request and cache decision.
    let out = run_ok(s.build("verbose").arg("--verbose"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cache hit: "), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("registry: HEAD http://127.0.0.1:")),
        "{stderr}"
    );

    // --quiet: nothing on stderr; --json: one document on stdout, no table.
    let out = run_ok(s.build("quiet").arg("--quiet"));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = run_ok(s.build("json").arg("--json"));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let report = json_of(&out);
    assert!(report["digest"].as_str().unwrap().starts_with("sha256:"));
}
