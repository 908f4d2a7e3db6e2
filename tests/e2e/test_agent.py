"""The node agent: the server's own node registers, and pods bound to it run as real Linux
containers (runc under `krust shim`), with a network namespace on the node's bridge,
volumes, restart policies, status as upstream fills it, adoption after a SIGKILL of the
server, and nothing left on the host once a pod is deleted.

Needs root (namespaces, mounts, cgroups, netlink), runc and Debian's busybox-static, from
which the test image is built. Traffic goes only to pod addresses on the test's own
bridge."""

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from agent_node import k, node, ns  # noqa: F401 (fixtures)
from agent_node import (IMAGE, NEEDS_AGENT, Node, _children, _link_master, _links,  # noqa: F401
                        _mounts_under, apply, pod, pod_json, status_of, wait_events, wait_pod)
from conftest import (KRUST_BIN, KUBECTL_VERSIONS, Cluster, KrustServer, Kubectl, free_port,
                      rand_suffix, tail, wait_for)
from images import busybox_archive

pytestmark = NEEDS_AGENT



def test_node_registers_ready_with_its_lease(node, k):
    n = wait_for(lambda: (lambda n: n if n.get("status", {}).get("conditions") else None)(
        k.json("get", "node", node.name)), 30, interval=0.3, what="the node's status")
    conditions = {c["type"]: c for c in n["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    for pressure in ["MemoryPressure", "PIDPressure"]:
        assert conditions[pressure]["status"] == "False"
    # The e2e nodes' eviction threshold for the disk is nodefs.available<0% (agent_node.py): a
    # CI machine's disk may hold less than upstream's 10% free, and that is no pressure here.
    assert conditions["DiskPressure"]["status"] == "False"
    capacity, allocatable = n["status"]["capacity"], n["status"]["allocatable"]
    assert int(capacity["cpu"]) == os.cpu_count()
    assert capacity["pods"] == "110" and capacity["memory"].endswith("Ki")
    assert int(allocatable["memory"][:-2]) < int(capacity["memory"][:-2])
    info = n["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.33.0-krust")
    assert info["operatingSystem"] == "linux" and info["kernelVersion"] == os.uname().release
    assert n["spec"]["podCIDR"] == f"{node.cidr_base}.0/24"
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == node.name
    assert any(a["type"] == "Hostname" for a in n["status"]["addresses"])
    lease = k.json("get", "lease", node.name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node.name
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = lease["spec"]["renewTime"]
    wait_for(lambda: k.json("get", "lease", node.name, "-n", "kube-node-lease")["spec"]["renewTime"]
             != first, 25, interval=1, what="the lease's renewal")
    assert node.name in k("get", "nodes")
    images = k.json("get", "node", node.name)["status"]["images"]
    assert any(IMAGE in i["names"] and i["sizeBytes"] > 0 for i in images)


def test_two_containers_share_localhost_after_an_init_container(node, k, ns):
    apply(k, pod("web", ns, node, [
        {"name": "server", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/work"],
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        {"name": "client", "image": IMAGE,
         "command": ["sh", "-c", "while true; do wget -qO- http://localhost:8080/ && sleep 1 || sleep 0.2; done"]},
    ], initContainers=[
        {"name": "init", "image": IMAGE, "command": ["sh", "-c", "echo made-by-init > /work/index.html"],
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    ], volumes=[{"name": "work", "emptyDir": {}}]))
    p = wait_pod(k, ns, "web", lambda p: p["status"].get("phase") == "Running"
                 and all(s["ready"] for s in p["status"].get("containerStatuses", [{"ready": False}])))
    status = p["status"]
    # The agent writes pod status as upstream's kubelet, under that field manager.
    with_fields = k.json("get", "pod", "web", "-n", ns, "--show-managed-fields")
    assert {m["manager"] for m in with_fields["metadata"]["managedFields"]
            if m.get("subresource") == "status"} == {"kubelet"}
    assert status["podIP"].startswith(node.cidr_base + ".")
    # Written as a strategic merge patch whose address lists replace what was there.
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIPs"] == [{"ip": status["hostIP"]}]
    assert status["qosClass"] == "BestEffort"
    init = status["initContainerStatuses"][0]["state"]["terminated"]
    assert init["exitCode"] == 0 and init["reason"] == "Completed"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    # PodScheduled too, as upstream's kubelet reports it for a pod given its nodeName.
    assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True",
                          "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    # The host reaches the pod on the node's bridge.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    wait_for(lambda: direct.open(f"http://{status['podIP']}:8080/", timeout=2).read().decode().strip()
             == "made-by-init", 20, interval=0.3, what="the pod's server from the host")
    # The client container reached the server over the pod's localhost.
    wait_for(lambda: "made-by-init" in k("logs", "web", "-n", ns, "-c", "client"), 20,
             interval=0.5, what="the client's log")
    assert "2/2" in k("get", "pod", "web", "-n", ns)


def test_a_crashing_container_backs_off_with_its_exit_code(node, k, ns):
    apply(k, pod("crash", ns, node, [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}]))
    p = wait_pod(k, ns, "crash", lambda p: status_of(p, "c")["restartCount"] >= 2
                 and "waiting" in status_of(p, "c")["state"], timeout=60, what="two restarts")
    s = status_of(p, "c")
    assert s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off" in s["state"]["waiting"]["message"]
    last = s["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert p["status"]["phase"] == "Running"
    assert "CrashLoopBackOff" in k("get", "pod", "crash", "-n", ns)
    events = wait_events(k, ns, "crash", "BackOff", "Started")
    uid = p["metadata"]["uid"]
    assert ("BackOff", f"Back-off restarting failed container c in pod crash_{ns}({uid})", "kubelet") in events


def test_restart_policy_never_ends_in_succeeded_or_failed(node, k, ns):
    apply(k, pod("ok", ns, node, [{"name": "c", "image": IMAGE, "command": ["true"]}], restartPolicy="Never"))
    apply(k, pod("bad", ns, node, [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "exit 7"]}],
                 restartPolicy="Never"))
    apply(k, pod("retry", ns, node, [{"name": "c", "image": IMAGE,
                                      "command": ["sh", "-c", "test -e /data/once && exit 0; touch /data/once; exit 1"],
                                      "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                 restartPolicy="OnFailure", volumes=[{"name": "d", "emptyDir": {}}]))
    ok = wait_pod(k, ns, "ok", lambda p: p["status"].get("phase") == "Succeeded")
    assert status_of(ok, "c")["state"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c.get("reason") for c in ok["status"]["conditions"]}["Ready"] == "PodCompleted"
    # An ended pod's address goes back to the pool; its status keeps it.
    ip = ok["status"]["podIP"]
    wait_for(lambda: not (node.agent_dir / "ipam" / ip).exists(), 10, what="the ended pod's address released")
    assert pod_json(k, ns, "ok")["status"]["podIP"] == ip
    bad = wait_pod(k, ns, "bad", lambda p: p["status"].get("phase") == "Failed")
    assert status_of(bad, "c")["state"]["terminated"]["exitCode"] == 7
    assert status_of(bad, "c")["restartCount"] == 0
    retry = wait_pod(k, ns, "retry", lambda p: p["status"].get("phase") == "Succeeded")
    assert status_of(retry, "c")["restartCount"] == 1


def test_environment_and_volumes_from_config_maps_secrets_and_the_downward_api(node, k, ns):
    k("create", "configmap", "settings", "-n", ns, "--from-literal=color=blue", "--from-literal=size=L")
    k("create", "secret", "generic", "creds", "-n", ns, "--from-literal=token=s3cr3t")
    apply(k, pod("env", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "env; cat /config/color /secret/token /info/labels; echo; sleep 3600"],
        "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "GREETING", "value": "hello $(COLOR)"}],
        "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "S_"}],
        "volumeMounts": [{"name": "config", "mountPath": "/config"},
                         {"name": "secret", "mountPath": "/secret", "readOnly": True},
                         {"name": "info", "mountPath": "/info"}],
    }], volumes=[{"name": "config", "configMap": {"name": "settings"}},
                 {"name": "secret", "secret": {"secretName": "creds"}},
                 {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]))
    p = wait_pod(k, ns, "env", lambda p: p["status"].get("phase") == "Running")
    text = wait_for(lambda: (lambda t: t if "s3cr3t" in t else None)(k("logs", "env", "-n", ns)), 20,
                    interval=0.5, what="output")
    lines = text.splitlines()
    for line in ["COLOR=blue", "MY_POD=env", f"MY_IP={p['status']['podIP']}", "GREETING=hello blue",
                 "S_token=s3cr3t", f"KUBERNETES_SERVICE_HOST={node.service_base}.1", "HOSTNAME=env"]:
        assert line in lines, line
    assert any(l.startswith("blues3cr3t") for l in lines)  # the two files, then the labels


def test_volume_files_have_their_modes_and_the_fs_group(node, k, ns):
    k("create", "configmap", "scripts", "-n", ns, "--from-literal=run.sh=echo ran", "--from-literal=key=v")
    apply(k, pod("modes", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "/scripts/run.sh; for f in /scripts/run.sh /scripts/private/key /info/mem "
                    "/scratch; do stat -L -c '%n %a %g' $f; done; touch /scratch/made; "
                    "stat -c '%n %g' /scratch/made; id -G; sleep 3600"],
        "resources": {"limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"}, {"name": "info", "mountPath": "/info"},
                         {"name": "scratch", "mountPath": "/scratch"}],
    }], securityContext={"fsGroup": 2345},
        volumes=[{"name": "scripts", "configMap": {"name": "scripts", "defaultMode": 0o755, "items": [
                     {"key": "run.sh", "path": "run.sh"},
                     {"key": "key", "path": "private/key", "mode": 0o400}]}},
                 {"name": "info", "downwardAPI": {"items": [{"path": "mem", "resourceFieldRef": {
                     "containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
                 {"name": "scratch", "emptyDir": {}}]))
    wait_pod(k, ns, "modes", lambda p: p["status"].get("phase") == "Running")
    text = wait_for(lambda: (lambda t: t if "/scratch/made" in t else None)(k("logs", "modes", "-n", ns)), 20,
                    interval=0.5, what="output")
    lines = text.splitlines()
    assert lines[0] == "ran"  # executable, by its defaultMode
    # fsGroup: the group owns the files and may read them (0400 becomes 0440, as upstream's);
    # an emptyDir is setgid, so what the container makes there is the group's too.
    assert lines[1:6] == ["/scripts/run.sh 755 2345", "/scripts/private/key 440 2345",
                          "/info/mem 644 2345", "/scratch 2777 2345", "/scratch/made 2345"]
    assert "2345" in lines[6].split()
    assert k("exec", "modes", "-n", ns, "--", "cat", "/info/mem").strip() == "64"


def test_bad_input_is_a_clear_reason_on_the_pod(node, k, ns):
    apply(k, pod("no-image", ns, node, [{"name": "c", "image": "127.0.0.1:9/does-not-exist:1"}]))
    apply(k, pod("no-command", ns, node, [{"name": "c", "image": IMAGE, "command": ["/no/such/binary"]}]))
    apply(k, pod("no-config", ns, node, [{"name": "c", "image": IMAGE, "command": ["true"],
                                          "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}]))
    apply(k, pod("no-volume", ns, node, [{"name": "c", "image": IMAGE, "command": ["true"],
                                          "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                 volumes=[{"name": "cfg", "configMap": {"name": "absent"}}]))
    apply(k, pod("fine", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))

    def waiting(name):
        p = wait_pod(k, ns, name, lambda p: "waiting" in status_of(p, "c").get("state", {})
                     and status_of(p, "c")["state"]["waiting"]["reason"] != "ContainerCreating")
        return status_of(p, "c")["state"]["waiting"]

    assert waiting("no-image")["reason"] in ("ErrImagePull", "ImagePullBackOff")
    no_command = waiting("no-command")
    assert no_command["reason"] == "CreateContainerError"
    assert "/no/such/binary" in no_command["message"]
    no_config = waiting("no-config")
    assert no_config["reason"] == "CreateContainerConfigError"
    assert 'configmap "missing" not found' in no_config["message"]
    # A volume's missing ConfigMap: ContainerCreating, and a FailedMount event says why, as
    # upstream's kubelet.
    events = wait_events(k, ns, "no-volume", "FailedMount")
    assert any(r == "FailedMount" and m == 'MountVolume.SetUp failed for volume "cfg" : configmap "absent" not found'
               and source == "kubelet" for r, m, source in events), events
    assert status_of(pod_json(k, ns, "no-volume"), "c")["state"]["waiting"]["reason"] == "ContainerCreating"
    # The agent goes on with its other pods.
    wait_pod(k, ns, "fine", lambda p: p["status"].get("phase") == "Running")


def test_the_pods_cgroup_holds_the_pods_limits(node, k, ns):
    """Upstream's pod-level cgroup: CPU shares of the requests, the CPU quota and memory
    limit of all its containers together; gone with the pod."""
    limits = {"limits": {"cpu": "200m", "memory": "64Mi"}}
    apply(k, pod("limited", ns, node, [
        {"name": name, "image": IMAGE, "command": ["sleep", "3600"], "resources": limits}
        for name in ("a", "b")]))
    uid = wait_pod(k, ns, "limited", lambda p: p["status"].get("phase") == "Running")["metadata"]["uid"]
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # v2
        cgroup = root / "kubepods" / f"pod{uid}"
        assert (cgroup / "memory.max").read_text().strip() == str(128 << 20)
        assert (cgroup / "cpu.max").read_text().split() == ["40000", "100000"]
    else:
        def hierarchy(controller):
            return next(d for d in root.iterdir() if controller in d.name.split(","))
        cpu = hierarchy("cpu") / "kubepods" / f"pod{uid}"
        cgroup = hierarchy("memory") / "kubepods" / f"pod{uid}"
        assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "40000"
        assert (cpu / "cpu.shares").read_text().strip() == "409"  # 400m of requests
    k("delete", "pod", "limited", "-n", ns, timeout=60)
    assert not cgroup.exists()


def test_qos_level_cgroups_weigh_their_pods(node, k, ns):
    """Upstream's QoS-level cgroups: `burstable` weighs as its pods' CPU requests together,
    `besteffort` as little as a cgroup can."""
    root = Path("/sys/fs/cgroup")
    v2 = (root / "cgroup.controllers").exists()

    def weight(tier):
        if v2:
            return int((root / "kubepods" / tier / "cpu.weight").read_text())
        cpu = next(d for d in root.iterdir() if "cpu" in d.name.split(","))
        return int((cpu / "kubepods" / tier / "cpu.shares").read_text())

    apply(k, pod("burstable", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
                                          "resources": {"requests": {"cpu": "700m"}}}]))
    wait_pod(k, ns, "burstable", lambda p: p["status"].get("phase") == "Running")
    assert weight("besteffort") == (1 if v2 else 2)
    with_pod = weight("burstable")
    assert with_pod >= (1 + (716 - 2) * 9999 // 262142 if v2 else 716), with_pod  # 700m of requests
    k("delete", "pod", "burstable", "-n", ns, timeout=60)
    wait_for(lambda: weight("burstable") < with_pod, 20, interval=0.3, what="the burstable tier's weight to drop")
    # `/kubepods` holds the pods to the node's memory less what it reserves (upstream's
    # enforce-node-allocatable=pods). Agents of other tests on this host share the cgroup and
    # reserve up to a few hundred MiB, so the bound is loose.
    if v2:
        limit = (root / "kubepods" / "memory.max").read_text().strip()
    else:
        memory = next(d for d in root.iterdir() if "memory" in d.name.split(","))
        limit = (memory / "kubepods" / "memory.limit_in_bytes").read_text().strip()
    capacity = int(k.json("get", "node", node.name)["status"]["capacity"]["memory"].rstrip("Ki")) * 1024
    assert limit != "max" and capacity - (1 << 30) <= int(limit) <= capacity, (limit, capacity)


def test_a_memory_limit_oom_kills(node, k, ns):
    apply(k, pod("hog", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1"],
        "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}},
    }], restartPolicy="Never"))
    p = wait_pod(k, ns, "hog", lambda p: p["status"].get("phase") == "Failed")
    terminated = status_of(p, "c")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137
    assert p["status"]["qosClass"] == "Guaranteed"


def test_host_network_pods_use_the_nodes_address(node, k, ns):
    apply(k, pod("host", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
                 hostNetwork=True))
    p = wait_pod(k, ns, "host", lambda p: p["status"].get("phase") == "Running")
    assert p["status"]["podIP"] == p["status"]["hostIP"]


def test_sigkill_of_the_server_leaves_containers_running_and_the_agent_adopts_them(node, ns):
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    apply(k, pod("survivor", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    apply(k, pod("crasher", ns, node, [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "sleep 1; exit 2"]}]))
    p = wait_pod(k, ns, "survivor", lambda p: p["status"].get("phase") == "Running")
    wait_pod(k, ns, "crasher", lambda p: status_of(p, "c")["restartCount"] >= 1)
    uid = p["metadata"]["uid"]
    state = node.agent_dir / "pods" / uid / "containers" / "c" / "0" / "state.json"
    pid = json.loads(state.read_text())["pid"]
    started = status_of(p, "c")["state"]["running"]["startedAt"]
    node.cluster.kill_and_restart()
    assert os.path.exists(f"/proc/{pid}"), "the container died with the server"
    p = wait_pod(k, ns, "survivor", lambda p: p["status"].get("phase") == "Running")
    assert json.loads(state.read_text())["pid"] == pid
    assert status_of(p, "c")["restartCount"] == 0
    assert status_of(p, "c")["state"]["running"]["startedAt"] == started
    # The crash-looping one keeps its count and goes on counting.
    before = status_of(pod_json(k, ns, "crasher"), "c")["restartCount"]
    wait_pod(k, ns, "crasher", lambda p: status_of(p, "c")["restartCount"] > before, timeout=60)


def test_deletion_stops_containers_within_the_grace_period_and_leaves_nothing(node, k, ns):
    apply(k, pod("doomed", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
                                       "resources": {"requests": {"cpu": "100m"}}}],
                 volumes=[{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]))
    p = wait_pod(k, ns, "doomed", lambda p: p["status"].get("phase") == "Running")
    uid = p["metadata"]["uid"]
    pid = json.loads((node.agent_dir / "pods" / uid / "containers" / "c" / "0" / "state.json").read_text())["pid"]
    started = time.monotonic()
    k("delete", "pod", "doomed", "-n", ns, "--grace-period=3", timeout=60)
    assert time.monotonic() - started < 15
    assert not os.path.exists(f"/proc/{pid}")
    assert not (node.agent_dir / "pods" / uid).exists()
    assert [m for m in _mounts_under(node.agent_dir / "pods" / uid)] == []
    assert f"veth{uid.replace('-', '')[:8]}" not in _links("veth")
    assert not any(Path(root, "kubepods", "burstable", f"pod{uid}").exists()
                   for root in Path("/sys/fs/cgroup").iterdir())
    assert not (node.agent_dir / "ipam" / p["status"]["podIP"]).exists()
    assert ("Killing", "Stopping container c", "kubelet") in wait_events(k, ns, "doomed", "Killing")


def test_images_are_imported_from_archives(node, tmp_path):
    archive = busybox_archive(str(tmp_path / "other.tar"), "krust.test/other:2")
    krust = KRUST_BIN
    out = subprocess.run([krust, "image", "import", archive, "--data-dir", node.agent_dir],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "krust.test/other:2" in out.stdout
    listing = subprocess.run([krust, "image", "ls", "--data-dir", node.agent_dir],
                             capture_output=True, text=True, timeout=60).stdout
    assert "krust.test/busybox:1" in listing  # from the airgap folder at start
    assert "krust.test/other:2" in listing
    bad = subprocess.run([krust, "image", "import", str(tmp_path / "missing.tar"), "--data-dir", node.agent_dir],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "missing.tar" in bad.stderr


def test_the_api_server_checks_agents_against_the_kubelet_certificate_authority(e2e_tmp):
    """With `--kubelet-certificate-authority`, the API server talks to an agent only when its
    serving certificate chains to that CA: the agents' CA (which signs the certificate of the
    agent `krust server` runs; the default) works, another CA is refused with a clear error."""
    workdir = Path(tempfile.mkdtemp(prefix="test_agent-kubelet-ca-", dir=e2e_tmp))
    other_ca = workdir / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(workdir / "other-ca.key"), "-out", str(other_ca),
                    "-subj", "/CN=another-ca", "-days", "1"], check=True, capture_output=True)
    node = Node(workdir, ["--reserved-cpu-millis", "250", "--reserved-memory-mib", "256",
                          "--reserved-ephemeral-storage-mib", "1024",
                          "--kubelet-certificate-authority", str(other_ca)])
    try:
        k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, workdir)
        # (This node also holds resources back: allocatable is capacity less them.)
        status = wait_for(lambda: k.json("get", "node", node.name)["status"], 30, interval=0.3,
                          what="the node")
        capacity, allocatable = status["capacity"], status["allocatable"]
        assert int(capacity["cpu"]) * 1000 - 250 == int(allocatable["cpu"].rstrip("m"))
        disk = int(allocatable["ephemeral-storage"]) + (1024 << 20)  # bytes; capacity is in Ki
        assert 0 <= disk - int(capacity["ephemeral-storage"].rstrip("Ki")) * 1024 < 1024
        reserved_memory = int(capacity["memory"].rstrip("Ki")) - int(allocatable["memory"].rstrip("Ki"))
        assert reserved_memory == (256 + 100) * 1024  # and the 100Mi eviction threshold
        ns = f"e2e-kubelet-ca-{rand_suffix()}"
        node.cluster.create_namespace(ns)
        apply(k, pod("talker", ns, node, [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "echo hello; sleep 3600"]}]))
        wait_pod(k, ns, "talker", lambda p: p["status"].get("phase") == "Running")
        refused = k.run("logs", "talker", "-n", ns)
        assert refused.returncode != 0 and "certificate" in refused.stderr, refused.stderr
        node.server.stop()
        node.server.extra_args[-1] = str(workdir / "data" / "tls" / "kubelet-ca.crt")
        node.server.start()
        wait_for(lambda: k.run("logs", "talker", "-n", ns).stdout.strip() == "hello", 30, interval=0.5,
                 what="the log through an agent the server trusts")
    finally:
        node.cleanup()


def test_kubectl_logs_through_the_api_server(node, k, ns):
    apply(k, pod("talker", ns, node, [
        {"name": "a", "image": IMAGE,
         "command": ["sh", "-c", "i=0; while [ $i -lt 6 ]; do echo a$i; i=$((i+1)); sleep 0.4; done; sleep 3600"]},
        {"name": "b", "image": IMAGE, "command": ["sh", "-c", "echo b-out; echo b-err >&2; sleep 3600"]},
    ]))
    wait_pod(k, ns, "talker", lambda p: p["status"].get("phase") == "Running")
    # Following streams lines as they are written.
    follow = k.background("logs", "-f", "talker", "-c", "a", "-n", ns)
    try:
        for i in range(6):
            follow.expect(rf"^a{i}$", timeout=20)
        assert follow.lines == [f"a{i}" for i in range(6)]
    finally:
        follow.stop()
    assert k("logs", "talker", "-c", "a", "-n", ns).splitlines() == [f"a{i}" for i in range(6)]
    assert k("logs", "talker", "-c", "a", "-n", ns, "--tail=2").splitlines() == ["a4", "a5"]
    stamped = k("logs", "talker", "-c", "a", "-n", ns, "--tail=1", "--timestamps").split()
    assert stamped[1] == "a5" and stamped[0].endswith("Z") and "T" in stamped[0]
    assert k("logs", "talker", "-c", "a", "-n", ns, "--limit-bytes=4") == "a0\na"
    assert k("logs", "talker", "-c", "a", "-n", ns, "--since=1h").splitlines()[0] == "a0"
    both = k("logs", "talker", "-c", "b", "-n", ns).splitlines()
    assert sorted(both) == ["b-err", "b-out"]
    everything = k("logs", "talker", "-n", ns, "--all-containers", "--prefix").splitlines()
    assert f"[pod/talker/a] a0" in everything and f"[pod/talker/b] b-out" in everything
    # Without a container the server says which there are (kubectl picks the first itself).
    answer = node.cluster.get(f"/api/v1/namespaces/{ns}/pods/talker/log")
    assert answer.status_code == 400
    assert "a container name must be specified for pod talker, choose one of: [a b]" in answer.json()["message"]
    assert "is not valid for pod talker" in k.fail("logs", "talker", "-c", "nope", "-n", ns)


def test_kubectl_logs_previous_shows_the_crashed_run(node, k, ns):
    apply(k, pod("flaky", ns, node, [{"name": "c", "image": IMAGE, "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                                      "command": ["sh", "-c", "n=$(cat /d/n 2>/dev/null || echo 0); echo run-at-$n; echo $((n+1)) > /d/n; exit 1"]}],
                 volumes=[{"name": "d", "emptyDir": {}}]))
    wait_pod(k, ns, "flaky", lambda p: status_of(p, "c")["restartCount"] >= 1
             and "waiting" in status_of(p, "c")["state"])
    previous = k("logs", "flaky", "-n", ns, "--previous").strip()
    current = k("logs", "flaky", "-n", ns).strip()
    assert previous.startswith("run-at-") and current.startswith("run-at-")
    assert previous != current
    apply(k, pod("unpulled", ns, node, [{"name": "c", "image": "127.0.0.1:9/absent:1"}]))
    wait_pod(k, ns, "unpulled", lambda p: "ImagePull" in status_of(p, "c")["state"].get("waiting", {}).get("reason", ""))
    assert re.search("is waiting to start: (ErrImagePull|ImagePullBackOff)", k.fail("logs", "unpulled", "-n", ns))


def test_kubectl_logs_of_a_deployment(node, k, ns):
    # No nodeName: the scheduler places the pod on the server's own node.
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "greeter", "namespace": ns},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "greeter"}},
                       "template": {"metadata": {"labels": {"app": "greeter"}},
                                    "spec": {"terminationGracePeriodSeconds": 1,
                                             "containers": [{"name": "c", "image": IMAGE,
                                                             "command": ["sh", "-c", "echo hello-from-deployment; sleep 3600"]}]}}}})
    try:
        wait_for(lambda: "hello-from-deployment" in k.run("logs", "deploy/greeter", "-n", ns).stdout, 60,
                 interval=0.5, what="the deployment's pod's log")
    except AssertionError as e:
        state = k.run("get", "deploy,rs,pods", "-n", ns, "-o", "wide").stdout
        described = k.run("describe", "pods", "-n", ns).stdout
        raise AssertionError(f"{e}\n{state}\n{described}\n{k.run('logs', 'deploy/greeter', '-n', ns)}") from None
    placed = json.loads(k("get", "pods", "-n", ns, "-l", "app=greeter", "-o", "json"))["items"]
    assert [p["spec"]["nodeName"] for p in placed] == [node.name]


def test_a_readiness_probe_flips_ready_both_ways(node, k, ns):
    apply(k, pod("gated", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "sleep 3600"],
        "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]},
                           "periodSeconds": 1, "failureThreshold": 1},
    }]))
    p = wait_pod(k, ns, "gated", lambda p: p["status"].get("phase") == "Running")
    assert status_of(p, "c")["ready"] is False
    assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "False"
    runtime_exec(node, p, "c", ["touch", "/tmp/ready"])
    wait_pod(k, ns, "gated", lambda p: status_of(p, "c")["ready"]
             and {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "True",
             timeout=20, what="ready")
    runtime_exec(node, p, "c", ["rm", "/tmp/ready"])
    wait_pod(k, ns, "gated", lambda p: not status_of(p, "c")["ready"], timeout=20, what="not ready")
    assert status_of(pod_json(k, ns, "gated"), "c")["restartCount"] == 0


def test_a_failing_liveness_probe_restarts_the_container(node, k, ns):
    apply(k, pod("sick", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "ports": [{"containerPort": 8080}],
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2},
    }, {
        "name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8081", "-h", "/"],
        "livenessProbe": {"httpGet": {"path": "/etc/hostname", "port": 8081}, "periodSeconds": 1},
        "startupProbe": {"httpGet": {"path": "/etc/hostname", "port": 8081}, "periodSeconds": 1, "failureThreshold": 30},
    }]))
    p = wait_pod(k, ns, "sick", lambda p: status_of(p, "c")["restartCount"] >= 1, timeout=60,
                 what="a restart after the failed liveness probe")
    # Nothing listens on 8080: the probe fails, the container is stopped and started again.
    assert status_of(p, "c")["lastState"]["terminated"]["exitCode"] == 0
    web = status_of(p, "web")
    assert web["restartCount"] == 0 and web["started"] is True and web["ready"] is True
    events = wait_events(k, ns, "sick", "Unhealthy", "Killing")
    assert ("Killing", "Container c failed liveness probe, will be restarted", "kubelet") in events
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed: ") for r, m, _ in events)


