"""Test images built from Debian's busybox-static, as `docker save` archives: no registry and
no network needed. `busybox_archive(path, name)` writes one image (a single layer with
/bin/busybox, its applets as links, /etc/passwd and /tmp) named `name`."""

import hashlib
import io
import json
import os
import subprocess
import tarfile

BUSYBOX = "/usr/bin/busybox"


def _layer() -> bytes:
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def directory(name, mode=0o755):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def file(name, data: bytes, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for d in ["bin", "etc", "root", "home", "var", "proc", "sys", "dev"]:
            directory(d)
        directory("tmp", 0o1777)
        with open(BUSYBOX, "rb") as f:
            file("bin/busybox", f.read(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


_LAYER = None


def busybox_archive(path: str, name: str = "krust.test/busybox:1", cmd=None, stop_signal=None) -> str:
    """Writes a docker-save archive of the busybox image to `path`; returns the path."""
    global _LAYER
    if _LAYER is None:
        _LAYER = _layer()
    layer_digest = hashlib.sha256(_LAYER).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd or ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
    }
    if stop_signal:
        config["config"]["StopSignal"] = stop_signal
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [f"{layer_digest}/layer.tar"]}]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for member, data in [
            (config_name, config_bytes),
            (f"{layer_digest}/layer.tar", _LAYER),
            ("manifest.json", json.dumps(manifest).encode()),
        ]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
