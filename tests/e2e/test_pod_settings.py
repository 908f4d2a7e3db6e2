"""Pod and container settings the node agent applies, each checked against what upstream's
kubelet (with containerd) does: the host's PID and IPC namespaces, a container's security
context (identity, read-only root, no_new_privs, capabilities), the image's STOPSIGNAL on
deletion, lifecycle hooks over HTTP, a Secret volume following an edit, a size-limited
memory emptyDir, and `krust image` on an OCI archive.

Needs root, runc and Debian's busybox-static, as test_agent.py. Traffic goes only to pod
addresses on the test's own bridge."""

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from agent_node import k, node, ns  # noqa: F401 (fixtures)
from agent_node import IMAGE, NEEDS_AGENT, apply, pod, wait_pod
from conftest import KRUST_BIN, wait_for
from images import busybox_archive

pytestmark = NEEDS_AGENT


def running(k, ns, name):
    return wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running"
                    and all("running" in s["state"] for s in p["status"].get("containerStatuses", [])))


def in_pod(k, ns, name, *argv, container=None):
    """`kubectl exec` of `argv`; the CompletedProcess (never raises)."""
    return k.run("exec", name, "-n", ns, *(["-c", container] if container else []), "--", *argv)


def log_lines(k, ns, name, container, count):
    """The container's first `count` log lines, once it has written them."""
    return wait_for(lambda: (lambda l: l[:count] if len(l) >= count else None)(
        k("logs", name, "-n", ns, "-c", container).splitlines()), 30, interval=0.5,
        what=f"{count} lines of {name}/{container}'s log")


def status_fields(lines):
    """`Name:\tvalue` lines of /proc/<pid>/status as a dict."""
    return {key: value.strip() for key, value in (line.split(":", 1) for line in lines)}


def test_host_pid_and_ipc_namespaces(node, k, ns):
    # Upstream: hostPID/hostIPC put the containers in the node's PID and IPC namespaces;
    # without them a pod has namespaces of its own, and its container's entrypoint is PID 1.
    host_pid = node.server.proc.pid  # the agent's own (the node's) namespaces
    host_ns = {kind: os.readlink(f"/proc/{host_pid}/ns/{kind}") for kind in ("pid", "ipc")}
    apply(k, pod("host", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
                 hostPID=True, hostIPC=True))
    apply(k, pod("own", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    running(k, ns, "host")
    running(k, ns, "own")
    for kind in ("pid", "ipc"):
        assert k("exec", "host", "-n", ns, "--", "readlink", f"/proc/self/ns/{kind}").strip() == host_ns[kind]
        assert k("exec", "own", "-n", ns, "--", "readlink", f"/proc/self/ns/{kind}").strip() != host_ns[kind]
    # The host's processes are visible: the node's PID 1 and the agent itself.
    with open("/proc/1/comm") as f:
        assert k("exec", "host", "-n", ns, "--", "cat", "/proc/1/comm") == f.read()
    assert in_pod(k, ns, "host", "test", "-d", f"/proc/{host_pid}").returncode == 0
    assert k("exec", "own", "-n", ns, "--", "cat", "/proc/1/comm").strip() == "sleep"


def test_run_as_user_group_and_supplemental_groups(node, k, ns):
    # Upstream: the pod's runAsUser/runAsGroup/supplementalGroups apply to every container
    # (and to exec'd processes), a container's own settings win over the pod's.
    report = ["sh", "-c", "id -u; id -g; id -G; sleep 3600"]
    apply(k, pod("ids", ns, node, [
        {"name": "inherits", "image": IMAGE, "command": report},
        {"name": "overrides", "image": IMAGE, "command": report,
         "securityContext": {"runAsUser": 2000, "runAsGroup": 3000}},
    ], securityContext={"runAsUser": 1234, "runAsGroup": 5678, "supplementalGroups": [4000, 4001]}))
    running(k, ns, "ids")
    uid, gid, groups = log_lines(k, ns, "ids", "inherits", 3)
    assert (uid, gid) == ("1234", "5678")
    assert set(groups.split()) == {"5678", "4000", "4001"}
    uid, gid, groups = log_lines(k, ns, "ids", "overrides", 3)
    assert (uid, gid) == ("2000", "3000")
    assert set(groups.split()) == {"3000", "4000", "4001"}
    assert k("exec", "ids", "-n", ns, "-c", "inherits", "--", "id", "-u").strip() == "1234"


def test_read_only_root_filesystem_keeps_volumes_writable(node, k, ns):
    # Upstream: readOnlyRootFilesystem mounts the image's root read-only; volumes keep their
    # own mode, so an emptyDir stays writable, and so does /dev/termination-log.
    apply(k, pod("ro", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    }], volumes=[{"name": "scratch", "emptyDir": {}}]))
    running(k, ns, "ro")
    for path in ("/made", "/tmp/made"):
        denied = in_pod(k, ns, "ro", "touch", path)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied.stderr
    assert in_pod(k, ns, "ro", "sh", "-c", "echo kept > /scratch/made && cat /scratch/made").stdout == "kept\n"
    assert in_pod(k, ns, "ro", "sh", "-c", "echo why > /dev/termination-log").returncode == 0


