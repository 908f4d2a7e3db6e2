"""The controllers (`krust-controllers`): API clients of the server, as upstream's
kube-controller-manager. They run inside `krust server` and alone as `krust controllers
--kubeconfig FILE`; one instance acts at a time, the holder of the
`kube-system/kube-controller-manager` Lease; each controller writes as its own service
account in `kube-system`.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from conftest import KrustServer, deployment, reap, spawn, wait_for, KRUST_BIN, rand_suffix

CONTROLLERS = ["namespace-controller", "service-account-controller", "root-ca-cert-publisher",
               "generic-garbage-collector"]


def namespace(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_in_server_controllers_hold_the_lease_and_act_as_their_accounts(cluster):
    lease = wait_for(lambda: cluster.get(
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
    ).json() if cluster.get(
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
    ).status_code == 200 else None, 30, what="the controller manager's lease")
    assert lease["spec"]["holderIdentity"], lease
    assert lease["spec"]["leaseDurationSeconds"] == 15, lease
    for name in CONTROLLERS:
        wait_for(lambda: cluster.get(
            f"/api/v1/namespaces/kube-system/serviceaccounts/{name}").status_code == 200,
            30, what=f"the service account of {name}")
    # Each account holds its upstream role through the bootstrap binding, and no more.
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "system:serviceaccount:kube-system:service-account-controller",
                 "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                            "system:authenticated"],
                 "resourceAttributes": {"namespace": "x", "verb": "create",
                                        "resource": "serviceaccounts"}}}
    r = cluster.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    assert r["status"]["allowed"] is True, r
    review["spec"]["resourceAttributes"]["verb"] = "delete"
    r = cluster.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    assert r["status"].get("allowed") is not True, r


def established_to(port: int) -> int:
    """How many established TCP connections on this host have `port` as their local port
    (the server's ends of its clients' connections)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


def test_in_server_controllers_share_one_connection_for_their_watches(cluster):
    """The controllers keep dozens of watches open (the garbage collector one per resource)
    over one HTTP/2 connection, as client-go's do, not a connection each."""
    wait_for(lambda: "every monitor listed" in cluster.server.log_path.read_text(), 60,
             what="the garbage collector's informers")
    watches = 40  # the garbage collector alone watches more resources than this
    assert established_to(cluster.server.port) < watches / 2


def test_controllers_write_status_as_kube_controller_manager(cluster, ns):
    """The field manager of a write is its client's User-Agent prefix, as upstream's: the
    controllers say they are kube-controller-manager, as upstream's do."""
    cluster.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment("d1"))

    def status_managers():
        d = cluster.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/d1")
        return {m["manager"] for m in d["metadata"].get("managedFields", [])
                if m.get("subresource") == "status"}
    assert wait_for(status_managers, 30, what="the Deployment's status written") == \
        {"kube-controller-manager"}


def test_a_deleted_default_account_and_a_changed_ca_are_put_back(cluster, ns_name):
    ns = ns_name
    cluster.create_namespace(ns)
    sa = f"/api/v1/namespaces/{ns}/serviceaccounts/default"
    cm = f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"
    wait_for(lambda: cluster.get(sa).status_code == 200, 15, what="the default account")
    ca = wait_for(lambda: cluster.get(cm).json() if cluster.get(cm).status_code == 200 else None,
                  15, what="the CA ConfigMap")["data"]["ca.crt"]
    assert ca.startswith("-----BEGIN CERTIFICATE-----"), ca
    old_uid = cluster.ok("GET", sa)["metadata"]["uid"]
    assert cluster.delete(sa).status_code == 200
    wait_for(lambda: cluster.get(sa).status_code == 200
             and cluster.get(sa).json()["metadata"]["uid"] != old_uid, 15,
             what="the default account made again")
    cluster.patch(cm, {"data": {"ca.crt": "not a CA"}})
    wait_for(lambda: cluster.get(cm).json()["data"]["ca.crt"] == ca, 15, what="the CA put back")
    assert cluster.delete(cm).status_code == 200
    wait_for(lambda: cluster.get(cm).status_code == 200, 15, what="the CA ConfigMap made again")


