//! Structure-aware inputs for the fuzz smoke test: whole recipes, manifests,
//! indexes, configs and references assembled from random but typed parts
//! (mostly valid values, some wrong types, unknown keys and edge values), so
//! most inputs get past the syntax and into the code behind it; and, per
//! target, whether an input got through the parser.
//!
//! Included with `#[path = "support/fuzz_gen.rs"] mod fuzz_gen;`.

use fastrand::Rng;
use serde_json::{json, Map, Value};
use std::path::Path;

thread_local! {
    /// Whether the input being generated gets odd parts (one in three does):
    /// the rest are well-formed all through, so they reach past the parser.
    static ODD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts a new input: decides whether it may hold odd parts.
fn begin(rng: &mut Rng) {
    ODD.with(|odd| odd.set(rng.u8(..3) == 0));
}

/// True, now and then (one in `n`), in an input that may hold odd parts.
fn odd(rng: &mut Rng, n: u8) -> bool {
    ODD.with(|odd| odd.get()) && rng.u8(..n) == 0
}

fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())].clone()
}

/// A string: usually one of `usual`, sometimes something odd.
fn text(rng: &mut Rng, usual: &[&str]) -> String {
    if !odd(rng, 3) {
        return pick(rng, usual).to_string();
    }
    match rng.u8(..4) {
        0 => String::new(),
        1 => pick(
            rng,
            &[
                "é",
                "🐍",
                "a\nb",
                "..",
                "/",
                " ",
                "\u{0}",
                "x".repeat(300).as_str(),
            ],
        )
        .to_string(),
        2 => (0..rng.usize(1..12)).map(|_| rng.alphanumeric()).collect(),
        _ => pick(rng, usual).to_string(),
    }
}

fn hex64(rng: &mut Rng) -> String {
    (0..64)
        .map(|_| pick(rng, &b"0123456789abcdef"[..]) as char)
        .collect()
}

fn digest(rng: &mut Rng) -> String {
    if !odd(rng, 2) {
        return format!("sha256:{}", hex64(rng));
    }
    match rng.u8(..4) {
        0 => format!("sha256:{}", &hex64(rng)[..rng.usize(..64)]),
        1 => format!("sha512:{}", hex64(rng)),
        2 => hex64(rng),
        _ => format!("sha256:{}", hex64(rng)),
    }
}

// ---- recipes ----

const REFS: &[&str] = &[
    "python:3.13-alpine",
    "python:3.13-slim",
    "docker.io/library/python:3.12",
    "127.0.0.1:5000/team/base:1",
    "localhost/x@sha256:abababababababababababababababababababababababababababababababab",
    "Python:UPPER",
    "a//b",
];
const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64", "linux/arm64/v8"];

/// A TOML value of roughly the right type for `key` (now and then the wrong one).
fn toml_value(rng: &mut Rng, key: &str) -> toml::Value {
    use toml::Value as T;
    let strings = |rng: &mut Rng, usual: &[&str]| {
        // (odd entries come from `text`, e.g. `windows/amd64` never: kept to
        // what slipway could accept, so the parse gets to the end)
        T::Array(
            (0..rng.usize(..4))
                .map(|_| T::String(text(rng, usual)))
                .collect(),
        )
    };
    if odd(rng, 6) {
        // The wrong type.
        return pick(
            rng,
            &[
                T::Integer(-1),
                T::Boolean(true),
                T::String("x".into()),
                T::Array(vec![]),
            ],
        );
    }
    match key {
        "platforms" => strings(rng, PLATFORMS),
        "source_date_epoch" if odd(rng, 2) => T::Integer(pick(rng, &[-5, i64::MAX])),
        "source_date_epoch" => T::Integer(pick(rng, &[0, 1_700_000_000])),
        "requirements" | "find_links" | "extra_index_urls" | "excludes" => strings(
            rng,
            &["requirements.txt", "*.md", "!keep.md", "**/tests", "../up"],
        ),
        "offline" | "allow_sdist" | "bytecode" => T::Boolean(rng.bool()),
        "version" => T::String(text(rng, &["3.13", "3.12"])),
        "libc" => T::String(text(rng, &["musl", "glibc", "glibc-2.36"])),
        "entrypoint" | "cmd" => strings(rng, &["python", "-m", "app", "uvicorn"]),
        "ports" => strings(rng, &["8000", "8000/tcp", "53/udp"]),
        "destination" | "workdir" => T::String(text(rng, &["/app", "/srv/app"])),
        "user" => T::String(text(rng, &["1000", "1000:1000", "app", "0:0"])),
        "env" | "labels" | "annotations" => {
            let mut table = toml::map::Map::new();
            for _ in 0..rng.usize(..3) {
                table.insert(
                    text(rng, &["A", "PATH", "org.x"]),
                    T::String(text(rng, &["1", ""])),
                );
            }
            T::Table(table)
        }
        _ => T::String(text(
            rng,
            &[".", "app", "/app", "/usr/local/bin/python3.13"],
        )),
    }
}

