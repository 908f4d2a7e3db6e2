"""The Deployment controller (in `krust-controllers`) with kubectl's rollout commands.

Pods need a node to become ready. Until the node agent and the scheduler's simulated nodes
exist, each test runs a simulated node of its own (`SimulatedNode`): it does what a kubelet
reports and nothing more (binds the namespace's pods to itself, reports them Running and
Ready, and confirms the termination of pods being deleted), through the same API.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import wait_for


class SimulatedNode:
    def __init__(self, cluster, ns, name="sim-node"):
        self.cluster, self.ns, self.name = cluster, ns, name
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=10)

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                self._pass()
            except Exception:  # noqa: BLE001 - the next pass tries again
                pass
            time.sleep(0.2)

    def _pass(self):
        c, ns = self.cluster, self.ns
        for p in c.get(f"/api/v1/namespaces/{ns}/pods").json().get("items", []):
            name = p["metadata"]["name"]
            if "deletionTimestamp" in p["metadata"]:
                c.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                          params={"gracePeriodSeconds": "0"})
                continue
            ready = any(x["type"] == "Ready" and x["status"] == "True"
                        for x in p.get("status", {}).get("conditions", []))
            if ready:
                continue
            if not p["spec"].get("nodeName"):
                c.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}})
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
                "phase": "Running", "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                               {"type": "ContainersReady", "status": "True",
                                "lastTransitionTime": now}]}})


def deployment(name, replicas, image="registry.local/web:1", max_unavailable=None,
               strategy="RollingUpdate"):
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "web", "image": image}]},
        },
    }
    if strategy == "Recreate":
        spec["strategy"] = {"type": "Recreate"}
    elif max_unavailable is not None:
        spec["strategy"] = {"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": spec}


def active_pods(cluster, ns, app):
    items = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods",
                       params={"labelSelector": f"app={app}"})["items"]
    return [p for p in items if "deletionTimestamp" not in p["metadata"]]


def images(cluster, ns, app):
    return sorted({p["spec"]["containers"][0]["image"] for p in active_pods(cluster, ns, app)})


def sets_of(cluster, ns, app):
    return cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets",
                      params={"labelSelector": f"app={app}"})["items"]


def test_a_deployment_scales_3_10_2(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("scaling is checked with kubectl 1.33")
    with SimulatedNode(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("web", 3)))
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        assert len(active_pods(cluster, ns, "web")) == 3
        for n in (10, 2):
            kubectl("scale", "deployment", "web", "-n", ns, f"--replicas={n}")
            wait_for(lambda: len(active_pods(cluster, ns, "web")) == n, 60, interval=0.2,
                     what=f"{n} pods")
            kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        # `rollout status` may pass on the status written just after the scale, which still
        # counts the ReplicaSet's 10 (as upstream's does); the status then follows the set's.
        def counting_two():
            st = cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")["status"]
            return st if st.get("replicas") == 2 and st.get("availableReplicas") == 2 else None

        st = wait_for(counting_two, 30, interval=0.2, what="the deployment's status counting 2 replicas")
        assert st["readyReplicas"] == 2, st
        assert len(sets_of(cluster, ns, "web")) == 1
        # The controller's events, as upstream words them, in `kubectl describe`.
        wait_for(lambda: "Scaled down replica set web-" in kubectl(
            "describe", "deployment", "web", "-n", ns), 30, what="the scaling events")
        described = kubectl("describe", "deployment", "web", "-n", ns)
        assert "ScalingReplicaSet" in described and "Scaled up replica set web-" in described, \
            described


def test_rolling_update_and_undo(kubectl, cluster, ns):
    with SimulatedNode(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(deployment("web", 3, max_unavailable=0)))
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        # With maxUnavailable 0 the available count never drops below 3 during the rollout.
        lowest = [3]
        stop = threading.Event()

        def watch_availability():
            while not stop.is_set():
                st = cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()
                lowest[0] = min(lowest[0], st.get("status", {}).get("availableReplicas", 0))
                time.sleep(0.05)
        watcher = threading.Thread(target=watch_availability, daemon=True)
        watcher.start()
        kubectl("set", "image", "deployment/web", "-n", ns, "web=registry.local/web:2")
        out = kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s",
                      timeout=120)
        stop.set()
        watcher.join(timeout=5)
        assert "successfully rolled out" in out, out
        assert lowest[0] >= 3, lowest
        wait_for(lambda: images(cluster, ns, "web") == ["registry.local/web:2"], 30,
                 what="only new pods")
        d = cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        history = kubectl("rollout", "history", "deployment/web", "-n", ns)
        assert "1 " in history and "2 " in history, history

        kubectl("rollout", "undo", "deployment/web", "-n", ns)
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
        wait_for(lambda: images(cluster, ns, "web") == ["registry.local/web:1"], 30,
                 what="the first image back")
        d = cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        # The first revision's set is reused, and remembers its old number.
        first = [rs for rs in sets_of(cluster, ns, "web")
                 if rs["spec"]["template"]["spec"]["containers"][0]["image"]
                 == "registry.local/web:1"]
        assert len(first) == 1, first
        assert first[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] \
            == "1"


def test_recreate_replaces_every_pod(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with SimulatedNode(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(deployment("web", 2, strategy="Recreate")))
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        kubectl("set", "image", "deployment/web", "-n", ns, "web=registry.local/web:2")
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        wait_for(lambda: images(cluster, ns, "web") == ["registry.local/web:2"], 30,
                 what="only new pods")


def test_pause_and_resume(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with SimulatedNode(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("web", 2)))
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        kubectl("rollout", "pause", "deployment/web", "-n", ns)
        kubectl("set", "image", "deployment/web", "-n", ns, "web=registry.local/web:2")
        time.sleep(2)
        assert images(cluster, ns, "web") == ["registry.local/web:1"]
        cond = {c["type"]: c for c in cluster.ok(
            "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")["status"]["conditions"]}
        assert cond["Progressing"]["reason"] == "DeploymentPaused", cond
        kubectl("rollout", "resume", "deployment/web", "-n", ns)
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
        wait_for(lambda: images(cluster, ns, "web") == ["registry.local/web:2"], 30,
                 what="the new image after resume")


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_deployment_with_each_cascade(kubectl, cluster, ns, cascade):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("web", 2)))
    wait_for(lambda: len(active_pods(cluster, ns, "web")) == 2, 60, what="2 pods")
    kubectl("delete", "deployment", "web", "-n", ns, f"--cascade={cascade}", timeout=90)
    assert cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").status_code == 404
    if cascade == "orphan":
        time.sleep(2)
        sets = sets_of(cluster, ns, "web")
        assert len(sets) == 1 and not sets[0]["metadata"].get("ownerReferences"), sets
        assert len(active_pods(cluster, ns, "web")) == 2
    else:
        wait_for(lambda: not sets_of(cluster, ns, "web") and not active_pods(cluster, ns, "web"),
                 60, what="the sets and pods collected")