def test_privilege_escalation_and_capabilities(node, k, ns):
    # Upstream (containerd): a container starts with the runtime's default capability set and
    # without no_new_privs; allowPrivilegeEscalation: false sets no_new_privs; `drop: [ALL]`
    # leaves none (effective, permitted and bounding); `add` adds to the default set; a
    # non-root user keeps the bounding set but has no effective capabilities (no ambient ones).
    report = ["sh", "-c", "grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd):' /proc/self/status; sleep 3600"]
    apply(k, pod("caps", ns, node, [
        {"name": "plain", "image": IMAGE, "command": report},
        {"name": "no-escalation", "image": IMAGE, "command": report,
         "securityContext": {"allowPrivilegeEscalation": False}},
        {"name": "none", "image": IMAGE, "command": report,
         "securityContext": {"capabilities": {"drop": ["ALL"]}}},
        {"name": "net-admin", "image": IMAGE, "command": report,
         "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        {"name": "non-root", "image": IMAGE, "command": report,
         "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}}},
    ]))
    running(k, ns, "caps")
    got = {c: status_fields(log_lines(k, ns, "caps", c, 4))
           for c in ("plain", "no-escalation", "none", "net-admin", "non-root")}
    net_admin = 1 << 12  # CAP_NET_ADMIN
    plain = int(got["plain"]["CapEff"], 16)
    assert got["plain"]["NoNewPrivs"] == "0"
    assert plain == 0xa80425fb  # containerd's default set (CHOWN, ..., NET_RAW, ..., SETFCAP)
    assert got["no-escalation"]["NoNewPrivs"] == "1"
    assert {key: got["none"][key] for key in ("CapEff", "CapPrm", "CapBnd")} == \
        dict.fromkeys(("CapEff", "CapPrm", "CapBnd"), "0000000000000000")
    assert int(got["net-admin"]["CapEff"], 16) == plain | net_admin
    non_root = got["non-root"]
    assert (non_root["CapEff"], non_root["CapPrm"]) == ("0000000000000000",) * 2
    assert int(non_root["CapBnd"], 16) == plain | net_admin


def test_the_images_stop_signal_is_sent_on_deletion(node, k, ns, tmp_path):
    # Upstream (containerd): a container is stopped with its image's STOPSIGNAL, SIGTERM when
    # the image names none.
    archive = busybox_archive(str(tmp_path / "usr1.tar"), "krust.test/stop-usr1:1", stop_signal="SIGUSR1")
    imported = subprocess.run([KRUST_BIN, "image", "import", archive, "--data-dir", node.agent_dir],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    record = tmp_path / "signals"
    record.mkdir()
    script = ("trap 'echo got-usr1 > /record/$NAME; exit 0' USR1; trap 'echo got-term > /record/$NAME; exit 0' TERM; "
              "touch /record/$NAME.up; while true; do sleep 0.1; done")
    apply(k, pod("stopped", ns, node, [
        {"name": name, "image": image, "command": ["sh", "-c", script], "env": [{"name": "NAME", "value": name}],
         "volumeMounts": [{"name": "record", "mountPath": "/record"}]}
        for name, image in (("usr1", "krust.test/stop-usr1:1"), ("plain", IMAGE))
    ], volumes=[{"name": "record", "hostPath": {"path": str(record), "type": "Directory"}}],
        terminationGracePeriodSeconds=30))
    running(k, ns, "stopped")
    wait_for(lambda: (record / "usr1.up").exists() and (record / "plain.up").exists(), 30, interval=0.3,
             what="both containers' traps set")
    k("delete", "pod", "stopped", "-n", ns, timeout=90)
    assert (record / "usr1").read_text() == "got-usr1\n"
    assert (record / "plain").read_text() == "got-term\n"


def test_http_get_lifecycle_hooks(node, k, ns, tmp_path):
    # Upstream: postStart and preStop `httpGet` handlers GET the path on the pod's IP; preStop
    # runs before the container's stop signal. The server is a sidecar with a startup probe,
    # so that (as upstream) the app container starts only once the server answers.
    record = tmp_path / "access"
    record.mkdir()
    apply(k, pod("hooked", ns, node, [{
        "name": "app", "image": IMAGE,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
        "lifecycle": {"postStart": {"httpGet": {"path": "/post-start", "port": 8080}},
                      "preStop": {"httpGet": {"path": "/pre-stop", "port": 8080}}},
    }], initContainers=[{
        "name": "web", "image": IMAGE, "restartPolicy": "Always",
        "command": ["sh", "-c", "mkdir /www && for f in ready post-start pre-stop; do echo $f > /www/$f; done; "
                                "exec httpd -f -vv -p 8080 -h /www 2>>/record/access.log"],
        "startupProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1, "failureThreshold": 30},
        "volumeMounts": [{"name": "record", "mountPath": "/record"}],
    }], volumes=[{"name": "record", "hostPath": {"path": str(record), "type": "Directory"}}],
        terminationGracePeriodSeconds=20))
    running(k, ns, "hooked")
    log = record / "access.log"
    wait_for(lambda: "url:/post-start" in log.read_text(), 30, interval=0.3, what="the postStart GET")
    assert "url:/pre-stop" not in log.read_text()
    k("delete", "pod", "hooked", "-n", ns, timeout=90)
    urls = [line.split("url:", 1)[1] for line in log.read_text().splitlines() if "url:" in line]
    assert [u for u in urls if u != "/ready"] == ["/post-start", "/pre-stop"]


def test_a_secret_volume_follows_an_edit(node, k, ns):
    # Upstream: the kubelet rewrites Secret volumes (atomically) when the Secret changes, within
    # its sync period (~1 min); new keys appear too.
    k("create", "secret", "generic", "live", "-n", ns, "--from-literal=token=first")
    apply(k, pod("reader", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "secret", "mountPath": "/secret", "readOnly": True}],
    }], volumes=[{"name": "secret", "secret": {"secretName": "live"}}]))
    running(k, ns, "reader")
    read = lambda: in_pod(k, ns, "reader", "cat", "/secret/token", "/secret/extra").stdout  # noqa: E731
    assert read() == "first"
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    k("patch", "secret", "live", "-n", ns, "-p",
      json.dumps({"data": {"token": b64("second"), "extra": b64("-added")}}))
    wait_for(lambda: read() == "second-added", 90, interval=1, what="the edit inside the container")


