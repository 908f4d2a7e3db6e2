"""Watches end at their timeout, and a watch whose client stops reading is closed by the server
instead of buffering without bound."""

import http.client
import json
import socket
import time
import urllib.parse

from conftest import configmap

# Enough encoded events to fill every buffer between the server and a client that does not read
# (kernel socket buffers of a few MB, hyper's and rustls's buffers, the watch's own queue).
STUCK_OBJECTS = 100
STUCK_OBJECT_BYTES = 200 * 1024


# Every namespace holds the cluster CA (kube-root-ca.crt), as upstream's; tests that count
# ConfigMaps leave it out.
NO_CA = {"fieldSelector": "metadata.name!=kube-root-ca.crt"}


def cm_path(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def test_watch_with_timeout_seconds_ends_by_itself(cluster, ns):
    w = cluster.watch(cm_path(ns), {**NO_CA, "timeoutSeconds": "2"}, timeout=60)
    try:
        assert w.status == 200, w.body
        # Nothing changes in the namespace; the server ends the stream on its own.
        assert w.wait_end(timeout=30) == []
        assert w.ended
    finally:
        w.close()


def test_watch_with_timeout_seconds_delivers_events_until_it_ends(cluster, ns):
    w = cluster.watch(cm_path(ns), {**NO_CA, "timeoutSeconds": "3"}, timeout=60)
    try:
        assert w.status == 200, w.body
        cluster.ok("POST", cm_path(ns), body=configmap("during", {"a": "1"}))
        got = w.wait_end(timeout=30)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
            ("ADDED", "during")
        ]
    finally:
        w.close()


class StuckWatch:
    """A watch over HTTP/1.1 whose client reads the response headers and then nothing, on a
    socket with a small receive buffer."""

    def __init__(self, cluster, path):
        u = urllib.parse.urlsplit(cluster.url)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        raw.settimeout(60)
        raw.connect((u.hostname, u.port))
        ctx = cluster.creds.ssl_context()
        ctx.set_alpn_protocols(["http/1.1"])
        self.conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=60, context=ctx)
        self.conn.sock = ctx.wrap_socket(raw, server_hostname=u.hostname)
        self.conn.request("GET", path + ("&" if "?" in path else "?") + "watch=true", headers={"Accept": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def read_all(self):
        """Reads until the stream ends; returns the complete events and whether it ended
        (cleanly or by the server dropping the connection)."""
        events, ended = [], False
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    ended = True
                    break
                if line.endswith(b"\n") and line.strip():
                    events.append(json.loads(line))
        except (http.client.IncompleteRead, ConnectionError):
            ended = True
        except TimeoutError:
            ended = False
        return events, ended

    def close(self):
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def test_watch_whose_client_stops_reading_is_closed(cluster, ns):
    stuck = StuckWatch(cluster, cm_path(ns) + "?" + urllib.parse.urlencode(NO_CA))
    try:
        assert stuck.status == 200
        blob = "x" * STUCK_OBJECT_BYTES
        for i in range(STUCK_OBJECTS):
            cluster.ok("POST", cm_path(ns), body=configmap(f"big-{i}", {"blob": blob}),
                       expect=(201,))
        # The server keeps answering while the watch is stuck.
        assert cluster.ready()
        listed = cluster.ok("GET", cm_path(ns), params={**NO_CA, "limit": "1"})
        assert len(listed["items"]) == 1
        # A watch of the same objects by a client that reads sees all of them.
        w = cluster.watch(cm_path(ns), {**NO_CA, "timeoutSeconds": "30"}, timeout=60)
        try:
            assert len(w.take(STUCK_OBJECTS, timeout=60)) == STUCK_OBJECTS
        finally:
            w.close()
        # Give the server its grace period (a few seconds) to give up on the stuck client.
        time.sleep(5)
        events, ended = stuck.read_all()
        assert ended, f"the stuck watch was still open after {len(events)} events"
        assert len(events) < STUCK_OBJECTS, "the server buffered every event for a stuck client"
        names = [e["object"]["metadata"]["name"] for e in events]
        assert names == [f"big-{i}" for i in range(len(names))], "events arrive in order"
        # And it keeps serving watches.
        w = cluster.watch(cm_path(ns), {**NO_CA, "timeoutSeconds": "5"}, timeout=60)
        try:
            assert len(w.take(STUCK_OBJECTS, timeout=60)) == STUCK_OBJECTS
        finally:
            w.close()
    finally:
        stuck.close()
