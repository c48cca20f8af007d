"""Turns bench/run's raw numbers into a table of medians with the targets
checked, printed, and (unless --smoke) written to bench/RESULTS.md."""
import collections
import datetime
import os
import platform
import statistics
import subprocess
import sys

raw_path, smoke, runs = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
only = sys.argv[4] if len(sys.argv) > 4 else ""
values = collections.defaultdict(list)
for line in open(raw_path):
    case, tool, value, _ = (line.rstrip("\n").split("\t") + [""])[:4]
    values[(case, tool)].append(float(value))


def median(case, tool):
    v = values.get((case, tool))
    return statistics.median(v) if v else None


def fmt(x, unit="s"):
    return "-" if x is None else (f"{x:.2f} {unit}" if unit == "s" else f"{x:.0f} {unit}")


rows = [
    ("cold (empty caches; wheels from a local wheelhouse for both)", "cold", "s"),
    ("no change: rebuild + push", "no-change", "s"),
    ("one app file changed: rebuild + push", "one-file-changed", "s"),
    ("packaged project (recipes/cli-tool), one-line edit: rebuild + push", "packaged-project-one-line-edit", "s"),
    ("alpine stand-in, one platform, cold", "one-platform-cold-alpine", "s"),
    ("alpine stand-in, two platforms (amd64 + arm64), cold", "two-platforms-cold-alpine", "s"),
    ("one more dependency, per-wheel bytecode store warm", "add-one-dependency", "s"),
    ("cold, fresh cache but per-wheel bytecode store warm", "cold-warm-wheel-bytecode", "s"),
    ("big dependency set, cold (buildah: pip install + compileall)", "big-deps", "s"),
    ("big dependency set, cold, test dirs compiled too (`tests_bytecode = true`: the .pyc set buildah writes)", "big-deps-all-bytecode", "s"),
    ("the same with `reuse_wheel_compression = true` (opt-in: the wheels' own deflate streams)", "big-deps-all-reuse", "s"),
    ("fresh runner, warm registry cache (slipway --cache-repo; buildah --layers --cache-from/--cache-to)", "fresh-runner-warm-registry", "s"),
    ("big dependency set, fresh runner, warm registry cache", "big-deps-fresh-runner-warm-registry", "s"),
]
# Rows whose buildah figure is another case's (buildah has one way to build the big set).
BUILDAH_CASE = {"big-deps-all-bytecode": "big-deps", "big-deps-all-reuse": "big-deps"}
WITHOUT_BUILDAH = ("add-one-dependency", "cold-warm-wheel-bytecode", "big-deps-fresh-runner-warm-registry")
lines = ["| case | slipway | buildah | ratio |", "| --- | --- | --- | --- |"]
for label, case, unit in rows:
    s, b = median(case, "slipway"), median(BUILDAH_CASE.get(case, case), "buildah")
    ratio = f"{b / s:.1f}x faster" if s and b else "-"
    lines.append(f"| {label} | {fmt(s)} | {fmt(b) if b else 'n/a (needs emulation)' if 'platform' in case else 'n/a' if case in WITHOUT_BUILDAH else fmt(b)} | {ratio} |")
