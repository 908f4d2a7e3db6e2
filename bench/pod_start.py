#!/usr/bin/env python3
"""Pod start latency and the node agent's memory, beside a bare `runc run` in the same run.

Starts `krust server` (its node agent included) on a temporary data dir, imports the busybox
test image (tests/e2e/images.py), then for 1, 10 and 100 pods bound to the node measures the
time from each create to the moment a watch of the API shows it Running (p50 and p99). Beside
it: a bare `runc run` of a bundle of the same image (create, start, the process exits, delete).
Memory: the server's RSS idle with no pods, and with 100 pods running the server's RSS and each
shim's PSS (from /proc/PID/smaps_rollup). Prints JSON; run as root:

    python3 bench/pod_start.py --krust target/release/krust > bench/pods.json
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from images import busybox_archive  # noqa: E402

IMAGE = "krust.test/busybox:1"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Api:
    def __init__(self, data: Path, port: int):
        import base64
        import yaml  # the e2e requirements install PyYAML
        cfg = yaml.safe_load((data / "admin.kubeconfig").read_text())
        user = cfg["users"][0]["user"]
        cluster = cfg["clusters"][0]["cluster"]
        files = {}
        for key, value in [("ca", cluster["certificate-authority-data"]),
                           ("cert", user["client-certificate-data"]), ("key", user["client-key-data"])]:
            path = data / f"bench-{key}.pem"
            path.write_bytes(base64.b64decode(value))
            files[key] = str(path)
        self.ctx = ssl.create_default_context(cafile=files["ca"])
        self.ctx.load_cert_chain(files["cert"], files["key"])
        self.base = f"https://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ctx),
                                                  urllib.request.ProxyHandler({}))

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with self.opener.open(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def shims(agent_dir: Path):
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(l.split()[0]) for l in out.splitlines() if " shim " in l and str(agent_dir) in l]


def start_pods(api, ns, node, count, prefix):
    """Creates `count` pods at once; returns each one's seconds from create to Running."""
    created, running = {}, {}
    done, watching = threading.Event(), threading.Event()
    rv = api.call("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")["metadata"]["resourceVersion"]

    def watch():
        # One watch on a kept connection: each pod's Running is seen as the API sends it,
        # not at the next poll of a list.
        host = api.base.removeprefix("https://")
        connection = http.client.HTTPSConnection(host, context=api.ctx, timeout=300)
        connection.request("GET", f"/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}")
        response = connection.getresponse()
        watching.set()
        while not done.is_set():
            line = response.readline()
            if not line:
                break
            now = time.monotonic()
            event = json.loads(line)
            p = event.get("object", {})
            name = p.get("metadata", {}).get("name", "")
            if name.startswith(prefix) and p.get("status", {}).get("phase") == "Running":
                running.setdefault(name, now)
            if len(running) >= count:
                done.set()
        connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watching.wait(60)
    threads = []
    for i in range(count):
        name = f"{prefix}{i}"

        def create(name=name):
            created[name] = time.monotonic()
            api.call("POST", f"/api/v1/namespaces/{ns}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}})

        t = threading.Thread(target=create)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    done.wait(300)
    return [running[n] - created[n] for n in created if n in running]


def runc_run(bundle_root: Path, image_layers, runs=20):
    """A bare `runc run` of the image (its layers merged into one rootfs), each run timed."""
    rootfs = bundle_root / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    for layer in image_layers:
        subprocess.run(["cp", "-a", f"{layer}/.", str(rootfs)], check=True)
    subprocess.run(["runc", "spec"], cwd=bundle_root, check=True)
    spec = json.loads((bundle_root / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    (bundle_root / "config.json").write_text(json.dumps(spec))
    times = []
    for i in range(runs):
        started = time.monotonic()
        subprocess.run(["runc", "--root", str(bundle_root / "state"), "run", "--bundle", str(bundle_root),
                        f"bench-runc-{os.getpid()}-{i}"], check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return times


def start_server(krust, work: Path, port: int, node: str, bridge: str, cidr: str,
                 oci_runtime: str = "embedded"):
    """Starts `krust server` with its node agent on a data dir under `work`, the busybox test
    image ready to import; returns the process and an API client once it is ready."""
    data = work / "data"
    (data / "images").mkdir(parents=True)
    busybox_archive(str(data / "images" / "busybox.tar"), IMAGE)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([krust, "server", "--data-dir", str(data), "--bind-address", "127.0.0.1",
                               "--port", str(port), "--node-name", node, "--node-ip", "127.0.0.1",
                               "--agent-port", str(port + 1), "--bridge", bridge,
                               "--pod-cidr", cidr, "--oci-runtime", oci_runtime],
                              stdout=log, stderr=log)
    for _ in range(600):
        if (data / "admin.kubeconfig").exists():
            try:
                api = Api(data, port)
                api.call("GET", "/api")  # JSON (`/readyz` answers text)
                return server, api
            except Exception:  # noqa: BLE001
                pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not become ready")


def stop_server(server, work: Path, bridge: str):
    """Stops what `start_server` started and removes its bridge, DNS link, nft tables and data."""
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    for link in (bridge, f"{bridge}-dns"[:15]):  # the cluster DNS link is named after the bridge
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for table in ("proxy", "policy"):  # service proxy and network policy tables, also named so
        subprocess.run(["nft", "delete", "table", "ip", f"{bridge}-{table}"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", required=True)
    parser.add_argument("--port", type=int, default=17643)
    parser.add_argument("--oci-runtime", default="embedded",
                        help="the agent's OCI runtime: embedded, or a runc-compatible binary")
    parser.add_argument("--single-rounds", type=int, default=10,
                        help="how many times one pod alone is started (one after the other)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="krust-bench-pods-"))
    data = work / "data"
    node = "bench-node"
    server, api = start_server(args.krust, work, args.port, node, "kbench0", "10.254.0.0/24",
                               args.oci_runtime)
    result = {"command": " ".join(sys.argv), "krust": args.krust, "oci_runtime": args.oci_runtime}
    try:
        while True:
            try:
                n = api.call("GET", f"/api/v1/nodes/{node}")
                if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", [])):
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        time.sleep(10)
        result["server_rss_idle_no_pods_kib"] = rss_kib(server.pid)
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
        while True:
            try:
                api.call("GET", "/api/v1/namespaces/bench/serviceaccounts/default")
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        latencies = {}
        for count in [1, 10, 100]:
            rounds = args.single_rounds if count == 1 else 1
            times = []
            for round_ in range(rounds):
                times += start_pods(api, "bench", node, count, f"p{count}-{round_}-")
                if round_ + 1 < rounds:
                    api.call("DELETE", "/api/v1/namespaces/bench/pods")
                    while api.call("GET", "/api/v1/namespaces/bench/pods")["items"]:
                        time.sleep(0.2)
            latencies[str(count)] = {"pods": count, "rounds": rounds, "running": len(times),
                                     "p50_ms": round(percentile(times, 50) * 1000, 1),
                                     "p99_ms": round(percentile(times, 99) * 1000, 1)}
            if count < 100:
                api.call("DELETE", "/api/v1/namespaces/bench/pods")
                while api.call("GET", "/api/v1/namespaces/bench/pods")["items"]:
                    time.sleep(0.2)
        result["pod_start"] = latencies
        time.sleep(5)
        pids = shims(data / "agent")
        result["with_100_pods"] = {
            "server_rss_kib": rss_kib(server.pid),
            "shims": len(pids),
            "shim_pss_kib_mean": round(statistics.mean(pss_kib(p) for p in pids), 1) if pids else None,
        }
        store = json.loads(next((data / "agent" / "images" / "images").glob("*.json")).read_text())
        layers = [data / "agent" / "images" / "layers" / l.removeprefix("sha256:") for l in store["layers"]]
        runc_times = runc_run(work / "runc-bundle", layers)
        result["bare_runc_run"] = {"runs": len(runc_times),
                                   "p50_ms": round(percentile(runc_times, 50) * 1000, 1),
                                   "p99_ms": round(percentile(runc_times, 99) * 1000, 1)}
        result["ratio_p50_pod_start_1_vs_runc_run"] = round(
            latencies["1"]["p50_ms"] / result["bare_runc_run"]["p50_ms"], 2)
        api.call("DELETE", "/api/v1/namespaces/bench/pods")
        # The objects go at once (grace 0); the agent's teardown takes a moment more.
        deadline = time.monotonic() + 120
        pods_dir = data / "agent" / "pods"
        while (api.call("GET", "/api/v1/namespaces/bench/pods")["items"] or any(pods_dir.iterdir())) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop_server(server, work, "kbench0")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
