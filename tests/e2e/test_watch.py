"""kubectl get -w and kubectl wait, with changes made by another client."""

import json
import time

from conftest import configmap, pod


def cm_path(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def test_get_watch_with_events(kubectl, cluster, ns):
    w = kubectl.background("get", "configmaps", "-n", ns, "-w", "--output-watch-events",
                           "--field-selector=metadata.name=w1")
    try:
        time.sleep(1.0)  # let the initial list and the watch start
        cluster.ok("POST", cm_path(ns), body=configmap("w1", {"a": "1"}))
        assert w.expect(r"^ADDED\s+w1\s+1\s").split()[:3] == ["ADDED", "w1", "1"]
        cluster.ok("PATCH", cm_path(ns, "w1"), body={"data": {"b": "2"}},
                   headers={"Content-Type": "application/merge-patch+json"})
        assert w.expect(r"^MODIFIED\s+w1\s").split()[:3] == ["MODIFIED", "w1", "2"]
        cluster.ok("DELETE", cm_path(ns, "w1"))
        w.expect(r"^DELETED\s+w1\s")
        assert w.proc.poll() is None, "a watch keeps running after a deletion"
    finally:
        w.stop()


def test_get_watch_plain(kubectl, cluster, ns):
    cluster.ok("POST", cm_path(ns), body=configmap("before", {"x": "1"}))
    w = kubectl.background("get", "configmaps", "-n", ns, "-w")
    try:
        # initial list: header then the existing object
        w.expect(r"^NAME\s+DATA\s+AGE")
        w.expect(r"^before\s+1\s")
        cluster.ok("POST", cm_path(ns), body=configmap("w2", {"a": "1"}))
        w.expect(r"^w2\s+1\s")
        cluster.ok("PATCH", cm_path(ns, "w2"), body={"data": {"b": "2", "c": "3"}},
                   headers={"Content-Type": "application/merge-patch+json"})
        w.expect(r"^w2\s+3\s")
        cluster.ok("DELETE", cm_path(ns, "w2"))
        w.expect(r"^w2\s")  # the deleted object is printed once more
        # no spurious lines for the untouched object
        assert not [ln for ln in w.lines[2:] if ln.startswith("before")], w.lines
    finally:
        w.stop()


def test_get_watch_json_events(kubectl, cluster, ns):
    """-w -o json prints every object as it changes, with increasing resourceVersions."""
    w = kubectl.background("get", "pods", "-n", ns, "-w", "-o", "json", "--output-watch-events")
    try:
        time.sleep(1.0)
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("watched"))
        cluster.ok("PATCH", f"/api/v1/namespaces/{ns}/pods/watched",
                   body={"metadata": {"labels": {"seen": "yes"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
        w.expect(r'"type":\s*"MODIFIED"')
        # kubectl prints JSON objects one after another (compact or indented)
        text = "\n".join(w.lines)
        dec = json.JSONDecoder()
        events, i = [], 0
        while i < len(text):
            while i < len(text) and text[i].isspace():
                i += 1
            if i >= len(text):
                break
            obj, i = dec.raw_decode(text, i)
            events.append(obj)
        assert [e["type"] for e in events][:2] == ["ADDED", "MODIFIED"], events
        assert events[1]["object"]["metadata"]["labels"] == {"seen": "yes"}
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events[:2]]
        assert rvs[0] < rvs[1], rvs
    finally:
        w.stop()


def test_wait_for_delete(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("x"))
    w = kubectl.background("wait", "--for=delete", "pod/x", "-n", ns, "--timeout=60s")
    try:
        time.sleep(1.5)
        assert w.proc.poll() is None, f"wait returned before the delete: {w.lines} {w.stderr()}"
        # no node: the pod is deleted at once (no graceful period to wait for)
        cluster.ok("DELETE", f"/api/v1/namespaces/{ns}/pods/x")
        t0 = time.monotonic()
        rc = w.wait(timeout=20)
        took = time.monotonic() - t0
        assert rc == 0, f"kubectl wait exited {rc}: {w.lines} {w.stderr()}"
        assert took < 10, f"kubectl wait took {took:.1f}s after the delete"
        out = w.rest_of_stdout()
        assert "pod/x condition met" in "\n".join(w.lines + out), (w.lines, out)
    finally:
        w.stop()


def test_wait_for_delete_times_out_while_object_exists(kubectl, cluster, ns):
    cluster.ok("POST", cm_path(ns), body=configmap("stays"))
    p = kubectl.run("wait", "--for=delete", "configmap/stays", "-n", ns, "--timeout=2s",
                    timeout=30)
    assert p.returncode != 0, p.stdout
    assert "timed out" in p.stderr, p.stderr


def test_wait_for_jsonpath(kubectl, cluster, ns):
    cluster.ok("POST", cm_path(ns), body=configmap("flag", {"state": "pending"}))
    w = kubectl.background("wait", "--for=jsonpath={.data.state}=done", "configmap/flag",
                           "-n", ns, "--timeout=60s")
    try:
        time.sleep(1.0)
        assert w.proc.poll() is None, (w.lines, w.stderr())
        cluster.ok("PATCH", cm_path(ns, "flag"), body={"data": {"state": "done"}},
                   headers={"Content-Type": "application/merge-patch+json"})
        assert w.wait(timeout=20) == 0, (w.lines, w.stderr())
    finally:
        w.stop()
