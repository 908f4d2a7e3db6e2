"""A node for end-to-end tests of the node agent: a `krust server` that runs its agent, on its
own bridge and pod network, with the busybox test image in its airgap folder; and the helpers
that tests of pods share (manifests, waiting for a pod's state, cleaning the host after a test
run that failed half-way).

Used by test_agent.py (the agent itself) and test_stream.py (exec, attach, port-forward, cp).
Running pods needs root (namespaces, mounts, cgroups, netlink), runc and Debian's
busybox-static: modules of such tests set `pytestmark = NEEDS_AGENT` (which also marks them
`host`: scripts/test.sh runs them one at a time, beside the tests of the API)."""

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import KUBECTL_VERSIONS, Cluster, KrustServer, Kubectl, free_port, rand_suffix, wait_for
from images import busybox_archive

IMAGE = "krust.test/busybox:1"

NEEDS_AGENT = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or not os.path.exists("/usr/bin/busybox"),
        reason="the node agent needs root, runc and busybox-static",
    ),
    # Its pods share the host's cgroups, links and nf_tables with other nodes' pods.
    pytest.mark.host,
]


def _mounts_under(path: Path):
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(str(path))]


def _links(prefix: str):
    """The host's links whose names start with `prefix` (from /sys/class/net)."""
    return [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]


