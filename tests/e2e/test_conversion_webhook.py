"""Webhook conversion of custom resources, end to end: a definition with two versions whose
fields differ (v1beta1 `spec.hostPort: "h:p"`, v1 `spec.host` and `spec.port`), stored as v1,
converted by an HTTPS webhook the test runs on loopback (its CA made with the openssl CLI).
Objects written and read in either version, lists in one ConversionReview, watches, kubectl
1.27 and 1.33, the Python dynamic client, the webhook's failures, and the definition checks."""

import base64
import json
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import assert_status, free_port
from test_custom_resources import CRDS, create_crd, delete_crd_and_wait, own_group
from test_webhooks import https_server

FAIL = "fail:1"


def convert(obj, desired):
    """The conversion the webhook does: v1beta1 `hostPort` to and from v1 `host` and `port`."""
    obj = json.loads(json.dumps(obj))
    spec = obj.setdefault("spec", {})
    if desired.endswith("/v1"):
        host, _, port = spec.pop("hostPort", ":0").partition(":")
        spec.update(host=host, port=int(port or 0))
    else:
        spec["hostPort"] = f"{spec.pop('host', '')}:{spec.pop('port', 0)}"
    obj["apiVersion"] = desired
    return obj


class Converter(BaseHTTPRequestHandler):
    """/convert converts; an object whose hostPort is FAIL makes it answer a failure; the label
    `relabel` makes it change the labels and try to change the resourceVersion."""

    reviews: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        Converter.reviews.append(review)
        request = review["request"]
        objects = request["objects"]
        if any((o.get("spec") or {}).get("hostPort") == FAIL for o in objects):
            response = {"uid": request["uid"],
                        "result": {"status": "Failure", "message": "the converter refuses"}}
        else:
            converted = [convert(o, request["desiredAPIVersion"]) for o in objects]
            for o in converted:
                md = o.setdefault("metadata", {})
                if (md.get("labels") or {}).get("relabel"):
                    md["labels"] = {"relabel": "yes", "converted": "yes"}
                    md["resourceVersion"] = "1"
            response = {"uid": request["uid"], "result": {"status": "Success"},
                        "convertedObjects": converted}
        body = json.dumps({"apiVersion": review["apiVersion"], "kind": "ConversionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def converter(tmp_path_factory):
    """The HTTPS converter on 127.0.0.1; yields (URL, CA bundle in base64)."""
    with https_server(Converter, tmp_path_factory.mktemp("conversion-certs")) as (url, ca):
        yield f"{url}/convert", ca


def definition(group, url, ca, review_versions=("v1",)):
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"endpoints.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "endpoints", "singular": "endpoint", "kind": "Endpoint",
                      "listKind": "EndpointList"},
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False,
                 "schema": {"openAPIV3Schema": schema}},
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": schema}},
            ],
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": list(review_versions),
                "clientConfig": {"url": url, "caBundle": ca}}},
        },
    }


@pytest.fixture(scope="module")
def group(cluster, converter):
    group = own_group()
    create_crd(cluster, definition(group, *converter))
    yield group
    delete_crd_and_wait(cluster, f"endpoints.{group}")


def path(group, version, ns, name=""):
    p = f"/apis/{group}/{version}/namespaces/{ns}/endpoints"
    return f"{p}/{name}" if name else p


def beta(group, name, host_port, labels=None):
    md = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": f"{group}/v1beta1", "kind": "Endpoint", "metadata": md,
            "spec": {"hostPort": host_port}}


