"""The PersistentVolume binder (upstream's `persistentvolume-binder`, in `krust-controllers`),
driven with kubectl 1.33: a claim binds the smallest volume that fits (both sides `Bound`,
`kubectl get pvc` showing the volume and its capacity), honours its selector and the volume
it names; a released volume is kept (`Retain`) or fails (`Delete`: krust has no plugin that
deletes volumes); a claim whose volume is gone is `Lost`; a claim of a `WaitForFirstConsumer`
class waits, and is bound once the scheduler reserves a volume for it; a claim of a class with
an external provisioner waits for it; a claim without a class gets the default class later.

The pvc-protection and pv-protection controllers keep a claim while a scheduled pod uses it and
a volume while it is bound, and let them go after.

The server runs without the local-path provisioner (`--disable-local-storage`), so that no
default class exists unless a test makes one (test_local_path.py covers the provisioner; with a
default class, a claim without a class gets it at creation, as upstream's).

No pod runs: hostPath volumes are only objects here, and a pod that uses a claim is bound to a
node that no agent serves. The volumes of each test are in a class of their own (the test's
namespace), so that tests never take each other's volumes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BACKENDS, Kubectl, _start_cluster, _stop_cluster, parse_table, rand_suffix, wait_for

CLAIMS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
VOLUMES = "/api/v1/persistentvolumes"
CLASSES = "/apis/storage.k8s.io/v1/storageclasses"


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request, e2e_tmp):
    """The module's server (per backend), without the local-path provisioner and its default
    class."""
    workdir = Path(tempfile.mkdtemp(prefix=f"persistent-volumes-{request.param}-", dir=e2e_tmp))
    c = _start_cluster(workdir, request.param, ["--disable-local-storage"])
    yield c
    _stop_cluster(c)


@pytest.fixture
def k(cluster):
    return Kubectl("1.33", cluster, cluster.workdir)


@pytest.fixture
def made(cluster, ns):
    """The cluster-scoped objects a test makes (volumes, classes), deleted after it with the
    protection finalizers of its claims and volumes removed."""
    objects: list[str] = []
    yield objects
    for claim in cluster.ok("GET", CLAIMS.format(ns=ns))["items"]:
        cluster.patch(f"{CLAIMS.format(ns=ns)}/{claim['metadata']['name']}",
                      {"metadata": {"finalizers": None}})
    for path in objects:
        if path.startswith(VOLUMES):
            cluster.patch(path, {"metadata": {"finalizers": None}})
        cluster.delete(path)


def volume(cluster, made, name, size, cls, *, policy="Retain", labels=None, claim_ref=None,
           modes=("ReadWriteOnce",)):
    body = {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "hostPath": {"path": f"/tmp/krust-e2e-volumes/{name}"},
                     "storageClassName": cls, "persistentVolumeReclaimPolicy": policy}}
    if claim_ref is not None:
        body["spec"]["claimRef"] = claim_ref
    cluster.ok("POST", VOLUMES, body=body, expect=(201,))
    made.append(f"{VOLUMES}/{name}")
    return name


def claim(cluster, ns, name, size, cls=None, *, selector=None, volume_name=None,
          modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    if volume_name is not None:
        spec["volumeName"] = volume_name
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}
    return cluster.ok("POST", CLAIMS.format(ns=ns), body=body, expect=(201,))


def get_claim(cluster, ns, name):
    return cluster.ok("GET", f"{CLAIMS.format(ns=ns)}/{name}")


def get_volume(cluster, name):
    return cluster.ok("GET", f"{VOLUMES}/{name}")


def phase(obj):
    return obj.get("status", {}).get("phase")


def wait_claim(cluster, ns, name, want, timeout=30):
    wait_for(lambda: phase(get_claim(cluster, ns, name)) == want, timeout, 0.2,
             what=f"claim {ns}/{name} {want}")
    return get_claim(cluster, ns, name)


def wait_volume(cluster, name, want, timeout=30):
    wait_for(lambda: phase(get_volume(cluster, name)) == want, timeout, 0.2,
             what=f"volume {name} {want}")
    return get_volume(cluster, name)


def events(cluster, namespace, name):
    items = cluster.ok("GET", f"/api/v1/namespaces/{namespace}/events",
                       params={"fieldSelector": f"involvedObject.name={name}"})["items"]
    return [(e["type"], e["reason"], e.get("message") or e.get("note")) for e in items]


def wait_event(cluster, namespace, name, reason, timeout=30):
    wait_for(lambda: any(r == reason for _, r, _ in events(cluster, namespace, name)), timeout,
             0.2, what=f"a {reason} event about {name}")
    return [(t, m) for t, r, m in events(cluster, namespace, name) if r == reason]


def release(cluster, ns, name):
    """Deletes a claim no pod uses: the pvc-protection controller lets it go."""
    cluster.delete(f"{CLAIMS.format(ns=ns)}/{name}")
    wait_for(lambda: cluster.get(f"{CLAIMS.format(ns=ns)}/{name}").status_code == 404, 15, 0.2,
             what=f"claim {name} gone")


def test_a_claim_binds_the_smallest_volume_that_fits(cluster, ns, made, k):
    sfx = rand_suffix()
    volume(cluster, made, f"tiny-{sfx}", "1Gi", ns)
    small = volume(cluster, made, f"small-{sfx}", "3Gi", ns)
    volume(cluster, made, f"big-{sfx}", "10Gi", ns)
    # Only Available volumes are candidates: all three, so that the choice is certain.
    for name in (f"tiny-{sfx}", small, f"big-{sfx}"):
        wait_volume(cluster, name, "Available")
    created = claim(cluster, ns, "data", "2Gi", ns)

    bound = wait_claim(cluster, ns, "data", "Bound")
    assert bound["spec"]["volumeName"] == small
    assert bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert bound["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert bound["status"]["capacity"] == {"storage": "3Gi"}
    assert bound["status"]["accessModes"] == ["ReadWriteOnce"]
    pv = wait_volume(cluster, small, "Bound")
    ref = pv["spec"]["claimRef"]
    assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"]) == (
        "PersistentVolumeClaim", ns, "data", created["metadata"]["uid"])
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    for other in (f"tiny-{sfx}", f"big-{sfx}"):
        assert phase(get_volume(cluster, other)) == "Available"
        assert "claimRef" not in get_volume(cluster, other)["spec"]

    _, rows = parse_table(k("get", "pvc", "data", "-n", ns))
    assert (rows[0]["STATUS"], rows[0]["VOLUME"], rows[0]["CAPACITY"],
            rows[0]["ACCESS MODES"], rows[0]["STORAGECLASS"]) == ("Bound", small, "3Gi", "RWO", ns)
    _, rows = parse_table(k("get", "pv", small))
    assert (rows[0]["STATUS"], rows[0]["CLAIM"]) == ("Bound", f"{ns}/data")


def test_a_waiting_claim_binds_a_volume_created_later(cluster, ns, made):
    claim(cluster, ns, "later", "1Gi", ns)
    # Its class names no StorageClass: upstream tries to provision and says so.
    assert wait_event(cluster, ns, "later", "ProvisioningFailed") == [
        ("Warning", f'storageclass.storage.k8s.io "{ns}" not found')]
    assert phase(get_claim(cluster, ns, "later")) == "Pending"
    late = volume(cluster, made, f"late-{rand_suffix()}", "1Gi", ns)
    assert wait_claim(cluster, ns, "later", "Bound")["spec"]["volumeName"] == late
    wait_volume(cluster, late, "Bound")


def test_a_claim_without_a_class_and_without_volumes_waits(cluster, ns, made, k):
    claim(cluster, ns, "nothing", "1Gi", "",
          selector={"matchLabels": {"nothing-has": f"this-{rand_suffix()}"}})
    assert wait_event(cluster, ns, "nothing", "FailedBinding") == [
        ("Normal", "no persistent volumes available for this claim and no storage class is set")]
    assert phase(get_claim(cluster, ns, "nothing")) == "Pending"
    described = k("describe", "pvc", "nothing", "-n", ns)
    assert "no persistent volumes available for this claim and no storage class is set" in described


def test_a_claim_with_a_selector_takes_a_volume_it_selects(cluster, ns, made):
    sfx = rand_suffix()
    volume(cluster, made, f"plain-{sfx}", "1Gi", ns)
    fast = volume(cluster, made, f"fast-{sfx}", "5Gi", ns, labels={"tier": "fast"})
    for name in (f"plain-{sfx}", fast):
        wait_volume(cluster, name, "Available")
    claim(cluster, ns, "picky", "1Gi", ns, selector={"matchLabels": {"tier": "fast"}})
    assert wait_claim(cluster, ns, "picky", "Bound")["spec"]["volumeName"] == fast
    assert phase(get_volume(cluster, f"plain-{sfx}")) == "Available"


def test_a_claim_naming_its_volume(cluster, ns, made):
    sfx = rand_suffix()
    volume(cluster, made, f"small-{sfx}", "1Gi", ns)
    chosen = volume(cluster, made, f"chosen-{sfx}", "5Gi", ns)
    claim(cluster, ns, "named", "1Gi", ns, volume_name=chosen)
    bound = wait_claim(cluster, ns, "named", "Bound")
    assert bound["spec"]["volumeName"] == chosen
    assert bound["status"]["capacity"] == {"storage": "5Gi"}
    # The user chose the volume: the claim is not marked bound by the controller, the volume is.
    assert "pv.kubernetes.io/bound-by-controller" not in bound["metadata"]["annotations"]
    assert bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    pv = wait_volume(cluster, chosen, "Bound")
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert phase(get_volume(cluster, f"small-{sfx}")) == "Available"

    # A volume that does not satisfy the claim naming it.
    tight = volume(cluster, made, f"tight-{sfx}", "1Gi", ns)
    claim(cluster, ns, "too-big", "2Gi", ns, volume_name=tight)
    assert wait_event(cluster, ns, "too-big", "VolumeMismatch") == [
        ("Warning", f'Cannot bind to requested volume "{tight}": requested PV is too small')]
    assert phase(get_claim(cluster, ns, "too-big")) == "Pending"
    assert phase(get_volume(cluster, tight)) == "Available"


def test_a_volume_reserved_for_a_claim(cluster, ns, made):
    sfx = rand_suffix()
    volume(cluster, made, f"other-{sfx}", "1Gi", ns)
    kept = volume(cluster, made, f"kept-{sfx}", "8Gi", ns,
                  claim_ref={"namespace": ns, "name": "reserved"})
    # Reserved (no uid yet): Available, and taken by no other claim.
    wait_volume(cluster, kept, "Available")
    wait_volume(cluster, f"other-{sfx}", "Available")
    claim(cluster, ns, "someone", "1Gi", ns)
    assert wait_claim(cluster, ns, "someone", "Bound")["spec"]["volumeName"] == f"other-{sfx}"
    created = claim(cluster, ns, "reserved", "1Gi", ns)
    bound = wait_claim(cluster, ns, "reserved", "Bound")
    assert bound["spec"]["volumeName"] == kept
    pv = wait_volume(cluster, kept, "Bound")
    assert pv["spec"]["claimRef"]["uid"] == created["metadata"]["uid"]
    # The user reserved the volume: it is not marked bound by the controller.
    assert "pv.kubernetes.io/bound-by-controller" not in (pv["metadata"].get("annotations") or {})


def test_released_volumes_are_kept_or_fail_by_policy(cluster, ns, made, k):
    sfx = rand_suffix()
    kept = volume(cluster, made, f"retain-{sfx}", "1Gi", ns, policy="Retain")
    claim(cluster, ns, "keep", "1Gi", ns, volume_name=kept)
    dropped = volume(cluster, made, f"delete-{sfx}", "1Gi", ns, policy="Delete")
    claim(cluster, ns, "drop", "1Gi", ns, volume_name=dropped)
    recycled = volume(cluster, made, f"recycle-{sfx}", "1Gi", ns, policy="Recycle")
    claim(cluster, ns, "recycle", "1Gi", ns, volume_name=recycled)
    for name in ("keep", "drop", "recycle"):
        wait_claim(cluster, ns, name, "Bound")

    for name in ("keep", "drop", "recycle"):
        release(cluster, ns, name)
    retained = wait_volume(cluster, kept, "Released")
    assert retained["spec"]["claimRef"]["name"] == "keep", "a released volume keeps its claimRef"
    failed = wait_volume(cluster, dropped, "Failed")
    message = f'error getting deleter volume plugin for volume "{dropped}": no volume plugin matched'
    assert failed["status"]["message"] == message
    assert wait_event(cluster, "default", dropped, "VolumeFailedDelete") == [("Warning", message)]
    failed = wait_volume(cluster, recycled, "Failed")
    assert failed["status"]["message"] == "No recycler plugin found for the volume!"
    assert wait_event(cluster, "default", recycled, "VolumeFailedRecycle") == [
        ("Warning", "No recycler plugin found for the volume!")]

    _, rows = parse_table(k("get", "pv", kept, dropped))
    by_name = {r["NAME"]: r for r in rows}
    assert (by_name[kept]["STATUS"], by_name[kept]["CLAIM"]) == ("Released", f"{ns}/keep")
    assert (by_name[dropped]["STATUS"], by_name[dropped]["RECLAIM POLICY"]) == ("Failed", "Delete")

    # A new claim of the same name does not take the released volume back.
    claim(cluster, ns, "keep", "1Gi", ns, volume_name=kept)
    assert wait_event(cluster, ns, "keep", "FailedBinding") == [
        ("Warning", f'volume "{kept}" already bound to a different claim.')]
    assert phase(get_volume(cluster, kept)) == "Released"


def test_a_claim_stays_while_a_pod_uses_it_and_a_volume_while_it_is_bound(cluster, ns, made):
    sfx = rand_suffix()
    kept = volume(cluster, made, f"used-{sfx}", "1Gi", ns)
    claim(cluster, ns, "data", "1Gi", ns, volume_name=kept)
    wait_claim(cluster, ns, "data", "Bound")
    assert get_claim(cluster, ns, "data")["metadata"]["finalizers"] == [
        "kubernetes.io/pvc-protection"]
    assert get_volume(cluster, kept)["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    pods = f"/api/v1/namespaces/{ns}/pods"
    cluster.ok("POST", pods, expect=(201,), body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"nodeName": f"no-agent-{sfx}",
                 "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})

    # In use: the claim is Terminating, and its bound volume too once deleted.
    cluster.delete(f"{CLAIMS.format(ns=ns)}/data")
    cluster.delete(f"{VOLUMES}/{kept}")
    for _ in range(10):
        held = get_claim(cluster, ns, "data")
        assert held["metadata"].get("deletionTimestamp")
        assert held["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
        assert phase(get_volume(cluster, kept)) == "Bound"
        time.sleep(0.2)

    # The pod gone, the claim goes; its volume is released, and goes as it is no longer bound.
    cluster.delete(f"{pods}/user", params={"gracePeriodSeconds": "0"})
    wait_for(lambda: cluster.get(f"{CLAIMS.format(ns=ns)}/data").status_code == 404, 15, 0.2,
             what="the claim gone")
    wait_for(lambda: cluster.get(f"{VOLUMES}/{kept}").status_code == 404, 15, 0.2,
             what="the volume gone")


def test_a_claim_or_volume_without_its_finalizer_gets_it_back(cluster, ns, made):
    bare = volume(cluster, made, f"bare-{rand_suffix()}", "1Gi", ns)
    claim(cluster, ns, "bare", "1Gi", ns, volume_name=bare)
    cluster.patch(f"{CLAIMS.format(ns=ns)}/bare", {"metadata": {"finalizers": None}})
    cluster.patch(f"{VOLUMES}/{bare}", {"metadata": {"finalizers": None}})
    wait_for(lambda: get_claim(cluster, ns, "bare")["metadata"].get("finalizers")
             == ["kubernetes.io/pvc-protection"], 15, 0.2, what="the claim's finalizer back")
    wait_for(lambda: get_volume(cluster, bare)["metadata"].get("finalizers")
             == ["kubernetes.io/pv-protection"], 15, 0.2, what="the volume's finalizer back")


def test_a_claim_whose_volume_is_gone_is_lost(cluster, ns, made):
    gone = volume(cluster, made, f"gone-{rand_suffix()}", "1Gi", ns)
    claim(cluster, ns, "orphan", "1Gi", ns)
    wait_claim(cluster, ns, "orphan", "Bound")
    # Forced away: pv-protection keeps a bound volume, so its finalizer is taken off.
    cluster.delete(f"{VOLUMES}/{gone}")
    cluster.patch(f"{VOLUMES}/{gone}", {"metadata": {"finalizers": None}})
    lost = wait_claim(cluster, ns, "orphan", "Lost")
    assert lost["spec"]["volumeName"] == gone
    assert wait_event(cluster, ns, "orphan", "ClaimLost") == [
        ("Warning", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")]


def test_wait_for_first_consumer_then_the_scheduler_s_choice(cluster, ns, made, k):
    sfx = rand_suffix()
    cls = f"local-{sfx}"
    cluster.ok("POST", CLASSES, body={
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": cls},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"},
        expect=(201,))
    made.append(f"{CLASSES}/{cls}")
    local = volume(cluster, made, f"local-{sfx}", "1Gi", cls)
    wait_volume(cluster, local, "Available")
    created = claim(cluster, ns, "delayed", "1Gi", cls)
    assert wait_event(cluster, ns, "delayed", "WaitForFirstConsumer") == [
        ("Normal", "waiting for first consumer to be created before binding")]
    assert "waiting for first consumer to be created before binding" in k(
        "describe", "pvc", "delayed", "-n", ns)
    assert phase(get_claim(cluster, ns, "delayed")) == "Pending"
    assert phase(get_volume(cluster, local)) == "Available"

    # The scheduler's volume binding reserves the volume for the claim as upstream's does:
    # claimRef with the claim's uid, marked bound by a controller. The binder finishes.
    uid = created["metadata"]["uid"]
    cluster.ok("PATCH", f"{VOLUMES}/{local}", headers={
        "Content-Type": "application/merge-patch+json"}, data=json.dumps({
            "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "namespace": ns, "name": "delayed", "uid": uid}}}))
    bound = wait_claim(cluster, ns, "delayed", "Bound")
    assert bound["spec"]["volumeName"] == local
    assert bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert bound["status"]["capacity"] == {"storage": "1Gi"}
    wait_volume(cluster, local, "Bound")


def test_a_claim_waits_for_its_external_provisioner(cluster, ns, made):
    cls = f"external-{rand_suffix()}"
    cluster.ok("POST", CLASSES, body={
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": cls},
        "provisioner": "example.com/external"}, expect=(201,))
    made.append(f"{CLASSES}/{cls}")
    claim(cluster, ns, "dynamic", "1Gi", cls)
    assert wait_event(cluster, ns, "dynamic", "ExternalProvisioning") == [(
        "Normal", "Waiting for a volume to be created either by the external provisioner "
        "'example.com/external' or manually by the system administrator. If volume creation is "
        "delayed, please verify that the provisioner is running and correctly registered.")]
    asked = get_claim(cluster, ns, "dynamic")
    assert asked["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == \
        "example.com/external"
    assert asked["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-provisioner"] == \
        "example.com/external"
    assert phase(asked) == "Pending"


def test_a_claim_without_a_class_gets_the_default_class_later(cluster, ns, made):
    created = claim(cluster, ns, "classless", "1Gi")
    assert "storageClassName" not in created["spec"], "no default class at creation"
    wait_event(cluster, ns, "classless", "FailedBinding")
    cls = f"default-{rand_suffix()}"
    volume(cluster, made, f"for-{cls}", "1Gi", cls)
    cluster.ok("POST", CLASSES, body={
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": cls,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner"}, expect=(201,))
    made.append(f"{CLASSES}/{cls}")
    try:
        bound = wait_claim(cluster, ns, "classless", "Bound")
        assert bound["spec"]["storageClassName"] == cls
        assert bound["spec"]["volumeName"] == f"for-{cls}"
    finally:
        # Other tests' claims must not get it.
        cluster.delete(f"{CLASSES}/{cls}")
