"""The HTTP edge under abuse: slow and silent clients, too many requests, malformed requests,
and the metrics that show it. Embedded store only: nothing here depends on the backend.

Two servers of their own: `edge` with short connection timeouts, and `tight` with in-flight
limits of one request of each kind.
"""

from __future__ import annotations

import http.client
import json
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import Cluster, KrustServer, Kubectl, KUBECTL_VERSIONS, wait_for

BODY_TIMEOUT = 2  # seconds, --request-body-timeout of the `edge` server


def _start(e2e_tmp, name, args) -> Cluster:
    workdir = Path(tempfile.mkdtemp(prefix=f"test_edge-{name}-", dir=e2e_tmp))
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = [str(a) for a in args]
    try:
        server.start()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return Cluster(server, None)


@pytest.fixture(scope="module")
def edge(e2e_tmp):
    c = _start(e2e_tmp, "edge", [
        "--request-body-timeout", f"{BODY_TIMEOUT}s", "--request-header-timeout", "3s",
        "--idle-connection-timeout", "5s", "--tls-handshake-timeout", "5s",
    ])
    yield c
    c.server.stop(signal.SIGTERM, timeout=15)


@pytest.fixture(scope="module")
def tight(e2e_tmp):
    c = _start(e2e_tmp, "tight", [
        "--max-requests-inflight", "1", "--max-mutating-requests-inflight", "1",
        # Refused at once, as upstream's max-in-flight filter without priority and fairness.
        "--enable-priority-and-fairness=false",
        "--request-body-timeout", "30s",
        # The in-flight limits are counted exactly here: no controller traffic beside.
        "--disable-controller-manager",
    ])
    yield c
    c.server.stop(signal.SIGTERM, timeout=15)


def user_credentials(cluster: Cluster, name="e2e-user", group="e2e") -> tuple[str, str]:
    """A client certificate and key for a user outside system:masters, signed by the cluster
    CA with openssl."""
    tls = cluster.server.data_dir / "tls"
    out = cluster.workdir / f"user-{name}"
    out.mkdir(exist_ok=True)
    key, csr, crt, ext = out / "user.key", out / "user.csr", out / "user.crt", out / "ext.cnf"
    if crt.exists():
        return str(crt), str(key)
    ext.write_text("extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n")
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a client certificate"
    subprocess.run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-subj", f"/CN={name}/O={group}", "-out", csr],
                   check=True, capture_output=True)
    subprocess.run([openssl, "x509", "-req", "-in", csr, "-CA", tls / "ca.crt",
                    "-CAkey", tls / "ca.key", "-CAcreateserial", "-out", crt, "-days", "1",
                    "-extfile", ext], check=True, capture_output=True)
    grant_cluster_admin(cluster, name)
    return str(crt), str(key)


