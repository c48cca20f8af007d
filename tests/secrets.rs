//! Secrets: files that hold secrets (`.env`, `.git/`, SSH keys, `*.pem`...)
//! planted in the source tree never reach the image by default — every
//! layer (decompressed), the config, the manifest and the index are searched
//! for the planted strings — and registry credentials (basic and bearer
//! token; from `$DOCKER_CONFIG/config.json` and from
//! `SLIPWAY_REGISTRY_USERNAME`/`PASSWORD`) never appear in stdout or stderr
//! (`--verbose` included), in errors, in the pushed image, or in any file of
//! the cache.

mod common;
#[path = "support/inputs.rs"]
mod inputs;

use base64::Engine as _;
use common::registry::Registry;
use inputs::{alpine_layout, contains, gunzip_if, run, tar_paths, tools_missing, Work};
use std::path::Path;

/// (file in the source tree, its contents): every one must stay out of the
/// image, and each contents is a string that must appear in no blob.
const PLANTED: &[(&str, &str)] = &[
    (".env", "API_KEY=planted-dotenv-secret-1\n"),
    (".env.production", "DB_PASSWORD=planted-dotenv-secret-2\n"),
    (
        ".git/config",
        "[remote \"origin\"]\n\turl = https://x-access-token:ghp_plantedGitToken0123456789@github.com/o/r.git\n",
    ),
    (".git/HEAD", "ref: refs/heads/planted-git-branch-secret\n"),
    (".git/objects/ab/cdef", "planted-git-object-secret"),
    (
        "id_rsa",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted-id-rsa-secret\n-----END OPENSSH PRIVATE KEY-----\n",
    ),
    ("deploy/id_ed25519", "planted-id-ed25519-secret\n"),
    ("certs/server.pem", "-----BEGIN PRIVATE KEY-----\nplanted-pem-secret\n"),
    ("certs/tls.key", "planted-dot-key-secret\n"),
    ("certs/client.p12", "planted-p12-secret"),
    (".netrc", "machine index.internal.example login me password planted-netrc-secret\n"),
    (".pypirc", "[pypi]\npassword = planted-pypirc-secret\n"),
    ("pkg/.env", "NESTED=planted-nested-dotenv-secret\n"),
    ("pkg/vendored/.git", "gitdir: planted-submodule-gitdir-secret\n"),
];

#[test]
fn planted_secret_files_do_not_reach_the_image() {
    let work = Work::new();
    let app = work.app();
    std::fs::write(app.join("main.py"), "MARKER = 'visible-app-marker'\n").unwrap();
    std::fs::create_dir_all(app.join("pkg")).unwrap();
    std::fs::write(app.join("pkg/__init__.py"), "").unwrap();
    for (path, contents) in PLANTED {
        let file = app.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    let recipe = work.recipe("base = \"python:3.13-alpine\"\n\n[app]\nsource = \"app\"\n");
    let out = run(&mut work.build_to_layout(&recipe));
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let blobs = inputs::layout_blobs(&work.out());
    assert!(
        blobs.len() >= 6,
        "index, manifest, config and layers: {}",
        blobs.len()
    );
    // The search does look inside the (decompressed) layers: the app's own
    // marker is found, in its file.
    assert!(
        blobs.iter().any(|(_, b)| contains(b, "visible-app-marker")),
        "the app layer was not searched"
    );
    let mut paths = Vec::new();
    for (name, bytes) in &blobs {
        for (file, contents) in PLANTED {
            let secret = contents.lines().find(|l| l.contains("planted")).unwrap();
            assert!(
                !contains(bytes, secret),
                "`{file}`'s secret `{secret}` is in blob {name}"
            );
        }
        assert!(
            !contains(bytes, "planted-"),
            "a planted string is in blob {name}"
        );
        paths.extend(tar_paths(bytes));
    }
    assert!(paths.iter().any(|p| p == "app/main.py"), "{paths:?}");
    for (file, _) in PLANTED {
        assert!(
            !paths.iter().any(|p| p == &format!("app/{file}")),
            "`{file}` is in the image: {paths:?}"
        );
    }
    for banned in [
        ".git", ".env", "id_rsa", ".pem", ".key", ".netrc", ".pypirc",
    ] {
        assert!(
            !paths.iter().any(|p| p.contains(banned)),
            "`{banned}` in the image: {paths:?}"
        );
    }
    assert_no_planted_in_dir(&work.cache(), &["planted-"]);
}

/// The app dir is a real git work tree whose `origin` URL carries a token:
/// the image records where it came from (`org.opencontainers.image.source`)
/// without the token, and nothing of `.git` reaches a layer.
#[test]
fn git_remote_token_stays_out_of_the_image() {
    if tools_missing(&["git"]) {
        return;
    }
    let work = Work::new();
    let app = work.app();
    let token = "ghp_plantedRemoteToken0123456789";
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&app)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "main.py"]);
    git(&["commit", "-q", "-m", "planted-commit-message"]);
    let url = format!("https://x-access-token:{token}@github.com/example/app.git");
    git(&["remote", "add", "origin", &url]);
    let recipe = work.recipe("base = \"python:3.13-alpine\"\n\n[app]\nsource = \"app\"\n");
    let out = run(&mut work.build_to_layout(&recipe));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains(token) && !out.stdout.contains(token));
    let blobs = inputs::layout_blobs(&work.out());
    for (name, bytes) in &blobs {
        assert!(
            !contains(bytes, token),
            "the remote's token is in blob {name}"
        );
        assert!(
            !contains(bytes, "planted-commit-message"),
            ".git content in blob {name}"
        );
        assert!(
            !contains(bytes, "x-access-token"),
            "the remote's user is in blob {name}"
        );
    }
    assert_no_planted_in_dir(&work.cache(), &[token]);
}