/// A recipe: `base` and top-level keys, then `[python]`, `[app]` and
/// `[image]` tables with some of their keys (and now and then a misspelt one).
pub fn recipe(rng: &mut Rng) -> Vec<u8> {
    begin(rng);
    let sections: &[(&str, &[&str])] = &[
        ("", &["platforms", "source_date_epoch"]),
        (
            "python",
            &[
                "requirements",
                "project",
                "index_url",
                "extra_index_urls",
                "find_links",
                "offline",
                "allow_sdist",
                "bytecode",
                "version",
                "libc",
                "interpreter",
                "site_packages",
            ],
        ),
        ("app", &["source", "destination", "excludes", "bytecode"]),
        (
            "image",
            &[
                "entrypoint",
                "cmd",
                "workdir",
                "env",
                "ports",
                "user",
                "labels",
                "annotations",
            ],
        ),
    ];
    let mut out = String::new();
    if !odd(rng, 5) {
        out += &format!("base = {}\n", toml::Value::String(text(rng, &REFS[..5])));
    }
    // At most one destination (more is an error slipway reports).
    let destinations = [
        ("push", "127.0.0.1:5000/team/app:1"),
        ("oci_layout", "out/layout"),
        ("docker_archive", "out/image.tar"),
    ];
    for _ in 0..if odd(rng, 3) { 2 } else { rng.usize(..2) } {
        let (key, value) = pick(rng, &destinations);
        out += &format!("{key} = {}\n", toml::Value::String(text(rng, &[value])));
    }
    for (name, keys) in sections {
        if !name.is_empty() {
            if rng.u8(..4) == 0 {
                continue;
            }
            out += &format!("\n[{name}]\n");
        }
        for key in keys.iter() {
            if rng.u8(..3) != 0 {
                continue;
            }
            let key = if rng.u8(..20) == 0 {
                format!("{key}x")
            } else {
                key.to_string()
            };
            out += &format!("{key} = {}\n", toml_value(rng, &key));
        }
    }
    out.into_bytes()
}

pub fn recipe_parses(data: &[u8]) -> bool {
    std::str::from_utf8(data)
        .is_ok_and(|t| slipway::recipe::parse(t, Path::new("fuzz/recipe.toml")).is_ok())
}

// ---- references ----

pub fn reference(rng: &mut Rng) -> Vec<u8> {
    let registry = pick(
        rng,
        &[
            "",
            "",
            "docker.io/",
            "localhost:5000/",
            "127.0.0.1:5000/",
            "[::1]:5000/",
            "Reg.X/",
            "a:b:c/",
        ],
    );
    let components: Vec<String> = (0..rng.usize(1..4))
        .map(|_| {
            text(
                rng,
                &["library", "python", "team", "a.b", "a__b", "a-b", "A"],
            )
        })
        .collect();
    let mut out = format!("{registry}{}", components.join("/"));
    if rng.bool() {
        out += &format!(
            ":{}",
            text(rng, &["3.13-alpine", "latest", "v1.0", ".bad", "-x"])
        );
    }
    if rng.u8(..3) == 0 {
        out += &format!("@{}", digest(rng));
    }
    out.into_bytes()
}

pub fn reference_parses(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|t| slipway::reference::Reference::parse(t).is_ok())
}

// ---- manifests and indexes ----

const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.in-toto+json",
    "text/plain",
];

fn size(rng: &mut Rng) -> Value {
    if !odd(rng, 3) {
        return json!(rng.u32(..1 << 24));
    }
    match rng.u8(..5) {
        0 => json!(-1),
        1 => json!(u64::MAX),
        2 => json!("12"),
        3 => json!(1.5),
        _ => json!(rng.u32(..1 << 24)),
    }
}

fn descriptor(rng: &mut Rng, with_platform: bool) -> Value {
    let mut d = Map::new();
    d.insert("mediaType".into(), json!(text(rng, &MEDIA_TYPES[..6])));
    d.insert("digest".into(), json!(digest(rng)));
    d.insert("size".into(), size(rng));
    if with_platform && rng.u8(..4) != 0 {
        let (os, arch) = pick(
            rng,
            &[
                ("linux", "amd64"),
                ("linux", "arm64"),
                ("unknown", "unknown"),
                ("", "x"),
            ],
        );
        let mut p = json!({"os": os, "architecture": arch});
        if rng.u8(..4) == 0 {
            p["variant"] = json!(text(rng, &["v8", "v7"]));
        }
        d.insert("platform".into(), p);
    }
    if rng.u8(..4) == 0 {
        d.insert(
            "annotations".into(),
            json!({ text(rng, &["org.x", "a"]): text(rng, &["1"]) }),
        );
    }
    if odd(rng, 6) {
        d.remove(pick(rng, &["mediaType", "digest", "size"]));
    }
    Value::Object(d)
}