def test_probes_name_the_containers_ports(node, k, ns):
    """Probes may name a port of their container (`port: http`), as charts do."""
    apply(k, pod("named", ns, node, [{
        "name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8082", "-h", "/"],
        "ports": [{"name": "http", "containerPort": 8082}],
        "readinessProbe": {"httpGet": {"path": "/etc/hostname", "port": "http"},
                           "periodSeconds": 1},
        # Slack for a loaded machine: a slow start is no failure of the name.
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 5,
                          "periodSeconds": 2, "failureThreshold": 5},
    }]))
    p = wait_pod(k, ns, "named", lambda p: any(
        s["name"] == "web" and s.get("ready") for s in p["status"].get("containerStatuses", [])),
        timeout=60, what="ready through the named port")
    # The liveness probe finds the port too: the container keeps running.
    time.sleep(8)
    assert status_of(pod_json(k, ns, "named"), "web")["restartCount"] == 0


def runtime_exec(node, p, container, argv):
    """Runs a command in a container through the node's runtime command line, as a person
    on the node would (`krust runtime`, with runc's flags)."""
    uid = p["metadata"]["uid"]
    attempt = status_of(p, container)["restartCount"]
    subprocess.run([KRUST_BIN, "runtime", "--root", node.agent_dir / "youki", "exec",
                    f"{uid[:13]}-{container}-{attempt}", *argv],
                   check=True, capture_output=True, timeout=30)


