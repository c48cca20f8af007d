//! The cargo-fuzz targets (fuzz/, issue 6 item 7) run on stable as a short
//! property test: each target gets its seed corpus (`fuzz/corpus/<target>`),
//! any saved crash (`fuzz/artifacts/<target>`), then a few thousand inputs
//! mutated from the corpus by a seeded PRNG, within a time budget. A failing
//! input is saved under target/tmp and shown, with the seed to replay it.
//!
//! `SLIPWAY_FUZZ_SEED=N` picks another seed, `SLIPWAY_FUZZ_ITERS=N` runs
//! longer; real coverage-guided fuzzing is `cargo +nightly fuzz run TARGET`
//! (see fuzz/README.md).

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x5111_9a7e;
const DEFAULT_ITERS: usize = 4000;
const BUDGET: Duration = Duration::from_secs(4);

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Tokens worth splicing in: the grammar's punctuation, keys and values the
/// parsers treat specially, and bytes that break naive string slicing.
fn dictionary(target: &str) -> Vec<&'static [u8]> {
    let mut words: Vec<&'static [u8]> = vec![
        b"\"",
        b"'",
        b"\\",
        b"\n",
        b"\r\n",
        b"\t",
        b" ",
        b"\0",
        b"\xff",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x90\x8d",
        b"=",
        b":",
        b"/",
        b"@",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b"#",
        b"-1",
        b"0",
        b"99999999999999999999",
        b"1e400",
        b"null",
        b"true",
    ];
    let specific: &[&'static [u8]] = match target {
        "recipe" => &[
            b"[python]\n",
            b"[app]\n",
            b"[image]\n",
            b"[[image]]\n",
            b"base = ",
            b"platforms = ",
            b"requirements = ",
            b"version = \"3.13\"",
            b"libc = \"glibc-2.36\"",
            b"libc = \"musl\"",
            b"user = \"1000:1000\"",
            b"ports = [\"8000/tcp\"]",
            b"env = { A = \"1\" }",
            b"source_date_epoch = ",
            b"\"\"\"",
            b"'''",
            b"requirments",
            b"destinaton",
            b"linux/arm64/v8",
            b"sha256:",
        ],
        "reference" => &[
            b"docker.io/",
            b"index.docker.io/",
            b"library/",
            b"localhost",
            b"127.0.0.1:5000/",
            b"[::1]:",
            b":latest",
            b"@sha256:abababababababababababababababababababababababababababababababab",
            b"sha256:",
            b"..",
            b"__",
            b"-",
        ],
        "manifest" => &[
            b"\"schemaVersion\":2",
            b"\"mediaType\":",
            b"\"manifests\":[",
            b"\"layers\":[",
            b"\"config\":{",
            b"\"digest\":",
            b"\"sha256:abababababababababababababababababababababababababababababababab\"",
            b"\"size\":",
            b"\"platform\":{",
            b"\"annotations\":{",
            b"\"architecture\":\"amd64\"",
            b"\"os\":\"linux\"",
            b"\"variant\":\"v8\"",
            b"\\u0000",
            b"\\ud800",
        ],
        "config" => &[
            b"\"Env\":[",
            b"\"PYTHON_VERSION=3.13.14\"",
            b"\"PYTHON_VERSION=",
            b"\"PATH=/usr/local/bin\"",
            b"\"config\":{",
            b"\"rootfs\":{",
            b"\"diff_ids\":[",
            b"\"architecture\":\"arm64\"",
            b"\"usr/local/bin/python3.13\"",
            b"\"usr/bin/python3.12\"",
            b"\"lib/ld-musl-x86_64.so.1\"",
            b"\"lib/x86_64-linux-gnu/libc.so.6\"",
            b"\"3.\"",
            b"\"3.99999999999\"",
        ],
        "dockerignore" => &[
            b"*",
            b"**",
            b"**/",
            b"?",
            b"!",
            b"[a-z]",
            b"[^/]",
            b"/..",
            b"./",
            b"*a*a*a*a*a*b",
        ],
        _ => &[],
    };
    words.extend_from_slice(specific);
    words
}

