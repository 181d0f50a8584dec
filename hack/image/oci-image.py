#!/usr/bin/env python3
"""Writes a one-layer OCI image archive without Docker or a registry.

    oci-image.py --name fto.local/operator:dev --out image.tar \
        --file target/release/op:/usr/local/bin/op --libs-of target/release/op \
        --user 65532:65532 --entrypoint '["/usr/local/bin/op"]' --cmd '["run"]'

The archive is an OCI image layout (oci-layout, index.json, blobs/) that
`ctr -n k8s.io images import` reads; index.json names the image with the
`io.containerd.image.name` annotation. The layer is deterministic (sorted
entries, mtime 0, owner 0:0), so the same inputs give the same digest.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

# The user the distroless "nonroot" images define; the chart runs as it.
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def shared_libraries(binary):
    """Every shared object the dynamic loader maps for BINARY, loader included, as absolute
    paths. A static binary needs none."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if out.returncode != 0:
        die(f"ldd {binary} failed: {text.strip()}")
    libs = []
    for line in text.splitlines():
        line = line.strip()
        if "not found" in line:
            die(f"{binary} needs a library this machine lacks: {line}")
        m = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(1))
    return libs


def layer(files):
    """files: {path in image: (source path or bytes, mode)} -> uncompressed tar bytes."""
    dirs = set()
    for dest in files:
        parent = os.path.dirname(dest)
        while parent not in ("", "/"):
            dirs.add(parent)
            parent = os.path.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(d, None, 0o755) for d in dirs] + [(d, s, m) for d, (s, m) in files.items()]
        for dest, src, mode in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if src is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            data = src if isinstance(src, bytes) else open(src, "rb").read()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": f"sha256:{digest}", "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="image reference, e.g. fto.local/operator:dev")
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:OCTAL_MODE]")
    p.add_argument("--libs-of", action="append", default=[], help="add the shared libraries of this binary")
    p.add_argument("--user", default="")
    p.add_argument("--entrypoint", default="null", help="JSON list")
    p.add_argument("--cmd", default="null", help="JSON list")
    a = p.parse_args()
    if ":" not in a.name.rsplit("/", 1)[-1]:
        die(f"--name {a.name!r} needs a tag (name:tag)")

    files = {"/etc/passwd": (PASSWD.encode(), 0o644), "/etc/group": (GROUP.encode(), 0o644)}
    for spec in a.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            die(f"--file {spec!r}: expected SRC:/absolute/DEST[:MODE]")
        if not os.path.isfile(parts[0]):
            die(f"--file {spec!r}: {parts[0]} is not a file (build it first)")
        files[parts[1]] = (parts[0], int(parts[2], 8) if len(parts) == 3 else 0o755)
    for binary in a.libs_of:
        for lib in shared_libraries(binary):
            files[lib] = (os.path.realpath(lib), 0o755)

    blobs = {}
    layer_tar = layer(files)
    layer_desc = blob(blobs, layer_tar)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "hack/image/oci-image.py"}],
    }
    config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    layout = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for digest, data in blobs.items():
        layout[f"blobs/sha256/{digest}"] = data
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        for name in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in sorted(layout.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(f"{a.name} -> {a.out} ({len(layer_tar) // 1024} KiB, {len(files)} files, {manifest_desc['digest']})")


if __name__ == "__main__":
    main()
