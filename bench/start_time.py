"""Container start time of the demo image (recipes/fastapi-demo on the slim
stand-in) with `[python] stdlib_bytecode` off, "imported" and "all": exec →
first HTTP 200, run rootless (the host user nobody, `unshare -r -m` + chroot),
on a read-only root so no `.pyc` can be written; plus the size each mode adds.
Appends raw rows (CASE TOOL VALUE) to bench/run's raw file.

  start_time.py SLIPWAY UV BASE_LAYOUT WHEELS WORK RAW RUNS
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

slipway, uv, base, wheels, work, raw, runs = sys.argv[1:8]
runs = int(runs)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
demo = os.path.join(root, "recipes", "fastapi-demo")
MODES = ["off", "imported", "all"]
NOBODY = "65534"
# Mounts the rootfs read-only (with /dev and a tmpfs /tmp), then chroots.
RUN = ('set -e; mount --rbind /dev "$1/dev"; mount --bind "$1" "$1"; '
       'mount -o remount,bind,ro "$1"; mount -t tmpfs tmpfs "$1/tmp"; exec chroot "$1" /bin/sh -c "$2"')


def record(case, tool, value):
    with open(raw, "a") as out:
        out.write(f"{case}\t{tool}\t{value}\t\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def build(mode):
    """Builds the demo with `mode` into an OCI layout, unpacks it; returns
    (rootfs, args, env, cwd)."""
    here = os.path.join(work, f"start-{mode}")
    shutil.rmtree(here, ignore_errors=True)
    os.makedirs(here)
    app = os.path.join(work, "start-app")
    if not os.path.isdir(app):
        os.makedirs(app)
        shutil.copy(os.path.join(demo, "app.py"), app)
    option = "" if mode == "off" else f'stdlib_bytecode = "{mode}"\n'
    recipe = os.path.join(here, "recipe.toml")
    with open(os.path.join(demo, "slim.toml")) as f:
        text = f.read()
    text = text.replace('"requirements.txt"', json.dumps(os.path.join(demo, "requirements.txt")))
    text = text.replace('source = "."', f"source = {json.dumps(app)}")
    text = text.replace("[python]\n", "[python]\n" + option)
    with open(recipe, "w") as f:
        f.write(text)
    layout = os.path.join(here, "oci")
    report = subprocess.run(
        [slipway, "build", recipe, "--quiet", "--json", "--cache-dir", os.path.join(work, "start-cache"),
         "--base-layout", base, "--offline", "--find-links", wheels, "--uv", uv, "--oci-layout", layout],
        check=True, capture_output=True, text=True).stdout
    layers = json.loads(report)["platforms"][0]["layers"]
    stdlib = [l for l in layers if l["kind"] == "stdlib-bytecode"]
    record("stdlib-layer-bytes", mode, stdlib[0]["size"] if stdlib else 0)
    record("stdlib-layer-uncompressed-bytes", mode, stdlib[0]["uncompressed_size"] if stdlib else 0)
    bundle = os.path.join(here, "bundle")
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", bundle],
                   check=True, capture_output=True)
    os.makedirs(os.path.join(bundle, "rootfs", "dev"), exist_ok=True)
    # The host user nobody must reach the rootfs.
    for d in (work, here, bundle):
        os.chmod(d, 0o755)
    process = json.load(open(os.path.join(bundle, "config.json")))["process"]
    return os.path.join(bundle, "rootfs"), process["args"], process["env"], process.get("cwd", "/")


def start_seconds(rootfs, args, env, cwd):
    """Seconds from exec to the first 200 on GET /."""
    port = free_port()
    args = list(args)
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    script = f"cd {quote(cwd)} && exec env -i {' '.join(map(quote, env))} {' '.join(map(quote, args))}"
    started = time.monotonic()
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "unshare", "-r", "-m", "sh", "-c", RUN, "sh", rootfs, script],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < 60:
            if proc.poll() is not None:
                raise SystemExit(f"the app exited ({proc.returncode}) before answering")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.005)
        raise SystemExit("no answer within 60 s")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


images = {mode: build(mode) for mode in MODES}
for mode in MODES:  # warm the page cache: every measured start reads the same files
    start_seconds(*images[mode])
# Interleaved, so a busy spell on the shared machine hits every mode alike.
for run in range(runs):
    for mode in MODES:
        record("container-start", mode, f"{start_seconds(*images[mode]):.3f}")
