"""Admission: the built-in plugins as upstream runs them (ServiceAccount, NamespaceLifecycle,
LimitRanger, Priority), the default ServiceAccount and CA ConfigMap of every namespace, and the
flags that turn plugins off."""

import json
import signal

import pytest

from conftest import KrustServer, wait_for


def pod(name, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def wait_default_account(cluster, ns):
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
             .status_code == 200, 10, what=f"the default service account of {ns}")


def test_a_new_namespace_gets_its_default_account_and_ca(cluster, ns):
    wait_default_account(cluster, ns)
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
             .status_code == 200, 10, what="kube-root-ca.crt")
    cm = cluster.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
    ca = (cluster.server.data_dir / "tls" / "ca.crt").read_text()
    assert cm["data"]["ca.crt"].strip() == ca.strip()
    # Existing namespaces have them too (the controllers take namespaces in no set order).
    for path in ("/api/v1/namespaces/default/serviceaccounts/default",
                 "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt"):
        wait_for(lambda: cluster.get(path).status_code == 200, 10, what=path)


def test_a_pod_runs_as_the_default_account_with_its_token(cluster, ns, kubectl):
    wait_default_account(cluster, ns)
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod("web")))
    got = kubectl.json("get", "pod", "web", "-n", ns)
    spec = got["spec"]
    assert spec["serviceAccountName"] == "default"
    volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] == 3607
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": volume["name"], "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in mounts
    tolerations = {t["key"]: t for t in spec["tolerations"]}
    assert tolerations["node.kubernetes.io/not-ready"]["tolerationSeconds"] == 300
    assert spec["priority"] == 0
    # automountServiceAccountToken: false keeps the token out.
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods",
               body=pod("quiet", automountServiceAccountToken=False))
    quiet = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods/quiet")
    assert not any(v["name"].startswith("kube-api-access-")
                   for v in quiet["spec"].get("volumes", []))


def test_a_pod_with_a_missing_account_is_refused(cluster, ns):
    wait_default_account(cluster, ns)
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("p", serviceAccountName="ghost"))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        f'pods "p" is forbidden: error looking up service account {ns}/ghost: '
        'serviceaccount "ghost" not found')


def test_a_pod_in_a_missing_namespace_is_refused(cluster, kubectl):
    r = cluster.post("/api/v1/namespaces/no-such-ns/pods", pod("p"))
    assert r.status_code == 404, r.text
    assert r.json()["message"] == 'namespaces "no-such-ns" not found'
    out = kubectl.run("run", "p", "--image=busybox", "-n", "no-such-ns")
    assert out.returncode != 0
    assert 'namespaces "no-such-ns" not found' in out.stderr


def test_the_default_namespace_may_not_be_deleted(cluster):
    r = cluster.delete("/api/v1/namespaces/kube-system")
    assert r.status_code == 403, r.text
    assert r.json()["message"] == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'


def limit_range(ns):
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
            "spec": {"limits": [{"type": "Container",
                                 "default": {"cpu": "500m", "memory": "128Mi"},
                                 "defaultRequest": {"cpu": "200m"},
                                 "min": {"cpu": "100m"}}]}}


def test_a_limit_range_defaults_and_bounds_pods(cluster, ns, kubectl):
    wait_default_account(cluster, ns)
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/limitranges", body=limit_range(ns))
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod("defaulted")))
    got = kubectl.json("get", "pod", "defaulted", "-n", ns)
    resources = got["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert resources["requests"]["cpu"] == "200m"
    assert got["metadata"]["annotations"]["kubernetes.io/limit-ranger"].startswith(
        "LimitRanger plugin set:")
    small = pod("small")
    small["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "50m"}}
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", small)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods "small" is forbidden: minimum cpu usage per Container is 100m, but request is 50m')
    out = kubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(small))
    assert out.returncode != 0
    assert "minimum cpu usage per Container is 100m, but request is 50m" in out.stderr


def test_a_priority_class_name_resolves(cluster, ns):
    wait_default_account(cluster, ns)
    critical = cluster.ok("GET", "/apis/scheduling.k8s.io/v1/priorityclasses/system-cluster-critical")
    assert critical["value"] == 2000000000
    node = cluster.ok("GET", "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical")
    assert node["value"] == 2000001000
    name = f"{ns}-high"
    cluster.ok("POST", "/apis/scheduling.k8s.io/v1/priorityclasses",
               body={"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                     "metadata": {"name": name}, "value": 1000, "preemptionPolicy": "Never"})
    try:
        created = cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods",
                             body=pod("p", priorityClassName=name))
        assert created["spec"]["priority"] == 1000
        assert created["spec"]["preemptionPolicy"] == "Never"
        r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("q", priorityClassName="nope"))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == 'pods "q" is forbidden: no PriorityClass with name nope was found'
    finally:
        cluster.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")


def test_dry_run_creates_pass_admission(cluster, ns):
    wait_default_account(cluster, ns)
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("dry"), params={"dryRun": "All"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["serviceAccountName"] == "default"
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("dry", serviceAccountName="ghost"),
                     params={"dryRun": "All"})
    assert r.status_code == 403, r.text
    assert cluster.get(f"/api/v1/namespaces/{ns}/pods/dry").status_code == 404


def test_claims_and_nodes_are_admitted(cluster, ns):
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}}
    created = cluster.ok("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body=claim)
    assert "kubernetes.io/pvc-protection" in created["metadata"]["finalizers"]
    node = f"{ns}-node"
    created = cluster.ok("POST", "/api/v1/nodes",
                         body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    try:
        assert {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"} in created["spec"]["taints"]
    finally:
        cluster.delete(f"/api/v1/nodes/{node}")


# --------------------------------------------------------------------------------------------
# a server of its own: LimitRanger off


@pytest.fixture(scope="module")
def no_limits_server(e2e_tmp):
    workdir = e2e_tmp / "admission-no-limits"
    workdir.mkdir(parents=True, exist_ok=True)
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--disable-admission-plugins=LimitRanger"]
    server.start()
    yield server
    server.stop(signal.SIGTERM, timeout=15)


def test_disabling_limit_ranger_turns_it_off(no_limits_server):
    s = no_limits_server.creds.session()
    base = no_limits_server.creds.server
    ns = "nolimits"
    r = s.post(f"{base}/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": ns}}, timeout=30)
    assert r.status_code == 201, r.text
    wait_for(lambda: s.get(f"{base}/api/v1/namespaces/{ns}/serviceaccounts/default",
                           timeout=30).status_code == 200, 10, what="the default account")
    r = s.post(f"{base}/api/v1/namespaces/{ns}/limitranges", json=limit_range(ns), timeout=30)
    assert r.status_code == 201, r.text
    small = pod("small")
    small["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "50m"}}
    r = s.post(f"{base}/api/v1/namespaces/{ns}/pods", json=small, timeout=30)
    assert r.status_code == 201, r.text
    assert "limits" not in r.json()["spec"]["containers"][0]["resources"]
    # The other plugins still run.
    assert r.json()["spec"]["serviceAccountName"] == "default"


def test_an_unknown_plugin_name_stops_the_server(e2e_tmp):
    workdir = e2e_tmp / "admission-unknown"
    workdir.mkdir(parents=True, exist_ok=True)
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--enable-admission-plugins=NoSuchPlugin"]
    with pytest.raises(BaseException):
        server.start(timeout=10)
    server.stop(signal.SIGKILL, timeout=5)
    assert 'enable-admission-plugins plugin "NoSuchPlugin" is unknown' in server.log_path.read_text()