def grant_cluster_admin(cluster: Cluster, name: str):
    """Binds the ClusterRole cluster-admin to user `name` (RBAC, not system:masters: the user
    still counts against the limits in flight), and waits until the authorizer sees it."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": f"e2e-{name}-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": name}]}
    r = cluster.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body=binding)
    assert r.status_code in (201, 409), r.text
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": name, "resourceAttributes": {"verb": "create",
                                                            "resource": "namespaces"}}}

    def allowed():
        r = cluster.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        return r.status_code == 201 and r.json()["status"].get("allowed")

    wait_for(allowed, 10, what=f"{name} to be authorized")


def tls_socket(cluster: Cluster, cert=None, timeout=15.0, alpn=("http/1.1",)) -> ssl.SSLSocket:
    """A TLS connection to the server, with the admin's certificate unless `cert` is given."""
    ctx = cluster.creds.ssl_context(with_client_cert=cert is None)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    ctx.set_alpn_protocols(list(alpn))
    u = urllib.parse.urlsplit(cluster.url)
    raw = socket.create_connection((u.hostname, u.port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=u.hostname)
    s.settimeout(timeout)
    return s


def read_until_closed(s: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (bytes, closed)."""
    out = b""
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, ssl.SSLError):
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return code, headers, body


def exchange(cluster, request: bytes, timeout=15.0, cert=None) -> tuple[int, dict, dict | None]:
    """Sends raw bytes on a new connection; returns the code, headers and JSON body."""
    s = tls_socket(cluster, cert=cert, timeout=timeout)
    try:
        s.sendall(request)
        raw, _ = read_until_closed(s, time.monotonic() + timeout)
    finally:
        s.close()
    assert raw, f"no answer to {request[:80]!r}"
    code, headers, body = parse_response(raw)
    length = int(headers.get("content-length", len(body)))
    body = body[:length]
    return code, headers, (json.loads(body) if body else None)


def assert_status_body(body, code, reason=None):
    assert body is not None, "the answer has no body"
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure" and body.get("code") == code, body
    if reason:
        assert body.get("reason") == reason, body


# ---------------------------------------------------------------------------------------------
# timeouts


def test_a_post_whose_body_never_arrives_is_answered_408_and_closed(edge):
    s = tls_socket(edge, timeout=2.0)
    started = time.monotonic()
    try:
        s.sendall(b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\":")
        raw, closed = read_until_closed(s, started + BODY_TIMEOUT + 20)
    finally:
        s.close()
    assert closed, f"the connection stayed open; got {raw[:300]!r}"
    code, headers, body = parse_response(raw)
    assert code == 408, raw[:300]
    assert headers.get("connection") == "close"
    assert_status_body(json.loads(body), 408, "Timeout")


def test_a_client_that_sends_nothing_is_disconnected(edge):
    # Neither a TLS handshake nor, after one, a request: both are closed by the server.
    u = urllib.parse.urlsplit(edge.url)
    silent = socket.create_connection((u.hostname, u.port), timeout=2.0)
    after_tls = tls_socket(edge, timeout=2.0)
    try:
        for s in (silent, after_tls):
            data, closed = read_until_closed(s, time.monotonic() + 30)
            assert closed and data == b"", data
    finally:
        silent.close()
        after_tls.close()


def read_one_response(s: ssl.SSLSocket) -> int:
    """Reads one response with a Content-Length from a kept-alive connection; its code."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = s.recv(65536)
        assert chunk, f"closed before an answer: {raw[:200]!r}"
        raw += chunk
    code, headers, body = parse_response(raw)
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed in the middle of an answer"
        body += chunk
    return code


GET_VERSION = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_kept_alive_connection_waits_the_idle_limit_not_the_head_limit(edge):
    # Head limit 3 s, idle limit 5 s (as upstream's 32 s and 90 s): waiting 4 s between two
    # requests is idling, not a slow head.
    s = tls_socket(edge, timeout=2.0)
    try:
        s.sendall(GET_VERSION)
        assert read_one_response(s) == 200
        time.sleep(4)
        s.sendall(GET_VERSION)
        assert read_one_response(s) == 200
        answered = time.monotonic()
        # Idle past the idle limit, the connection is closed.
        data, closed = read_until_closed(s, answered + 20)
        assert closed and data == b"", data
        assert time.monotonic() - answered >= 4.5
    finally:
        s.close()


def test_a_head_that_stops_arriving_is_cut_at_the_head_limit(edge):
    s = tls_socket(edge, timeout=2.0)
    try:
        s.sendall(GET_VERSION)
        assert read_one_response(s) == 200
        started = time.monotonic()
        s.sendall(b"GET /version HTTP/1.1\r\nHost:")
        data, closed = read_until_closed(s, started + 20)
        assert closed, data
        # Closed by the head limit (3 s from the head's first byte), not at the idle limit
        # (5 s after the last answer).
        assert 2.5 <= time.monotonic() - started < 4.5
    finally:
        s.close()


def test_many_idle_sockets_do_not_keep_new_clients_out(edge):
    want = 1200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 1000), hard))
    u = urllib.parse.urlsplit(edge.url)
    idle = []
    try:
        for _ in range(want):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((u.hostname, u.port))
            idle.append(s)
        # A new client (new connection) still gets an answer.
        session = edge.creds.session()
        r = session.get(edge.url + "/readyz", timeout=10)
        assert r.status_code == 200, r.text
        k = Kubectl(KUBECTL_VERSIONS[-1], edge, edge.workdir)
        assert k("get", "--raw", "/readyz", timeout=20).strip() == "ok"
        # The server kept working: a write goes through.
        name = f"edge-idle-{int(time.time())}"
        edge.ok("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, expect=(201,))
        edge.delete_namespace(name)
    finally:
        for s in idle:
            s.close()


# ---------------------------------------------------------------------------------------------
# requests in flight


class SlowPost:
    """A POST whose body is held back: a mutating request in flight until released."""

    def __init__(self, cluster, cert=None):
        self.s = tls_socket(cluster, cert=cert, timeout=30)
        self.s.sendall(b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n")

    def close(self):
        self.s.close()


def test_over_the_inflight_limit_requests_get_429_with_retry_after(tight):
    user = user_credentials(tight)
    session = tight.creds.session(with_client_cert=False)
    session.cert = user
    # The user gets in when nothing else is in flight (403/404 would also do: it was served).
    r = session.get(tight.url + "/version", timeout=10)
    assert r.status_code == 200, r.text
    holder = SlowPost(tight)
    try:
        def refused():
            r = session.post(tight.url + "/api/v1/namespaces", timeout=10,
                             json={"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "edge-refused"}})
            return r if r.status_code == 429 else None

        # The holder's request starts as soon as its head is read.
        deadline = time.monotonic() + 10
        r = None
        while r is None and time.monotonic() < deadline:
            r = refused()
        assert r is not None, "a second mutating request was not refused"
        assert r.headers.get("Retry-After") == "1"
        body = r.json()
        assert_status_body(body, 429, "TooManyRequests")
        assert body["message"] == "Too many requests, please try again later."
        # Read-only requests have their own limit.
        assert session.get(tight.url + "/version", timeout=10).status_code == 200
        # system:masters is always served.
        r = tight.get("/api/v1/namespaces/default")
        assert r.status_code == 200, r.text
    finally:
        holder.close()
    # Once the holder is gone, the slot comes back.
    deadline = time.monotonic() + 10
    while True:
        r = session.post(tight.url + "/api/v1/namespaces", data=b"", timeout=10,
                         headers={"Content-Type": "application/json"})
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 400, r.text  # the empty body, no longer the limit


@pytest.fixture(scope="module")
def queued(e2e_tmp):
    c = _start(e2e_tmp, "queued", [
        "--max-mutating-requests-inflight", "1", "--request-body-timeout", "30s",
        "--disable-controller-manager",
    ])
    yield c
    c.server.stop(signal.SIGTERM, timeout=15)


def test_over_the_inflight_limit_requests_wait_for_a_slot(queued):
    user = user_credentials(queued)
    session = queued.creds.session(with_client_cert=False)
    session.cert = user
    holder = SlowPost(queued)
    answers = []

    def post():
        answers.append(session.post(queued.url + "/api/v1/namespaces", data=b"", timeout=30,
                                    headers={"Content-Type": "application/json"}))

    waiter = threading.Thread(target=post)
    try:
        # The holder's request takes the only slot as soon as its head is read.
        wait_for(lambda: b'apiserver_current_inflight_requests{request_kind="mutating"} 1'
                 in queued.get("/metrics").content, 10, 0.05, what="the holder in flight")
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and not answers, "the queued request was answered early"
    finally:
        holder.close()
    waiter.join(timeout=20)
    assert answers, "the queued request was never answered"
    # Served once the holder's slot came back: the empty body's 400, not a 429.
    assert answers[0].status_code == 400, answers[0].text


def test_watches_do_not_count_against_the_limit(tight):
    user = user_credentials(tight)
    ctx = tight.creds.ssl_context(with_client_cert=False)
    ctx.load_cert_chain(*user)
    u = urllib.parse.urlsplit(tight.url)
    watches = []
    try:
        for _ in range(3):
            conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30, context=ctx)
            conn.request("GET", "/api/v1/namespaces?watch=true")
            resp = conn.getresponse()
            assert resp.status == 200
            watches.append(conn)
        session = tight.creds.session(with_client_cert=False)
        session.cert = user
        r = session.get(tight.url + "/api/v1/namespaces", timeout=10)
        assert r.status_code == 200, r.text
        metrics = tight.get("/metrics").text
        assert any(line.startswith("apiserver_longrunning_requests{verb=\"WATCH\"")
                   and line.rstrip().endswith(" 3") for line in metrics.splitlines()), metrics
    finally:
        for conn in watches:
            conn.close()


# ---------------------------------------------------------------------------------------------
# malformed requests

MALFORMED = {
    "control byte in a header value": (b"GET /api HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", 400),
    "invalid UTF-8 in the path": (b"GET /api/v1/namespaces/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "escaped invalid UTF-8 in the path": (
        b"GET /api/v1/namespaces/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "invalid percent escape": (
        b"GET /api/v1/namespaces/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "URL over 16 KiB": (b"GET /api/v1/pods?labelSelector=" + b"a" * 20000
                        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414),
    "URL over 64 KiB": (b"GET /api/v1/pods?labelSelector=" + b"a" * 70000
                        + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_a_status_body(edge, case):
    request, want = MALFORMED[case]
    code, headers, body = exchange(edge, request)
    assert code == want
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert_status_body(body, want)


# ---------------------------------------------------------------------------------------------
# metrics


def test_metrics_use_upstreams_names_and_need_credentials(edge):
    ns = f"edge-metrics-{int(time.time())}"
    edge.ok("POST", "/api/v1/namespaces", body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, expect=(201,))
    edge.ok("GET", f"/api/v1/namespaces/{ns}/configmaps")
    edge.get(f"/api/v1/namespaces/{ns}/configmaps/missing")
    watch = edge.watch(f"/api/v1/namespaces/{ns}/configmaps")
    try:
        assert watch.status == 200
        r = edge.get("/metrics")
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.text
        for name in ["apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                     "apiserver_current_inflight_requests", "apiserver_longrunning_requests",
                     "etcd_request_duration_seconds_bucket", "process_resident_memory_bytes",
                     "process_cpu_seconds_total", "process_start_time_seconds",
                     "process_open_fds"]:
            assert f"\n{name}" in text or f"# TYPE {name}" in text, f"{name} missing"
        assert ('apiserver_request_total{verb="LIST",group="",version="v1",resource="configmaps",'
                'subresource="",scope="namespace",component="apiserver",code="200"}') in text
        assert 'resource="configmaps",subresource="",scope="resource",component="apiserver",code="404"' in text
        assert 'verb="POST",group="",version="v1",resource="namespaces"' in text
        assert 'etcd_request_duration_seconds_count{operation="create",type="namespaces"}' in text
        assert 'apiserver_current_inflight_requests{request_kind="readOnly"}' in text
        assert ('apiserver_longrunning_requests{verb="WATCH",group="",version="v1",'
                'resource="configmaps",subresource="",scope="namespace",component="apiserver"} 1'
                ) in text
        # Like every other path but public information and discovery, /metrics is not for
        # anonymous requests.
        anonymous = edge.creds.session(with_client_cert=False)
        r = anonymous.get(edge.url + "/metrics", timeout=10)
        assert r.status_code == 403
    finally:
        watch.close()
        edge.delete_namespace(ns)


def test_sigterm_ends_watches_cleanly_and_exits_within_the_grace_period(e2e_tmp):
    """On SIGTERM the server stops accepting, ends every watch cleanly (the stream is
    terminated, not cut), lets open connections finish, and exits within its grace period."""
    c = _start(e2e_tmp, "shutdown", ["--shutdown-grace-period", "3s"])
    try:
        for i in range(3):
            c.ok("POST", "/api/v1/namespaces/default/configmaps",
                 body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"s{i}"}})
        url = c.url + "/api/v1/namespaces/default/configmaps"
        watches = [c.creds.session().get(url, params={"watch": "true"}, stream=True, timeout=30)
                   for _ in range(3)]
        # An idle keep-alive connection too: it is closed, not waited for.
        idle = c.creds.session()
        assert idle.get(c.url + "/version", timeout=5).status_code == 200
        for w in watches:
            assert w.status_code == 200
        c.server.proc.send_signal(signal.SIGTERM)
        for w in watches:
            # Reading to the end raises if the stream was cut rather than terminated.
            lines = [json.loads(line) for line in w.iter_lines() if line]
            assert {l["object"]["metadata"]["name"] for l in lines} >= {"s0", "s1", "s2"}
        # It exits by itself (the grace period is 3 s; the wait is generous).
        code = c.server.proc.wait(timeout=20)
        assert code == 0, f"exit code {code}"
    finally:
        c.server.stop(signal.SIGKILL, timeout=5)
