"""Static pods (`--pod-manifest-path`, the kubelet's `staticPodPath`): the agent runs the pods
of a manifest folder itself and mirrors each into the API as `<name>-<node>`, a mirror pod
(`kubernetes.io/config.mirror`, owned by the Node) that carries the static pod's status.
Deleting the mirror through the API brings it back with the same containers; editing the file
replaces the pod; removing the file stops it and leaves nothing behind.

Needs root, runc and Debian's busybox-static, as test_agent.py."""

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from agent_node import k  # noqa: F401 (fixture)
from agent_node import IMAGE, NEEDS_AGENT, Node, _mounts_under, status_of
from conftest import (KRUST_BIN, KUBECTL_VERSIONS, Cluster, KrustServer, Kubectl, free_port, rand_suffix,
                      reap, spawn, wait_for)
from images import busybox_archive

pytestmark = NEEDS_AGENT

MIRROR = "kubernetes.io/config.mirror"
HASH = "kubernetes.io/config.hash"


@pytest.fixture(scope="module")
def node(e2e_tmp, request):
    """A node whose agent reads `<workdir>/manifests`; its static pods are stopped (their
    files removed) before the usual cleanup, also after a failure."""
    workdir = Path(tempfile.mkdtemp(prefix="test_static_pods-", dir=e2e_tmp))
    manifests = workdir / "manifests"
    manifests.mkdir()
    # Present from the start and never pods: a dotfile and a file that is no manifest.
    (manifests / ".hidden.yaml").write_text(_yaml("hidden", ["sleep", "3600"]))
    (manifests / "broken.yaml").write_text("kind: [")
    n = Node(workdir, extra_args=["--pod-manifest-path", str(manifests)])
    n.manifests = manifests
    yield n
    for f in manifests.iterdir():
        f.unlink()
    pods = n.agent_dir / "pods"
    try:
        wait_for(lambda: not any(pods.iterdir()), 30, interval=0.5, what="the static pods stopped")
    except AssertionError:
        pass
    n.cleanup()


def _yaml(name, command, env_value="1"):
    """A manifest in YAML (by hand: the container's command as a flow sequence)."""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {IMAGE}
    command: {json.dumps(command)}
    env:
    - name: VERSION
      value: "{env_value}"
