"""Pods bound through pods/binding, evictions against PodDisruptionBudgets, certificates
issued through CertificateSigningRequests, and what a node's credential may read (issue 12)."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from conftest import wait_for


def pod(name, labels=None, secret=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if secret:
        spec["volumes"] = [{"name": "s", "secret": {"secretName": secret}}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def binding(name, node):
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


def test_a_pod_is_bound_once(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("web"))
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods/web/binding", body=binding("web", "n1"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Success"
    got = cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods/web")
    assert got["spec"]["nodeName"] == "n1"
    scheduled = [c for c in got["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"
    again = cluster.post(f"/api/v1/namespaces/{ns}/pods/web/binding", body=binding("web", "n2"))
    assert again.status_code == 409, again.text
    assert again.json()["message"].endswith('pod web is already assigned to node "n1"')
    # The legacy path names the pod in the body.
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("legacy"))
    r = cluster.post(f"/api/v1/namespaces/{ns}/bindings", body=binding("legacy", "n2"))
    assert r.status_code == 201, r.text
    assert cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods/legacy")["spec"]["nodeName"] == "n2"


def make_healthy(cluster, ns, name):
    """Marks a pod Running and Ready through pods/status, as its node agent would."""
    path = f"/api/v1/namespaces/{ns}/pods/{name}"
    current = cluster.ok("GET", path)
    current["status"]["phase"] = "Running"
    current["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    cluster.ok("PUT", path + "/status", body=current)


def eviction(name):
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}


def test_an_eviction_honours_the_disruption_budget(cluster, ns):
    for name in ("a", "b", "c"):
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod(name, {"app": "web"}))
        make_healthy(cluster, ns, name)
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
    cluster.ok("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", body=pdb)
    wait_for(lambda: len(cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods",
                                    params={"labelSelector": "app=web"})["items"]) == 3,
             10, what="the pods in the cache")
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods/a/eviction", body=eviction("a"))
    assert r.status_code == 201, r.text
    assert cluster.get(f"/api/v1/namespaces/{ns}/pods/a").status_code == 404
    status = cluster.ok("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web")["status"]
    # The eviction records "a" as disrupted; the disruption controller may already have
    # recounted without it (the pod is gone), as upstream's does.
    assert status["disruptionsAllowed"] == 0
    assert "a" in status.get("disruptedPods", {}) or status.get("currentHealthy") == 2, status
    wait_for(lambda: len(cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods")["items"]) == 2, 10,
             what="the evicted pod gone from the cache")
    # The refusal quotes the budget's status, which the disruption controller recounts after
    # the first eviction (upstream's message reads the same status).
    wait_for(lambda: cluster.ok("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web")
             ["status"].get("currentHealthy") == 2, 10, what="the budget recounted")
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods/b/eviction", body=eviction("b"))
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0] == {
        "reason": "DisruptionBudget",
        "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}
    assert cluster.get(f"/api/v1/namespaces/{ns}/pods/b").status_code == 200
    missing = cluster.post(f"/api/v1/namespaces/{ns}/pods/nope/eviction", body=eviction("nope"))
    assert missing.status_code == 404
    # A second budget over the same pods: upstream refuses with 500.
    pdb["metadata"]["name"] = "web2"
    cluster.ok("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", body=pdb)

    def two_budgets():
        r = cluster.post(f"/api/v1/namespaces/{ns}/pods/b/eviction", body=eviction("b"))
        return r.json() if r.status_code == 500 else None
    body = wait_for(two_budgets, 10, what="a 500 for two budgets")
    assert "more than one PodDisruptionBudget" in body["message"]


def openssl_request(out, cn, org):
    key, csr = out / f"{cn}.key", out / f"{cn}.csr"
    subj = f"/CN={cn}" + (f"/O={org}" if org else "")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", subj], check=True, capture_output=True)
    return key, csr


def session_for(cluster, crt, key):
    session = cluster.creds.session(with_client_cert=False)
    session.cert = (str(crt), str(key))
    return session


def issue(cluster, kubectl, out, name, cn, org, signer):
    """Creates a CSR as the admin, approves it with kubectl, and returns the cert and key."""
    key, csr = openssl_request(out, cn, org)
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name},
           "spec": {"request": base64.b64encode(csr.read_bytes()).decode(), "signerName": signer,
                    "usages": ["digital signature", "client auth"], "expirationSeconds": 3600,
                    "username": "someone-else", "groups": ["pretend"]}}
    created = cluster.ok("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                         body=obj)
    assert created["spec"]["username"] == "system:admin"
    assert "system:masters" in created["spec"]["groups"]
    kubectl("certificate", "approve", name)

    def issued():
        got = cluster.ok("GET", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")
        return got["status"].get("certificate")
    cert = wait_for(issued, 15, what="the certificate")
    crt = out / f"{name}.crt"
    crt.write_bytes(base64.b64decode(cert))
    return crt, key


def test_an_approved_request_yields_a_certificate_that_authenticates(cluster, kubectl):
    out = cluster.workdir / f"csr-{kubectl.version}"
    out.mkdir(exist_ok=True)
    name = f"jane-{kubectl.version.replace('.', '-')}"
    crt, key = issue(cluster, kubectl, out, name, "jane", "dev",
                     "kubernetes.io/kube-apiserver-client")
    condition = kubectl("get", "csr", name, "-o", "jsonpath={.status.conditions[0].type}")
    assert condition == "Approved"
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    r = session_for(cluster, crt, key).post(
        cluster.url + "/apis/authentication.k8s.io/v1/selfsubjectreviews", json=review)
    assert r.status_code == 201, r.text
    info = r.json()["status"]["userInfo"]
    assert info["username"] == "jane"
    assert "dev" in info["groups"]
    cluster.ok("DELETE", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")


@pytest.fixture(scope="module")
def node_n1(cluster):
    """A client certificate CN=system:node:n1 O=system:nodes signed by the cluster CA."""
    tls = cluster.server.data_dir / "tls"
    out = cluster.workdir / "node-n1"
    out.mkdir(exist_ok=True)
    key, csr = openssl_request(out, "system:node:n1", "system:nodes")
    ext = out / "client.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    crt = out / "n1.crt"
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", tls / "ca.crt", "-CAkey",
                    tls / "ca.key", "-CAcreateserial", "-out", crt, "-days", "1",
                    "-extfile", ext], check=True, capture_output=True)
    return session_for(cluster, crt, key)


def secret(name):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"k": "v"}}


def test_a_node_reads_only_the_secrets_of_its_pods(cluster, ns, node_n1):
    for name in ("used", "unused", "elsewhere"):
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/secrets", body=secret(name))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("web", secret="used"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("other", secret="elsewhere"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods/web/binding", body=binding("web", "n1"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods/other/binding", body=binding("other", "n2"))
    url = cluster.url + f"/api/v1/namespaces/{ns}/secrets/"
    got = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(
        node_n1.get(url + "used")), 10, what="the node reading its pod's secret")
    assert got["metadata"]["name"] == "used"
    for name in ("unused", "elsewhere"):
        r = node_n1.get(url + name)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            f'secrets "{name}" is forbidden: User "system:node:n1" cannot get resource "secrets" '
            f'in API group "" in the namespace "{ns}": '
            "no relationship found between node 'n1' and this object")
    assert node_n1.get(cluster.url + f"/api/v1/namespaces/{ns}/secrets").status_code == 403
    # What the system:node role gives: reading nodes and pods.
    assert node_n1.get(cluster.url + "/api/v1/nodes").status_code == 200
    # Once its pod is gone, so is the node's access.
    cluster.ok("DELETE", f"/api/v1/namespaces/{ns}/pods/web", params={"gracePeriodSeconds": "0"})
    wait_for(lambda: node_n1.get(url + "used").status_code == 403, 10,
             what="the access gone with the pod")
