"""ResourceQuota: a quota gets its status (hard and used) from the server, admission charges
what it admits and refuses what exceeds it with upstream's messages (403), deletions give the
usage back, dry runs are not charged."""

import json
import re

import pytest

from conftest import assert_status, wait_for

COMPUTE = {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}


def quota(name, hard, **spec):
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
            "spec": {"hard": hard, **spec}}


def pod(name, requests=None, limits=None):
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}}


def small_pod(name):
    return pod(name, requests={"cpu": "100m"}, limits={"memory": "128Mi"})


def get_quota(cluster, ns, name):
    return cluster.ok("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{name}")


def wait_synced(cluster, ns, name, timeout=10):
    """Waits until the server gave the quota its status: `hard` as the spec's and a usage for
    every resource; returns the status."""
    def synced():
        q = get_quota(cluster, ns, name)
        status = q.get("status") or {}
        hard = status.get("hard")
        if hard == q["spec"]["hard"] and set(status.get("used", {})) == set(hard):
            return status
        return None
    return wait_for(synced, timeout, what=f"the status of quota {ns}/{name}")


def wait_used(cluster, ns, name, resource, value, timeout=10):
    """Polls until the quota's `status.used[resource]` is `value`."""
    return wait_for(
        lambda: (get_quota(cluster, ns, name).get("status") or {}).get("used", {}).get(resource)
        == value,
        timeout, what=f"{ns}/{name} to use {resource}={value}")


def create(cluster, ns, body, **kw):
    return cluster.post(f"/api/v1/namespaces/{ns}/pods", body, **kw)


def test_a_quota_gets_its_status_and_kubectl_shows_it(cluster, ns, kubectl):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(quota("compute", COMPUTE)))
    status = wait_synced(cluster, ns, "compute")
    assert status["hard"] == COMPUTE
    assert status["used"] == {"pods": "0", "requests.cpu": "0", "limits.memory": "0"}
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", small_pod("p1"))
    assert r.status_code == 201, r.text
    wait_used(cluster, ns, "compute", "pods", "1")

    table = kubectl("get", "quota", "-n", ns)
    assert re.search(r"^compute\s+\S+\s+pods: 1/2, requests\.cpu: 100m/1\s+limits\.memory: 128Mi/1Gi\s*$",
                     table, re.M), table
    described = kubectl("describe", "quota", "compute", "-n", ns)
    assert re.search(r"^Resource\s+Used\s+Hard$", described, re.M), described
    for resource, used, hard in [("limits.memory", "128Mi", "1Gi"), ("pods", "1", "2"),
                                 ("requests.cpu", "100m", "1")]:
        assert re.search(rf"^{re.escape(resource)}\s+{used}\s+{hard}$", described, re.M), described


def test_pods_fill_the_quota_and_the_next_is_refused(cluster, ns, kubectl):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(quota("compute", COMPUTE)))
    wait_synced(cluster, ns, "compute")
    for name in ("p1", "p2"):
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(small_pod(name)))
    used = get_quota(cluster, ns, "compute")["status"]["used"]
    assert used == {"pods": "2", "requests.cpu": "200m", "limits.memory": "256Mi"}

    message = ('pods "p3" is forbidden: exceeded quota: compute, requested: pods=1, '
               'used: pods=2, limited: pods=2')
    stderr = kubectl.fail("apply", "-n", ns, "-f", "-", input=json.dumps(small_pod("p3")))
    assert message in stderr, stderr
    st = assert_status(create(cluster, ns, small_pod("p3")), 403, "Forbidden")
    assert st["message"] == message
    assert st["details"] == {"name": "p3", "kind": "pods"}
    assert cluster.get(f"/api/v1/namespaces/{ns}/pods/p3").status_code == 404

    # Deleting a pod gives its usage back, and the next pod fits.
    kubectl("delete", "pod", "p1", "-n", ns)
    wait_used(cluster, ns, "compute", "pods", "1")
    used = get_quota(cluster, ns, "compute")["status"]["used"]
    assert used == {"pods": "1", "requests.cpu": "100m", "limits.memory": "128Mi"}
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(small_pod("p3")))
    wait_used(cluster, ns, "compute", "pods", "2")


