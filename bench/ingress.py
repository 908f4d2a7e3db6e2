#!/usr/bin/env python3
"""krust's built-in Ingress proxy against Debian's nginx as a plain reverse proxy to the same
backend pod, with the same load tool (wrk) in the same run.

Starts a krust node (tests/e2e/agent_node.py's `Node` with its Ingress controller on two
loopback ports of its own: `krust server` with its node agent, service proxy and ingress, on a
bridge and pod network of its own) and one busybox pod, a Deployment's, behind a Service with
two ports, and an Ingress with one Host rule per port:
- `close.bench.test` -> port `close` -> the pod's `busybox httpd -f` on 8080, which closes
  every connection after its answer (a fork per connection): each proxied request is a new
  backend connection, for both proxies. This is the brief's backend.
- `keepalive.bench.test` -> port `keepalive` -> the host's nginx binary run in the pod's
  network namespace (`nsenter --net`) on 8090, answering `return 200` from memory and keeping
  connections open: both proxies reuse their backend connections, so what is left is the
  proxies' own work per request.
Then nginx (Debian's, as a plain reverse proxy: the same two Host names in two server blocks,
`upstream { server POD_IP:PORT; keepalive 32; }`, `proxy_http_version 1.1`, `Connection ""`,
the same X-Forwarded-* and X-Real-IP headers the ingress adds, no access log as the ingress
keeps none, `worker_processes auto`: 2 here, as tokio's worker threads) listens on another
loopback port. wrk (keep-alive connections, `-H 'Host: NAME'`) runs from the host against, in
each round (the order reversed every other round):
- `ingress`: http://127.0.0.1:INGRESS_PORT/,
- `nginx`: http://127.0.0.1:NGINX_PORT/,
- `direct`: straight to the backend (http://POD_IP:PORT/; the backend's own ceiling with this
  client, for reference: for `close` wrk then makes a new connection per request itself).
A third case, `keepalive_https`, is the keep-alive backend through both proxies' HTTPS
listeners (wrk's connections are kept, so a handshake per connection, then TLS records; the
ingress shows its self-signed default certificate, nginx one made alike: ECDSA P-256), with no
`direct` reference. Reports requests/s and latency per run, the medians, the proxies' CPU
seconds per 10,000 requests (the whole `krust server` process, whose idle use is measured
too; nginx's master and workers), and ingress over nginx (goals: requests/s >= 1x,
p99 <= 1x).

Each `close` run makes tens of thousands of backend connections from the host, which keeps
them in TIME_WAIT; so `tcp_tw_reuse` is 1 on the host for the run, and the conntrack table's
limit is raised (both restored after). Debian's nginx service is not used (its package leaves
it stopped here): the script runs its own `nginx -c CONF -g 'daemon off;'` processes and stops
them by their pids. Run as root:

    python3 bench/ingress.py --krust /tmp/release-krust3 --output bench/ingress.json
"""

import argparse
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import krust_node as kn

CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
CONNTRACK_COUNT = Path("/proc/sys/net/netfilter/nf_conntrack_count")
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
NS = "bench"
HOSTS = {"close": "close.bench.test", "keepalive": "keepalive.bench.test"}
PORTS = {"close": 8080, "keepalive": 8090}
# Each case: its backend and the scheme wrk speaks to the proxies.
CASES = {"close": ("close", "http"), "keepalive": ("keepalive", "http"),
         "keepalive_https": ("keepalive", "https")}


def wrk(url, seconds, threads, connections, host=None):
    """One wrk run; returns requests/s, latency percentiles (ms) and errors."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
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


def time_wait(dst):
    """The host's sockets in TIME_WAIT towards `dst`."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", "dst", dst], capture_output=True, text=True).stdout
    return len(out.splitlines())


def get(url, host=None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=3, context=ssl._create_unverified_context()) as r:
        return r.read().decode().strip()


def answers(url, host=None):
    try:
        return get(url, host) == "hello"
    except OSError:
        return False


def process_tree(pid):
    """`pid` and its descendants."""
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    children = {}
    for line in out.splitlines()[1:]:
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            total += kn.cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


