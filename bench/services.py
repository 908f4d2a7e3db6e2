#!/usr/bin/env python3
"""HTTP through a ClusterIP Service against straight to the pod's address, with the same load
tool (wrk) in the same run.

Starts a krust node (tests/e2e/agent_node.py's `Node`: `krust server` with its node agent and
service proxy, on a bridge and pod network of its own), runs one busybox pod serving a small
file with `busybox httpd` (one request per connection: it closes each connection after its
answer, so every request is a new connection, a new conntrack entry and, through the Service,
a new DNAT) behind a ClusterIP Service, and one idle client pod. Then, alternating the two
targets in each round (the order flipped every round), `wrk` runs against
- `http://POD_IP:8080/` (direct, the reference) and
- `http://CLUSTER_IP:80/` (through the proxy's nf_tables DNAT to the same pod's port 8081,
  where a second httpd serves the same file: with one port, a client reusing its ports
  reaches the pod on the same address and port either way, and the pod's TIME_WAIT sockets
  of one kind of run refused the other's SYNs (PAWS: the client's TCP timestamps differ per
  destination address), so that each run was slower than the one before, whatever its kind),
from two places: the host (the proxy's `output` hook) and the client pod's network namespace
(`nsenter --net` into the pod's pinned namespace with the host's wrk: the `prerouting` hook,
the path pod-to-Service traffic takes). Reports requests/s and p99 latency per run, their
medians, and the ratios through the Service over direct (goal: requests/s >= 0.9x).

Every request goes to an address on this host's pod bridge; a cluster IP is loaded only after
the proxy's map holds it and one request through it answered. Each run opens tens of
thousands of connections, and wrk closes each first, so its side keeps them in TIME_WAIT for
60 s: without reuse the ephemeral ports run out within a few runs and every connect() scans
for a free one (requests/s fell from 5,000 to 300 over five runs). So `tcp_tw_reuse` is 1 in
both client namespaces for the run (on the host: restored after), and the conntrack table's
limit is raised (entries linger 120 s in TIME_WAIT; restored after). Run as root:

    python3 bench/services.py --krust /tmp/release-krust2 --output bench/services.json
"""

import argparse
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import krust_node as kn

CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
CONNTRACK_COUNT = Path("/proc/sys/net/netfilter/nf_conntrack_count")
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")


def time_wait(dst, netns=None):
    """Sockets in TIME_WAIT towards `dst` in the client's namespace."""
    argv = ["ss", "-Htan", "state", "time-wait", "dst", dst]
    if netns:
        argv = ["nsenter", f"--net={netns}"] + argv
    return len(subprocess.run(argv, capture_output=True, text=True).stdout.splitlines())