"""


def write(node, file, text):
    """Writes a manifest as editors and config managers should: whole, by a rename."""
    tmp = node.manifests / f".{file}.tmp"
    tmp.write_text(text)
    os.rename(tmp, node.manifests / file)


def mirror(k, name):
    """The pod `name` in `default`, or None."""
    out = k("get", "pod", name, "-n", "default", "--ignore-not-found", "-o", "json")
    return json.loads(out) if out.strip() else None


def running(p):
    return p is not None and p["status"].get("phase") == "Running" and all(
        s.get("ready") for s in p["status"].get("containerStatuses", [{"ready": False}]))


def pid_of(node, uid):
    state = node.agent_dir / "pods" / uid / "containers" / "c" / "0" / "state.json"
    return json.loads(state.read_text())["pid"]


def assert_gone(node, uid, pid):
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, interval=0.2, what="the container stopped")
    wait_for(lambda: not (node.agent_dir / "pods" / uid).exists(), 20, interval=0.2,
             what="the static pod's files removed")
    assert _mounts_under(node.agent_dir / "pods" / uid) == []
    assert not any(Path(root, "kubepods", "besteffort", f"pod{uid}").exists()
                   for root in Path("/sys/fs/cgroup").iterdir())
    shims = [line for line in os.popen("ps -eo args").read().splitlines() if "shim" in line and uid in line]
    assert shims == []


def test_a_static_pod_runs_mirrored_survives_its_mirrors_deletion_follows_its_file(node, k):
    name = f"web-{rand_suffix()}"
    full = f"{name}-{node.name}"
    file = f"{name}.yaml"
    try:
        write(node, file, _yaml(name, ["sh", "-c", "echo started-v1; exec sleep 3600"]))
        p = wait_for(lambda: (lambda p: p if running(p) else None)(mirror(k, full)), 60, interval=0.5,
                     what=f"the mirror pod {full} running")
        meta, spec = p["metadata"], p["spec"]
        annotations = meta["annotations"]
        uid = annotations[HASH]
        assert annotations[MIRROR] == uid, "the mirror carries the static pod's hash"
        assert annotations["kubernetes.io/config.source"] == "file"
        assert annotations["kubernetes.io/config.seen"]
        assert meta["uid"] != uid, "the mirror is an object of its own"
        node_obj = k.json("get", "node", node.name)
        assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                            "uid": node_obj["metadata"]["uid"], "controller": True}]
        assert meta["labels"] == {"app": name}
        assert spec["nodeName"] == node.name
        assert {"operator": "Exists", "effect": "NoExecute"} in spec["tolerations"]
        assert p["status"]["podIP"].startswith(node.cidr_base + ".")
        table = k("get", "pod", full, "-n", "default")
        assert "1/1" in table and "Running" in table
        # Logs and exec reach the static pod through its mirror's name.
        wait_for(lambda: k("logs", full, "-n", "default").strip() == "started-v1", 20, interval=0.5,
                 what="the static pod's log")
        assert k("exec", full, "-n", "default", "--", "sh", "-c", "echo $VERSION").strip() == "1"
        # Only the good manifest became a pod.
        names = [i["metadata"]["name"] for i in k.json("get", "pods", "-n", "default")["items"]]
        assert not any(n.startswith(("hidden-", "broken-")) for n in names), names

        # Deleting the mirror deletes only the mirror: it comes back, the container runs on.
        container = status_of(p, "c")["containerID"]
        started = status_of(p, "c")["state"]["running"]["startedAt"]
        pid = pid_of(node, uid)
        k("delete", "pod", full, "-n", "default", timeout=60)
        back = wait_for(lambda: (lambda q: q if q and q["metadata"]["uid"] != meta["uid"] and running(q)
                                 else None)(mirror(k, full)), 30, interval=0.3, what="the mirror back")
        assert back["metadata"]["annotations"][MIRROR] == uid
        assert status_of(back, "c")["containerID"] == container
        assert status_of(back, "c")["restartCount"] == 0
        assert status_of(back, "c")["state"]["running"]["startedAt"] == started
        assert os.path.exists(f"/proc/{pid}") and pid_of(node, uid) == pid

        # Editing the file is a new pod: the old containers stop, new ones start.
        write(node, file, _yaml(name, ["sh", "-c", "echo started-v2; exec sleep 3600"], env_value="2"))
        edited = wait_for(lambda: (lambda q: q if q and q["metadata"]["annotations"].get(MIRROR) not in (None, uid)
                                   and running(q) else None)(mirror(k, full)), 60, interval=0.5,
                          what="the mirror of the edited manifest")
        new_uid = edited["metadata"]["annotations"][HASH]
        assert edited["metadata"]["annotations"][MIRROR] == new_uid != uid
        assert status_of(edited, "c")["containerID"] != container
        assert_gone(node, uid, pid)
        assert k("exec", full, "-n", "default", "--", "sh", "-c", "echo $VERSION").strip() == "2"
        wait_for(lambda: k("logs", full, "-n", "default").strip() == "started-v2", 20, interval=0.5,
                 what="the edited pod's log")

        # Removing the file stops the pod and deletes its mirror.
        new_pid = pid_of(node, new_uid)
        (node.manifests / file).unlink()
        wait_for(lambda: mirror(k, full) is None, 30, interval=0.5, what="the mirror deleted")
        assert_gone(node, new_uid, new_pid)
    finally:
        (node.manifests / file).unlink(missing_ok=True)


def test_a_static_pod_outlives_its_agent_and_a_mirror_of_no_file_is_deleted(node):
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    name = f"keep-{rand_suffix()}"
    full = f"{name}-{node.name}"
    file = f"{name}.json"
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}}
    try:
        write(node, file, json.dumps(manifest))
        p = wait_for(lambda: (lambda p: p if running(p) else None)(mirror(k, full)), 60, interval=0.5,
                     what=f"the mirror pod {full} running")
        uid = p["metadata"]["annotations"][HASH]
        pid = pid_of(node, uid)
        # The server and its agent die; the container does not, and the next agent adopts it
        # under the same mirror.
        node.cluster.kill_and_restart()
        assert os.path.exists(f"/proc/{pid}")
        time.sleep(3)
        p2 = wait_for(lambda: (lambda q: q if running(q) else None)(mirror(k, full)), 60, interval=0.5,
                      what="the mirror after the restart")
        assert p2["metadata"]["uid"] == p["metadata"]["uid"]
        assert status_of(p2, "c")["restartCount"] == 0 and pid_of(node, uid) == pid
        # A mirror pod whose static pod is gone while the agent is down is deleted when it
        # comes back.
        node.server.stop()
        (node.manifests / file).unlink()
        node.server.start()
        wait_for(lambda: mirror(k, full) is None, 60, interval=0.5, what="the orphaned mirror deleted")
        assert_gone(node, uid, pid)
    finally:
        (node.manifests / file).unlink(missing_ok=True)


def test_a_node_creates_only_mirror_pods_of_its_own(node, k):
    """The node's own credentials (as the agent's kubeconfig holds them): a plain pod and a
    mirror pod owned by no node are refused, as upstream's NodeRestriction refuses them."""
    kubeconfig = node.workdir / "data" / "agent.kubeconfig"
    uid = k.json("get", "node", node.name)["metadata"]["uid"]
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"forged-{rand_suffix()}", "namespace": "default"},
            "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": IMAGE}]}}
    plain = k.run("create", "-f", "-", input=json.dumps(base), kubeconfig=kubeconfig)
    assert plain.returncode != 0 and "can only create mirror pods" in plain.stderr
    unowned = json.loads(json.dumps(base))
    unowned["metadata"]["annotations"] = {MIRROR: "x"}
    refused = k.run("create", "-f", "-", input=json.dumps(unowned), kubeconfig=kubeconfig)
    assert refused.returncode != 0 and "can only create pods with an owner reference set to itself" in refused.stderr
    owned = json.loads(json.dumps(unowned))
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid,
                                             "controller": True}]
    owned["spec"]["nodeName"] = "another-node"
    elsewhere = k.run("create", "-f", "-", input=json.dumps(owned), kubeconfig=kubeconfig)
    assert elsewhere.returncode != 0 and "can only create pods with spec.nodeName set to itself" in elsewhere.stderr
    # Nobody turns a pod into a mirror, or a mirror into a plain pod.
    name = f"plain-{rand_suffix()}"
    k("create", "-f", "-", input=json.dumps({**base, "metadata": {"name": name, "namespace": "default"},
                                              "spec": {**base["spec"], "nodeName": "no-such-node"}}))
    try:
        err = k.fail("annotate", "pod", name, "-n", "default", f"{MIRROR}=x")
        assert "may not add mirror pod annotation" in err
    finally:
        k("delete", "pod", name, "-n", "default", "--grace-period=0", "--force", timeout=30)


