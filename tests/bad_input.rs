//! Bad input: every case runs the real binary and checks that it fails with
//! the right exit code and a one-screen error that says what is wrong, where
//! (the recipe file and line for recipe mistakes) and, where there is a fix,
//! a `hint:` — and that it wrote nothing: no OCI layout dir, no archive, no
//! tag in the registry, and no partial entry in the cache.
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
use std::path::Path;
use std::process::Command;

/// A short recipe on the committed alpine base with an app; `extra` is
/// appended verbatim.
const BASE: &str = "base = \"python:3.13-alpine\"\n";

/// What a failing case must print and return.
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
    let out = run(cmd);
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

/// A recipe case built against the committed base into `--oci-layout`.
fn recipe_case(name: &str, what: &str, recipe: &str, expect: Expect) -> Outcome {
    let work = Work::new();
    let path = work.recipe(recipe);
    fails(name, what, &work, &mut work.build_to_layout(&path), expect)
}

/// A recipe with `[app] source = "app"` whose app dir `setup` changes.
fn source_case(name: &str, what: &str, setup: impl FnOnce(&Path), expect: Expect) -> Outcome {
    let work = Work::new();
    setup(&work.app());
    let path = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    fails(name, what, &work, &mut work.build_to_layout(&path), expect)
}

// ---------------------------------------------------------------- recipe

#[test]
fn malformed_toml() {
    recipe_case(
        "malformed_toml",
        "A table header missing its `]`.",
        &format!("{BASE}\n[app\nsource = \"app\"\n"),
        Expect {
            code: 2,
            says: &["TOML parse error", "invalid table header"],
            line: Some(3),
            hint: Some("valid TOML"),
        },
    );
}

#[test]
fn unterminated_string() {
    recipe_case(
        "unterminated_string",
        "A string without its closing quote.",
        "base = \"python:3.13-alpine\n",
        Expect {
            code: 2,
            says: &["TOML parse error"],
            line: Some(1),
            hint: Some("valid TOML"),
        },
    );
}

#[test]
fn unknown_key_suggests_the_closest() {
    recipe_case(
        "unknown_key_suggests_the_closest",
        "A misspelt key in `[app]`.",
        &format!("{BASE}\n[app]\nsorce = \"app\"\n"),
        Expect {
            code: 2,
            says: &["unknown field `sorce`"],
            line: Some(4),
            hint: Some("did you mean `source`?"),
        },
    );
}

#[test]
fn unknown_top_level_key() {
    recipe_case(
        "unknown_top_level_key",
        "`platform` for `platforms`.",
        &format!("{BASE}platform = [\"linux/amd64\"]\n"),
        Expect {
            code: 2,
            says: &["unknown field `platform`"],
            line: Some(2),
            hint: Some("did you mean `platforms`?"),
        },
    );
}

#[test]
fn unknown_table() {
    recipe_case(
        "unknown_table",
        "A misspelt table name, `[pyton]`.",
        &format!("{BASE}\n[pyton]\nversion = \"3.13\"\n"),
        Expect {
            code: 2,
            says: &["unknown field `pyton`"],
            line: Some(3),
            hint: Some("did you mean `python`?"),
        },
    );
}

#[test]
fn wrong_type_string_for_list() {
    recipe_case(
        "wrong_type_string_for_list",
        "`requirements` given a string instead of a list.",
        &format!("{BASE}\n[python]\nrequirements = \"requirements.txt\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"requirements.txt\", expected a sequence"],
            line: Some(4),
            hint: Some("requirements = [\"requirements.txt\"]"),
        },
    );
}

#[test]
fn wrong_type_string_for_integer() {
    recipe_case(
        "wrong_type_string_for_integer",
        "`source_date_epoch` given a word.",
        &format!("{BASE}source_date_epoch = \"yesterday\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"yesterday\""],
            line: Some(2),
            hint: Some("source_date_epoch = 1700000000"),
        },
    );
}

#[test]
fn wrong_type_string_for_bool() {
    recipe_case(
        "wrong_type_string_for_bool",
        "`offline = \"yes\"`.",
        &format!("{BASE}\n[python]\noffline = \"yes\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"yes\", expected a boolean"],
            line: Some(4),
            hint: Some("offline = true"),
        },
    );
}

