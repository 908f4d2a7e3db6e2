#!/usr/bin/env python3
"""The controllers' memory with pods cached: a `krust server` without controllers, N pods
shaped like a Deployment's running pods (created, then a kubelet-like status patch, so each
carries two managedFields entries), then `krust controllers` started once per binary given
(taking turns, `--rounds` times), its RSS and anonymous RSS read once its caches are filled.

    python3 bench/controllers_memory.py --krust target/release/krust --pods 5000 \
        [--compare OTHER_KRUST] [--rounds 2] [--output bench/controllers-memory.json]

Needs the Python `kubernetes` client (tests/e2e/requirements.txt). Traffic stays on loopback.
"""

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

NS = "load"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod(i):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{i:06d}", "labels": {"app": "web", "pod-template-hash": "5d8f7c9b6"}},
            "spec": {"nodeName": f"node-{i % 50:03d}",
                     "containers": [{"name": "web", "image": "registry.example/web:1.2.3",
                                     "ports": [{"containerPort": 8080, "name": "http"}],
                                     "env": [{"name": f"VAR_{k}", "value": f"value-{k}"} for k in range(6)],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                                   "limits": {"memory": "256Mi"}},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}


STATUS = {"status": {
    "phase": "Running", "podIP": "10.42.0.5", "hostIP": "192.0.2.1",
    "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-12-07T00:00:01Z"}
                   for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
    "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "started": True,
                           "image": "registry.example/web:1.2.3",
                           "imageID": "registry.example/web@sha256:" + "a" * 64,
                           "containerID": "containerd://" + "b" * 64,
                           "state": {"running": {"startedAt": "2026-12-07T00:00:01Z"}}}]}}


def load(kubeconfig, count):
    config.load_kube_config(str(kubeconfig))
    api = client.CoreV1Api()
    api.create_namespace({"metadata": {"name": NS}})
    # No controllers run yet: the namespace's service account is made here.
    api.create_namespaced_service_account(NS, {"metadata": {"name": "default"}})

    def one(i):
        api.create_namespaced_pod(NS, pod(i))
        api.patch_namespaced_pod_status(f"web-{i:06d}", NS, STATUS)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    sample = api.read_namespaced_pod("web-000000", NS)
    return len(json.dumps(api.api_client.sanitize_for_serialization(sample)))


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(krust, kubeconfig, settle):
    """Starts the controllers, waits `settle` seconds, reads their memory and CPU, stops them."""
    proc = subprocess.Popen([krust, "controllers", "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        ticks = sum(int(x) for x in Path(f"/proc/{proc.pid}/stat").read_text().split(")")[1].split()[11:13])
        return {"rss_mib": status_kib(proc.pid, "VmRSS") / 1024,
                "anon_mib": status_kib(proc.pid, "RssAnon") / 1024,
                "cpu_seconds": ticks / os.sysconf("SC_CLK_TCK")}
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--krust", required=True, help="the krust binary (server and controllers)")
    parser.add_argument("--compare", help="another krust binary whose controllers are measured too")
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds before reading")
    parser.add_argument("--output")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="controllers-memory-"))
    port = free_port()
    server = subprocess.Popen(
        [args.krust, "server", "--data-dir", str(work / "data"), "--bind-address", "127.0.0.1",
         "--port", str(port), "--disable-controller-manager", "--disable-scheduler",
         "--disable-agent", "--disable-ingress"],
        stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    try:
        admin = work / "data" / "admin.kubeconfig"
        deadline = time.time() + 60
        while not admin.exists():
            if time.time() > deadline or server.poll() is not None:
                sys.exit("krust server did not start; see " + str(work / "server.log"))
            time.sleep(0.2)
        time.sleep(1)
        pod_bytes = load(admin, args.pods)
        controllers = work / "data" / "controller-manager.kubeconfig"
        binaries = {"krust": args.krust, **({"compare": args.compare} if args.compare else {})}
        runs = {name: [] for name in binaries}
        for _ in range(args.rounds):
            for name, binary in binaries.items():
                runs[name].append(measure(binary, controllers, args.settle))
        result = {"command": " ".join(sys.argv), "pods": args.pods,
                  "pod_json_bytes": pod_bytes, "binaries": binaries, "runs": runs}
        text = json.dumps(result, indent=2)
        print(text)
        if args.output:
            Path(args.output).write_text(text + "\n")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