def test_the_runtime_command_line_runs_in_and_reports_on_containers(node, k, ns):
    """`krust runtime`, the embedded runtime's command line, as a person on the node uses it."""
    apply(k, pod("looked-at", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    p = wait_pod(k, ns, "looked-at", lambda p: p["status"].get("phase") == "Running")
    container = f"{p['metadata']['uid'][:13]}-c-0"
    runtime = [KRUST_BIN, "runtime", "--root", str(node.agent_dir / "youki")]

    def run(*argv):
        return subprocess.run([*runtime, *argv], capture_output=True, text=True, timeout=30)
    state = json.loads(run("state", container).stdout)
    recorded = json.loads((node.agent_dir / "pods" / p["metadata"]["uid"] / "containers" / "c" / "0"
                           / "state.json").read_text())
    assert state["status"] == "Running" and state["pid"] == recorded["pid"], state
    # An exec'd process's exit code is the command's; the runtime's own failure is 255.
    assert run("exec", container, "sh", "-c", "echo $HOSTNAME; exit 7").returncode == 7
    missing = run("exec", container, "/no/such/binary")
    assert missing.returncode == 255 and "/no/such/binary" in missing.stderr, missing.stderr
    absent = run("state", "no-such-container")
    assert absent.returncode == 255 and absent.stderr.startswith("krust runtime: "), absent.stderr
    assert run("delete", "no-such-container").returncode == 255
    assert run("delete", "--force", "no-such-container").returncode == 0


def test_a_config_map_volume_follows_an_edit(node, k, ns):
    k("create", "configmap", "live", "-n", ns, "--from-literal=greeting=first")
    apply(k, pod("reader", ns, node, [{
        "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
    }], volumes=[{"name": "cfg", "configMap": {"name": "live"}}]))
    p = wait_pod(k, ns, "reader", lambda p: p["status"].get("phase") == "Running")
    read = lambda: subprocess.run(  # noqa: E731
        [KRUST_BIN, "runtime", "--root", node.agent_dir / "youki", "exec",
         f"{p['metadata']['uid'][:13]}-c-0", "cat", "/cfg/greeting"],
        capture_output=True, text=True, timeout=30).stdout
    assert read() == "first"
    k("patch", "configmap", "live", "-n", ns, "-p", '{"data": {"greeting": "second"}}')
    wait_for(lambda: read() == "second", 90, interval=1, what="the edit inside the container")


def test_pods_get_a_service_account_token_that_authenticates(node, k, ns):
    wait_for(lambda: k.run("get", "serviceaccount", "default", "-n", ns).returncode == 0, 30,
             what="the default service account")
    apply(k, pod("tokened", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && echo && "
                                "test -s ca.crt && echo has-ca && cat token && echo && sleep 3600"],
    }]))
    p = wait_pod(k, ns, "tokened", lambda p: p["status"].get("phase") == "Running")
    assert any(v["name"].startswith("kube-api-access-") for v in p["spec"]["volumes"])
    lines = wait_for(lambda: (lambda l: l if len(l) >= 3 else None)(k("logs", "tokened", "-n", ns).splitlines()),
                     20, interval=0.5, what="the token")
    assert lines[0] == ns and lines[1] == "has-ca"
    review = node.cluster.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {lines[2]}"}, session=node.cluster.creds.session(with_client_cert=False))
    assert review.status_code == 201, review.text
    info = review.json()["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:default"
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["tokened"]


def test_lifecycle_hooks_run_after_start_and_before_stop(node, k, ns):
    host_dir = node.workdir / f"hooks-{ns}"
    host_dir.mkdir()
    apply(k, pod("hooked", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "until test -e /data/post-start; do sleep 0.1; done; echo saw-post-start; "
                                "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo started > /data/post-start"]}},
                      "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /data/pre-stop"]}}},
    }], volumes=[{"name": "data", "hostPath": {"path": str(host_dir), "type": "Directory"}}],
        terminationGracePeriodSeconds=10))
    wait_pod(k, ns, "hooked", lambda p: p["status"].get("phase") == "Running")
    wait_for(lambda: "saw-post-start" in k("logs", "hooked", "-n", ns), 20, interval=0.5, what="the postStart hook")
    k("delete", "pod", "hooked", "-n", ns, timeout=60)
    assert (host_dir / "pre-stop").read_text().strip() == "stopping"


