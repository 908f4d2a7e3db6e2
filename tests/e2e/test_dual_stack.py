"""Dual-stack: a node with an IPv4 and an IPv6 pod network (`--pod-cidr V4,V6`) in a cluster
with an IPv4 and an IPv6 service range (`--service-cidr V4,V6`). Pods get an address of each
family; a PreferDualStack Service gets a cluster IP of each, EndpointSlices of each address type,
rules in the proxy's `ip` and `ip6` tables, and cluster DNS answers A and AAAA for it.

The IPv6 ranges are unique local ones of the test's own, on the node's bridge: nothing leaves the
machine. Needs what test_services.py needs (root, runc, busybox-static, nft)."""

import ipaddress
import random
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from agent_node import IMAGE, NEEDS_AGENT, Node, apply, k, ns, pod, wait_pod  # noqa: F401 (fixtures)
from conftest import wait_for

pytestmark = NEEDS_AGENT

SERVE = ("mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && "
         "exec httpd -f -p 8080 -h /www")


@pytest.fixture(scope="module")
def node(e2e_tmp, request):
    workdir = Path(tempfile.mkdtemp(prefix="test_dual_stack-", dir=e2e_tmp))
    # A load balancer pool of IPv6 only (unique local, of the test's own): IPv4 load balancers
    # get the node's address, IPv6 ones an address from it.
    pool6 = f"fd6c:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::/120"
    n = Node(workdir, ["--load-balancer-ip-pool", pool6], dual_stack=True)
    n.lb_pool6 = ipaddress.ip_network(pool6)
    yield n
    n.cleanup()


def in_pod_network6(node, ip):
    return ipaddress.ip_address(ip) in ipaddress.ip_network(f"{node.cidr6_base}:/64")


def fetch_from(k, ns, pod_name, address, times, port=80):
    """`times` HTTP GETs of `address:port` from inside `pod_name` (busybox nc, one connection
    each): the bodies, `FAILED` for each that got none."""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    script = (f"for i in $(seq {times}); do body=$({request} | nc -w 3 {address} {port} | tail -n 1); "
              f"echo ${{body:-FAILED}}; done")
    return k("exec", pod_name, "-n", ns, "--", "sh", "-c", script, timeout=120).split()


def in_table(node, family, text):
    table = subprocess.run(["nft", "list", "table", family, node.proxy_table], capture_output=True,
                           text=True).stdout
    return text in table


