"""The foundation under abuse: health checks, /version, private files, waiting for etcd,
and error bodies shaped byte for byte as upstream's."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (Etcd, KrustServer, assert_status, configmap, free_port, reap, spawn,
                      wait_for)

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# health


def test_readyz_verbose_lists_upstreams_checks(cluster):
    r = cluster.get("/readyz", params={"verbose": ""})
    assert r.status_code == 200, r.text
    assert r.text.splitlines() == [
        "[+]ping ok", "[+]etcd ok", "[+]etcd-readiness ok", "[+]shutdown ok",
        "readyz check passed"]
    assert cluster.get("/readyz").text == "ok"


def test_livez_and_healthz_check_the_store(cluster):
    for path in ("/livez", "/healthz"):
        r = cluster.get(path, params={"verbose": "1"})
        assert r.status_code == 200
        assert "[+]etcd ok" in r.text.splitlines()
        assert r.text.endswith(f"{path[1:]} check passed\n")


def test_one_check_by_path_and_excludes(cluster):
    assert cluster.get("/readyz/etcd").text == "ok"
    assert cluster.get("/readyz/nope").status_code == 404
    r = cluster.get("/readyz", params={"verbose": "", "exclude": ["etcd", "bogus"]})
    assert r.status_code == 200
    assert "[+]etcd ok" not in r.text
    assert 'no matches for "bogus"' in r.text


def test_version_names_the_commit_it_was_built_from(cluster):
    v = cluster.ok("GET", "/version")
    assert (v["major"], v["minor"]) == ("1", "33")
    assert v["gitVersion"].startswith("v1.33.0-krust.")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode != 0:
        # Built from a tree without git (an archive): the commit is unknown, not made up.
        assert v["gitCommit"] == "" and "+" not in v["gitVersion"], v
        return
    assert re.fullmatch(r"[0-9a-f]{40}", v["gitCommit"]), v
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e",
                            v["gitCommit"] + "^{commit}"], capture_output=True)
    assert known.returncode == 0, f"{v['gitCommit']} is no commit of this repository"
    assert v["gitTreeState"] in ("clean", "dirty")
    assert v["gitCommit"][:12] in v["gitVersion"]


# ---------------------------------------------------------------------------------------------
# files on disk


def test_keys_kubeconfig_and_store_are_private(cluster):
    data = cluster.server.data_dir
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path}: {oct(mode)}"
        else:
            assert mode == 0o600, f"{path}: {oct(mode)}"


# ---------------------------------------------------------------------------------------------
# error bodies


def test_a_409_body_is_byte_for_byte_upstreams(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("dup"),
               expect=(201,))
    r = cluster.post(f"/api/v1/namespaces/{ns}/configmaps", body=configmap("dup"))
    assert r.status_code == 409
    assert r.text == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        '"message":"configmaps \\"dup\\" already exists","reason":"AlreadyExists",'
        '"details":{"name":"dup","kind":"configmaps"},"code":409}\n')


def test_every_404_has_details(cluster, ns):
    cases = {
        f"/api/v1/namespaces/{ns}/configmaps/missing": {"name": "missing", "kind": "configmaps"},
        f"/api/v1/namespaces/{ns}/widgets/w": {"name": "w", "kind": "widgets"},
        f"/api/v1/namespaces/{ns}/pods/p/ephemeralcontainers": {"kind": "pods"},
        "/no/such/path": {},
    }
    for path, details in cases.items():
        r = cluster.get(path)
        status = assert_status(r, 404, "NotFound")
        assert status.get("details") == details, f"{path}: {r.text}"
        assert r.text.endswith("}\n")


# ---------------------------------------------------------------------------------------------
# waiting for etcd at start


def test_server_waits_for_an_etcd_started_after_it(tmp_path):
    etcd = Etcd(tmp_path)
    etcd.client_port = free_port()
    server = KrustServer(tmp_path, "etcd", etcd)
    log = open(server.log_path, "ab")
    proc = spawn(server.command(), stdout=log, stderr=log, pdeathsig=True)
    log.close()
    try:
        wait_for(lambda: b"waiting for etcd" in server.log_path.read_bytes(), 30,
                 what="the server to say it waits for etcd")
        assert proc.poll() is None, "the server gave up instead of waiting"
        # etcd comes up on the port the server is waiting for
        etcd.start(client_port=etcd.client_port)
        server.proc = proc
        server.wait_ready(60)
    finally:
        reap(proc)
        etcd.stop()


def test_server_gives_up_on_an_absent_etcd_with_a_clear_error(tmp_path):
    cmd = [str(c) for c in KrustServer(tmp_path, "etcd", None).command()] + [
        "--datastore-endpoint", f"http://127.0.0.1:{free_port()}",
        "--datastore-connect-timeout", "3s"]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert done.returncode != 0
    assert time.monotonic() - started >= 2.5
    err = done.stderr.decode(errors="replace")
    assert "waiting for etcd" in err
    assert "did not answer within" in err


def test_readyz_fails_while_etcd_is_down_and_recovers(tmp_path):
    etcd = Etcd(tmp_path)
    etcd.start()
    server = KrustServer(tmp_path, "etcd", etcd)
    try:
        server.start()
        http, url = server._http, server.creds.server
        port = etcd.client_port
        reap(etcd.proc, signal.SIGKILL)
        def failing():
            r = http.get(url + "/readyz", timeout=10)
            return [r] if r.status_code == 500 else None  # a 500 Response is falsy

        [r] = wait_for(failing, 30, what="/readyz to fail")
        assert "[-]etcd failed: reason withheld" in r.text
        assert r.text.endswith("readyz check failed\n")
        # etcd back on the same port and data: ready again
        etcd_cmd = etcd.proc.args
        log = open(etcd.log_path, "ab")
        etcd.proc = spawn(etcd_cmd, stdout=log, stderr=log, pdeathsig=True)
        log.close()
        assert etcd.client_port == port
        wait_for(lambda: http.get(url + "/readyz", timeout=10).status_code == 200, 60,
                 what="/readyz to pass again")
    finally:
        server.stop(signal.SIGKILL)
        etcd.stop()


# ---------------------------------------------------------------------------------------------
# concurrent patches


def test_concurrent_merge_patches_of_one_object_all_succeed(cluster, ns):
    """A patch without a resourceVersion retries on conflict, as upstream's GuaranteedUpdate
    does: concurrent writers never see a 409."""
    import concurrent.futures

    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("hot"),
               expect=(201,))
    path = f"/api/v1/namespaces/{ns}/configmaps/hot"

    def writer(i):
        session = cluster.creds.session()
        codes = []
        for j in range(25):
            r = cluster.patch(path, {"data": {f"w{i}": str(j)}}, session=session)
            codes.append(r.status_code)
        return codes

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = [c for cs in pool.map(writer, range(8)) for c in cs]
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    data = cluster.ok("GET", path)["data"]
    assert data == {f"w{i}": "24" for i in range(8)}


def test_a_patch_naming_a_stale_resource_version_is_409(cluster, ns):
    created = cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("rv"),
                         expect=(201,))
    path = f"/api/v1/namespaces/{ns}/configmaps/rv"
    stale = created["metadata"]["resourceVersion"]
    cluster.ok("PATCH", path, body={"data": {"a": "1"}},
               headers={"Content-Type": "application/merge-patch+json"})
    r = cluster.patch(path, {"metadata": {"resourceVersion": stale}, "data": {"b": "2"}})
    assert_status(r, 409, "Conflict")
    current = cluster.ok("GET", path)["metadata"]["resourceVersion"]
    r = cluster.patch(path, {"metadata": {"resourceVersion": current}, "data": {"b": "2"}})
    assert r.status_code == 200, r.text
