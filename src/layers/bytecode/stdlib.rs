//! The standard library's bytecode (`[python] stdlib_bytecode`): which
//! stdlib modules go in the layer, and, for `"imported"`, which ones the
//! image's code can reach, found by parsing (never running) it.
//!
//! The official python images delete every `.pyc` under /usr/local, so a
//! container compiles the stdlib modules it imports at every start (and can't
//! keep them on a read-only root or as a non-root user).

use super::BytecodeError;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The layer's history entry (rebase refuses images holding it: the
/// layer is only right on the base it was compiled from).
pub const CREATED_BY: &str = "slipway: stdlib bytecode";

/// Bump when which files a mode selects (or how) changes: part of the key.
pub const SELECTION_FORMAT: u32 = 1;

/// Stdlib dirs left out of both modes: the test suites (the official images
/// delete them anyway), IDLE and Tk (no display in a container; slim has no
/// `_tkinter`), the turtle demos, and lib2to3 (gone in 3.13, deprecated before).
const LEFT_OUT_DIRS: &[&str] = &[
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "__phello__",
    "site-packages",
    "dist-packages",
];

/// Modules every interpreter start imports from source (the rest of startup
/// is frozen into the interpreter): roots of the `"imported"` graph.
const STARTUP: &[&str] = &[
    "site",
    "encodings",
    "encodings.aliases",
    "encodings.utf_8",
    "encodings.ascii",
    "encodings.latin_1",
];

/// The module name of a stdlib file, from its path below the stdlib dir
/// (`json/__init__.py` → `json`, `json/decoder.py` → `json.decoder`); None
/// for files the layer leaves out or that no import can name.
pub fn module_of(relative: &str) -> Option<String> {
    let stem = relative.strip_suffix(".py")?;
    let mut parts: Vec<&str> = stem.split('/').collect();
    let dirs = &parts[..parts.len() - 1];
    if dirs
        .iter()
        .any(|d| LEFT_OUT_DIRS.contains(d) || d.starts_with("config-"))
    {
        return None;
    }
    if parts.len() > 1 && parts.last() == Some(&"__init__") {
        parts.pop();
    }
    let identifier = |p: &str| {
        p.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let (last, packages) = parts.split_last()?;
    // sysconfig imports `_sysconfigdata__linux_x86_64-linux-gnu` by a
    // computed name: a top-level module may have dashes.
    let importable = packages.iter().all(|p| identifier(p))
        && (identifier(last) || (packages.is_empty() && identifier(&last.replace('-', "_"))));
    importable.then(|| parts.join("."))
}

/// Modules imported by a name computed at run time, which no parse can see:
/// (importer, prefix of what it imports).
const COMPUTED_IMPORTS: &[(&str, &str)] = &[("sysconfig", "_sysconfigdata_")];

/// The absolute module names `roots` (the image's own `.py` files) import:
/// `python` parses each file's `import` statements wherever they appear, and
/// `importlib.import_module` / `__import__` calls with a literal name.
/// Nothing is executed; a file that does not parse adds nothing.
pub fn names_imported(python: &Path, roots: &[PathBuf]) -> Result<BTreeSet<String>, BytecodeError> {
    ask_scanner(python, &serde_json::json!({ "roots": roots }))
}

/// What each stdlib module imports (absolute names, its relative imports
/// resolved), read the same way as [`names_imported`].
pub type ImportGraph = BTreeMap<String, BTreeSet<String>>;

/// The [`ImportGraph`] of a stdlib (`stdlib`: module name → source).
pub fn import_graph(
    python: &Path,
    stdlib: &BTreeMap<String, PathBuf>,
    packages: &BTreeSet<String>,
) -> Result<ImportGraph, BytecodeError> {
    ask_scanner(
        python,
        &serde_json::json!({ "stdlib": stdlib, "packages": packages }),
    )
}

/// The stdlib modules `names` reach in `graph`, transitively, plus what
/// every interpreter start imports. Importing `a.b.c` imports `a` and `a.b`.
pub fn reach(graph: &ImportGraph, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut reached = BTreeSet::new();
    let mut queue: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .chain(STARTUP.iter().copied())
        .collect();
    while let Some(name) = queue.pop() {
        let mut prefix = String::new();
        for part in name.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            if let Some((module, imports)) = graph.get_key_value(prefix.as_str()) {
                if reached.insert(module.clone()) {
                    queue.extend(imports.iter().map(String::as_str));
                }
            }
        }
    }
    for (importer, prefix) in COMPUTED_IMPORTS {
        if reached.contains(*importer) {
            reached.extend(graph.keys().filter(|m| m.starts_with(prefix)).cloned());
        }
    }
    reached
}