PROXY_CONF = """worker_processes auto;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream close {{ server {pod_ip}:{close_port}; keepalive 32; }}
    upstream keepalive {{ server {pod_ip}:{keepalive_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        server_name {close_host};
        location / {{
            proxy_pass http://close;
{headers}
        }}
    }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;
        server_name {keepalive_host};
        location / {{
            proxy_pass http://keepalive;
{headers}
        }}
    }}
}}
"""

PROXY_HEADERS = """            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;"""

BACKEND_CONF = """worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen {port};
        location / {{ default_type text/html; return 200 "hello\\n"; }}
    }}
}}
"""


def start_nginx(conf: Path, log: Path, netns=None):
    argv = ["nginx", "-c", str(conf), "-e", str(log.with_suffix(".startup.log")), "-g", "daemon off;"]
    if netns:
        argv = ["nsenter", f"--net={netns}"] + argv
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=f)


def stop(proc):
    """SIGQUIT (nginx's graceful stop), then SIGKILL to what is left of its tree."""
    if proc is None:
        return
    tree = process_tree(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", default="/tmp/release-krust3")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each target per backend")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections, keepalive cases")
    parser.add_argument("--close-connections", type=int, default=8,
                        help="wrk's connections, close case: under busybox httpd's listen backlog (9)")
    parser.add_argument("--cases", default="close,keepalive,keepalive_https", help="which of " + ",".join(CASES))
    parser.add_argument("--ingress-workers", type=int, default=0,
                        help="krust's --ingress-workers (0: its default, one per two cores)")
    parser.add_argument("--output")
    args = parser.parse_args()
    cases = args.cases.split(",")
    result = kn.header(args.krust)
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    result["workload"] = {
        "backends": {
            "close": "busybox httpd -f in the pod on 8080 (a fork per connection; closes every "
                     "connection after its answer: each proxied request is a new backend connection)",
            "keepalive": "the host's nginx binary in the pod's network namespace on 8090, one worker, "
                         "`return 200 \"hello\\n\"` (keeps connections: the proxies reuse theirs)"},
        "cases": {c: {"backend": b, "scheme": scheme} for c, (b, scheme) in CASES.items() if c in cases},
        "file_bytes": 6, "reference_proxy": nginx_version,
        "tool": "wrk " + subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
        "threads": args.threads, "connections": args.connections, "close_connections": args.close_connections,
        "seconds_per_run": args.seconds, "rounds": args.rounds, "ingress_workers": args.ingress_workers}
    conntrack_max = int(CONNTRACK_MAX.read_text())
    tw_reuse = TW_REUSE.read_text().strip()
    agent_node, conftest = kn.load(args.krust)
    http_port, https_port = conftest.free_port(), conftest.free_port()
    nginx_port, nginx_tls_port = conftest.free_port(), conftest.free_port()
    node = kn.start_node(args.krust, "krust-bench-ingress-", ingress=True, extra_args=[
        "--ingress-http-address", f"127.0.0.1:{http_port}",
        "--ingress-https-address", f"127.0.0.1:{https_port}",
        "--ingress-workers", str(args.ingress_workers)])
    proxy = backend = None
    nginx_dir = node.workdir / "nginx"
    try:
        CONNTRACK_MAX.write_text(str(max(conntrack_max, 2_000_000)))
        TW_REUSE.write_text("1")
        k = kn.kubectl(node)
        node.cluster.create_namespace(NS)
        agent_node.apply(k, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "httpd", "image": agent_node.IMAGE,
                                         "command": ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html "
                                                     "&& exec httpd -f -p 8080 -h /www"],
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}})
        agent_node.apply(k, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "close", "port": 80, "targetPort": 8080},
                               {"name": "keepalive", "port": 8090, "targetPort": 8090}]}})
        agent_node.apply(k, {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": NS},
            "spec": {"rules": [
                {"host": HOSTS[b], "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"name": b}}}}]}}
                for b in ("close", "keepalive")]}})

        def running_pod():
            pods = k.json("get", "pods", "-n", NS, "-l", "app=web")["items"]
            return next((p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")
                         and all(s.get("ready") for s in p["status"].get("containerStatuses", []))), None)

        pod = kn.wait_for(running_pod, 120, interval=0.3, what="the web pod running")
        pod_ip = pod["status"]["podIP"]
        server_netns = str(node.agent_dir / "pods" / pod["metadata"]["uid"] / "ns" / "net")
        subprocess.run(["nsenter", f"--net={server_netns}", "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], check=True)

        nginx_dir.mkdir()
        os.chmod(nginx_dir, 0o777)  # the workers run as nobody
        backend_conf, proxy_conf = nginx_dir / "backend.conf", nginx_dir / "proxy.conf"
        backend_conf.write_text(BACKEND_CONF.format(dir=nginx_dir, port=PORTS["keepalive"]))
        proxy_text = PROXY_CONF.format(
            dir=nginx_dir, pod_ip=pod_ip, port=nginx_port, tls_port=nginx_tls_port, close_port=PORTS["close"],
            keepalive_port=PORTS["keepalive"], close_host=HOSTS["close"], keepalive_host=HOSTS["keepalive"],
            headers=PROXY_HEADERS)
        proxy_conf.write_text(proxy_text)
        # nginx's certificate: ECDSA P-256, as the ingress's self-signed default one (which it
        # shows here: wrk's SNI is the address 127.0.0.1, no Ingress names it).
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(nginx_dir / "tls.key"), "-out", str(nginx_dir / "tls.crt"),
                        "-days", "2", "-subj", f"/CN={HOSTS['keepalive']}"], check=True, capture_output=True)
        backend = start_nginx(backend_conf, nginx_dir / "backend.log", server_netns)
        proxy = start_nginx(proxy_conf, nginx_dir / "proxy.log")
        result["reference_proxy_config"] = proxy_text

        listeners = {"http": {"ingress": http_port, "nginx": nginx_port},
                     "https": {"ingress": https_port, "nginx": nginx_tls_port}}
        urls = {}
        for case, (b, scheme) in CASES.items():
            urls[case] = {proxy_name: f"{scheme}://127.0.0.1:{port}/"
                          for proxy_name, port in listeners[scheme].items()}
            urls[case]["direct"] = f"http://{pod_ip}:{PORTS[b]}/"
        for case, (b, scheme) in CASES.items():
            if case not in cases:
                continue
            kn.wait_for(lambda: answers(urls[case]["direct"]), 30, what=f"the {b} backend answering")
            kn.wait_for(lambda: answers(urls[case]["nginx"], HOSTS[b]), 30, what=f"nginx routing {case}")
            kn.wait_for(lambda: answers(urls[case]["ingress"], HOSTS[b]), 90, interval=0.3,
                        what=f"the ingress routing {case}")
        result["addresses"] = {"pod": pod_ip, "bridge": node.bridge, "ingress_http": f"127.0.0.1:{http_port}",
                               "ingress_https": f"127.0.0.1:{https_port}", "nginx": f"127.0.0.1:{nginx_port}",
                               "nginx_https": f"127.0.0.1:{nginx_tls_port}"}
        pids = {"ingress": [node.server.proc.pid], "nginx": process_tree(proxy.pid)}
        result["nginx_processes"] = len(pids["nginx"])
        # Warm up every path once (ARP, the pod's page cache, the proxies' pools).
        targets = {case: ("ingress", "nginx") + (("direct",) if CASES[case][1] == "http" else ())
                   for case in cases}
        connections = {case: args.close_connections if CASES[case][0] == "close" else args.connections
                       for case in cases}
        for case in cases:
            for target in targets[case]:
                wrk(urls[case][target], 1, args.threads, connections[case],
                    None if target == "direct" else HOSTS[CASES[case][0]])

        # What the rest of `krust server` (API server, controllers, agent) uses when idle: its
        # share of the ingress's CPU figures.
        before, start = cpu_seconds(pids["ingress"]), time.monotonic()
        time.sleep(5)
        result["krust_server_idle_cpu_seconds_per_s"] = round(
            (cpu_seconds(pids["ingress"]) - before) / (time.monotonic() - start), 4)
        results = {}
        for case in cases:
            b = CASES[case][0]
            runs = {target: [] for target in targets[case]}
            for r in range(args.rounds):
                order = targets[case] if r % 2 == 0 else targets[case][::-1]
                for target in order:
                    host_before, server_before = tcp_ext(), tcp_ext(server_netns)
                    cpu_before = cpu_seconds(pids[target]) if target in pids else None
                    run = wrk(urls[case][target], args.seconds, args.threads, connections[case],
                              None if target == "direct" else HOSTS[b])
                    if cpu_before is not None:
                        used = cpu_seconds(pids[target]) - cpu_before
                        run["proxy_cpu_seconds"] = round(used, 3)
                        run["proxy_cpu_seconds_per_10k_requests"] = round(used / run["requests"] * 10_000, 4)
                    host_after, server_after = tcp_ext(), tcp_ext(server_netns)
                    # Connection set-up stalls: SYNs sent again (by the proxies, to the
                    # backend; by wrk for `direct`), SYNs the backend's full accept queue dropped.
                    run["host_syn_retransmits"] = host_after["TCPSynRetrans"] - host_before["TCPSynRetrans"]
                    run["backend_listen_drops"] = server_after["ListenDrops"] - server_before["ListenDrops"]
                    run["host_time_wait_to_backend_after"] = time_wait(pod_ip)
                    runs[target].append(run)
            summary = {}
            for target, rs in runs.items():
                summary[target] = {
                    "requests_per_s_median": round(kn.median([x["requests_per_s"] for x in rs]), 1),
                    "p50_ms_median": round(kn.median([x["p50_ms"] for x in rs]), 3),
                    "p99_ms_median": round(kn.median([x["p99_ms"] for x in rs]), 3),
                    "errors": sum(x["socket_errors"] + x["non_2xx"] for x in rs),
                    "host_syn_retransmits": sum(x["host_syn_retransmits"] for x in rs),
                    "backend_listen_drops": sum(x["backend_listen_drops"] for x in rs),
                    "runs": rs}
                if target in pids:
                    summary[target]["proxy_cpu_seconds_per_10k_requests_median"] = round(
                        kn.median([x["proxy_cpu_seconds_per_10k_requests"] for x in rs]), 4)
            ingress, nginx = summary["ingress"], summary["nginx"]
            summary["ratio_requests_per_s_ingress_over_nginx"] = round(
                ingress["requests_per_s_median"] / nginx["requests_per_s_median"], 3)
            summary["ratio_p99_ingress_over_nginx"] = round(ingress["p99_ms_median"] / nginx["p99_ms_median"], 3)
            summary["ratio_cpu_per_request_ingress_over_nginx"] = round(
                ingress["proxy_cpu_seconds_per_10k_requests_median"]
                / nginx["proxy_cpu_seconds_per_10k_requests_median"], 3)
            if "direct" in summary:
                summary["ratio_requests_per_s_ingress_over_direct"] = round(
                    ingress["requests_per_s_median"] / summary["direct"]["requests_per_s_median"], 3)
                summary["ratio_requests_per_s_nginx_over_direct"] = round(
                    nginx["requests_per_s_median"] / summary["direct"]["requests_per_s_median"], 3)
            results[case] = summary
        result["results"] = results
        result["goals"] = []
        for case, s in results.items():
            result["goals"] += [
                {"figure": f"requests/s through the ingress over nginx, {case}", "goal": ">= 1",
                 "value": s["ratio_requests_per_s_ingress_over_nginx"],
                 "met": s["ratio_requests_per_s_ingress_over_nginx"] >= 1},
                {"figure": f"p99 through the ingress over nginx, {case}", "goal": "<= 1",
                 "value": s["ratio_p99_ingress_over_nginx"], "met": s["ratio_p99_ingress_over_nginx"] <= 1}]
        result["conntrack"] = {"limit_before_run": conntrack_max, "limit_during_run": int(CONNTRACK_MAX.read_text()),
                               "entries_at_end": int(CONNTRACK_COUNT.read_text())}
        result["host_tcp_tw_reuse"] = {"before_run": int(tw_reuse), "during_run": 1}
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stop(proxy)
        stop(backend)
        CONNTRACK_MAX.write_text(str(conntrack_max))
        TW_REUSE.write_text(tw_reuse)
        node.cleanup()
        shutil.rmtree(node.workdir, ignore_errors=True)
    kn.write(result, args.output)


if __name__ == "__main__":
    main()
