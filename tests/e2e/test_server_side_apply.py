"""kubectl apply --server-side: creates what is absent, then follows the applied config.

Server-side apply is approximated (no managedFields or conflicts yet); these tests pin what a
user sees today."""

import yaml


def configmap(ns, value):
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "ssa", "namespace": ns},
                           "data": {"a": value}})


def test_server_side_apply_creates_then_updates(kubectl, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(configmap(ns, "1"))
    out = kubectl("apply", "--server-side", "-f", f)
    assert "serverside-applied" in out, out
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "1"}
    f.write_text(configmap(ns, "2"))
    kubectl("apply", "--server-side", "-f", f)
    assert kubectl.json("get", "configmap", "ssa", "-n", ns)["data"] == {"a": "2"}