extra = [
    ("layers built on the no-change rebuild", median("no-change-layers-built", "slipway"), ""),
    ("layers built by a fresh runner with a warm registry cache", median("fresh-runner-warm-registry-layers-built", "slipway"), ""),
    ("layers built after a one-line edit of the packaged project (project + its bytecode)", median("packaged-project-edit-layers-built", "slipway"), ""),
    ("bytes sent for base layers (destination has them)", median("base-bytes-sent", "slipway"), "B"),
    ("big dependency set (numpy, pandas, scipy, scikit-learn): build + push", median("big-deps", "slipway"), "s"),
    ("big dependency set: image size, compressed (slipway default: no .pyc for packages' test dirs)", median("big-deps-image-bytes", "slipway"), "B"),
    ("big dependency set: image size, compressed (slipway, tests_bytecode = true)", median("big-deps-all-bytecode-image-bytes", "slipway"), "B"),
    ("big dependency set: image size, compressed (slipway, tests_bytecode and reuse_wheel_compression)", median("big-deps-all-reuse-image-bytes", "slipway"), "B"),
    ("big dependency set: image size, compressed (buildah)", median("big-deps-image-bytes", "buildah"), "B"),
    ("big dependency set: peak RSS of the process tree (GNU time: slipway, uv, the bytecode compiler)", median("big-deps-peak-rss-kib", "slipway"), "KiB"),
    ("big dependency set: peak RSS of slipway itself (VmHWM)", median("big-deps-slipway-own-peak-rss-kib", "slipway"), "KiB"),
    ("big dependency set: site-packages uncompressed", median("big-deps-site-packages-bytes", "slipway"), "B"),
    ("big dependency set: slipway compression rate", median("big-deps-compress-mb-s", "slipway"), "MB/s"),
    ("reference: tar | gzip -5 | sha256sum (one core; slipway writes libdeflate level 5)", median("gzip-reference", "tar-gzip"), "MB/s"),
    ("bytecode: files compiled, cold demo build", median("cold-files-compiled", "slipway"), ""),
    ("bytecode: files compiled adding one dependency (blinker)", median("add-one-dependency-files-compiled", "slipway"), ""),
    ("bytecode: `.py` files in that wheel", median("add-one-dependency-files-in-wheel", "python"), ""),
    ("bytecode: files compiled, cold with a warm per-wheel store (the app's only)", median("cold-warm-wheel-bytecode-files-compiled", "slipway"), ""),
    ("bytecode pool on the big set's site-packages (files/s)", median("compile-files-per-s", "slipway-pool"), ""),
    ("`python -m compileall -j0` on the same tree (files/s)", median("compile-files-per-s", "compileall-j0"), ""),
    ("100,000-file app, cold: slipway", median("huge-app", "slipway"), "s"),
    ("100,000-file app: compileall -j0 + tar | gzip -5 of the same tree", median("huge-app", "compileall-tar-gzip"), "s"),
]
lines.append("")
lines.append("| measure | value |")
lines.append("| --- | --- |")
for label, v, unit in extra:
    lines.append(f"| {label} | {'-' if v is None else (f'{v:.2f} {unit}' if unit in ('s', 'MB/s') else f'{v:.0f} {unit}')} |")


def target(name, ok):
    return f"- {'MET ' if ok else ('MISSED' if ok is False else 'n/a ')} {name}"


def ratio_ok(a, b, limit):
    return None if a is None or b is None else a <= b * limit


targets = [
    target("one file changed <= 1/5 of buildah", ratio_ok(median("one-file-changed", "slipway"), median("one-file-changed", "buildah"), 0.2)),
    target("cold <= 1/4 of buildah", ratio_ok(median("cold", "slipway"), median("cold", "buildah"), 0.25)),
    target("two platforms <= 1.5x one platform (cold)", ratio_ok(median("two-platforms-cold-alpine", "slipway"), median("one-platform-cold-alpine", "slipway"), 1.5)),
    target("peak RSS <= 64 MiB on the big dependency set (slipway itself; the whole tree is shown above)", None if median("big-deps-slipway-own-peak-rss-kib", "slipway") is None else median("big-deps-slipway-own-peak-rss-kib", "slipway") <= 64 * 1024),
    target("compression >= 1.6x single-threaded gzip at the same level", None if median("big-deps-compress-mb-s", "slipway") is None or median("gzip-reference", "tar-gzip") is None else median("big-deps-compress-mb-s", "slipway") >= 1.6 * median("gzip-reference", "tar-gzip")),
    target("no-change rebuild builds no layer", None if median("no-change-layers-built", "slipway") is None else median("no-change-layers-built", "slipway") == 0),
    target("no base-layer bytes sent when the destination has them", None if median("base-bytes-sent", "slipway") is None else median("base-bytes-sent", "slipway") == 0),
]


def at_least(case, tool, other_case, other_tool, factor):
    """MET when `case` is at least `factor` times faster than `other_case`."""
    return ratio_ok(median(case, tool), median(other_case, other_tool), 1 / factor)


def compare(a, b, ok):
    return None if a is None or b is None else ok(a, b)


