//! The compiler pool: one CPython worker per core, fed units of work from a
//! shared queue, whose output does not depend on the number of workers.
//!
//! Marshal output can depend on what the same process compiled before
//! (cpython #129724: `FLAG_REF` follows reference counts). So a unit — at most
//! [`UNIT_FILES`] files of one group (a wheel, or the app), in image-path
//! order — is compiled in a fresh `fork` of a worker that never compiles
//! anything itself: every unit starts from the same interpreter state, and its
//! bytes are the same whichever worker runs it, in whatever order.

use super::BytecodeError;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Files per unit. Part of the output's definition: a unit's files share
/// one process, so changing this may change bytes (bump `LAYER_FORMAT`).
/// Measured: a fork costs ~3 ms, compiling a file ~3 ms on average.
pub const UNIT_FILES: usize = 64;

/// One unit of work: compile `jobs` (source on disk, absolute image path),
/// in order; their `.pyc` bytes go, one after the other, into the file
/// `pack` (one file per unit, not per `.pyc`: creating files is what costs
/// on some file systems, ~0.7 ms each on these machines).
pub struct Unit {
    pub pack: PathBuf,
    pub jobs: Vec<(String, String)>,
    /// The first unit of its group: [`run_until`] starts no new group once
    /// told it has enough.
    pub opens_group: bool,
}

/// Where a compiled `.pyc`'s bytes are: `size` bytes at `offset` in `pack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PycSlice {
    pub pack: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// Reads a source for the compiler: its file on disk and its image path.
/// The pool reads every source itself and sends the bytes, so what is
/// compiled is exactly what the reader checked (the app's reader checks
/// the bytes against the digests its layer key was made from).
pub type ReadSource<'a> = dyn Fn(&Path, &str) -> std::io::Result<Vec<u8>> + Sync + 'a;

/// The reader for sources nobody else can write (a staging dir of slipway's).
pub fn read_file(path: &Path, _image_path: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// One request on the wire, every string and source as a length line and
/// its bytes (UTF-8): the number of jobs, then per job its image path and
/// its source. Each source is sent as soon as it is read, so slipway holds
/// one file at a time, not a unit.
///
/// One answer: a line with the number of records, then per record a line
/// `c|f <len> <len>` and two strings: the `.pyc`'s image path and its bytes
/// (`c`, streamed into the unit's pack), or the source's image path and why
/// it did not compile (`f`).
#[derive(Debug)]
pub struct Answer {
    pub compiled: Vec<(String, PycSlice)>,
    pub failed: Vec<(String, String)>,
}

/// Reads requests on stdin; for each, a forked child compiles it and writes
/// one answer on stdout. It compiles the bytes it is sent, as
/// `py_compile.compile` would the same file (same `compile` call, same
/// unchecked-hash `.pyc`), and never opens a source. The parent reads the
/// bytes and forks. It imports nothing beyond what every interpreter has
/// loaded at startup (and runs with `-S`): a worker is ready in ~16 ms
/// instead of ~47 ms, which a one-file build waits for.
const DRIVER: &str = r#"
import os, sys
from _imp import source_hash
from importlib._bootstrap_external import _RAW_MAGIC_NUMBER, _code_to_hash_pyc, cache_from_source
def describe(err, dfile):
    if isinstance(err, SyntaxError):
        text = (err.text or "").strip()
        return 'File "%s", line %s\n    %s\n%s: %s' % (dfile, err.lineno, text, type(err).__name__, err.msg)
    return "Sorry: %s: %s" % (type(err).__name__, err)
def compile_unit(jobs):
    records = []
    for dfile, source_bytes in jobs:
        try:
            code = compile(source_bytes, dfile, "exec", dont_inherit=True, optimize=0)
        except Exception as err:
            records.append((b"f", dfile, describe(err, dfile).encode("utf-8", "backslashreplace")))
            continue
        bytecode = _code_to_hash_pyc(code, source_hash(_RAW_MAGIC_NUMBER, source_bytes), False)
        records.append((b"c", cache_from_source(dfile), bytecode))
    out = [b"%d\n" % len(records)]
    for kind, path, data in records:
        path = path.encode("utf-8", "surrogateescape")
        out.append(b"%s %d %d\n%s%s" % (kind, len(path), len(data), path, data))
    return b"".join(out)
stdin = sys.stdin.buffer
def read_bytes():
    line = stdin.readline()
    if not line:
        return None
    size = int(line)
    data = stdin.read(size)
    if len(data) != size:
        sys.exit("the request was cut short")
    return data
while True:
    line = stdin.readline()
    if not line:
        break
    jobs = []
    for _ in range(int(line)):
        dfile = read_bytes().decode("utf-8")
        jobs.append((dfile, read_bytes()))
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            sys.stdout.buffer.write(compile_unit(jobs))
            sys.stdout.buffer.flush()
            status = 0
        except BaseException as err:
            sys.stderr.write("%s: %s\n" % (type(err).__name__, err))
            sys.stderr.flush()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("compiling a unit failed (%s)" % status)
# No teardown: the children wrote every answer; a one-file build waits for this exit.
os._exit(0)
"#;

/// Workers to use: `SLIPWAY_JOBS` if set, else the number of cores.
pub fn default_workers() -> Result<usize, BytecodeError> {
    workers_from(std::env::var("SLIPWAY_JOBS").ok())
}

fn workers_from(setting: Option<String>) -> Result<usize, BytecodeError> {
    match setting {
        Some(value) => value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(BytecodeError::BadJobs(value)),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Splits one group's sources (file on disk, absolute image path) into units
/// of [`UNIT_FILES`] in image-path order, their packs `unit-N.pack` in `out_dir`.
pub fn units(sources: &[(PathBuf, String)], out_dir: &Path) -> Result<Vec<Unit>, BytecodeError> {
    let mut jobs = sources
        .iter()
        .map(|(source, image)| Ok((utf8(source)?, image.clone())))
        .collect::<Result<Vec<_>, BytecodeError>>()?;
    jobs.sort_by(|a, b| a.1.cmp(&b.1));
    jobs.dedup_by(|a, b| a.1 == b.1);
    Ok(jobs
        .chunks(UNIT_FILES)
        .enumerate()
        .map(|(i, chunk)| Unit {
            pack: out_dir.join(format!("unit-{i}.pack")),
            jobs: chunk.to_vec(),
            opens_group: i == 0,
        })
        .collect())
}

fn utf8(path: &Path) -> Result<String, BytecodeError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| BytecodeError::NonUtf8Path(path.to_path_buf()))
}

/// Compiles every unit with up to `workers` worker processes; answers come
/// back in unit order.
pub fn run(
    python: &Path,
    units: &[Unit],
    read: &ReadSource<'_>,
    workers: usize,
) -> Result<Vec<Answer>, BytecodeError> {
    let never = AtomicBool::new(false);
    let answers = run_until(python, units, read, workers, &never)?;
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every unit answered"))
        .collect())
}

