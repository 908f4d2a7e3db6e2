"""Admission webhooks and ValidatingAdmissionPolicies, end to end: a small HTTPS webhook server
started by the test on loopback (its CA made with the openssl CLI), a mutating webhook that adds
a label, a validating webhook that refuses a name, and a policy that refuses replicas > 5."""

import base64
import contextlib
import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import KUBECTL_VERSIONS, Kubectl, assert_status, configmap

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
REFUSED_NAME = "refused-by-webhook"
WARNED_NAME = "warned"


def make_certs(tmp):
    """A CA and a serving certificate for 127.0.0.1 signed by it; returns (ca, cert, key)."""
    ca_key, ca, key, csr, cert, ext = (tmp / n for n in (
        "ca.key", "ca.crt", "hook.key", "hook.csr", "hook.crt", "hook.ext"))

    def run(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "1", "-subj", "/CN=webhook-e2e-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", ext)
    return ca, cert, key


class Hooks(BaseHTTPRequestHandler):
    """/mutate adds the label `mutated=yes`; /validate refuses one name."""

    calls: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        request = review["request"]
        Hooks.calls.append((self.path, request))
        response = {"uid": request["uid"], "allowed": True}
        if request.get("name") == WARNED_NAME:
            response["warnings"] = [f"{self.path[1:]} webhook saw {WARNED_NAME}"]
        if self.path == "/mutate":
            labels = (request["object"].get("metadata") or {}).get("labels")
            ops = [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
            if labels is None:
                ops = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        elif self.path == "/validate" and request.get("name") == REFUSED_NAME:
            response = {"uid": request["uid"], "allowed": False,
                        "status": {"code": 403, "message": f"the name {REFUSED_NAME} is taken"}}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def https_server(handler, tmp):
    """`handler` served over HTTPS on 127.0.0.1 with a certificate of a CA made in `tmp`;
    yields (base URL, CA bundle in base64)."""
    ca, cert, key = make_certs(tmp)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f"https://127.0.0.1:{server.server_address[1]}",
               base64.b64encode(ca.read_bytes()).decode())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory):
    """The HTTPS webhook server on 127.0.0.1; yields (base URL, CA bundle in base64)."""
    with https_server(Hooks, tmp_path_factory.mktemp("webhook-certs")) as served:
        yield served


def webhook(name, url, ca, ns, **extra):
    """A webhook on configmap creates in namespaces labelled `webhook-e2e=<ns>`."""
    return {"name": name, "clientConfig": {"url": url, "caBundle": ca},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"webhook-e2e": ns}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
            **extra}


def create_eventually(cluster, path, body, check, timeout=10.0):
    """Creates `body` until `check(response)` holds (the server sees new configuration through
    its watch cache, a moment after it is written); returns the last response."""
    deadline = time.monotonic() + timeout
    while True:
        r = cluster.post(path, body=body)
        if check(r) or time.monotonic() > deadline:
            return r
        if r.status_code == 201:
            cluster.delete(f"{path}/{body['metadata']['name']}")
        time.sleep(0.2)


