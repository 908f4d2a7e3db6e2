#!/usr/bin/env python3
"""`kubectl exec` latency and `kubectl port-forward` throughput, each beside its reference in
the same run.

Starts `krust server` (its node agent included), runs one busybox pod that serves a 100 MB
file with httpd, then measures:
- `kubectl exec POD -- true` (kubectl 1.27, SPDY; kubectl 1.33, WebSocket) and kube-rs's
  `AttachedProcess` (`krust bench exec`), each run timed, beside `runc exec CONTAINER true`
  run directly on the host against the same container;
- downloading the 100 MB file through `kubectl port-forward` (1.27: SPDY; 1.33: SPDY tunnelled
  through a WebSocket), beside the same download straight from the pod's address, with the
  same client (Python's urllib), with the CPU seconds kubectl and the server spent on it.
Prints JSON; run as root:

    python3 bench/stream.py --krust target/release/krust > bench/stream.json
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pod_start import IMAGE, percentile, start_server, stop_server

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.{}"
SIZE_MB = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(argv, runs, env):
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True, env=env, timeout=60)
        times.append(time.monotonic() - started)
    return times


def summary(times):
    return {"runs": len(times), "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1)}


def cpu_seconds(pid):
    """User and system CPU seconds process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def download(url):
    """Seconds to read `url` whole, and its size."""
    started = time.monotonic()
    size = 0
    with urllib.request.urlopen(url, timeout=300) as r:
        while chunk := r.read(1 << 20):
            size += len(chunk)
    return time.monotonic() - started, size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", required=True)
    parser.add_argument("--port", type=int, default=17743)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="krust-bench-stream-"))
    data = work / "data"
    node = "bench-node"
    server, api = start_server(args.krust, work, args.port, node, "kbench1", "10.253.0.0/24")
    env = dict(os.environ, KUBECONFIG=str(data / "admin.kubeconfig"))
    result = {"command": " ".join(sys.argv), "krust": args.krust}
    try:
        while True:
            try:
                api.call("POST", "/api/v1/namespaces/default/pods", {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                    "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
                        "name": "c", "image": IMAGE, "command": ["sh", "-c",
                            f"mkdir /www && dd if=/dev/urandom of=/www/big.tmp bs=1M count={SIZE_MB} && "
                            "mv /www/big.tmp /www/big && exec httpd -f -p 8080 -h /www"]}]}})
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.2)
        while True:
            pod = api.call("GET", "/api/v1/namespaces/default/pods/web")
            if pod.get("status", {}).get("phase") == "Running":
                try:
                    if download(f"http://{pod['status']['podIP']}:8080/big")[1] == SIZE_MB << 20:
                        break
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(0.5)
        uid, pod_ip = pod["metadata"]["uid"], pod["status"]["podIP"]
        attempts = data / "agent" / "pods" / uid / "containers" / "c"
        attempt = max(int(a.name) for a in attempts.iterdir())
        container_id = f"{uid[:13]}-c-{attempt}"

        runc = ["runc", "--root", str(data / "agent" / "runc"), "exec", container_id, "true"]
        result["runc_exec_true"] = summary(timed(runc, args.runs, env))
        # kube-rs's AttachedProcess (WebSocket), timed inside its own process.
        kube_rs = json.loads(subprocess.run(
            [args.krust, "bench", "exec", "--kubeconfig", str(data / "admin.kubeconfig"), "--pod", "web",
             "--runs", str(args.runs), "--", "true"], check=True, capture_output=True, env=env).stdout)
        result["kube_rs_exec_true"] = {k: kube_rs[k] for k in ["runs", "p50_ms", "p99_ms"]}
        result["ratio_p50_kube_rs_exec_vs_runc_exec"] = round(
            kube_rs["p50_ms"] / result["runc_exec_true"]["p50_ms"], 2)
        for version in ["27", "33"]:
            # kubectl's own floor: one plain request from a new kubectl process.
            get = [KUBECTL.format(version), "get", "pod", "web", "-o", "name"]
            result[f"kubectl_1.{version}_get_pod"] = summary(timed(get, args.runs, env))
            kubectl = [KUBECTL.format(version), "exec", "web", "--", "true"]
            result[f"kubectl_1.{version}_exec_true"] = summary(timed(kubectl, args.runs, env))
            result[f"ratio_p50_kubectl_1.{version}_exec_vs_runc_exec"] = round(
                result[f"kubectl_1.{version}_exec_true"]["p50_ms"] / result["runc_exec_true"]["p50_ms"], 2)

        seconds, size = min(download(f"http://{pod_ip}:8080/big") for _ in range(3))
        result["direct_download_mb_per_s"] = round(size / seconds / 1e6, 1)
        for version in ["27", "33"]:
            local = free_port()
            forward = subprocess.Popen([KUBECTL.format(version), "port-forward", "pod/web", f"{local}:8080"],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            try:
                assert b"Forwarding from" in forward.stdout.readline()
                runs = []
                for _ in range(3):
                    before = (cpu_seconds(forward.pid), cpu_seconds(server.pid))
                    seconds, size = download(f"http://127.0.0.1:{local}/big")
                    after = (cpu_seconds(forward.pid), cpu_seconds(server.pid))
                    runs.append((seconds, size, after[0] - before[0], after[1] - before[1]))
                seconds, size, kubectl_cpu, server_cpu = min(runs)
            finally:
                forward.send_signal(signal.SIGTERM)
                forward.wait(10)
            rate = round(size / seconds / 1e6, 1)
            result[f"kubectl_1.{version}_port_forward_mb_per_s"] = rate
            # Where the time goes: kubectl's own CPU, and the server's (API server relay and
            # agent), per transfer of the file.
            result[f"kubectl_1.{version}_port_forward_cpu_seconds"] = {
                "kubectl": round(kubectl_cpu, 2), "krust_server": round(server_cpu, 2),
                "wall": round(seconds, 2)}
            result[f"ratio_kubectl_1.{version}_port_forward_vs_direct"] = round(
                rate / result["direct_download_mb_per_s"], 2)
        api.call("DELETE", "/api/v1/namespaces/default/pods/web")
        deadline = time.monotonic() + 60
        while any((data / "agent" / "pods").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop_server(server, work, "kbench1")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