/// [`run`] that starts no new group once `enough` is set: the groups
/// already started are finished (their units are only worth anything
/// together), a unit of a group not started by then has no answer.
pub fn run_until(
    python: &Path,
    units: &[Unit],
    read: &ReadSource<'_>,
    workers: usize,
    enough: &AtomicBool,
) -> Result<Vec<Option<Answer>>, BytecodeError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new(units.iter().map(|_| None).collect());
    let workers = workers.clamp(1, units.len().max(1));
    let errors: Vec<BytecodeError> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let result = work(python, units, read, &next, [&stop, enough], &answers);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("compiler pool thread").err())
            .collect()
    });
    if let Some(error) = errors.into_iter().next() {
        return Err(error);
    }
    Ok(answers.into_inner().expect("no thread panicked"))
}

/// One worker process: claims units until none are left.
fn work(
    python: &Path,
    units: &[Unit],
    read: &ReadSource<'_>,
    next: &AtomicUsize,
    [stop, enough]: [&AtomicBool; 2],
    answers: &Mutex<Vec<Option<Answer>>>,
) -> Result<(), BytecodeError> {
    let not_runnable = |e: std::io::Error| BytecodeError::NotRunnable {
        python: python.to_path_buf(),
        reason: e.to_string(),
    };
    // A file, not a pipe: nobody has to drain it while the worker runs.
    let mut stderr = tempfile::tempfile().map_err(not_runnable)?;
    let mut child = Command::new(python)
        .args(["-I", "-S", "-B", "-X", "utf8", "-W", "ignore", "-c", DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr.try_clone().map_err(not_runnable)?)
        .spawn()
        .map_err(not_runnable)?;
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped stdin"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        let Some((index, unit)) = claim(units, next, enough) else {
            break;
        };
        match exchange(&mut stdin, &mut stdout, unit, read) {
            Ok(answer) => answers.lock().expect("no thread panicked")[index] = Some(answer),
            Err(Failure::Driver(reason)) => {
                result = Err(reason);
                break;
            }
            Err(Failure::Source(error)) => {
                // The worker holds half a request: it can't be reused.
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        }
    }
    drop(stdin);
    let status = child.wait().map_err(not_runnable)?;
    result.map_err(|reason| {
        let mut text = String::new();
        let _ = stderr.rewind();
        let _ = stderr.take(16 * 1024).read_to_string(&mut text);
        BytecodeError::Driver {
            python: python.to_path_buf(),
            stderr: format!("{reason} ({status}): {}", text.trim()),
        }
    })
}

