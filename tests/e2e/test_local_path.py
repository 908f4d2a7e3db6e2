"""The local-path provisioner (as k3s's `local-path` class): the server creates the default
class `local-path`; a claim without a class gets it; the scheduler picks the pod's node, the
provisioner makes a hostPath volume `pvc-<claim uid>` pinned to that node, whose directory the
node agent creates (mode 0777) in `<data-dir>/storage`; the data outlives the pod; deleting
the claim deletes the volume, and the agent removes its directory. A claim the provisioner
cannot serve gets a warning; a user's edit of the class outlives a restart of the server.

Needs root, runc and busybox-static (a real pod writes into the volume)."""

import json
import os
import stat
import time

from agent_node import node  # noqa: F401 (fixture)
from agent_node import IMAGE, NEEDS_AGENT, wait_pod
from conftest import Kubectl, rand_suffix, wait_for

pytestmark = NEEDS_AGENT

KUBECTL = "1.33"
PROVISIONER = "krust.io/local-path"


def kubectl(node):
    return Kubectl(KUBECTL, node.cluster, node.workdir)


def apply(k, manifest):
    k("apply", "-f", "-", input=json.dumps(manifest))


def claim(name, ns, modes=("ReadWriteOnce",), annotations=None):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": "64Mi"}}}}


