"""The scheduler on simulated nodes (issue 17): resource fit, node affinity, taints, pod
anti-affinity, topology spread, preemption, the message of a pod that fits nowhere, node
lifecycle (a node that stops reporting is tainted and its pods move), and `kubectl drain`
with a PodDisruptionBudget. Checked with kubectl 1.33.

One server runs the scheduler and the controllers; `krust agent --simulate` registers six
nodes from a file of node groups and reports the pods bound to them Running."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import (KRUST_BIN, Cluster, KrustServer, Kubectl, reap, spawn, wait_for)

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"

# Six nodes: one large, four small over two zones, one large with a GPU taint.
GROUPS = [
    {"prefix": "big", "count": 1, "cpu": "8", "memory": "16Gi",
     "labels": {"size": "big", ZONE: "zone-a"}},
    {"prefix": "small-a", "count": 2, "cpu": "2", "memory": "4Gi",
     "labels": {"size": "small", ZONE: "zone-a"}},
    {"prefix": "small-b", "count": 2, "cpu": "2", "memory": "4Gi",
     "labels": {"size": "small", ZONE: "zone-b"}},
    {"prefix": "gpu", "count": 1, "cpu": "8", "memory": "16Gi",
     "labels": {"gpu": "true", ZONE: "zone-b"}, "taints": ["gpu=true:NoSchedule"]},
]
NODES = ["big-0", "small-a-0", "small-a-1", "small-b-0", "small-b-1", "gpu-0"]

# The default profile, and one that packs pods onto the fullest node that fits.
PROFILES = {
    "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
    "profiles": [
        # VolumeBinding is among the default plugins.
        {"schedulerName": "default-scheduler"},
        {"schedulerName": "packer",
         "plugins": {"score": {"disabled": [{"name": "*"}],
                               "enabled": [{"name": "NodeResourcesFit", "weight": 1}]}},
         "pluginConfig": [{"name": "NodeResourcesFit",
                           "args": {"scoringStrategy": {"type": "MostAllocated"}}}]},
    ],
}


@pytest.fixture(scope="module")
def sim(e2e_tmp):
    """A cluster with the scheduler on, and six simulated nodes."""
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-", dir=e2e_tmp))
    server = KrustServer(workdir, "embedded", None)
    server.scheduler = True
    profiles = workdir / "scheduler.yaml"
    profiles.write_text(yaml.safe_dump(PROFILES))
    server.extra_args = ["--scheduler-config", profiles]
    server.start()
    cluster = Cluster(server, None)
    config = workdir / "nodes.yaml"
    config.write_text(yaml.safe_dump({"groups": GROUPS}))
    log = open(workdir / "simulate.log", "ab")
    agent = spawn([KRUST_BIN, "agent", "--simulate", "0", "--simulate-config", config,
                   "--kubeconfig", server.kubeconfig], stdout=log, stderr=log)
    try:
        k = Kubectl("1.33", cluster, workdir)

        def ready():
            nodes = json.loads(k("get", "nodes", "-o", "json"))["items"]
            ok = [n["metadata"]["name"] for n in nodes
                  if any(c["type"] == "Ready" and c["status"] == "True"
                         for c in n["status"].get("conditions", []))
                  and not any(t["key"].startswith("node.kubernetes.io/")
                              for t in n["spec"].get("taints", []))]
            return sorted(ok) == sorted(NODES)

        try:
            wait_for(ready, 60, 0.5, what="six simulated nodes Ready and untainted")
        except AssertionError:
            print(k("get", "nodes", "-o", "custom-columns=NAME:.metadata.name,"
                    "TAINTS:.spec.taints,CONDITIONS:.status.conditions"))
            print(k("get", "leases", "-A"))
            raise
        yield cluster, k
    finally:
        reap(agent, signal.SIGTERM)
        log.close()
        server.stop(signal.SIGTERM, timeout=15)


def pod(name, cpu="100m", memory="64Mi", **spec):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
                     "terminationGracePeriodSeconds": 0, **spec}}
    return body


def deployment(name, replicas, **spec):
    template_spec = {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                     "terminationGracePeriodSeconds": 0, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}}}


def apply(k, ns, *objects):
    k("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(objects))


def node_of(k, ns, name, timeout=30):
    return wait_for(lambda: json.loads(k("get", "pod", name, "-n", ns, "-o", "json"))
                    ["spec"].get("nodeName"), timeout, 0.2, what=f"pod {name} bound")


def placed(k, ns, selector, count, timeout=60):
    """The nodes of the `count` Running pods that `selector` selects."""
    def nodes():
        items = json.loads(k("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") == "Running"]
        return [p["spec"]["nodeName"] for p in live] if len(live) == count else None
    return wait_for(nodes, timeout, 0.3, what=f"{count} pods of {selector} running")


def cleanup(k, ns):
    k("delete", "deployments,pods,poddisruptionbudgets", "--all", "-n", ns, "--grace-period=0",
      "--force", "--wait=false")
    wait_for(lambda: not json.loads(k("get", "pods", "-n", ns, "-o", "json"))["items"], 60, 0.3,
             what="the namespace's pods gone")


@pytest.fixture
def space(sim, request):
    cluster, k = sim
    name = f"sched-{request.node.originalname.removeprefix('test_')[:30].replace('_', '-')}"
    k("create", "namespace", name)
    yield cluster, k, name
    cleanup(k, name)
    k("delete", "namespace", name, "--wait=false")


def test_resources_decide_the_node(space):
    _, k, ns = space
    apply(k, ns, pod("large", cpu="6"))
    assert node_of(k, ns, "large") == "big-0"
    events = k("get", "events", "-n", ns, "--field-selector", "reason=Scheduled", "-o", "json")
    notes = [e["message"] for e in json.loads(events)["items"]]
    assert f"Successfully assigned {ns}/large to big-0" in notes


def test_a_pod_too_large_for_any_node_stays_pending_and_says_why(space):
    _, k, ns = space
    apply(k, ns, pod("huge", cpu="20"))
    want = ("0/6 nodes are available: 1 node(s) had untolerated taint {gpu: true}, "
            "5 Insufficient cpu. preemption: 0/6 nodes are available: "
            "1 Preemption is not helpful for scheduling, "
            "5 No preemption victims found for incoming pod.")

    def condition():
        got = json.loads(k("get", "pod", "huge", "-n", ns, "-o", "json"))
        for c in got["status"].get("conditions", []):
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return c
        return None

    c = wait_for(condition, 30, 0.2, what="PodScheduled=False")
    assert c["reason"] == "Unschedulable"
    assert c["message"] == want
    described = k("describe", "pod", "huge", "-n", ns)
    assert "FailedScheduling" in described and "default-scheduler" in described
    assert "Insufficient cpu" in described
    assert json.loads(k("get", "pod", "huge", "-n", ns, "-o", "json"))["status"]["phase"] == "Pending"
    # Beyond upstream: node by node, which plugin refused and the smallest change.
    cluster = space[0]
    p = subprocess.run([KRUST_BIN, "explain-pending", "huge", "-n", ns, "--kubeconfig",
                        cluster.kubeconfig], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"Pod {ns}/huge: fits 0 of 6 nodes."), out
    assert "NodeResourcesFit" in out and "TaintToleration" in out, out
    assert "node(s) had untolerated taint {gpu: true}" in out, out
    # The large untainted node needs one change; the tainted one would need two.
    assert "Smallest change: on node big-0:\n  - free 12 of cpu (the pod asks 20, 8 is free of 8)" in out


def test_node_affinity_pins_a_pod(space):
    _, k, ns = space
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOST, "operator": "In", "values": ["small-b-1"]}]}]}}}
    apply(k, ns, pod("pinned", affinity=affinity))
    assert node_of(k, ns, "pinned") == "small-b-1"


def test_a_tainted_node_is_avoided_unless_tolerated(space):
    _, k, ns = space
    apply(k, ns, deployment("plain", 6))
    assert "gpu-0" not in placed(k, ns, "app=plain", 6)
    toleration = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    apply(k, ns, pod("tolerant", tolerations=toleration, nodeSelector={"gpu": "true"}))
    assert node_of(k, ns, "tolerant") == "gpu-0"


def test_anti_affinity_spreads_replicas_one_per_node(space):
    _, k, ns = space
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": HOST}]}}
    apply(k, ns, deployment("spread", 5, affinity=anti))
    nodes = placed(k, ns, "app=spread", 5)
    assert len(set(nodes)) == 5 and "gpu-0" not in nodes


def test_pod_affinity_finds_pods_in_namespaces_by_their_labels(space):
    """A term's `namespaceSelector` with labels selects the namespaces that carry them."""
    _, k, ns = space
    other = f"{ns[:40]}-db"
    k("create", "namespace", other)
    try:
        k("label", "namespace", other, f"team={ns[:40]}")
        pinned = pod("db", nodeSelector={HOST: "small-b-1"})
        apply(k, other, pinned)
        assert node_of(k, other, "db") == "small-b-1"

        def near(name, team):
            return pod(name, affinity={"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "namespaceSelector": {"matchLabels": {"team": team}},
                    "topologyKey": HOST}]}})

        apply(k, ns, near("near", ns[:40]), near("nowhere", "nobody"))
        assert node_of(k, ns, "near") == "small-b-1"
        # No namespace carries team=nobody: nothing to be near, so the pod waits.
        time.sleep(2)
        waiting = json.loads(k("get", "pod", "nowhere", "-n", ns, "-o", "json"))
        assert not waiting["spec"].get("nodeName"), waiting["spec"]
    finally:
        k("delete", "namespace", other, "--wait=false")