# --------------------------------------------------------------------------------------------
# a server without in-process controllers, and `krust controllers` beside it


@pytest.fixture(scope="module")
def bare_server(e2e_tmp):
    workdir = e2e_tmp / "controllers-standalone"
    workdir.mkdir(parents=True, exist_ok=True)
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--disable-controller-manager"]
    server.start()
    yield server
    server.stop(signal.SIGTERM, timeout=15)


def start_controllers(server, name):
    log = open(server.workdir / f"{name}.log", "ab")
    return spawn([KRUST_BIN, "controllers", "--kubeconfig",
                  server.data_dir / "controller-manager.kubeconfig"],
                 stdout=log, stderr=log, pdeathsig=True)


def test_standalone_controllers_and_leader_handover(bare_server):
    s = bare_server.creds.session()
    base = bare_server.creds.server
    lease_path = f"{base}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"

    def has_account(ns):
        return s.get(f"{base}/api/v1/namespaces/{ns}/serviceaccounts/default",
                     timeout=30).status_code == 200

    def new_namespace():
        name = f"ctl-{rand_suffix()}"
        r = s.post(f"{base}/api/v1/namespaces", json=namespace(name), timeout=30)
        assert r.status_code == 201, r.text
        return name

    # Nothing acts while no controller manager runs.
    first = new_namespace()
    with pytest.raises(BaseException):
        wait_for(lambda: has_account(first), 2, what="no default account")
    assert s.get(lease_path, timeout=30).status_code == 404

    a = start_controllers(bare_server, "a")
    b = None
    try:
        wait_for(lambda: has_account(first), 30, what="the default account, by `krust controllers`")
        holder = s.get(lease_path, timeout=30).json()["spec"]
        b = start_controllers(bare_server, "b")
        # The second instance waits: the lease stays with the first while it renews.
        wait_for(lambda: s.get(lease_path, timeout=30).json()["spec"]["renewTime"]
                 != holder["renewTime"], 10, what="a renewal")
        assert s.get(lease_path, timeout=30).json()["spec"]["holderIdentity"] == \
            holder["holderIdentity"]

        # The holder dies without a word; the other takes over once the lease runs out.
        reap(a, signal.SIGKILL)
        second = new_namespace()
        taken = wait_for(lambda: (lambda sp: sp if sp["holderIdentity"] != holder["holderIdentity"]
                                  else None)(s.get(lease_path, timeout=30).json()["spec"]),
                         40, interval=0.5, what="the lease taken over")
        assert taken["leaseTransitions"] == holder.get("leaseTransitions", 0) + 1, taken
        wait_for(lambda: has_account(second), 20, what="the default account, by the new leader")

        # Namespace deletion is the new leader's too.
        r = s.delete(f"{base}/api/v1/namespaces/{second}", timeout=30)
        assert r.status_code in (200, 202), r.text
        wait_for(lambda: s.get(f"{base}/api/v1/namespaces/{second}", timeout=30).status_code
                 == 404, 30, what="the namespace finalized")

        # Stopped with SIGTERM, the leader releases the lease (as upstream's ReleaseOnCancel):
        # no holder, and a new instance takes it without waiting out the 15 s lease.
        reap(b, signal.SIGTERM)
        released = s.get(lease_path, timeout=30).json()["spec"]
        assert not released.get("holderIdentity"), released
        assert released["leaseDurationSeconds"] == 1, released
        c = start_controllers(bare_server, "c")
        try:
            wait_for(lambda: s.get(lease_path, timeout=30).json()["spec"].get("holderIdentity"),
                     10, interval=0.5, what="the released lease taken at once")
        finally:
            reap(c, signal.SIGKILL)
    finally:
        reap(a, signal.SIGKILL)
        if b is not None:
            reap(b, signal.SIGKILL)


def test_controllers_refuse_a_missing_kubeconfig(e2e_tmp):
    proc = spawn([KRUST_BIN, "controllers", "--kubeconfig", e2e_tmp / "no-such.kubeconfig"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    reap(proc)
    assert proc.returncode != 0
    assert b"no-such.kubeconfig" in err, err