def test_a_sidecar_init_container_keeps_running_beside_the_app(node, k, ns):
    apply(k, pod("sidecar", ns, node, [
        {"name": "app", "image": IMAGE, "command": ["sleep", "3600"]},
    ], initContainers=[
        {"name": "side", "image": IMAGE, "restartPolicy": "Always", "command": ["sleep", "3600"]},
        {"name": "once", "image": IMAGE, "command": ["true"]},
    ]))
    p = wait_pod(k, ns, "sidecar", lambda p: p["status"].get("phase") == "Running"
                 and all(s["ready"] for s in p["status"].get("containerStatuses", [{"ready": False}])))
    inits = {s["name"]: s for s in p["status"]["initContainerStatuses"]}
    assert "running" in inits["side"]["state"]
    assert inits["once"]["state"]["terminated"]["reason"] == "Completed"


def test_sidecars_stop_once_the_app_containers_are_done(node, k, ns):
    """A Job-like pod (restartPolicy Never) with a sidecar: once the app container has
    succeeded, the sidecar gets its preStop hook and stop signal, and only then does the pod
    become Succeeded (upstream's sidecar containers)."""
    apply(k, pod("job-like", ns, node, [
        {"name": "app", "image": IMAGE, "command": ["sh", "-c", "sleep 2; echo done"]},
    ], initContainers=[
        {"name": "side", "image": IMAGE, "restartPolicy": "Always",
         "command": ["sh", "-c", "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done"],
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop > /proc/1/fd/1"]}}}},
    ], restartPolicy="Never", terminationGracePeriodSeconds=20))
    p = wait_pod(k, ns, "job-like", lambda p: p["status"].get("phase") == "Succeeded", timeout=60)
    side = p["status"]["initContainerStatuses"][0]
    assert "terminated" in side["state"] and side["restartCount"] == 0
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert k("logs", "job-like", "-n", ns, "-c", "side").split() == ["pre-stop", "got-term"]
    # As upstream's kubelet: a pod that succeeded stays Initialized, its stopped sidecar
    # notwithstanding, and is no longer Ready because it completed.
    conditions = {c["type"]: c for c in p["status"]["conditions"]}
    assert (conditions["Initialized"]["status"], conditions["Initialized"].get("reason")) == ("True", "PodCompleted")
    assert (conditions["Ready"]["status"], conditions["Ready"].get("reason")) == ("False", "PodCompleted")


def test_a_readiness_gate_holds_the_pod_not_ready_until_its_condition_is_true(node, k, ns):
    """`readinessGates`: the agent reports Ready only once the gate's condition, set by someone
    else through the status subresource, is True, and leaves that condition alone."""
    gate = "example.com/load-balancer"
    apply(k, pod("gated", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
                 readinessGates=[{"conditionType": gate}]))
    p = wait_pod(k, ns, "gated", lambda p: any(c["type"] == "ContainersReady" and c["status"] == "True"
                                               for c in p["status"].get("conditions", [])))
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert f'readiness gate "{gate}" does not exist' in ready["message"]
    patch = {"status": {"conditions": [{"type": gate, "status": "True"}]}}
    k("patch", "pod", "gated", "-n", ns, "--subresource=status", "--type=strategic", "-p", json.dumps(patch))
    p = wait_pod(k, ns, "gated", lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                               for c in p["status"].get("conditions", [])))
    assert next(c for c in p["status"]["conditions"] if c["type"] == gate)["status"] == "True"
    assert "1/1" in k("get", "pod", "gated", "-n", ns, "-o", "wide")
    k("delete", "pod", "gated", "-n", ns, "--wait=false")


