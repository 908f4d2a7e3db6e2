"""Answers in Kubernetes protobuf (`Accept: application/vnd.kubernetes.protobuf`), which
client-go's typed clients ask for: `kubectl describe` reads objects and lists of events that
way, and the raw wire form is checked here too (prefix, envelope, length-delimited watch
frames)."""

import json
import struct

import requests

from conftest import configmap, pod

PROTOBUF = "application/vnd.kubernetes.protobuf"


def test_kubectl_describe_reads_objects_and_event_lists_in_protobuf(kubectl, cluster, ns):
    made = cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("web", labels={"app": "web"}))
    uid = made["metadata"]["uid"]
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns, "apiVersion": "v1",
                           "uid": uid},
        "reason": "Pulling", "message": "Pulling image busybox:1.36", "type": "Normal",
        "source": {"component": "kubelet"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/events", body=event)
    p = kubectl.run("describe", "pod", "web", "-n", ns, "-v=8")
    assert p.returncode == 0, p.stderr
    if kubectl.version >= "1.30":
        # The typed client asked for protobuf and got it, for the pod and for the events
        # (older kubectl's describe asks for JSON).
        assert f"Accept: {PROTOBUF},application/json" in p.stderr
        assert f"Content-Type: {PROTOBUF}" in p.stderr
    out = p.stdout
    assert "Name:" in out and "web" in out
    assert "app=web" in out
    assert "Pulling image busybox:1.36" in out, out


def test_an_object_and_a_list_in_protobuf(cluster, ns):
    for i in range(3):
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                   body=configmap(f"cm{i}", {"k": "v" * i}, labels={"n": str(i)}))
    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/cm1", headers={"Accept": PROTOBUF})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == PROTOBUF
    assert r.content.startswith(b"k8s\x00")
    assert b"ConfigMap" in r.content and b"cm1" in r.content

    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": PROTOBUF})
    assert r.status_code == 200 and r.headers["Content-Type"] == PROTOBUF
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.content.startswith(b"k8s\x00") and b"ConfigMapList" in r.content
    assert all(f"cm{i}".encode() in r.content for i in range(3))

    # The same list selected and paged.
    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps",
                    params={"labelSelector": "n=2", "limit": "1"}, headers={"Accept": PROTOBUF})
    assert r.status_code == 200 and b"cm2" in r.content and b"cm0" not in r.content

    # A client preferring JSON gets JSON; a Table is only served in JSON.
    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps",
                    headers={"Accept": f"application/json, {PROTOBUF}"})
    names = {i["metadata"]["name"] for i in r.json()["items"]}
    assert r.headers["Content-Type"] == "application/json" and {"cm0", "cm1", "cm2"} <= names
    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps",
                    headers={"Accept": f"{PROTOBUF};as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert r.headers["Content-Type"] == "application/json" and r.json()["kind"] == "ConfigMapList"


def test_writes_answer_in_protobuf_and_errors_stay_json(cluster, ns):
    r = cluster.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                        body=configmap("made", {"a": "b"}), headers={"Accept": PROTOBUF})
    assert r.status_code == 201 and r.content.startswith(b"k8s\x00") and b"made" in r.content
    r = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/missing", headers={"Accept": PROTOBUF})
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["reason"] == "NotFound"


def read_frames(resp, want):
    """Reads `want` length-delimited frames of a protobuf watch."""
    buf, frames = b"", []
    for chunk in resp.iter_content(chunk_size=None):
        buf += chunk
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                break
            frames.append(buf[4:4 + n])
            buf = buf[4 + n:]
        if len(frames) >= want:
            break
    return frames


def test_a_watch_in_protobuf_is_length_delimited_watch_events(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("w0", {"a": "1"}))
    url = cluster.url + f"/api/v1/namespaces/{ns}/configmaps"
    with cluster.http.get(url, params={"watch": "true", "timeoutSeconds": "20"},
                          headers={"Accept": PROTOBUF}, stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == f"{PROTOBUF};stream=watch"
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                   body=configmap("w1", {"a": "1"}))
        # kube-root-ca.crt, w0 (the initial events, in key order), then w1.
        frames = read_frames(resp, 3)
    assert len(frames) == 3
    for frame, name in zip(frames, [b"kube-root-ca.crt", b"w0", b"w1"]):
        # A bare WatchEvent message: field 1 (type) is "ADDED", field 2 the object, whose raw
        # bytes are a whole protobuf body with its prefix.
        assert frame.startswith(b"\x0a\x05ADDED\x12"), frame[:16]
        assert b"k8s\x00" in frame and name in frame
