"""Shared by the make-runnable-* scripts: deterministic OCI image layout writing
and this machine's Debian apt entries.

Sorted tar entries, one fixed mtime, numeric ids, GNU format; gzip level 6
without name or time; canonical JSON. The same inputs give the same digests.
"""
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class LayoutError(Exception):
    pass


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layer:
    """Deterministic tar: sorted entries, fixed mtime, numeric ids, GNU format."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.entries = {}  # name -> (TarInfo, source-callable or None)

    def add(self, ti, data=None):
        self.entries[ti.name] = (ti, data)

    def write(self, path):
        names = sorted(self.entries)
        # A hardlink must come after the file holding the data; after sorting, the
        # first name of each group (target + links) becomes the holder.
        holder, source = {}, {}
        groups = {}
        for n in names:
            ti, _ = self.entries[n]
            if ti.type == tarfile.LNKTYPE and ti.linkname in self.entries:
                groups.setdefault(ti.linkname, [ti.linkname]).append(n)
        for target, members in groups.items():
            first = min(members)
            for m in members:
                holder[m], source[m] = first, target
        with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for n in names:
                ti, data = self.entries[n]
                if ti.type == tarfile.LNKTYPE and n not in holder:
                    raise LayoutError("hardlink %s to a missing %s" % (n, ti.linkname))
                out = tarfile.TarInfo(n)
                out.mtime, out.uname, out.gname = self.epoch, "", ""
                if n in holder:
                    src_ti, data = self.entries[source[n]]
                    out.uid, out.gid, out.mode = src_ti.uid, src_ti.gid, src_ti.mode & 0o7777
                    if holder[n] == n:
                        out.size = src_ti.size
                        add_data(tar, out, data)
                    else:
                        out.type, out.linkname = tarfile.LNKTYPE, holder[n]
                        tar.addfile(out)
                    continue
                out.uid, out.gid, out.mode = ti.uid, ti.gid, ti.mode & 0o7777
                if ti.type == tarfile.REGTYPE:
                    out.size = ti.size
                    add_data(tar, out, data)
                elif ti.type in (tarfile.DIRTYPE, tarfile.SYMTYPE):
                    out.type, out.linkname = ti.type, ti.linkname
                    tar.addfile(out)
                else:
                    raise LayoutError("unexpected tar entry type for " + n)


def add_data(tar, ti, opener):
    f = opener()
    try:
        tar.addfile(ti, f)
    finally:
        f.close()


def dir_entries(root, prefix=""):
    """(TarInfo, opener) for everything under ROOT, named PREFIX + relative path;
    owner 0/0, modes normalised (0755 dirs and executables, 0644 files, 1777 tmp)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            ti = tarfile.TarInfo(prefix + rel)
            ti.uid = ti.gid = 0
            st = os.lstat(p)
            data = None
            if os.path.islink(p):
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, os.readlink(p), 0o777
            elif os.path.isdir(p):
                ti.type, ti.mode = tarfile.DIRTYPE, (0o1777 if st.st_mode & 0o1000 else 0o755)
            else:
                ti.size = st.st_size
                ti.mode = 0o755 if st.st_mode & 0o111 else 0o644
                data = (lambda p=p: open(p, "rb"))
            out.append((ti, data))
    return out


def finish_blob(tar_path, blobs):
    """gzip (level 6, no name, mtime 0) into the blob store; return (diff_id, descriptor)."""
    h_tar = hashlib.sha256()
    tmp = tar_path + ".gz"
    with open(tar_path, "rb") as src, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as gz:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                h_tar.update(chunk)
                gz.write(chunk)
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    os.replace(tmp, os.path.join(blobs, digest))
    return "sha256:" + h_tar.hexdigest(), {"mediaType": MT_LAYER, "digest": "sha256:" + digest,
                                           "size": os.path.getsize(os.path.join(blobs, digest))}


def put_json(obj, media_type, blobs):
    data = canon(obj)
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def write_layers(layers, out_dir, work):
    """Write each Layer as a gzip blob under OUT_DIR; return (diff_ids, descriptors)."""
    blob_dir = os.path.join(out_dir, "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    diff_ids, descs = [], []
    for i, layer in enumerate(layers):
        p = os.path.join(work, "layer%d.tar" % i)
        layer.write(p)
        diff_id, desc = finish_blob(p, blob_dir)
        os.remove(p)
        diff_ids.append(diff_id)
        descs.append(desc)
    return diff_ids, descs


def write_index(out_dir, config, descs, tag):
    """Config, manifest and index.json (one amd64 manifest named TAG); return the
    manifest's descriptor."""
    blob_dir = os.path.join(out_dir, "blobs", "sha256")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": put_json(config, MT_CONFIG, blob_dir),
        "layers": descs,
    }
    mdesc = put_json(manifest, MT_MANIFEST, blob_dir)
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    mdesc["platform"] = {"architecture": "amd64", "os": "linux"}
    with open(os.path.join(out_dir, "index.json"), "wb") as f:
        f.write(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [mdesc]}))
    with open(os.path.join(out_dir, "oci-layout"), "wb") as f:
        f.write(canon({"imageLayoutVersion": "1.0.0"}))
    return mdesc


def debian_sources(want):
    """This machine's apt entries for WANT*, as one-line sources.list text."""
    lines = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) \
        + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            text = f.read()
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields, key = {}, None
                for raw in stanza.splitlines():
                    if raw.startswith("#") or not raw.strip():
                        continue
                    if raw[0] in " \t" and key:
                        fields[key] += " " + raw.strip()
                        continue
                    key, _, val = raw.partition(":")
                    key = key.strip().lower()
                    fields[key] = val.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                opts = " [signed-by=%s]" % fields["signed-by"] if fields.get("signed-by", "").startswith("/") else ""
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        lines.append("deb%s %s %s %s" % (opts, uri, suite, fields.get("components", "main")))
        else:
            for raw in text.splitlines():
                raw = raw.split("#", 1)[0].strip()
                if raw.startswith("deb "):
                    lines.append(raw)
    keep = []
    for line in lines:
        words = re.sub(r"\[[^\]]*\]", "", line).split()
        if len(words) >= 3 and (words[2] == want or words[2].startswith(want + "-")):
            keep.append(line)
    if not any(re.sub(r"\[[^\]]*\]", "", l).split()[2] == want for l in keep):
        raise LayoutError("no `deb ... %s main` entry in /etc/apt/sources.list or "
                          "/etc/apt/sources.list.d/*: configure a Debian %s mirror for apt first"
                          % (want, want))
    return "".join(l + "\n" for l in keep)


def sources_key(*paths, extra=""):
    """sha256 over the given files and EXTRA: a cache key for a built image."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(extra.encode())
    return h.hexdigest()


def install_layout(src, out, key):
    """Copy the cached layout SRC to OUT (atomically: OUT.new then rename) unless
    OUT.stamp already records KEY."""
    stamp = out + ".stamp"
    if os.path.isfile(stamp) and os.path.isfile(os.path.join(out, "index.json")):
        with open(stamp) as f:
            if f.read() == key:
                return False
    tmp = out + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    shutil.copytree(src, tmp)
    if os.path.exists(stamp):
        os.remove(stamp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    with open(stamp, "w") as f:
        f.write(key)
    return True
