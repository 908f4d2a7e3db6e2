"""The built-in Ingress controller: an HTTP and HTTPS proxy on the host (here on loopback
ports of the test's own) routes hosts and paths to Services' ready pods, serves TLS
certificates from Secrets by SNI (ingress-nginx's fake certificate otherwise), sets the
X-Forwarded headers, writes the Ingresses' status, and takes a configuration change without
dropping a request in flight.

Needs what test_agent.py needs: root, runc and busybox-static; and openssl for certificates.
All traffic goes to 127.0.0.1 (the proxy) and from there to pod addresses on the node's
bridge."""

import http.client
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from agent_node import IMAGE, NEEDS_AGENT, Node, apply, wait_pod  # noqa: F401
from conftest import KUBECTL_VERSIONS, Kubectl, free_port, rand_suffix, wait_for

pytestmark = NEEDS_AGENT

FAKE_CERTIFICATE = "Kubernetes Ingress Controller Fake Certificate"

# Each server answers every path it knows with its app and pod name; /cgi-bin/slow after 3 s;
# /cgi-bin/env with the request's CGI environment (the headers as HTTP_*).
SERVE = ("for d in /www /www/api /www/v2; do mkdir -p $d && echo $APP $(hostname) > $d/index.html; done; "
         "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\nsleep 3\\necho Content-Type: text/plain\\necho\\necho slow\\n' "
         "> /www/cgi-bin/slow && chmod +x /www/cgi-bin/slow && "
         "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nenv\\n' > /www/cgi-bin/env && "
         "chmod +x /www/cgi-bin/env && exec httpd -f -p 8080 -h /www")


@pytest.fixture(scope="module")
def node(e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix="test_ingress-", dir=e2e_tmp))
    http_port, https_port = free_port(), free_port()
    n = Node(workdir, ["--ingress-http-address", f"127.0.0.1:{http_port}",
                       "--ingress-https-address", f"127.0.0.1:{https_port}"], ingress=True)
    n.http_port, n.https_port = http_port, https_port
    yield n
    n.cleanup()


@pytest.fixture(scope="module")
def k(node):
    return Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)


@pytest.fixture
def ns(node):
    name = f"e2e-ingress-{rand_suffix()}"
    node.cluster.create_namespace(name)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))


def app(k, ns, node, name, replicas=1, readiness=None):
    container = {"name": "httpd", "image": IMAGE, "env": [{"name": "APP", "value": name}],
                 "command": ["sh", "-c", SERVE], "ports": [{"name": "http", "containerPort": 8080}]}
    if readiness:
        container["readinessProbe"] = readiness
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                       "template": {"metadata": {"labels": {"app": name}}, "spec": {
                           "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                           "containers": [container]}}}})
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
              "spec": {"selector": {"app": name}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})


def get(node, host, path="/", timeout=10):
    """A GET through the ingress: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        return r.status, r.read().decode().strip()
    finally:
        c.close()


def answers(node, host, path, app_name):
    status, body = get(node, host, path)
    return status == 200 and body.startswith(app_name + " ")


def cgi_env(body):
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def certificate(workdir: Path, host: str):
    key, crt = workdir / f"{host}.key", workdir / f"{host}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}"], check=True, capture_output=True)
    return crt, key


def https_get(node, server_name, path="/", cafile=None):
    """A GET over TLS with `server_name` as SNI and Host: the subject of the certificate the
    listener showed, and the answer's body."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", node.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    pem = ssl.DER_cert_to_PEM_cert(der)
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True,
                             text=True, check=True).stdout
    return subject, data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()


def lb_status(k, ns, name):
    return (k.json("get", "ingress", name, "-n", ns).get("status", {})
            .get("loadBalancer", {}).get("ingress"))


