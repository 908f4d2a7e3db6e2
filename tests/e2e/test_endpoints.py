"""The Endpoints and EndpointSlice controllers (in `krust-controllers`): a Service's selected
pods become its Endpoints and EndpointSlices, following the pods' addresses and readiness, the
ports each offers, headless services and `publishNotReadyAddresses`; a Service's deletion takes
its Endpoints and slices with it. The EndpointSlice mirroring controller mirrors the Endpoints of
Services without a selector into slices.

The test plays the node agent: it binds pods and reports their address and readiness through
the API, as a kubelet would.
"""

from __future__ import annotations

from conftest import wait_for

SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"


def pod(name, labels=None, port=8080, hostname=None, subdomain=None):
    spec = {"containers": [{"name": "c", "image": "registry.local/pause:1",
                            "ports": [{"name": "http", "containerPort": port}]}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}}, "spec": spec}


def service(name, selector=None, ports=None, **spec):
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]
                     if ports is None else ports, **spec}}
    if selector is not False:
        body["spec"]["selector"] = selector or {"app": "web"}
    return body


def run(cluster, ns, name, ip, ready=True, node="node-e"):
    """What a node agent reports: bound, running at `ip`, ready or not."""
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    set_ready(cluster, ns, name, ready, ip)


def set_ready(cluster, ns, name, ready, ip=None):
    status = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}], hostIP="192.0.2.1")
    cluster.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})


def endpoints(cluster, ns, name):
    r = cluster.get(f"/api/v1/namespaces/{ns}/endpoints/{name}")
    return r.json() if r.status_code == 200 else None


def addresses(ep, key="addresses"):
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get(key) or [])


def slices(cluster, ns, svc):
    return cluster.ok("GET", SLICES.format(ns=ns),
                      params={"labelSelector": f"kubernetes.io/service-name={svc}"})["items"]


def slice_endpoints(cluster, ns, svc):
    """Address -> conditions over every slice of the service."""
    return {e["addresses"][0]: e.get("conditions", {})
            for s in slices(cluster, ns, svc) for e in s.get("endpoints") or []}


def test_endpoints_and_slices_follow_readiness(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body=service("web"))
    for i, ready in enumerate([True, True, False]):
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod(f"web-{i}"))
        run(cluster, ns, f"web-{i}", f"10.42.7.{i + 1}", ready)
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods",
               body=pod("other", labels={"app": "other"}))
    run(cluster, ns, "other", "10.42.7.99")

    want = (["10.42.7.1", "10.42.7.2"], ["10.42.7.3"])
    wait_for(lambda: (addresses(endpoints(cluster, ns, "web")),
                      addresses(endpoints(cluster, ns, "web"), "notReadyAddresses")) == want,
             30, 0.2, what="Endpoints with two ready and one unready address")
    ep = endpoints(cluster, ns, "web")
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ref = ep["subsets"][0]["addresses"][0]
    assert ref["nodeName"] == "node-e" and ref["targetRef"]["kind"] == "Pod"

    wait_for(lambda: len(slice_endpoints(cluster, ns, "web")) == 3, 30, 0.2,
             what="one slice with three endpoints")
    (sl,) = slices(cluster, ns, "web")
    labels = sl["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    owner = sl["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)
    conditions = slice_endpoints(cluster, ns, "web")
    assert conditions["10.42.7.1"]["ready"] is True
    assert conditions["10.42.7.3"] == {"ready": False, "serving": False, "terminating": False}

    # Readiness flips both ways.
    set_ready(cluster, ns, "web-0", False)
    set_ready(cluster, ns, "web-2", True)
    want = (["10.42.7.2", "10.42.7.3"], ["10.42.7.1"])
    wait_for(lambda: (addresses(endpoints(cluster, ns, "web")),
                      addresses(endpoints(cluster, ns, "web"), "notReadyAddresses")) == want,
             30, 0.2, what="Endpoints following readiness")
    wait_for(lambda: {ip: c.get("ready") for ip, c in slice_endpoints(cluster, ns, "web").items()}
             == {"10.42.7.1": False, "10.42.7.2": True, "10.42.7.3": True}, 30, 0.2,
             what="slice conditions following readiness")

    # kubectl shows them.
    out = kubectl("get", "endpoints", "web", "-n", ns)
    assert "10.42.7.2:8080" in out, out
    out = kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")
    assert "IPv4" in out and "8080" in out, out
    out = kubectl("describe", "service", "web", "-n", ns)
    assert "10.42.7.2:8080" in out, out

    # A pod that stops matching, and one deleted, leave both.
    cluster.patch(f"/api/v1/namespaces/{ns}/pods/web-1", {"metadata": {"labels": {"app": "x"}}})
    cluster.request("DELETE", f"/api/v1/namespaces/{ns}/pods/web-2",
                    params={"gracePeriodSeconds": "0"})
    wait_for(lambda: addresses(endpoints(cluster, ns, "web"), "notReadyAddresses") == ["10.42.7.1"]
             and addresses(endpoints(cluster, ns, "web")) == [], 30, 0.2,
             what="Endpoints without the released and the deleted pod")
    wait_for(lambda: sorted(slice_endpoints(cluster, ns, "web")) == ["10.42.7.1"], 30, 0.2,
             what="slices without the released and the deleted pod")