pub fn manifest(rng: &mut Rng) -> Vec<u8> {
    begin(rng);
    let mut doc = Map::new();
    let version = if odd(rng, 4) { pick(rng, &[1, 3]) } else { 2 };
    doc.insert("schemaVersion".into(), json!(version));
    if rng.bool() {
        let n = rng.usize(..4);
        let manifests: Vec<Value> = (0..n).map(|_| descriptor(rng, true)).collect();
        doc.insert("mediaType".into(), json!(pick(rng, &MEDIA_TYPES[..4])));
        doc.insert("manifests".into(), Value::Array(manifests));
    } else {
        doc.insert("mediaType".into(), json!(pick(rng, &MEDIA_TYPES[..4])));
        doc.insert("config".into(), descriptor(rng, false));
        let n = rng.usize(..5);
        let layers: Vec<Value> = (0..n).map(|_| descriptor(rng, false)).collect();
        doc.insert("layers".into(), Value::Array(layers));
    }
    if rng.u8(..3) == 0 {
        doc.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.created": "1970"}),
        );
    }
    if rng.u8(..20) == 0 {
        doc.remove(pick(
            rng,
            &["schemaVersion", "mediaType", "config", "manifests"],
        ));
    }
    serde_json::to_vec(&Value::Object(doc)).unwrap()
}

pub fn manifest_parses(data: &[u8]) -> bool {
    serde_json::from_slice::<slipway::oci::Manifest>(data).is_ok()
        || serde_json::from_slice::<slipway::oci::Index>(data).is_ok()
}

// ---- image configs (for facts detection) ----

pub fn config(rng: &mut Rng) -> Vec<u8> {
    begin(rng);
    let mut env = Vec::new();
    for _ in 0..rng.usize(..4) {
        env.push(json!(match rng.u8(..4) {
            0 => format!(
                "PYTHON_VERSION={}",
                text(rng, &["3.13.14", "3.12.1", "3.13", "3", "x"])
            ),
            1 => format!("PATH={}", text(rng, &["/usr/local/bin:/usr/bin", ""])),
            2 => text(rng, &["LANG=C.UTF-8", "NOEQUALS", "=x"]),
            _ => format!("GPG_KEY={}", text(rng, &["ABC"])),
        }));
    }
    let mut config = json!({
        "architecture": text(rng, &["amd64", "arm64"]),
        "os": text(rng, &["linux"]),
        "config": {"Env": env, "Cmd": [text(rng, &["python3"])]},
        "rootfs": {"type": "layers", "diff_ids": (0..rng.usize(..3)).map(|_| digest(rng)).collect::<Vec<_>>()},
    });
    if rng.bool() {
        let history: Vec<Value> = (0..rng.usize(..4))
            .map(|_| {
                json!({"created_by": text(rng, &[
                    "/bin/sh -c #(nop) ADD file:abc in / ",
                    "RUN apk add --no-cache ca-certificates",
                    "RUN apt-get install -y libc6",
                    "FROM alpine:3.22",
                ])})
            })
            .collect();
        config["history"] = Value::Array(history);
    }
    if odd(rng, 4) {
        config["config"]["Env"] = json!(text(rng, &["PYTHON_VERSION=3.13"]));
    }
    // The target's first byte selects stated facts and a layer scan.
    let mut out = vec![rng.u8(..)];
    out.extend(serde_json::to_vec(&config).unwrap());
    out
}

pub fn config_parses(data: &[u8]) -> bool {
    data.split_first()
        .is_some_and(|(_, json)| serde_json::from_slice::<Value>(json).is_ok())
}

/// A `.dockerignore` file (pattern lines made of globs, classes, `!`, `/`
/// and `**` pieces), a NUL, then paths to match against it.
pub fn dockerignore(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "*",
        "**",
        "**/",
        "?",
        "a",
        "b",
        ".git",
        "src",
        "[a-z]",
        "[^/]",
        "[!x]",
        "\\*",
        "/",
        ".",
        "..",
        "*.py",
        "node_modules",
        "__pycache__",
    ];
    const NAMES: &[&str] = &[
        "a",
        "b",
        "src",
        ".git",
        "x.py",
        "__pycache__",
        "node_modules",
        "aaaa",
    ];
    let mut out = String::new();
    for _ in 0..rng.usize(1..6) {
        if rng.u8(..4) == 0 {
            out.push('!');
        }
        for _ in 0..rng.usize(1..5) {
            out.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        out.push('\n');
    }
    out.push('\0');
    for _ in 0..rng.usize(1..6) {
        let depth = rng.usize(1..6);
        let parts: Vec<&str> = (0..depth)
            .map(|_| NAMES[rng.usize(..NAMES.len())])
            .collect();
        out.push_str(&parts.join("/"));
        out.push('\n');
    }
    out.into_bytes()
}

pub fn dockerignore_parses(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let patterns = text.split_once('\0').map_or(&*text, |(p, _)| p);
    slipway::layers::dockerignore::Matcher::default()
        .add_file_text(patterns)
        .is_ok()
}
