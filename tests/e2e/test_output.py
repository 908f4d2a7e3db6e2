"""kubectl output formats: json, yaml, wide, name, jsonpath, custom-columns, sort-by, tables."""

import json

import pytest
import yaml

from conftest import configmap, deployment, parse_table, pod


@pytest.fixture
def objs(cluster, ns):
    # created out of name order on purpose
    for name, color in [("cm-c", "red"), ("cm-a", "green"), ("cm-b", "blue")]:
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                   body=configmap(name, {"color": color, "n": name[-1]}, labels={"set": "out"}))
    return ns


def names(items):
    return [i["metadata"]["name"] for i in items]


def test_output_json_single_and_list(kubectl, objs):
    ns = objs
    one = kubectl.json("get", "configmap", "cm-a", "-n", ns)
    assert one["kind"] == "ConfigMap" and one["apiVersion"] == "v1"
    assert one["metadata"]["name"] == "cm-a" and one["data"]["color"] == "green"
    lst = kubectl.json("get", "configmaps", "-n", ns, "-l", "set=out")
    assert lst["kind"] == "List" and lst["apiVersion"] == "v1"
    assert sorted(names(lst["items"])) == ["cm-a", "cm-b", "cm-c"]
    assert all(i["kind"] == "ConfigMap" for i in lst["items"])


def test_output_yaml(kubectl, objs):
    ns = objs
    doc = yaml.safe_load(kubectl("get", "configmap", "cm-b", "-n", ns, "-o", "yaml"))
    assert doc["kind"] == "ConfigMap" and doc["data"] == {"color": "blue", "n": "b"}
    assert doc["metadata"]["uid"]


def test_output_name(kubectl, objs):
    out = kubectl("get", "configmaps", "-n", objs, "-l", "set=out", "-o", "name")
    assert out.split() == ["configmap/cm-a", "configmap/cm-b", "configmap/cm-c"], out


def test_output_jsonpath(kubectl, objs):
    ns = objs
    out = kubectl("get", "configmaps", "-n", ns, "-l", "set=out",
                  "-o", "jsonpath={.items[*].metadata.name}")
    assert out.split() == ["cm-a", "cm-b", "cm-c"], out
    out = kubectl("get", "configmap", "cm-c", "-n", ns, "-o", "jsonpath={.data.color}")
    assert out == "red"
    out = kubectl("get", "configmaps", "-n", ns, "-l", "set=out", "-o",
                  'jsonpath={range .items[*]}{.metadata.name}={.data.color}{"\\n"}{end}')
    assert out.splitlines() == ["cm-a=green", "cm-b=blue", "cm-c=red"], out


def test_output_custom_columns(kubectl, objs):
    out = kubectl("get", "configmaps", "-n", objs, "-l", "set=out",
                  "-o", "custom-columns=NAME:.metadata.name,COLOR:.data.color")
    cols, rows = parse_table(out)
    assert cols == ["NAME", "COLOR"]
    assert [(r["NAME"], r["COLOR"]) for r in rows] == [
        ("cm-a", "green"), ("cm-b", "blue"), ("cm-c", "red")]


def test_sort_by(kubectl, cluster, ns):
    for name, rank in [("zeta", "1"), ("alpha", "3"), ("mid", "2")]:
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                   body=configmap(name, {"rank": rank}, labels={"sort": "me"}))
    out = kubectl("get", "configmaps", "-n", ns, "-l", "sort=me",
                  "--sort-by=.metadata.name", "-o", "name")
    assert out.split() == ["configmap/alpha", "configmap/mid", "configmap/zeta"], out
    _, rows = parse_table(kubectl("get", "configmaps", "-n", ns, "-l", "sort=me",
                                  "--sort-by=.data.rank"))
    assert [r["NAME"] for r in rows] == ["zeta", "mid", "alpha"], rows


def test_wide_pods(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("wide-pod"))
    cols, rows = parse_table(kubectl("get", "pods", "-n", ns, "-o", "wide"))
    assert cols == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                    "NOMINATED NODE", "READINESS GATES"], cols
    assert rows[0]["NAME"] == "wide-pod" and rows[0]["IP"] == "<none>"
    assert rows[0]["NODE"] == "<none>"


def test_table_columns_of_common_kinds(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("t", {"a": "b"}))
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment("t"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"},
        "spec": {"selector": {"app": "t"}, "ports": [{"port": 80, "protocol": "TCP"}]}})
    cols, rows = parse_table(kubectl("get", "configmaps", "t", "-n", ns))
    assert cols == ["NAME", "DATA", "AGE"] and rows[0]["DATA"] == "1"
    cols, rows = parse_table(kubectl("get", "deployments", "-n", ns))
    assert cols == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], cols
    assert rows[0]["NAME"] == "t" and rows[0]["READY"].endswith("/1"), rows
    cols, rows = parse_table(kubectl("get", "services", "-n", ns))
    assert cols == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], cols
    assert rows[0]["TYPE"] == "ClusterIP" and rows[0]["PORT(S)"] == "80/TCP", rows
    cols, rows = parse_table(kubectl("get", "deployments", "-n", ns, "-o", "wide"))
    assert cols == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                    "SELECTOR"], cols
    assert rows[0]["IMAGES"] == "nginx:1.25" and rows[0]["SELECTOR"] == "app=t", rows


def test_show_labels_and_label_columns(kubectl, objs):
    cols, rows = parse_table(kubectl("get", "configmaps", "cm-a", "-n", objs, "--show-labels"))
    assert cols == ["NAME", "DATA", "AGE", "LABELS"], cols
    assert rows[0]["LABELS"] == "set=out"
    cols, rows = parse_table(kubectl("get", "configmaps", "cm-a", "-n", objs, "-L", "set"))
    assert cols == ["NAME", "DATA", "AGE", "SET"], cols
    assert rows[0]["SET"] == "out"


def test_no_headers_and_multiple_names(kubectl, objs):
    out = kubectl("get", "configmaps", "cm-b", "cm-a", "-n", objs, "--no-headers")
    rows = [ln.split()[0] for ln in out.splitlines()]
    assert rows == ["cm-b", "cm-a"], out  # in the order asked for


def test_server_side_table(cluster, objs):
    """The Table kubectl asks for, checked at the wire."""
    r = cluster.get(f"/api/v1/namespaces/{objs}/configmaps",
                    headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,"
                                       "application/json"})
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1", t
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert t["metadata"]["resourceVersion"]
    row = next(rw for rw in t["rows"] if rw["cells"][0] == "cm-a")
    assert row["cells"][1] == 2
    # rows carry the object as PartialObjectMetadata by default
    assert row["object"]["kind"] == "PartialObjectMetadata", row["object"]
    assert row["object"]["metadata"]["name"] == "cm-a"
    json.dumps(t)
