//! Bad input: every case runs the real binary and checks that it fails with
//! the right exit code and a one-screen error that says what is wrong, where
//! (the recipe file and line for recipe mistakes) and, where there is a fix,
//! a `hint:` — and that it wrote nothing: no OCI layout dir, no archive, no
//! tag in the registry, and no partial entry in the cache.
//!
//! Most cases are rows of a table (a recipe text, a change to the source
//! tree, or a command line); `SLIPWAY_CASE=NAME` runs only that row.
//! Cases that need a registry, uv or special setup are their own tests.
//!
//! `tests/BAD_INPUT.md` lists every case with the error it gets; regenerate
//! it with `scripts/bad-input-note` (which runs these tests with
//! `SLIPWAY_BAD_INPUT_NOTES` set, so each case writes its section).

mod common;
#[path = "support/inputs.rs"]
mod inputs;

use common::registry::{free_port, Registry};
use inputs::{alpine_layout, assert_cache_whole, assert_no_tag, run, tools_missing, Outcome, Work};
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Command;

/// A short recipe on the committed alpine base with an app; `extra` is
/// appended verbatim.
const BASE: &str = "base = \"python:3.13-alpine\"\n";

/// What a failing case must print and return.
#[derive(Clone, Copy)]
struct Expect<'a> {
    /// The exit code (2 input, 3 registry, 4 dependencies).
    code: i32,
    /// Substrings stderr must contain (what is wrong, and where).
    says: &'a [&'a str],
    /// The recipe line the error must name (with the recipe's file name).
    line: Option<usize>,
    /// A substring of the `hint:` line; None when no hint is required.
    hint: Option<&'a str>,
}

/// Runs `cmd`, checks the failure against `expect` and that nothing was
/// written; records the case for BAD_INPUT.md when asked to.
fn fails(name: &str, what: &str, work: &Work, cmd: &mut Command, expect: Expect) -> Outcome {
    let started = std::time::Instant::now();
    let out = run(cmd);
    eprintln!("{name}: exit {:?} in {:?}", out.code, started.elapsed());
    let stderr = &out.stderr;
    assert_eq!(
        out.code,
        Some(expect.code),
        "{name}: exit code\nstdout:\n{}\nstderr:\n{stderr}",
        out.stdout
    );
    let lines = stderr.lines().count();
    assert!(lines < 25, "{name}: {lines} lines of stderr:\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "{name}: no `error:` line:\n{stderr}"
    );
    for says in expect.says {
        assert!(
            stderr.contains(says),
            "{name}: stderr lacks `{says}`:\n{stderr}"
        );
    }
    if let Some(line) = expect.line {
        assert!(
            stderr.contains("recipe.toml") && stderr.contains(&format!("line {line}")),
            "{name}: stderr does not name recipe.toml and line {line}:\n{stderr}"
        );
    }
    if let Some(hint) = expect.hint {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("hint: ") && l.contains(hint)),
            "{name}: no `hint:` line with `{hint}`:\n{stderr}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "{name}: stdout on failure: {}",
        out.stdout
    );
    assert_nothing_written(name, work);
    note(name, what, work, &out);
    out
}

fn assert_nothing_written(name: &str, work: &Work) {
    assert!(
        !work.out().exists(),
        "{name}: the OCI layout dir was created"
    );
    assert!(!work.archive().exists(), "{name}: the archive was created");
    assert_cache_whole(&work.cache());
}

/// Appends the case to `$SLIPWAY_BAD_INPUT_NOTES/<name>.md` (for BAD_INPUT.md).
fn note(name: &str, what: &str, work: &Work, out: &Outcome) {
    let Some(dir) = std::env::var_os("SLIPWAY_BAD_INPUT_NOTES") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut text = out.stderr.replace(&*work.path().to_string_lossy(), "$WORK");
    text = text.replace(&*inputs::repo_root().to_string_lossy(), "$REPO");
    let text = redact_ports(&text);
    let section = format!(
        "### `{name}`\n\n{what}\n\nexit {}\n\n```text\n{}```\n\n",
        out.code.unwrap_or(-1),
        text
    );
    std::fs::write(dir.join(format!("{name}.md")), section).unwrap();
}

/// `127.0.0.1:41234` → `127.0.0.1:PORT`, so the note does not change every run.
fn redact_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i + "127.0.0.1:".len()]);
        rest = &rest[i + "127.0.0.1:".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("PORT");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// How a table case runs.
enum Run {
    /// `recipe.toml` with this text, built against the committed base into
    /// `--oci-layout`, with these extra arguments.
    Recipe(String, &'static [&'static str]),
    /// `[app] source = "app"`, after this changes the app dir.
    Source(fn(&Path)),
    /// Any command, set up in the work dir.
    Command(fn(&Work) -> Command),
}

struct Case {
    name: &'static str,
    what: &'static str,
    run: Run,
    expect: Expect<'static>,
    /// Substrings stderr must not contain (misleading hints).
    lacks: &'static [&'static str],
}

impl Case {
    fn lacking(mut self, lacks: &'static [&'static str]) -> Case {
        self.lacks = lacks;
        self
    }
}

fn recipe(name: &'static str, what: &'static str, text: &str, expect: Expect<'static>) -> Case {
    recipe_with(name, what, text, &[], expect)
}

fn recipe_with(
    name: &'static str,
    what: &'static str,
    text: &str,
    args: &'static [&'static str],
    expect: Expect<'static>,
) -> Case {
    Case {
        name,
        what,
        run: Run::Recipe(text.to_string(), args),
        expect,
        lacks: &[],
    }
}

fn source(
    name: &'static str,
    what: &'static str,
    setup: fn(&Path),
    expect: Expect<'static>,
) -> Case {
    Case {
        name,
        what,
        run: Run::Source(setup),
        expect,
        lacks: &[],
    }
}

fn cli(
    name: &'static str,
    what: &'static str,
    command: fn(&Work) -> Command,
    expect: Expect<'static>,
) -> Case {
    Case {
        name,
        what,
        run: Run::Command(command),
        expect,
        lacks: &[],
    }
}

/// A plain input error: exit 2, these words, the recipe line, this hint.
fn input(
    says: &'static [&'static str],
    line: Option<usize>,
    hint: &'static str,
) -> Expect<'static> {
    Expect {
        code: 2,
        says,
        line,
        hint: Some(hint),
    }
}

fn run_case(case: &Case) {
    let work = Work::new();
    let mut cmd = match &case.run {
        Run::Recipe(text, args) => {
            let path = work.recipe(text);
            let mut cmd = work.build_to_layout(&path);
            cmd.args(*args);
            cmd
        }
        Run::Source(setup) => {
            setup(&work.app());
            let path = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
            work.build_to_layout(&path)
        }
        Run::Command(command) => command(&work),
    };
    let expect = Expect { ..case.expect };
    let out = fails(case.name, case.what, &work, &mut cmd, expect);
    for lacks in case.lacks {
        assert!(
            !out.stderr.contains(lacks),
            "{}: stderr says `{lacks}`:\n{}",
            case.name,
            out.stderr
        );
    }
}