def test_topology_spread_balances_zones(space):
    _, k, ns = space
    constraint = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                   "labelSelector": {"matchLabels": {"app": "zoned"}}}]
    apply(k, ns, deployment("zoned", 6, topologySpreadConstraints=constraint,
                            nodeSelector={"size": "small"}))
    nodes = placed(k, ns, "app=zoned", 6)
    zones = [("zone-a" if n.startswith("small-a") else "zone-b") for n in nodes]
    assert zones.count("zone-a") == 3 and zones.count("zone-b") == 3, nodes


def test_a_high_priority_pod_preempts_a_low_priority_one(space):
    _, k, ns = space
    classes = [{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": f"{ns}-{name}"}, "value": value}
               for name, value in (("low", 10), ("high", 1000))]
    k("apply", "-f", "-", input=yaml.safe_dump_all(classes))
    try:
        target = {HOST: "small-a-0"}
        apply(k, ns, pod("low", cpu="1500m", nodeSelector=target, priorityClassName=f"{ns}-low"))
        assert node_of(k, ns, "low") == "small-a-0"
        placed(k, ns, "app=low", 1)
        apply(k, ns, pod("high", cpu="1500m", nodeSelector=target, priorityClassName=f"{ns}-high"))
        assert node_of(k, ns, "high", timeout=60) == "small-a-0"
        wait_for(lambda: k.run("get", "pod", "low", "-n", ns).returncode != 0, 30, 0.3,
                 what="the low-priority pod gone")
        events = json.loads(k("get", "events", "-n", ns, "-o", "json"))["items"]
        preempted = [e for e in events if e.get("reason") == "Preempted"]
        assert preempted and f"Preempted by {ns}/high on node small-a-0" in preempted[0]["message"]
    finally:
        k("delete", "priorityclass", f"{ns}-low", f"{ns}-high", "--ignore-not-found")


def test_a_node_that_stops_reporting_is_tainted_and_its_pods_move(space):
    _, k, ns = space
    tolerations = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 10}]
    apply(k, ns, deployment("mover", 1, tolerations=tolerations, nodeSelector={"size": "small"}))
    first = placed(k, ns, "app=mover", 1)[0]
    original = json.loads(k("get", "pods", "-n", ns, "-l", "app=mover", "-o", "json"))["items"][0]
    k("annotate", "node", first, "krust.dev/simulate-heartbeat=stopped")
    try:
        def unreachable():
            node = json.loads(k("get", "node", first, "-o", "json"))
            keys = {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}
            return ("node.kubernetes.io/unreachable", "NoExecute") in keys
        wait_for(unreachable, 90, 1, what=f"{first} tainted unreachable")
        ready = [c for c in json.loads(k("get", "node", first, "-o", "json"))["status"]["conditions"]
                 if c["type"] == "Ready"][0]
        assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"

        # Its pod is marked not ready while it waits out its toleration.
        def not_ready():
            pod = json.loads(k("get", "pod", original["metadata"]["name"], "-n", ns, "-o", "json"))
            return any(c["type"] == "Ready" and c["status"] == "False"
                       for c in pod["status"].get("conditions", []))
        wait_for(not_ready, 10, 0.5, what="the pod on the silent node marked not ready")

        def moved():
            nodes = placed(k, ns, "app=mover", 1, timeout=5)
            return nodes[0] != first and nodes
        wait_for(moved, 60, 1, what="the pod evicted and placed on another node")
    finally:
        k("annotate", "node", first, "krust.dev/simulate-heartbeat-")

    def healthy():
        node = json.loads(k("get", "node", first, "-o", "json"))
        return not any(t["key"].startswith("node.kubernetes.io/")
                       for t in node["spec"].get("taints", []))
    wait_for(healthy, 60, 1, what=f"{first} reporting and untainted again")


