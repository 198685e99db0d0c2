#!/usr/bin/env python3
"""Write a one-layer container image as a docker-archive tarball, without a Docker engine or
a registry, for `ctr images import` on the test node (e2e/node).

    image.py OUT.tar --tag NAME:TAG [--add SRC=DST[:MODE]]... [--dir DST[:MODE]]...
             [--text DST=CONTENT]... [--user UID:GID] [--entrypoint JSON] [--cmd JSON]

Every file belongs to root; timestamps are fixed, so the same inputs give the same image ID.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

FIXED_MTIME = 0


def fail(message):
    print(f"image.py: {message}", file=sys.stderr)
    sys.exit(2)


def parse_mode(spec, default):
    """`DST[:MODE]` -> (DST, MODE); MODE is octal."""
    path, _, mode = spec.partition(":")
    try:
        return path, int(mode, 8) if mode else default
    except ValueError:
        fail(f"bad mode in {spec!r}: expected octal such as 0755")


def parents(path):
    """The parent directories of an image path, outermost first."""
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class Layer:
    def __init__(self):
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _info(self, path, kind, mode):
        info = tarfile.TarInfo(path.strip("/"))
        info.type = kind
        info.mode = mode
        info.mtime = FIXED_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def directory(self, path, mode=0o755):
        for parent in parents(path) + [path.strip("/")]:
            if parent and parent not in self.seen:
                self.seen.add(parent)
                self.tar.addfile(self._info(parent, tarfile.DIRTYPE, mode))

    def file(self, path, data, mode):
        for parent in parents(path):
            self.directory(parent)
        if path.strip("/") in self.seen:
            fail(f"{path} is added twice")
        self.seen.add(path.strip("/"))
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def close(self):
        self.tar.close()
        return self.buffer.getvalue()


def build(args):
    if ":" not in args.tag.rsplit("/", 1)[-1]:
        fail(f"--tag {args.tag!r} needs an explicit tag (NAME:TAG): ':latest' would make "
             "the kubelet try to pull it")
    layer = Layer()
    for spec in args.dir:
        path, mode = parse_mode(spec, 0o755)
        layer.directory(path, mode)
    for spec in args.add:
        if "=" not in spec:
            fail(f"--add {spec!r}: expected SRC=DST[:MODE]")
        source, target = spec.split("=", 1)
        target, mode = parse_mode(target, None)
        try:
            with open(source, "rb") as handle:
                data = handle.read()
            mode = mode if mode is not None else os.stat(source).st_mode & 0o7777
        except OSError as error:
            fail(f"--add {spec!r}: cannot read {source}: {error.strerror}")
        layer.file(target, data, mode)
    for spec in args.text:
        if "=" not in spec:
            fail(f"--text {spec!r}: expected DST=CONTENT")
        target, content = spec.split("=", 1)
        layer.file(target, content.encode(), 0o644)
    layer_bytes = layer.close()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()

    config = {
        "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": json.loads(args.entrypoint) if args.entrypoint else None,
            "Cmd": json.loads(args.cmd) if args.cmd else None,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kube-baseline e2e/testnode/image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": [layer_name]}]

    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in ((layer_name, layer_bytes), (config_name, config_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = FIXED_MTIME
            archive.addfile(info, io.BytesIO(data))
    print(f"{args.tag} {config_name[:-5]} -> {args.out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--add", action="append", default=[], metavar="SRC=DST[:MODE]")
    parser.add_argument("--dir", action="append", default=[], metavar="DST[:MODE]")
    parser.add_argument("--text", action="append", default=[], metavar="DST=CONTENT")
    parser.add_argument("--user", default="0:0")
    parser.add_argument("--entrypoint")
    parser.add_argument("--cmd")
    build(parser.parse_args())


if __name__ == "__main__":
    main()
