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
]
lines = ["| case | slipway | buildah | ratio |", "| --- | --- | --- | --- |"]
for label, case, unit in rows:
    s, b = median(case, "slipway"), median(case, "buildah")
    ratio = f"{b / s:.1f}x faster" if s and b else "-"
    lines.append(f"| {label} | {fmt(s)} | {fmt(b) if b else 'n/a (needs emulation)' if 'platform' in case else fmt(b)} | {ratio} |")
extra = [
    ("layers built on the no-change rebuild", median("no-change-layers-built", "slipway"), ""),
    ("layers built after a one-line edit of the packaged project (project + its bytecode)", median("packaged-project-edit-layers-built", "slipway"), ""),
    ("bytes sent for base layers (destination has them)", median("base-bytes-sent", "slipway"), "B"),
    ("big dependency set (numpy, pandas, scipy, scikit-learn): build + push", median("big-deps", "slipway"), "s"),
    ("big dependency set: peak RSS of the process tree (GNU time: slipway, uv, the bytecode compiler)", median("big-deps-peak-rss-kib", "slipway"), "KiB"),
    ("big dependency set: peak RSS of slipway itself (VmHWM)", median("big-deps-slipway-own-peak-rss-kib", "slipway"), "KiB"),
    ("big dependency set: site-packages uncompressed", median("big-deps-site-packages-bytes", "slipway"), "B"),
    ("big dependency set: slipway compression rate", median("big-deps-compress-mb-s", "slipway"), "MB/s"),
    ("reference: tar | gzip -6 | sha256sum (one core)", median("gzip6-reference", "tar-gzip"), "MB/s"),
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
    target("compression >= 1.6x single-threaded gzip -6", None if median("big-deps-compress-mb-s", "slipway") is None or median("gzip6-reference", "tar-gzip") is None else median("big-deps-compress-mb-s", "slipway") >= 1.6 * median("gzip6-reference", "tar-gzip")),
    target("no-change rebuild builds no layer", None if median("no-change-layers-built", "slipway") is None else median("no-change-layers-built", "slipway") == 0),
    target("no base-layer bytes sent when the destination has them", None if median("base-bytes-sent", "slipway") is None else median("base-bytes-sent", "slipway") == 0),
]
table = "\n".join(lines + ["", "Targets:"] + targets)
print(table)
if smoke:
    sys.exit(0)


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"


with open(os.path.join(os.path.dirname(__file__), "RESULTS.md"), "w") as out:
    out.write(f"# Benchmark results\n\n{datetime.date.today()} on {platform.node()} "
              f"({os.cpu_count()} cores, {platform.machine()}), medians of {runs} runs.\n\n")
    out.write(f"Versions: {version(['target/release/slipway', '--version'])}; {version(['buildah', '--version'])}; "
              f"{version(['uv', '--version'])}; {version(['docker-registry', '--version'])}.\n\n")
    out.write("Both tools install the same pinned wheels from the same local wheelhouse (no package downloads), "
              "build on the same python:3.13-slim stand-in and push to the same loopback registry. "
              "buildah runs the seeds' multi-stage Dockerfile (bench/Dockerfile) with `--isolation chroot --layers`; "
              "it cannot build arm64 here without emulation.\n\n")
    out.write(table + "\n\n## Raw numbers\n\n```\n" + open(raw_path).read() + "```\n")
