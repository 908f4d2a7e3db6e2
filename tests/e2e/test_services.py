"""Services carry traffic: the node's service proxy programs nf_tables (through netlink) from
Services and EndpointSlices. Pods behind a ClusterIP are reached from another pod and from the
host, with answers spread over the ready pods only; a pod reaches its own Service (hairpin); a
NodePort answers on the node's address. Everything stays on the machine: the pods' bridge and
the host's own addresses.

Needs what test_agent.py needs: root, runc and busybox-static; and nft (Debian's nftables) to
look at the rules."""

import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent_node import IMAGE, NEEDS_AGENT, Node, apply, k, node, ns, pod, wait_pod  # noqa: F401 (fixtures)
from conftest import KUBECTL_VERSIONS, Cluster, Etcd, KrustServer, Kubectl, wait_for

pytestmark = NEEDS_AGENT

SERVE = ("mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && "
         "exec httpd -f -p 8080 -h /www")


def web(k, ns, node, replicas=3):
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                           "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                           "containers": [{"name": "httpd", "image": IMAGE, "command": ["sh", "-c", SERVE],
                                           "ports": [{"name": "http", "containerPort": 8080}],
                                           "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                                              "periodSeconds": 1}}]}}}})
    return wait_for(lambda: (lambda pods: pods if len(pods) == replicas else None)(ready_pods(k, ns)),
                    120, interval=0.5, what="ready web pods")


def ready_pods(k, ns):
    pods = k.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    return sorted(p["metadata"]["name"] for p in pods
                  if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])))