big = median("big-deps", "slipway")
targets += [
    target("issue 18: cold, one platform >= 8x faster than buildah", at_least("cold", "slipway", "cold", "buildah", 8)),
    target("issue 18: one app file changed >= 20x faster than buildah", at_least("one-file-changed", "slipway", "one-file-changed", "buildah", 20)),
    target("issue 18: no change >= 30x faster than buildah", at_least("no-change", "slipway", "no-change", "buildah", 30)),
    target("issue 18: big dependency set <= 12 s", None if big is None else big <= 12),
    target("issue 18: big dependency set >= 4x faster than buildah", at_least("big-deps", "slipway", "big-deps", "buildah", 4)),
    target("issue 18: big set with test dirs compiled too (as buildah) <= 12 s", None if median("big-deps-all-bytecode", "slipway") is None else median("big-deps-all-bytecode", "slipway") <= 12),
    target("issue 18: big set with test dirs compiled too (as buildah) >= 4x faster than buildah", at_least("big-deps-all-bytecode", "slipway", "big-deps", "buildah", 4)),
    target("issue 18: 100,000-file app cold no slower than compileall -j0 + tar | gzip", ratio_ok(median("huge-app", "slipway"), median("huge-app", "compileall-tar-gzip"), 1.0)),
    target("issue 18: bytecode pool >= compileall -j0 in files/s", compare(median("compile-files-per-s", "slipway-pool"), median("compile-files-per-s", "compileall-j0"), lambda a, b: a >= b)),
    target("issue 18: peak RSS of the process tree <= 64 MiB on the big set", compare(median("big-deps-peak-rss-kib", "slipway"), 64 * 1024, lambda a, b: a <= b)),
    target("issue 18: slipway's own peak RSS <= 48 MiB on the big set", compare(median("big-deps-slipway-own-peak-rss-kib", "slipway"), 48 * 1024, lambda a, b: a <= b)),
    target("issue 18: adding one dependency compiles only that wheel's files", compare(median("add-one-dependency-files-compiled", "slipway"), median("add-one-dependency-files-in-wheel", "python"), lambda a, b: a == b)),
    target("issue 18: a warm per-wheel store compiles no site-packages file", compare(median("cold-warm-wheel-bytecode-files-compiled", "slipway"), 1, lambda a, b: a == b)),
    target("issue 14: fresh runner, warm registry cache <= 1/5 of buildah's (--cache-from/--cache-to)", ratio_ok(median("fresh-runner-warm-registry", "slipway"), median("fresh-runner-warm-registry", "buildah"), 0.2)),
    target("issue 14: fresh runner, warm registry cache <= 1/4 of slipway's own cold build", ratio_ok(median("fresh-runner-warm-registry", "slipway"), median("cold", "slipway"), 0.25)),
    target("issue 14: big set, fresh runner, warm registry cache <= 1/4 of its cold build", ratio_ok(median("big-deps-fresh-runner-warm-registry", "slipway"), median("big-deps", "slipway"), 0.25)),
    target("issue 14: a fresh runner with a warm registry cache builds no layer", compare(median("fresh-runner-warm-registry-layers-built", "slipway"), 0, lambda a, b: a == b)),
]

# Container start (bench/start_time.py): one table of its own.
start = {mode: median("container-start", mode) for mode in ("off", "imported", "all")}
start_lines = [
    "| `[python] stdlib_bytecode` | start: exec → first HTTP 200 | gain over off | layer compressed | layer uncompressed |",
    "| --- | --- | --- | --- | --- |",
]
for mode, label in (("off", "off (default)"), ("imported", '"imported"'), ("all", '"all"')):
    gain = "-" if mode == "off" or not start[mode] or not start["off"] else f"{start['off'] - start[mode]:.2f} s ({start['off'] / start[mode]:.1f}x)"
    size = median("stdlib-layer-bytes", mode)
    unpacked = median("stdlib-layer-uncompressed-bytes", mode)
    mib = lambda b: "-" if b is None else f"+{b / 2**20:.1f} MiB"
    start_lines.append(f"| {label} | {fmt(start[mode])} | {gain} | {mib(size)} | {mib(unpacked)} |")
start_targets = [
    target('issue 18: container start with stdlib_bytecode = "imported" faster than without', compare(start["imported"], start["off"], lambda a, b: a < b)),
    target('issue 18: container start with stdlib_bytecode = "all" faster than without', compare(start["all"], start["off"], lambda a, b: a < b)),
    target('issue 18: "imported" adds less than "all"', compare(median("stdlib-layer-bytes", "imported"), median("stdlib-layer-bytes", "all"), lambda a, b: a < b)),
]
start_table = "\n".join(start_lines + ["", "Targets:"] + start_targets)
if only == "start":
    table = start_table