def test_pods_get_an_address_of_each_family(node, k, ns):
    spec = k.json("get", "node", node.name)["spec"]
    assert spec["podCIDRs"] == [f"{node.cidr_base}.0/24", f"{node.cidr6_base}:/64"]
    addresses = k.json("get", "node", node.name)["status"]["addresses"]
    assert [a["address"] for a in addresses if a["type"] == "InternalIP"] == [node.node_ip, node.node_ip6]
    apply(k, pod("p", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
                                  "env": [{"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}]}]))
    p = wait_pod(k, ns, "p", lambda p: p["status"].get("phase") == "Running")
    v4, v6 = [entry["ip"] for entry in p["status"]["podIPs"]]
    assert [entry["ip"] for entry in p["status"]["hostIPs"]] == [node.node_ip, node.node_ip6]
    assert p["status"]["podIP"] == v4 and v4.startswith(node.cidr_base + ".")
    assert in_pod_network6(node, v6)
    # The pod's end: both addresses on eth0, usable at once (no duplicate detection), and the
    # downward API's list.
    assert k("exec", "p", "-n", ns, "--", "sh", "-c", "echo $POD_IPS").strip() == f"{v4},{v6}"
    addresses = k("exec", "p", "-n", ns, "--", "ip", "-6", "addr", "show", "eth0")
    assert v6 in addresses and "tentative" not in addresses
    assert f"{v6}\tp" in k("exec", "p", "-n", ns, "--", "cat", "/etc/hosts")
    # Reachable from the node over IPv6 (its bridge holds the network's first address).
    ping = subprocess.run(["busybox", "ping", "-6", "-c", "1", "-W", "3", v6], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_a_dual_stack_service_carries_traffic_on_both_families(node, k, ns):
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                           "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                           "containers": [{"name": "httpd", "image": IMAGE, "command": ["sh", "-c", SERVE],
                                           "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                                              "periodSeconds": 1}}]}}}})
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
              "spec": {"ipFamilyPolicy": "PreferDualStack", "selector": {"app": "web"},
                       "ports": [{"port": 80, "targetPort": 8080}]}})
    svc = k.json("get", "service", "web", "-n", ns)
    assert svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    v4, v6 = svc["spec"]["clusterIPs"]
    assert ipaddress.ip_address(v6) in ipaddress.ip_network(f"{node.service6_base}/112")

    def slices_ready():
        slices = k.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")["items"]
        ready = {s["addressType"]: [a for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                                    for a in e["addresses"]] for s in slices}
        return ready if len(ready.get("IPv4", [])) == 2 and len(ready.get("IPv6", [])) == 2 else None
    ready = wait_for(slices_ready, 120, interval=0.5, what="two ready endpoints of each family")
    assert all(in_pod_network6(node, ip) for ip in ready["IPv6"])

    apply(k, pod("client", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    wait_pod(k, ns, "client", lambda p: p["status"].get("phase") == "Running")
    pods = {p["metadata"]["name"] for p in k.json("get", "pods", "-n", ns, "-l", "app=web")["items"]}
    # The rules of each family are in the proxy's table of that family.
    wait_for(lambda: in_table(node, "ip6", v6) and in_table(node, "ip", v4), 30, interval=0.5,
             what="the Service's addresses in the proxy's ip and ip6 tables")
    for address in (v4, v6):
        answers = wait_for(lambda: (lambda a: a if set(a) == pods else None)(
            fetch_from(k, ns, "client", address, 20)), 60, interval=1,
            what=f"answers from both pods through {address}")
        assert "FAILED" not in answers
    # From the host too (the output hook), where it routes IPv6 at all: the route is looked up
    # before the rules change the destination. (The rules are in place: nothing leaves.)
    if subprocess.run(["ip", "-6", "route", "show", "default"], capture_output=True, text=True).stdout.strip():
        with urllib.request.urlopen(f"http://[{v6}]/", timeout=5) as r:
            assert r.read().decode().strip() in pods
    # A pod reaches its own Service over IPv6 too (hairpin).
    own = fetch_from(k, ns, sorted(pods)[0], v6, 10)
    assert "FAILED" not in own and set(own) <= pods

    # Cluster DNS answers the name with each family's address.
    name = f"web.{ns}.svc.cluster.local"
    aaaa = k("exec", "client", "-n", ns, "--", "nslookup", "-type=AAAA", name, node.dns_ip)
    assert v6 in aaaa and v4 not in aaaa.split(name, 1)[-1], aaaa
    a = k("exec", "client", "-n", ns, "--", "nslookup", "-type=A", name, node.dns_ip)
    assert v4 in a and v6 not in a, a

    # As a NodePort it answers on the node's IPv6 addresses too (its bridge's, a local one).
    k("patch", "service", "web", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
    node_port = k.json("get", "service", "web", "-n", ns)["spec"]["ports"][0]["nodePort"]
    def through_node_port():
        with urllib.request.urlopen(f"http://[{node.cidr6_base}:1]:{node_port}/", timeout=5) as r:
            return r.read().decode().strip()
    assert wait_for(through_node_port, 30, interval=0.5, what="the IPv6 node port") in pods
    # As a LoadBalancer it gets an address of each family: the node's IPv4 one, and the first
    # of the IPv6 pool (its network's own address is never given). Both answer.
    k("patch", "service", "web", "-n", ns, "-p", '{"spec":{"type":"LoadBalancer"}}')
    ingress = wait_for(lambda: (lambda i: i if len(i) == 2 else None)(
        k.json("get", "service", "web", "-n", ns)["status"]["loadBalancer"].get("ingress", [])),
        30, interval=0.5, what="a load balancer address of each family")
    lb6 = str(node.lb_pool6.network_address + 1)
    assert [entry["ip"] for entry in ingress] == [node.node_ip, lb6]
    wait_for(lambda: in_table(node, "ip6", lb6), 30, interval=0.5,
             what="the IPv6 load balancer address in the proxy's table")
    answers6 = wait_for(lambda: (lambda a: a if set(a) == pods else None)(
        fetch_from(k, ns, "client", lb6, 20)), 60, interval=1,
        what="answers from both pods through the IPv6 load balancer address")
    assert "FAILED" not in answers6
    # A second one gets the pool's next address; the first keeps its own.
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "six", "namespace": ns},
              "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack",
                       "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    six = wait_for(lambda: k.json("get", "service", "six", "-n", ns)["status"]["loadBalancer"].get("ingress"),
                   30, interval=0.5, what="the IPv6-only load balancer's address")
    assert [entry["ip"] for entry in six] == [str(node.lb_pool6.network_address + 2)]
    lb = k.json("get", "service", "web", "-n", ns)["status"]["loadBalancer"]["ingress"]
    assert [entry["ip"] for entry in lb] == [node.node_ip, lb6]
    k("delete", "service", "six", "-n", ns)
    # Back to one stack: the IPv6 address and its rules go.
    k("patch", "service", "web", "-n", ns, "-p", '{"spec":{"ipFamilyPolicy":"SingleStack"}}')
    assert k.json("get", "service", "web", "-n", ns)["spec"]["clusterIPs"] == [v4]
    wait_for(lambda: not in_table(node, "ip6", v6), 30, interval=0.5,
             what="the IPv6 address out of the proxy's ip6 table")
    wait_for(lambda: not any(s["addressType"] == "IPv6" for s in k.json(
        "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")["items"]),
        30, interval=0.5, what="the IPv6 EndpointSlice gone")
    # Its load balancer keeps the node's IPv4 address alone; its pool address is free again,
    # and the next IPv6 load balancer gets it.
    wait_for(lambda: [entry["ip"] for entry in k.json("get", "service", "web", "-n", ns)["status"]
                      ["loadBalancer"].get("ingress", [])] == [node.node_ip], 30, interval=0.5,
             what="the IPv4 load balancer address alone")
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "next", "namespace": ns},
              "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack",
                       "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    following = wait_for(lambda: k.json("get", "service", "next", "-n", ns)["status"]["loadBalancer"].get("ingress"),
                         30, interval=0.5, what="the next IPv6 load balancer's address")
    assert [entry["ip"] for entry in following] == [lb6]


def answers(k, ns, pod_name, ip, port=8080):
    """Whether `pod_name` gets an HTTP answer from `ip:port` within two seconds."""
    script = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} | tail -n 1"
    return bool(k("exec", pod_name, "-n", ns, "--", "sh", "-c", script, timeout=60).strip())


def test_network_policy_holds_over_ipv6_too(node, k, ns):
    def run(name, labels, command):
        apply(k, {**pod(name, ns, node, [{"name": "c", "image": IMAGE, "command": command}],
                        terminationGracePeriodSeconds=1),
                  "metadata": {"name": name, "namespace": ns, "labels": labels}})
    run("web", {"app": "web"}, ["sh", "-c", SERVE])
    run("friend", {"role": "friend"}, ["sleep", "3600"])
    run("stranger", {"role": "stranger"}, ["sleep", "3600"])
    ips = {}
    for name in ("web", "friend", "stranger"):
        p = wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running"
                     and len(p["status"].get("podIPs", [])) == 2, timeout=90)
        ips[name] = [entry["ip"] for entry in p["status"]["podIPs"]]
    v4, v6 = ips["web"]

    def holds(expected):
        return all(answers(k, ns, c, ip) == want for (c, ip), want in expected.items())
    wait_for(lambda: holds({("stranger", v6): True, ("friend", v6): True}), 40, interval=0.5,
             what="open traffic over IPv6")
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "friends", "namespace": ns},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}],
                                    "ports": [{"port": 8080}]}]}})
    # The policy holds in both families: the stranger is refused over each.
    wait_for(lambda: holds({("stranger", v6): False, ("stranger", v4): False,
                            ("friend", v6): True, ("friend", v4): True}), 40, interval=0.5,
             what="the stranger refused over IPv4 and IPv6, the friend let in")
    # An IPv6 block lets the stranger in over IPv6 alone.
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "block", "namespace": ns},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"ipBlock": {"cidr": f"{ips['stranger'][1]}/128"}}]}]}})
    wait_for(lambda: holds({("stranger", v6): True, ("stranger", v4): False}), 40, interval=0.5,
             what="the stranger let in over IPv6 by its block")
    table = subprocess.run(["nft", "list", "table", "ip6", node.policy_table], capture_output=True,
                           text=True, check=True).stdout
    assert f"ingress/{ns}/web" in table

    # The friend isolated for egress, to the web pod alone: over IPv6 it must still find the
    # web pod's link address (neighbour discovery, which conntrack does not follow).
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "friend-out", "namespace": ns},
              "spec": {"podSelector": {"matchLabels": {"role": "friend"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                   "ports": [{"port": 8080}]}]}})
    uid = k.json("get", "pod", "friend", "-n", ns)["metadata"]["uid"]
    netns = node.agent_dir / "pods" / uid / "ns" / "net"
    wait_for(lambda: f"egress/{ns}/friend" in subprocess.run(
        ["nft", "list", "table", "ip6", node.policy_table], capture_output=True, text=True).stdout,
        30, interval=0.5, what="the friend's egress chain")
    subprocess.run(["nsenter", f"--net={netns}", "ip", "-6", "neigh", "flush", "all"], check=True)
    assert wait_for(lambda: answers(k, ns, "friend", v6), 20, interval=0.5,
                    what="the friend reaching the web pod over IPv6 under its egress policy")
