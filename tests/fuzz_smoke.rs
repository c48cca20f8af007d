//! The cargo-fuzz targets (fuzz/, issue 6 item 7) run on stable as a short
//! property test: each target gets its seed corpus (`fuzz/corpus/<target>`),
//! any saved crash (`fuzz/artifacts/<target>`), then a few thousand inputs
//! within a time budget: most made by a structure-aware generator (whole
//! recipes, manifests, indexes, configs, references with random but typed
//! parts, now and then with a byte mutated) so they reach the parsers, the
//! rest mutated byte-wise from the corpus. Each target reports how many
//! inputs of each kind parsed, and a share of the generated ones must.
//!
//! The seed comes from the clock and is printed; `SLIPWAY_FUZZ_SEED=N`
//! replays a run, `SLIPWAY_FUZZ_ITERS=N` runs longer. A failing input is
//! saved under target/tmp and shown with its seed. Real coverage-guided
//! fuzzing is `cargo +nightly fuzz run TARGET` (see fuzz/README.md).
//!
//! A new target is one entry in `TARGETS` (and its one-line `#[test]`).

#[path = "../fuzz/src/lib.rs"]
mod targets;

#[path = "support/fuzz_gen.rs"]
mod fuzz_gen;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEFAULT_ITERS: usize = 4000;
const BUDGET: Duration = Duration::from_secs(4);

/// A fuzz target as the smoke test drives it.
struct Target {
    name: &'static str,
    /// The cargo-fuzz body: must never panic.
    run: fn(&[u8]),
    /// A structure-aware input (mostly well-formed).
    generate: fn(&mut fastrand::Rng) -> Vec<u8>,
    /// Whether the input got through the parser (counted, not required).
    parses: fn(&[u8]) -> bool,
    /// The least share of generated inputs that must parse.
    min_parsed: f64,
}

const TARGETS: &[Target] = &[
    Target {
        name: "recipe",
        run: targets::recipe,
        generate: fuzz_gen::recipe,
        parses: fuzz_gen::recipe_parses,
        min_parsed: 0.2,
    },
    Target {
        name: "reference",
        run: targets::reference,
        generate: fuzz_gen::reference,
        parses: fuzz_gen::reference_parses,
        min_parsed: 0.3,
    },
    Target {
        name: "manifest",
        run: targets::manifest,
        generate: fuzz_gen::manifest,
        parses: fuzz_gen::manifest_parses,
        min_parsed: 0.3,
    },
    Target {
        name: "config",
        run: targets::config,
        generate: fuzz_gen::config,
        parses: fuzz_gen::config_parses,
        min_parsed: 0.5,
    },
    Target {
        name: "dockerignore",
        run: targets::dockerignore,
        generate: fuzz_gen::dockerignore,
        parses: fuzz_gen::dockerignore_parses,
        min_parsed: 0.3,
    },
];

fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"))
}

/// `SLIPWAY_FUZZ_SEED`, else one from the clock.
fn seed() -> u64 {
    std::env::var("SLIPWAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

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
            self.mutate_once(&mut data);
        }
        data
    }

    /// One small byte-level change (also applied to generated inputs).
    fn mutate_once(&mut self, data: &mut Vec<u8>) {
        let rng = &mut self.rng;
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
}

/// How many inputs of one kind ran, and how many got through the parser.
#[derive(Default, Debug)]
struct Tally {
    ran: usize,
    parsed: usize,
}

impl Tally {
    fn add(&mut self, parsed: bool) {
        self.ran += 1;
        self.parsed += usize::from(parsed);
    }
}

fn fuzz(t: &Target) {
    let target = t.name;
    let seed = seed();
    eprintln!("fuzz smoke `{target}`: seed {seed} (replay: SLIPWAY_FUZZ_SEED={seed})");
    let iters = std::env::var("SLIPWAY_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    let corpus = read_dir_files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "no seed corpus in fuzz/corpus/{target}");
    let saved = read_dir_files(&fuzz_dir().join("artifacts").join(target));
    let check = |input: &[u8], what: &str| {
        let result = std::panic::catch_unwind(|| (t.run)(input));
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
                "fuzz target `{target}` panicked on {what} (seed {seed}): {message}\ninput ({}): {:?}\n\
                 replay: SLIPWAY_FUZZ_SEED={seed} cargo test --test fuzz_smoke, or cargo +nightly fuzz run {target} {}",
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
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    let (mut generated, mut mutated) = (Tally::default(), Tally::default());
    let started = Instant::now();
    let mut done = 0;
    while done < iters && started.elapsed() < BUDGET {
        // Three in four structure-aware, the rest byte-mutated from the corpus.
        let structured = rng.u8(..4) != 0;
        let input = if structured {
            let mut input = (t.generate)(&mut rng);
            if rng.u8(..4) == 0 {
                mutator.mutate_once(&mut input);
            }
            input
        } else {
            mutator.next()
        };
        check(&input, &format!("input #{done}"));
        let parsed = (t.parses)(&input);
        if structured {
            generated.add(parsed);
        } else {
            mutated.add(parsed);
        }
        done += 1;
    }
    eprintln!(
        "fuzz smoke `{target}`: {done} inputs in {:?} (seed {seed}); parsed: {} of {} generated, \
         {} of {} mutated",
        started.elapsed(),
        generated.parsed,
        generated.ran,
        mutated.parsed,
        mutated.ran
    );
    assert!(
        done >= 500.min(iters),
        "only {done} inputs ran within {BUDGET:?}"
    );
    let share = generated.parsed as f64 / generated.ran.max(1) as f64;
    assert!(
        share >= t.min_parsed,
        "only {} of {} generated `{target}` inputs parsed (want {:.0}%): the generator no \
         longer reaches the parser",
        generated.parsed,
        generated.ran,
        t.min_parsed * 100.0
    );
}

#[test]
fn recipe_parser_survives_mutated_recipes() {
    fuzz(target("recipe"));
}

#[test]
fn reference_parser_survives_and_round_trips() {
    fuzz(target("reference"));
}

#[test]
fn manifest_and_index_parsing_survives_and_round_trips() {
    fuzz(target("manifest"));
}

#[test]
fn facts_detection_survives_any_config() {
    fuzz(target("config"));
}

#[test]
fn dockerignore_matcher_survives_any_patterns() {
    fuzz(target("dockerignore"));
}