def pod_using(name, ns, claim_name, command, restart="Always"):
    """A pod the scheduler places (no nodeName), running as an unprivileged user."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": restart,
                     "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                     "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", command],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data",
                                  "persistentVolumeClaim": {"claimName": claim_name}}]}}


def claim_events(k, ns, name):
    items = k.json("get", "events", "-n", ns, "--field-selector",
                   f"involvedObject.name={name},involvedObject.kind=PersistentVolumeClaim")["items"]
    return [(e["type"], e["reason"], e.get("message", "")) for e in items]


def gone(k, *args):
    return "NotFound" in k.run("get", *args).stderr


def test_the_default_class_is_local_path(node):
    k = kubectl(node)
    listing = wait_for(lambda: (lambda out: out if "local-path (default)" in out else None)(
        k("get", "storageclass")), 30, interval=0.5, what="the local-path class")
    assert PROVISIONER in listing and "WaitForFirstConsumer" in listing and "Delete" in listing


def test_a_claim_without_a_class_is_provisioned_on_the_pods_node(node):
    k = kubectl(node)
    ns = f"e2e-local-path-{rand_suffix()}"
    node.cluster.create_namespace(ns)
    storage = node.server.data_dir / "storage"
    try:
        wait_for(lambda: "local-path (default)" in k("get", "storageclass"), 30, interval=0.5,
                 what="the default class")
        apply(k, claim("data", ns))
        made = k.json("get", "pvc", "data", "-n", ns)
        assert made["spec"]["storageClassName"] == "local-path", "the default class is given"
        uid = made["metadata"]["uid"]
        # Waits for its first consumer.
        time.sleep(1)
        assert k.json("get", "pvc", "data", "-n", ns)["status"]["phase"] == "Pending"

        apply(k, pod_using("writer", ns, "data", "echo from-the-writer > /data/file && sleep 3600"))
        p = wait_pod(k, ns, "writer", lambda p: p["status"].get("phase") == "Running", timeout=90,
                     what="the writer running")
        assert p["spec"]["nodeName"] == node.name
        bound = wait_for(lambda: (lambda c: c if c["status"].get("phase") == "Bound" else None)(
            k.json("get", "pvc", "data", "-n", ns)), 30, interval=0.5, what="the claim bound")
        volume_name = f"pvc-{uid}"
        assert bound["spec"]["volumeName"] == volume_name
        assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node.name
        pv = k.json("get", "pv", volume_name)
        directory = storage / f"{volume_name}_{ns}_data"
        assert pv["spec"]["hostPath"] == {"path": str(directory), "type": "DirectoryOrCreate"}
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                   "values": [node.name]}]}]
        assert pv["spec"]["claimRef"]["uid"] == uid
        assert pv["spec"]["storageClassName"] == "local-path"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["spec"]["capacity"]["storage"] == "64Mi"
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        assert pv["metadata"]["labels"]["krust.io/local-path-node"] == node.name
        assert pv["status"]["phase"] == "Bound"
        wait_for(lambda: any(r == "ProvisioningSucceeded" and volume_name in m
                             for _, r, m in claim_events(k, ns, "data")),
                 30, interval=0.5, what="the ProvisioningSucceeded event")
        # The directory is open to every user (the writer runs as 1000) and holds the file.
        wait_for(lambda: (directory / "file").exists(), 30, interval=0.3, what="the written file")
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o777
        assert (directory / "file").read_text().strip() == "from-the-writer"

        # The data outlives the pod.
        k("delete", "pod", "writer", "-n", ns, "--grace-period=1", timeout=90)
        apply(k, pod_using("reader", ns, "data", "cat /data/file", restart="Never"))
        wait_pod(k, ns, "reader", lambda p: p["status"].get("phase") == "Succeeded", timeout=90,
                 what="the reader done")
        assert k("logs", "reader", "-n", ns).strip() == "from-the-writer"
        k("delete", "pod", "reader", "-n", ns, "--grace-period=1", timeout=90)

        # The claim deleted: the volume goes, then its directory.
        k("delete", "pvc", "data", "-n", ns, "--wait=false")
        wait_for(lambda: gone(k, "pv", volume_name), 90, interval=0.5, what="the volume deleted")
        wait_for(lambda: not directory.exists(), 90, interval=0.5, what="the directory removed")
        assert storage.is_dir(), "the storage path itself stays"
    finally:
        k.run("delete", "pods", "--all", "-n", ns, "--grace-period=1", timeout=90)
        k.run("delete", "pvc", "--all", "-n", ns, "--wait=false")
        node.cluster.ok("DELETE", f"/api/v1/namespaces/{ns}", expect=(200, 202, 404))


def test_a_claim_the_provisioner_cannot_serve_is_refused(node):
    k = kubectl(node)
    ns = f"e2e-local-path-{rand_suffix()}"
    node.cluster.create_namespace(ns)
    try:
        wait_for(lambda: "local-path (default)" in k("get", "storageclass"), 30, interval=0.5,
                 what="the default class")
        # As the scheduler leaves it for a pod on this node.
        selected = {"volume.kubernetes.io/selected-node": node.name}
        apply(k, claim("shared", ns, modes=("ReadWriteMany",), annotations=selected))
        refusal = wait_for(lambda: [e for e in claim_events(k, ns, "shared")
                                    if e[1] == "ProvisioningFailed"],
                           60, interval=0.5, what="the ProvisioningFailed event")
        assert refusal[0][0] == "Warning" and "ReadWriteMany" in refusal[0][2]
        c = k.json("get", "pvc", "shared", "-n", ns)
        assert c["status"]["phase"] == "Pending"
        assert c["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == PROVISIONER
        assert gone(k, "pv", f"pvc-{c['metadata']['uid']}")
    finally:
        k.run("delete", "pvc", "--all", "-n", ns, "--wait=false")
        node.cluster.ok("DELETE", f"/api/v1/namespaces/{ns}", expect=(200, 202, 404))


def test_a_users_edit_of_the_class_survives_a_restart(node):
    k = kubectl(node)
    ns = f"e2e-local-path-{rand_suffix()}"
    node.cluster.create_namespace(ns)
    default = "storageclass.kubernetes.io/is-default-class"
    try:
        wait_for(lambda: "local-path (default)" in k("get", "storageclass"), 30, interval=0.5,
                 what="the default class")
        k("annotate", "storageclass", "local-path", f"{default}=false", "--overwrite")
        node.server.restart()
        # The provisioner runs again: a claim of its class on this node gets its volume.
        selected = {"volume.kubernetes.io/selected-node": node.name}
        body = claim("again", ns, annotations=selected)
        body["spec"]["storageClassName"] = "local-path"
        wait_for(lambda: k.run("apply", "-f", "-", input=json.dumps(body)).returncode == 0, 60,
                 interval=0.5, what="the claim created after the restart")
        bound = wait_for(lambda: (lambda c: c if c["status"].get("phase") == "Bound" else None)(
            k.json("get", "pvc", "again", "-n", ns)), 60, interval=0.5, what="the claim bound")
        assert bound["spec"]["volumeName"] == f"pvc-{bound['metadata']['uid']}"
        # The class was neither recreated nor overwritten.
        cls = k.json("get", "storageclass", "local-path")
        assert cls["metadata"]["annotations"][default] == "false"
        assert "local-path (default)" not in k("get", "storageclass")
        k("delete", "pvc", "again", "-n", ns, "--wait=false")
        wait_for(lambda: gone(k, "pv", bound["spec"]["volumeName"]), 60, interval=0.5,
                 what="the volume deleted")
    finally:
        k.run("annotate", "storageclass", "local-path", f"{default}=true", "--overwrite")
        k.run("delete", "pvc", "--all", "-n", ns, "--wait=false")
        node.cluster.ok("DELETE", f"/api/v1/namespaces/{ns}", expect=(200, 202, 404))