def test_drain_respects_a_disruption_budget(space):
    _, k, ns = space
    toward = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": HOST, "operator": "In", "values": ["small-b-0"]}]}}]}}
    apply(k, ns, deployment("guarded", 2, nodeSelector={"size": "small"}, affinity=toward),
          {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}})
    assert placed(k, ns, "app=guarded", 2) == ["small-b-0", "small-b-0"]

    # The disruption controller keeps the budget's status.
    def budget(allowed):
        status = json.loads(k("get", "pdb", "guarded", "-n", ns, "-o", "json")).get("status", {})
        return (status.get("expectedPods"), status.get("currentHealthy"),
                status.get("desiredHealthy"), status.get("disruptionsAllowed")) == (2, 2, 2, allowed)
    wait_for(lambda: budget(0), 20, 0.5, what="the budget's status: no disruption allowed")
    try:
        p = k.run("drain", "small-b-0", "--ignore-daemonsets", "--timeout=6s",
                  "--pod-selector=app=guarded", timeout=60)
        assert p.returncode != 0
        assert "disruption budget" in p.stderr + p.stdout
        assert json.loads(k("get", "node", "small-b-0", "-o", "json"))["spec"].get("unschedulable")
        assert placed(k, ns, "app=guarded", 2) == ["small-b-0", "small-b-0"]
        # With room for one disruption the drain completes, one pod at a time: each evicted
        # pod is replaced on another node before the next may go.
        k("patch", "pdb", "guarded", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
        wait_for(lambda: json.loads(k("get", "pdb", "guarded", "-n", ns, "-o", "json"))["status"]
                 .get("disruptionsAllowed") == 1, 20, 0.5, what="one disruption allowed")
        out = k("drain", "small-b-0", "--ignore-daemonsets", "--timeout=90s",
                "--pod-selector=app=guarded", timeout=120)
        assert "drained" in out
        nodes = placed(k, ns, "app=guarded", 2, timeout=60)
        assert "small-b-0" not in nodes
    finally:
        k("uncordon", "small-b-0")
        # The node lifecycle controller lifts the unschedulable taint as the node changes.
        wait_for(lambda: not json.loads(k("get", "node", "small-b-0", "-o", "json"))["spec"]
                 .get("taints"), timeout=20, interval=0.5)


def test_profiles_by_scheduler_name(space):
    _, k, ns = space
    # The default profile spreads; the packing profile puts every pod on one small node.
    packed = deployment("packed", 4, schedulerName="packer", nodeSelector={"size": "small"})
    apply(k, ns, packed)
    nodes = placed(k, ns, "app=packed", 4)
    assert len(set(nodes)) == 1, nodes
    spread = deployment("spread-default", 3, nodeSelector={"size": "small"})
    apply(k, ns, spread)
    others = placed(k, ns, "app=spread-default", 3)
    assert len(set(others)) == 3 and nodes[0] not in others, (nodes, others)
    # A pod for a scheduler that does not run is left alone.
    apply(k, ns, pod("elsewhere", schedulerName="someone-else"))
    time.sleep(2)
    got = json.loads(k("get", "pod", "elsewhere", "-n", ns, "-o", "json"))
    assert not got["spec"].get("nodeName")
    assert not any(c["type"] == "PodScheduled" for c in got["status"].get("conditions", []))


def pending_message(k, ns, name, timeout=30):
    """The message of the pod's PodScheduled=False condition, once it has one."""
    def condition():
        got = json.loads(k("get", "pod", name, "-n", ns, "-o", "json"))
        return next((c["message"] for c in got["status"].get("conditions", [])
                     if c["type"] == "PodScheduled" and c["status"] == "False"), None)
    return wait_for(condition, timeout, 0.2, what=f"{name} PodScheduled=False")


def local_volume(name, node, size="1Gi", claim=None, cls="local-wait"):
    spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": cls, "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": f"/mnt/{name}"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOST, "operator": "In", "values": [node]}]}]}}}
    if claim:
        spec["claimRef"] = claim
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": spec}


def claim(name, cls="local-wait", volume=None):
    spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "resources": {"requests": {"storage": "1Gi"}}}
    metadata = {"name": name}
    if volume:
        # bound, as the volume binder completes a binding
        spec["volumeName"] = volume
        metadata["annotations"] = {"pv.kubernetes.io/bind-completed": "yes"}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
            "spec": spec}


