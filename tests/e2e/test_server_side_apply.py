"""Server-side apply and managedFields: kubectl apply --server-side, conflicts between
managers, --force-conflicts, removal of fields dropped from the applied file, kubectl diff,
the managers recorded by other writes, and kubectl's move from client-side apply."""

import json

import yaml


def configmap(ns, data, name="ssa"):
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": ns}, "data": data})


def deployment(ns, replicas, containers, labels=None):
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": labels or {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": n, "image": i} for n, i in containers]}},
        },
    })


def managers(kubectl, *args):
    obj = kubectl.json("get", *args, "--show-managed-fields")
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields", [])}


def test_server_side_apply_creates_then_updates(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, {"a": "1"}))
    out = kubectl("apply", "--server-side", "-f", f)
    assert "serverside-applied" in out, out
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "1"}
    f.write_text(configmap(ns, {"a": "2"}))
    kubectl("apply", "--server-side", "-f", f)
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "2"}
    owned = managers(kubectl, "configmap", "ssa", "-n", ns)
    assert owned[("kubectl", "Apply", "")] == {"f:data": {"f:a": {}}}


def test_a_second_manager_conflicts_until_it_forces(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, {"a": "1", "b": "1"}))
    kubectl("apply", "--server-side", "--field-manager", "alice", "-f", f)
    f.write_text(configmap(ns, {"a": "2"}))
    err = kubectl.fail("apply", "--server-side", "--field-manager", "bob", "-f", f)
    assert 'Apply failed with 1 conflict: conflict with "alice": .data.a' in err, err
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"]["a"] == "1"
    kubectl("apply", "--server-side", "--field-manager", "bob", "--force-conflicts", "-f", f)
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "2", "b": "1"}
    owned = managers(kubectl, "configmap", "ssa", "-n", ns)
    assert owned[("alice", "Apply", "")] == {"f:data": {"f:b": {}}}
    assert owned[("bob", "Apply", "")] == {"f:data": {"f:a": {}}}


def test_the_same_value_is_shared_not_a_conflict(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, {"a": "1"}))
    kubectl("apply", "--server-side", "--field-manager", "alice", "-f", f)
    kubectl("apply", "--server-side", "--field-manager", "bob", "-f", f)
    owned = managers(kubectl, "configmap", "ssa", "-n", ns)
    assert owned[("alice", "Apply", "")] == owned[("bob", "Apply", "")] == {"f:data": {"f:a": {}}}


def test_fields_dropped_from_the_applied_file_are_removed(kubectl, ns, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text(deployment(ns, 1, [("web", "nginx"), ("side", "busybox")],
                            {"app": "web", "tier": "front"}))
    kubectl("apply", "--server-side", "-f", f)
    kubectl("label", "deployment", "web", "-n", ns, "owner=ops")
    f.write_text(deployment(ns, 1, [("web", "nginx")]))
    kubectl("apply", "--server-side", "-f", f)
    d = kubectl.json("get", "deployment", "web", "-n", ns)
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_scale_is_a_manager_an_apply_conflicts_with(kubectl, ns, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text(deployment(ns, 1, [("web", "nginx")]))
    kubectl("apply", "--server-side", "-f", f)
    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    f.write_text(deployment(ns, 2, [("web", "nginx")]))
    err = kubectl.fail("apply", "--server-side", "-f", f)
    assert "Apply failed with 1 conflict" in err and ".spec.replicas" in err, err
    assert 'with subresource "scale"' in err, err
    kubectl("apply", "--server-side", "--force-conflicts", "-f", f)
    assert kubectl.json("get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2


def test_kubectl_diff_shows_a_pending_change(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, {"a": "1"}))
    kubectl("apply", "--server-side", "-f", f)
    f.write_text(configmap(ns, {"a": "changed"}))
    p = kubectl.run("diff", "--server-side", "-f", f)
    assert p.returncode == 1, p.stderr
    assert "-  a: \"1\"" in p.stdout and "+  a: changed" in p.stdout, p.stdout
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "1"}


def test_other_writes_record_their_managers(kubectl, ns):
    kubectl("create", "configmap", "plain", "-n", ns, "--from-literal=a=1")
    kubectl("patch", "configmap", "plain", "-n", ns, "--type=merge", "-p",
            json.dumps({"data": {"b": "2"}}), "--field-manager", "patcher")
    owned = managers(kubectl, "configmap", "plain", "-n", ns)
    assert owned[("kubectl-create", "Update", "")] == {"f:data": {".": {}, "f:a": {}}} or \
        owned[("kubectl-create", "Update", "")] == {"f:data": {"f:a": {}}}
    assert owned[("patcher", "Update", "")] == {"f:data": {"f:b": {}}}


def test_an_update_without_managed_fields_keeps_them(kubectl, cluster, ns):
    """A PUT whose object has no `managedFields` keeps the stored entries and adds its own,
    as upstream: what the controllers' caches (decoded without them) write back relies on it."""
    kubectl("create", "configmap", "kept", "-n", ns, "--from-literal=a=1")
    path = f"/api/v1/namespaces/{ns}/configmaps/kept"
    obj = cluster.ok("GET", path)
    del obj["metadata"]["managedFields"]
    obj["data"]["b"] = "2"
    cluster.ok("PUT", path, body=obj, params={"fieldManager": "writer"})
    owned = managers(kubectl, "configmap", "kept", "-n", ns)
    assert ("kubectl-create", "Update", "") in owned, owned
    assert owned[("writer", "Update", "")] == {"f:data": {"f:b": {}}}


def test_client_side_apply_moves_to_server_side_apply(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, {"a": "1", "b": "2"}))
    kubectl("apply", "-f", f)
    kubectl("apply", "--server-side", "-f", f)
    owned = managers(kubectl, "configmap", "ssa", "-n", ns)
    assert ("kubectl", "Apply", "") in owned, owned
    assert ("kubectl-client-side-apply", "Update", "") not in owned, owned
    f.write_text(configmap(ns, {"a": "1"}))
    kubectl("apply", "--server-side", "-f", f)
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "1"}


