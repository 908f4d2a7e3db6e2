"""The DaemonSet controller (in `krust-controllers`) on simulated nodes with the scheduler:
a pod on every node that admits it (taints and node selectors heeded), a new node gets its
pod, a rolling update within maxUnavailable, `kubectl rollout status|history|undo` (kubectl
1.33 and 1.27), and deletion taking the pods along."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import KRUST_BIN, Cluster, KrustServer, Kubectl, reap, spawn, wait_for

GROUPS = [
    {"prefix": "ds-plain", "count": 3, "cpu": "4", "memory": "8Gi"},
    {"prefix": "ds-infra", "count": 1, "cpu": "4", "memory": "8Gi",
     "taints": ["dedicated=infra:NoSchedule"]},
]
LATE = [{"prefix": "ds-late", "count": 1, "cpu": "4", "memory": "8Gi"}]


def simulate(workdir, server, groups, name):
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"groups": groups}))
    log = open(workdir / f"{name}.log", "ab")
    proc = spawn([KRUST_BIN, "agent", "--simulate", "0", "--simulate-config", config,
                  "--kubeconfig", server.kubeconfig], stdout=log, stderr=log)
    return proc, log


@pytest.fixture(scope="module")
def sim(e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix="daemonset-", dir=e2e_tmp))
    server = KrustServer(workdir, "embedded", None)
    server.scheduler = True
    server.start()
    cluster = Cluster(server, None)
    agents = [simulate(workdir, server, GROUPS, "nodes")]
    try:
        k = Kubectl("1.33", cluster, workdir)
        wait_for(lambda: len(ready_nodes(k)) == 4, 60, 0.5, what="four simulated nodes Ready")
        yield cluster, k, workdir, agents
    finally:
        for proc, log in agents:
            reap(proc, signal.SIGTERM)
            log.close()
        server.stop(signal.SIGTERM, timeout=15)


def ready_nodes(k):
    nodes = json.loads(k("get", "nodes", "-o", "json"))["items"]
    return [n["metadata"]["name"] for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in n["status"].get("conditions", []))]


def daemonset(name, **spec):
    template_spec = {"containers": [{"name": "c", "image": "registry.local/pause:1"}],
                     "terminationGracePeriodSeconds": 0, **spec}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}}}


def pods(k, ns, app):
    items = json.loads(k("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "json"))["items"]
    return [p for p in items if "deletionTimestamp" not in p["metadata"]]


def nodes_of(k, ns, app):
    return sorted(p["spec"].get("nodeName", "") for p in pods(k, ns, app))


def images(k, ns, app):
    return sorted({p["spec"]["containers"][0]["image"] for p in pods(k, ns, app)})


def test_daemonsets_follow_nodes_and_roll(sim):
    cluster, k, workdir, agents = sim
    ns = "ds-e2e"
    cluster.create_namespace(ns)
    k("apply", "-n", ns, "-f", "-", input=json.dumps(daemonset("agent")))
    plain = ["ds-plain-0", "ds-plain-1", "ds-plain-2"]
    try:
        wait_for(lambda: nodes_of(k, ns, "agent") == plain, 60, 0.5,
                 what="a pod on each untainted node, none on the tainted one")
    except AssertionError:
        print(k("get", "pods,nodes,ds", "-A", "-o", "wide"))
        print(k("get", "nodes", "-o", "yaml"))
        raise
    k("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=60s", timeout=90)
    st = json.loads(k("get", "ds", "agent", "-n", ns, "-o", "json"))["status"]
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"],
            st["numberReady"], st["numberAvailable"]) == (3, 3, 3, 3), st
    pod = pods(k, ns, "agent")[0]
    keys = {t["key"] for t in pod["spec"]["tolerations"]}
    assert "node.kubernetes.io/unreachable" in keys and "node.kubernetes.io/unschedulable" in keys
    assert "controller-revision-hash" in pod["metadata"]["labels"]

    # A toleration admits the tainted node; a node selector narrows the set.
    k("apply", "-n", ns, "-f", "-", input=json.dumps(daemonset(
        "infra", tolerations=[{"key": "dedicated", "operator": "Exists"}],
        nodeSelector={"role": "edge"})))
    k("label", "node", "ds-infra-0", "role=edge")
    wait_for(lambda: nodes_of(k, ns, "infra") == ["ds-infra-0"], 60, 0.5,
             what="the tolerating pod on the labeled tainted node")
    k("label", "node", "ds-infra-0", "role-")
    wait_for(lambda: nodes_of(k, ns, "infra") == [], 60, 0.5,
             what="its pod gone once the label is")

    # A new node gets its pod.
    agents.append(simulate(workdir, cluster.server, LATE, "late"))
    wait_for(lambda: nodes_of(k, ns, "agent") == sorted(plain + ["ds-late-0"]), 90, 0.5,
             what="a pod on the new node")

    # A rolling update, then history and undo, with both kubectl versions.
    k("set", "image", "daemonset/agent", "c=registry.local/pause:2", "-n", ns)
    k("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=90s", timeout=120)
    wait_for(lambda: images(k, ns, "agent") == ["registry.local/pause:2"], 60, 0.5,
             what="every pod on the new image")
    old = Kubectl("1.27", cluster, workdir)
    for kubectl in (k, old):
        history = kubectl("rollout", "history", "daemonset/agent", "-n", ns)
        assert "1 " in history and "2 " in history, history
    old("rollout", "undo", "daemonset/agent", "-n", ns)
    old("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=90s", timeout=120)
    wait_for(lambda: images(k, ns, "agent") == ["registry.local/pause:1"], 60, 0.5,
             what="every pod back on the first image")
    assert "3 " in k("rollout", "history", "daemonset/agent", "-n", ns)

    # Deleting the DaemonSet takes its pods.
    k("delete", "daemonset", "agent", "-n", ns)
    wait_for(lambda: pods(k, ns, "agent") == [], 60, 0.5, what="the pods collected")
