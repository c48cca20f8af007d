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
/// in order, into `out_dir/<image dir>/__pycache__/`.
pub struct Unit {
    pub out_dir: String,
    pub jobs: Vec<(String, String)>,
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

/// One request on the wire: a JSON line (out dir, the jobs' image paths),
/// a line with the number of jobs, then per job a line with its length and
/// its bytes. Each source is sent as soon as it is read, so slipway holds
/// one file at a time, not a unit.
#[derive(serde::Serialize)]
struct Request<'a> {
    out_dir: &'a str,
    jobs: Vec<&'a str>,
}

/// One answer line: (image path of the `.pyc`, file written) and the
/// sources that did not compile (image path, message).
#[derive(Debug, serde::Deserialize)]
pub struct Answer {
    pub compiled: Vec<(String, PathBuf)>,
    pub failed: Vec<(String, String)>,
}

/// Reads requests on stdin; for each, a forked child compiles it and writes
/// one JSON answer line on stdout. It compiles the bytes it is sent, as
/// `py_compile.compile` would the same file (same `compile` call, same
/// unchecked-hash `.pyc`), and never opens a source. The parent reads the
/// bytes and forks; the request is parsed in the child. `tokenize` is
/// imported up front so no child pays for (or is shaped by) that import.
const DRIVER: &str = r#"
import importlib.util, json, os, py_compile, sys, tokenize
from importlib._bootstrap_external import _code_to_hash_pyc
def compile_unit(request, sources):
    compiled, failed = [], []
    for dfile, source_bytes in zip(request["jobs"], sources):
        pyc = importlib.util.cache_from_source(dfile)
        cfile = os.path.join(request["out_dir"], pyc.lstrip("/"))
        try:
            code = compile(source_bytes, dfile, "exec", dont_inherit=True, optimize=0)
        except Exception as err:
            failed.append([dfile, py_compile.PyCompileError(err.__class__, err, dfile).msg])
            continue
        os.makedirs(os.path.dirname(cfile), exist_ok=True)
        bytecode = _code_to_hash_pyc(code, importlib.util.source_hash(source_bytes), False)
        with open(cfile, "xb") as out:
            out.write(bytecode)
        compiled.append([pyc, cfile])
    return {"compiled": compiled, "failed": failed}
stdin = sys.stdin.buffer
while True:
    line = stdin.readline()
    if not line:
        break
    sources = []
    for _ in range(int(stdin.readline())):
        size = int(stdin.readline())
        sources.append(stdin.read(size))
        if len(sources[-1]) != size:
            sys.exit("the request was cut short")
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            sys.stdout.write(json.dumps(compile_unit(json.loads(line), sources)) + "\n")
            sys.stdout.flush()
            status = 0
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("compiling a unit failed (%s)" % status)
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
/// of [`UNIT_FILES`] in image-path order, writing under `out_dir`.
pub fn units(sources: &[(PathBuf, String)], out_dir: &Path) -> Result<Vec<Unit>, BytecodeError> {
    let out_dir = utf8(out_dir)?;
    let mut jobs = sources
        .iter()
        .map(|(source, image)| Ok((utf8(source)?, image.clone())))
        .collect::<Result<Vec<_>, BytecodeError>>()?;
    jobs.sort_by(|a, b| a.1.cmp(&b.1));
    jobs.dedup_by(|a, b| a.1 == b.1);
    Ok(jobs
        .chunks(UNIT_FILES)
        .map(|chunk| Unit {
            out_dir: out_dir.clone(),
            jobs: chunk.to_vec(),
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
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new(units.iter().map(|_| None).collect());
    let workers = workers.clamp(1, units.len().max(1));
    let errors: Vec<BytecodeError> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let result = work(python, units, read, &next, &stop, &answers);
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
    let answers = answers.into_inner().expect("no thread panicked");
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every unit answered"))
        .collect())
}

/// One worker process: claims units until none are left.
fn work(
    python: &Path,
    units: &[Unit],
    read: &ReadSource<'_>,
    next: &AtomicUsize,
    stop: &AtomicBool,
    answers: &Mutex<Vec<Option<Answer>>>,
) -> Result<(), BytecodeError> {
    let not_runnable = |e: std::io::Error| BytecodeError::NotRunnable {
        python: python.to_path_buf(),
        reason: e.to_string(),
    };
    // A file, not a pipe: nobody has to drain it while the worker runs.
    let mut stderr = tempfile::tempfile().map_err(not_runnable)?;
    let mut child = Command::new(python)
        .args(["-I", "-B", "-X", "utf8", "-W", "ignore", "-c", DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr.try_clone().map_err(not_runnable)?)
        .spawn()
        .map_err(not_runnable)?;
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped stdin"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(unit) = units.get(index) else { break };
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
    let request = Request {
        out_dir: &unit.out_dir,
        jobs: unit
            .jobs
            .iter()
            .map(|(_, image_path)| image_path.as_str())
            .collect(),
    };
    let sending = |e: std::io::Error| Failure::Driver(format!("sending work: {e}"));
    let mut head = serde_json::to_vec(&request).map_err(|e| Failure::Driver(e.to_string()))?;
    head.extend_from_slice(format!("\n{}\n", unit.jobs.len()).as_bytes());
    stdin.write_all(&head).map_err(sending)?;
    for (source, image_path) in &unit.jobs {
        let path = Path::new(source);
        let bytes = read(path, image_path).map_err(|e| Failure::Source(source_error(path, e)))?;
        stdin
            .write_all(format!("{}\n", bytes.len()).as_bytes())
            .and_then(|()| stdin.write_all(&bytes))
            .map_err(sending)?;
    }
    stdin.flush().map_err(sending)?;
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| Failure::Driver(format!("reading the answer: {e}")))?;
    if line.is_empty() {
        return Err(Failure::Driver("the worker stopped".into()));
    }
    serde_json::from_str(&line).map_err(|e| Failure::Driver(format!("unreadable answer: {e}")))
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
    }
}
