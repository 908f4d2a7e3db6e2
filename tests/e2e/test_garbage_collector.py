"""The garbage collector (in `krust-controllers`): dependents of deleted owners go, in the
background, in the foreground (the owner waits for its blocking dependents) or not at all
(orphaned: their references to the owner are cut), as `kubectl delete --cascade=...` asks.
"""

from __future__ import annotations

from conftest import wait_for

HOLD = "e2e.krust.dev/hold"


def configmap(name, owners=(), finalizers=None):
    meta = {"name": name}
    if owners:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "blockOwnerDeletion": block}
            for o, block in owners]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def make(cluster, ns, name, owners=(), finalizers=None):
    return cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                      body=configmap(name, owners, finalizers))


def gone(cluster, ns, name):
    return cluster.get(f"/api/v1/namespaces/{ns}/configmaps/{name}").status_code == 404


def test_cascade_background_deletes_dependents(kubectl, cluster, ns):
    owner = make(cluster, ns, "owner")
    make(cluster, ns, "child", [(owner, False)])
    kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=background")
    wait_for(lambda: gone(cluster, ns, "child"), 30, interval=0.2, what="the dependent collected")


def test_cascade_orphan_keeps_dependents_without_the_reference(kubectl, cluster, ns):
    owner = make(cluster, ns, "owner")
    other = make(cluster, ns, "other")
    make(cluster, ns, "child", [(owner, False), (other, False)])
    kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan", timeout=60)
    assert gone(cluster, ns, "owner")
    child = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/child")
    assert [o["name"] for o in child["metadata"]["ownerReferences"]] == ["other"], child


def test_cascade_foreground_waits_for_blocking_dependents(kubectl, cluster, ns):
    owner = make(cluster, ns, "owner")
    make(cluster, ns, "blocker", [(owner, True)], finalizers=[HOLD])
    make(cluster, ns, "loose", [(owner, False)])
    kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false")

    def waiting():
        o = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/owner").json()
        b = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/blocker").json()
        return (o["metadata"].get("finalizers") == ["foregroundDeletion"]
                and "deletionTimestamp" in b["metadata"])
    wait_for(waiting, 30, interval=0.2, what="the owner waiting on a blocker being deleted")
    assert not gone(cluster, ns, "owner")
    cluster.patch(f"/api/v1/namespaces/{ns}/configmaps/blocker", {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(cluster, ns, "owner"), 30, interval=0.2, what="the owner gone")
    wait_for(lambda: gone(cluster, ns, "loose"), 30, interval=0.2, what="the loose dependent gone")


def test_a_reference_to_an_owner_that_never_existed_is_garbage(cluster, ns):
    ghost = {"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}}
    make(cluster, ns, "orphaned", [(ghost, False)])
    wait_for(lambda: gone(cluster, ns, "orphaned"), 30, interval=0.2, what="the dangling object")


def test_a_live_owner_keeps_its_dependent_and_a_dead_one_is_cut(cluster, ns):
    alive = make(cluster, ns, "alive")
    ghost = {"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000002"}}
    make(cluster, ns, "child", [(alive, False), (ghost, False)])

    def cut():
        c = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/child")
        return [o["name"] for o in c["metadata"]["ownerReferences"]] == ["alive"]
    wait_for(cut, 30, interval=0.2, what="the dead reference cut")


def test_metadata_only_requests_answer_partial_object_metadata(cluster, ns):
    make(cluster, ns, "m")
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    lst = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": accept})
    assert lst["kind"] == "PartialObjectMetadataList" and lst["apiVersion"] == "meta.k8s.io/v1"
    assert all(i["kind"] == "PartialObjectMetadata" and "data" not in i for i in lst["items"])
    assert "m" in [i["metadata"]["name"] for i in lst["items"]], lst
    one = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/m", headers={
        "Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"})
    assert one["kind"] == "PartialObjectMetadata" and "data" not in one, one