/// The next unit to compile, if any: in order, and once `enough` is set
/// none that opens a group. Claimed by compare-and-swap, so a group's first
/// unit is never passed over while a later one of it is taken.
fn claim<'u>(
    units: &'u [Unit],
    next: &AtomicUsize,
    enough: &AtomicBool,
) -> Option<(usize, &'u Unit)> {
    let mut index = next.load(Ordering::Relaxed);
    loop {
        let unit = units.get(index)?;
        if unit.opens_group && enough.load(Ordering::Relaxed) {
            return None;
        }
        match next.compare_exchange(index, index + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some((index, unit)),
            Err(now) => index = now,
        }
    }
}

/// Why a unit got no answer: the worker failed (its stderr tells), or a
/// source could not be read (nothing was sent).
enum Failure {
    Driver(String),
    Source(BytecodeError),
}

fn exchange(
    stdin: &mut impl Write,
    stdout: &mut impl BufRead,
    unit: &Unit,
    read: &ReadSource<'_>,
) -> Result<Answer, Failure> {
    let sending = |e: std::io::Error| Failure::Driver(format!("sending work: {e}"));
    stdin
        .write_all(format!("{}\n", unit.jobs.len()).as_bytes())
        .map_err(sending)?;
    for (source, image_path) in &unit.jobs {
        let path = Path::new(source);
        let bytes = read(path, image_path).map_err(|e| Failure::Source(source_error(path, e)))?;
        stdin
            .write_all(&framed(image_path.as_bytes()))
            .and_then(|()| stdin.write_all(format!("{}\n", bytes.len()).as_bytes()))
            .and_then(|()| stdin.write_all(&bytes))
            .map_err(sending)?;
    }
    stdin.flush().map_err(sending)?;
    let pack = std::fs::File::create_new(&unit.pack).map_err(|e| {
        Failure::Source(BytecodeError::Io {
            path: unit.pack.clone(),
            source: e,
        })
    })?;
    read_answer(stdout, &unit.pack, &mut std::io::BufWriter::new(pack))
        .map_err(|e| Failure::Driver(format!("reading the answer: {e}")))
}

/// A string as the driver reads it: its length on a line, then its bytes.
fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// Longest string an answer may carry (a path or an error message).
const ANSWER_STRING_MAX: usize = 1 << 20;

/// One short line of an answer (a count or a record head), without its end.
fn answer_line(stdout: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    stdout.take(64).read_line(&mut line)?;
    match line.strip_suffix('\n') {
        Some(head) => Ok(head.to_string()),
        None if line.is_empty() => Err(bad_answer("the worker stopped")),
        None => Err(bad_answer("a line without its end")),
    }
}

