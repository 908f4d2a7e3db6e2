"""A server started with `--max-list-response-bytes` answers a list larger than that 413 in
upstream's `Status` shape, before its first byte, and ends pages early at the bound, so that
clients that page (kubectl, informers, the Python client with `limit`) still get everything."""

import tempfile
from pathlib import Path

import pytest

from conftest import BACKENDS, KUBECTL_VERSIONS, Kubectl, _start_cluster, _stop_cluster, rand_suffix

LIMIT = 64 * 1024
OBJECTS = 40
BLOB = 4000  # bytes of data per ConfigMap: 40 of them are about 2.5 times the limit


@pytest.fixture(scope="module", params=BACKENDS)
def bounded(request, e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix=f"list-limits-{request.param}-", dir=e2e_tmp))
    c = _start_cluster(workdir, request.param, ["--max-list-response-bytes", str(LIMIT)])
    yield c
    _stop_cluster(c)


@pytest.fixture(scope="module")
def filled(bounded):
    ns = f"e2e-list-limits-{rand_suffix()}"
    bounded.create_namespace(ns)
    for i in range(OBJECTS):
        bounded.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body={
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i:02d}", "labels": {"small": str(i < 3).lower()}},
            "data": {"blob": "x" * BLOB}})
    yield ns
    bounded.delete_namespace(ns)


def expected_names():
    return [f"cm-{i:02d}" for i in range(OBJECTS)]


def test_a_list_over_the_limit_is_refused_with_upstream_status(bounded, filled):
    r = bounded.get(f"/api/v1/namespaces/{filled}/configmaps")
    assert r.status_code == 413, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    assert status["reason"] == "RequestEntityTooLarge"
    assert status["code"] == 413
    assert "list it in pages" in status["message"], status["message"]
    # The same refusal for every form of the answer.
    for accept in ("application/json;as=Table;v=v1;g=meta.k8s.io",
                   "application/vnd.kubernetes.protobuf"):
        r = bounded.get(f"/api/v1/namespaces/{filled}/configmaps", headers={"Accept": accept})
        assert r.status_code == 413, (accept, r.status_code)


def test_a_list_within_the_limit_is_served_whole(bounded, filled):
    got = bounded.ok("GET", f"/api/v1/namespaces/{filled}/configmaps",
                     params={"labelSelector": "small=true"})
    assert [o["metadata"]["name"] for o in got["items"]] == ["cm-00", "cm-01", "cm-02"]
    assert "continue" not in got["metadata"]


def test_pages_end_at_the_limit_and_paging_returns_every_object_once(bounded, filled):
    names, token, pages = [], None, 0
    while True:
        params = {"limit": "500", "fieldSelector": "metadata.name!=kube-root-ca.crt"}
        if token:
            params["continue"] = token
        r = bounded.get(f"/api/v1/namespaces/{filled}/configmaps", params=params)
        assert r.status_code == 200, r.text
        assert len(r.content) <= LIMIT + 4096, len(r.content)  # the items, plus the list's head
        page = r.json()
        names += [o["metadata"]["name"] for o in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == expected_names()
    assert pages >= 3


def test_the_python_client_pages_through_everything(bounded, filled):
    from kubernetes import client

    core = client.CoreV1Api(bounded.api_client())
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map(filled, limit=500, _continue=token)
        names += [o.metadata.name for o in page.items if o.metadata.name != "kube-root-ca.crt"]
        token = page.metadata._continue
        if not token:
            break
    assert names == expected_names()


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_kubectl_get_follows_the_pages(bounded, filled, version):
    kubectl = Kubectl(version, bounded, bounded.workdir)
    out = kubectl("get", "configmaps", "-n", filled, "-o", "name")
    names = [line.removeprefix("configmap/") for line in out.split()
             if line != "configmap/kube-root-ca.crt"]
    assert names == expected_names()
    # kubectl's table output pages the same way.
    table = kubectl("get", "configmaps", "-n", filled, "--no-headers")
    assert len([line for line in table.splitlines() if line.startswith("cm-")]) == OBJECTS