struct Mutator {
    rng: fastrand::Rng,
    corpus: Vec<Vec<u8>>,
    words: Vec<&'static [u8]>,
}

impl Mutator {
    fn next(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        if self.corpus.is_empty() || rng.u8(..) < 8 {
            // Now and then, plain noise.
            let len = rng.usize(..64);
            return (0..len).map(|_| rng.u8(..)).collect();
        }
        let mut data = self.corpus[rng.usize(..self.corpus.len())].clone();
        for _ in 0..rng.usize(1..5) {
            let len = data.len();
            let at = if len == 0 { 0 } else { rng.usize(..=len) };
            match rng.u8(..10) {
                0 if len > 0 => {
                    let i = rng.usize(..len);
                    data[i] ^= 1 << rng.u8(..8);
                }
                1 if len > 0 => {
                    let i = rng.usize(..len);
                    data[i] = rng.u8(..);
                }
                2 => {
                    let n = rng.usize(1..8);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                    data.splice(at..at, bytes);
                }
                3 if len > 0 => {
                    let end = (at + rng.usize(1..32)).min(len);
                    data.drain(at.min(end)..end);
                }
                4 if len > 0 => {
                    let start = rng.usize(..len);
                    let end = (start + rng.usize(1..64)).min(len);
                    let chunk = data[start..end].to_vec();
                    data.splice(at..at, chunk);
                }
                5..=7 => {
                    let word = self.words[rng.usize(..self.words.len())];
                    data.splice(at..at, word.iter().copied());
                }
                8 => {
                    let other = &self.corpus[rng.usize(..self.corpus.len())];
                    let from = rng.usize(..=other.len());
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
                _ => data.truncate(at),
            }
        }
        data
    }
}

fn run(target: &str, f: fn(&[u8])) {
    let seed = std::env::var("SLIPWAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let iters = std::env::var("SLIPWAY_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    let corpus = read_dir_files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "no seed corpus in fuzz/corpus/{target}");
    let saved = read_dir_files(&fuzz_dir().join("artifacts").join(target));
    let check = |input: &[u8], what: &str| {
        let result = std::panic::catch_unwind(|| f(input));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("fuzz-crash-{target}-{seed}"));
            std::fs::write(&out, input).unwrap();
            panic!(
                "fuzz target `{target}` panicked on {what} (seed {seed}): {message}\ninput ({}): {:?}\nreplay: cargo +nightly fuzz run {target} {}",
                out.display(),
                String::from_utf8_lossy(input),
                out.display()
            );
        }
    };
    for (i, input) in corpus.iter().chain(&saved).enumerate() {
        check(input, &format!("corpus/artifact entry {i}"));
    }
    let mut mutator = Mutator {
        rng: fastrand::Rng::with_seed(seed),
        corpus,
        words: dictionary(target),
    };
    let started = Instant::now();
    let mut done = 0;
    while done < iters && started.elapsed() < BUDGET {
        let input = mutator.next();
        check(&input, &format!("mutated input #{done}"));
        done += 1;
    }
    eprintln!(
        "fuzz smoke `{target}`: {done} inputs in {:?} (seed {seed})",
        started.elapsed()
    );
    assert!(
        done >= 500.min(iters),
        "only {done} inputs ran within {BUDGET:?}"
    );
}

#[test]
fn recipe_parser_survives_mutated_recipes() {
    run("recipe", targets::recipe);
}

#[test]
fn reference_parser_survives_and_round_trips() {
    run("reference", targets::reference);
}

#[test]
fn manifest_and_index_parsing_survives_and_round_trips() {
    run("manifest", targets::manifest);
}

#[test]
fn facts_detection_survives_any_config() {
    run("config", targets::config);
}

#[test]
fn dockerignore_matcher_survives_any_patterns() {
    run("dockerignore", targets::dockerignore);
}