def test_a_sidecars_startup_probe_holds_back_the_next_init_container(node, k, ns):
    mounts = [{"name": "record", "mountPath": "/record"}]
    apply(k, pod("gated", ns, node, [
        {"name": "app", "image": IMAGE, "command": ["sleep", "3600"], "volumeMounts": mounts},
    ], initContainers=[
        {"name": "side", "image": IMAGE, "restartPolicy": "Always", "volumeMounts": mounts,
         "command": ["sh", "-c", "sleep 3; echo side-started >> /record/order; touch /tmp/up; sleep 3600"],
         "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 1,
                          "failureThreshold": 30}},
        {"name": "once", "image": IMAGE, "command": ["sh", "-c", "echo once >> /record/order"],
         "volumeMounts": mounts},
    ], volumes=[{"name": "record", "emptyDir": {}}]))
    wait_pod(k, ns, "gated", lambda p: p["status"].get("phase") == "Running", timeout=90)
    assert k("exec", "gated", "-n", ns, "-c", "app", "--", "cat", "/record/order").split() == [
        "side-started", "once"]


def test_a_deleted_pod_stops_its_sidecars_after_its_app_containers(node, k, ns):
    """Upstream's order on deletion: the app containers first, then the sidecars in the
    reverse of their order, each with its preStop hook."""
    record = node.workdir / f"order-{rand_suffix()}"
    trap = "trap 'echo {0} >> /record/order; exit 0' TERM; while true; do sleep 0.1; done"
    mounts = [{"name": "record", "mountPath": "/record"}]
    apply(k, pod("ordered", ns, node, [
        {"name": "app", "image": IMAGE, "command": ["sh", "-c", trap.format("app")], "volumeMounts": mounts},
    ], initContainers=[
        {"name": f"side{i}", "image": IMAGE, "restartPolicy": "Always", "volumeMounts": mounts,
         "command": ["sh", "-c", trap.format(f"side{i}")],
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", f"echo pre-stop-side{i} >> /record/order"]}}}}
        for i in (1, 2)
    ], volumes=[{"name": "record", "hostPath": {"path": str(record), "type": "DirectoryOrCreate"}}],
        terminationGracePeriodSeconds=20))
    try:
        wait_pod(k, ns, "ordered", lambda p: all(s.get("ready") for s in p["status"].get("containerStatuses", [{}])))
        k("delete", "pod", "ordered", "-n", ns, timeout=60)
        assert (record / "order").read_text().split() == [
            "app", "pre-stop-side2", "side2", "pre-stop-side1", "side1"]
    finally:
        shutil.rmtree(record, ignore_errors=True)


def test_termination_messages_come_from_the_file_or_the_log(node, k, ns):
    apply(k, pod("messages", ns, node, [
        {"name": "file", "image": IMAGE, "command": ["sh", "-c", "echo -n all-done > /dev/termination-log"]},
        {"name": "custom", "image": IMAGE, "terminationMessagePath": "/tmp/why",
         "command": ["sh", "-c", "echo -n custom-path > /tmp/why; exit 3"]},
        {"name": "fallback", "image": IMAGE, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "for i in $(seq 1 100); do echo line-$i; done; exit 1"]},
        {"name": "quiet", "image": IMAGE, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo not-a-failure"]},
    ], restartPolicy="Never"))
    p = wait_pod(k, ns, "messages", lambda p: p["status"].get("phase") == "Failed", timeout=60)
    ended = {s["name"]: s["state"]["terminated"] for s in p["status"]["containerStatuses"]}
    assert ended["file"]["message"] == "all-done" and ended["file"]["exitCode"] == 0
    assert ended["custom"]["message"] == "custom-path" and ended["custom"]["exitCode"] == 3
    # The log's last 80 lines.
    assert ended["fallback"]["message"].split() == [f"line-{i}" for i in range(21, 101)]
    assert "message" not in ended["quiet"]


def test_container_logs_are_rotated_by_size(node, k, ns):
    apply(k, pod("chatty", ns, node, [{
        "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "echo first-line; head -c 11000000 /dev/zero | tr '\\\\0' x; echo; echo the-end; sleep 3600"],
    }]))
    p = wait_pod(k, ns, "chatty", lambda p: p["status"].get("phase") == "Running")
    wait_for(lambda: k("logs", "chatty", "-n", ns, "--tail=1").strip() == "the-end", 60, interval=0.5,
             what="the last line after the rotation")
    logs = node.agent_dir / "logs" / f"{ns}_chatty_{p['metadata']['uid']}" / "c"
    assert (logs / "0.log.1").exists()
    assert (logs / "0.log").stat().st_size < 10 << 20
    # The rotated file's lines come first, as the kubelet reads rotated logs.
    assert k("logs", "chatty", "-n", ns, "--limit-bytes=11") == "first-line\n"


def test_krust_agent_runs_alone_against_a_server_without_one(e2e_tmp):
    """An agent of its own, on runc (`--oci-runtime runc`) rather than the embedded runtime."""
    from conftest import reap, spawn
    workdir = Path(tempfile.mkdtemp(prefix="test_agent-alone-", dir=e2e_tmp))
    name, bridge = f"e2e-alone-{rand_suffix()}", f"kt{rand_suffix(4)}"
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--node-name", name]
    server.start()
    cluster = Cluster(server, None)
    (workdir / "images").mkdir()
    busybox_archive(str(workdir / "images" / "busybox.tar"), IMAGE)
    agent_dir = workdir / "agent"
    argv = [KRUST_BIN, "agent", "--kubeconfig", workdir / "data" / "agent.kubeconfig", "--data-dir", agent_dir,
            "--images", workdir / "images", "--node-name", name, "--bridge", bridge,
            "--pod-cidr", f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24",
            "--node-ip", "127.0.0.1", "--agent-port", str(free_port()),
            "--cluster-dns", f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.10",
            "--oci-runtime", "runc"]
    log = open(workdir / "agent.log", "ab")
    agent = spawn(list(map(str, argv)), stdout=log, stderr=log)
    k = Kubectl(KUBECTL_VERSIONS[-1], cluster, workdir)
    try:
        try:
            wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                                 k.json("get", "node", name).get("status", {}).get("conditions", [])),
                     30, interval=0.3, what="the node of the agent alone")
        except AssertionError as e:
            raise AssertionError(f"{e}\nthe agent's log:\n{tail(workdir / 'agent.log', max_lines=40)}") from None
        ns = f"e2e-alone-{rand_suffix()}"
        cluster.create_namespace(ns)
        apply(k, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": ns},
                  "spec": {"nodeName": name, "terminationGracePeriodSeconds": 1,
                           "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "echo alone; sleep 3600"]}]}})
        p = wait_pod(k, ns, "solo", lambda p: p["status"].get("phase") == "Running")
        wait_for(lambda: k("logs", "solo", "-n", ns).strip() == "alone", 20, interval=0.5, what="its log")
        assert k("exec", "solo", "-n", ns, "--", "sh", "-c", "echo via-$((1+1))").strip() == "via-2"
        # The server checks agents against the agents' CA by default: the agent asked the cluster
        # for its serving certificate, which krust's approver approved for the node's own names,
        # and which the cluster CA (what pods and clients trust) does not vouch for.
        own = [c for c in k.json("get", "csr")["items"]
               if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
               and c["spec"]["username"] == f"system:node:{name}"]
        assert own and own[0]["status"].get("certificate"), own
        assert [c["reason"] for c in own[0]["status"]["conditions"] if c["type"] == "Approved"] == ["AutoApproved"]
        def verify(ca):
            return subprocess.run(["openssl", "verify", "-CAfile", str(workdir / "data" / "tls" / ca),
                                   str(agent_dir / "pki" / "serving.crt")], capture_output=True, text=True)
        verified = verify("kubelet-ca.crt")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verify("ca.crt").returncode != 0
        assert (agent_dir / "pki" / "serving.key").stat().st_mode & 0o777 == 0o600
        serial = subprocess.run(["openssl", "x509", "-noout", "-in", str(agent_dir / "pki" / "serving.crt"), "-serial"],
                                capture_output=True, text=True, check=True).stdout
        # A request of the node's naming another name is left pending, for a person to decide.
        key = workdir / "foreign.key"
        request = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                  "-nodes", "-keyout", str(key), "-subj", f"/O=system:nodes/CN=system:node:{name}",
                                  "-addext", "subjectAltName=DNS:kubernetes.default.svc"],
                                 capture_output=True, check=True).stdout
        foreign = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                   "metadata": {"name": f"foreign-{name}"},
                   "spec": {"request": base64.b64encode(request).decode(), "signerName": "kubernetes.io/kubelet-serving",
                            "usages": ["digital signature", "server auth"]}}
        k("create", "-f", "-", input=json.dumps(foreign), kubeconfig=str(workdir / "data" / "agent.kubeconfig"))
        time.sleep(3)
        assert k.json("get", "csr", f"foreign-{name}").get("status", {}).get("conditions") is None
        container_id = f"{p['metadata']['uid'][:13]}-c-0"
        assert (agent_dir / "runc" / container_id).is_dir() and not (agent_dir / "youki").exists()
        state = agent_dir / "pods" / p["metadata"]["uid"] / "containers" / "c" / "0" / "state.json"
        pid = json.loads(state.read_text())["pid"]
        # The agent alone dies; its container does not, and the next agent adopts it.
        agent.kill()
        agent.wait(10)
        assert os.path.exists(f"/proc/{pid}")
        agent = spawn(list(map(str, argv)), stdout=log, stderr=log)
        time.sleep(2)
        p = wait_pod(k, ns, "solo", lambda p: p["status"].get("phase") == "Running")
        assert status_of(p, "c")["restartCount"] == 0 and json.loads(state.read_text())["pid"] == pid
        # The new agent serves the certificate it kept: no new request.
        def own_requests():
            return [c for c in k.json("get", "csr")["items"]
                    if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                    and c["spec"]["username"] == f"system:node:{name}"
                    and not c["metadata"]["name"].startswith("foreign-")]
        assert len(own_requests()) == 1
        # One kept from another cluster is not served: the agent asks this one anew.
        agent.kill()
        agent.wait(10)
        (agent_dir / "pki" / "serving.cluster").write_text("0" * 64)
        agent = spawn(list(map(str, argv)), stdout=log, stderr=log)
        wait_for(lambda: len(own_requests()) == 2, 30, interval=0.5, what="a new serving certificate request")
        wait_for(lambda: subprocess.run(["openssl", "x509", "-noout", "-in", str(agent_dir / "pki" / "serving.crt"),
                                         "-serial"], capture_output=True, text=True).stdout != serial, 30,
                 interval=0.5, what="the new certificate kept")
        k("delete", "pod", "solo", "-n", ns, timeout=60)
        assert not os.path.exists(f"/proc/{pid}")
    finally:
        reap(agent, signal.SIGKILL, timeout=10)
        server.stop(signal.SIGKILL)
        for point in sorted(_mounts_under(workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if shutil.which("ip"):
            for link in (bridge, f"{bridge}-dns"):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        if shutil.which("nft"):
            for table in ("proxy", "policy"):
                subprocess.run(["nft", "delete", "table", "ip", f"{bridge}-{table}"], capture_output=True)


def test_containers_of_a_pod_can_share_its_process_namespace(node, k, ns):
    apply(k, pod("shared", ns, node, [
        {"name": "a", "image": IMAGE, "command": ["sleep", "3601"]},
        {"name": "b", "image": IMAGE, "command": ["sh", "-c", "while true; do ps; sleep 1; done"]},
    ], shareProcessNamespace=True))
    wait_pod(k, ns, "shared", lambda p: p["status"].get("phase") == "Running")
    wait_for(lambda: "sleep 3601" in k("logs", "shared", "-c", "b", "-n", ns), 20, interval=0.5,
             what="the other container's process")
    k("delete", "pod", "shared", "-n", ns, timeout=60)
    holders = [l for l in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
               if l.endswith(" pause") and "krust" in l]
    assert holders == [], holders