def test_hosts_and_paths_over_http_and_https(node, k, ns):
    app(k, ns, node, "alpha", replicas=2)
    app(k, ns, node, "beta")
    a_crt, a_key = certificate(node.workdir, "a.test")
    b_crt, b_key = certificate(node.workdir, "b.test")
    k("create", "secret", "tls", "a-cert", "-n", ns, f"--cert={a_crt}", f"--key={a_key}")
    k("create", "secret", "tls", "b-cert", "-n", ns, f"--cert={b_crt}", f"--key={b_key}")
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": ns},
              "spec": {"tls": [{"hosts": ["a.test"], "secretName": "a-cert"},
                               {"hosts": ["b.test"], "secretName": "b-cert"}],
                       "rules": [
                           {"host": "a.test", "http": {"paths": [
                               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "alpha", "port": {"name": "web"}}}},
                               {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "beta", "port": {"number": 80}}}}]}},
                           {"host": "b.test", "http": {"paths": [
                               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "beta", "port": {"number": 80}}}}]}},
                           {"host": "*.wild.test", "http": {"paths": [
                               {"path": "/", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "beta", "port": {"name": "web"}}}}]}}]}})
    # No class named: krust's class, made at start, is the default, and admission wrote its
    # name into the Ingress.
    klass = k.json("get", "ingressclass", "krust")
    assert klass["spec"]["controller"] == "krust.dev/ingress"
    assert klass["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert k.json("get", "ingress", "web", "-n", ns)["spec"].get("ingressClassName") == "krust"

    wait_for(lambda: answers(node, "a.test", "/", "alpha") and answers(node, "b.test", "/", "beta"),
             90, interval=0.5, what="both hosts routed")
    assert answers(node, "a.test", "/api/", "beta")
    assert answers(node, "A.Test:80", "/v2/", "alpha")  # the Host header's port and case do not count
    assert answers(node, "x.wild.test", "/", "beta")
    assert get(node, "x.y.wild.test")[0] == 404  # a wildcard is one label
    assert get(node, "c.test")[0] == 404  # no rule, no default backend

    # Both of alpha's ready pods get requests.
    wait_for(lambda: len(k.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=alpha")
                         ["items"][0].get("endpoints") or []) == 2, 90, interval=0.5, what="two alpha endpoints")
    pods = set()
    wait_for(lambda: pods.add(get(node, "a.test")[1].split()[1]) or len(pods) == 2, 30, interval=0.1,
             what="answers from both alpha pods")

    # What the backend sees: its Host, the client's address, the scheme.
    env = cgi_env(get(node, "b.test", "/cgi-bin/env")[1])
    assert env["HTTP_HOST"] == "b.test"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1" and env["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_HOST"] == "b.test"
    assert env["HTTP_X_FORWARDED_PROTO"] == "http"
    assert env["HTTP_X_FORWARDED_PORT"] == str(node.http_port)
    assert len(env["HTTP_X_REQUEST_ID"]) == 32

    # HTTPS: each host its own certificate by SNI; other names get the fake default one.
    subject, body = https_get(node, "a.test", cafile=str(a_crt))
    assert "CN = a.test" in subject and body.startswith("alpha ")
    subject, body = https_get(node, "b.test", cafile=str(b_crt))
    assert "CN = b.test" in subject and body.startswith("beta ")
    subject, body = https_get(node, "x.wild.test")
    assert FAKE_CERTIFICATE in subject and body.startswith("beta ")
    env = cgi_env(https_get(node, "b.test", "/cgi-bin/env", cafile=str(b_crt))[1])
    assert env["HTTP_X_FORWARDED_PROTO"] == "https" and env["HTTP_X_FORWARDED_PORT"] == str(node.https_port)
    # HTTP/2 over TLS (ALPN h2) reaches the HTTP/1.1 backend with its host.
    out = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(a_crt), "-o", "-", "-w", "\\n%{http_version}",
                          "--resolve", f"a.test:{node.https_port}:127.0.0.1", f"https://a.test:{node.https_port}/"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("alpha ") and out.stdout.endswith("\n2"), out.stdout

    # A certificate replaced in its Secret is served from then on.
    c_crt, c_key = certificate(node.workdir, "b.test")
    replaced = k("create", "secret", "tls", "b-cert", "-n", ns, f"--cert={c_crt}", f"--key={c_key}",
                 "--dry-run=client", "-o", "json")
    k("replace", "-f", "-", input=replaced)

    def new_certificate():
        try:
            return "CN = b.test" in https_get(node, "b.test", cafile=str(c_crt))[0]
        except ssl.SSLError:
            return False
    wait_for(new_certificate, 30, interval=0.3, what="the replaced certificate served")

    # The status names the address the proxy listens on.
    status = wait_for(lambda: lb_status(k, ns, "web"), 30, interval=0.5, what="the ingress status")
    assert status == [{"ip": "127.0.0.1"}]


def test_default_backend_unready_backends_and_a_change_in_flight(node, k, ns):
    app(k, ns, node, "gamma")
    # delta's pod is ready only once /www/ready exists.
    app(k, ns, node, "delta", readiness={"exec": {"command": ["test", "-f", "/www/ready"]},
                                         "periodSeconds": 1, "failureThreshold": 1})
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody", "namespace": ns},
              "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}})
    host = f"{ns}.test"
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": ns},
               "spec": {"ingressClassName": "krust",
                        "rules": [{"host": host, "http": {"paths": [
                            {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "nobody", "port": {"number": 80}}}},
                            {"path": "/v2", "pathType": "Prefix", "backend": {"service": {"name": "delta", "port": {"number": 80}}}},
                            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "gamma", "port": {"number": 80}}}}]}}]}}
    apply(k, ingress)
    wait_for(lambda: answers(node, host, "/", "gamma"), 90, interval=0.5, what="the host routed")
    assert get(node, host, "/api")[0] == 503  # Exact, to a Service without endpoints
    assert answers(node, host, "/api/", "gamma")  # not that Exact path: the Prefix /

    # An unready pod gets no traffic (503) until it turns ready.
    delta = wait_for(lambda: k.json("get", "pods", "-n", ns, "-l", "app=delta")["items"], 60, interval=0.5,
                     what="delta's pod")[0]["metadata"]["name"]
    wait_pod(k, ns, delta, lambda p: p["status"].get("phase") == "Running", timeout=90)
    assert get(node, host, "/v2/")[0] == 503
    k("exec", "-n", ns, delta, "--", "touch", "/www/ready")
    wait_for(lambda: answers(node, host, "/v2/", "delta"), 60, interval=0.3, what="delta ready and routed")

    # A slow request in flight while the Ingress changes: it completes.
    result = {}

    def slow():
        result["slow"] = get(node, host, "/cgi-bin/slow", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    ingress["spec"]["rules"][0]["http"]["paths"].insert(0, {
        "path": "/new", "pathType": "Prefix", "backend": {"service": {"name": "nobody", "port": {"number": 80}}}})
    apply(k, ingress)
    wait_for(lambda: get(node, host, "/new")[0] == 503, 30, interval=0.3, what="the change applied")
    t.join(30)
    assert result.get("slow") == (200, "slow")

    # A default backend takes what no rule does.
    ingress["spec"]["defaultBackend"] = {"service": {"name": "gamma", "port": {"number": 80}}}
    apply(k, ingress)
    wait_for(lambda: answers(node, f"other-{host}", "/", "gamma"), 30, interval=0.3, what="the default backend")

    # The old class annotation still names a class; another class's Ingress is not served.
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
              "metadata": {"name": "annotated", "namespace": ns, "annotations": {"kubernetes.io/ingress.class": "krust"}},
              "spec": {"rules": [{"host": f"annotated-{host}", "http": {"paths": [
                  {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "gamma", "port": {"number": 80}}}}]}}]}})
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "theirs", "namespace": ns},
              "spec": {"ingressClassName": "someone-else",
                       "rules": [{"host": f"theirs-{host}", "http": {"paths": [
                           {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "delta", "port": {"number": 80}}}}]}}]}})
    wait_for(lambda: answers(node, f"annotated-{host}", "/", "gamma"), 30, interval=0.3, what="the annotated Ingress")
    assert answers(node, f"theirs-{host}", "/", "gamma")  # the default backend, not theirs
    assert not lb_status(k, ns, "theirs")

    # An Ingress moved to another class leaves: its routes go and its status is cleared.
    wait_for(lambda: lb_status(k, ns, "web"), 30, interval=0.5, what="the status written")
    ingress["spec"]["ingressClassName"] = "someone-else"
    k("delete", "ingress", "annotated", "-n", ns)
    apply(k, ingress)
    wait_for(lambda: get(node, host, "/")[0] == 404, 30, interval=0.3, what="the routes gone")
    wait_for(lambda: not lb_status(k, ns, "web"), 30, interval=0.5, what="the status cleared")
    k("delete", "ingress", "web", "-n", ns)


