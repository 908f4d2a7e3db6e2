"""Image garbage collection, as the kubelet's: images that no pod on the node uses are
removed when the images' filesystem is fuller than `--image-gc-high-threshold`, and those in
use stay. The node here collects at any usage (thresholds 0 and no minimum age), so the test
does not have to fill the disk.

Needs root, runc, busybox-static and docker-registry, as the other tests of the agent."""

import subprocess
import tempfile
from pathlib import Path

import pytest

from agent_node import NEEDS_AGENT, Node, apply, pod, status_of, wait_pod
from conftest import KRUST_BIN, KUBECTL_VERSIONS, Kubectl, rand_suffix, wait_for
from registry import PATH_ENV, Registry

pytestmark = NEEDS_AGENT

GC_TIMEOUT = 120  # the agent checks every 30 s


@pytest.fixture(scope="module")
def registry():
    reg = Registry().start()
    yield reg
    print(f"--- docker-registry log ({reg.host})\n{reg.log(40)}")
    reg.stop()


@pytest.fixture(scope="module")
def node(e2e_tmp, request):
    workdir = Path(tempfile.mkdtemp(prefix=f"{request.module.__name__}-", dir=e2e_tmp))
    n = Node(workdir, extra_args=["--image-gc-high-threshold", "0",
                                  "--image-gc-low-threshold", "0",
                                  "--minimum-image-ttl-duration", "0s"])
    yield n
    n.cleanup()


@pytest.fixture
def k(node):
    return Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)


@pytest.fixture
def ns(node):
    name = f"e2e-image-gc-{rand_suffix()}"
    node.cluster.create_namespace(name)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))


def stored(node) -> str:
    """`krust image ls` of the node's store."""
    out = subprocess.run([KRUST_BIN, "image", "ls", "--data-dir", str(node.agent_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def running(k, ns, node, name, image):
    apply(k, pod(name, ns, node, [{"name": "c", "image": image,
                                   "command": ["sh", "-c", "sleep 3600"]}],
                 terminationGracePeriodSeconds=1))
    wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running"
             and "running" in status_of(p, "c")["state"], timeout=90, what="a running pod")


def test_unused_images_are_removed_and_used_ones_kept(node, k, registry, ns):
    kept, collected = (f"{registry.host}/e2e/gc-{which}-{rand_suffix()}:1"
                       for which in ("kept", "collected"))
    for image in (kept, collected):
        registry.push_image(image.split("/", 1)[1].rsplit(":", 1)[0], "1",
                            env=[f"WHICH={image}", PATH_ENV])
    running(k, ns, node, "keeps", kept)
    running(k, ns, node, "leaves", collected)
    k("delete", "pod", "leaves", "-n", ns, "--wait=true")
    # The image no pod uses goes; the one a running pod uses stays.
    wait_for(lambda: collected not in stored(node), GC_TIMEOUT, interval=2,
             what=f"{collected} removed")
    assert kept in stored(node)
    # The node's status stops listing it too.
    wait_for(lambda: not any(collected in i["names"] for i in
                             k.json("get", "node", node.name)["status"].get("images", [])),
             60, interval=2, what="the removed image gone from the node's status")
    # Once its pod is gone, the other image goes as well.
    k("delete", "pod", "keeps", "-n", ns, "--wait=true")
    wait_for(lambda: kept not in stored(node), GC_TIMEOUT, interval=2, what=f"{kept} removed")
    # And is pulled again when a pod wants it.
    running(k, ns, node, "again", kept)
