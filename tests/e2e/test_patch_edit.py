"""kubectl patch (json, merge, strategic), edit through $EDITOR, label and annotate."""

import json
import re
import stat

from conftest import configmap, deployment


def mk_cm(cluster, ns, name, data, **kw):
    return cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps",
                      body=configmap(name, data, **kw))


def mk_deploy(cluster, ns, name, **kw):
    return cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                      body=deployment(name, **kw))


def containers(kubectl, ns, name):
    d = kubectl.json("get", "deployment", name, "-n", ns)
    return d, d["spec"]["template"]["spec"]["containers"]


def test_patch_json(kubectl, cluster, ns):
    mk_cm(cluster, ns, "jp", {"k1": "v1", "k3": "v3"})
    ops = [{"op": "add", "path": "/data/k2", "value": "v2"},
           {"op": "replace", "path": "/data/k1", "value": "new"},
           {"op": "remove", "path": "/data/k3"}]
    out = kubectl("patch", "configmap", "jp", "-n", ns, "--type=json", "-p", json.dumps(ops))
    assert out.strip() == "configmap/jp patched", out
    assert kubectl.json("get", "cm", "jp", "-n", ns)["data"] == {"k1": "new", "k2": "v2"}


def test_patch_json_failed_test_op_changes_nothing(kubectl, cluster, ns):
    before = mk_cm(cluster, ns, "jt", {"k1": "v1"})
    ops = [{"op": "test", "path": "/data/k1", "value": "wrong"},
           {"op": "replace", "path": "/data/k1", "value": "changed"}]
    kubectl.fail("patch", "configmap", "jt", "-n", ns, "--type=json", "-p", json.dumps(ops))
    after = kubectl.json("get", "cm", "jt", "-n", ns)
    assert after["data"] == {"k1": "v1"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    r = cluster.patch(f"/api/v1/namespaces/{ns}/configmaps/jt", ops, ptype="json")
    assert r.status_code == 422, f"failed JSON patch test op: {r.status_code} {r.text}"
    # Upstream's generic server response, the failure as its cause.
    st = r.json()
    assert st["reason"] == "Invalid", st
    assert st["message"] == "the server rejected our request due to an error in our request", st
    assert st["details"]["causes"] == [{"reason": "UnexpectedServerResponse",
                                        "message": "testing value /data/k1 failed: test failed"}]


def test_patch_merge(kubectl, cluster, ns):
    mk_cm(cluster, ns, "mp", {"k1": "v1", "k2": "v2"})
    out = kubectl("patch", "configmap", "mp", "-n", ns, "--type=merge",
                  "-p", '{"data":{"k1":null,"k4":"v4"},"metadata":{"labels":{"l":"x"}}}')
    assert out.strip() == "configmap/mp patched", out
    cm = kubectl.json("get", "cm", "mp", "-n", ns)
    assert cm["data"] == {"k2": "v2", "k4": "v4"}
    assert cm["metadata"]["labels"] == {"l": "x"}


def test_patch_merge_replaces_lists(kubectl, cluster, ns):
    mk_deploy(cluster, ns, "mlist", env={"A": "1"})
    kubectl("patch", "deployment", "mlist", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"name": "other", "image": "busybox"}]}}}}))
    _, cs = containers(kubectl, ns, "mlist")
    assert [(c["name"], c["image"]) for c in cs] == [("other", "busybox")]
    assert "env" not in cs[0], "JSON merge patch replaces the whole list"


def test_patch_strategic_adds_env_by_merge_key(kubectl, cluster, ns):
    mk_deploy(cluster, ns, "smp", env={"A": "1"})
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "smp", "env": [{"name": "B", "value": "2"}]}]}}}}
    out = kubectl("patch", "deployment", "smp", "-n", ns, "--type=strategic",
                  "-p", json.dumps(patch))
    assert out.strip() == "deployment.apps/smp patched", out
    d, cs = containers(kubectl, ns, "smp")
    assert len(cs) == 1 and cs[0]["image"] == "nginx:1.25", cs
    assert sorted((e["name"], e["value"]) for e in cs[0]["env"]) == [("A", "1"), ("B", "2")]
    assert d["metadata"]["generation"] == 2

    # default patch type of kubectl is strategic; the $patch: delete directive removes by key
    kubectl("patch", "deployment", "smp", "-n", ns, "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [
            {"name": "smp", "env": [{"name": "A", "$patch": "delete"}]}]}}}}))
    _, cs = containers(kubectl, ns, "smp")
    assert cs[0]["env"] == [{"name": "B", "value": "2"}]

    # a second container merges in by name, the first stays
    kubectl("patch", "deployment", "smp", "-n", ns, "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "busybox:1.36"}]}}}}))
    _, cs = containers(kubectl, ns, "smp")
    assert sorted(c["name"] for c in cs) == ["sidecar", "smp"], cs
    side = next(c for c in cs if c["name"] == "sidecar")
    assert side["imagePullPolicy"] == "IfNotPresent", "defaults apply to patched-in containers"


def test_patch_strategic_service_ports_by_port(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "sp"},
        "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]}})
    kubectl("patch", "service", "sp", "-n", ns, "-p",
            '{"spec":{"ports":[{"name":"https","port":443}]}}')
    svc = kubectl.json("get", "svc", "sp", "-n", ns)
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 443], svc["spec"]["ports"]


def test_patch_not_found(kubectl, ns):
    err = kubectl.fail("patch", "configmap", "nope", "-n", ns, "--type=merge", "-p", "{}")
    assert 'configmaps "nope" not found' in err, err