def test_service_deletion_takes_its_endpoints(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body=service("gone"))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("gone-0"))
    run(cluster, ns, "gone-0", "10.42.8.1")
    wait_for(lambda: addresses(endpoints(cluster, ns, "gone")) == ["10.42.8.1"], 30, 0.2,
             what="Endpoints of the service")
    wait_for(lambda: len(slices(cluster, ns, "gone")) == 1, 30, 0.2, what="its slice")
    cluster.ok("DELETE", f"/api/v1/namespaces/{ns}/services/gone")
    wait_for(lambda: endpoints(cluster, ns, "gone") is None, 30, 0.2,
             what="Endpoints deleted with the service")
    wait_for(lambda: slices(cluster, ns, "gone") == [], 30, 0.2,
             what="slices collected with the service")


def test_a_service_without_pods_has_an_empty_placeholder(kubectl, cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body=service("empty"))
    wait_for(lambda: endpoints(cluster, ns, "empty") is not None, 30, 0.2,
             what="Endpoints of a service without pods")
    assert not endpoints(cluster, ns, "empty").get("subsets")
    wait_for(lambda: len(slices(cluster, ns, "empty")) == 1, 30, 0.2, what="a placeholder")
    (sl,) = slices(cluster, ns, "empty")
    assert not sl.get("endpoints") and not sl.get("ports")
    assert "<none>" in kubectl("get", "endpoints", "empty", "-n", ns)


def test_headless_and_publish_not_ready(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services",
               body=service("db", selector={"app": "db"}, ports=[], clusterIP="None",
                            publishNotReadyAddresses=True))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods",
               body=pod("db-0", labels={"app": "db"}, hostname="db-0", subdomain="db"))
    run(cluster, ns, "db-0", "10.42.9.1", ready=False)
    wait_for(lambda: addresses(endpoints(cluster, ns, "db")) == ["10.42.9.1"], 30, 0.2,
             what="an unready address published")
    ep = endpoints(cluster, ns, "db")
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert ep["subsets"][0]["addresses"][0]["hostname"] == "db-0"
    assert "ports" not in ep["subsets"][0]
    wait_for(lambda: len(slice_endpoints(cluster, ns, "db")) == 1, 30, 0.2, what="its slice")
    (sl,) = slices(cluster, ns, "db")
    assert sl["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    (e,) = sl["endpoints"]
    assert e["hostname"] == "db-0"
    assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_a_service_without_selector_keeps_its_own_endpoints(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services",
               body=service("ext", selector=False, ports=[{"port": 80}]))
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/endpoints", body={
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}]})
    # A selected service created after it is handled, so the controllers have seen this one.
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body=service("marker"))
    wait_for(lambda: endpoints(cluster, ns, "marker") is not None, 30, 0.2, what="a marker")
    assert addresses(endpoints(cluster, ns, "ext")) == ["192.0.2.10"]
    # They are mirrored into a slice (next test), not replaced.
    wait_for(lambda: slice_endpoints(cluster, ns, "ext"), 30, 0.2, what="the mirrored slice")
    assert list(slice_endpoints(cluster, ns, "ext")) == ["192.0.2.10"]