# A backend that switches to an echo protocol on any request (busybox nc runs the script per
# connection, its stdin and stdout the connection).
UPGRADE = ("printf '%s\\n' 'while read -r line; do [ -z \"$(printf %s \"$line\" | tr -d \"\\r\")\" ] && break; done' "
           "'printf \"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n\"' "
           "'exec cat' > /upgrade.sh && exec nc -ll -p 8080 -e /bin/sh /upgrade.sh")


def test_an_upgraded_connection_is_relayed_both_ways(node, k, ns):
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo", "namespace": ns},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}},
                       "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {
                           "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                           "containers": [{"name": "echo", "image": IMAGE, "command": ["sh", "-c", UPGRADE],
                                           "ports": [{"containerPort": 8080}]}]}}}})
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": ns},
              "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    host = f"up-{ns}.test"
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "echo", "namespace": ns},
              "spec": {"rules": [{"host": host, "http": {"paths": [
                  {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "echo", "port": {"number": 80}}}}]}}]}})

    def upgraded():
        with socket.create_connection(("127.0.0.1", node.http_port), timeout=5) as s:
            s.sendall(f"GET /chat HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                return None
            assert b"upgrade: echo" in head.lower()
            s.sendall(b"hello through the ingress\n")
            echoed = head.split(b"\r\n\r\n", 1)[1]
            while b"\n" not in echoed:
                echoed += s.recv(4096)
            return echoed.decode()

    assert wait_for(upgraded, 90, interval=1, what="an upgraded connection") == "hello through the ingress\n"
