"""The cluster DNS every node serves: names of Services, headless Services' endpoints, named
ports, reverse names and NXDOMAIN, asked with a DNS client (dnspython) on the node's cluster DNS
address, and by pods through the resolv.conf the agent writes. Names outside the cluster go to
an upstream resolver: here a stub on loopback, so that nothing leaves the machine.

Needs what test_agent.py needs: root, runc and busybox-static."""

import socket
import tempfile
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from agent_node import IMAGE, NEEDS_AGENT, Node, apply, k, ns, pod, wait_pod  # noqa: F401 (fixtures)
from conftest import wait_for

pytestmark = NEEDS_AGENT

DOMAIN = "cluster.local"


class Upstream:
    """A resolver on loopback that knows the names under `outside.test` (all 192.0.2.7) and
    counts questions."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions = []
        self.malformed: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                # Kept for the tests to assert on, rather than ending this thread.
                self.malformed.append(data)
                continue
            self.questions.append(str(query.question[0].name))
            response = dns.message.make_response(query)
            name = query.question[0].name
            if str(name).lower().endswith(".outside.test.") and query.question[0].rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.7"))
            elif not str(name).lower().endswith(".outside.test."):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def upstream():
    u = Upstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def node(e2e_tmp, upstream):
    """This module's node: its cluster DNS forwards to the stub upstream."""
    workdir = Path(tempfile.mkdtemp(prefix="test_dns-", dir=e2e_tmp))
    n = Node(workdir, ["--dns-upstream", f"127.0.0.1:{upstream.port}"])
    yield n
    n.cleanup()


def ask(node, name, rdtype="A", tcp=False):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return wait_for(lambda: _try(send, query, node.dns_ip), 20, interval=0.3,
                    what=f"an answer for {name} {rdtype}")


def _try(send, query, server):
    try:
        return send(query, server, timeout=2)
    except (dns.exception.Timeout, OSError):
        return None


def records(response, rdtype="A"):
    return sorted(r.to_text() for rrset in response.answer
                  if rrset.rdtype == dns.rdatatype.from_text(rdtype) for r in rrset)


def service(k, ns, name, spec):
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
              "spec": spec})
    return k.json("get", "service", name, "-n", ns)


def eventually(node, name, rdtype, pred, what):
    """Asks until the answer satisfies `pred` (the records follow the watch)."""
    return wait_for(lambda: (lambda r: r if pred(r) else None)(ask(node, name, rdtype)), 20,
                    interval=0.3, what=what)


def test_services_resolve_with_their_ports_and_reverse_names(node, k, ns):
    svc = service(k, ns, "web", {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                           {"name": "dns", "port": 53, "protocol": "UDP"}],
                                 "selector": {"app": "web"}})
    ip = svc["spec"]["clusterIP"]
    fqdn = f"web.{ns}.svc.{DOMAIN}"
    r = eventually(node, fqdn, "A", lambda r: records(r) == [ip], "the service's A record")
    assert r.flags & dns.flags.AA and r.answer[0].ttl == 5
    assert records(ask(node, f"kubernetes.default.svc.{DOMAIN}")) == [f"{node.service_base}.1"]
    assert records(ask(node, f"kube-dns.kube-system.svc.{DOMAIN}")) == [node.dns_ip]
    # The same over TCP.
    assert records(ask(node, fqdn, tcp=True)) == [ip]

    srv = ask(node, f"_http._tcp.{fqdn}", "SRV")
    assert records(srv, "SRV") == [f"0 100 80 {fqdn}."]
    assert [r.to_text() for rrset in srv.additional for r in rrset] == [ip]
    assert records(ask(node, f"_dns._udp.{fqdn}", "SRV"), "SRV") == [f"0 100 53 {fqdn}."]
    assert ask(node, f"_http._udp.{fqdn}", "SRV").rcode() == dns.rcode.NXDOMAIN

    reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    assert records(ask(node, reverse, "PTR"), "PTR") == [f"{fqdn}."]

    missing = ask(node, f"nothing.{ns}.svc.{DOMAIN}")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority and missing.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(node, f"web.{ns}.svc.{DOMAIN}", "AAAA").rcode() == dns.rcode.NOERROR

    service(k, ns, "alias", {"type": "ExternalName", "externalName": "www.outside.test"})
    alias = eventually(node, f"alias.{ns}.svc.{DOMAIN}", "A",
                       lambda r: records(r, "CNAME") == ["www.outside.test."], "the alias")
    assert alias.rcode() == dns.rcode.NOERROR

    k("delete", "service", "web", "-n", ns)
    eventually(node, fqdn, "A", lambda r: r.rcode() == dns.rcode.NXDOMAIN, "NXDOMAIN once deleted")