const USER: &str = "ci-bot";
const PASSWORD: &str = "Sup3r-planted-registry-Password";

/// Every form that would reveal the credentials: the password raw, the
/// base64 `user:password` of basic auth and of config.json's `auth` (with
/// and without padding, URL-safe too), the base64 password alone, the
/// bearer tokens the token server issued (in full, and their signature
/// part: a token cut short still leaks), and a JWT's start (`eyJ`, the
/// base64 of `{"`) and auth schemes where output is text.
fn credential_forms(issued_tokens: &[String]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let pair = format!("{USER}:{PASSWORD}");
    let mut forms = vec![PASSWORD.to_string()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(&pair));
        forms.push(engine.encode(PASSWORD));
    }
    for token in issued_tokens {
        forms.push(token.clone());
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
            forms.push(signature.to_string());
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// What must not appear in text output (stdout, stderr): every credential
/// form, and any auth header or JWT at all.
fn credential_strings(issued_tokens: &[String]) -> Vec<String> {
    let mut strings = credential_forms(issued_tokens);
    strings.extend(["eyJ", "Basic ", "Bearer "].map(String::from));
    strings
}

#[derive(Clone, Copy, Debug)]
enum Source {
    DockerConfig,
    Environment,
}

/// Pushes an app to `registry` with `--verbose` using credentials from
/// `source`, then checks every output, the pushed image and the cache.
fn push_without_leaks(registry: &Registry, source: Source, tag: &str) {
    let work = Work::new();
    let recipe = work.recipe("base = \"python:3.13-alpine\"\n\n[app]\nsource = \"app\"\n");
    let mut cmd = work.build(&recipe);
    cmd.arg("--base-layout").arg(alpine_layout());
    cmd.args(["--verbose", "--push"])
        .arg(format!("{}/team/app:{tag}", registry.addr()));
    match source {
        Source::DockerConfig => {
            let dir =
                inputs::docker_config(&work.path().join("docker"), registry.addr(), USER, PASSWORD);
            cmd.env("DOCKER_CONFIG", dir);
        }
        Source::Environment => {
            cmd.env("SLIPWAY_REGISTRY_USERNAME", USER)
                .env("SLIPWAY_REGISTRY_PASSWORD", PASSWORD);
        }
    }
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(0), "{source:?}: {}", out.stderr);
    assert!(
        out.stderr.contains("registry: "),
        "--verbose logs requests: {}",
        out.stderr
    );
    let issued = registry
        .token_server()
        .map(|t| t.issued_tokens())
        .unwrap_or_default();
    for secret in credential_strings(&issued) {
        assert!(
            !out.stdout.contains(&secret),
            "{source:?}: `{secret}` in stdout:\n{}",
            out.stdout
        );
        assert!(
            !out.stderr.contains(&secret),
            "{source:?}: `{secret}` in stderr:\n{}",
            out.stderr
        );
    }
    // Every blob of the pushed image, as the registry serves it: the
    // manifest, the config, and each layer both as stored (gzip) and
    // decompressed.
    let client = registry.authenticated_client();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manifest = runtime
        .block_on(client.get_manifest(registry.addr(), "team/app", tag))
        .expect("the pushed manifest");
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let mut documents = vec![("manifest".to_string(), manifest.bytes.clone())];
    let mut digests = vec![parsed["config"]["digest"].as_str().unwrap().to_string()];
    for layer in parsed["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    for digest in digests {
        let parsed = slipway::digest::Digest::parse(&digest).unwrap();
        let bytes = runtime
            .block_on(client.get_blob_bytes(registry.addr(), "team/app", &parsed))
            .expect("a pushed blob");
        documents.push((format!("{digest} (decompressed)"), gunzip_if(bytes.clone())));
        documents.push((digest, bytes));
    }
    // The search reaches into the layers: the app's own code is found.
    assert!(
        documents.iter().any(|(_, b)| contains(b, "print('hello')")),
        "the app layer was not searched"
    );
    // The tokens this push was given, and those the check above fetched
    // with: none is in the image.
    let issued = registry
        .token_server()
        .map(|t| t.issued_tokens())
        .unwrap_or_default();
    let mut forms = credential_forms(&issued);
    forms.push(USER.to_string());
    for (name, bytes) in &documents {
        for secret in &forms {
            assert!(
                !contains(bytes, secret),
                "{source:?}: `{secret}` in the image's {name}"
            );
        }
    }
    let strings = credential_strings(&issued);
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    assert_no_planted_in_dir(&work.cache(), &refs);
}