def test_krust_agent_alone_runs_static_pods(e2e_tmp):
    """`krust agent --pod-manifest-path` against a server without an agent of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="test_static_pods-alone-", dir=e2e_tmp))
    name, bridge = f"e2e-alone-{rand_suffix()}", f"kt{rand_suffix(4)}"
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--node-name", name]
    server.start()
    cluster = Cluster(server, None)
    (workdir / "images").mkdir()
    busybox_archive(str(workdir / "images" / "busybox.tar"), IMAGE)
    manifests = workdir / "manifests"
    manifests.mkdir()
    (manifests / "solo.yaml").write_text(_yaml("solo", ["sleep", "3600"]))
    agent_dir = workdir / "agent"
    argv = [KRUST_BIN, "agent", "--kubeconfig", workdir / "data" / "agent.kubeconfig", "--data-dir", agent_dir,
            "--images", workdir / "images", "--node-name", name, "--bridge", bridge,
            "--pod-cidr", f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24",
            "--node-ip", "127.0.0.1", "--agent-port", str(free_port()),
            "--cluster-dns", f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.10",
            "--pod-manifest-path", manifests, "--image-gc-high-threshold", "100"]
    log = open(workdir / "agent.log", "ab")
    agent = spawn(list(map(str, argv)), stdout=log, stderr=log)
    k = Kubectl(KUBECTL_VERSIONS[-1], cluster, workdir)
    try:
        full = f"solo-{name}"
        p = wait_for(lambda: (lambda p: p if running(p) else None)(mirror(k, full)), 60, interval=0.5,
                     what="the alone agent's static pod mirrored")
        assert p["metadata"]["ownerReferences"][0]["name"] == name
        uid = p["metadata"]["annotations"][HASH]
        pid = json.loads((agent_dir / "pods" / uid / "containers" / "c" / "0" / "state.json").read_text())["pid"]
        (manifests / "solo.yaml").unlink()
        wait_for(lambda: mirror(k, full) is None, 30, interval=0.5, what="the mirror deleted")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, interval=0.2, what="the container stopped")
        wait_for(lambda: not (agent_dir / "pods" / uid).exists(), 20, interval=0.2, what="its files removed")
    finally:
        (manifests / "solo.yaml").unlink(missing_ok=True)
        reap(agent, signal.SIGKILL, timeout=10)
        server.stop(signal.SIGKILL)
        for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines():
            if "shim" in line and str(agent_dir) in line:
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for point in sorted(_mounts_under(workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if shutil.which("ip"):
            for link in (bridge, f"{bridge}-dns"):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        if shutil.which("nft"):
            for table in ("proxy", "policy"):
                subprocess.run(["nft", "delete", "table", "ip", f"{bridge}-{table}"], capture_output=True)
