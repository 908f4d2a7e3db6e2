#!/usr/bin/env python3
"""krust's cluster DNS against dnsmasq serving the same records, with dnsperf, in the same run.

Starts a krust node (tests/e2e/agent_node.py's `Node`: `krust server` with its node agent and
cluster DNS, which answers on the service range's tenth address, held by the link
`<bridge>-dns`), creates `--services` ClusterIP Services (selector-less: no pods needed) and
waits until the cluster DNS answers every one. Then it starts dnsmasq on 127.0.0.1 (a free
port) with the same names and addresses (`--addn-hosts`, `--no-resolv --no-hosts`: no
upstream, nothing leaves the host; `--local=/cluster.local/`: other names in the zone are
NXDOMAIN, as krust answers them) and checks that both give the same answers. dnsperf (one
thread, `--clients` sockets, `--outstanding` queries in flight) then asks, alternating the two
servers in each round (the order flipped every round):
- `throughput`: as fast as they answer, for `--seconds`: queries/s;
- `latency`: at a fixed `--rate` well under both servers' capacity, every answer's latency
  (`dnsperf -v`): p50, p99, p99.9;
for two query mixes: `hit` (A questions for the Services' names, round robin) and `nxdomain`
(A questions for names in the zone that do not exist). Ratios are krust over dnsmasq
(queries/s: goal >= 1). Also each server's CPU seconds per 100,000 answers.

Run as root:

    python3 bench/dns.py --krust /tmp/release-krust2 --output bench/dns.json
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# This file's name would hide dnspython's `dns` package: import it without bench/ on the path.
HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

sys.path.insert(0, str(HERE))
import krust_node as kn  # noqa: E402

DOMAIN = "cluster.local"


def dnsperf(server, port, datafile, seconds, clients, outstanding, rate=None, verbose=False):
    argv = ["dnsperf", "-s", server, "-p", str(port), "-d", str(datafile), "-l", str(seconds),
            "-c", str(clients), "-q", str(outstanding), "-T", "1", "-t", "2"]
    if rate:
        argv += ["-Q", str(rate)]
    if verbose:
        argv.append("-v")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout

    def number(label):
        return float(re.search(rf"{label}:\s+([\d.]+)", out).group(1))

    result = {"queries_per_s": round(number("Queries per second"), 1),
              "completed": int(number("Queries completed")), "lost": int(number("Queries lost")),
              "rcodes": dict(re.findall(r"([A-Z]+) (\d+) \(", re.search(r"Response codes:\s+(.*)", out).group(1))),
              "average_ms": round(number("Average Latency \\(s\\)") * 1000, 3)}
    if verbose:
        latencies = [float(m) * 1000 for m in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M)]
        result.update({"answers_timed": len(latencies),
                       "p50_ms": round(kn.percentile(latencies, 50), 3),
                       "p99_ms": round(kn.percentile(latencies, 99), 3),
                       "p999_ms": round(kn.percentile(latencies, 99.9), 3),
                       "max_ms": round(max(latencies), 3)})
    return result


def ask(server, port, name):
    r = dns.query.udp(dns.message.make_query(name, "A"), server, port=port, timeout=2)
    return dns.rcode.to_text(r.rcode()), sorted(str(rr) for rrset in r.answer for rr in rrset)


def free_udp_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--krust", default="/tmp/release-krust2")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=5, help="length of one dnsperf run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server per mix and mode")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outstanding", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5000, help="queries/s of the latency runs")
    parser.add_argument("--output")
    args = parser.parse_args()
    result = kn.header(args.krust)
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    perf = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    result["workload"] = {"services": args.services, "seconds_per_run": args.seconds, "rounds": args.rounds,
                          "dnsperf": re.search(r"Version (\S+)", perf.stdout + perf.stderr).group(1),
                          "dnsperf_threads": 1, "clients": args.clients, "outstanding": args.outstanding,
                          "latency_rate_qps": args.rate, "dnsmasq": version}
    node = kn.start_node(args.krust, "krust-bench-dns-")
    work = Path(tempfile.mkdtemp(prefix="krust-bench-dns-files-"))
    dnsmasq = None
    try:
        result["node"] = {"bridge": node.bridge, "dns_ip": node.dns_ip}
        ns = "bench"
        node.cluster.create_namespace(ns)
        addresses = {}
        for i in range(args.services):
            svc = node.cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body={
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                "spec": {"ports": [{"port": 80}]}}, expect=(201,))
            addresses[f"svc-{i}.{ns}.svc.{DOMAIN}"] = svc["spec"]["clusterIP"]
        names = list(addresses)
        kn.wait_for(lambda: ask(node.dns_ip, 53, names[-1])[1] == [addresses[names[-1]]], 30,
                    what="the cluster DNS answering the last Service")
        hosts = work / "hosts"
        hosts.write_text("".join(f"{ip} {name}\n" for name, ip in addresses.items()))
        port = free_udp_port()
        dnsmasq = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             f"--addn-hosts={hosts}", "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}",
             f"--local=/{DOMAIN}/", "--user=root", "--pid-file=", "--cache-size=10000"],
            stdout=subprocess.DEVNULL, stderr=open(work / "dnsmasq.log", "wb"))
        servers = {"krust": (node.dns_ip, 53, node.server.proc.pid), "dnsmasq": ("127.0.0.1", port, dnsmasq.pid)}
        kn.wait_for(lambda: ask("127.0.0.1", port, names[0])[0] == "NOERROR", 10, what="dnsmasq answering")

        mixes = {"hit": names, "nxdomain": [f"missing-{i}.{ns}.svc.{DOMAIN}" for i in range(args.services)]}
        # The same answers from both, for a sample of each mix.
        checks = []
        for mix, qnames in mixes.items():
            for name in qnames[:: max(1, len(qnames) // 10)]:
                a, b = ask(*servers["krust"][:2], name), ask(*servers["dnsmasq"][:2], name)
                checks.append({"name": name, "krust": a, "dnsmasq": b, "same": a == b})
        result["same_answers_checked"] = len(checks)
        result["same_answers"] = all(c["same"] for c in checks)
        if not result["same_answers"]:
            result["different_answers"] = [c for c in checks if not c["same"]]
        files = {}
        for mix, qnames in mixes.items():
            files[mix] = work / f"{mix}.txt"
            files[mix].write_text("".join(f"{n} A\n" for n in qnames))

        results = {}
        for mix in mixes:
            for mode in ("throughput", "latency"):
                runs = {"krust": [], "dnsmasq": []}
                for r in range(args.rounds):
                    order = ("krust", "dnsmasq") if r % 2 == 0 else ("dnsmasq", "krust")
                    for who in order:
                        host, p, pid = servers[who]
                        before = kn.cpu_seconds(pid)
                        run = dnsperf(host, p, files[mix], args.seconds, args.clients, args.outstanding,
                                      rate=args.rate if mode == "latency" else None,
                                      verbose=mode == "latency")
                        cpu = kn.cpu_seconds(pid) - before
                        run["server_cpu_s_per_100k_answers"] = round(cpu / max(run["completed"], 1) * 1e5, 3)
                        runs[who].append(run)
                summary = {}
                for who, rs in runs.items():
                    s = {"queries_per_s_median": round(kn.median([x["queries_per_s"] for x in rs]), 1),
                         "lost": sum(x["lost"] for x in rs),
                         "cpu_s_per_100k_answers_median": round(kn.median(
                             [x["server_cpu_s_per_100k_answers"] for x in rs]), 3)}
                    if mode == "latency":
                        for key in ("p50_ms", "p99_ms", "p999_ms"):
                            s[f"{key}_median"] = round(kn.median([x[key] for x in rs]), 3)
                    s["runs"] = rs
                    summary[who] = s
                if mode == "throughput":
                    summary["ratio_queries_per_s_krust_over_dnsmasq"] = round(
                        summary["krust"]["queries_per_s_median"] / summary["dnsmasq"]["queries_per_s_median"], 3)
                else:
                    summary["ratio_p99_krust_over_dnsmasq"] = round(
                        summary["krust"]["p99_ms_median"] / summary["dnsmasq"]["p99_ms_median"], 3)
                results.setdefault(mix, {})[mode] = summary
        result["results"] = results
        result["goals"] = [
            {"figure": f"queries/s krust over dnsmasq, {mix}", "goal": ">= 1",
             "value": results[mix]["throughput"]["ratio_queries_per_s_krust_over_dnsmasq"],
             "met": results[mix]["throughput"]["ratio_queries_per_s_krust_over_dnsmasq"] >= 1}
            for mix in results]
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if dnsmasq is not None:
            dnsmasq.send_signal(signal.SIGTERM)
            try:
                dnsmasq.wait(10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
        node.cleanup()
        shutil.rmtree(node.workdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    kn.write(result, args.output)


if __name__ == "__main__":
    main()
