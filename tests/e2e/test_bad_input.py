"""Malformed or hostile requests get the upstream error Status, and the server keeps serving."""

import json

import pytest
import requests

from conftest import assert_status, configmap


def cms(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


@pytest.fixture
def alive(cluster):
    """After each test: the server still answers, reads and writes."""
    yield
    assert cluster.ready(), "server no longer ready"
    r = cluster.get("/api/v1/namespaces/default")
    assert r.status_code == 200, r.text


def raw(cluster, method, path, data, ctype="application/json", **kw):
    return cluster.request(method, path, data=data, headers={"Content-Type": ctype}, **kw)


def test_malformed_json_is_400(cluster, ns, alive):
    r = raw(cluster, "POST", cms(ns), b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {')
    assert_status(r, 400, "BadRequest")
    r = raw(cluster, "POST", cms(ns), b"\x00\xff\xfe not json at all")
    assert_status(r, 400, "BadRequest")
    r = raw(cluster, "POST", cms(ns), b"[1, 2, 3]")
    assert_status(r, 400, "BadRequest")
    r = raw(cluster, "POST", cms(ns), b"")
    assert_status(r, 400, "BadRequest")


def test_malformed_json_on_update_and_patch_is_400(cluster, ns, alive):
    cluster.ok("POST", cms(ns), body=configmap("upd"))
    assert_status(raw(cluster, "PUT", cms(ns, "upd"), b'{"kind": '), 400, "BadRequest")
    assert_status(raw(cluster, "PATCH", cms(ns, "upd"), b'{"data": ',
                      "application/merge-patch+json"), 400, "BadRequest")
    assert_status(raw(cluster, "PATCH", cms(ns, "upd"), b'{"op": "add"}',
                      "application/json-patch+json"), 400, "BadRequest")
    assert_status(raw(cluster, "PATCH", cms(ns, "upd"), b'{"data": ',
                      "application/strategic-merge-patch+json"), 400, "BadRequest")


def test_malformed_yaml_is_400(cluster, ns, alive):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n  data: : :\n"
    r = raw(cluster, "POST", cms(ns), body, "application/yaml")
    assert_status(r, 400, "BadRequest")
    # while well-formed YAML is accepted
    ok = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
    r = raw(cluster, "POST", cms(ns), ok, "application/yaml")
    assert r.status_code == 201, r.text
    assert cluster.ok("GET", cms(ns, "from-yaml"))["data"] == {"k": "v"}


def test_wrong_kind_for_url_is_400(cluster, ns, alive):
    r = cluster.post(f"/api/v1/namespaces/{ns}/secrets", body=configmap("wrongkind", {"a": "b"}))
    st = assert_status(r, 400, "BadRequest")
    assert "ConfigMap" in st["message"] and "Secret" in st["message"], st
    assert cluster.get(f"/api/v1/namespaces/{ns}/secrets/wrongkind").status_code == 404
    # and a wrong apiVersion for the group
    body = configmap("wrongversion")
    body["apiVersion"] = "apps/v1"
    assert_status(cluster.post(cms(ns), body=body), 400, "BadRequest")


def test_invalid_name_is_422(cluster, ns, alive):
    r = cluster.post(cms(ns), body=configmap("Bad_Name"))
    st = assert_status(r, 422, "Invalid")
    assert st["details"]["name"] == "Bad_Name" and st["details"]["kind"] == "ConfigMap", st
    fields = [c["field"] for c in st["details"]["causes"]]
    assert "metadata.name" in fields, st
    assert "a lowercase RFC 1123 subdomain" in st["message"], st
    r = cluster.post(cms(ns), body=configmap("x" * 254))
    assert_status(r, 422, "Invalid")
    r = cluster.post("/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "has.dots"}})
    st = assert_status(r, 422, "Invalid")  # namespaces are DNS labels: no dots
    assert "metadata.name" in [c["field"] for c in st["details"]["causes"]], st


def test_missing_name_is_422(cluster, ns, alive):
    r = cluster.post(cms(ns), body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    st = assert_status(r, 422, "Invalid")
    assert "metadata.name" in [c["field"] for c in st["details"]["causes"]], st


def test_oversized_body_is_413(cluster, ns, alive):
    big = configmap("huge", {"blob": "x" * (4 * 1024 * 1024 + 100)})
    data = json.dumps(big).encode()
    try:
        r = raw(cluster, "POST", cms(ns), data)
    except requests.exceptions.ConnectionError as e:
        pytest.fail(f"server dropped the connection instead of answering 413: {e!r}")
    st = assert_status(r, 413, "RequestEntityTooLarge")
    assert st["message"], st
    # a server that will not read the rest of the body must say `Connection: close` (as Go's
    # net/http does); otherwise the client reuses a connection the server then drops
    try:
        follow = cluster.get(cms(ns, "huge"))
    except requests.exceptions.ConnectionError as e:
        pytest.fail(f"after the 413 (response headers {dict(r.headers)}) the next request on the "
                    f"kept-alive connection failed: {e!r}")
    assert follow.status_code == 404


def test_configmap_over_1mib_is_422(cluster, ns, alive):
    """Under the request limit but over the object size limit: a validation error."""
    big = configmap("big", {"blob": "x" * (1024 * 1024 + 10)})
    st = assert_status(cluster.post(cms(ns), body=big), 422, "Invalid")
    assert "1048576" in st["message"], st


def test_namespace_mismatch_is_400(cluster, ns, alive):
    body = configmap("elsewhere")
    body["metadata"]["namespace"] = "other-namespace"
    st = assert_status(cluster.post(cms(ns), body=body), 400, "BadRequest")
    assert "does not match the namespace" in st["message"], st


def test_name_mismatch_on_update_is_400(cluster, ns, alive):
    cluster.ok("POST", cms(ns), body=configmap("urlname"))
    body = cluster.ok("GET", cms(ns, "urlname"))
    body["metadata"]["name"] = "othername"
    st = assert_status(cluster.put(cms(ns, "urlname"), body=body), 400, "BadRequest")
    assert "does not match the name on the URL" in st["message"], st


def test_unknown_paths_are_404(cluster, ns, alive):
    assert_status(cluster.get(f"/api/v1/namespaces/{ns}/foos"), 404, "NotFound")
    assert cluster.get("/apis/nope.example.com/v1").status_code == 404
    assert cluster.get("/api/v2").status_code == 404
    assert cluster.get("/apis/apps/v1beta77/deployments").status_code == 404


def test_method_not_allowed_is_405(cluster, ns, alive):
    cluster.ok("POST", cms(ns), body=configmap("m"))
    r = cluster.post(cms(ns, "m"), body=configmap("m"))
    assert_status(r, 405, "MethodNotAllowed")


def test_unsupported_media_type_is_415(cluster, ns, alive):
    r = raw(cluster, "POST", cms(ns), b"name=x", "text/plain")
    assert_status(r, 415, "UnsupportedMediaType")
    r = raw(cluster, "PATCH", cms(ns, "x"), b"{}", "application/json")
    assert_status(r, 415, "UnsupportedMediaType")


def test_bad_query_parameters_are_rejected(cluster, ns, alive):
    assert_status(cluster.get(cms(ns), params={"limit": "many"}), 400, "BadRequest")
    assert_status(cluster.get(cms(ns), params={"watch": "true", "timeoutSeconds": "soon"}), 400,
                  "BadRequest")
    assert_status(cluster.get(cms(ns), params={"labelSelector": "a=(b"}), 400, "BadRequest")


def test_garbage_does_not_kill_the_server(cluster, ns, alive):
    """A burst of bad requests, then normal service."""
    bodies = [b"{", b"null", b'{"kind": 5}', b'{"metadata": "x"}', b'{"data": {"k": 1}}',
              b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 7}}',
              b"\xff" * 1000]
    for b in bodies:
        r = raw(cluster, "POST", cms(ns), b)
        assert 400 <= r.status_code < 500, (b[:40], r.status_code, r.text[:300])
        assert r.json()["kind"] == "Status", r.text[:300]
    cluster.ok("POST", cms(ns), body=configmap("after-garbage"))
