"""The StatefulSet controller (in `krust-controllers`) on simulated nodes with the scheduler:
pods created in order with stable names, hostnames and claims, scaled down from the highest
ordinal, a rolling update that honours its partition, and `kubectl rollout
status|history|undo` (kubectl 1.33 and 1.27)."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import KRUST_BIN, Cluster, KrustServer, Kubectl, reap, spawn, wait_for

GROUPS = [{"prefix": "sts", "count": 2, "cpu": "8", "memory": "16Gi"}]


@pytest.fixture(scope="module")
def sim(e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix="statefulset-", dir=e2e_tmp))
    server = KrustServer(workdir, "embedded", None)
    server.scheduler = True
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
            return len([n for n in nodes
                        if any(c["type"] == "Ready" and c["status"] == "True"
                               for c in n["status"].get("conditions", []))
                        and not n["spec"].get("taints")]) == 2
        try:
            wait_for(ready, 60, 0.5, what="two simulated nodes Ready and untainted")
        except AssertionError:
            print(k("get", "nodes", "-o", "custom-columns=NAME:.metadata.name,"
                    "TAINTS:.spec.taints,CONDITIONS:.status.conditions"))
            raise
        yield cluster, k, workdir
    finally:
        reap(agent, signal.SIGTERM)
        log.close()
        server.stop(signal.SIGTERM, timeout=15)


def statefulset(image="registry.local/pause:1", replicas=3, partition=None):
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"terminationGracePeriodSeconds": 0,
                                           "containers": [{"name": "c", "image": image}]}},
                     "volumeClaimTemplates": [{
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}}
    if partition is not None:
        body["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                          "rollingUpdate": {"partition": partition}}
    return body


def pods(k, ns):
    items = json.loads(k("get", "pods", "-n", ns, "-l", "app=web", "-o", "json"))["items"]
    return {p["metadata"]["name"]: p for p in items if "deletionTimestamp" not in p["metadata"]}


def drain(watch):
    """The events a watch has delivered until it stays quiet for a second."""
    events = []
    while True:
        try:
            events.append(watch.next(timeout=1))
        except AssertionError:
            return events


def images(k, ns):
    return {n: p["spec"]["containers"][0]["image"] for n, p in pods(k, ns).items()}


def test_statefulset_order_claims_and_updates(sim):
    cluster, k, workdir = sim
    ns = "sts-e2e"
    cluster.create_namespace(ns)
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    watch = cluster.watch(f"/api/v1/namespaces/{ns}/pods")
    k("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset()))
    k("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    assert sorted(pods(k, ns)) == ["web-0", "web-1", "web-2"]

    # Created in order: each only once the one before was running and ready.
    added = [ev["object"]["metadata"]["name"] for ev in drain(watch) if ev["type"] == "ADDED"]
    assert added == ["web-0", "web-1", "web-2"], added
    watch.close()
    all_pods = pods(k, ns)
    created = [all_pods[f"web-{i}"]["metadata"]["creationTimestamp"] for i in range(3)]
    assert created == sorted(created)
    web1 = all_pods["web-1"]
    assert web1["spec"]["hostname"] == "web-1" and web1["spec"]["subdomain"] == "nginx"
    labels = web1["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"].startswith("web-")
    claim = web1["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "data-web-1"
    claims = json.loads(k("get", "pvc", "-n", ns, "-o", "json"))["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1", "data-web-2"]
    assert all(c["metadata"]["labels"]["app"] == "web" for c in claims)
    st = json.loads(k("get", "sts", "web", "-n", ns, "-o", "json"))["status"]
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"]) == (3, 3, 3), st

    # Scaled down from the highest ordinal; the claims stay (Retain).
    watch = cluster.watch(f"/api/v1/namespaces/{ns}/pods")
    k("scale", "statefulset", "web", "-n", ns, "--replicas=1")
    wait_for(lambda: sorted(pods(k, ns)) == ["web-0"], 60, 0.5, what="scaled down to web-0")
    deleted = []
    for ev in drain(watch):
        name = ev["object"]["metadata"]["name"]
        if ("deletionTimestamp" in ev["object"]["metadata"] or ev["type"] == "DELETED") \
                and name not in deleted:
            deleted.append(name)
    watch.close()
    assert deleted == ["web-2", "web-1"], deleted
    assert len(json.loads(k("get", "pvc", "-n", ns, "-o", "json"))["items"]) == 3

    # Back to three, then an update held at partition 2: only web-2 changes.
    k("scale", "statefulset", "web", "-n", ns, "--replicas=3")
    k("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    k("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"updateStrategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"partition": 2}}}}))
    k("set", "image", "statefulset/web", "c=registry.local/pause:2", "-n", ns)
    wait_for(lambda: images(k, ns) == {"web-0": "registry.local/pause:1",
                                       "web-1": "registry.local/pause:1",
                                       "web-2": "registry.local/pause:2"}, 60, 0.5,
             what="only web-2 updated at partition 2")
    k("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))
    k("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    wait_for(lambda: set(images(k, ns).values()) == {"registry.local/pause:2"}
             and len(images(k, ns)) == 3, 60, 0.5, what="every pod updated")
    st = json.loads(k("get", "sts", "web", "-n", ns, "-o", "json"))["status"]
    assert st["currentRevision"] == st["updateRevision"], st

    old = Kubectl("1.27", cluster, workdir)
    for kubectl in (k, old):
        history = kubectl("rollout", "history", "statefulset/web", "-n", ns)
        assert "1 " in history and "2 " in history, history
    old("rollout", "undo", "statefulset/web", "-n", ns)
    old("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    wait_for(lambda: set(images(k, ns).values()) == {"registry.local/pause:1"}
             and len(images(k, ns)) == 3, 90, 0.5, what="every pod back on the first image")

    k("delete", "statefulset", "web", "-n", ns)
    wait_for(lambda: pods(k, ns) == {}, 60, 0.5, what="the pods collected")


def test_a_statefulset_adopts_its_orphans_and_releases_what_it_no_longer_selects(sim):
    cluster, k, _ = sim
    ns = "sts-adopt"
    cluster.create_namespace(ns)
    pod_path = f"/api/v1/namespaces/{ns}/pods"
    # An orphan named as the set's first pod, and one that is not.
    for name in ("web-0", "stray-0"):
        cluster.ok("POST", pod_path, expect=(201,), body={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "registry.local/pause:1"}]}})
    orphan_uid = cluster.ok("GET", f"{pod_path}/web-0")["metadata"]["uid"]
    body = statefulset(replicas=2)
    del body["spec"]["volumeClaimTemplates"]
    # The orphan has no controller-revision-hash: under RollingUpdate the set would, as
    # upstream's does, replace it once its other pods are ready. OnDelete keeps it.
    body["spec"]["updateStrategy"] = {"type": "OnDelete"}
    k("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    sts_uid = json.loads(k("get", "sts", "web", "-n", ns, "-o", "json"))["metadata"]["uid"]

    def controller(name):
        owners = cluster.ok("GET", f"{pod_path}/{name}")["metadata"].get("ownerReferences", [])
        return [(o["kind"], o["uid"]) for o in owners if o.get("controller")]

    wait_for(lambda: controller("web-0") == [("StatefulSet", sts_uid)], 30, 0.2,
             what="web-0 adopted")
    # The same pod, adopted, not made again; the next ordinal is made as usual.
    assert cluster.ok("GET", f"{pod_path}/web-0")["metadata"]["uid"] == orphan_uid
    wait_for(lambda: "web-1" in pods(k, ns), 60, 0.5, what="web-1 created")
    assert controller("stray-0") == []

    # A pod relabelled out of the selector is released.
    cluster.patch(f"{pod_path}/web-1", {"metadata": {"labels": {"app": "other"}}})
    wait_for(lambda: controller("web-1") == [], 30, 0.2, what="web-1 released")
    k("delete", "sts", "web", "-n", ns, "--wait=false")
