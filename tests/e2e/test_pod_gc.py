"""The pod garbage collector (in `krust-controllers`): finished pods beyond
`--terminated-pod-gc-threshold` go oldest first, and the pods of a node that no longer exists
go once its absence is confirmed (after upstream's 40 s quarantine), marked with a
`DisruptionTarget` condition first.

The test plays the node agent: it binds pods and reports them finished or running.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from conftest import _start_cluster, _stop_cluster, rand_suffix, wait_for


@pytest.fixture(scope="module")
def gc_cluster(e2e_tmp):
    workdir = Path(tempfile.mkdtemp(prefix="pod-gc-", dir=e2e_tmp))
    c = _start_cluster(workdir, "embedded", ["--terminated-pod-gc-threshold", "2"])
    yield c
    _stop_cluster(c)


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "registry.local/pause:1"}]}}


def bind(c, ns, name, node):
    c.ok("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


def names(c, ns):
    return sorted(p["metadata"]["name"]
                  for p in c.ok("GET", f"/api/v1/namespaces/{ns}/pods")["items"])


def test_finished_pods_over_the_threshold_and_orphans_go(gc_cluster):
    c = gc_cluster
    ns = f"pod-gc-{rand_suffix()}"
    c.create_namespace(ns)
    c.ok("POST", "/api/v1/nodes", body={"apiVersion": "v1", "kind": "Node",
                                        "metadata": {"name": "gc-node"}})
    for i in range(5):
        name = f"done-{i}"
        c.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod(name))
        bind(c, ns, name, "gc-node")
        c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status",
                {"status": {"phase": "Succeeded"}})
        time.sleep(1.1)  # creation times one second apart: the oldest is certain
    c.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("running"))
    bind(c, ns, "running", "gc-node")
    c.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("orphan"))
    bind(c, ns, "orphan", "ghost-node")
    watch = c.watch(f"/api/v1/namespaces/{ns}/pods",
                    params={"fieldSelector": "metadata.name=orphan"})

    wait_for(lambda: names(c, ns) == ["done-3", "done-4", "orphan", "running"], 60, 0.5,
             what="the three oldest finished pods collected")
    wait_for(lambda: names(c, ns) == ["done-3", "done-4", "running"], 120, 1,
             what="the pod of a node that does not exist collected")
    marked = watch.until(lambda ev: any(
        x["type"] == "DisruptionTarget" and x.get("reason") == "DeletionByPodGC"
        for x in ev["object"].get("status", {}).get("conditions", [])), timeout=10)
    assert marked["object"]["status"]["phase"] == "Failed"
    watch.close()
    c.delete_namespace(ns)