def with_claim(name, claim_name):
    return pod(name, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}])


def test_a_pod_whose_claim_is_missing_waits_and_says_why(space):
    _, k, ns = space
    apply(k, ns, with_claim("needs-data", "missing"))
    assert 'persistentvolumeclaim "missing" not found' in pending_message(k, ns, "needs-data")
    # Creating the claim (bound by hand to a volume on one node) lets it go there.
    volume = f"{ns}-pinned"
    k("apply", "-f", "-", input=yaml.safe_dump(local_volume(
        volume, "small-a-1", claim={"namespace": ns, "name": "missing"}, cls="")))
    try:
        apply(k, ns, claim("missing", cls="", volume=volume))
        assert node_of(k, ns, "needs-data", timeout=30) == "small-a-1"
    finally:
        cleanup(k, ns)
        k("delete", "pvc", "--all", "-n", ns, "--wait=false")
        k("delete", "pv", volume, "--wait=false")


def test_an_unbound_immediate_claim_keeps_its_pod_pending(space):
    _, k, ns = space
    apply(k, ns, claim("later", cls=""), with_claim("waits", "later"))
    try:
        assert "pod has unbound immediate PersistentVolumeClaims" in pending_message(k, ns, "waits")
    finally:
        cleanup(k, ns)
        k("delete", "pvc", "--all", "-n", ns, "--wait=false")


