"""The ReplicaSet controller (in `krust-controllers`): replicas kept, orphans adopted, pods
that stop matching released, the least valuable pods deleted first, status reported; and the
garbage collector deleting a set's pods with it.
"""

from __future__ import annotations

import json

from conftest import wait_for


def replicaset(name, replicas, app=None, min_ready=0):
    app = app or name
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/pause:1"}]},
            },
        },
    }


def pods_of(cluster, ns, app, active_only=True):
    items = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods",
                       params={"labelSelector": f"app={app}"})["items"]
    if active_only:
        items = [p for p in items if "deletionTimestamp" not in p["metadata"]]
    return items


def owned(cluster, ns, app, uid):
    return [p for p in pods_of(cluster, ns, app)
            if any(o["uid"] == uid and o.get("controller") for o in
                   p["metadata"].get("ownerReferences", []))]


def rs_status(cluster, ns, name):
    return cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/{name}").get("status", {})


def make_ready(cluster, ns, pod, node="node-a"):
    """What a node agent would report: bound, running and ready."""
    name = pod["metadata"]["name"]
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    cluster.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True",
                        "lastTransitionTime": "2020-01-01T00:00:00Z"}]}})


def test_replicas_follow_scale(kubectl, cluster, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(replicaset("web", 3)))
    uid = cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/web")["metadata"]["uid"]
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 3, 30, what="3 pods")
    pod = owned(cluster, ns, "web", uid)[0]
    assert pod["metadata"]["generateName"] == "web-", pod["metadata"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ReplicaSet" and ref["blockOwnerDeletion"] is True, ref
    wait_for(lambda: rs_status(cluster, ns, "web").get("replicas") == 3, 30, what="status 3")
    st = rs_status(cluster, ns, "web")
    assert st["fullyLabeledReplicas"] == 3 and st["observedGeneration"] >= 1, st

    kubectl("scale", "replicaset", "web", "-n", ns, "--replicas=5")
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 5, 30, what="5 pods")
    kubectl("scale", "replicaset", "web", "-n", ns, "--replicas=1")
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 1, 30, what="1 pod")
    wait_for(lambda: rs_status(cluster, ns, "web").get("replicas") == 1, 30, what="status 1")
    # Exactly one stays: no second create raced the scale-down.
    assert len(owned(cluster, ns, "web", uid)) == 1
    wait_for(lambda: "SuccessfulDelete" in kubectl("describe", "replicaset", "web", "-n", ns),
             30, what="the events")
    described = kubectl("describe", "replicaset", "web", "-n", ns)
    assert "SuccessfulCreate" in described and "Created pod: web-" in described, described


def test_a_deleted_pod_is_replaced(cluster, ns):
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", body=replicaset("web", 2))
    wait_for(lambda: len(pods_of(cluster, ns, "web")) == 2, 30, what="2 pods")
    victim = pods_of(cluster, ns, "web")[0]["metadata"]["name"]
    cluster.ok("DELETE", f"/api/v1/namespaces/{ns}/pods/{victim}", params={"gracePeriodSeconds": "0"})
    wait_for(lambda: len(pods_of(cluster, ns, "web")) == 2
             and victim not in [p["metadata"]["name"] for p in pods_of(cluster, ns, "web")],
             30, what="a replacement")


def test_orphans_are_adopted_and_mismatches_released(cluster, ns):
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "early", "labels": {"app": "web"}},
              "spec": {"containers": [{"name": "c", "image": "registry.local/pause:1"}]}}
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=orphan)
    rs = cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", body=replicaset("web", 2))
    uid = rs["metadata"]["uid"]
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 2, 30, what="2 owned pods")
    assert "early" in [p["metadata"]["name"] for p in owned(cluster, ns, "web", uid)]
    # Relabeled out of the selector: released, and replaced.
    cluster.patch(f"/api/v1/namespaces/{ns}/pods/early", {"metadata": {"labels": {"app": "gone"}}})

    def released():
        p = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods/early")
        return not p["metadata"].get("ownerReferences")
    wait_for(released, 30, what="the pod released")
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 2, 30, what="a replacement")


def test_scale_down_deletes_unready_pods_first_and_status_counts_ready(cluster, ns):
    rs = cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", body=replicaset("web", 3))
    uid = rs["metadata"]["uid"]
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 3, 30, what="3 pods")
    keep = owned(cluster, ns, "web", uid)[1]
    make_ready(cluster, ns, keep)
    wait_for(lambda: rs_status(cluster, ns, "web").get("readyReplicas") == 1, 30, what="1 ready")
    assert rs_status(cluster, ns, "web").get("availableReplicas") == 1
    cluster.patch(f"/apis/apps/v1/namespaces/{ns}/replicasets/web", {"spec": {"replicas": 1}})
    wait_for(lambda: len(owned(cluster, ns, "web", uid)) == 1, 30, what="1 pod left")
    assert owned(cluster, ns, "web", uid)[0]["metadata"]["name"] == keep["metadata"]["name"]


def test_deleting_a_set_deletes_its_pods(kubectl, cluster, ns):
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", body=replicaset("web", 2))
    wait_for(lambda: len(pods_of(cluster, ns, "web")) == 2, 30, what="2 pods")
    kubectl("delete", "replicaset", "web", "-n", ns)
    wait_for(lambda: not pods_of(cluster, ns, "web", active_only=False), 30, what="pods collected")


def test_replication_controller_keeps_its_replicas(kubectl, cluster, ns):
    """A ReplicationController is managed as a ReplicaSet is: pods with a `v1`
    ReplicationController reference, status in its own shape, scaled by kubectl."""
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/replicationcontrollers", body={
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
        "spec": {"replicas": 3, "selector": {"app": "rc"}, "template": {
            "metadata": {"labels": {"app": "rc"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/pause:1"}]}}}})
    rc = cluster.ok("GET", f"/api/v1/namespaces/{ns}/replicationcontrollers/rc")
    wait_for(lambda: len(owned(cluster, ns, "rc", rc["metadata"]["uid"])) == 3, 30, 0.2,
             what="three pods of the replication controller")
    pods = owned(cluster, ns, "rc", rc["metadata"]["uid"])
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("v1", "ReplicationController", "rc")
    for p in pods:
        make_ready(cluster, ns, p)

    def status():
        return cluster.ok("GET", f"/api/v1/namespaces/{ns}/replicationcontrollers/rc")["status"]
    wait_for(lambda: status().get("readyReplicas") == 3 and status().get("availableReplicas") == 3,
             30, 0.2, what="three ready replicas reported")
    assert status()["fullyLabeledReplicas"] == 3
    assert status()["observedGeneration"] == rc["metadata"]["generation"]

    kubectl("scale", "rc", "rc", "-n", ns, "--replicas=1")
    wait_for(lambda: len(owned(cluster, ns, "rc", rc["metadata"]["uid"])) == 1, 30, 0.2,
             what="scaled down to one")
    wait_for(lambda: status().get("replicas") == 1, 30, 0.2, what="one replica reported")
    kubectl("delete", "rc", "rc", "-n", ns)
    wait_for(lambda: pods_of(cluster, ns, "rc") == [], 30, 0.2, what="its pods collected")
