"""Services' IP families (`spec.ipFamilyPolicy`, `spec.ipFamilies`, `spec.clusterIPs`) as
upstream's API server settles them: on a single-stack cluster (the module's `cluster`) and on a
dual-stack one (`--service-cidr` with an IPv4 and an IPv6 range), through kubectl. Only the API:
no node, no traffic (test_dual_stack.py carries traffic)."""

import ipaddress
import json
import random
import signal
import tempfile
from pathlib import Path

import pytest

from conftest import KUBECTL_VERSIONS, Cluster, KrustServer, Kubectl, rand_suffix

V4_RANGE = ipaddress.ip_network("10.43.0.0/16")
V6_RANGE = ipaddress.ip_network("fd00:43::/112")


def service(name, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


@pytest.fixture(scope="module")
def dual(e2e_tmp):
    """A dual-stack API server: IPv4 primary, IPv6 secondary."""
    workdir = Path(tempfile.mkdtemp(prefix="service-families-dual-", dir=e2e_tmp))
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--service-cidr", f"{V4_RANGE},{V6_RANGE}"]
    server.start()
    yield Cluster(server, None)
    server.stop(signal.SIGTERM, timeout=15)


@pytest.fixture(params=KUBECTL_VERSIONS, ids=lambda v: f"kubectl{v}")
def kd(request, dual):
    return Kubectl(request.param, dual, dual.workdir)


@pytest.fixture
def dual_ns(dual):
    name = f"e2e-families-{rand_suffix()}"
    dual.create_namespace(name)
    yield name
    dual.delete_namespace(name)


def create(k, ns, manifest):
    return json.loads(k("create", "-n", ns, "-o", "json", "-f", "-", input=json.dumps(manifest)))


def test_a_load_balancer_without_node_ports_gets_only_those_it_names(kubectl, ns):
    svc = create(kubectl, ns, service("lb", type="LoadBalancer", allocateLoadBalancerNodePorts=False,
                                      ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]))
    assert svc["spec"]["allocateLoadBalancerNodePorts"] is False
    assert all("nodePort" not in p for p in svc["spec"]["ports"]), svc["spec"]["ports"]
    # By default, a LoadBalancer gets one for each port.
    svc = create(kubectl, ns, service("lb-default", type="LoadBalancer"))
    assert svc["spec"]["allocateLoadBalancerNodePorts"] is True
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767


def test_a_single_stack_cluster_refuses_to_require_two_stacks(kubectl, ns):
    err = kubectl.fail("create", "-n", ns, "-f", "-",
                       input=json.dumps(service("req", ipFamilyPolicy="RequireDualStack")))
    assert "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services" in err
    # Preferring two stacks is fine: it stays single.
    svc = create(kubectl, ns, service("pref", ipFamilyPolicy="PreferDualStack"))
    assert svc["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    assert svc["spec"]["ipFamilies"] == ["IPv4"]
    assert len(svc["spec"]["clusterIPs"]) == 1
    err = kubectl.fail("create", "-n", ns, "-f", "-",
                       input=json.dumps(service("six", ipFamilies=["IPv6"])))
    assert "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster" in err


def test_dual_stack_services_get_an_address_of_each_family(kd, dual_ns):
    plain = create(kd, dual_ns, service("plain"))
    assert plain["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert plain["spec"]["ipFamilies"] == ["IPv4"]
    assert ipaddress.ip_address(plain["spec"]["clusterIP"]) in V4_RANGE

    both = create(kd, dual_ns, service("both", ipFamilyPolicy="PreferDualStack"))
    v4, v6 = both["spec"]["clusterIPs"]
    assert both["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert both["spec"]["clusterIP"] == v4
    assert ipaddress.ip_address(v4) in V4_RANGE and ipaddress.ip_address(v6) in V6_RANGE
    listed = kd("get", "service", "both", "-n", dual_ns)
    assert v4 in listed  # kubectl's CLUSTER-IP column shows the primary

    six_first = create(kd, dual_ns, service("six", ipFamilyPolicy="RequireDualStack",
                                            ipFamilies=["IPv6", "IPv4"]))
    assert [ipaddress.ip_address(ip).version for ip in six_first["spec"]["clusterIPs"]] == [6, 4]

    only6 = create(kd, dual_ns, service("only6", ipFamilies=["IPv6"]))
    assert only6["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert ipaddress.ip_address(only6["spec"]["clusterIP"]) in V6_RANGE

    # An address asked for decides its family.
    # A random one: each kubectl's run of this test asks on the same server.
    wanted = str(V6_RANGE[random.randint(1000, 60000)])
    asked = create(kd, dual_ns, service("asked", clusterIP=wanted))
    assert asked["spec"]["ipFamilies"] == ["IPv6"] and asked["spec"]["clusterIPs"] == [wanted]

    # A headless Service without selector takes both families, and no address.
    headless = service("headless", clusterIP="None")
    del headless["spec"]["selector"]
    h = create(kd, dual_ns, headless)
    assert h["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert h["spec"]["ipFamilies"] == ["IPv4", "IPv6"] and h["spec"]["clusterIPs"] == ["None"]


def test_a_service_goes_from_one_stack_to_two_and_back(kd, dual_ns, dual):
    svc = create(kd, dual_ns, service("updown"))
    (v4,) = svc["spec"]["clusterIPs"]
    kd("patch", "service", "updown", "-n", dual_ns, "-p", '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}')
    up = kd.json("get", "service", "updown", "-n", dual_ns)
    assert up["spec"]["clusterIPs"][0] == v4 and len(up["spec"]["clusterIPs"]) == 2
    assert up["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    v6 = up["spec"]["clusterIPs"][1]
    # Dropping the secondary needs SingleStack.
    err = kd.fail("patch", "service", "updown", "-n", dual_ns, "--type", "json", "-p",
                  '[{"op":"remove","path":"/spec/clusterIPs/1"}]')
    assert "must be 'SingleStack' to release the secondary cluster IP" in err
    kd("patch", "service", "updown", "-n", dual_ns, "-p", '{"spec":{"ipFamilyPolicy":"SingleStack"}}')
    down = kd.json("get", "service", "updown", "-n", dual_ns)
    assert down["spec"]["clusterIPs"] == [v4] and down["spec"]["ipFamilies"] == ["IPv4"]
    # The IPv6 address is free again: another Service may ask for it.
    again = create(kd, dual_ns, service("again", clusterIP=v6))
    assert again["spec"]["clusterIPs"] == [v6]
