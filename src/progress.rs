//! Progress while a command runs, on stderr: spinners and byte bars on a
//! terminal (indicatif), one plain line per step when stderr is not a
//! terminal (CI logs), nothing with `--quiet`.
//!
//! A [`Progress`] is a cheap handle (clone it freely). Stages deep in the
//! pipeline that have no handle — uv's output, registry transfers — report
//! through the one installed with [`Progress::install`] (see [`current`]);
//! without one they stay silent.

use crate::sanitize::escape;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing but errors.
    Quiet,
    /// One line per step (not a terminal, or `TERM=dumb`).
    Plain,
    /// Spinners and bars, redrawn in place.
    Terminal,
}

impl Mode {
    /// Terminal when stderr is one (and `TERM` is not `dumb`), else plain.
    pub fn detect(quiet: bool) -> Mode {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        match (quiet, std::io::stderr().is_terminal() && !dumb) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Terminal,
            (false, false) => Mode::Plain,
        }
    }
}

/// The reporter: see the module docs.
#[derive(Clone)]
pub struct Progress {
    pub mode: Mode,
    pub verbose: bool,
    inner: Arc<Inner>,
}

struct Inner {
    multi: MultiProgress,
    /// The running step: its spinner (terminal mode), message and start.
    step: Mutex<Option<(Option<ProgressBar>, String, Instant)>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .field("verbose", &self.verbose)
            .finish()
    }
}

impl Default for Progress {
    /// Plain lines, as a library caller without a terminal would want.
    fn default() -> Self {
        Progress::with_mode(Mode::Plain, false)
    }
}

static CURRENT: RwLock<Option<Progress>> = RwLock::new(None);

/// The installed reporter, if any.
pub fn installed() -> Option<Progress> {
    CURRENT.read().ok().and_then(|c| c.clone())
}

/// The installed reporter, or a quiet one.
pub fn current() -> Progress {
    installed().unwrap_or_else(|| Progress::with_mode(Mode::Quiet, false))
}

/// The installed reporter, installing one for `quiet`/`verbose` if there is none.
pub fn current_or_install(quiet: bool, verbose: bool) -> Progress {
    match installed() {
        Some(p) => p,
        None => Progress::new(quiet, verbose).install(),
    }
}

/// A diagnostic line on stderr that does not tear the bars (e.g. `--verbose` requests).
pub fn print_line(message: &str) {
    let message = &*escape(message);
    match installed() {
        Some(p) if p.mode == Mode::Terminal => {
            let _ = p.inner.multi.println(message);
        }
        _ => eprintln!("{message}"),
    }
}

/// Ends the installed reporter's step and bars (before an error or result is printed).
pub fn finish_current() {
    if let Some(p) = installed() {
        p.finish();
    }
}

const TICK: Duration = Duration::from_millis(100);

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix} {wide_msg:.dim}")
        .expect("valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓")
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "  {prefix:<24} [{bar:30.cyan/blue}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

impl Progress {
    /// Mode from the terminal (see [`Mode::detect`]).
    pub fn new(quiet: bool, verbose: bool) -> Progress {
        Progress::with_mode(Mode::detect(quiet), verbose)
    }

    pub fn with_mode(mode: Mode, verbose: bool) -> Progress {
        let multi = match mode {
            Mode::Terminal => MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            _ => MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        Progress {
            mode,
            verbose,
            inner: Arc::new(Inner {
                multi,
                step: Mutex::new(None),
            }),
        }
    }

    /// Makes this the reporter of [`current`] (for uv's output and transfers).
    pub fn install(self) -> Progress {
        if let Ok(mut current) = CURRENT.write() {
            *current = Some(self.clone());
        }
        self
    }

    /// Prints a line above any bars (nothing when quiet).
    pub fn line(&self, message: &str) {
        let message = &*escape(message);
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("{message}"),
            Mode::Terminal => {
                let _ = self.inner.multi.println(message);
            }
        }
    }

    /// Starts a step: ends the one running (a `✓` line with its time on a
    /// terminal) and shows this one (a spinner, or a plain line). Steps come
    /// from concurrent stages: the swap is one locked operation, so two
    /// starting at once each end up ended (neither is overwritten unseen).
    pub fn step(&self, message: &str) {
        let message = &*escape(message);
        let bar = match self.mode {
            Mode::Quiet => None,
            Mode::Plain => {
                eprintln!("  {message}");
                None
            }
            Mode::Terminal => {
                let bar = self.inner.multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(message.to_string());
                bar.enable_steady_tick(TICK);
                Some(bar)
            }
        };
        let previous = self
            .inner
            .step
            .lock()
            .ok()
            .and_then(|mut step| step.replace((bar, message.to_string(), Instant::now())));
        self.show_ended(previous);
    }

    /// Ends the running step, if any.
    pub fn end_step(&self) {
        let running = self.inner.step.lock().ok().and_then(|mut s| s.take());
        self.show_ended(running);
    }