def test_a_pod_must_name_what_a_quota_limits(cluster, ns, kubectl):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(quota("compute", COMPUTE)))
    wait_synced(cluster, ns, "compute")
    unlimited = pod("nolimit", requests={"cpu": "100m"})
    st = assert_status(create(cluster, ns, unlimited), 403, "Forbidden")
    assert st["message"] == ('pods "nolimit" is forbidden: failed quota: compute: '
                             'must specify limits.memory for: c')
    bare = pod("bare")
    st = assert_status(create(cluster, ns, bare), 403, "Forbidden")
    assert st["message"] == ('pods "bare" is forbidden: failed quota: compute: '
                             'must specify limits.memory for: c; requests.cpu for: c')
    stderr = kubectl.fail("apply", "-n", ns, "-f", "-", input=json.dumps(unlimited))
    assert "failed quota: compute: must specify limits.memory for: c" in stderr, stderr
    # A request over what is left is refused naming only what exceeds.
    big = pod("big", requests={"cpu": "2"}, limits={"memory": "64Mi"})
    st = assert_status(create(cluster, ns, big), 403, "Forbidden")
    assert st["message"] == ('pods "big" is forbidden: exceeded quota: compute, '
                             'requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1')
    assert get_quota(cluster, ns, "compute")["status"]["used"]["pods"] == "0"


def test_object_counts_include_what_exists(cluster, ns, kubectl):
    # The namespace already holds kube-root-ca.crt: one config map of two.
    kubectl("apply", "-n", ns, "-f", "-",
            input=json.dumps(quota("objects", {"count/configmaps": "2", "secrets": "1"})))
    status = wait_synced(cluster, ns, "objects")
    assert status["used"] == {"count/configmaps": "1", "secrets": "0"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {"a": "b"}}
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(cm))
    wait_used(cluster, ns, "objects", "count/configmaps", "2")
    cm["metadata"]["name"] = "two"
    stderr = kubectl.fail("apply", "-n", ns, "-f", "-", input=json.dumps(cm))
    assert ('configmaps "two" is forbidden: exceeded quota: objects, requested: '
            'count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2') in stderr
    # Updates of counted objects are not charged.
    cluster.ok("PATCH", f"/api/v1/namespaces/{ns}/configmaps/one", body={"data": {"a": "c"}},
               headers={"Content-Type": "application/merge-patch+json"})
    kubectl("delete", "configmap", "one", "-n", ns)
    wait_used(cluster, ns, "objects", "count/configmaps", "1")
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(cm))


def test_dry_runs_are_checked_but_not_charged(cluster, ns, kubectl):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body=quota("one", {"pods": "1"}))
    wait_synced(cluster, ns, "one")
    r = create(cluster, ns, pod("dry"), params={"dryRun": "All"})
    assert r.status_code == 201, r.text
    kubectl("apply", "-n", ns, "--dry-run=server", "-f", "-", input=json.dumps(pod("dry2")))
    assert get_quota(cluster, ns, "one")["status"]["used"] == {"pods": "0"}
    r = create(cluster, ns, pod("real"))
    assert r.status_code == 201, r.text
    st = assert_status(create(cluster, ns, pod("dry"), params={"dryRun": "All"}), 403)
    assert st["message"] == ('pods "dry" is forbidden: exceeded quota: one, requested: pods=1, '
                             'used: pods=1, limited: pods=1')
    assert get_quota(cluster, ns, "one")["status"]["used"] == {"pods": "1"}


def test_a_changed_quota_is_followed(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body=quota("q", {"pods": "1"}))
    wait_synced(cluster, ns, "q")
    assert create(cluster, ns, pod("a")).status_code == 201
    assert create(cluster, ns, pod("b")).status_code == 403
    cluster.ok("PATCH", f"/api/v1/namespaces/{ns}/resourcequotas/q",
               body={"spec": {"hard": {"pods": "3", "services": "1"}}},
               headers={"Content-Type": "application/merge-patch+json"})
    status = wait_synced(cluster, ns, "q")
    assert status == {"hard": {"pods": "3", "services": "1"}, "used": {"pods": "1", "services": "0"}}
    assert create(cluster, ns, pod("b")).status_code == 201


def test_the_python_client_sees_quotas_and_refusals(cluster, ns, core):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="compute"),
                                  spec=client.V1ResourceQuotaSpec(hard={"pods": "1"}))
    core.create_namespaced_resource_quota(ns, body)
    wait_for(lambda: (core.read_namespaced_resource_quota("compute", ns).status.used or {})
             == {"pods": "0"}, 10, what="the quota's usage")
    container = client.V1Container(name="c", image="busybox")
    core.create_namespaced_pod(ns, client.V1Pod(metadata=client.V1ObjectMeta(name="a"),
                                                spec=client.V1PodSpec(containers=[container])))
    got = core.read_namespaced_resource_quota("compute", ns)
    assert got.status.hard == {"pods": "1"} and got.status.used == {"pods": "1"}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(ns, client.V1Pod(metadata=client.V1ObjectMeta(name="b"),
                                                    spec=client.V1PodSpec(containers=[container])))
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'pods "b" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=1, '
        'limited: pods=1')