fn bad_answer(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one answer, streaming each `.pyc` into `pack` (the file at
/// `pack_path`): slipway holds one path or message at a time, never a unit.
fn read_answer(
    stdout: &mut impl BufRead,
    pack_path: &Path,
    pack: &mut impl Write,
) -> std::io::Result<Answer> {
    let records: usize = answer_line(stdout)?
        .parse()
        .map_err(|_| bad_answer("not a count"))?;
    let mut answer = Answer {
        compiled: Vec::new(),
        failed: Vec::new(),
    };
    let mut offset = 0;
    for _ in 0..records {
        let head = answer_line(stdout)?;
        let number = |field: &str| field.parse::<u64>().map_err(|_| bad_answer("not a length"));
        let (kind, path_len, size) = match head.split(' ').collect::<Vec<_>>()[..] {
            [kind, first, second] => (kind, number(first)?, number(second)?),
            _ => return Err(bad_answer("a record head is not `kind len len`")),
        };
        let path = String::from_utf8(read_string(stdout, path_len)?)
            .map_err(|_| bad_answer("a path not in UTF-8"))?;
        match kind {
            "c" => {
                let copied = std::io::copy(&mut stdout.take(size), pack)?;
                if copied != size {
                    return Err(bad_answer("the worker stopped"));
                }
                let pack = pack_path.to_path_buf();
                answer
                    .compiled
                    .push((path, PycSlice { pack, offset, size }));
                offset += size;
            }
            "f" => {
                let why = read_string(stdout, size)?;
                answer
                    .failed
                    .push((path, String::from_utf8_lossy(&why).into_owned()));
            }
            _ => return Err(bad_answer("a record that is neither `c` nor `f`")),
        }
    }
    pack.flush()?;
    Ok(answer)
}

/// A string of an answer: at most [`ANSWER_STRING_MAX`] bytes.
fn read_string(stdout: &mut impl BufRead, len: u64) -> std::io::Result<Vec<u8>> {
    if len > ANSWER_STRING_MAX as u64 {
        return Err(bad_answer("a string length out of range"));
    }
    let mut bytes = vec![0; len as usize];
    stdout.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A reader's error: the user's file changed or is unreadable (its own
/// message, which names it), or plain I/O on `path`.
fn source_error(path: &Path, error: std::io::Error) -> BytecodeError {
    if crate::layers::SourceError::of(&error).is_some() {
        BytecodeError::Source(error)
    } else {
        BytecodeError::Io {
            path: path.to_path_buf(),
            source: error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slipway_jobs_is_a_positive_number() {
        assert_eq!(workers_from(Some(" 3 ".into())).unwrap(), 3);
        assert!(workers_from(None).unwrap() >= 1);
        for bad in ["0", "-1", "two", ""] {
            let err = workers_from(Some(bad.into())).unwrap_err();
            assert!(err.to_string().contains("SLIPWAY_JOBS"), "{err}");
        }
    }

    #[test]
    fn units_hold_one_groups_files_in_image_path_order() {
        let sources: Vec<(PathBuf, String)> = (0..UNIT_FILES + 1)
            .rev()
            .map(|i| {
                (
                    PathBuf::from(format!("/src/m{i:03}.py")),
                    format!("/app/m{i:03}.py"),
                )
            })
            .collect();
        let units = units(&sources, Path::new("/out")).unwrap();
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].jobs.len(), UNIT_FILES);
        assert_eq!(units[0].jobs[0].1, "/app/m000.py");
        let last = (
            format!("/src/m{UNIT_FILES:03}.py"),
            format!("/app/m{UNIT_FILES:03}.py"),
        );
        assert_eq!(units[1].jobs, [last]);
        assert!(units[0].opens_group && !units[1].opens_group);
    }

    #[test]
    fn once_enough_a_started_group_is_finished_and_no_new_one_started() {
        let unit = |opens_group| Unit {
            pack: PathBuf::new(),
            jobs: Vec::new(),
            opens_group,
        };
        // Group A: units 0-2; group B: units 3-4.
        let units = [
            unit(true),
            unit(false),
            unit(false),
            unit(true),
            unit(false),
        ];
        let enough = AtomicBool::new(false);
        let next = AtomicUsize::new(0);
        assert_eq!(claim(&units, &next, &enough).map(|(i, _)| i), Some(0));
        enough.store(true, Ordering::Relaxed);
        let rest: Vec<usize> =
            std::iter::from_fn(|| claim(&units, &next, &enough).map(|(i, _)| i)).collect();
        assert_eq!(rest, [1, 2]);
        assert_eq!(
            next.load(Ordering::Relaxed),
            3,
            "B's first unit is left for no one"
        );
        // Told before anything started: nothing is claimed.
        assert!(claim(&units, &AtomicUsize::new(0), &enough).is_none());
        enough.store(false, Ordering::Relaxed);
        assert_eq!(claim(&units, &next, &enough).map(|(i, _)| i), Some(3));
    }

    #[test]
    fn answers_are_read_by_their_lengths_and_bad_ones_refused() {
        let good = b"3\nc 4 4\n/a/bPYC1f 5 11\n/a/cdline 1\n\xffbadc 2 3\n/dxyz".to_vec();
        let mut pack = Vec::new();
        let answer = read_answer(&mut &good[..], Path::new("p"), &mut pack).unwrap();
        let slice = |offset, size| PycSlice {
            pack: PathBuf::from("p"),
            offset,
            size,
        };
        assert_eq!(
            answer.compiled,
            [
                ("/a/b".to_string(), slice(0, 4)),
                ("/d".to_string(), slice(4, 3))
            ]
        );
        assert_eq!(pack, b"PYC1xyz");
        assert_eq!(answer.failed.len(), 1);
        assert_eq!(answer.failed[0].0, "/a/cd");
        assert_eq!(answer.failed[0].1, "line 1\n\u{fffd}bad");
        for bad in [
            &b""[..],
            b"1\n",
            b"x\n",
            b"1\nc 3\nabc",
            b"1\nz 1 1\nab",
            b"1\nc 2 2\nab",
            b"1\nf 1 99999999999\na",
            b"1\nc 99999999999 1\n",
            b"1\nc 1 1\n\xff\xff",
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        ] {
            let result = read_answer(&mut &bad[..], Path::new("p"), &mut Vec::new());
            assert!(result.is_err(), "{bad:?}");
        }
    }
}
