"""`krust bench scale` at a small size: it completes, and what it checks holds (every pod
listed, the field selector and the namespace list return exactly their pods, paging returns
every pod once). No figure is timed against a bound: CI machines vary."""

import json
import subprocess

import pytest

from conftest import BACKENDS, ETCD_BIN, KRUST_BIN

NODES, PODS = 20, 600


@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_scale_small(backend, tmp_path):
    out = tmp_path / "scale.json"
    skip = "--skip-etcd" if backend == "embedded" else "--skip-embedded"
    cmd = [KRUST_BIN, "bench", "scale", "--nodes", str(NODES), "--pods", str(PODS),
           "--namespaces", "10", "--repeats", "3", "--etcd", ETCD_BIN, skip,
           "--work-dir", str(tmp_path / "work"), "--output", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    results = json.loads(out.read_text())
    assert json.loads(run.stdout) == results
    assert results["checks_passed"] is True
    r = results[backend]

    # Objects of realistic size.
    assert 3000 <= r["objects"]["node_json_bytes_avg"] <= 6000
    # A pod as stored: its JSON and its managedFields (the bench's create and status writes,
    # as upstream records them).
    assert 3000 <= r["objects"]["pod_json_bytes_avg"] <= 9000

    # Every pod listed, from one streamed list and from pages of 500, each once.
    assert r["list_all"]["items"] == PODS and r["list_all"]["all_listed"] is True
    assert r["list_all"]["bytes"] >= PODS * 3000
    assert r["paging"]["items"] == PODS and r["paging"]["each_once"] is True
    assert r["paging"]["pages"] == 2

    # The probes return exactly their pods at both points, the same pods at both.
    early, full = r["selectors"]["early"], r["selectors"]["full"]
    assert early["pods_stored"] < full["pods_stored"] == PODS
    for at in (early, full):
        assert at["node_field_selector"]["exact"] is True
        assert at["node_field_selector"]["items"] == PODS // NODES
        assert at["namespace"]["exact"] is True
    assert early["namespace"]["items"] == full["namespace"]["items"] > 0

    # The figures exist and are numbers (their values depend on the machine and the build).
    memory = r["memory"]
    assert memory["objects"] == NODES + PODS
    assert memory["json_bytes_loaded"] >= (NODES + PODS) * 3000
    assert memory["server_rss_per_object_bytes"] >= 0 and memory["ratio"] >= 0
    if backend == "etcd":
        assert "etcd_rss_per_object_bytes" in memory
    assert r["load"]["start_pods_per_second"] > 0 and r["load"]["end_pods_per_second"] > 0
    assert r["disk"]["bytes_per_pod"] > 0
    assert r["shutdown"]["sigterm_to_exit_seconds"] > 0
    assert r["restart"]["seconds_to_full_list"] >= r["restart"]["seconds_to_ready"] > 0
    assert {g["backend"] for g in results["goals"]} == {backend}


def test_bench_fanout_small(tmp_path):
    """`krust bench fanout` at a small size on the embedded store: it completes, the RBAC
    user is authorized through its RoleBinding and no further, the list holds every ConfigMap,
    and every watcher got its node's pods (the run waits for each)."""
    out = tmp_path / "fanout.json"
    cmd = [KRUST_BIN, "bench", "fanout", "--creates", "200", "--list-objects", "500",
           "--list-repeats", "3", "--watchers", "50", "--watchers-per-connection", "20",
           "--pod-creates", "500", "--skip-etcd", "--output", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    r = json.loads(out.read_text())["embedded"]
    rbac = r["rbac_creates"]
    assert rbac["user_cannot_list_nodes"] is True
    # five rounds each, taking turns
    assert [run["count"] for run in rbac["rbac_user"]] == [200] * 5
    assert [run["count"] for run in rbac["admin"]] == [200] * 5
    assert rbac["ratio"] > 0 and len(rbac["round_ratios"]) == 5
    assert r["list"]["all_listed"] is True and r["list"]["items"] == 500
    assert r["list"]["bytes"] > 500 * 200
    # the same list in protobuf holds every item, and is smaller than the JSON
    protobuf = r["list"]["protobuf"]
    assert protobuf["items"] == 500 and 0 < protobuf["bytes"] < r["list"]["bytes"]
    assert protobuf["bytes"] == protobuf["reference_bytes"]
    fan = r["watch_fan_out"]
    assert fan["events_per_watcher"] == 10
    assert fan["with_watchers"]["creates"]["count"] == 500
    assert fan["without_watchers"]["server_cpu_ms_per_write"] > 0
    assert fan["with_watchers"]["server_cpu_ms_per_write"] > 0


def test_bench_controllers_small(tmp_path):
    """`krust bench controllers` at a small size: the Deployment reaches every replica and
    rolls them all on the simulated nodes, beside the direct creates, and the controllers'
    requests and memory are reported."""
    out = tmp_path / "controllers.json"
    cmd = [KRUST_BIN, "bench", "controllers", "--nodes", "5", "--replicas", "30",
           "--work-dir", str(tmp_path / "work"), "--output", str(out)]
    (tmp_path / "work").mkdir()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert r["replicas"] == 30 and r["direct_creates"]["creates"]["count"] == 30
    for phase in ("deployment_scale_up", "rolling_update"):
        assert r[phase]["seconds"] > 0 and r[phase]["ratio_to_direct"] > 0, r
        assert r[phase]["controller_requests_per_replica"] > 0, r
    assert r["memory"]["controllers_rss_mib"] > 0
