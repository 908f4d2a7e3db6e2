"""NetworkPolicy, enforced by the node agent in nf_tables (the table `<bridge>-policy`):
ingress and egress, pod and namespace selectors, address blocks with exceptions, named ports
and port ranges, the default-deny patterns of upstream's documentation. Pods talk over the
node's bridge; the host reaches them too (traffic from the node is always allowed).

Needs what test_agent.py needs: root, runc and busybox-static."""

import shutil
import subprocess
import urllib.request

import pytest

from agent_node import IMAGE, NEEDS_AGENT, apply, k, node, ns, pod, wait_pod  # noqa: F401 (fixtures)
from conftest import rand_suffix, wait_for

pytestmark = NEEDS_AGENT

SERVE = ("mkdir -p /www && hostname > /www/index.html && "
         "exec httpd -f -p {port} -h /www")


def server(k, ns, node, name, labels, port=8080):
    apply(k, {**pod(name, ns, node, [{"name": "httpd", "image": IMAGE,
                                      "command": ["sh", "-c", SERVE.format(port=port)],
                                      "ports": [{"name": "http", "containerPort": port}]}],
                    terminationGracePeriodSeconds=1),
              "metadata": {"name": name, "namespace": ns, "labels": labels}})


def client(k, ns, node, name, labels):
    apply(k, {**pod(name, ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
                    terminationGracePeriodSeconds=1),
              "metadata": {"name": name, "namespace": ns, "labels": labels}})


def running(k, ns, *names):
    ips = {}
    for name in names:
        p = wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running"
                     and p["status"].get("podIP"), timeout=90)
        ips[name] = p["status"]["podIP"]
    return ips


def answers(k, ns, pod_name, ip, port=8080):
    """Whether `pod_name` gets an HTTP answer from `ip:port` within two seconds (busybox's nc,
    for its timeout: this busybox's `wget -T` crashes)."""
    script = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} | tail -n 1"
    return bool(k("exec", pod_name, "-n", ns, "--", "sh", "-c", script, timeout=60).strip())


def eventually(k, ns, expected, what):
    """Waits until each (client, ip, port) of `expected` answers as its value says."""
    def holds():
        return all(answers(k, ns, c, ip, port) == want for (c, ip, port), want in expected.items())
    wait_for(holds, 40, interval=0.5, what=what)


def policy(k, ns, name, spec):
    apply(k, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": name, "namespace": ns}, "spec": spec})


@pytest.fixture
def other_ns(node):
    name = f"e2e-networkpolicy-other-{rand_suffix()}"
    node.cluster.create_namespace(name)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))


def test_a_policy_denies_a_client_and_a_second_allows_it(node, k, ns):
    server(k, ns, node, "web", {"app": "web"})
    client(k, ns, node, "friend", {"role": "friend"})
    client(k, ns, node, "stranger", {"role": "stranger"})
    ip = running(k, ns, "web", "friend", "stranger")["web"]
    eventually(k, ns, {("friend", ip, 8080): True, ("stranger", ip, 8080): True}, "open traffic")

    # Upstream's "default deny all ingress traffic".
    policy(k, ns, "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    eventually(k, ns, {("friend", ip, 8080): False, ("stranger", ip, 8080): False}, "both denied")
    # The node still reaches its pods (probes, the host).
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as r:
        assert r.read().decode().strip() == "web"

    # A second policy allows the friend, on the server's named port.
    policy(k, ns, "friends", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}],
                                           "ports": [{"port": "http"}]}]})
    eventually(k, ns, {("friend", ip, 8080): True, ("stranger", ip, 8080): False}, "the friend allowed")

    k("delete", "networkpolicy", "deny", "friends", "-n", ns)
    eventually(k, ns, {("friend", ip, 8080): True, ("stranger", ip, 8080): True}, "open again")


def test_namespace_selectors_and_ports(node, k, ns, other_ns):
    k("label", "namespace", other_ns, "team=blue")
    server(k, ns, node, "web", {"app": "web"})
    server(k, ns, node, "admin", {"app": "admin"}, port=9090)
    client(k, ns, node, "near", {"role": "client"})
    client(k, other_ns, node, "far", {"role": "client"})
    ips = running(k, ns, "web", "admin", "near")
    running(k, other_ns, "far")
    web, admin = ips["web"], ips["admin"]

    # Only namespaces labelled team=blue, and only on ports 8000-8100.
    policy(k, ns, "blue-only", {"podSelector": {},
                                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}],
                                             "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}]}]})

    def far_answers(ip, port):
        return answers(k, other_ns, "far", ip, port)

    wait_for(lambda: far_answers(web, 8080) and not answers(k, ns, "near", web, 8080),
             40, interval=0.5, what="the other namespace allowed, its own denied")
    assert not far_answers(admin, 9090)  # outside the port range

    # Both selectors in one peer: pods of that label in those namespaces only.
    policy(k, ns, "blue-only", {"podSelector": {},
                                "ingress": [{"from": [{"namespaceSelector": {},
                                                       "podSelector": {"matchLabels": {"role": "client"}}}]}]})
    eventually(k, ns, {("near", web, 8080): True, ("near", admin, 9090): True}, "clients of any namespace")
    assert far_answers(admin, 9090)


def test_egress_default_deny_and_ip_blocks_with_exceptions(node, k, ns):
    server(k, ns, node, "one", {"app": "one"})
    server(k, ns, node, "two", {"app": "two"})
    client(k, ns, node, "c", {"role": "client"})
    ips = running(k, ns, "one", "two", "c")
    one, two = ips["one"], ips["two"]
    eventually(k, ns, {("c", one, 8080): True, ("c", two, 8080): True}, "open traffic")

    # Upstream's "default deny all egress traffic", for the client.
    policy(k, ns, "no-egress", {"podSelector": {"matchLabels": {"role": "client"}},
                                "policyTypes": ["Egress"]})
    eventually(k, ns, {("c", one, 8080): False, ("c", two, 8080): False}, "egress denied")

    # The pod network, except the first server; replies come back (the servers are not
    # isolated, the client's answers are an established connection's).
    network = ".".join(one.split(".")[:3]) + ".0/24"
    policy(k, ns, "block", {"podSelector": {"matchLabels": {"role": "client"}},
                            "egress": [{"to": [{"ipBlock": {"cidr": network, "except": [f"{one}/32"]}}],
                                        "ports": [{"port": 8080}]}]})
    eventually(k, ns, {("c", one, 8080): False, ("c", two, 8080): True}, "the block without its exception")

    # Egress and ingress together: the server isolated for ingress too needs its own allowance.
    policy(k, ns, "two-closed", {"podSelector": {"matchLabels": {"app": "two"}}, "policyTypes": ["Ingress"]})
    eventually(k, ns, {("c", two, 8080): False}, "the destination's ingress denies")
    policy(k, ns, "two-open", {"podSelector": {"matchLabels": {"app": "two"}},
                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    eventually(k, ns, {("c", two, 8080): True}, "both sides consent")


def test_the_node_programs_its_policy_table(node, k, ns):
    """The table is the agent's, replaced as one transaction: it exists with its base chains."""
    if not shutil.which("nft"):
        pytest.skip("nft is needed to look at the table")
    table = f"{node.bridge}-policy"
    out = wait_for(lambda: (lambda p: p.stdout if p.returncode == 0 else None)(
        subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)),
        20, interval=0.5, what="the policy table")
    assert "hook forward" in out and "ingress-pods" in out and "egress-pods" in out