def test_an_object_written_in_one_version_reads_in_both(cluster, group, ns):
    Converter.reviews.clear()
    made = cluster.ok("POST", path(group, "v1beta1", ns), body=beta(group, "a", "db:5432"),
                      expect=(201,))
    assert made["apiVersion"] == f"{group}/v1beta1"
    assert made["spec"] == {"hostPort": "db:5432"}
    v1 = cluster.ok("GET", path(group, "v1", ns, "a"))
    assert v1["apiVersion"] == f"{group}/v1"
    assert v1["spec"] == {"host": "db", "port": 5432}
    again = cluster.ok("GET", path(group, "v1beta1", ns, "a"))
    assert again["spec"] == {"hostPort": "db:5432"}
    assert again["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
    # The webhook was sent ConversionReviews of the version it asked for, both ways.
    desired = {r["request"]["desiredAPIVersion"] for r in Converter.reviews}
    assert desired == {f"{group}/v1", f"{group}/v1beta1"}
    assert {r["apiVersion"] for r in Converter.reviews} == {"apiextensions.k8s.io/v1"}
    # A write in the storage version needs no conversion.
    Converter.reviews.clear()
    r = cluster.patch(path(group, "v1", ns, "a"), {"spec": {"port": 6432}})
    assert r.status_code == 200, r.text
    assert Converter.reviews == []
    assert cluster.ok("GET", path(group, "v1beta1", ns, "a"))["spec"]["hostPort"] == "db:6432"


def test_a_list_is_converted_in_one_review(cluster, group, ns):
    for i in range(3):
        cluster.ok("POST", path(group, "v1", ns),
                   body={"apiVersion": f"{group}/v1", "kind": "Endpoint",
                         "metadata": {"name": f"l{i}"}, "spec": {"host": f"h{i}", "port": i}},
                   expect=(201,))
    Converter.reviews.clear()
    listing = cluster.ok("GET", path(group, "v1beta1", ns))
    assert listing["apiVersion"] == f"{group}/v1beta1"
    assert sorted(i["spec"]["hostPort"] for i in listing["items"]) == ["h0:0", "h1:1", "h2:2"]
    assert [len(r["request"]["objects"]) for r in Converter.reviews] == [3]
    # Pages are converted too, and continue.
    page = cluster.ok("GET", path(group, "v1beta1", ns), params={"limit": "2"})
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = cluster.ok("GET", path(group, "v1beta1", ns),
                      params={"limit": "2", "continue": page["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in rest["items"]] == ["l2"]
    # Selectors apply to the converted objects.
    cluster.patch(path(group, "v1", ns, "l1"), {"metadata": {"labels": {"pick": "me"}}})
    picked = cluster.ok("GET", path(group, "v1beta1", ns), params={"labelSelector": "pick=me"})
    assert [i["spec"]["hostPort"] for i in picked["items"]] == ["h1:1"]


def test_a_watch_in_another_version_sees_converted_objects(cluster, group, ns):
    w = cluster.watch(path(group, "v1beta1", ns), params={"resourceVersion": "0"})
    try:
        cluster.ok("POST", path(group, "v1", ns),
                   body={"apiVersion": f"{group}/v1", "kind": "Endpoint",
                         "metadata": {"name": "w"}, "spec": {"host": "web", "port": 80}},
                   expect=(201,))
        event = w.until(lambda e: e["object"]["metadata"]["name"] == "w")
        assert event["type"] == "ADDED"
        assert event["object"]["apiVersion"] == f"{group}/v1beta1"
        assert event["object"]["spec"] == {"hostPort": "web:80"}
    finally:
        w.close()


def test_the_webhook_may_change_labels_but_not_other_metadata(cluster, group, ns):
    made = cluster.ok("POST", path(group, "v1beta1", ns),
                      body=beta(group, "r", "x:1", labels={"relabel": "yes"}), expect=(201,))
    assert made["metadata"]["labels"] == {"relabel": "yes", "converted": "yes"}
    assert made["metadata"]["resourceVersion"] != "1"
    assert made["metadata"]["uid"]


def test_a_failing_webhook_is_a_500_with_its_message(cluster, group, ns):
    r = cluster.post(path(group, "v1beta1", ns), body=beta(group, "f", FAIL))
    assert_status(r, 500, "InternalError")
    assert r.json()["message"] == (
        f"conversion webhook for {group}/v1beta1, Kind=Endpoint failed: the converter refuses")
    assert cluster.get(path(group, "v1", ns, "f")).status_code == 404


def test_an_unreachable_webhook_fails_other_versions_only(cluster, ns):
    group = own_group()
    port = free_port()  # nothing listens there
    crd = definition(group, f"https://127.0.0.1:{port}/convert",
                     base64.b64encode(b"unused").decode())
    # A caBundle without a certificate is refused at the call, not at creation.
    create_crd(cluster, crd)
    try:
        cluster.ok("POST", path(group, "v1", ns),
                   body={"apiVersion": f"{group}/v1", "kind": "Endpoint",
                         "metadata": {"name": "u"}, "spec": {"host": "h", "port": 1}},
                   expect=(201,))
        assert cluster.ok("GET", path(group, "v1", ns, "u"))["spec"]["host"] == "h"
        r = cluster.get(path(group, "v1beta1", ns, "u"))
        assert_status(r, 500, "InternalError")
        assert r.json()["message"].startswith(
            f"conversion webhook for {group}/v1, Kind=Endpoint failed:"), r.text
        r = cluster.get(path(group, "v1beta1", ns))
        assert_status(r, 500, "InternalError")
        # A watch in that version gets the failure as its last event, then ends.
        w = cluster.watch(path(group, "v1beta1", ns), params={"resourceVersion": "0"})
        try:
            got = w.wait_end(timeout=30)
            assert [e["type"] for e in got] == ["ERROR"], got
            assert got[0]["object"]["code"] == 500, got
        finally:
            w.close()
    finally:
        delete_crd_and_wait(cluster, f"endpoints.{group}")


def test_a_v1beta1_review_is_sent_to_a_webhook_that_takes_only_it(cluster, converter, ns):
    group = own_group()
    create_crd(cluster, definition(group, *converter, review_versions=("v1beta1",)))
    try:
        Converter.reviews.clear()
        cluster.ok("POST", path(group, "v1beta1", ns), body=beta(group, "b", "q:9"),
                   expect=(201,))
        assert {r["apiVersion"] for r in Converter.reviews} == {"apiextensions.k8s.io/v1beta1"}
        assert cluster.ok("GET", path(group, "v1", ns, "b"))["spec"] == {"host": "q", "port": 9}
    finally:
        delete_crd_and_wait(cluster, f"endpoints.{group}")


def test_kubectl_reads_each_version(cluster, kubectl, group, ns):
    version = kubectl.version
    cluster.ok("POST", path(group, "v1", ns),
               body={"apiVersion": f"{group}/v1", "kind": "Endpoint",
                     "metadata": {"name": f"k{version.replace('.', '')}"},
                     "spec": {"host": "k", "port": 7}}, expect=(201,))
    out = json.loads(kubectl("get", f"endpoints.v1beta1.{group}", "-n", ns,
                             f"k{version.replace('.', '')}", "-o", "json"))
    assert out["spec"] == {"hostPort": "k:7"}
    out = json.loads(kubectl("get", f"endpoints.v1.{group}", "-n", ns, "-o", "json"))
    assert all("host" in i["spec"] for i in out["items"])


def test_the_python_dynamic_client_reads_both_versions(cluster, group, ns):
    from kubernetes import dynamic
    client = dynamic.DynamicClient(cluster.api_client())
    cluster.ok("POST", path(group, "v1beta1", ns), body=beta(group, "p", "py:3"), expect=(201,))
    v1 = client.resources.get(api_version=f"{group}/v1", kind="Endpoint")
    beta_res = client.resources.get(api_version=f"{group}/v1beta1", kind="Endpoint")
    assert v1.get(name="p", namespace=ns).spec.port == 3
    assert beta_res.get(name="p", namespace=ns).spec.hostPort == "py:3"


@pytest.mark.parametrize("conversion, field, detail", [
    ({"strategy": "Webhook"}, "spec.conversion.webhook", "Required value"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                         "clientConfig": {"url": "http://127.0.0.1:1/"}}},
     "spec.conversion.webhook.clientConfig.url", "'https' is the only allowed URL scheme"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v2"],
                                         "clientConfig": {"url": "https://127.0.0.1:1/"}}},
     "spec.conversion.webhook.conversionReviewVersions",
     "must include at least one of v1, v1beta1"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                         "clientConfig": {}}},
     "spec.conversion.webhook.clientConfig", "exactly one of url or service is required"),
    ({"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"],
                                      "clientConfig": {"url": "https://127.0.0.1:1/"}}},
     "spec.conversion.webhook", "should not be set when strategy is not set to Webhook"),
    ({"strategy": "Magic"}, "spec.conversion.strategy", 'Unsupported value: "Magic"'),
])
def test_definitions_with_a_bad_conversion_are_refused(cluster, conversion, field, detail):
    group = own_group()
    crd = definition(group, "https://127.0.0.1:1/", "")
    crd["spec"]["conversion"] = conversion
    r = cluster.post(CRDS, body=crd)
    assert_status(r, 422, "Invalid")
    causes = r.json()["details"]["causes"]
    assert any(c["field"] == field and detail in c["message"] for c in causes), causes
