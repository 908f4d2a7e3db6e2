"""Namespace lifecycle: deletion takes the contents along; a terminating namespace refuses new
content; system namespaces cannot be deleted."""

import json
import time

from conftest import assert_status, configmap, deployment, pod, wait_for

HOLD = "e2e.krust.dev/hold"


def fill(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("c1", {"a": "b"}))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
        "stringData": {"k": "v"}})
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment("d1"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("p1"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc1"},
        "spec": {"selector": {"app": "d1"}, "ports": [{"port": 80}]}})


def names_in(cluster, ns, path):
    r = cluster.get(f"{path}".format(ns=ns))
    assert r.status_code == 200, r.text
    return {i["metadata"]["name"] for i in r.json()["items"]}


def test_new_namespace_defaults(kubectl, ns_name, cluster):
    out = kubectl("create", "namespace", ns_name)
    assert out.strip() == f"namespace/{ns_name} created"
    n = kubectl.json("get", "ns", ns_name)
    assert n["status"]["phase"] == "Active"
    assert n["spec"]["finalizers"] == ["kubernetes"]
    assert n["metadata"]["labels"]["kubernetes.io/metadata.name"] == ns_name


def test_delete_namespace_removes_contents(kubectl, cluster, ns_name):
    ns = ns_name
    cluster.create_namespace(ns)
    fill(cluster, ns)
    out = kubectl("delete", "namespace", ns, "--timeout=60s", timeout=90)
    assert out.strip() == f'namespace "{ns}" deleted', out
    # `kubectl delete` waits by default: the namespace is gone when it returns
    assert cluster.get(f"/api/v1/namespaces/{ns}").status_code == 404
    # re-create it: nothing of the old content comes back
    cluster.create_namespace(ns)
    for path in ["/api/v1/namespaces/{ns}/configmaps", "/api/v1/namespaces/{ns}/secrets",
                 "/apis/apps/v1/namespaces/{ns}/deployments", "/api/v1/namespaces/{ns}/pods",
                 "/api/v1/namespaces/{ns}/services"]:
        left = names_in(cluster, ns, path) & {"c1", "s1", "d1", "p1", "svc1"}
        assert not left, f"{path} still holds {left} after the namespace was deleted"


def test_terminating_namespace_refuses_new_content(kubectl, cluster, ns_name):
    ns = ns_name
    cluster.create_namespace(ns)
    fill(cluster, ns)
    # a finalizer on one object keeps the namespace in Terminating until we remove it
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
               body=configmap("held", {"a": "b"}, finalizers=[HOLD]))
    kubectl("delete", "namespace", ns, "--wait=false")

    n = kubectl.json("get", "namespace", ns)
    assert n["metadata"].get("deletionTimestamp"), n["metadata"]
    assert n["status"]["phase"] == "Terminating", n["status"]

    # creating into it is refused, by REST and by kubectl
    r = cluster.post(f"/api/v1/namespaces/{ns}/configmaps", body=configmap("late"))
    st = assert_status(r, 403, "Forbidden")
    assert "because it is being terminated" in st["message"], st
    err = kubectl.fail("create", "configmap", "late2", "-n", ns, "--from-literal=a=b")
    # kubectl create <kind> words it "error: failed to create <kind>: <kind> "x" is forbidden: ..."
    assert "forbidden" in err.lower() and "because it is being terminated" in err, err

    # the namespace controller empties it, except the object held by its finalizer
    def emptied():
        return (not names_in(cluster, ns, "/api/v1/namespaces/{ns}/secrets") & {"s1"}
                and not names_in(cluster, ns, "/apis/apps/v1/namespaces/{ns}/deployments")
                and not names_in(cluster, ns, "/api/v1/namespaces/{ns}/pods")
                and names_in(cluster, ns, "/api/v1/namespaces/{ns}/configmaps") & {"c1"} == set())
    wait_for(emptied, 30, interval=0.2, what="namespace contents deleted")
    held = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert held["metadata"].get("deletionTimestamp"), held["metadata"]
    assert kubectl.json("get", "namespace", ns)["status"]["phase"] == "Terminating"

    # release the finalizer: the object and then the namespace go away
    waiter = kubectl.background("wait", "--for=delete", f"ns/{ns}", "--timeout=60s")
    try:
        time.sleep(0.5)
        cluster.ok("PATCH", f"/api/v1/namespaces/{ns}/configmaps/held",
                   body={"metadata": {"finalizers": None}},
                   headers={"Content-Type": "application/merge-patch+json"})
        assert waiter.wait(timeout=60) == 0, (waiter.lines, waiter.stderr())
    finally:
        waiter.stop()
    assert cluster.get(f"/api/v1/namespaces/{ns}").status_code == 404


def test_namespace_status_conditions_while_terminating(cluster, ns_name):
    ns = ns_name
    cluster.create_namespace(ns)
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
               body=configmap("held", finalizers=[HOLD]))
    r = cluster.delete(f"/api/v1/namespaces/{ns}")
    assert r.status_code in (200, 202), r.text
    # upstream reports what blocks the deletion in the namespace's conditions
    def blocked():
        n = cluster.ok("GET", f"/api/v1/namespaces/{ns}")
        conds = {c["type"]: c for c in n["status"].get("conditions", [])}
        c = conds.get("NamespaceFinalizersRemaining")
        return c if c and c["status"] == "True" else None
    cond = wait_for(blocked, 30, interval=0.2, what="NamespaceFinalizersRemaining condition")
    assert HOLD in cond["message"], cond
    cluster.patch(f"/api/v1/namespaces/{ns}/configmaps/held", {"metadata": {"finalizers": []}})
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}").status_code == 404, 30,
             what="namespace gone")


def test_cannot_create_in_missing_namespace(cluster):
    r = cluster.post("/api/v1/namespaces/e2e-does-not-exist/configmaps", body=configmap("x"))
    st = assert_status(r, 404, "NotFound")
    assert 'namespaces "e2e-does-not-exist" not found' in st["message"], st


def test_system_namespaces_cannot_be_deleted(cluster):
    # this module's own cluster: run last, so that a server that wrongly deletes them
    # does not break other tests
    for name in ["default", "kube-system", "kube-public"]:
        r = cluster.delete(f"/api/v1/namespaces/{name}", params={"dryRun": "All"})
        st = assert_status(r, 403, "Forbidden")
        assert "this namespace may not be deleted" in st["message"], st
    n = cluster.ok("GET", "/api/v1/namespaces/default")
    assert not n["metadata"].get("deletionTimestamp"), json.dumps(n)
