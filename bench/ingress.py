#!/usr/bin/env python3
"""The built-in Ingress proxy against Debian's nginx set up as a plain reverse proxy to the
same backend pod, with the same load tool (wrk) in the same run.

Starts a krust node (tests/e2e/agent_node.py's `Node`: `krust server` with its node agent,
service proxy and Ingress controller, on a bridge and pod network of its own; the Ingress
listeners on loopback ports of their own), runs one busybox pod serving a small file with
`busybox httpd` twice (port 8080 behind a Service and an Ingress for krust, port 8081 for
nginx: with one port, the pod's TIME_WAIT sockets of one proxy's connections would stand in
the way of the other's), and nginx from Debian with a plain reverse-proxy configuration
(`proxy_pass` to the pod's address, the same forwarded headers krust sets, no access log, a
worker per core). busybox httpd closes every connection after its answer, so both proxies
open a new connection to the pod per request; wrk keeps its connections to the proxies
(keep-alive), as browsers and load balancers in front of an ingress do.

Then, alternating the two proxies in each round (the order flipped every round), `wrk` runs
against each over HTTP and over HTTPS (an ECDSA P-256 certificate for both; krust's from a
`kubernetes.io/tls` Secret chosen by SNI, nginx's from the same files), and records requests/s,
latency percentiles, errors and the CPU time each proxy used (krust: the whole server process,
which also runs the API server and agent, idle meanwhile; nginx: its master and workers).
Reports the medians and the ratios krust over nginx (goals: requests/s >= 1x, p99 <= 1x).

All traffic goes to 127.0.0.1 and the node's pod bridge. `tcp_tw_reuse` is 1 on the host for
the run and the conntrack table's limit raised (both restored after). Run as root:

    python3 bench/ingress.py --krust /tmp/ingress-krust-release --output bench/ingress.json
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

E2E = Path(__file__).resolve().parent.parent / "tests" / "e2e"
CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
HOST = "bench.test"

NGINX_CONF = """
user root;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl http2;
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;
        location / {{
            proxy_pass http://{backend};
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def load(krust: str):
    """tests/e2e's agent_node and conftest, with `krust` as the binary (read at import)."""
    os.environ["KRUST_BIN"] = str(Path(krust).resolve())
    sys.path.insert(0, str(E2E))
    import agent_node  # noqa: E402
    import conftest  # noqa: E402
    return agent_node, conftest


def machine(krust: str):
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "")
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:"))
    version = subprocess.run([krust, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "krust_version": version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def cpu_seconds(pids):
    """User and system CPU seconds the processes `pids` have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url, seconds, threads, connections):
    """One wrk run with `Host: bench.test`; requests/s, latency percentiles (ms), errors."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}", url]
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


def fetch(url, host=HOST):
    """The body of a GET with `Host: host` (certificates not checked)."""
    import ssl
    request = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(request, timeout=3, context=ssl._create_unverified_context()) as r:
        return r.read().decode().strip()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(agent_node, workdir, extra_args):
    """`Node(workdir, extra_args, ingress=True)`; when its server does not start, what it made
    (bridge, links, tables) is removed before the error goes on."""
    node = agent_node.Node.__new__(agent_node.Node)
    try:
        node.__init__(workdir, extra_args, ingress=True)
    except BaseException:
        node.agent_dir = workdir / "data" / "agent"
        try:
            node.cleanup()
        except Exception:  # noqa: BLE001 - the constructor's error is the one to see
            pass
        raise
    return node


def nginx_pids(master):
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    return [master] + [int(l.split()[0]) for l in out.splitlines()[1:] if int(l.split()[1]) == master]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", default="/var/cache/krust/target/release/krust")
    parser.add_argument("--build", default=None,
                        help="how the binary was built, recorded with the results (release or debug)")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each proxy per scheme")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--output")
    args = parser.parse_args()
    build = args.build or ("release" if "/release/" in args.krust else "unknown (pass --build)")
    result = {"command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), "krust": args.krust,
              "krust_build": build,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine(args.krust)}
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
    result["workload"] = {
        "backend": "busybox httpd -f (one pod, two processes: port 8080 behind the Service and Ingress, "
                   "8081 for nginx; each closes every connection after its answer)",
        "file_bytes": 6, "tool": f"wrk {wrk_version}", "nginx": nginx_version,
        "threads": args.threads, "connections": args.connections, "seconds_per_run": args.seconds,
        "rounds": args.rounds, "client_keep_alive": True}

    agent_node, conftest = load(args.krust)
    conntrack_max = int(CONNTRACK_MAX.read_text())
    tw_reuse = TW_REUSE.read_text().strip()
    workdir = Path(tempfile.mkdtemp(prefix="krust-bench-ingress-"))
    nginx_dir = workdir / "nginx"
    ports = {"krust_http": free_port(), "krust_https": free_port(),
             "nginx_http": free_port(), "nginx_https": free_port()}
    node = nginx = None
    try:
        node = start_node(agent_node, workdir, ["--ingress-http-address", f"127.0.0.1:{ports['krust_http']}",
                                                "--ingress-https-address", f"127.0.0.1:{ports['krust_https']}"])
        CONNTRACK_MAX.write_text(str(max(conntrack_max, 2_000_000)))
        TW_REUSE.write_text("1")
        k = conftest.Kubectl(conftest.KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
        ns = "bench"
        node.cluster.create_namespace(ns)
        web = agent_node.pod("web", ns, node, [{
            "name": "httpd", "image": agent_node.IMAGE, "ports": [{"name": "http", "containerPort": 8080}],
            "command": ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && "
                        "httpd -f -p 8081 -h /www & exec httpd -f -p 8080 -h /www"]}])
        web["metadata"]["labels"] = {"app": "web"}
        agent_node.apply(k, web)
        agent_node.apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        nginx_dir.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(nginx_dir / "tls.key"), "-out", str(nginx_dir / "tls.crt"),
                        "-days", "2", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
                       check=True, capture_output=True)
        k("create", "secret", "tls", "bench-cert", "-n", ns, f"--cert={nginx_dir / 'tls.crt'}",
          f"--key={nginx_dir / 'tls.key'}")
        agent_node.apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                             "metadata": {"name": "web", "namespace": ns},
                             "spec": {"tls": [{"hosts": [HOST], "secretName": "bench-cert"}],
                                      "rules": [{"host": HOST, "http": {"paths": [
                                          {"path": "/", "pathType": "Prefix", "backend": {
                                              "service": {"name": "web", "port": {"number": 80}}}}]}}]}})
        pod = agent_node.wait_pod(k, ns, "web", lambda p: p["status"].get("phase") == "Running"
                                  and p["status"].get("podIP"), timeout=120)
        pod_ip = pod["status"]["podIP"]
        (nginx_dir / "nginx.conf").write_text(NGINX_CONF.format(
            dir=nginx_dir, http_port=ports["nginx_http"], https_port=ports["nginx_https"],
            backend=f"{pod_ip}:8081"))
        nginx = subprocess.Popen(["nginx", "-c", str(nginx_dir / "nginx.conf"), "-p", str(nginx_dir),
                                  "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        urls = {
            ("krust", "http"): f"http://127.0.0.1:{ports['krust_http']}/",
            ("krust", "https"): f"https://127.0.0.1:{ports['krust_https']}/",
            ("nginx", "http"): f"http://127.0.0.1:{ports['nginx_http']}/",
            ("nginx", "https"): f"https://127.0.0.1:{ports['nginx_https']}/",
        }

        def answering(url):
            try:
                return fetch(url) == "hello"
            except Exception:  # noqa: BLE001 - not yet
                return False

        for url in urls.values():
            conftest.wait_for(lambda: answering(url), 90, interval=0.3, what=f"{url} answering")
        pids = {"krust": [node.server.proc.pid], "nginx": nginx_pids(nginx.pid)}
        result["addresses"] = {"pod": pod_ip, "bridge": node.bridge, "ports": ports}
        # Warm up each path once (ARP, the pod's page cache, the proxies' pools).
        for url in urls.values():
            wrk(url, 1, args.threads, args.connections)

        results = {}
        for scheme in ("http", "https"):
            runs = {"krust": [], "nginx": []}
            for r in range(args.rounds):
                order = ("krust", "nginx") if r % 2 == 0 else ("nginx", "krust")
                for proxy in order:
                    before = cpu_seconds(pids[proxy])
                    run = wrk(urls[(proxy, scheme)], args.seconds, args.threads, args.connections)
                    used = cpu_seconds(pids[proxy]) - before
                    run["proxy_cpu_seconds"] = round(used, 2)
                    run["proxy_cpu_us_per_request"] = round(used * 1e6 / max(run["requests"], 1), 1)
                    runs[proxy].append(run)
            summary = {}
            for proxy, rs in runs.items():
                summary[proxy] = {
                    "requests_per_s_median": round(statistics.median(x["requests_per_s"] for x in rs), 1),
                    "p50_ms_median": round(statistics.median(x["p50_ms"] for x in rs), 3),
                    "p99_ms_median": round(statistics.median(x["p99_ms"] for x in rs), 3),
                    "proxy_cpu_us_per_request_median": round(
                        statistics.median(x["proxy_cpu_us_per_request"] for x in rs), 1),
                    "errors": sum(x["socket_errors"] + x["non_2xx"] for x in rs),
                    "runs": rs}
            summary["ratio_requests_per_s_krust_over_nginx"] = round(
                summary["krust"]["requests_per_s_median"] / summary["nginx"]["requests_per_s_median"], 3)
            summary["ratio_p99_krust_over_nginx"] = round(
                summary["krust"]["p99_ms_median"] / summary["nginx"]["p99_ms_median"], 3)
            results[scheme] = summary
        result["results"] = results
        result["goals"] = []
        for scheme in results:
            rps = results[scheme]["ratio_requests_per_s_krust_over_nginx"]
            p99 = results[scheme]["ratio_p99_krust_over_nginx"]
            result["goals"] += [
                {"figure": f"requests/s krust over nginx, {scheme}", "goal": ">= 1", "value": rps, "met": rps >= 1},
                {"figure": f"p99 krust over nginx, {scheme}", "goal": "<= 1", "value": p99, "met": p99 <= 1}]
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        CONNTRACK_MAX.write_text(str(conntrack_max))
        TW_REUSE.write_text(tw_reuse)
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        if node is not None:
            node.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