    /// A step's `✓` line with its time, in place of its spinner.
    fn show_ended(&self, step: Option<(Option<ProgressBar>, String, Instant)>) {
        let Some((Some(bar), message, started)) = step else {
            return;
        };
        bar.finish_and_clear();
        self.inner.multi.remove(&bar);
        let _ = self.inner.multi.println(format!(
            "✓ {message} ({:.1}s)",
            started.elapsed().as_secs_f64()
        ));
    }

    /// A detail of the running step, e.g. one line of uv's output: the
    /// spinner's message on a terminal, a line when verbose otherwise.
    pub fn detail(&self, message: &str) {
        // uv's output, file names: nothing from outside reaches the terminal raw.
        let message = &*escape(message.trim());
        if message.is_empty() {
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                if self.verbose {
                    eprintln!("    {message}");
                }
            }
            Mode::Terminal => {
                if let Ok(step) = self.inner.step.lock() {
                    if let Some((Some(bar), _, _)) = step.as_ref() {
                        bar.set_message(message.to_string());
                    }
                }
            }
        }
    }

    /// A cache decision (verbose only).
    pub fn cache(&self, key: &str, hit: bool) {
        if self.verbose {
            self.line(&format!(
                "  cache {}: {key}",
                if hit { "hit" } else { "miss" }
            ));
        }
    }

    /// A byte transfer (`label`: e.g. `push sha256:abcd…`) of `total` bytes:
    /// a bar on a terminal, one line when it completes otherwise.
    pub fn transfer(&self, label: &str, total: Option<u64>) -> Transfer {
        let bar = (self.mode == Mode::Terminal).then(|| {
            let bar = self
                .inner
                .multi
                .add(ProgressBar::new(total.unwrap_or(0)).with_style(bytes_style()));
            bar.set_prefix(label.to_string());
            bar
        });
        Transfer {
            progress: self.clone(),
            bar,
            label: label.to_string(),
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Ends the running step and removes every bar: call before printing a result.
    pub fn finish(&self) {
        self.end_step();
        let _ = self.inner.multi.clear();
    }
}

/// One transfer's progress; dropped when the transfer ends (or fails).
pub struct Transfer {
    progress: Progress,
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
}

impl Transfer {
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            self.progress.inner.multi.remove(&bar);
        }
        let complete = self.total.is_none_or(|t| t == self.done) && self.done > 0;
        if complete && self.progress.mode != Mode::Quiet {
            let secs = self.started.elapsed().as_secs_f64();
            let message = format!("    {} {} in {secs:.1}s", self.label, human(self.done));
            // Finished transfers are a line each; on a terminal only when verbose.
            if self.progress.mode == Mode::Plain || self.progress.verbose {
                self.progress.line(&message);
            }
        }
    }
}

/// Runs `cmd` like [`std::process::Command::output`], showing each line of
/// its stderr as the running step's detail (uv's own progress, folded in).
pub fn output_with_details(
    cmd: &mut std::process::Command,
) -> std::io::Result<std::process::Output> {
    use std::io::{BufRead, Read};
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let progress = current();
    let mut stderr = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("piped"));
    loop {
        let start = stderr.len();
        if lines.read_until(b'\n', &mut stderr)? == 0 {
            break;
        }
        progress.detail(&String::from_utf8_lossy(&stderr[start..]));
    }
    let status = child.wait()?;
    let stdout = reader
        .join()
        .map_err(|_| std::io::Error::other("stdout reader panicked"))??;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// The build's progress on stderr: a thin handle on this module
/// (spinners on a terminal, plain lines in CI, nothing when quiet; verbose:
/// cache decisions too). The first use installs the process's reporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Log {
    pub quiet: bool,
    pub verbose: bool,
}

impl Log {
    fn progress(&self) -> Progress {
        current_or_install(self.quiet, self.verbose)
    }

    /// A new step (ends the previous one).
    pub fn step(&self, message: &str) {
        self.progress().step(message);
    }

    /// A detail of the running step (e.g. a line of uv's output).
    pub fn detail(&self, message: &str) {
        self.progress().detail(message);
    }

    pub fn cache(&self, key: &str, hit: bool) {
        self.progress().cache(key, hit);
    }

    /// Ends the running step and clears the bars: call before printing the result.
    pub fn finish(&self) {
        finish_current();
    }
}

/// Bytes as people read them: `1.5 MiB`, `12.0 KiB`, `7 B`.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_and_plain_reporters_never_panic() {
        for mode in [Mode::Quiet, Mode::Plain, Mode::Terminal] {
            let p = Progress::with_mode(mode, true);
            p.step("one");
            p.detail("a uv line");
            {
                let mut t = p.transfer("push sha256:abc", Some(10));
                t.advance(4);
                t.advance(6);
            }
            p.cache("key", true);
            p.step("two");
            p.finish();
        }
    }

    #[test]
    fn output_with_details_keeps_both_streams() {
        let out = output_with_details(
            std::process::Command::new("sh")
                .args(["-c", "echo out; echo err1 >&2; echo err2 >&2; exit 3"]),
        )
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err1\nerr2\n");
        assert_eq!(out.status.code(), Some(3));
    }
}