#[test]
fn wrong_type_command_as_string() {
    recipe_case(
        "wrong_type_command_as_string",
        "`cmd` given a shell string instead of a list of arguments.",
        &format!("{BASE}\n[image]\ncmd = \"uvicorn app:app\"\n"),
        Expect {
            code: 2,
            says: &["invalid type: string \"uvicorn app:app\""],
            line: Some(4),
            hint: Some("cmd = [\"uvicorn\", \"app:app\"]"),
        },
    );
}

#[test]
fn empty_recipe() {
    recipe_case(
        "empty_recipe",
        "An empty recipe file.",
        "",
        Expect {
            code: 2,
            says: &["missing field `base`"],
            line: Some(1),
            hint: Some("base = \"python:3.13-alpine\""),
        },
    );
}

#[test]
fn recipe_file_missing() {
    let work = Work::new();
    fails(
        "recipe_file_missing",
        "The recipe path names no file.",
        &work,
        &mut work.build_to_layout(&work.path().join("nope.toml")),
        Expect {
            code: 2,
            says: &["cannot read recipe", "nope.toml", "No such file"],
            line: None,
            hint: Some("recipe TOML file"),
        },
    );
}

#[test]
fn missing_source_dir() {
    recipe_case(
        "missing_source_dir",
        "`[app] source` names a dir that does not exist.",
        &format!("{BASE}\n[app]\nsource = \"src\"\n"),
        Expect {
            code: 2,
            says: &["`app.source` dir", "src` does not exist"],
            line: Some(4),
            hint: Some("fix `[app] source`"),
        },
    );
}

#[test]
fn source_is_a_file() {
    recipe_case(
        "source_is_a_file",
        "`[app] source` names a file.",
        &format!("{BASE}\n[app]\nsource = \"app/main.py\"\n"),
        Expect {
            code: 2,
            says: &["main.py` is not a directory"],
            line: Some(4),
            hint: Some("fix `[app] source`"),
        },
    );
}

#[test]
fn missing_requirements_file() {
    recipe_case(
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
    );
}

#[test]
fn unparsable_base_reference() {
    recipe_case(
        "unparsable_base_reference",
        "`base` is not an image reference.",
        "base = \"Python::3.13\"\n",
        Expect {
            code: 2,
            says: &["image reference `Python::3.13` is invalid", "key `base`"],
            line: Some(1),
            hint: Some("references look like"),
        },
    );
}

#[test]
fn push_reference_with_bad_port() {
    recipe_case(
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
    );
}

#[test]
fn unparsable_push_flag() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.args(["--push", "127.0.0.1:5000/Team/App:1"]);
    fails(
        "unparsable_push_flag",
        "`--push` with an upper-case repository.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["--push", "repository component `Team` must be lowercase"],
            line: None,
            hint: Some("references look like"),
        },
    );
}

#[test]
fn unknown_platform_in_recipe() {
    recipe_case(
        "unknown_platform_in_recipe",
        "`platforms` names an architecture slipway does not build for.",
        &format!("{BASE}platforms = [\"linux/amd64\", \"linux/s390x\"]\n"),
        Expect {
            code: 2,
            says: &["unknown architecture `s390x`", "key `platforms`"],
            line: Some(2),
            hint: Some("linux/arm64"),
        },
    );
}

#[test]
fn unknown_platform_flag() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    fails(
        "unknown_platform_flag",
        "`--platform windows/amd64`.",
        &work,
        work.build_to_layout(&recipe)
            .args(["--platform", "windows/amd64"]),
        Expect {
            code: 2,
            says: &["platform `windows/amd64`: only `linux` images are supported"],
            line: None,
            hint: Some("supported platforms"),
        },
    );
}