def oci_archive(path, name):
    """An OCI image layout in a tar (gzip-compressed layer, as skopeo and `docker save` write
    it) of the busybox test image, named `name` by the annotations `docker save` gives."""
    docker = busybox_archive(str(path) + ".docker.tar", name)
    with tarfile.open(docker) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        config = tar.extractfile(manifest["Config"]).read()
        layer = gzip.compress(tar.extractfile(manifest["Layers"][0]).read(), mtime=0)
    os.remove(docker)

    def descriptor(media_type, data, **extra):
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data), **extra}
    image_manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [descriptor("application/vnd.oci.image.manifest.v1+json", image_manifest,
                                                 annotations={"io.containerd.image.name": name,
                                                              "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]})]}).encode()
    with tarfile.open(path, "w") as tar:
        members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
        members += [(f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob) for blob in (config, layer, image_manifest)]
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_krust_image_imports_lists_and_removes_an_oci_archive(tmp_path):
    # As `ctr image import` and `crictl rmi`: the image is named by its containerd annotation,
    # listed once imported, gone once removed, and removing it again is an error.
    store = tmp_path / "store"
    name = "krust.test/oci:1"

    def image(*argv):
        return subprocess.run([KRUST_BIN, "image", *map(str, argv), "--data-dir", store],
                              capture_output=True, text=True, timeout=60)
    imported = image("import", oci_archive(tmp_path / "oci.tar", name))
    assert imported.returncode == 0, imported.stderr
    assert name in imported.stdout
    listed = image("ls")
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout
    removed = image("rm", name)
    assert removed.returncode == 0, removed.stderr
    assert name not in image("ls").stdout
    again = image("rm", name)
    assert again.returncode != 0 and name in again.stderr, again.stderr


def test_a_memory_empty_dir_is_limited_to_its_size(node, k, ns):
    # Upstream: a `medium: Memory` emptyDir is a tmpfs sized by its sizeLimit, so writing more
    # than that fails with ENOSPC inside the container.
    apply(k, pod("small", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    }], volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]))
    running(k, ns, "small")
    mount = next(line.split() for line in k("exec", "small", "-n", ns, "--", "cat", "/proc/mounts").splitlines()
                 if line.split()[1] == "/cache")
    assert mount[2] == "tmpfs", mount
    fits = in_pod(k, ns, "small", "dd", "if=/dev/zero", "of=/cache/half", "bs=1024", "count=512")
    assert fits.returncode == 0, fits.stderr
    assert in_pod(k, ns, "small", "rm", "/cache/half").returncode == 0
    full = in_pod(k, ns, "small", "dd", "if=/dev/zero", "of=/cache/big", "bs=1024", "count=2048")
    assert full.returncode != 0 and "No space left on device" in full.stderr, full.stderr
