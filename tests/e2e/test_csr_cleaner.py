"""The CertificateSigningRequest cleaner (in `krust-controllers`): a request denied or issued
more than an hour ago is deleted; newer ones and pending ones stay."""

from __future__ import annotations

import base64
import subprocess
from datetime import datetime, timedelta, timezone

from conftest import rand_suffix, wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def request(cluster, name):
    out = cluster.workdir / f"csr-{name}"
    out.mkdir()
    key, csr = out / "k.key", out / "k.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", f"/CN={name}"], check=True, capture_output=True)
    cluster.ok("POST", CSRS, body={
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64.b64encode(csr.read_bytes()).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["digital signature", "client auth"]}})


def decide(cluster, name, kind, when):
    obj = cluster.ok("GET", f"{CSRS}/{name}")
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    obj.setdefault("status", {})["conditions"] = [{
        "type": kind, "status": "True", "reason": "Test", "message": "by the test",
        "lastUpdateTime": stamp, "lastTransitionTime": stamp}]
    cluster.ok("PUT", f"{CSRS}/{name}/approval", body=obj)


def exists(cluster, name):
    return cluster.get(f"{CSRS}/{name}").status_code == 200


def test_old_decided_requests_are_deleted(cluster):
    suffix = rand_suffix()
    old, fresh, pending = f"old-{suffix}", f"fresh-{suffix}", f"pending-{suffix}"
    for name in (old, fresh, pending):
        request(cluster, name)
    now = datetime.now(timezone.utc)
    decide(cluster, old, "Denied", now - timedelta(hours=2))
    decide(cluster, fresh, "Denied", now)
    wait_for(lambda: not exists(cluster, old), 30, 0.5, what="the old denied request deleted")
    assert exists(cluster, fresh) and exists(cluster, pending)
    for name in (fresh, pending):
        cluster.ok("DELETE", f"{CSRS}/{name}")