#[test]
fn platform_the_base_lacks() {
    let work = Work::new();
    let base = work.path().join("amd64-only");
    inputs::write_layout(
        &base,
        "3.13-alpine",
        &[musl_python_layer()],
        &["PYTHON_VERSION=3.13.14"],
    );
    let recipe = work.recipe(&format!("{BASE}platforms = [\"linux/arm64\"]\n"));
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout")
        .arg(&base)
        .arg("--oci-layout")
        .arg(work.out());
    fails(
        "platform_the_base_lacks",
        "`linux/arm64` wanted from a base that only has `linux/amd64`.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["has no manifest for `linux/arm64`", "linux/amd64"],
            line: None,
            hint: Some("pick platforms the base image has"),
        },
    );
}

#[test]
fn base_without_python() {
    let work = Work::new();
    let base = work.path().join("no-python");
    let alpine = inputs::tar_gz(&[
        ("etc/", b""),
        ("etc/alpine-release", b"3.22.2\n"),
        ("lib/", b""),
        ("lib/ld-musl-x86_64.so.1", b"\x7fELF stub"),
        ("bin/", b""),
        ("bin/sh", b"#!stub\n"),
    ]);
    inputs::write_layout(&base, "3.13-alpine", &[alpine], &["PATH=/usr/bin:/bin"]);
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout")
        .arg(&base)
        .arg("--oci-layout")
        .arg(work.out());
    fails(
        "base_without_python",
        "A base image (an OCI layout made by the test) with a shell and musl but no Python.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["has no Python", "PYTHON_VERSION"],
            line: None,
            hint: Some("use a Python base image"),
        },
    );
}

#[test]
fn python_version_mismatch() {
    recipe_case(
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
    );
}

#[test]
fn libc_contradiction() {
    recipe_case(
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
    );
}

#[test]
fn libc_not_a_libc() {
    recipe_case(
        "libc_not_a_libc",
        "`libc = \"uclibc\"`.",
        &format!("{BASE}\n[python]\nlibc = \"uclibc\"\n"),
        Expect {
            code: 2,
            says: &["libc `uclibc` is not `musl`, `glibc` or `glibc-2.NN`"],
            line: Some(4),
            hint: Some("libc = \"musl\""),
        },
    );
}

#[test]
fn python_version_not_a_version() {
    recipe_case(
        "python_version_not_a_version",
        "`[python] version = \"three\"`.",
        &format!("{BASE}\n[python]\nversion = \"three\"\n"),
        Expect {
            code: 2,
            says: &["`python.version` = `three` is not a Python version"],
            line: Some(4),
            hint: Some("version = \"3.13\""),
        },
    );
}

#[test]
fn two_destinations() {
    recipe_case(
        "two_destinations",
        "The recipe sets both `push` and `oci_layout` (the command line overrides neither).",
        &format!("{BASE}push = \"127.0.0.1:5000/app:1\"\noci_layout = \"out\"\n"),
        Expect {
            code: 2,
            says: &["more than one of `push`, `oci_layout`, `docker_archive` is set"],
            line: None,
            hint: Some("keep one destination"),
        },
    );
}

#[test]
fn no_destination() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    fails(
        "no_destination",
        "Neither the recipe nor the command line says where the image goes.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["says nowhere to put the image"],
            line: None,
            hint: Some("--oci-layout DIR"),
        },
    );
}

#[test]
fn two_destination_flags() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let mut cmd = work.build_to_layout(&recipe);
    cmd.arg("--docker-archive").arg(work.archive());
    fails(
        "two_destination_flags",
        "`--oci-layout` and `--docker-archive` together.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["cannot be used with"],
            line: None,
            hint: None,
        },
    );
}

#[test]
fn tag_without_a_docker_archive() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let mut cmd = work.build_to_layout(&recipe);
    cmd.args(["--tag", "localhost/app:1"]);
    fails(
        "tag_without_a_docker_archive",
        "`--tag` (names in a docker-archive) with `--oci-layout`.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &[
                "--tag localhost/app:1",
                "only a docker-archive carries names",
            ],
            line: None,
            hint: Some("--push"),
        },
    );
}

#[test]
fn bad_archive_tag() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let mut cmd = work.build(&recipe);
    cmd.arg("--docker-archive")
        .arg(work.archive())
        .args(["--tag", "Not A Reference"]);
    fails(
        "bad_archive_tag",
        "`--tag` that is not an image reference.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &["--tag", "`Not A Reference` is invalid"],
            line: None,
            hint: Some("a lowercase repository"),
        },
    );
}