class Node:
    """A krust server with its agent: the node's name, bridge, pod network and service range
    (its cluster DNS on the link `<bridge>-dns`, its service proxy's nf_tables table
    `<bridge>-proxy`, its NetworkPolicy table `<bridge>-policy`)."""

    def __init__(self, workdir: Path, extra_args=(), bind_address="127.0.0.1", node_ip="127.0.0.1",
                 ingress=False, dual_stack=False):
        self.workdir = workdir
        self.name = f"e2e-node-{rand_suffix()}"
        self.node_ip = node_ip
        self.bridge = f"kt{rand_suffix(4)}"
        self.dns_link = f"{self.bridge}-dns"
        self.proxy_table = f"{self.bridge}-proxy"
        self.policy_table = f"{self.bridge}-policy"
        self.cidr_base = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        # A service range of its own, so that nodes of tests running side by side each serve
        # their cluster DNS on an address of their own (the range's tenth).
        self.service_base = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}"
        self.dns_ip = f"{self.service_base}.10"
        pod_cidr, service_cidr = f"{self.cidr_base}.0/24", f"{self.service_base}.0/24"
        node_ips = node_ip
        if dual_stack:
            # Unique local IPv6 ranges of their own (on the node's bridge only) after the IPv4
            # ones: pods get an address of each family, Services may get both.
            self.cidr6_base = f"fd6e:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}:"
            self.service6_base = f"fd6f:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::"
            pod_cidr += f",{self.cidr6_base}:/64"
            service_cidr += f",{self.service6_base}/112"
            # The node's IPv6 address: its bridge's (a local address of the host).
            self.node_ip6 = f"{self.cidr6_base}:1"
            node_ips += f",{self.node_ip6}"
        (workdir / "data" / "images").mkdir(parents=True, exist_ok=True)
        busybox_archive(str(workdir / "data" / "images" / "busybox.tar"), IMAGE)
        self.server = KrustServer(workdir, "embedded", None)
        self.server.agent = True
        self.server.bind_address = bind_address
        self.server.scheduler = True  # pods without a node are placed on this one
        self.server.ingress = ingress
        self.server.extra_args = ["--node-name", self.name, "--bridge", self.bridge,
                                  "--pod-cidr", pod_cidr, "--node-ip", node_ips,
                                  "--agent-port", str(free_port()),
                                  "--service-cidr", service_cidr,
                                  # As kind's nodes: a CI machine's disk fills with build
                                  # caches, and DiskPressure would taint the node.
                                  "--eviction-hard",
                                  "memory.available<100Mi,nodefs.available<0%,pid.available<10%",
                                  # For the same reason, no image garbage collection (its
                                  # own test turns it on): the tests' images would go.
                                  *(["--image-gc-high-threshold", "100"]
                                    if "--image-gc-high-threshold" not in extra_args else []),
                                  *extra_args]
        self.server.start()
        self.cluster = Cluster(self.server, None)
        self.agent_dir = workdir / "data" / "agent"

    def cleanup(self):
        """Stops the server and removes whatever its pods left: shims, mounts, veths, the
        bridge (also when a test failed half-way)."""
        pods = self.agent_dir / "pods"
        uids = [d.name for d in pods.iterdir()] if pods.exists() else []
        try:
            # The real path first: the agent stops and removes what it runs (the workloads
            # first, so that their controllers make no new pods meanwhile).
            k = Kubectl(KUBECTL_VERSIONS[-1], self.cluster, self.workdir)
            k.run("delete", "deployments,replicasets,statefulsets,daemonsets,jobs", "--all",
                  "--all-namespaces", "--cascade=orphan", timeout=30)
            k.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", timeout=90)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.server.stop(signal.SIGKILL)
        except Exception:  # noqa: BLE001
            pass
        # Twice: a shim the agent was starting as it died shows up a moment later.
        for _ in range(2):
            for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True,
                                       text=True).stdout.splitlines():
                if "shim" in line and str(self.agent_dir) in line:
                    pid = int(line.split()[0])
                    for p in [pid] + _children(pid):
                        try:
                            os.kill(p, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            time.sleep(0.3)
        for point in sorted(_mounts_under(self.workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for uid in uids:
            for root in Path("/sys/fs/cgroup").iterdir():
                for parent in ["kubepods", "kubepods/burstable", "kubepods/besteffort"]:
                    cgroup = root / parent / f"pod{uid}"
                    if cgroup.is_dir():
                        for d in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                            if d.is_dir():
                                d.rmdir()
                        cgroup.rmdir()
        if shutil.which("nft"):
            for table in (self.proxy_table, self.policy_table):
                for family in ("ip", "ip6"):
                    subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
        for link in _links("veth") + [self.bridge, self.dns_link]:
            if link in (self.bridge, self.dns_link) or _link_master(link) == self.bridge:
                if shutil.which("ip"):
                    subprocess.run(["ip", "link", "del", link], capture_output=True)


def _children(pid: int):
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    kids = [int(l.split()[0]) for l in out.splitlines()[1:] if int(l.split()[1]) == pid]
    return kids + [g for k in kids for g in _children(k)]


def _link_master(link: str):
    master = Path("/sys/class/net") / link / "master"
    return master.resolve().name if master.exists() else None


# ---------------------------------------------------------------------------------------------
# pods on the node


def pod_json(k, ns, name):
    return k.json("get", "pod", name, "-n", ns)


def wait_pod(k, ns, name, pred, timeout=60, what="pod state"):
    return wait_for(lambda: (lambda p: p if pred(p) else None)(pod_json(k, ns, name)), timeout,
                    interval=0.3, what=f"{what} of {ns}/{name}")


def events_of(k, ns, name) -> list[tuple[str, str, str]]:
    """(reason, message, source component) of the events about pod `name`, oldest first."""
    items = k.json("get", "events", "-n", ns, "--field-selector",
                   f"involvedObject.name={name},involvedObject.kind=Pod")["items"]
    items.sort(key=lambda e: e.get("firstTimestamp") or "")
    return [(e["reason"], e.get("message", ""), e.get("source", {}).get("component", ""))
            for e in items]


def wait_events(k, ns, name, *reasons) -> list[tuple[str, str, str]]:
    """The pod's events once every reason in `reasons` is among them."""
    def seen():
        found = events_of(k, ns, name)
        return found if set(reasons) <= {r for r, _, _ in found} else None
    return wait_for(seen, 30, interval=0.5, what=f"events {reasons} about {ns}/{name}")


def apply(k, manifest: dict):
    k("apply", "-f", "-", input=json.dumps(manifest))


def pod(name, ns, node, containers, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 2,
                     "containers": containers, **spec}}


def status_of(p, container):
    return next(s for s in p["status"].get("containerStatuses", []) if s["name"] == container)


@pytest.fixture(scope="module")
def node(e2e_tmp, request):
    """A node of one test module: a krust server with its agent, cleaned up after."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{request.module.__name__}-", dir=e2e_tmp))
    n = Node(workdir)
    yield n
    n.cleanup()


@pytest.fixture(params=KUBECTL_VERSIONS, ids=lambda v: f"kubectl{v}")
def k(request, node):
    """kubectl against the node's server, once per kubectl version."""
    return Kubectl(request.param, node.cluster, node.workdir)


@pytest.fixture
def ns(node, request):
    """A namespace of its own for one test."""
    name = f"e2e-{request.module.__name__.removeprefix('test_').replace('_', '-')}-{rand_suffix()}"
    node.cluster.create_namespace(name)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))