def install_policy(cluster, cleanup, policy, ns):
    """Creates `policy` and a binding of it that denies in the namespace `ns` (by its
    `webhook-e2e` label); returns the binding."""
    name = policy["metadata"]["name"]
    binding = {"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": f"{name}-binding"},
               "spec": {"policyName": name, "validationActions": ["Deny"],
                        "matchResources": {"namespaceSelector": {
                            "matchLabels": {"webhook-e2e": ns}}}}}
    cluster.ok("POST", f"{ADMISSION}/validatingadmissionpolicies", body=policy, expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingadmissionpolicies/{name}")
    cluster.ok("POST", f"{ADMISSION}/validatingadmissionpolicybindings", body=binding,
               expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingadmissionpolicybindings/{name}-binding")
    return binding


@pytest.fixture
def labelled_ns(cluster, ns_name):
    cluster.create_namespace(ns_name, labels={"webhook-e2e": ns_name})
    return ns_name


@pytest.fixture
def cleanup(cluster):
    paths = []
    yield paths
    for p in paths:
        cluster.delete(p)


def test_webhooks_mutate_and_refuse(cluster, labelled_ns, webhook_server, cleanup):
    url, ca = webhook_server
    ns = labelled_ns
    mutating = {"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration", "metadata": {"name": f"label-{ns}"},
                "webhooks": [webhook("label.e2e.krust.dev", f"{url}/mutate", ca, ns)]}
    validating = {"apiVersion": "admissionregistration.k8s.io/v1",
                  "kind": "ValidatingWebhookConfiguration", "metadata": {"name": f"deny-{ns}"},
                  "webhooks": [webhook("deny.e2e.krust.dev", f"{url}/validate", ca, ns)]}
    cluster.ok("POST", f"{ADMISSION}/mutatingwebhookconfigurations", body=mutating, expect=(201,))
    cleanup.append(f"{ADMISSION}/mutatingwebhookconfigurations/{mutating['metadata']['name']}")
    cluster.ok("POST", f"{ADMISSION}/validatingwebhookconfigurations", body=validating,
               expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingwebhookconfigurations/{validating['metadata']['name']}")

    path = f"/api/v1/namespaces/{ns}/configmaps"
    r = create_eventually(cluster, path, configmap("plain", {"a": "b"}),
                          lambda r: r.status_code == 201
                          and r.json()["metadata"].get("labels", {}).get("mutated") == "yes")
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["labels"] == {"mutated": "yes"}
    stored = cluster.ok("GET", f"{path}/plain")
    assert stored["metadata"]["labels"]["mutated"] == "yes"

    # The review carried the request as upstream's does.
    seen = [req for p, req in Hooks.calls if p == "/mutate" and req.get("namespace") == ns]
    assert seen, Hooks.calls
    req = seen[-1]
    assert req["operation"] == "CREATE"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert req["object"]["data"] == {"a": "b"}
    assert req["userInfo"]["username"]

    r = cluster.post(path, body=configmap(REFUSED_NAME))
    st = assert_status(r, 403)
    assert st["message"] == (f'admission webhook "deny.e2e.krust.dev" denied the request: '
                             f"the name {REFUSED_NAME} is taken")
    assert cluster.get(f"{path}/{REFUSED_NAME}").status_code == 404

    # The webhooks' warnings reach the client as `Warning` headers, the mutating one's first,
    # and kubectl prints them.
    r = cluster.post(path, body=configmap(WARNED_NAME))
    assert r.status_code == 201, r.text
    assert r.headers.get("Warning") == (f'299 - "mutate webhook saw {WARNED_NAME}", '
                                        f'299 - "validate webhook saw {WARNED_NAME}"'), r.headers
    assert cluster.delete(f"{path}/{WARNED_NAME}").status_code == 200
    for version in KUBECTL_VERSIONS:
        k = Kubectl(version, cluster, cluster.workdir)
        p = k.run("create", "configmap", WARNED_NAME, "-n", ns)
        assert p.returncode == 0, p.stderr
        assert f"Warning: validate webhook saw {WARNED_NAME}" in p.stderr, p.stderr
        assert cluster.delete(f"{path}/{WARNED_NAME}").status_code == 200

    # Other namespaces are not the webhooks' business.
    other = cluster.ok("POST", "/api/v1/namespaces/default/configmaps",
                       body=configmap(f"{ns}-untouched"), expect=(201,))
    cleanup.append(f"/api/v1/namespaces/default/configmaps/{ns}-untouched")
    assert "mutated" not in (other["metadata"].get("labels") or {})


def test_a_policy_refuses_too_many_replicas(cluster, labelled_ns, cleanup):
    ns = labelled_ns
    name = f"max-replicas-{ns[-5:]}"
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": name},
              "spec": {"failurePolicy": "Fail",
                       "matchConstraints": {"resourceRules": [{
                           "apiGroups": ["apps"], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                       "validations": [{"expression": "object.spec.replicas <= 5"}]}}
    binding = install_policy(cluster, cleanup, policy, ns)

    def deployment(dname, replicas):
        labels = {"app": dname}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dname},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}

    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    r = create_eventually(cluster, path, deployment("big", 6), lambda r: r.status_code != 201)
    st = assert_status(r, 422, "Invalid")
    assert st["message"] == (
        f'deployments.apps "big" is forbidden: ValidatingAdmissionPolicy \'{name}\' with binding '
        f"'{name}-binding' denied request: failed expression: object.spec.replicas <= 5")
    cluster.ok("POST", path, body=deployment("small", 5), expect=(201,))
    r = cluster.patch(f"{path}/small", {"spec": {"replicas": 7}})
    assert_status(r, 422, "Invalid")

    # A binding with `Warn` lets the write through and tells the client, in upstream's words.
    warn = {**binding, "metadata": {"name": f"{name}-warn"},
            "spec": {**binding["spec"], "validationActions": ["Warn"]}}
    strict = {**policy, "metadata": {"name": f"{name}-3"},
              "spec": {**policy["spec"], "validations": [{"expression":
                                                          "object.spec.replicas <= 3"}]}}
    warn["spec"]["policyName"] = f"{name}-3"
    cluster.ok("POST", f"{ADMISSION}/validatingadmissionpolicies", body=strict, expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingadmissionpolicies/{name}-3")
    cluster.ok("POST", f"{ADMISSION}/validatingadmissionpolicybindings", body=warn,
               expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingadmissionpolicybindings/{name}-warn")
    expected = (f"299 - \"Validation failed for ValidatingAdmissionPolicy '{name}-3' with binding "
                f"'{name}-warn': failed expression: object.spec.replicas <= 3\"")
    r = create_eventually(cluster, path, deployment("four", 4),
                          lambda r: r.status_code == 201 and "Warning" in r.headers)
    assert r.status_code == 201, r.text
    assert r.headers.get("Warning") == expected, r.headers


def test_a_policy_sees_what_the_server_allocated_to_a_service(cluster, labelled_ns, cleanup):
    """Validating admission sees a Service with its cluster IP, families and node ports
    allocated, on create and on update, as upstream allocates them before validating admission
    (`BeginCreate`, `BeginUpdate`); a Service it refuses gives them back."""
    ns = labelled_ns
    name = f"allocated-{ns[-5:]}"
    checks = ["has(object.spec.clusterIP) && object.spec.clusterIP != ''",
              "object.spec.ipFamilies.size() > 0",
              "object.spec.type != 'NodePort' || "
              "object.spec.ports.all(p, has(p.nodePort) && p.nodePort > 0)",
              "!object.metadata.name.startsWith('refused')",
              "!has(object.metadata.labels) || !('refuse' in object.metadata.labels)"]
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": name},
              "spec": {"failurePolicy": "Fail",
                       "matchConstraints": {"resourceRules": [{
                           "apiGroups": [""], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["services"]}]},
                       "validations": [{"expression": e} for e in checks]}}
    install_policy(cluster, cleanup, policy, ns)

    def service(sname, node_port=None):
        port = {"port": 80, **({"nodePort": node_port} if node_port else {})}
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": sname},
                "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [port]}}

    path = f"/api/v1/namespaces/{ns}/services"
    # Once the policy applies (a refused name is refused), a Service that names nothing is let
    # through: the policy saw what the server chose.
    r = create_eventually(cluster, path, service("refused-first"), lambda r: r.status_code == 422)
    assert_status(r, 422, "Invalid")
    created = cluster.ok("POST", path, body=service("plain"), expect=(201,))
    assert created["spec"]["clusterIP"] and created["spec"]["ports"][0]["nodePort"] > 0
    # A refused Service's node port is free again at once (the port: one the server just
    # chose, then freed).
    node_port = created["spec"]["ports"][0]["nodePort"]
    cluster.ok("DELETE", f"{path}/plain")
    r = cluster.post(path, body=service("refused-second", node_port))
    assert_status(r, 422, "Invalid")
    taken = cluster.ok("POST", path, body=service("second", node_port), expect=(201,))
    assert taken["spec"]["ports"][0]["nodePort"] == node_port

    # An update that makes a ClusterIP Service a NodePort one: the policy sees the node port
    # the server chose for it.
    inner = {**service("grows"), "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
    cluster.ok("POST", path, body=inner, expect=(201,))
    merge = {"Content-Type": "application/merge-patch+json"}
    grown = cluster.ok("PATCH", f"{path}/grows", body={"spec": {"type": "NodePort"}},
                       headers=merge)
    assert grown["spec"]["ports"][0]["nodePort"] > 0
    # One the policy refuses gives back the node port it asked for, at once.
    freed = grown["spec"]["ports"][0]["nodePort"]
    cluster.ok("DELETE", f"{path}/grows")
    cluster.ok("POST", path, body={**inner, "metadata": {"name": "stays"}}, expect=(201,))
    refused = {"metadata": {"labels": {"refuse": "yes"}},
               "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": freed}]}}
    r = cluster.request("PATCH", f"{path}/stays", body=refused, headers=merge)
    assert_status(r, 422, "Invalid")
    assert f"ValidatingAdmissionPolicy '{name}'" in r.json()["message"], r.text
    assert "nodePort" not in cluster.ok("GET", f"{path}/stays")["spec"]["ports"][0]
    again = cluster.ok("POST", path, body={**service("again", freed)}, expect=(201,))
    assert again["spec"]["ports"][0]["nodePort"] == freed


def test_webhook_warnings_on_delete_reach_the_client(cluster, labelled_ns, webhook_server,
                                                      cleanup):
    """A validating webhook's warnings on a DELETE reach the client as `Warning` headers, as
    on the other writes, and kubectl prints them."""
    url, ca = webhook_server
    ns = labelled_ns
    rules = [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"],
              "resources": ["configmaps"]}]
    config = {"apiVersion": "admissionregistration.k8s.io/v1",
              "kind": "ValidatingWebhookConfiguration",
              "metadata": {"name": f"warn-delete-{ns}"},
              "webhooks": [webhook("warn-delete.e2e.krust.dev", f"{url}/validate", ca, ns,
                                   rules=rules)]}
    cluster.ok("POST", f"{ADMISSION}/validatingwebhookconfigurations", body=config,
               expect=(201,))
    cleanup.append(f"{ADMISSION}/validatingwebhookconfigurations/{config['metadata']['name']}")

    path = f"/api/v1/namespaces/{ns}/configmaps"
    expected = f'299 - "validate webhook saw {WARNED_NAME}"'
    # The server sees the new configuration through its watch cache, a moment after it is
    # written: delete until the webhook is consulted.
    deadline = time.monotonic() + 10
    while True:
        cluster.ok("POST", path, body=configmap(WARNED_NAME), expect=(201,))
        r = cluster.delete(f"{path}/{WARNED_NAME}")
        assert r.status_code == 200, r.text
        if r.headers.get("Warning") == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.headers.get("Warning") == expected, r.headers
    assert any(p == "/validate" and req["operation"] == "DELETE"
               and req.get("name") == WARNED_NAME for p, req in Hooks.calls)
    for version in KUBECTL_VERSIONS:
        cluster.ok("POST", path, body=configmap(WARNED_NAME), expect=(201,))
        k = Kubectl(version, cluster, cluster.workdir)
        p = k.run("delete", "configmap", WARNED_NAME, "-n", ns)
        assert p.returncode == 0, p.stderr
        assert f"Warning: validate webhook saw {WARNED_NAME}" in p.stderr, p.stderr