#[test]
fn relative_app_destination() {
    recipe_case(
        "relative_app_destination",
        "`[app] destination = \"app\"`.",
        &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"app\"\n"),
        Expect {
            code: 2,
            says: &["`app.destination` = `app` must be an absolute path"],
            line: Some(5),
            hint: Some("destination = \"/app\""),
        },
    );
}

#[test]
fn app_destination_with_dot_dot() {
    recipe_case(
        "app_destination_with_dot_dot",
        "`[app] destination = \"/app/../etc\"`.",
        &format!("{BASE}\n[app]\nsource = \"app\"\ndestination = \"/app/../etc\"\n"),
        Expect {
            code: 2,
            says: &["`/app/../etc` must be an absolute path without `.` or `..`"],
            line: Some(5),
            hint: Some("destination = \"/app/etc\""),
        },
    );
}

#[test]
fn port_out_of_range() {
    recipe_case(
        "port_out_of_range",
        "`ports = [\"99999\"]`.",
        &format!("{BASE}\n[image]\nports = [\"8000\", \"99999\"]\n"),
        Expect {
            code: 2,
            says: &["`image.ports` entry `99999` is not a port"],
            line: Some(4),
            hint: Some("1-65535"),
        },
    );
}

#[test]
fn port_with_unknown_protocol() {
    recipe_case(
        "port_with_unknown_protocol",
        "`ports = [\"8000/http\"]`.",
        &format!("{BASE}\n[image]\nports = [\"8000/http\"]\n"),
        Expect {
            code: 2,
            says: &["`image.ports` entry `8000/http` is not a port"],
            line: Some(4),
            hint: Some("`/tcp`, `/udp` or `/sctp`"),
        },
    );
}

#[test]
fn env_name_with_equals() {
    recipe_case(
        "env_name_with_equals",
        "An `[image] env` name containing `=`.",
        &format!("{BASE}\n[image]\nenv = {{ \"A=B\" = \"x\" }}\n"),
        Expect {
            code: 2,
            says: &["`image.env` key `A=B` is not a valid variable name"],
            line: Some(4),
            hint: Some("no `=`"),
        },
    );
}

// ---------------------------------------------------------------- command line and config

#[test]
fn registry_mirror_without_equals() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    fails(
        "registry_mirror_without_equals",
        "`--registry-mirror docker.io` (no `=TO`).",
        &work,
        work.build_to_layout(&recipe)
            .args(["--registry-mirror", "docker.io"]),
        Expect {
            code: 2,
            says: &["--registry-mirror `docker.io` is not FROM=TO"],
            line: None,
            hint: Some("docker.io=registry.internal:5000"),
        },
    );
}

#[test]
fn registry_mirror_with_a_url() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    fails(
        "registry_mirror_with_a_url",
        "`--registry-mirror docker.io=http://mirror:5000/v2` (a URL, not HOST:PORT).",
        &work,
        work.build_to_layout(&recipe)
            .args(["--registry-mirror", "docker.io=http://mirror:5000/v2"]),
        Expect {
            code: 2,
            says: &["`http://mirror:5000/v2`", "HOST[:PORT]"],
            line: None,
            hint: Some("docker.io=registry.internal:5000"),
        },
    );
}

#[test]
fn bad_config_file() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let config = work.write("slipway.toml", "[mirrors]\n\"docker.io\" = 5000\n");
    fails(
        "bad_config_file",
        "`$SLIPWAY_CONFIG` with a mirror given as a number.",
        &work,
        work.build_to_layout(&recipe).env("SLIPWAY_CONFIG", &config),
        Expect {
            code: 2,
            says: &[
                "config `",
                "slipway.toml",
                "line 2",
                "invalid type: integer `5000`",
            ],
            line: None,
            hint: Some("[mirrors]"),
        },
    );
}

#[test]
fn bad_config_flag_file() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    let config = work.write("slipway.toml", "insecure_registry = [\"mirror:5000\"]\n");
    fails(
        "bad_config_flag_file",
        "`--config FILE` with an unknown key.",
        &work,
        work.build_to_layout(&recipe).arg("--config").arg(&config),
        Expect {
            code: 2,
            says: &[
                "slipway.toml",
                "line 1",
                "unknown field `insecure_registry`",
            ],
            line: None,
            hint: Some("insecure_registries"),
        },
    );
}