def test_patch_rejects_invalid_result(kubectl, cluster, ns):
    mk_deploy(cluster, ns, "inv")
    err = kubectl.fail("patch", "deployment", "inv", "-n", ns, "--type=merge",
                       "-p", '{"spec":{"replicas":-3}}')
    assert "spec.replicas" in err and "Invalid" in err, err
    assert kubectl.json("get", "deploy", "inv", "-n", ns)["spec"]["replicas"] == 1


def editor_script(tmp_path, sed_expr):
    p = tmp_path / "editor.sh"
    p.write_text(f"#!/bin/sh\nexec sed -i -e '{sed_expr}' \"$@\"\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_edit_through_editor(kubectl, cluster, ns, tmp_path):
    mk_cm(cluster, ns, "ed", {"color": "blue", "shape": "round"})
    editor = editor_script(tmp_path, "s/color: blue/color: red/")
    out = kubectl("edit", "configmap", "ed", "-n", ns, env={"EDITOR": editor})
    assert out.strip() == "configmap/ed edited", out
    assert kubectl.json("get", "cm", "ed", "-n", ns)["data"] == {"color": "red", "shape": "round"}


def test_edit_deployment_image(kubectl, cluster, ns, tmp_path):
    mk_deploy(cluster, ns, "ed-deploy")
    editor = editor_script(tmp_path, "s/image: nginx:1.25/image: nginx:1.26/")
    out = kubectl("edit", "deployment/ed-deploy", "-n", ns, env={"EDITOR": editor})
    assert out.strip() == "deployment.apps/ed-deploy edited", out
    d, cs = containers(kubectl, ns, "ed-deploy")
    assert cs[0]["image"] == "nginx:1.26"
    assert d["metadata"]["generation"] == 2


def test_edit_without_change_is_cancelled(kubectl, cluster, ns, tmp_path):
    before = mk_cm(cluster, ns, "same", {"k": "v"})
    editor = editor_script(tmp_path, "s/nothing-matches-this//")
    p = kubectl.run("edit", "configmap", "same", "-n", ns, env={"EDITOR": editor})
    assert p.returncode == 0, p.stderr
    assert "Edit cancelled, no changes made." in p.stdout + p.stderr
    after = kubectl.json("get", "cm", "same", "-n", ns)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_edit_invalid_is_rejected(kubectl, cluster, ns, tmp_path):
    mk_deploy(cluster, ns, "ed-bad")
    editor = editor_script(tmp_path, "s/replicas: 1/replicas: -1/")
    p = kubectl.run("edit", "deployment", "ed-bad", "-n", ns, env={"EDITOR": editor})
    assert p.returncode != 0, p.stdout
    assert "invalid" in p.stderr.lower(), p.stderr
    assert kubectl.json("get", "deploy", "ed-bad", "-n", ns)["spec"]["replicas"] == 1


def test_label_add_overwrite_remove(kubectl, cluster, ns):
    mk_cm(cluster, ns, "lbl", {"k": "v"})
    out = kubectl("label", "configmap", "lbl", "-n", ns, "env=prod", "tier=web")
    assert out.strip() == "configmap/lbl labeled", out
    labels = lambda: kubectl.json("get", "cm", "lbl", "-n", ns)["metadata"].get("labels", {})  # noqa: E731
    assert labels() == {"env": "prod", "tier": "web"}

    err = kubectl.fail("label", "configmap", "lbl", "-n", ns, "env=dev")
    assert "already has a value (prod)" in err and "--overwrite is false" in err, err
    assert labels()["env"] == "prod"

    kubectl("label", "configmap", "lbl", "-n", ns, "env=dev", "--overwrite")
    assert labels() == {"env": "dev", "tier": "web"}
    assert kubectl("get", "cm", "-n", ns, "-l", "env=dev", "-o", "name").split() == \
        ["configmap/lbl"]

    out = kubectl("label", "configmap", "lbl", "-n", ns, "env-")
    assert out.strip() == "configmap/lbl unlabeled", out
    assert labels() == {"tier": "web"}
    assert kubectl("get", "cm", "-n", ns, "-l", "env", "-o", "name").strip() == ""


def test_annotate_add_overwrite_remove(kubectl, cluster, ns):
    mk_cm(cluster, ns, "ann", {"k": "v"})
    ann = lambda: kubectl.json("get", "cm", "ann", "-n", ns)["metadata"].get("annotations", {})  # noqa: E731
    out = kubectl("annotate", "configmap", "ann", "-n", ns, "owner=alice", "note=hello world")
    assert re.fullmatch(r"configmap/ann annotated?", out.strip()), out  # 1.27 prints "annotate"
    assert ann() == {"owner": "alice", "note": "hello world"}
    err = kubectl.fail("annotate", "configmap", "ann", "-n", ns, "owner=bob")
    assert "--overwrite is false" in err, err
    kubectl("annotate", "configmap", "ann", "-n", ns, "owner=bob", "--overwrite")
    assert ann() == {"owner": "bob", "note": "hello world"}
    kubectl("annotate", "configmap", "ann", "-n", ns, "owner-")
    assert ann() == {"note": "hello world"}


def test_label_many_with_selector(kubectl, cluster, ns):
    for i in range(3):
        mk_cm(cluster, ns, f"many{i}", {"k": "v"}, labels={"batch": "one"})
    mk_cm(cluster, ns, "other", {"k": "v"})
    out = kubectl("label", "configmaps", "-n", ns, "-l", "batch=one", "marked=yes")
    assert sorted(out.split("\n")[:-1]) == [f"configmap/many{i} labeled" for i in range(3)], out
    names = kubectl("get", "cm", "-n", ns, "-l", "marked=yes", "-o", "name").split()
    assert names == [f"configmap/many{i}" for i in range(3)]
