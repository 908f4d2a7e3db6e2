"""What the service and DNS benchmarks share: a krust node (a `krust server` with its node
agent, service proxy and cluster DNS) run by the end-to-end tests' own `Node` class
(tests/e2e/agent_node.py: its own bridge, pod network and service range, the busybox test
image, and its `cleanup()`, which kills the server and removes shims, mounts, veths, the
bridge, the DNS link and the nf_tables tables), plus the facts every result records.

`KRUST_BIN` is read by tests/e2e/conftest.py when it is imported, so `load(krust)` sets it
first."""

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

E2E = Path(__file__).resolve().parent.parent / "tests" / "e2e"
_modules = None


def load(krust: str):
    """Imports tests/e2e's agent_node and conftest with `krust` as the binary; returns both."""
    global _modules
    if _modules is None:
        os.environ["KRUST_BIN"] = str(Path(krust).resolve())
        sys.path.insert(0, str(E2E))
        import agent_node  # noqa: E402
        import conftest  # noqa: E402
        _modules = (agent_node, conftest)
    return _modules


def start_node(krust: str, prefix: str, service_cidr: str | None = None, extra_args=(), ingress=False):
    """A `Node` on a fresh temp workdir. `service_cidr` replaces the node's own /24 service
    range (1,000 Services need more than a /24); its tenth address is then the DNS address.
    `ingress`: the server runs its Ingress controller (give it `--ingress-http-address` and
    `--ingress-https-address` in `extra_args`, or it takes the host's ports 80 and 443).
    `--disable-*` switches the e2e tests pass that the binary does not know (an older build
    than the tests: `--disable-ingress` before 0b8766b) are left out: what they turn off is
    not in that binary."""
    agent_node, conftest = load(krust)
    usage = subprocess.run([krust, "server", "--help"], capture_output=True, text=True).stdout
    workdir = Path(tempfile.mkdtemp(prefix=prefix))

    class Server(conftest.KrustServer):
        def command(self):
            cmd = [c for c in super().command()
                   if not (str(c).startswith("--disable-") and f"{c} " not in usage and f"{c}\n" not in usage)]
            if service_cidr is not None:
                i = cmd.index("--service-cidr")
                cmd[i + 1] = service_cidr
            return cmd

    # Node builds its server from the name `KrustServer` in its module: swap it for the time
    # of the constructor, which starts the server.
    original = agent_node.KrustServer
    agent_node.KrustServer = Server
    try:
        node = _construct(agent_node, workdir, extra_args, ingress)
    finally:
        agent_node.KrustServer = original
    if service_cidr is not None:
        network = service_cidr.split("/")[0].rsplit(".", 1)[0]
        node.service_base = network
        node.dns_ip = f"{network}.10"
    return node


def _construct(agent_node, workdir: Path, extra_args, ingress=False):
    """`Node(workdir, extra_args, ingress=ingress)`; when its server does not start, what it made is removed
    (the bridge, the DNS link, the tables) before the error goes on."""
    node = agent_node.Node.__new__(agent_node.Node)
    try:
        node.__init__(workdir, list(extra_args), ingress=ingress)
    except BaseException:
        # cleanup() reads these, set by the constructor only once the server answered.
        node.agent_dir = workdir / "data" / "agent"
        node.cluster = getattr(node, "cluster", None)
        try:
            node.cleanup()
        except Exception:  # noqa: BLE001 - the constructor's error is the one to see
            pass
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return node


def kubectl(node):
    """kubectl 1.33 against the node's server."""
    agent_node, conftest = _modules
    return conftest.Kubectl(conftest.KUBECTL_VERSIONS[-1], node.cluster, node.workdir)


def wait_for(pred, timeout, interval=0.1, what="condition"):
    return _modules[1].wait_for(pred, timeout, interval=interval, what=what)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def median(values):
    return statistics.median(values)


def machine(krust: str):
    """The facts a result is read with: cores, CPU, memory, kernel, the binary's version."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:"))
    version = subprocess.run([krust, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "krust_version": version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def header(krust: str):
    return {"command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
            "krust": krust,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine(krust)}


def write(result: dict, output: str | None):
    text = json.dumps(result, indent=2) + "\n"
    if output:
        Path(output).write_text(text)
    print(text, end="")


def cpu_seconds(pid):
    """User and system CPU seconds process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def elapsed_ms(start):
    return round((time.monotonic() - start) * 1000, 3)