#[test]
fn source_date_epoch_not_a_number() {
    let work = Work::new();
    let recipe = work.recipe(BASE);
    fails(
        "source_date_epoch_not_a_number",
        "`SOURCE_DATE_EPOCH=yesterday` in the environment.",
        &work,
        work.build_to_layout(&recipe)
            .env("SOURCE_DATE_EPOCH", "yesterday"),
        Expect {
            code: 2,
            says: &["invalid value 'yesterday'", "--source-date-epoch"],
            line: None,
            hint: None,
        },
    );
}

#[test]
fn uv_missing() {
    let work = Work::new();
    work.write("requirements.txt", "idna\n");
    let recipe = work.recipe(&format!(
        "{BASE}\n[python]\nrequirements = [\"requirements.txt\"]\n"
    ));
    fails(
        "uv_missing",
        "Requirements to install, and `--uv` names no program.",
        &work,
        work.build_to_layout(&recipe)
            .args(["--uv", "/nonexistent/uv"]),
        Expect {
            code: 2,
            says: &["cannot run uv (`/nonexistent/uv`)"],
            line: None,
            hint: Some("SLIPWAY_UV"),
        },
    );
}

// ---------------------------------------------------------------- source tree

#[test]
fn symlink_pointing_outside() {
    source_case(
        "symlink_pointing_outside",
        "`app/passwd -> ../../../etc/passwd`.",
        |app| std::os::unix::fs::symlink("../../../etc/passwd", app.join("passwd")).unwrap(),
        Expect {
            code: 2,
            says: &["app/passwd` is a symlink to `../../../etc/passwd`, which points outside the source dir"],
            line: None,
            hint: Some("add `passwd` to `[app] excludes`"),
        },
    );
}

#[test]
fn symlink_escaping_through_a_subdir() {
    source_case(
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
    );
}

#[test]
fn absolute_symlink() {
    source_case(
        "absolute_symlink",
        "`app/config -> /etc/app/config`.",
        |app| std::os::unix::fs::symlink("/etc/app/config", app.join("config")).unwrap(),
        Expect {
            code: 2,
            says: &["app/config` is an absolute symlink (to `/etc/app/config`)"],
            line: None,
            hint: Some("ln -sfr"),
        },
    );
}

#[test]
fn fifo_in_source() {
    source_case(
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
    );
}

#[test]
fn socket_in_source() {
    source_case(
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
    );
}

#[test]
fn device_in_source() {
    let work = Work::new();
    let made = Command::new("mknod")
        .arg(work.app().join("null"))
        .args(["c", "1", "3"])
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: mknod is not allowed here (not root, or no CAP_MKNOD)");
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

#[test]
fn non_utf8_file_name() {
    source_case(
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
    );
}

#[test]
fn non_utf8_dir_name() {
    source_case(
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
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
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

#[test]
fn more_than_127_layers() {
    let work = Work::new();
    let base = work.path().join("many-layers");
    let mut layers = vec![musl_python_layer()];
    for i in 1..126 {
        let path = format!("opt/layer-{i}.txt");
        layers.push(inputs::tar_gz(&[
            ("opt/", b""),
            (&path, i.to_string().as_bytes()),
        ]));
    }
    inputs::write_layout(&base, "3.13-alpine", &layers, &["PYTHON_VERSION=3.13.14"]);
    let recipe = work.recipe(&format!("{BASE}\n[app]\nsource = \"app\"\n"));
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout")
        .arg(&base)
        .arg("--oci-layout")
        .arg(work.out());
    fails(
        "more_than_127_layers",
        "A base of 126 layers (made by the test) plus the app and app-bytecode layers.",
        &work,
        &mut cmd,
        Expect {
            code: 2,
            says: &[
                "the image would have 128 layers (126 from base",
                "+ 2 new)",
                "more than 127",
            ],
            line: None,
            hint: Some("fewer layers"),
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
