"""Restarts of the server on the same data dir: objects, resource versions, watches, creds."""

import shutil
import signal
import time

import pytest

from conftest import Creds, configmap, deployment, rv_int, summarize, wait_for

SIGNALS = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


def cms(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def pod_uids(cluster, ns):
    items = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods")["items"]
    return sorted((p["metadata"]["name"], p["metadata"]["uid"]) for p in items)


def snapshot(cluster, paths):
    return {p: cluster.ok("GET", p) for p in paths}


@pytest.mark.parametrize("how", list(SIGNALS))
def test_objects_survive_restart(cluster, ns, how):
    paths = []
    cluster.ok("POST", cms(ns), body=configmap("cm1", {"a": "1"}, labels={"x": "y"}))
    paths.append(cms(ns, "cm1"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
        "stringData": {"password": "pw"}})
    paths.append(f"/api/v1/namespaces/{ns}/secrets/s1")
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment("d1"))
    cluster.ok("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/d1",
               body={"spec": {"replicas": 2}},
               headers={"Content-Type": "application/merge-patch+json"})
    paths.append(f"/apis/apps/v1/namespaces/{ns}/deployments/d1")
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc1"},
        "spec": {"selector": {"app": "d1"}, "ports": [{"port": 80}]}})
    paths.append(f"/api/v1/namespaces/{ns}/services/svc1")
    cluster.ok("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body={
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": f"{ns}-prio"}, "value": 1000})
    paths.append(f"/apis/scheduling.k8s.io/v1/priorityclasses/{ns}-prio")
    # an object being deleted, held by a finalizer
    cluster.ok("POST", cms(ns), body=configmap("held", finalizers=["e2e.krust.dev/hold"]))
    cluster.ok("DELETE", cms(ns, "held"))
    paths.append(cms(ns, "held"))
    # and one deleted for good
    cluster.ok("POST", cms(ns), body=configmap("gone"))
    cluster.ok("DELETE", cms(ns, "gone"))
    paths += [f"/api/v1/namespaces/{ns}", "/api/v1/namespaces/default",
              "/api/v1/namespaces/kube-system"]

    # The controllers act on the Deployment (its ReplicaSet, its status): compare once they
    # are done, the same snapshot twice in a row.
    seen = []

    def settled():
        seen.append(snapshot(cluster, paths))
        return len(seen) > 1 and seen[-1] == seen[-2]
    wait_for(settled, 30, interval=1.0, what="the controllers done with the objects")
    before = seen[-1]
    list_before = cluster.ok("GET", cms(ns))
    pods_before = pod_uids(cluster, ns)
    assert len(pods_before) == 2, pods_before
    max_rv = max(rv_int(o["metadata"]["resourceVersion"]) for o in before.values())

    rc = cluster.restart(SIGNALS[how])
    if how == "sigterm":
        assert rc == 0, f"graceful shutdown on SIGTERM should exit 0, got {rc}"

    after = snapshot(cluster, paths)
    for p in paths:
        assert after[p] == before[p], f"{p} changed across the restart:\n{before[p]}\n{after[p]}"
    assert cluster.get(cms(ns, "gone")).status_code == 404
    list_after = cluster.ok("GET", cms(ns))
    assert [i["metadata"]["name"] for i in list_after["items"]] == \
        [i["metadata"]["name"] for i in list_before["items"]]
    assert rv_int(list_after["metadata"]["resourceVersion"]) >= rv_int(
        list_before["metadata"]["resourceVersion"])

    # the revision does not go backwards: new writes get higher resource versions
    new = cluster.ok("POST", cms(ns), body=configmap("after-restart"))
    assert rv_int(new["metadata"]["resourceVersion"]) > max_rv

    # The ReplicaSet's pods are known to its controller again from the first list after the
    # restart: it neither makes new pods nor deletes its old ones.
    time.sleep(2)
    assert pod_uids(cluster, ns) == pods_before

    # the held object can still be released
    cluster.ok("PATCH", cms(ns, "held"), body={"metadata": {"finalizers": None}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert cluster.get(cms(ns, "held")).status_code == 404


def test_watch_resumes_after_restart(cluster, ns):
    cluster.ok("POST", cms(ns), body=configmap("seen", {"v": "1"}))
    start_rv = cluster.ok("GET", cms(ns))["metadata"]["resourceVersion"]
    w = cluster.watch(cms(ns), {"resourceVersion": start_rv})
    cluster.ok("POST", cms(ns), body=configmap("w-a"))
    ev = w.take(1)[0]
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "w-a")
    last_rv = ev["object"]["metadata"]["resourceVersion"]

    # changes the watcher does not see any more (it stopped reading) before the restart
    w.close()
    cluster.ok("POST", cms(ns), body=configmap("w-b"))
    cluster.ok("PATCH", cms(ns, "seen"), body={"data": {"v": "2"}},
               headers={"Content-Type": "application/merge-patch+json"})
    cluster.ok("DELETE", cms(ns, "w-a"))

    w2 = cluster.watch(cms(ns), {"resourceVersion": last_rv})  # a watch open across the restart
    assert w2.status == 200, w2.body
    first = w2.take(3)
    rc = cluster.restart(signal.SIGTERM)
    assert rc == 0, f"graceful shutdown on SIGTERM should exit 0, got {rc}"
    rest = w2.wait_end(timeout=10)  # the server closed it on shutdown
    assert all(e["type"] in ("BOOKMARK",) for e in rest), [summarize(e) for e in rest]

    # events made while the server was being restarted, and after
    w3 = cluster.watch(cms(ns), {"resourceVersion": last_rv})
    try:
        assert w3.status == 200, f"resuming from {last_rv} after restart: {w3.status} {w3.body}"
        replay = w3.take(3)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [
            ("ADDED", "w-b"), ("MODIFIED", "seen"), ("DELETED", "w-a")], \
            [summarize(e) for e in replay]
        assert replay == first, "the replay after restart equals what was sent before"
        cluster.ok("POST", cms(ns), body=configmap("w-c"))
        ev = w3.take(1)[0]
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "w-c")
        assert rv_int(ev["object"]["metadata"]["resourceVersion"]) > rv_int(
            replay[-1]["object"]["metadata"]["resourceVersion"])
    finally:
        w3.close()


def test_original_kubeconfig_still_works_after_restart(cluster, tmp_path):
    """The CA and the admin client certificate persist in the data dir."""
    saved = tmp_path / "admin.kubeconfig"
    shutil.copy(cluster.kubeconfig, saved)
    cluster.restart(signal.SIGTERM)
    creds = Creds(saved, tmp_path / "creds")
    r = creds.session().get(creds.server + "/api/v1/namespaces/default", timeout=30)
    assert r.status_code == 200, r.text


def test_default_bindings_are_not_rewritten_by_a_restart(cluster):
    """Bootstrap reconciles the default RBAC policy at each start; a binding already as it
    should be is left alone (its subjects not appended again, its resourceVersion kept)."""
    path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-dns"
    before = cluster.ok("GET", path)
    cluster.restart()
    after = cluster.ok("GET", path)
    assert after["subjects"] == before["subjects"], after
    assert len(after["subjects"]) == 1, after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