fn ask_scanner<T: serde::de::DeserializeOwned>(
    python: &Path,
    request: &serde_json::Value,
) -> Result<T, BytecodeError> {
    let stdout = run_scanner(python, request.to_string().as_bytes())?;
    serde_json::from_slice(&stdout).map_err(|e| BytecodeError::Driver {
        python: python.to_path_buf(),
        stderr: format!("unreadable answer from the import scan: {e}"),
    })
}

fn run_scanner(python: &Path, request: &[u8]) -> Result<Vec<u8>, BytecodeError> {
    let not_runnable = |e: std::io::Error| BytecodeError::NotRunnable {
        python: python.to_path_buf(),
        reason: e.to_string(),
    };
    let mut child = Command::new(python)
        .args(["-I", "-B", "-X", "utf8", "-W", "ignore", "-c", SCANNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(not_runnable)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written from a thread: the child may answer while we still write.
    let writer = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(request));
        let output = child.wait_with_output();
        (writer.join().expect("the request writer"), output)
    });
    let output = writer.1.map_err(not_runnable)?;
    if !output.status.success() || writer.0.is_err() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        stderr.truncate(16 * 1024);
        return Err(BytecodeError::Driver {
            python: python.to_path_buf(),
            stderr: format!(
                "the import scan failed ({}): {}",
                output.status,
                stderr.trim()
            ),
        });
    }
    Ok(output.stdout)
}

/// Parses files with `ast` only; a file that does not parse adds nothing.
const SCANNER: &str = r#"
import ast, json, resource, sys
# A hostile file may parse into a huge tree: fail that file, not the host.
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
request = json.load(sys.stdin.buffer)

def names_in(path, module="", packages=()):
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OSError):
        return
    package = module if module in packages else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if not module:
                    continue  # the image's own relative imports stay in its own code
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base:
                yield base
                for alias in node.names:
                    yield base + "." + alias.name
        elif isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            called = getattr(func, "attr", None) or getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str) and not first.value.startswith("."):
                yield first.value

if "roots" in request:
    found = set()
    for path in request["roots"]:
        found.update(names_in(path))
    json.dump(sorted(found), sys.stdout)
    sys.exit(0)

stdlib, packages = request["stdlib"], set(request["packages"])
json.dump({module: sorted(set(names_in(path, module, packages))) for module, path in stdlib.items()},
          sys.stdout)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_follows_imports_parents_startup_and_computed_names() {
        let graph: ImportGraph = [
            ("json", &["json.decoder"][..]),
            ("json.decoder", &["re", "json.scanner"]),
            ("json.scanner", &[]),
            ("re", &[]),
            ("email", &[]),
            ("email.mime", &[]),
            ("email.mime.text", &["sysconfig"]),
            ("sysconfig", &[]),
            ("_sysconfigdata__linux_x86_64-linux-gnu", &[]),
            ("encodings", &["encodings.aliases"]),
            ("encodings.aliases", &[]),
            ("tomllib", &[]),
        ]
        .into_iter()
        .map(|(m, i)| (m.to_string(), i.iter().map(|s| s.to_string()).collect()))
        .collect();
        let names = ["json", "email.mime.text.MIMEText", "fastapi", "os"]
            .into_iter()
            .map(String::from)
            .collect();
        let reached: Vec<String> = reach(&graph, &names).into_iter().collect();
        assert_eq!(
            reached,
            [
                "_sysconfigdata__linux_x86_64-linux-gnu",
                "email",
                "email.mime",
                "email.mime.text",
                "encodings",
                "encodings.aliases",
                "json",
                "json.decoder",
                "json.scanner",
                "re",
                "sysconfig",
            ]
        );
    }

    #[test]
    fn module_names_follow_the_import_system_and_skip_left_out_dirs() {
        assert_eq!(module_of("json/__init__.py").as_deref(), Some("json"));
        assert_eq!(
            module_of("json/decoder.py").as_deref(),
            Some("json.decoder")
        );
        assert_eq!(module_of("os.py").as_deref(), Some("os"));
        assert_eq!(module_of("__init__.py").as_deref(), Some("__init__"));
        assert_eq!(
            module_of("_sysconfigdata__linux_x86_64-linux-gnu.py").as_deref(),
            Some("_sysconfigdata__linux_x86_64-linux-gnu")
        );
        for out in [
            "test/test_json.py",
            "idlelib/run.py",
            "tkinter/__init__.py",
            "unittest/test/x.py",
            "config-3.13-x86_64-linux-gnu/python-config.py",
            "site-packages/six.py",
            "bad-name/x.py",
            "email/bad-name.py",
            "README.txt",
        ] {
            assert_eq!(module_of(out), None, "{out}");
        }
    }
}