def test_a_headless_statefulset_resolves_by_pod_name_and_only_ready_pods(node, k, ns):
    service(k, ns, "db", {"clusterIP": "None", "selector": {"app": "db"},
                          "ports": [{"name": "pg", "port": 5432}]})
    apply(k, {"apiVersion": "apps/v1", "kind": "StatefulSet",
              "metadata": {"name": "db", "namespace": ns},
              "spec": {"serviceName": "db", "replicas": 2, "podManagementPolicy": "Parallel",
                       "selector": {"matchLabels": {"app": "db"}},
                       "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                           "nodeName": node.name, "terminationGracePeriodSeconds": 1,
                           "containers": [{"name": "c", "image": IMAGE,
                                           "command": ["sh", "-c", "touch /tmp/ready; sleep 3600"],
                                           "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                                              "periodSeconds": 1}}]}}}})
    ips = {}
    for name in ("db-0", "db-1"):
        p = wait_pod(k, ns, name, lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                                for c in p["status"].get("conditions", [])), timeout=90)
        ips[name] = p["status"]["podIP"]
    fqdn = f"db.{ns}.svc.{DOMAIN}"
    eventually(node, fqdn, "A", lambda r: records(r) == sorted(ips.values()), "both pods")
    for name, ip in ips.items():
        assert records(ask(node, f"{name}.{fqdn}")) == [ip]
        reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        assert records(ask(node, reverse, "PTR"), "PTR") == [f"{name}.{fqdn}."]
    srv = ask(node, f"_pg._tcp.{fqdn}", "SRV")
    assert records(srv, "SRV") == sorted(f"0 50 5432 {n}.{fqdn}." for n in ips)

    # From a pod, through the resolv.conf the agent wrote. (busybox's nslookup leaves out the
    # search path: so full names here, and the search path as written; test_services.py
    # fetches by short name with wget.)
    resolv = k("exec", "db-0", "-n", ns, "--", "cat", "/etc/resolv.conf")
    assert f"nameserver {node.dns_ip}" in resolv
    assert f"search {ns}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}" in resolv and "ndots:5" in resolv
    # (Each lookup may be retried once, as a resolver retries.)
    def lookup(name, expected):
        return wait_for(lambda: expected in k("exec", "db-0", "-n", ns, "--", "nslookup", name),
                        15, interval=0.5, what=f"{name} from a pod")
    lookup(f"db-1.db.{ns}.svc.{DOMAIN}", ips["db-1"])
    lookup(f"kubernetes.default.svc.{DOMAIN}", f"{node.service_base}.1")

    # db-1 turns unready: it leaves the service's answers and its name goes.
    k("exec", "db-1", "-n", ns, "--", "rm", "/tmp/ready")
    eventually(node, fqdn, "A", lambda r: records(r) == [ips["db-0"]], "only the ready pod")
    assert ask(node, f"db-1.{fqdn}").rcode() == dns.rcode.NXDOMAIN


def test_pod_names_and_names_outside_the_cluster(node, upstream, k, ns):
    assert records(ask(node, f"10-42-0-9.{ns}.pod.{DOMAIN}")) == ["10.42.0.9"]
    # Forwarded to the upstream, then answered from the cache.
    name = f"{ns}.outside.test"
    first = ask(node, name)
    assert records(first) == ["192.0.2.7"] and not first.flags & dns.flags.AA
    second = ask(node, name.upper())
    assert records(second) == ["192.0.2.7"] and second.answer[0].ttl <= 60
    assert str(second.question[0].name) == f"{name.upper()}."
    assert upstream.questions.count(f"{name}.") == 1
    assert ask(node, "unknown.test").rcode() == dns.rcode.NXDOMAIN
    # A pod asks too.
    apply(k, pod("client", ns, node, [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    wait_pod(k, ns, "client", lambda p: p["status"].get("phase") == "Running")
    out = k("exec", "client", "-n", ns, "--", "nslookup", f"pod.{name}")
    assert "192.0.2.7" in out, out
    # What the cluster DNS forwarded was well formed.
    assert upstream.malformed == [], upstream.malformed
