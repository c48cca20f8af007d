//! Running built images for real: the runnable base stand-ins
//! (python:3.13-alpine with musl, python:3.13-slim with glibc, both made by
//! scripts in vendor-test-images/ and cached outside the clone), unpacking an
//! image with umoci and running its own entrypoint rootless (`unshare -r -m` +
//! chroot on a read-only root), and podman (runc) with a private store.

use super::fixtures::{in_ci, repo_root, run_ok};
use super::registry::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A runnable base stand-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Alpine,
    Slim,
}

impl Base {
    pub fn tag(self) -> &'static str {
        match self {
            Base::Alpine => "3.13-alpine",
            Base::Slim => "3.13-slim",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Base::Alpine => "alpine",
            Base::Slim => "slim",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Base::Alpine => "vendor-test-images/make-runnable-alpine",
            Base::Slim => "vendor-test-images/make-runnable-base",
        }
    }

    fn layout_dir(self) -> PathBuf {
        repo_root().join(match self {
            Base::Alpine => "target/runnable-alpine/layout",
            Base::Slim => "target/runnable-base/layout",
        })
    }

    /// The stand-in's OCI layout, made (or copied from the machine's cache)
    /// by its script, as `scripts/setup` does. None (skip) when it cannot be
    /// made outside CI.
    pub fn layout(self) -> Option<PathBuf> {
        let layout = self.layout_dir();
        let started = Instant::now();
        let out = Command::new("python3")
            .arg(repo_root().join(self.script()))
            .arg("--out")
            .arg(&layout)
            .output()
            .expect("run python3");
        if !out.status.success() {
            let msg = format!(
                "{} failed ({}):\n{}",
                self.script(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!in_ci(), "{msg}");
            eprintln!("skipping: {msg}");
            return None;
        }
        eprintln!(
            "{} stand-in ready in {:.1}s",
            self.name(),
            started.elapsed().as_secs_f64()
        );
        Some(layout)
    }

    /// Copies the stand-in into `registry` as `library/python:TAG`.
    pub fn push(self, layout: &Path, registry: &Registry) {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .args([
                    format!("oci:{}:{}", layout.display(), self.tag()),
                    format!("docker://{}/library/python:{}", registry.addr(), self.tag()),
                ]),
        );
    }
}

/// An image pulled with skopeo and unpacked with `umoci unpack --rootless`.
pub struct Unpacked {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

/// Pulls `image` (`docker://…`) and unpacks it under `dir`.
pub fn unpack(image: &str, dir: &Path) -> Unpacked {
    let oci = dir.join("oci");
    let bundle = dir.join("bundle");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .args([image.to_string(), format!("oci:{}:img", oci.display())]),
    );
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:img", oci.display()))
            .arg(&bundle),
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    Unpacked {
        rootfs,
        args: strings(&spec["process"]["args"]),
        env: strings(&spec["process"]["env"]),
        cwd: spec["process"]["cwd"].as_str().unwrap_or("/").to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Unpacked {
    /// `argv` run inside the image with its env and workdir, rootless, on a
    /// read-only root (nothing, e.g. a .pyc, can be written) with a tmpfs /tmp.
    pub fn command(&self, argv: &[String]) -> Command {
        let env: Vec<String> = self.env.iter().map(|e| quote(e)).collect();
        let argv: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        let script = format!(
            "cd {} && exec env -i {} {}",
            quote(&self.cwd),
            env.join(" "),
            argv.join(" ")
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-r", "-m", "sh", "-c"])
            .arg(
                "set -e; mount --rbind /dev \"$1/dev\"; mount --bind \"$1\" \"$1\"; \
                 mount -o remount,bind,ro \"$1\"; mount -t tmpfs tmpfs \"$1/tmp\"; \
                 exec chroot \"$1\" /bin/sh -c \"$2\"",
            )
            .arg("sh")
            .arg(&self.rootfs)
            .arg(script)
            .stdin(Stdio::null());
        cmd
    }
}

/// `cmd` started in its own process group (killed with it on drop).
pub struct Started(pub Child);

impl Started {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Started {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).unwrap();
        let child = cmd
            .process_group(0)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Started(child)
    }

    pub fn exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// GET http://127.0.0.1:PORT/PATH, retried until `limit`: the body of a 200.
pub fn http_get(
    port: u16,
    path: &str,
    limit: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut resp = String::new();
            if s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut resp).is_ok() {
                if let Some((head, body)) = resp.split_once("\r\n\r\n") {
                    if head.starts_with("HTTP/1.") && head.contains(" 200 ") {
                        return Some(body.to_string());
                    }
                }
            }
        }
        if !alive() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// podman with its own store under `dir` and Debian's runc (crun, podman's
/// default, cannot set rlimits or cgroups in sandboxes).
pub fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .stdin(Stdio::null());
    cmd
}

/// `podman run` arguments every run needs here.
pub const PODMAN_RUN: &[&str] = &[
    "run",
    "--rm",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--network",
    "host",
    "--tls-verify=false",
];
