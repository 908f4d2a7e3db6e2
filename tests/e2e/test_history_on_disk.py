"""History on disk stays bounded under sustained updates, because the server compacts it:
etcd's database stays within its quota (without compaction the same writes would pass it and
etcd would refuse every write), and the embedded store's file reuses the space compaction
frees instead of growing with every write."""

import base64
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Cluster, Etcd, KrustServer, rand_suffix

QUOTA = 32 * 1024 * 1024
VALUE = 256 * 1024
OBJECTS = 8
# 80 MB written in all: two and a half times etcd's quota.
ROUNDS = 40
# Paced so that what two compaction intervals keep (at most 2 s of updates) stays far below the
# quota: about 5 MB/s.
UPDATES_PER_SECOND = 20


def start(workdir: Path, backend: str) -> Cluster:
    etcd = None
    if backend == "etcd":
        etcd = Etcd(workdir)
        etcd.extra_args = ["--quota-backend-bytes", str(QUOTA)]
        etcd.start()
    server = KrustServer(workdir, backend, etcd)
    server.extra_args = ["--etcd-compaction-interval", "1s"]
    try:
        server.start()
    except BaseException:
        server.stop()
        if etcd:
            etcd.stop()
        raise
    return Cluster(server, etcd)


@pytest.fixture(params=["etcd", "embedded"])
def compacting(request, e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix=f"history-{request.param}-", dir=e2e_tmp))
    c = start(workdir, request.param)
    yield c
    c.server.stop()
    if c.etcd is not None:
        c.etcd.stop()


def configmap(name: str, round_: int) -> dict:
    # A different value each round, so that no write is a no-op.
    blob = (f"{round_:04d}" * (VALUE // 4))[:VALUE]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"blob": blob}}


def update_rounds(c: Cluster, ns: str, rounds: range, after_round=None):
    """Replaces each ConfigMap once per round, paced; calls `after_round(round)` after each."""
    interval = 1.0 / UPDATES_PER_SECOND
    for r in rounds:
        for i in range(OBJECTS):
            started = time.monotonic()
            path = f"/api/v1/namespaces/{ns}/configmaps/cm-{i}"
            resp = c.put(path, body=configmap(f"cm-{i}", r))
            assert resp.status_code == 200, f"round {r}, cm-{i}: {resp.status_code} {resp.text}"
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        if after_round:
            after_round(r)


def etcd_status(etcd: Etcd) -> dict:
    return etcd._v3("/v3/maintenance/status", {})


def etcd_alarms(etcd: Etcd) -> list:
    return etcd._v3("/v3/maintenance/alarm", {"action": "GET"}).get("alarms", [])


def fill(c: Cluster) -> str:
    ns = f"e2e-history-{rand_suffix()}"
    c.create_namespace(ns)
    for i in range(OBJECTS):
        c.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap(f"cm-{i}", 0))
    return ns


def test_the_store_keeps_its_history_bounded_under_sustained_updates(compacting):
    c = compacting
    ns = fill(c)
    if c.etcd is not None:
        sizes = []
        update_rounds(c, ns, range(1, ROUNDS + 1),
                      lambda _r: sizes.append(int(etcd_status(c.etcd)["dbSize"])))
        assert etcd_alarms(c.etcd) == [], "etcd raised an alarm (NOSPACE: out of quota)"
        assert max(sizes) < QUOTA, sizes
        # The writes went through: each object holds its last round's value.
        last = c.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/cm-0")
        assert last["data"]["blob"].startswith(f"{ROUNDS:04d}")
        return
    # The embedded store: once compaction has freed the first rounds' history, the file stops
    # growing although as much again is written.
    db = c.server.data_dir / "db"
    files = [p for p in db.rglob("*") if p.is_file()]
    assert files, f"no store files under {db}"

    def allocated():
        return sum(p.stat().st_blocks * 512 for p in db.rglob("*") if p.is_file())

    update_rounds(c, ns, range(1, ROUNDS // 2 + 1))
    time.sleep(2.5)  # two compaction intervals: the first half's history is gone
    after_first_half = allocated()
    update_rounds(c, ns, range(ROUNDS // 2 + 1, ROUNDS + 1))
    after_second_half = allocated()
    written_per_half = OBJECTS * (ROUNDS // 2) * VALUE
    growth = after_second_half - after_first_half
    assert growth < written_per_half // 4, (
        f"the file grew by {growth} bytes while {written_per_half} were written "
        f"({after_first_half} -> {after_second_half})")