def client(k, ns, node):
    apply(k, pod("client", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    wait_pod(k, ns, "client", lambda p: p["status"].get("phase") == "Running")


def fetch_from(k, ns, pod_name, address, times, port=80):
    """`times` HTTP GETs of `address:port` from inside `pod_name`, one connection each: the
    bodies (each pod's name), `FAILED` for each that got none. (busybox's nc, for its
    timeout: this busybox's `wget -T` crashes.)"""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    script = (f"for i in $(seq {times}); do body=$({request} | nc -w 3 {address} {port} | tail -n 1); "
              f"echo ${{body:-FAILED}}; done")
    return k("exec", pod_name, "-n", ns, "--", "sh", "-c", script, timeout=120).split()


def fetch_from_host(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode().strip()


def test_a_cluster_ip_spreads_over_ready_pods_from_pods_and_the_host(node, k, ns):
    names = web(k, ns, node)
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    ip = k.json("get", "service", "web", "-n", ns)["spec"]["clusterIP"]
    client(k, ns, node)
    answers = wait_for(lambda: (lambda a: a if set(a) == set(names) else None)(
        fetch_from(k, ns, "client", ip, 30)), 60, interval=1,
        what="answers from all three pods through the cluster IP")
    assert "FAILED" not in answers
    # By name, as a user would: the short name through the search path, and the full name.
    for url in ("http://web", f"http://web.{ns}.svc.cluster.local"):
        got = wait_for(lambda: k("exec", "client", "-n", ns, "--", "wget", "-qO-", url, timeout=20).strip(),
                       30, interval=1, what=f"an answer from {url}")
        assert got in names
    # From the host too (the output hook).
    assert fetch_from_host(f"http://{ip}/") in names
    # A pod reaches its own Service (hairpin): some answers are its own.
    own = fetch_from(k, ns, names[0], ip, 20)
    assert "FAILED" not in own and set(own) <= set(names)

    # One pod turns unready: it gets no more traffic.
    k("exec", names[0], "-n", ns, "--", "rm", "/tmp/ready")
    wait_for(lambda: names[0] not in ready_pods(k, ns), 30, interval=0.5, what="the pod unready")
    wait_for(lambda: (lambda a: a if names[0] not in a and "FAILED" not in a else None)(
        fetch_from(k, ns, "client", ip, 20)), 30, interval=1,
        what="traffic to the ready pods only")

    # The rules are the proxy's, in its table.
    table = subprocess.run(["nft", "list", "table", "ip", node.proxy_table], capture_output=True,
                           text=True, check=True).stdout
    assert f"svc/{ns}/web/tcp/80" in table


def test_client_ip_affinity_keeps_a_client_on_one_pod(node, k, ns):
    names = web(k, ns, node)
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sticky", "namespace": ns},
              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
                       "sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}})
    ip = k.json("get", "service", "sticky", "-n", ns)["spec"]["clusterIP"]
    client(k, ns, node)
    answers = wait_for(lambda: (lambda a: a if "FAILED" not in a else None)(
        fetch_from(k, ns, "client", ip, 15)), 30, interval=1, what="answers through the sticky service")
    assert len(set(answers)) == 1 and answers[0] in names, answers
    table = subprocess.run(["nft", "list", "table", "ip", node.proxy_table], capture_output=True,
                           text=True, check=True).stdout
    assert f"affinity/60/ep/{ns}/sticky/tcp/80/" in table


def test_a_node_port_answers_on_the_node(node, k, ns):
    names = web(k, ns, node, replicas=2)
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
              "spec": {"type": "NodePort", "selector": {"app": "web"},
                       "ports": [{"port": 80, "targetPort": 8080}]}})
    port = k.json("get", "service", "web", "-n", ns)["spec"]["ports"][0]["nodePort"]
    # The node's own address on its bridge (a local address; nothing leaves the machine).
    url = f"http://{node.cidr_base}.1:{port}/"
    answer = wait_for(lambda: fetch_from_host(url), 30, interval=0.5, what="the node port")
    assert answer in names
    k("delete", "service", "web", "-n", ns)
    time.sleep(1)
    table = subprocess.run(["nft", "list", "table", "ip", node.proxy_table], capture_output=True,
                           text=True, check=True).stdout
    assert f"svc/{ns}/web" not in table and f"external/{ns}/web" not in table


@pytest.fixture(scope="module")
def listening_node(e2e_tmp):
    """A node whose API server listens on every address of the host, so that pods reach it
    through the `kubernetes` Service (its endpoint: the address of the host's default route,
    a local address)."""
    workdir = Path(tempfile.mkdtemp(prefix="test_services-api-", dir=e2e_tmp))
    # (Also a load balancer pool, from the benchmarking range: the proxy answers its
    # addresses on the host, and the test sends nothing there before it does.)
    pool = f"198.18.{random.randint(0, 255)}.0/29"
    n = Node(workdir, ["--load-balancer-ip-pool", pool], bind_address="0.0.0.0")
    n.lb_pool = pool
    yield n
    n.cleanup()


def test_pods_reach_the_api_server_through_the_kubernetes_service(listening_node):
    node = listening_node
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    slice_ = wait_for(lambda: k.json("get", "endpointslice", "kubernetes", "-n", "default"), 10,
                      what="the kubernetes EndpointSlice")
    address = slice_["endpoints"][0]["addresses"][0]
    assert slice_["ports"][0]["port"] == int(node.server.port)
    endpoints = k.json("get", "endpoints", "kubernetes", "-n", "default")
    assert endpoints["subsets"][0]["addresses"][0]["ip"] == address
    ip = k.json("get", "service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    ns = "e2e-services-api"
    node.cluster.create_namespace(ns)
    apply(k, pod("client", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    wait_pod(k, ns, "client", lambda p: p["status"].get("phase") == "Running")
    # Plain HTTP through the cluster IP to the TLS port: the server's TLS alert comes back.
    out = k("exec", "client", "-n", ns, "--", "sh", "-c",
            f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 443 | od -An -tx1 | head -1")
    assert out.split()[:1] == ["15"], out  # an alert record


def test_the_kubernetes_service_follows_the_api_servers(e2e_tmp):
    """Two servers on one etcd, each advertising an address of its own (nothing is sent
    there): the `kubernetes` Service's endpoints list both; one that stops leaves at once, one
    that dies when its lease (15 s) runs out."""
    workdir = Path(tempfile.mkdtemp(prefix="test_services-servers-", dir=e2e_tmp))
    etcd = Etcd(workdir)
    etcd.start()
    servers = []
    try:
        for name, address in (("a", "192.0.2.10"), ("b", "192.0.2.11")):
            (workdir / name).mkdir()
            server = KrustServer(workdir / name, "etcd", etcd)
            server.extra_args = ["--advertise-address", address, "--disable-controller-manager"]
            server.start()
            servers.append(server)
        cluster = Cluster(servers[0], etcd)

        def addresses():
            slice_ = cluster.ok("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
            from_slice = sorted(a for e in slice_.get("endpoints") or [] for a in e["addresses"])
            endpoints = cluster.ok("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
            from_endpoints = sorted(a["ip"] for s in endpoints.get("subsets") or [] for a in s["addresses"])
            return from_slice if from_slice == from_endpoints else None

        wait_for(lambda: addresses() == ["192.0.2.10", "192.0.2.11"], 30, interval=0.5, what="both servers")
        assert servers[1].stop() == 0
        wait_for(lambda: addresses() == ["192.0.2.10"], 10, interval=0.5, what="the stopped server gone")
        servers[1].start()
        wait_for(lambda: addresses() == ["192.0.2.10", "192.0.2.11"], 30, interval=0.5, what="it back")
        servers[1].stop(signal.SIGKILL)
        wait_for(lambda: addresses() == ["192.0.2.10"], 40, interval=1, what="the dead server's lease run out")
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)
        etcd.stop()


def test_a_service_without_endpoints_refuses_connections(node, k, ns):
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty", "namespace": ns},
              "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}})
    ip = k.json("get", "service", "empty", "-n", ns)["spec"]["clusterIP"]

    def refused():
        try:
            fetch_from_host(f"http://{ip}/")
        except urllib.error.URLError as e:
            return isinstance(e.reason, ConnectionRefusedError)
        return False

    wait_for(refused, 20, interval=0.5, what="the connection refused at once")


def test_the_pods_gateway_keeps_its_address_while_pods_come_and_go(node, k, ns):
    """The bridge's MAC address is set for good: a bridge left to the kernel takes its lowest
    port's, and a pod that leaves then changes the gateway under the others, whose ARP entries
    point nowhere for a while (their DNS questions went unanswered)."""
    for name in ("a", "b", "c"):
        apply(k, pod(name, ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
                     terminationGracePeriodSeconds=1))
    for name in ("a", "b", "c"):
        wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running")
    sysfs = Path("/sys/class/net") / node.bridge
    assert (sysfs / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
    mac = (sysfs / "address").read_text().strip()
    k("delete", "pod", "a", "b", "-n", ns, "--grace-period=1")
    assert (sysfs / "address").read_text().strip() == mac
    # The pod that stayed reaches the node's DNS at once, through the ARP entry it had.
    out = k("exec", "c", "-n", ns, "--", "nslookup", "kubernetes.default.svc.cluster.local")
    assert f"{node.service_base}.1" in out


def test_local_traffic_policies_keep_traffic_on_the_node(node, k, ns):
    names = web(k, ns, node, replicas=1)
    ip_of_pod = k.json("get", "pod", names[0], "-n", ns)["status"]["podIP"]
    # A Service without selector, its slice written by hand: the pod on this node, and an
    # address of the pod network that nobody holds, said to be on another node.
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "local", "namespace": ns},
              "spec": {"type": "NodePort", "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local",
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    apply(k, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "local-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "local"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
              "endpoints": [{"addresses": [ip_of_pod], "nodeName": node.name, "conditions": {"ready": True}},
                            {"addresses": [f"{node.cidr_base}.250"], "nodeName": "elsewhere",
                             "conditions": {"ready": True}}]})
    service = k.json("get", "service", "local", "-n", ns)
    client(k, ns, node)
    answers = wait_for(lambda: (lambda a: a if "FAILED" not in a else None)(
        fetch_from(k, ns, "client", service["spec"]["clusterIP"], 12)), 30, interval=1,
        what="cluster traffic to this node's endpoint only")
    assert set(answers) == set(names)
    url = f"http://{node.cidr_base}.1:{service['spec']['ports'][0]['nodePort']}/"
    assert {fetch_from_host(url) for _ in range(8)} == set(names)


def host_address():
    """The address of the host's default route interface (a UDP connect sends nothing), or
    None without a default route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("203.0.113.1", 9))
            return s.getsockname()[0]
        except OSError:
            return None


@pytest.fixture(scope="module")
def addressed_node(e2e_tmp):
    """A node whose address is the host's own (not loopback), for load balancers."""
    address = host_address()
    if address is None:
        pytest.skip("the host has no default route, hence no node address but loopback")
    workdir = Path(tempfile.mkdtemp(prefix="test_services-lb-", dir=e2e_tmp))
    n = Node(workdir, node_ip=address)
    yield n
    n.cleanup()


def test_a_load_balancer_gets_the_node_address_which_answers(addressed_node):
    node = addressed_node
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    ns = "e2e-services-lb"
    node.cluster.create_namespace(ns)
    names = web(k, ns, node, replicas=2)
    port = 30000 + int(node.service_base.split(".")[2]) * 10 % 2000  # a port nothing else holds
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": ns},
              "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                       "ports": [{"port": port, "targetPort": 8080}]}})
    status = wait_for(lambda: k.json("get", "service", "lb", "-n", ns)["status"]["loadBalancer"].get("ingress"),
                      30, interval=0.5, what="the load balancer's address")
    assert status == [{"ip": node.node_ip, "ipMode": "VIP"}]
    answer = wait_for(lambda: fetch_from_host(f"http://{node.node_ip}:{port}/"), 30, interval=0.5,
                      what="an answer on the load balancer's address")
    assert answer in names
    # Back to ClusterIP: the address goes.
    k("patch", "service", "lb", "-n", ns, "--type=merge", "-p", '{"spec":{"type":"ClusterIP"}}')
    wait_for(lambda: not k.json("get", "service", "lb", "-n", ns)["status"].get("loadBalancer", {}).get("ingress"),
             30, interval=0.5, what="the address released")


def test_load_balancers_get_an_address_each_from_the_pool(listening_node):
    node = listening_node
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    ns = "e2e-services-pool"
    node.cluster.create_namespace(ns)
    names = web(k, ns, node, replicas=1)
    base = node.lb_pool.rsplit(".", 1)[0]
    for name, extra in (("first", {}), ("second", {}), ("asked", {"loadBalancerIP": f"{base}.6"})):
        apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                  "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, **extra,
                           "ports": [{"port": 80, "targetPort": 8080}]}})

    def address(name):
        ingress = k.json("get", "service", name, "-n", ns)["status"].get("loadBalancer", {}).get("ingress")
        return ingress[0]["ip"] if ingress else None

    got = {name: wait_for(lambda: address(name), 30, interval=0.5, what=f"{name}'s address")
           for name in ("first", "second", "asked")}
    # One each: the lowest free addresses of the /29 (never its network address), and the one
    # asked for.
    assert sorted([got["first"], got["second"]]) == [f"{base}.1", f"{base}.2"]
    assert got["asked"] == f"{base}.6"
    # The proxy answers it on the host (looked for in its table first: until then the address
    # would leave through the default route).
    ip = got["first"]
    wait_for(lambda: ip in subprocess.run(["nft", "list", "table", "ip", node.proxy_table],
                                          capture_output=True, text=True).stdout,
             30, interval=0.5, what="the pool address in the proxy's table")
    assert wait_for(lambda: fetch_from_host(f"http://{ip}/"), 30, interval=0.5,
                    what="an answer on the pool address") in names
    # A Service that goes gives its address back to the next one.
    k("delete", "service", "first", "-n", ns)
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "third", "namespace": ns},
              "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                       "ports": [{"port": 80, "targetPort": 8080}]}})
    assert wait_for(lambda: address("third"), 30, interval=0.5, what="third's address") == ip