MIRRORED_BY = "endpointslicemirroring-controller.k8s.io"


def test_endpoints_of_a_service_without_selector_are_mirrored_into_slices(cluster, ns):
    """Upstream's EndpointSlice mirroring controller: hand-written Endpoints of a
    selector-less Service become slices (owned by the Endpoints, with its labels), which
    follow its changes; not for Endpoints marked skip-mirror or a Service with a selector."""
    base = f"/api/v1/namespaces/{ns}"
    cluster.ok("POST", f"{base}/services",
               body=service("db", selector=False, ports=[{"name": "pg", "port": 5432}]))
    cluster.ok("POST", f"{base}/endpoints", body={
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "db", "labels": {"team": "data"}},
        "subsets": [{"addresses": [{"ip": "192.0.2.20", "hostname": "primary"}],
                     "notReadyAddresses": [{"ip": "192.0.2.21"}],
                     "ports": [{"name": "pg", "port": 5432}]}]})
    wait_for(lambda: len(slice_endpoints(cluster, ns, "db")) == 2, 30, 0.2,
             what="the mirrored slice")
    [mirrored] = slices(cluster, ns, "db")
    assert mirrored["addressType"] == "IPv4"
    assert mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == MIRRORED_BY
    assert mirrored["metadata"]["labels"]["team"] == "data"
    owner = mirrored["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Endpoints", "db", True)
    assert mirrored["ports"] == [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    by_ip = slice_endpoints(cluster, ns, "db")
    assert by_ip["192.0.2.20"]["ready"] is True and by_ip["192.0.2.21"]["ready"] is False
    # A change of the Endpoints is mirrored.
    cluster.patch(f"{base}/endpoints/db", {"subsets": [
        {"addresses": [{"ip": "192.0.2.22"}], "ports": [{"name": "pg", "port": 5432}]}]})
    wait_for(lambda: list(slice_endpoints(cluster, ns, "db")) == ["192.0.2.22"], 30, 0.2,
             what="the change mirrored")
    # Endpoints marked skip-mirror are not.
    cluster.ok("POST", f"{base}/services",
               body=service("own", selector=False, ports=[{"port": 80}]))
    cluster.ok("POST", f"{base}/endpoints", body={
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "own", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": "192.0.2.30"}], "ports": [{"port": 80}]}]})
    # A service that gains a selector is the EndpointSlice controller's: its mirror goes.
    cluster.patch(f"{base}/services/db", {"spec": {"selector": {"app": "db"}}})
    wait_for(lambda: all(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                         != MIRRORED_BY for s in slices(cluster, ns, "db")), 30, 0.2,
             what="the mirror gone")
    assert slices(cluster, ns, "own") == []


def test_slices_hold_at_most_a_hundred_endpoints(cluster, ns):
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/services", body=service("many"))
    for i in range(120):
        name = f"many-{i}"
        cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod(name))
        run(cluster, ns, name, f"10.43.{i // 200}.{i % 200 + 1}")
    wait_for(lambda: len(slice_endpoints(cluster, ns, "many")) == 120, 60, 0.5,
             what="120 endpoints in slices")
    sizes = sorted(len(s.get("endpoints") or []) for s in slices(cluster, ns, "many"))
    assert sum(sizes) == 120 and max(sizes) <= 100, sizes
    assert len(addresses(endpoints(cluster, ns, "many"))) == 120