/// Panics if any file under `dir` (gzip files decompressed) holds one of `needles`.
fn assert_no_planted_in_dir(dir: &Path, needles: &[&str]) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = gunzip_if(std::fs::read(entry.path()).unwrap());
        for needle in needles {
            assert!(
                !contains(&bytes, needle),
                "`{needle}` in {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn basic_auth_credentials_never_leak() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    push_without_leaks(&registry, Source::DockerConfig, "config-json");
    push_without_leaks(&registry, Source::Environment, "env");
}

#[test]
fn token_auth_credentials_never_leak() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start_token_auth_with_credentials(USER, PASSWORD);
    push_without_leaks(&registry, Source::DockerConfig, "config-json");
    push_without_leaks(&registry, Source::Environment, "env");
    let requests = registry.token_server().unwrap().requests();
    assert!(
        requests.iter().any(|r| r.authenticated && r.granted),
        "slipway got its tokens with the credentials: {requests:?}"
    );
    assert!(
        !registry.token_server().unwrap().issued_tokens().is_empty(),
        "bearer tokens were issued, and searched for"
    );
}

/// A refused password, with `--verbose`: the error names the registry and
/// the status, never the password (basic and token registries, both sources).
#[test]
fn refused_credentials_never_leak_in_errors() {
    if tools_missing(&["docker-registry"]) {
        return;
    }
    let wrong = "Wr0ng-planted-Password";
    for registry in [
        Registry::start_htpasswd(USER, PASSWORD),
        Registry::start_token_auth_with_credentials(USER, PASSWORD),
    ] {
        for source in [Source::DockerConfig, Source::Environment] {
            let work = Work::new();
            let recipe = work.recipe("base = \"python:3.13-alpine\"\n\n[app]\nsource = \"app\"\n");
            let mut cmd = work.build(&recipe);
            cmd.arg("--base-layout").arg(alpine_layout());
            cmd.args(["--verbose", "--retries", "1", "--push"])
                .arg(format!("{}/team/app:1", registry.addr()));
            match source {
                Source::DockerConfig => {
                    let dir = inputs::docker_config(
                        &work.path().join("docker"),
                        registry.addr(),
                        USER,
                        wrong,
                    );
                    cmd.env("DOCKER_CONFIG", dir);
                }
                Source::Environment => {
                    cmd.env("SLIPWAY_REGISTRY_USERNAME", USER)
                        .env("SLIPWAY_REGISTRY_PASSWORD", wrong);
                }
            }
            let out = run(&mut cmd);
            assert_eq!(out.code, Some(3), "{source:?}: {}", out.stderr);
            assert!(out.stderr.contains("401"), "{}", out.stderr);
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong}"));
            for secret in [wrong, PASSWORD, &encoded, "eyJ", "Basic ", "Bearer "] {
                assert!(
                    !out.stderr.contains(secret),
                    "{source:?}: `{secret}` in:\n{}",
                    out.stderr
                );
                assert!(
                    !out.stdout.contains(secret),
                    "{source:?}: `{secret}` in stdout"
                );
            }
            assert_no_planted_in_dir(&work.cache(), &[wrong, &encoded]);
            inputs::assert_no_tag(&registry, "team/app", "1");
        }
    }
}
