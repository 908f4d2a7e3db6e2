"""Probe handlers beyond exec and plain HTTP (issue 14): `httpGet` with `scheme: HTTPS` (the
server's certificate is not checked, as upstream's prober) and `grpc` probes (the gRPC health
protocol). The servers run on this host's loopback, as the probes' `host` (HTTPS) or the
node's address of a host-network pod (gRPC) lets them; each test stops its server."""

import http.server
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent_node import k, node, ns  # noqa: F401 (fixtures)
from agent_node import IMAGE, NEEDS_AGENT, apply, pod, status_of, wait_events, wait_pod
from test_webhooks import https_server as served_over_https

pytestmark = NEEDS_AGENT


def ready(p, container="c"):
    return status_of(p, container)["ready"] is True


def unhealthy(k, ns, name):
    """The messages of the pod's Unhealthy events."""
    return [m for r, m, _ in wait_events(k, ns, name, "Unhealthy") if r == "Unhealthy"]


@pytest.fixture
def https_server(tmp_path):
    """An HTTPS server on 127.0.0.1 (test_webhooks' server, its certificate from a CA the
    agent does not know): `/healthz` answers 200, anything else 500; yields (port, the
    User-Agents it saw)."""
    agents = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            agents.append(self.headers.get("User-Agent"))
            self.send_response(200 if self.path == "/healthz" else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with served_over_https(Handler, tmp_path) as (url, _ca):
        yield int(url.rsplit(":", 1)[1]), agents


def test_https_probes_skip_certificate_checks(node, k, ns, https_server):
    port, agents = https_server

    def probe(path):
        return {"httpGet": {"scheme": "HTTPS", "host": "127.0.0.1", "port": port, "path": path},
                "periodSeconds": 1, "failureThreshold": 1}
    apply(k, pod("secure", ns, node, [
        {"name": "c", "image": IMAGE, "command": ["sleep", "3600"], "readinessProbe": probe("/healthz")},
        {"name": "failing", "image": IMAGE, "command": ["sleep", "3600"], "readinessProbe": probe("/broken")},
    ]))
    p = wait_pod(k, ns, "secure", lambda p: ready(p), timeout=60, what="ready through HTTPS")
    assert status_of(p, "failing")["ready"] is False
    assert "kube-probe/1.33" in agents
    assert any(m == "Readiness probe failed: HTTP probe failed with statuscode: 500"
               for m in unhealthy(k, ns, "secure"))


@pytest.fixture
def grpc_health_server():
    """A gRPC health server on 127.0.0.1: the server as a whole SERVING, the service `down`
    NOT_SERVING; yields its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("down", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def test_grpc_probes_ask_the_health_service(node, k, ns, grpc_health_server):
    port = grpc_health_server

    def probe(**grpc_action):
        return {"grpc": {"port": port, **grpc_action}, "periodSeconds": 1, "failureThreshold": 1}
    # A host-network pod: its address is the node's (127.0.0.1), where the server listens.
    apply(k, pod("grpc", ns, node, [
        {"name": "c", "image": IMAGE, "command": ["sleep", "3600"], "readinessProbe": probe()},
        {"name": "down", "image": IMAGE, "command": ["sleep", "3600"],
         "readinessProbe": probe(service="down")},
    ], hostNetwork=True))
    p = wait_pod(k, ns, "grpc", lambda p: ready(p), timeout=60, what="ready through gRPC")
    assert status_of(p, "down")["ready"] is False
    assert 'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")' in unhealthy(k, ns, "grpc")