/// Runs every case (or only `$SLIPWAY_CASE`), then fails naming each that failed.
fn check_all(cases: Vec<Case>) {
    let only = std::env::var("SLIPWAY_CASE").ok();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| only.as_deref().is_none_or(|o| o == case.name))
        .filter(|case| std::panic::catch_unwind(AssertUnwindSafe(|| run_case(case))).is_err())
        .map(|case| case.name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

// ---------------------------------------------------------------- recipe

#[test]
fn recipe_mistakes() {
    check_all(recipe_cases());
}

fn recipe_cases() -> Vec<Case> {
    vec![
        recipe(
        "malformed_toml",
        "A table header missing its `]`.",
        &format!("{BASE}\n[app\nsource = \"app\"\n"),
        Expect {
            code: 2,
            says: &["TOML parse error", "invalid table header"],
            line: Some(3),
            hint: Some("valid TOML"),
        },
        ),
        recipe(
        "unterminated_string",
        "A string without its closing quote.",
        "base = \"python:3.13-alpine\n",
        Expect {
            code: 2,
            says: &["TOML parse error"],
            line: Some(1),
            hint: Some("valid TOML"),
        },
        ),
        recipe(
        "unknown_key_suggests_the_closest",
        "A misspelt key in `[app]`.",
        &format!("{BASE}\n[app]\nsorce = \"app\"\n"),
        Expect {
            code: 2,
            says: &["unknown field `sorce`"],
            line: Some(4),
            hint: Some("did you mean `source`?"),
        },
        ),
        recipe(
        "unknown_top_level_key",
        "`platform` for `platforms`.",
        &format!("{BASE}platform = [\"linux/amd64\"]\n"),
        Expect {
            code: 2,
            says: &["unknown field `platform`"],
            line: Some(2),
            hint: Some("did you mean `platforms`?"),
        },
        ),
        recipe(
        "unknown_table",
        "A misspelt table name, `[pyton]`.",
        &format!("{BASE}\n[pyton]\nversion = \"3.13\"\n"),
        Expect {
            code: 2,
            says: &["unknown field `pyton`"],
            line: Some(3),
            hint: Some("did you mean `python`?"),
        },
        ),
        recipe(
        "wrong_type_string_for_list",
        "`requirements` given a string instead of a list.",
        &format!("{BASE}\n[python]\nrequirements = \"requirements.txt\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"requirements.txt\", expected a sequence"],
            line: Some(4),
            hint: Some("requirements = [\"requirements.txt\"]"),
        },
        ),
        recipe(
        "wrong_type_string_for_integer",
        "`source_date_epoch` given a word.",
        &format!("{BASE}source_date_epoch = \"yesterday\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"yesterday\""],
            line: Some(2),
            hint: Some("source_date_epoch = 1700000000"),
        },
        ),
        recipe(
        "wrong_type_string_for_bool",
        "`offline = \"yes\"`.",
        &format!("{BASE}\n[python]\noffline = \"yes\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"yes\", expected a boolean"],
            line: Some(4),
            hint: Some("offline = true"),
        },
        ),
        recipe(
        "wrong_type_command_as_string",
        "`cmd` given a shell string instead of a list of arguments.",
        &format!("{BASE}\n[image]\ncmd = \"uvicorn app:app\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"uvicorn app:app\""],
            line: Some(4),
            hint: Some("cmd = [\"uvicorn\", \"app:app\"]"),
        },
        ),
        recipe(
        "empty_recipe",
        "An empty recipe file.",
        "",
        Expect {
            code: 2,
            says: &["missing field `base`"],
            line: Some(1),
            hint: Some("base = \"python:3.13-alpine\""),
        },
        ),
        recipe(
        "missing_source_dir",
        "`[app] source` names a dir that does not exist.",
        &format!("{BASE}\n[app]\nsource = \"src\"\n"),
        Expect {
            code: 2,
            says: &["`app.source` dir", "src` does not exist"],
            line: Some(4),
            hint: Some("fix `[app] source`"),
        },
        ),
        recipe(
        "source_is_a_file",
        "`[app] source` names a file.",
        &format!("{BASE}\n[app]\nsource = \"app/main.py\"\n"),
        Expect {
            code: 2,
            says: &["main.py` is not a directory"],
            line: Some(4),
            hint: Some("fix `[app] source`"),
        },
        ),
        recipe(
        "missing_requirements_file",
        "`[python] requirements` names a file that does not exist.",
        &format!("{BASE}\n[python]\nrequirements = [\"requirements.txt\"]\n"),
        Expect {
            code: 2,
            says: &[
                "`python.requirements` file",
                "requirements.txt` cannot be read",
            ],
            line: Some(4),
            hint: Some("fix the path in `[python] requirements`"),
        },
        ),
        recipe(
        "unparsable_base_reference",
        "`base` is not an image reference.",
        "base = \"Python::3.13\"\n",
        Expect {
            code: 2,
            says: &["image reference `Python::3.13` is invalid", "key `base`"],
            line: Some(1),
            hint: Some("references look like"),
        },
        ),
        recipe(
        "push_reference_with_bad_port",
        "`push` names a registry port above 65535 (the command line gives no destination).",
        &format!("{BASE}push = \"localhost:99999/team/app:1\"\n"),
        Expect {
            code: 2,
            says: &[
                "registry `localhost:99999` must be HOST or HOST:PORT",
                "key `push`",
            ],
            line: Some(2),
            hint: Some("references look like"),
        },
        ),
        recipe(
        "unknown_platform_in_recipe",
        "`platforms` names an architecture slipway does not build for.",
        &format!("{BASE}platforms = [\"linux/amd64\", \"linux/s390x\"]\n"),
        Expect {
            code: 2,
            says: &["unknown architecture `s390x`", "key `platforms`"],
            line: Some(2),
            hint: Some("linux/arm64"),
        },
        ),
        recipe(
        "python_version_mismatch",
        "The recipe says Python 3.12; the base has 3.13.",
        &format!("{BASE}\n[python]\nversion = \"3.12\"\n"),
        Expect {
            code: 2,
            says: &[
                "the Python version is `3.12`",
                "has `3.13`",
                "`python.version`",
            ],
            line: Some(4),
            hint: Some("fix or remove the `[python]` fact"),
        },
        ),
        recipe(
        "libc_contradiction",
        "The recipe says glibc; the base is Alpine (musl).",
        &format!("{BASE}\n[python]\nlibc = \"glibc-2.36\"\n"),
        Expect {
            code: 2,
            says: &[
                "the C library is `glibc 2.36`",
                "has `musl`",
                "`python.libc`",
            ],
            line: Some(4),
            hint: Some("fix or remove the `[python]` fact"),
        },
        ),
        recipe(
        "libc_not_a_libc",
        "`libc = \"uclibc\"`.",
        &format!("{BASE}\n[python]\nlibc = \"uclibc\"\n"),
        Expect {
            code: 2,
            says: &["libc `uclibc` is not `musl`, `glibc` or `glibc-2.NN`"],
            line: Some(4),
            hint: Some("libc = \"musl\""),
        },
        ),
        recipe(
        "python_version_not_a_version",
        "`[python] version = \"three\"`.",
        &format!("{BASE}\n[python]\nversion = \"three\"\n"),
        Expect {
            code: 2,
            says: &["`python.version` = `three` is not a Python version"],
            line: Some(4),
            hint: Some("version = \"3.13\""),
        },
        ),
        recipe(
        "two_destinations",
        "The recipe sets both `push` and `oci_layout` (the command line overrides neither).",
        &format!("{BASE}push = \"127.0.0.1:5000/app:1\"\noci_layout = \"out\"\n"),
        Expect {
            code: 2,
            says: &["more than one of `push`, `oci_layout`, `docker_archive` is set"],
            line: None,
            hint: Some("keep one destination"),
        },
        ),
        recipe(
        "relative_app_destination",
        "`[app] destination = \"app\"`.",
        &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"app\"\n"),
        Expect {
            code: 2,
            says: &["`app.destination` = `app` must be an absolute path"],
            line: Some(5),
            hint: Some("destination = \"/app\""),
        },
        ),
        recipe(
        "app_destination_with_dot_dot",
        "`[app] destination = \"/app/../etc\"`.",
        &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"/app/../etc\"\n"),
        Expect {
            code: 2,
            says: &["`/app/../etc` must be an absolute path without `.` or `..`"],
            line: Some(5),
            hint: Some("destination = \"/app/etc\""),
        },
        ),
        recipe(
        "port_out_of_range",
        "`ports = [\"99999\"]`.",
        &format!("{BASE}\n[image]\nports = [\"8000\", \"99999\"]\n"),
        Expect {
            code: 2,
            says: &["`image.ports` entry `99999` is not a port"],
            line: Some(4),
            hint: Some("1-65535"),
        },
        ),
        recipe(
        "port_with_unknown_protocol",
        "`ports = [\"8000/http\"]`.",
        &format!("{BASE}\n[image]\nports = [\"8000/http\"]\n"),
        Expect {
            code: 2,
            says: &["`image.ports` entry `8000/http` is not a port"],
            line: Some(4),
            hint: Some("`/tcp`, `/udp` or `/sctp`"),
        },
        ),
        recipe(
            "env_name_with_equals",
            "An `[image] env` name containing `=`.",
            &format!("{BASE}\n[image]\nenv = {{ \"A=B\" = \"x\" }}\n"),
            Expect {
                code: 2,
                says: &["`image.env` key `A=B` is not a valid variable name"],
                line: Some(4),
                hint: Some("no `=`"),
            },
        ),
        // Values no runtime accepts (issue 11, item 13).
        recipe(
            "uid_beyond_32_bits",
            "`user = \"99999999999\"`.",
            &format!("{BASE}\n[image]\nuser = \"99999999999\"\n"),
            input(&["`image.user` = `99999999999` has id `99999999999`, outside 0-4294967294"], Some(4), "UID:GID"),
        ),
        recipe(
            "uid_4294967296",
            "`user = \"4294967296:0\"` (2^32).",
            &format!("{BASE}\n[image]\nuser = \"4294967296:0\"\n"),
            input(&["has id `4294967296`, outside 0-4294967294"], Some(4), "UID:GID"),
        ),
        recipe(
            "gid_4294967295",
            "`user = \"0:4294967295\"` (the kernel's \"no group\").",
            &format!("{BASE}\n[image]\nuser = \"0:4294967295\"\n"),
            input(&["has id `4294967295`, outside 0-4294967294"], Some(4), "UID:GID"),
        ),
        recipe(
            "user_with_two_colons",
            "`user = \"1000:1000:1000\"`.",
            &format!("{BASE}\n[image]\nuser = \"1000:1000:1000\"\n"),
            input(&["`image.user` = `1000:1000:1000` has more than one `:`"], Some(4), "UID:GID"),
        ),
        recipe(
            "user_empty",
            "`user = \"\"`.",
            &format!("{BASE}\n[image]\nuser = \"\"\n"),
            input(&["`image.user` = `` is not `USER` or `USER:GROUP`"], Some(4), "UID:GID"),
        ),
        recipe(
            "user_empty_group",
            "`user = \"1000:\"`.",
            &format!("{BASE}\n[image]\nuser = \"1000:\"\n"),
            input(&["is not `USER` or `USER:GROUP`"], Some(4), "UID:GID"),
        ),
        recipe(
            "epoch_in_the_year_10000",
            "`source_date_epoch = 253402300800` (10000-01-01).",
            &format!("{BASE}source_date_epoch = 253402300800\n"),
            input(&["`source_date_epoch` = 253402300800 is after the year 9999 (the largest is 253402300799)"], Some(2), "git log -1"),
        ),
        recipe(
            "epoch_negative",
            "`source_date_epoch = -1`.",
            &format!("{BASE}source_date_epoch = -1\n"),
            input(&["invalid value: integer `-1`"], Some(2), "`source_date_epoch` takes an integer"),
        ),
        recipe_with(
            "epoch_flag_in_the_year_10000",
            "`--source-date-epoch 253402300800`.",
            BASE,
            &["--source-date-epoch", "253402300800"],
            Expect { code: 2, says: &["253402300800", "--source-date-epoch", "0..=253402300799"], line: None, hint: None },
        ),
        recipe(
            "nul_in_env_value",
            "An `[image] env` value holding `\\u0000`.",
            &format!("{BASE}\n[image]\nenv = {{ A = \"x\\u0000y\" }}\n"),
            input(&["`image.env.A` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_env_name",
            "An `[image] env` name holding `\\u0000`.",
            &format!("{BASE}\n[image]\nenv = {{ \"A\\u0000B\" = \"x\" }}\n"),
            input(&["`image.env.A\\0B` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_cmd",
            "A `cmd` argument holding `\\u0000`.",
            &format!("{BASE}\n[image]\ncmd = [\"python\", \"-c\\u0000\"]\n"),
            input(&["`image.cmd[1]` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_entrypoint",
            "An `entrypoint` holding `\\u0000`.",
            &format!("{BASE}\n[image]\nentrypoint = [\"py\\u0000thon\"]\n"),
            input(&["`image.entrypoint[0]` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_destination",
            "`[app] destination = \"/app\\u0000x\"`.",
            &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"/app\\u0000x\"\n"),
            input(&["`app.destination` contains a NUL character"], Some(5), "NUL"),
        ),
        recipe(
            "nul_in_label",
            "A label value holding `\\u0000`.",
            &format!("{BASE}\n[image]\nlabels = {{ team = \"a\\u0000\" }}\n"),
            input(&["`image.labels.team` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_annotation_key",
            "An annotation key holding `\\u0000`.",
            &format!("{BASE}\n[image]\nannotations = {{ \"a\\u0000\" = \"b\" }}\n"),
            input(&["`image.annotations.a\\0` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_workdir",
            "`workdir = \"/app\\u0000\"`.",
            &format!("{BASE}\n[image]\nworkdir = \"/app\\u0000\"\n"),
            input(&["`image.workdir` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_user",
            "`user = \"app\\u0000\"`.",
            &format!("{BASE}\n[image]\nuser = \"app\\u0000\"\n"),
            input(&["`image.user` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "nul_in_excludes",
            "An `[app] excludes` pattern holding `\\u0000`.",
            &format!("{BASE}\n[app]\nsource = \"app\"\nexcludes = [\"a\\u0000\"]\n"),
            input(&["`app.excludes[0]` contains a NUL character"], Some(5), "NUL"),
        ),
        recipe(
            "nul_in_requirements_path",
            "A `[python] requirements` path holding `\\u0000`.",
            &format!("{BASE}\n[python]\nrequirements = [\"req\\u0000.txt\"]\n"),
            input(&["`python.requirements[0]` contains a NUL character"], Some(4), "NUL"),
        ),
        recipe(
            "port_with_plus_sign",
            "`ports = [\"+80\"]` (Rust's integer parser would take it).",
            &format!("{BASE}\n[image]\nports = [\"+80\"]\n"),
            input(&["`image.ports` entry `+80` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_zero",
            "`ports = [\"0\"]`.",
            &format!("{BASE}\n[image]\nports = [\"0\"]\n"),
            input(&["`image.ports` entry `0` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_empty",
            "`ports = [\"\"]`.",
            &format!("{BASE}\n[image]\nports = [\"\"]\n"),
            input(&["`image.ports` entry `` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_negative",
            "`ports = [\"-80\"]`.",
            &format!("{BASE}\n[image]\nports = [\"-80\"]\n"),
            input(&["`image.ports` entry `-80` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_with_spaces",
            "`ports = [\" 80\"]`.",
            &format!("{BASE}\n[image]\nports = [\" 80\"]\n"),
            input(&["`image.ports` entry ` 80` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_protocol_only",
            "`ports = [\"/tcp\"]`.",
            &format!("{BASE}\n[image]\nports = [\"/tcp\"]\n"),
            input(&["`image.ports` entry `/tcp` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_in_hex",
            "`ports = [\"0x50\"]`.",
            &format!("{BASE}\n[image]\nports = [\"0x50\"]\n"),
            input(&["`image.ports` entry `0x50` is not a port"], Some(4), "1-65535"),
        ),
        recipe(
            "port_65536",
            "`ports = [\"65536/udp\"]`.",
            &format!("{BASE}\n[image]\nports = [\"65536/udp\"]\n"),
            input(&["`image.ports` entry `65536/udp` is not a port"], Some(4), "1-65535"),
        ),
        // Hints: keys valid at that place, Dockerfile and compose words (item 17).
        recipe(
            "dest_in_app",
            "`[app] dest` (the Dockerfile-ish short name).",
            &format!("{BASE}\n[app]\nsource = \"app\"\ndest = \"/srv\"\n"),
            input(&["unknown field `dest`"], Some(5), "did you mean `destination`?"),
        )
        .lacking(&["`base`"]),
        recipe(
            "run_table",
            "A `[run]` table, as if the recipe were a Dockerfile.",
            &format!("{BASE}\n[run]\ncommand = \"pip install flask\"\n"),
            input(&["unknown field `run`"], Some(3), "slipway runs no commands"),
        )
        .lacking(&["did you mean"]),
        recipe(
            "expose_in_image",
            "`[image] expose = [8000]`: valid TOML with a Dockerfile word.",
            &format!("{BASE}\n[image]\nexpose = [8000]\n"),
            input(&["unknown field `expose`"], Some(4), "did you mean `ports`? e.g. `ports = [\"8000/tcp\"]`"),
        )
        .lacking(&["valid TOML", "parse error"]),
        recipe(
            "expose_at_top_level",
            "`expose = [\"8000\"]` at the top level.",
            &format!("{BASE}expose = [\"8000\"]\n"),
            input(&["unknown field `expose`"], Some(2), "`ports` in `[image]`"),
        )
        .lacking(&["valid TOML", "parse error"]),
        recipe(
            "workdir_at_top_level",
            "`workdir` outside `[image]`.",
            &format!("{BASE}workdir = \"/app\"\n"),
            input(&["unknown field `workdir`"], Some(2), "`workdir` in `[image]`"),
        ),
        recipe(
            "from_instead_of_base",
            "`from = \"python:3.13-alpine\"`, the Dockerfile word.",
            "from = \"python:3.13-alpine\"\n",
            input(&["unknown field `from`"], Some(1), "did you mean `base`?"),
        ),
        recipe(
            "copy_table",
            "A `[copy]` table.",
            &format!("{BASE}\n[copy]\nsrc = \".\"\n"),
            input(&["unknown field `copy`"], Some(3), "`source` in `[app]`"),
        ),
        recipe(
            "cmd_in_app",
            "`cmd` put in `[app]`.",
            &format!("{BASE}\n[app]\ncmd = [\"python\", \"main.py\"]\n"),
            input(&["unknown field `cmd`"], Some(4), "`cmd` in `[image]`"),
        ),
        recipe(
            "entrypoint_at_top_level",
            "`entrypoint` outside `[image]`.",
            &format!("{BASE}entrypoint = [\"python\"]\n"),
            input(&["unknown field `entrypoint`"], Some(2), "`entrypoint` in `[image]`"),
        ),
        recipe(
            "env_in_python",
            "`env` put in `[python]`.",
            &format!("{BASE}\n[python]\nenv = {{ A = \"1\" }}\n"),
            input(&["unknown field `env`"], Some(4), "`env` in `[image]`"),
        ),
        recipe(
            "environment_in_image",
            "compose's `environment` in `[image]`.",
            &format!("{BASE}\n[image]\nenvironment = {{ A = \"1\" }}\n"),
            input(&["unknown field `environment`"], Some(4), "did you mean `env`?"),
        ),
        recipe(
            "command_in_image",
            "compose's `command` in `[image]`.",
            &format!("{BASE}\n[image]\ncommand = [\"python\"]\n"),
            input(&["unknown field `command`"], Some(4), "did you mean `cmd`?"),
        ),
        recipe(
            "working_dir_in_image",
            "compose's `working_dir` in `[image]`.",
            &format!("{BASE}\n[image]\nworking_dir = \"/app\"\n"),
            input(&["unknown field `working_dir`"], Some(4), "did you mean `workdir`?"),
        ),
        recipe(
            "label_in_image",
            "Dockerfile's `label` (singular).",
            &format!("{BASE}\n[image]\nlabel = {{ a = \"b\" }}\n"),
            input(&["unknown field `label`"], Some(4), "did you mean `labels`?"),
        ),
        recipe(
            "volume_in_image",
            "`volumes` in `[image]`.",
            &format!("{BASE}\n[image]\nvolumes = [\"/data\"]\n"),
            input(&["unknown field `volumes`"], Some(4), "no recipe equivalent"),
        ),
        recipe(
            "healthcheck_in_image",
            "`healthcheck` in `[image]`.",
            &format!("{BASE}\n[image]\nhealthcheck = \"curl localhost\"\n"),
            input(&["unknown field `healthcheck`"], Some(4), "no recipe equivalent"),
        ),
        recipe(
            "requirements_at_top_level",
            "`requirements` outside `[python]`.",
            &format!("{BASE}requirements = [\"requirements.txt\"]\n"),
            input(&["unknown field `requirements`"], Some(2), "`requirements` in `[python]`"),
        ),
        recipe(
            "dotted_dest",
            "`app.dest = \"/srv\"` as a dotted key.",
            &format!("{BASE}app.dest = \"/srv\"\n"),
            input(&["unknown field `dest`"], Some(2), "did you mean `destination`?"),
        ),
        recipe(
            "unknown_key_far_from_any",
            "`[app] zzzz = 1`: nothing close, so the valid keys are listed.",
            &format!("{BASE}\n[app]\nzzzz = 1\n"),
            input(&["unknown field `zzzz`"], Some(4), "the keys valid in `[app]` are `source`, `destination`, `excludes`, `bytecode`"),
        ),
        recipe(
            "misspelt_key_in_python",
            "`[python] requirments`.",
            &format!("{BASE}\n[python]\nrequirments = [\"r.txt\"]\n"),
            input(&["unknown field `requirments`"], Some(4), "did you mean `requirements`?"),
        ),
        recipe(
            "ports_as_integers",
            "`ports = [8000]` (numbers, not strings).",
            &format!("{BASE}\n[image]\nports = [8000]\n"),
            input(&["invalid type: integer `8000`, expected a string"], Some(4), "`ports` takes a list of strings"),
        ),
        recipe(
            "labels_as_list",
            "`labels = [\"a=b\"]`.",
            &format!("{BASE}\n[image]\nlabels = [\"a=b\"]\n"),
            input(&["invalid type: sequence, expected a map"], Some(4), "`labels` takes a table of string values"),
        ),
        recipe(
            "bytecode_as_string",
            "`[app] bytecode = \"no\"`.",
            &format!("{BASE}\n[app]\nbytecode = \"no\"\n"),
            input(&["invalid type: string \"no\", expected a boolean"], Some(4), "`bytecode` takes `true` or `false`"),
        ),
        recipe(
            "platforms_as_string",
            "`platforms = \"linux/amd64\"`.",
            &format!("{BASE}platforms = \"linux/amd64\"\n"),
            input(&["invalid type: string \"linux/amd64\", expected a sequence"], Some(2), "`platforms` takes a list of strings"),
        ),
        recipe(
            "base_as_table",
            "`[base]` as a table.",
            "[base]\nimage = \"python\"\n",
            input(&["invalid type: map, expected a string"], Some(1), "`base` takes a string"),
        ),
        recipe(
            "python_as_string",
            "`python = \"3.13\"` instead of a `[python]` table.",
            &format!("{BASE}python = \"3.13\"\n"),
            input(&["invalid type: string \"3.13\""], Some(2), "`python` takes a table"),
        ),
        recipe(
            "env_value_a_number",
            "`env = { WORKERS = 4 }`.",
            &format!("{BASE}\n[image]\nenv = {{ WORKERS = 4 }}\n"),
            input(&["invalid type: integer `4`, expected a string"], Some(4), "`env` takes a table of string values"),
        ),
        recipe(
            "duplicate_key",
            "`base` twice.",
            &format!("{BASE}{BASE}"),
            input(&["duplicate key"], Some(2), "valid TOML"),
        ),
        recipe(
            "destination_root_relative_dots",
            "`[app] destination = \"/./app\"`.",
            &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"/./app\"\n"),
            input(&["`/./app` must be an absolute path without `.` or `..`"], Some(5), "destination = \"/app\""),
        ),
        recipe(
            "excludes_unterminated_class",
            "`[app] excludes = [\"[abc\"]`.",
            &format!("{BASE}\n[app]\nsource = \"app\"\nexcludes = [\"[abc\"]\n"),
            Expect { code: 2, says: &["[abc", "unterminated `[` character class"], line: None, hint: None },
        ),
        recipe(
            "excludes_bad_range",
            "`[app] excludes = [\"[z-a]\"]`.",
            &format!("{BASE}\n[app]\nsource = \"app\"\nexcludes = [\"[z-a]\"]\n"),
            Expect { code: 2, says: &["bad range `z-a`"], line: None, hint: None },
        ),

    ]
}

// ---------------------------------------------------------------- command line, config and base

#[test]
fn command_line_config_and_base_mistakes() {
    check_all(cli_cases());
}

fn cli_cases() -> Vec<Case> {
    vec![
        cli(
            "recipe_file_missing",
            "The recipe path names no file.",
            |work| work.build_to_layout(&work.path().join("nope.toml")),
            input(&["cannot read recipe", "nope.toml", "No such file"], None, "recipe TOML file"),
        ),
        cli(
            "unparsable_push_flag",
            "`--push` with an upper-case repository.",
            |work| {
                let mut cmd = work.build(&work.recipe(BASE));
                cmd.arg("--base-layout").arg(alpine_layout());
                cmd.args(["--push", "127.0.0.1:5000/Team/App:1"]);
                cmd
            },
            input(&["--push", "repository component `Team` must be lowercase"], None, "references look like"),
        ),
        recipe_with(
            "unknown_platform_flag",
            "`--platform windows/amd64`.",
            BASE,
            &["--platform", "windows/amd64"],
            input(&["--platform: platform `windows/amd64`: only `linux` images are supported"], None, "--platform linux/arm64"),
        )
        .lacking(&["platforms = ["]),
        cli(
            "platform_the_base_lacks",
            "`linux/arm64` wanted (recipe) from a base that only has `linux/amd64`.",
            |work| amd64_only_base(work, &format!("{BASE}platforms = [\"linux/arm64\"]\n"), &[]),
            input(&["has no manifest for `linux/arm64`", "linux/amd64"], None, "pick platforms the base image has, with the recipe's `platforms`"),
        ),
        cli(
            "platform_flag_the_base_lacks",
            "`--platform linux/arm64` from a base that only has `linux/amd64`: the hint names the flag, not the recipe.",
            |work| amd64_only_base(work, BASE, &["--platform", "linux/arm64"]),
            input(&["has no manifest for `linux/arm64`"], None, "pick platforms the base image has, with `--platform`"),
        )
        .lacking(&["recipe's `platforms`"]),
        cli(
            "base_without_python",
            "A base image (an OCI layout made by the test) with a shell and musl but no Python.",
            |work| {
                let base = work.path().join("no-python");
                inputs::write_layout(&base, "3.13-alpine", &[shell_and_musl_layer()], &["PATH=/usr/bin:/bin"]);
                build_on(work, &base, &format!("{BASE}\n[app]\nsource = \"app\"\n"), &[])
            },
            input(&["has no Python", "PYTHON_VERSION"], None, "use a Python base image"),
        ),
        cli(
            "base_config_claims_python",
            "A base whose config says `PYTHON_VERSION=3.13.14` but whose layers hold no Python (facts learned from its files).",
            |work| {
                let base = work.path().join("claims-python");
                inputs::write_layout(&base, "3.13-alpine", &[shell_and_musl_layer()], &["PYTHON_VERSION=3.13.14"]);
                build_on(work, &base, &format!("{BASE}\n[app]\nsource = \"app\"\n"), &[])
            },
            input(&["has no Python: its config says `PYTHON_VERSION=3.13.14`, but `/usr/local/bin/python3.13` is not in its layers"], None, "use a base image that has Python"),
        )
        .lacking(&["Python 3.13, "]),
        cli(
            "base_index_json_too_big",
            "`--base-layout` whose `index.json` is 9 MiB (JSON is read whole only up to 8 MiB).",
            |work| {
                let base = work.path().join("huge-index");
                std::fs::create_dir_all(&base).unwrap();
                std::fs::write(base.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").unwrap();
                let tiny_values = "0,".repeat(9 << 19);
                std::fs::write(base.join("index.json"), format!("[{tiny_values}0]")).unwrap();
                build_on(work, &base, BASE, &[])
            },
            Expect { code: 2, says: &["index.json is larger than 8 MiB"], line: None, hint: None },
        ),
        cli(
            "base_config_too_big",
            "A base whose config is 9 MiB (an `Env` entry of 9 MiB).",
            |work| {
                let base = work.path().join("huge-config");
                let env = format!("BIG={}", "x".repeat(9 << 20));
                inputs::write_layout(&base, "3.13-alpine", &[musl_python_layer()], &["PYTHON_VERSION=3.13.14", &env]);
                build_on(work, &base, BASE, &[])
            },
            Expect { code: 2, says: &["its config is", "more than the 8 MiB slipway reads"], line: None, hint: None },
        ),
        cli(
            "inspect_layout_config_too_big",
            "`slipway inspect oci:DIR` of a layout whose config is 9 MiB: read up to the 8 MiB cap, never whole.",
            |work| {
                let dir = work.path().join("huge-config");
                let env = format!("BIG={}", "x".repeat(9 << 20));
                inputs::write_layout(&dir, "latest", &[musl_python_layer()], &[&env]);
                inspect(work, &format!("oci:{}", dir.display()))
            },
            Expect { code: 2, says: &["is larger than 8 MiB, the most slipway reads"], line: None, hint: None },
        ),
        cli(
            "inspect_archive_manifest_too_big",
            "`slipway inspect docker-archive:FILE` whose `manifest.json` is 9 MiB of tiny JSON values.",
            |work| {
                let file = work.path().join("huge.tar");
                let mut tar = tar::Builder::new(std::fs::File::create(&file).unwrap());
                let body = format!("[{}0]", "0,".repeat(9 << 19));
                let mut header = tar::Header::new_gnu();
                header.set_size(body.len() as u64);
                header.set_mode(0o644);
                tar.append_data(&mut header, "manifest.json", body.as_bytes()).unwrap();
                tar.finish().unwrap();
                inspect(work, &format!("docker-archive:{}", file.display()))
            },
            Expect { code: 2, says: &["`manifest.json` is larger than 8 MiB"], line: None, hint: None },
        ),
        cli(
            "more_than_127_layers",
            "A base of 126 layers (made by the test) plus the app and app-bytecode layers.",
            |work| {
                let base = work.path().join("many-layers");
                let mut layers = vec![musl_python_layer()];
                for i in 1..126 {
                    let path = format!("opt/layer-{i}.txt");
                    layers.push(inputs::tar_gz(&[("opt/", b""), (&path, i.to_string().as_bytes())]));
                }
                inputs::write_layout(&base, "3.13-alpine", &layers, &["PYTHON_VERSION=3.13.14"]);
                build_on(work, &base, &format!("{BASE}\n[app]\nsource = \"app\"\n"), &[])
            },
            input(&["the image would have 128 layers (126 from base", "+ 2 new)", "more than 127"], None, "fewer layers"),
        ),
        cli(
            "no_destination",
            "Neither the recipe nor the command line says where the image goes.",
            |work| {
                let mut cmd = work.build(&work.recipe(BASE));
                cmd.arg("--base-layout").arg(alpine_layout());
                cmd
            },
            input(&["says nowhere to put the image"], None, "--oci-layout DIR"),
        ),
        cli(
            "two_destination_flags",
            "`--oci-layout` and `--docker-archive` together.",
            |work| {
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.arg("--docker-archive").arg(work.archive());
                cmd
            },
            Expect { code: 2, says: &["cannot be used with"], line: None, hint: None },
        ),
        cli(
            "tag_without_a_docker_archive",
            "`--tag` (names in a docker-archive) with `--oci-layout`.",
            |work| {
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.args(["--tag", "localhost/app:1"]);
                cmd
            },
            Expect {
                code: 2,
                says: &["--tag localhost/app:1", "only a docker-archive carries names"],
                line: None,
                hint: Some("--push"),
            },
        ),
        cli(
            "bad_archive_tag",
            "`--tag` that is not an image reference.",
            |work| {
                let mut cmd = work.build(&work.recipe(BASE));
                cmd.arg("--docker-archive")
                    .arg(work.archive())
                    .args(["--tag", "Not A Reference"]);
                cmd
            },
            Expect {
                code: 2,
                says: &["--tag", "`Not A Reference` is invalid"],
                line: None,
                hint: Some("a lowercase repository"),
            },
        ),
        recipe_with(
            "registry_mirror_without_equals",
            "`--registry-mirror docker.io` (no `=TO`).",
            BASE,
            &["--registry-mirror", "docker.io"],
            input(&["--registry-mirror `docker.io` is not FROM=TO"], None, "docker.io=registry.internal:5000"),
        ),
        recipe_with(
            "registry_mirror_with_a_url",
            "`--registry-mirror docker.io=http://mirror:5000/v2` (a URL, not HOST:PORT).",
            BASE,
            &["--registry-mirror", "docker.io=http://mirror:5000/v2"],
            input(&["`http://mirror:5000/v2`", "HOST[:PORT]"], None, "docker.io=registry.internal:5000"),
        ),
        cli(
            "bad_config_file",
            "`$SLIPWAY_CONFIG` with a mirror given as a number.",
            |work| {
                let config = work.write("slipway.toml", "[mirrors]\n\"docker.io\" = 5000\n");
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.env("SLIPWAY_CONFIG", &config);
                cmd
            },
            input(&["config `", "slipway.toml", "line 2", "invalid type: integer `5000`"], None, "[mirrors]"),
        ),
        cli(
            "bad_config_flag_file",
            "`--config FILE` with an unknown key.",
            |work| {
                let config = work.write("slipway.toml", "insecure_registry = [\"mirror:5000\"]\n");
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.arg("--config").arg(&config);
                cmd
            },
            input(&["slipway.toml", "line 1", "unknown field `insecure_registry`"], None, "insecure_registries"),
        ),
        cli(
            "source_date_epoch_not_a_number",
            "`SOURCE_DATE_EPOCH=yesterday` in the environment.",
            |work| {
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.env("SOURCE_DATE_EPOCH", "yesterday");
                cmd
            },
            Expect { code: 2, says: &["invalid value 'yesterday'", "--source-date-epoch"], line: None, hint: None },
        ),
        cli(
            "source_date_epoch_env_in_the_year_10000",
            "`SOURCE_DATE_EPOCH=253402300800` in the environment.",
            |work| {
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.env("SOURCE_DATE_EPOCH", "253402300800");
                cmd
            },
            Expect { code: 2, says: &["invalid value '253402300800'", "--source-date-epoch", "0..=253402300799"], line: None, hint: None },
        ),
        cli(
            "uv_missing",
            "Requirements to install, and `--uv` names no program.",
            |work| {
                work.write("requirements.txt", "idna\n");
                let recipe = work.recipe(&format!("{BASE}\n[python]\nrequirements = [\"requirements.txt\"]\n"));
                let mut cmd = work.build_to_layout(&recipe);
                cmd.args(["--uv", "/nonexistent/uv"]);
                cmd
            },
            input(&["cannot run uv (`/nonexistent/uv`)"], None, "SLIPWAY_UV"),
        ),
        cli(
            "cache_dir_is_a_file",
            "`--cache-dir` names a regular file: a local I/O problem, exit 1 with the path (never 3).",
            |work| {
                let file = work.write("cache-file", "not a dir\n");
                let mut cmd = work.build_to_layout(&work.recipe(BASE));
                cmd.arg("--cache-dir").arg(&file);
                cmd
            },
            Expect { code: 1, says: &["cache-file"], line: None, hint: None },
        ),
    ]
}

/// `slipway inspect TARGET`, isolated like a build.
fn inspect(work: &Work, target: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("inspect").arg(target);
    inputs::isolate(&mut cmd, work.path());
    cmd
}

/// `slipway build` of `recipe` on the OCI layout `base`, into `--oci-layout`.
fn build_on(work: &Work, base: &Path, recipe: &str, args: &[&str]) -> Command {
    let mut cmd = work.build(&work.recipe(recipe));
    cmd.arg("--base-layout")
        .arg(base)
        .arg("--oci-layout")
        .arg(work.out());
    cmd.args(args);
    cmd
}

/// A base with only `linux/amd64`, built with `recipe` and `args`.
fn amd64_only_base(work: &Work, recipe: &str, args: &[&str]) -> Command {
    let base = work.path().join("amd64-only");
    inputs::write_layout(
        &base,
        "3.13-alpine",
        &[musl_python_layer()],
        &["PYTHON_VERSION=3.13.14"],
    );
    build_on(work, &base, recipe, args)
}

/// Alpine's release file, musl's loader and a shell, but no Python.
fn shell_and_musl_layer() -> Vec<u8> {
    inputs::tar_gz(&[
        ("etc/", b""),
        ("etc/alpine-release", b"3.22.2\n"),
        ("lib/", b""),
        ("lib/ld-musl-x86_64.so.1", b"\x7fELF stub"),
        ("bin/", b""),
        ("bin/sh", b"#!stub\n"),
    ])
}

// ---------------------------------------------------------------- source tree

#[test]
fn source_tree_mistakes() {
    check_all(source_cases());
}

fn source_cases() -> Vec<Case> {
    vec![
        source(
        "symlink_pointing_outside",
        "`app/passwd -> ../../../etc/passwd`.",
        |app| std::os::unix::fs::symlink("../../../etc/passwd", app.join("passwd")).unwrap(),
        Expect {
            code: 2,
            says: &["app/passwd` is a symlink to `../../../etc/passwd`, which points outside the source dir"],
            line: None,
            hint: Some("add `passwd` to `[app] excludes`"),
        },
        ),
        source(
        "symlink_escaping_through_a_subdir",
        "`app/pkg/up -> ../..` (resolves to the dir above the source).",
        |app| {
            std::fs::create_dir_all(app.join("pkg")).unwrap();
            std::os::unix::fs::symlink("../..", app.join("pkg/up")).unwrap();
        },
        Expect {
            code: 2,
            says: &["pkg/up` is a symlink to `../..`, which points outside"],
            line: None,
            hint: Some("pkg/up"),
        },
        ),
        source(
        "absolute_symlink",
        "`app/config -> /etc/app/config`.",
        |app| std::os::unix::fs::symlink("/etc/app/config", app.join("config")).unwrap(),
        Expect {
            code: 2,
            says: &["app/config` is an absolute symlink (to `/etc/app/config`)"],
            line: None,
            hint: Some("ln -sfr"),
        },
        ),
        source(
        "fifo_in_source",
        "A named pipe in the source dir.",
        |app| {
            let status = Command::new("mkfifo")
                .arg(app.join("pipe"))
                .status()
                .unwrap();
            assert!(status.success());
        },
        Expect {
            code: 2,
            says: &["app/pipe` is a FIFO, which cannot be put in an image layer"],
            line: None,
            hint: Some("add `pipe` to `[app] excludes`"),
        },
        ),
        source(
        "socket_in_source",
        "A Unix socket in the source dir (bound by the test).",
        |app| {
            let socket = std::os::unix::net::UnixListener::bind(app.join("app.sock")).unwrap();
            // The listener closes; the socket file stays.
            drop(socket);
        },
        Expect {
            code: 2,
            says: &["app/app.sock` is a socket"],
            line: None,
            hint: Some("add `app.sock` to `[app] excludes`"),
        },
        ),
        source(
        "non_utf8_file_name",
        "A file named `caf\\xe9.py` (Latin-1, not UTF-8).",
        |app| {
            let name = std::ffi::OsStr::from_bytes(b"caf\xe9.py");
            std::fs::write(app.join(name), "x = 1\n").unwrap();
        },
        Expect {
            code: 2,
            says: &["file name `", "caf\\xe9.py` is not valid UTF-8"],
            line: None,
            hint: Some("rename it"),
        },
        ),
        source(
        "non_utf8_dir_name",
        "A dir named `d\\xff` holding a file.",
        |app| {
            let name = std::ffi::OsStr::from_bytes(b"d\xff");
            std::fs::create_dir(app.join(name)).unwrap();
            std::fs::write(app.join(name).join("x.py"), "x = 1\n").unwrap();
        },
        Expect {
            code: 2,
            says: &["d\\xff` is not valid UTF-8"],
            line: None,
            hint: Some("rename it"),
        },
        ),
    ]
}

#[test]
fn device_in_source() {
    let work = Work::new();
    let device = work.app().join("null");
    let mknod = |sudo: bool| {
        let mut cmd = Command::new(if sudo { "sudo" } else { "mknod" });
        if sudo {
            cmd.args(["-n", "mknod"]);
        }
        cmd.arg(&device).args(["c", "1", "3"]);
        cmd.output().is_ok_and(|o| o.status.success())
    };
    if !mknod(false)
        && !mknod(true)
        && common::skip_or_fail("mknod with CAP_MKNOD (root, or sudo -n)")
    {
        return;
    }
    let path = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    fails(
        "device_in_source",
        "A character device (`mknod app/null c 1 3`, as root) in the source dir.",
        &work,
        &mut work.build_to_layout(&path),
        Expect {
            code: 2,
            says: &["app/null` is a character device"],
            line: None,
            hint: Some("add `null` to `[app] excludes`"),
        },
    );
}

/// Not a failure: excluding the bad names makes the build work.
#[test]
fn excluded_special_files_are_fine() {
    let work = Work::new();
    let app = work.app();
    std::os::unix::fs::symlink("/etc/passwd", app.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../x", app.join("out")).unwrap();
    Command::new("mkfifo")
        .arg(app.join("pipe"))
        .status()
        .unwrap();
    std::fs::write(app.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")), "").unwrap();
    let recipe = work.recipe(&format!(
        "{BASE}\n[app]\nsource = \"app\"\nexcludes = [\"abs\", \"out\", \"pipe\", \"caf?.txt\"]\n"
    ));
    let out = run(&mut work.build_to_layout(&recipe));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// Not a failure: `.dockerignore` patterns that made the old backtracking
/// matcher exponential, against a 40-character name, a 40-deep and a
/// 1,200-deep tree (each over 60 s before). The build's total time is printed
/// and asserted generously; the matcher alone is timed in
/// `layers::dockerignore` (well under 1 s).
#[test]
fn pathological_dockerignore_is_linear() {
    let work = Work::new();
    let app = work.app();
    work.write(
        "app/.dockerignore",
        "*a*a*a*a*a*a*a*a*a*a*a*a*b\n**/**/**/**/**/**/**/**/x\n!**/**/**/**/**/**/**/**/keep\n",
    );
    std::fs::write(app.join("a".repeat(40)), "").unwrap();
    let deep40 = app.join(vec!["d"; 40].join("/"));
    std::fs::create_dir_all(&deep40).unwrap();
    std::fs::write(deep40.join("f.txt"), "").unwrap();
    let deep1200 = app.join(vec!["e"; 1200].join("/"));
    std::fs::create_dir_all(&deep1200).unwrap();
    std::fs::write(deep1200.join("f.txt"), "").unwrap();
    let recipe = work.recipe(&format!(
        "{BASE}\n[app]\nsource = \"app\"\nbytecode = false\n"
    ));
    let started = std::time::Instant::now();
    let out = run(&mut work.build_to_layout(&recipe));
    let took = started.elapsed();
    eprintln!("build with pathological .dockerignore and a 1,200-deep tree: {took:?}");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(took.as_secs() < 60, "took {took:?}");
}

/// A 2 GiB file is legal in a tar layer, so slipway accepts it (as a user
/// would expect) and streams it: the build's peak memory stays far below
/// the file's size. A sparse file keeps the test cheap on disk; compressing
/// 2 GiB of zeros takes ~10-30 s.
#[test]
fn two_gib_file_is_streamed() {
    let work = Work::new();
    let big = std::fs::File::create(work.app().join("model.bin")).unwrap();
    big.set_len(2 << 30).unwrap();
    drop(big);
    let recipe = work.recipe(&format!(
        "{BASE}\n[app]\nsource = \"app\"\nbytecode = false\n"
    ));
    let mut child = work
        .build_to_layout(&recipe)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        peak_kib < 256 * 1024,
        "peak RSS {peak_kib} KiB: the file was held in memory"
    );
    // The app layer holds the file with its full size.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.out().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        work.out()
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let app_layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = std::fs::File::open(blob(&app_layer)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let sizes: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.size())
        })
        .collect();
    assert!(
        sizes.contains(&("app/model.bin".to_string(), 2 << 30)),
        "{sizes:?}"
    );
    note(
        "two_gib_file_is_streamed",
        "A sparse 2 GiB file in the source dir. Accepted (tar allows it; the layer is streamed, peak RSS stays ~30 MB); exit 0.",
        &work,
        &Outcome {
            code: out.status.code(),
            stdout: String::new(),
            stderr: stderr.into_owned(),
        },
    );
}

/// Alpine's musl loader and `/usr/local/bin/python3.13`, as a layer.
fn musl_python_layer() -> Vec<u8> {
    inputs::tar_gz(&[
        ("lib/", b""),
        ("lib/ld-musl-x86_64.so.1", b"\x7fELF stub"),
        ("usr/", b""),
        ("usr/local/", b""),
        ("usr/local/bin/", b""),
        ("usr/local/bin/python3.13", b"\x7fELF stub"),
    ])
}

// ---------------------------------------------------------------- dependencies

#[test]
fn package_with_no_wheel_for_the_target() {
    if tools_missing(&["uv"]) {
        return;
    }
    let work = Work::new();
    let wheels = work.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    write_wheel(
        &wheels,
        "only_glibc",
        "1.0",
        "cp313-cp313-manylinux_2_17_x86_64",
    );
    work.write("requirements.txt", "only-glibc==1.0\n");
    let recipe = work.recipe(&format!(
        "{BASE}\n[python]\nrequirements = [\"requirements.txt\"]\n"
    ));
    fails(
        "package_with_no_wheel_for_the_target",
        "A requirement whose only wheel is manylinux (glibc), offline, for the Alpine (musl) base.",
        &work,
        work.build_to_layout(&recipe)
            .arg("--offline")
            .arg("--find-links")
            .arg(&wheels),
        Expect {
            code: 4,
            says: &[
                "no wheel of `only-glibc` for `x86_64-unknown-linux-musl`",
                "manylinux_2_17_x86_64",
            ],
            line: None,
            hint: None,
        },
    );
}

#[test]
fn package_not_in_the_wheelhouse() {
    if tools_missing(&["uv"]) {
        return;
    }
    let Some(wheels) = inputs::wheelhouse() else {
        return;
    };
    let work = Work::new();
    work.write(
        "requirements.txt",
        "fastapi\nno-such-package-slipway==1.0\n",
    );
    let recipe = work.recipe(&format!(
        "{BASE}\n[python]\nrequirements = [\"requirements.txt\"]\n"
    ));
    fails(
        "package_not_in_the_wheelhouse",
        "An offline build whose requirements name a package the wheelhouse lacks.",
        &work,
        work.build_to_layout(&recipe)
            .arg("--offline")
            .arg("--find-links")
            .arg(&wheels),
        Expect {
            code: 4,
            says: &["no-such-package-slipway"],
            line: None,
            hint: None,
        },
    );
}

/// A minimal wheel (a zip with METADATA, WHEEL and RECORD) named for `tag`.
fn write_wheel(dir: &Path, name: &str, version: &str, tag: &str) {
    let info = format!("{name}-{version}.dist-info");
    let files = [
        (format!("{name}/__init__.py"), String::new()),
        (
            format!("{info}/METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {}\nVersion: {version}\n",
                name.replace('_', "-")
            ),
        ),
        (
            format!("{info}/WHEEL"),
            format!("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"),
        ),
        (format!("{info}/RECORD"), String::new()),
    ];
    let path = dir.join(format!("{name}-{version}-{tag}.whl"));
    std::fs::write(path, stored_zip(&files)).unwrap();
}

/// A zip archive with every file stored (not compressed).
fn stored_zip(files: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, body) in files {
        let mut crc = flate2::Crc::new();
        crc.update(body.as_bytes());
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&crc.sum().to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(body.as_bytes());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0; 8]); // comment len, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

// ---------------------------------------------------------------- registries

#[test]
fn unreachable_registry() {
    let work = Work::new();
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let port = free_port(); // nothing listens on it
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.args(["--retries", "2", "--push"])
        .arg(format!("127.0.0.1:{port}/team/app:1"));
    fails(
        "unreachable_registry",
        "`--push` to a loopback port nothing listens on.",
        &work,
        &mut cmd,
        Expect {
            code: 3,
            says: &[&format!("127.0.0.1:{port}/team/app"), "connection refused"],
            line: None,
            hint: Some("is the registry running"),
        },
    );
}

#[test]
fn unreachable_mirror() {
    let work = Work::new();
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let port = free_port();
    let mut cmd = work.build(&recipe);
    cmd.args(["--retries", "2", "--registry-mirror"])
        .arg(format!("docker.io=127.0.0.1:{port}"))
        .arg("--oci-layout")
        .arg(work.out());
    fails(
        "unreachable_mirror",
        "The base is pulled through a mirror (a loopback port) that is down.",
        &work,
        &mut cmd,
        Expect {
            code: 3,
            says: &[
                "pull manifest",
                &format!("127.0.0.1:{port}/library/python"),
                "connection refused",
            ],
            line: None,
            hint: Some("is the registry running"),
        },
    );
}

#[test]
fn base_tag_not_in_the_registry() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start();
    let work = Work::new();
    let recipe = work.recipe("base = \"python:3.99-nonexistent\"\n");
    let mut cmd = work.build(&recipe);
    cmd.arg("--registry-mirror")
        .arg(format!("docker.io={}", registry.addr()))
        .arg("--oci-layout")
        .arg(work.out());
    fails(
        "base_tag_not_in_the_registry",
        "The base's repository or tag does not exist in the (mirror) registry.",
        &work,
        &mut cmd,
        Expect {
            code: 3,
            says: &["pull manifest", "3.99-nonexistent", "404 Not Found"],
            line: None,
            hint: Some("not found"),
        },
    );
}

const USER: &str = "ci-bot";
const PASSWORD: &str = "s3cret-Pa55word-planted";
const WRONG: &str = "wrong-Pa55word-planted";

/// A push to an htpasswd registry with wrong credentials from `setup`;
/// the wrong and the right password must not be printed, with `--verbose`.
fn wrong_credentials_case(
    name: &str,
    what: &str,
    registry: &Registry,
    setup: impl FnOnce(&Work, &mut Command),
) {
    let work = Work::new();
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.args(["--verbose", "--push"])
        .arg(format!("{}/team/app:1", registry.addr()));
    setup(&work, &mut cmd);
    let out = fails(
        name,
        what,
        &work,
        &mut cmd,
        Expect {
            code: 3,
            says: &[registry.addr(), "401 Unauthorized"],
            line: None,
            hint: Some("check the credentials for"),
        },
    );
    for secret in [WRONG, PASSWORD] {
        assert!(
            !out.stderr.contains(secret),
            "{name}: a password in stderr:\n{}",
            out.stderr
        );
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"))
        };
        assert!(
            !out.stderr.contains(&encoded),
            "{name}: base64 credentials in stderr"
        );
    }
    assert_no_tag(registry, "team/app", "1");
}

#[test]
fn wrong_password_in_docker_config() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    wrong_credentials_case(
        "wrong_password_in_docker_config",
        "`$DOCKER_CONFIG/config.json` holds a wrong password for an htpasswd registry (`--verbose`; the password is not printed).",
        &registry,
        |work, cmd| {
            let dir = inputs::docker_config(&work.path().join("docker"), registry.addr(), USER, WRONG);
            cmd.env("DOCKER_CONFIG", dir);
        },
    );
}

#[test]
fn wrong_password_in_environment() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    wrong_credentials_case(
        "wrong_password_in_environment",
        "`SLIPWAY_REGISTRY_USERNAME`/`PASSWORD` hold a wrong password (`--verbose`; the password is not printed).",
        &registry,
        |_, cmd| {
            cmd.env("SLIPWAY_REGISTRY_USERNAME", USER)
                .env("SLIPWAY_REGISTRY_PASSWORD", WRONG);
        },
    );
}

#[test]
fn no_credentials_for_a_private_registry() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    wrong_credentials_case(
        "no_credentials_for_a_private_registry",
        "A push to an htpasswd registry with no credentials at all.",
        &registry,
        |_, _| {},
    );
}

#[test]
fn wrong_password_for_a_token_registry() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_token_auth_with_credentials(USER, PASSWORD);
    let work = Work::new();
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let dir = inputs::docker_config(&work.path().join("docker"), registry.addr(), USER, WRONG);
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout")
        .arg(alpine_layout())
        .env("DOCKER_CONFIG", dir);
    cmd.args(["--verbose", "--push"])
        .arg(format!("{}/team/app:1", registry.addr()));
    let out = fails(
        "wrong_password_for_a_token_registry",
        "A bearer-token registry whose token server refuses the password in config.json (`--verbose`).",
        &work,
        &mut cmd,
        Expect {
            code: 3,
            says: &["token", "401"],
            line: None,
            hint: Some("credentials"),
        },
    );
    assert!(
        !out.stderr.contains(WRONG) && !out.stderr.contains(PASSWORD),
        "{}",
        out.stderr
    );
    assert_no_tag(&registry, "team/app", "1");
}

// ---------------------------------------------------------------- output destinations

/// A destination case: `flag` names `target` (made by `setup`), which must
/// be left exactly as it was.
fn destination_case(
    name: &str,
    what: &str,
    flag: &str,
    setup: impl FnOnce(&Work) -> std::path::PathBuf,
    says: &[&str],
) {
    let work = Work::new();
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let target = setup(&work);
    let before = listing(&target);
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.arg(flag).arg(&target);
    fails(
        name,
        what,
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says,
            line: None,
            hint: Some("pass a new path"),
        },
    );
    assert_eq!(listing(&target), before, "{name}: the target was changed");
    let strays: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".slipway") || n.contains(".old-"))
        .collect();
    assert!(strays.is_empty(), "{name}: left {strays:?}");
}

/// Every path under `root` with its contents (files) or `dir`.
fn listing(root: &Path) -> Vec<(String, String)> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .map(|e| {
            let contents = if e.file_type().is_file() {
                std::fs::read_to_string(e.path()).unwrap_or_default()
            } else {
                "dir".into()
            };
            (e.path().to_string_lossy().into_owned(), contents)
        })
        .collect()
}

#[test]
fn oci_layout_over_a_file() {
    destination_case(
        "oci_layout_over_a_file",
        "`--oci-layout` names an existing regular file (left untouched).",
        "--oci-layout",
        |work| work.write("notes.txt", "keep me\n"),
        &[
            "cannot write OCI layout",
            "notes.txt`: it exists and is not a directory",
        ],
    );
}

#[test]
fn oci_layout_over_a_non_layout_dir() {
    destination_case(
        "oci_layout_over_a_non_layout_dir",
        "`--oci-layout` names the user's own source dir (writing a layout replaces the whole dir, so slipway refuses; the dir is left untouched).",
        "--oci-layout",
        |work| work.app(),
        &["cannot write OCI layout", "is not an OCI image layout (no `oci-layout` file)"],
    );
}

#[test]
fn docker_archive_is_a_dir() {
    destination_case(
        "docker_archive_is_a_dir",
        "`--docker-archive` names an existing directory.",
        "--docker-archive",
        |work| {
            let dir = work.path().join("images");
            std::fs::create_dir(&dir).unwrap();
            dir
        },
        &["cannot write docker archive", "images`: it is a directory"],
    );
}