def wrk(url, seconds, threads, connections, netns=None):
    """One wrk run; returns requests/s, latency percentiles (ms) and errors."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if netns:
        argv = ["nsenter", f"--net={netns}"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return round(float(m.group(1)) * unit[m.group(2)], 3)

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50_ms": latency(50), "p90_ms": latency(90), "p99_ms": latency(99),
            "socket_errors": sum(map(int, errors.groups())) if errors else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def tcp_ext(netns=None):
    """The TcpExt counters of a network namespace (/proc/net/netstat, read from inside it)."""
    argv = ["cat", "/proc/net/netstat"]
    if netns:
        argv = ["nsenter", f"--net={netns}"] + argv
    lines = [l.split() for l in subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
             if l.startswith("TcpExt:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def get(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read().decode().strip()


def in_service_map(node, ip, port):
    out = subprocess.run(["nft", "-j", "list", "map", "ip", node.proxy_table, "service-ips"],
                         capture_output=True, text=True).stdout
    return f'"{ip}"' in out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", default="/tmp/release-krust2")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each target per client place")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--output")
    args = parser.parse_args()
    result = kn.header(args.krust)
    result["workload"] = {
        "server": "busybox httpd -f (one pod, two processes: port 8080 for direct requests, 8081 "
                  "behind the Service; each closes every connection after its answer)",
        "file_bytes": 6, "tool": "wrk " + subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        .stdout.split()[1], "threads": args.threads, "connections": args.connections,
        "seconds_per_run": args.seconds, "rounds": args.rounds}
    conntrack_max = int(CONNTRACK_MAX.read_text())
    tw_reuse = TW_REUSE.read_text().strip()
    node = kn.start_node(args.krust, "krust-bench-services-")
    agent_node, _ = kn.load(args.krust)
    try:
        CONNTRACK_MAX.write_text(str(max(conntrack_max, 2_000_000)))
        TW_REUSE.write_text("1")
        k = kn.kubectl(node)
        ns = "bench"
        node.cluster.create_namespace(ns)
        web = agent_node.pod("web", ns, node, [{
            "name": "httpd", "image": agent_node.IMAGE, "ports": [{"containerPort": 8080}],
            "command": ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && "
                        "httpd -f -p 8081 -h /www & exec httpd -f -p 8080 -h /www"]}])
        web["metadata"]["labels"] = {"app": "web"}
        agent_node.apply(k, web)
        agent_node.apply(k, agent_node.pod("client", ns, node, [{
            "name": "c", "image": agent_node.IMAGE, "command": ["sleep", "3600"]}]))
        agent_node.apply(k, {"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "web", "namespace": ns},
                             "spec": {"selector": {"app": "web"},
                                      "ports": [{"port": 80, "targetPort": 8081}]}})
        pods = {}
        for name in ("web", "client"):
            pods[name] = agent_node.wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running"
                                             and p["status"].get("podIP"), timeout=120)
        pod_ip = pods["web"]["status"]["podIP"]
        cluster_ip = k.json("get", "service", "web", "-n", ns)["spec"]["clusterIP"]
        client_netns = str(node.agent_dir / "pods" / pods["client"]["metadata"]["uid"] / "ns" / "net")
        server_netns = str(node.agent_dir / "pods" / pods["web"]["metadata"]["uid"] / "ns" / "net")
        subprocess.run(["nsenter", f"--net={client_netns}", "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], check=True)
        direct, service = f"http://{pod_ip}:8080/", f"http://{cluster_ip}:80/"
        kn.wait_for(lambda: get(direct) == "hello", 30, what="the pod answering")
        # Only once the proxy programmed the cluster IP: else the host would route it away.
        kn.wait_for(lambda: in_service_map(node, cluster_ip, 80), 30, what="the cluster IP in the proxy's map")
        kn.wait_for(lambda: get(service) == "hello", 30, what="an answer through the cluster IP")
        result["addresses"] = {"pod": pod_ip, "cluster_ip": cluster_ip, "bridge": node.bridge}
        # Warm up both paths (ARP, the pod's page cache) once from each place.
        for netns in (None, client_netns):
            for url in (direct, service):
                wrk(url, 1, args.threads, args.connections, netns)

        places = {}
        for place, netns in (("from_host", None), ("from_pod", client_netns)):
            runs = {"direct": [], "service": []}
            for r in range(args.rounds):
                order = ("direct", "service") if r % 2 == 0 else ("service", "direct")
                for target in order:
                    client_before, server_before = tcp_ext(netns), tcp_ext(server_netns)
                    run = wrk(direct if target == "direct" else service, args.seconds,
                              args.threads, args.connections, netns)
                    client_after, server_after = tcp_ext(netns), tcp_ext(server_netns)
                    # Connection set-up stalls wrk's latencies do not show (it times from the
                    # request): SYNs sent again after a second, SYNs the pod's full accept
                    # queue dropped, SYNs refused by the pod's TIME_WAIT sockets.
                    run["client_syn_retransmits"] = client_after["TCPSynRetrans"] - client_before["TCPSynRetrans"]
                    run["server_listen_drops"] = server_after["ListenDrops"] - server_before["ListenDrops"]
                    run["server_paws_timewait"] = server_after["PAWSTimewait"] - server_before["PAWSTimewait"]
                    run["conntrack_entries_after"] = int(CONNTRACK_COUNT.read_text())
                    run["client_time_wait_after"] = time_wait(pod_ip if target == "direct" else cluster_ip, netns)
                    runs[target].append(run)
            summary = {}
            for target, rs in runs.items():
                summary[target] = {
                    "requests_per_s_median": round(kn.median([x["requests_per_s"] for x in rs]), 1),
                    "p99_ms_median": round(kn.median([x["p99_ms"] for x in rs]), 3),
                    "p50_ms_median": round(kn.median([x["p50_ms"] for x in rs]), 3),
                    "errors": sum(x["socket_errors"] + x["non_2xx"] for x in rs),
                    "client_syn_retransmits": sum(x["client_syn_retransmits"] for x in rs),
                    "server_listen_drops": sum(x["server_listen_drops"] for x in rs),
                    "server_paws_timewait": sum(x["server_paws_timewait"] for x in rs),
                    "runs": rs}
            summary["ratio_requests_per_s_service_over_direct"] = round(
                summary["service"]["requests_per_s_median"] / summary["direct"]["requests_per_s_median"], 3)
            summary["ratio_p99_service_over_direct"] = round(
                summary["service"]["p99_ms_median"] / summary["direct"]["p99_ms_median"], 3)
            places[place] = summary
        result["results"] = places
        result["goals"] = [
            {"figure": f"requests/s through the Service over direct, {place}",
             "goal": ">= 0.9", "value": places[place]["ratio_requests_per_s_service_over_direct"],
             "met": places[place]["ratio_requests_per_s_service_over_direct"] >= 0.9}
            for place in places]
        # How many conntrack entries the host had at the end (the limit was raised).
        result["conntrack"] = {"limit_before_run": conntrack_max, "limit_during_run": int(CONNTRACK_MAX.read_text()),
                               "entries_at_end": int(CONNTRACK_COUNT.read_text())}
        result["client_tcp_tw_reuse"] = {"before_run": int(tw_reuse), "during_run": 1}
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        CONNTRACK_MAX.write_text(str(conntrack_max))
        TW_REUSE.write_text(tw_reuse)
        node.cleanup()
        shutil.rmtree(node.workdir, ignore_errors=True)
    kn.write(result, args.output)


if __name__ == "__main__":
    main()