def test_a_delayed_claim_binds_where_its_pod_goes(space):
    cluster, k, ns = space
    cls = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": f"{ns}-wait"}, "provisioner": "kubernetes.io/no-provisioner",
           "volumeBindingMode": "WaitForFirstConsumer"}
    volumes = [local_volume(f"{ns}-on-b0", "small-b-0", cls=f"{ns}-wait"),
               local_volume(f"{ns}-on-a0", "small-a-0", size="5Gi", cls=f"{ns}-wait")]
    k("apply", "-f", "-", input=yaml.safe_dump_all([cls, *volumes]))
    try:
        wait_for(lambda: all(json.loads(k("get", "pv", v["metadata"]["name"], "-o", "json"))
                             ["status"].get("phase") == "Available" for v in volumes),
                 30, 0.3, what="the volumes Available")
        apply(k, ns, claim("data", cls=f"{ns}-wait"))
        time.sleep(1)
        # not bound until a pod uses it
        got = json.loads(k("get", "pvc", "data", "-n", ns, "-o", "json"))
        assert got["status"].get("phase") == "Pending", got
        # the pod must run in zone-b, where only small-b-0 has a volume
        body = with_claim("zoned", "data")
        body["spec"]["nodeSelector"] = {ZONE: "zone-b"}
        apply(k, ns, body)
        assert node_of(k, ns, "zoned", timeout=60) == "small-b-0"
        bound = wait_for(lambda: (lambda c: c if c["status"].get("phase") == "Bound" else None)(
            json.loads(k("get", "pvc", "data", "-n", ns, "-o", "json"))), 30, 0.3,
            what="the claim bound")
        assert bound["spec"]["volumeName"] == f"{ns}-on-b0"
        pv = json.loads(k("get", "pv", f"{ns}-on-b0", "-o", "json"))
        assert pv["spec"]["claimRef"]["name"] == "data" and pv["status"]["phase"] == "Bound"
    finally:
        cleanup(k, ns)
        k("delete", "pvc", "--all", "-n", ns, "--wait=false")
        k("delete", "pv", *[v["metadata"]["name"] for v in volumes], "--wait=false")
        k("delete", "storageclass", f"{ns}-wait", "--wait=false")


def test_a_bad_scheduler_configuration_is_refused_clearly(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
                      "profiles:\n- schedulerName: a\n  plugins:\n    filter:\n      enabled:\n"
                      "      - name: NoSuchPlugin\n")
    p = subprocess.run([KRUST_BIN, "scheduler", "--kubeconfig", tmp_path / "absent",
                        "--config", config], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert 'no plugin named "NoSuchPlugin"' in p.stderr