def test_apply_needs_a_field_manager(cluster, ns):
    body = configmap(ns, {"a": "1"}, name="nomanager")
    r = cluster.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/nomanager", data=body,
                        headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 422, r.text
    assert "fieldManager: Required value: is required for apply patch" in r.json()["message"]


def service(ns, ports):
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": ns},
        "spec": {"selector": {"app": "dns"}, "ports": ports},
    })


def test_service_ports_are_owned_by_port_and_protocol(kubectl, ns, tmp_path):
    """Upstream's `+listMapKey=port` and `+listMapKey=protocol`: 53/UDP and 53/TCP are two
    items; a port without `protocol` is keyed by its default, TCP."""
    f = tmp_path / "svc.yaml"
    f.write_text(service(ns, [{"name": "dns", "port": 53, "protocol": "UDP"},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                              {"name": "metrics", "port": 9153}]))
    kubectl("apply", "--server-side", "-f", f)
    owned = managers(kubectl, "service", "dns", "-n", ns)[("kubectl", "Apply", "")]
    assert set(owned["f:spec"]["f:ports"]) == {
        'k:{"port":53,"protocol":"UDP"}', 'k:{"port":53,"protocol":"TCP"}',
        'k:{"port":9153,"protocol":"TCP"}'}, owned
    # Dropping 53/TCP from the file removes that item only.
    f.write_text(service(ns, [{"name": "dns", "port": 53, "protocol": "UDP"},
                              {"name": "metrics", "port": 9153}]))
    kubectl("apply", "--server-side", "-f", f)
    ports = kubectl.json("get", "service", "dns", "-n", ns)["spec"]["ports"]
    assert sorted((p["port"], p["protocol"], p["name"]) for p in ports) == [
        (53, "UDP", "dns"), (9153, "TCP", "metrics")], ports


def test_a_label_selector_is_owned_whole(kubectl, ns, tmp_path):
    """`LabelSelector` is `+structType=atomic` and `nodeSelector` `+mapType=atomic`."""
    f = tmp_path / "deploy.yaml"
    body = yaml.safe_load(deployment(ns, 1, [("app", "busybox")]))
    body["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    f.write_text(yaml.safe_dump(body))
    kubectl("apply", "--server-side", "-f", f)
    owned = managers(kubectl, "deployment", "web", "-n", ns)[("kubectl", "Apply", "")]
    assert owned["f:spec"]["f:selector"] == {}, owned
    assert owned["f:spec"]["f:template"]["f:spec"]["f:nodeSelector"] == {}, owned


def test_a_folder_with_a_definition_and_its_objects_applies_in_one_call(kubectl, ns, tmp_path):
    """Helm's way: a folder holding a CustomResourceDefinition and objects of it. The first
    call may find the kind not served yet (kubectl maps every file before applying, as
    upstream); once the definition is established, one call applies the whole folder."""
    group = f"helm{kubectl.version.replace('.', '')}-{ns[-5:]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "properties": {"spec": {
                                       "type": "object",
                                       "properties": {"size": {"type": "integer"}}}}}}}]},
    }
    folder = tmp_path / "chart"
    folder.mkdir()
    (folder / "00-crd.yaml").write_text(yaml.safe_dump(crd))
    for name, size in (("a", 1), ("b", 2)):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({
            "apiVersion": f"{group}/v1", "kind": "Gadget",
            "metadata": {"name": name, "namespace": ns}, "spec": {"size": size}}))
    try:
        first = kubectl.run("apply", "--server-side", "-f", folder)
        assert first.returncode == 0 or "ensure CRDs are installed first" in first.stderr, first
        kubectl("wait", "--for", "condition=established", "--timeout=30s",
                f"crd/gadgets.{group}")
        out = kubectl("apply", "--server-side", "-f", folder)
        assert f"gadget.{group}/a serverside-applied" in out, out
        assert f"gadget.{group}/b serverside-applied" in out, out
        got = kubectl.json("get", f"gadgets.{group}", "-n", ns)
        assert sorted((i["metadata"]["name"], i["spec"]["size"]) for i in got["items"]) == [
            ("a", 1), ("b", 2)]
    finally:
        kubectl.run("delete", "--wait=false", "-f", folder / "00-crd.yaml")