elif only == "project":
    first_table = lines[: lines.index("")]
    table = "\n".join(first_table[:2] + [l for l in first_table if "packaged project" in l])
else:
    table = "\n".join(lines + ["", "Targets:"] + targets + ["", "Container start:", "", start_table])
print(table)
if smoke:
    sys.exit(0)


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"


results = os.path.join(os.path.dirname(__file__), "RESULTS.md")
# What a focused run (`bench/run --only CASE`) measures: its section's
# heading, what it did, and the raw cases it keeps.
FOCUSED = {
    "start": ("## Container start time",
              "The demo image (recipes/fastapi-demo/slim.toml on the python:3.13-slim stand-in) built with "
              "`[python] stdlib_bytecode` off, \"imported\" and \"all\", unpacked with umoci and started with its own "
              "command (uvicorn) as the host user nobody (`setpriv`), `unshare -r -m` + chroot, read-only root, "
              "tmpfs /tmp; time from exec to the first HTTP 200 on GET /, one warm-up start per mode, then the modes "
              "interleaved. Layer sizes are the stdlib-bytecode layer's.",
              ("container-start", "stdlib-layer-bytes", "stdlib-layer-uncompressed-bytes")),
    "project": ("## Packaged project, one-line edit",
                "recipes/cli-tool on the python:3.13-slim stand-in, pushed to a loopback registry: a cold build, then "
                "one line appended to src/tally/cli.py and the rebuild + push timed. buildah runs "
                "bench/Dockerfile.project (pip builds and installs the project, then compileall; the copy's build "
                "backend is hatchling from the wheelhouse, since pip cannot use uv_build offline).",
                ("packaged-project-one-line-edit", "packaged-project-edit-layers-built")),
}


def update_section(text, heading, section):
    """`text` with the section under `heading` replaced by `section` (else
    inserted before "## Measured by hand", else appended)."""
    marker = "\n" + heading
    if marker in text:
        head, rest = text.split(marker, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        return head.rstrip("\n") + "\n" + section + tail
    if "\n## Measured by hand" in text:
        head, tail = text.split("\n## Measured by hand", 1)
        return head.rstrip("\n") + "\n" + section + "\n## Measured by hand" + tail
    return text.rstrip("\n") + "\n" + section


if only:
    # A focused run replaces its own section and keeps the rest of RESULTS.md.
    heading, note, cases = FOCUSED[only]
    text = open(results).read() if os.path.exists(results) else "# Benchmark results\n"
    raw_rows = "".join(l for l in open(raw_path) if l.split("\t")[0] in cases)
    machine = (f"Machine: {platform.node()}, {os.cpu_count()} cores shared with other engineers' builds and tests "
               f"(load average {os.getloadavg()[0]:.1f} at the end of the run); {runs} runs.")
    section = f"\n{heading} ({datetime.date.today()}, focused run)\n\n{note}\n\n{machine}\n\n{table}\n\n```\n{raw_rows}```\n"
    with open(results, "w") as out:
        out.write(update_section(text, heading, section))
    sys.exit(0)
# A "## Measured by hand" section (numbers bench/run can't take itself) is kept.
by_hand = ""
if os.path.exists(results):
    text = open(results).read()
    if "\n## Measured by hand" in text:
        by_hand = text[text.index("\n## Measured by hand"):]
with open(results, "w") as out:
    out.write(f"# Benchmark results\n\n{datetime.date.today()} on {platform.node()} "
              f"({os.cpu_count()} cores, {platform.machine()}), medians of {runs} runs.\n\n")
    out.write(f"Versions: {version(['target/release/slipway', '--version'])}; {version(['buildah', '--version'])}; "
              f"{version(['uv', '--version'])}; {version(['docker-registry', '--version'])}.\n\n")
    out.write("Both tools install the same pinned wheels from the same local wheelhouse (no package downloads), "
              "build on the same python:3.13-slim stand-in and push to the same loopback registry. "
              "buildah runs the seeds' multi-stage Dockerfile (bench/Dockerfile) with `--isolation chroot --layers`; "
              "it cannot build arm64 here without emulation.\n\n")
    out.write(table + "\n\n## Raw numbers\n\n```\n" + open(raw_path).read() + "```\n" + by_hand)
