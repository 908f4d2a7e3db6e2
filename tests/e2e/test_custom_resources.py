"""CustomResourceDefinitions and their custom resources, as upstream's apiextensions-apiserver
serves them: establishment and names, discovery, CRUD, patch types, watch, selectors, the
status and scale subresources, printer columns, versions, deletion of a definition, RBAC,
the Python client, restarts; and structural schemas: validation, pruning, defaulting.

One module-wide definition, widgets.example.com (namespaced, versions v1beta1 and v1), serves
most tests; tests needing a definition of their own (names, deletion, cluster scope, schema)
create it in a group of their own."""

import json
import threading
import time

import pytest

from conftest import assert_status, parse_table, rand_suffix, wait_for

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GROUP = "example.com"
W = f"/apis/{GROUP}/v1"
W_BETA = f"/apis/{GROUP}/v1beta1"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
CR_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}


# ---------------------------------------------------------------------------------------------
# definitions


def obj_schema(properties, **extra):
    return {"type": "object", "properties": properties, **extra}


WIDGET_SCHEMA = obj_schema({
    "spec": obj_schema({"color": {"type": "string"}, "size": {"type": "integer"},
                        "replicas": {"type": "integer"}}),
    "status": obj_schema({"replicas": {"type": "integer"}, "selector": {"type": "string"},
                          "phase": {"type": "string"},
                          "conditions": {"type": "array", "items": obj_schema(
                              {"type": {"type": "string"}, "status": {"type": "string"}})}}),
})

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["all"]},
        "versions": [
            {"name": "v1beta1", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
             "subresources": {"status": {}}},
            {"name": "v1", "served": True, "storage": True,
             "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
             "subresources": {"status": {},
                              "scale": {"specReplicasPath": ".spec.replicas",
                                        "statusReplicasPath": ".status.replicas",
                                        "labelSelectorPath": ".status.selector"}},
             "selectableFields": [{"jsonPath": ".spec.color"}],
             "additionalPrinterColumns": [
                 {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                 {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                 {"name": "Ready", "type": "string",
                  "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                 {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                 {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
                  "priority": 1},
             ]},
        ],
    },
}


def simple_crd(group, plural, kind, scope="Namespaced", schema=None, **names):
    """A one-version (v1) definition preserving unknown fields unless given a schema."""
    schema = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": plural, "singular": plural.rstrip("s"), "kind": kind,
                           "listKind": kind + "List", **names},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    }


def condition(crd, ctype):
    for c in (crd.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return None


def is_true(crd, ctype):
    c = condition(crd, ctype)
    return c is not None and c["status"] == "True"


def wait_crd(cluster, name, pred, what, timeout=10):
    """Polls the definition `name` until `pred` holds for it; returns it."""
    def check():
        crd = cluster.ok("GET", f"{CRDS}/{name}")
        return crd if pred(crd) else None
    return wait_for(check, timeout, what=f"{name}: {what}")


def create_crd(cluster, body, wait=True):
    """Creates a definition; with `wait`, until it is Established and its resource served."""
    cluster.ok("POST", CRDS, body=body, expect=(201,))
    if not wait:
        return None
    name = body["metadata"]["name"]
    spec = body["spec"]
    version = next(v["name"] for v in spec["versions"] if v["storage"])
    crd = wait_crd(cluster, name, lambda c: is_true(c, "Established"), "Established")
    wait_for(lambda: cluster.get(f"/apis/{spec['group']}/{version}/{spec['names']['plural']}")
             .status_code == 200, 10, what=f"{name} served")
    return crd


def delete_crd_and_wait(cluster, name, timeout=30):
    cluster.request("DELETE", f"{CRDS}/{name}")
    wait_for(lambda: cluster.get(f"{CRDS}/{name}").status_code == 404, timeout,
             what=f"{name} gone")


def own_group():
    return f"e2e-{rand_suffix()}.example.com"


@pytest.fixture(scope="module")
def widgets(cluster):
    """widgets.example.com, Established and served."""
    return create_crd(cluster, WIDGET_CRD)


def widget(name, color="blue", size=1, replicas=None, labels=None, version="v1", **meta):
    spec = {"color": color, "size": size}
    if replicas is not None:
        spec["replicas"] = replicas
    md = {"name": name, **meta}
    if labels:
        md["labels"] = labels
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Widget", "metadata": md, "spec": spec}


def wpath(ns, name="", sub="", base=W):
    p = f"{base}/namespaces/{ns}/widgets"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


def create_widget(cluster, ns, name, **kw):
    return cluster.ok("POST", wpath(ns), body=widget(name, **kw), expect=(201,))


def names_of(listing):
    return sorted(i["metadata"]["name"] for i in listing["items"])


# ---------------------------------------------------------------------------------------------
# the definition's status, names and discovery


def test_definition_is_established_with_its_names_accepted(cluster, widgets):
    crd = cluster.ok("GET", f"{CRDS}/widgets.{GROUP}")
    st = crd["status"]
    assert st["acceptedNames"] == {"plural": "widgets", "singular": "widget", "kind": "Widget",
                                   "listKind": "WidgetList", "shortNames": ["wd"],
                                   "categories": ["all"]}, st
    names = condition(crd, "NamesAccepted")
    assert (names["status"], names["reason"], names["message"]) == \
        ("True", "NoConflicts", "no conflicts found"), names
    est = condition(crd, "Established")
    assert (est["status"], est["reason"], est["message"]) == \
        ("True", "InitialNamesAccepted", "the initial names have been accepted"), est
    assert names["lastTransitionTime"] and est["lastTransitionTime"]
    assert st["storedVersions"] == ["v1"]
    assert crd["metadata"]["generation"] == 1


def test_a_new_definition_is_served_within_a_second_without_restart(cluster, ns):
    group = own_group()
    t0 = time.monotonic()
    create_crd(cluster, simple_crd(group, "quicks", "Quick"), wait=False)
    path = f"/apis/{group}/v1/namespaces/{ns}/quicks"
    body = {"apiVersion": f"{group}/v1", "kind": "Quick", "metadata": {"name": "q1"}}
    wait_for(lambda: cluster.post(path, body).status_code == 201, 10, interval=0.02,
             what="the first create to succeed")
    elapsed = time.monotonic() - t0
    # (krust takes some tens of milliseconds)
    assert elapsed < 1.0, f"served only after {elapsed:.2f}s"
    assert any(r["name"] == "quicks" for r in cluster.ok("GET", f"/apis/{group}/v1")["resources"])


def test_legacy_discovery_lists_the_group_versions_and_resources(cluster, widgets):
    groups = cluster.ok("GET", "/apis")
    g = next((g for g in groups["groups"] if g["name"] == GROUP), None)
    assert g is not None, [g["name"] for g in groups["groups"]]
    assert g["preferredVersion"] == {"groupVersion": f"{GROUP}/v1", "version": "v1"}
    # upstream orders a group's versions by priority: GA before beta
    assert g["versions"] == [{"groupVersion": f"{GROUP}/v1", "version": "v1"},
                             {"groupVersion": f"{GROUP}/v1beta1", "version": "v1beta1"}]

    group = cluster.ok("GET", f"/apis/{GROUP}")
    assert group["kind"] == "APIGroup" and group["name"] == GROUP
    assert group["versions"] == g["versions"] and group["preferredVersion"] == g["preferredVersion"]

    rl = cluster.ok("GET", W)
    assert (rl["kind"], rl["groupVersion"]) == ("APIResourceList", f"{GROUP}/v1")
    res = {r["name"]: r for r in rl["resources"]}
    assert set(res) == {"widgets", "widgets/status", "widgets/scale"}, set(res)
    w = res["widgets"]
    assert (w["singularName"], w["namespaced"], w["kind"]) == ("widget", True, "Widget")
    assert set(w["verbs"]) == CR_VERBS
    assert w["shortNames"] == ["wd"] and w["categories"] == ["all"]
    assert res["widgets/status"]["kind"] == "Widget"
    assert set(res["widgets/status"]["verbs"]) == {"get", "patch", "update"}
    scale = res["widgets/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert set(scale["verbs"]) == {"get", "patch", "update"}

    beta = {r["name"] for r in cluster.ok("GET", W_BETA)["resources"]}
    assert beta == {"widgets", "widgets/status"}, "v1beta1 declares no scale subresource"


def test_aggregated_discovery_lists_the_resource_with_its_subresources(cluster, widgets):
    r = cluster.get("/apis", headers={"Accept": AGGREGATED})
    assert r.status_code == 200, r.text[:500]
    assert "apidiscovery.k8s.io" in r.headers["Content-Type"], r.headers["Content-Type"]
    body = r.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    item = next((i for i in body["items"] if i["metadata"]["name"] == GROUP), None)
    assert item is not None, [i["metadata"]["name"] for i in body["items"]]
    assert [v["version"] for v in item["versions"]] == ["v1", "v1beta1"]
    v1 = item["versions"][0]
    assert v1.get("freshness") == "Current"
    (res,) = [x for x in v1["resources"] if x["resource"] == "widgets"]
    assert res["responseKind"] == {"group": GROUP, "version": "v1", "kind": "Widget"}
    assert (res["scope"], res["singularResource"]) == ("Namespaced", "widget")
    assert set(res["verbs"]) == CR_VERBS
    assert res["shortNames"] == ["wd"] and res["categories"] == ["all"]
    subs = {s["subresource"]: s for s in res["subresources"]}
    assert subs["status"]["responseKind"] == {"group": GROUP, "version": "v1", "kind": "Widget"}
    assert subs["scale"]["responseKind"] == {"group": "autoscaling", "version": "v1",
                                             "kind": "Scale"}
    beta = item["versions"][1]["resources"][0]
    assert beta["responseKind"]["version"] == "v1beta1"
    assert {s["subresource"] for s in beta.get("subresources") or []} == {"status"}


def test_kubectl_api_resources_shows_short_names_and_categories(kubectl, widgets):
    _, rows = parse_table(kubectl("api-resources", "--api-group", GROUP))
    assert rows == [{"NAME": "widgets", "SHORTNAMES": "wd", "APIVERSION": f"{GROUP}/v1",
                     "NAMESPACED": "true", "KIND": "Widget"}], rows
    wide = kubectl("api-resources", "--api-group", GROUP, "-o", "wide")
    _, rows = parse_table(wide)
    assert rows[0]["CATEGORIES"] == "all", wide
    names = kubectl("api-resources", "--categories", "all", "-o", "name").split()
    assert f"widgets.{GROUP}" in names, names


def test_kubectl_waits_for_established_and_lists_definitions(kubectl, widgets):
    out = kubectl("wait", "--for", "condition=established", "--timeout=30s",
                  f"crd/widgets.{GROUP}")
    assert out.strip() == \
        f"customresourcedefinition.apiextensions.k8s.io/widgets.{GROUP} condition met"
    cols, rows = parse_table(kubectl("get", "crd", f"widgets.{GROUP}"))
    assert cols == ["NAME", "CREATED AT"], cols
    assert rows[0]["NAME"] == f"widgets.{GROUP}"
    assert rows[0]["CREATED AT"].endswith("Z"), rows


def test_updating_a_definition_serves_a_new_version_and_drops_an_unserved_one(cluster, ns):
    group = own_group()
    body = simple_crd(group, "morphs", "Morph")
    crd = create_crd(cluster, body)
    base = f"/apis/{group}/{{}}/namespaces/{ns}/morphs"
    cluster.ok("POST", base.format("v1"), body={"apiVersion": f"{group}/v1", "kind": "Morph",
                                                "metadata": {"name": "m"}, "spec": {"a": 1}},
               expect=(201,))
    v2 = dict(crd["spec"]["versions"][0], name="v2", storage=False)
    crd = cluster.ok("PATCH", f"{CRDS}/morphs.{group}", body=[
        {"op": "add", "path": "/spec/versions/-", "value": v2},
        {"op": "add", "path": "/spec/names/shortNames", "value": ["mo"]}],
        headers={"Content-Type": "application/json-patch+json"})
    assert crd["metadata"]["generation"] == 2
    wait_for(lambda: cluster.get(base.format("v2") + "/m").status_code == 200, 5,
             what="v2 served")
    got = cluster.ok("GET", base.format("v2") + "/m")
    assert got["apiVersion"] == f"{group}/v2" and got["spec"] == {"a": 1}
    wait_for(lambda: cluster.ok("GET", f"/apis/{group}/v1")["resources"][0].get("shortNames")
             == ["mo"], 5, what="the new short name in discovery")

    cluster.ok("PATCH", f"{CRDS}/morphs.{group}",
               body=[{"op": "replace", "path": "/spec/versions/0/served", "value": False}],
               headers={"Content-Type": "application/json-patch+json"})
    wait_for(lambda: cluster.get(base.format("v1")).status_code == 404, 5,
             what="v1 no longer served")
    assert [v["version"] for v in cluster.ok("GET", f"/apis/{group}")["versions"]] == ["v2"]
    # still stored as v1, served as v2
    assert cluster.ok("GET", base.format("v2") + "/m")["spec"] == {"a": 1}


def test_kubectl_get_all_includes_a_resource_in_category_all(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "in-all")
    out = kubectl("get", "all", "-n", ns, "-o", "name")
    assert f"widget.{GROUP}/in-all" in out.split(), out


def test_short_name_singular_and_qualified_names_resolve_in_kubectl(kubectl, cluster, widgets,
                                                                    ns):
    create_widget(cluster, ns, "w1")
    for kind in ("wd", "widget", "widgets", f"widgets.{GROUP}", f"widget.v1.{GROUP}"):
        assert kubectl("get", kind, "-n", ns, "-o", "name").split() == \
            [f"widget.{GROUP}/w1"], kind


def conflicting_definition(cluster, plural):
    """Creates <plural>.example.com claiming the kind Widget (with a list kind of its own, so
    that the kind is the only conflict); answers it once it has a NamesAccepted condition."""
    body = simple_crd(GROUP, plural, "Widget")
    body["spec"]["names"]["listKind"] = plural.capitalize() + "List"
    create_crd(cluster, body, wait=False)
    return wait_crd(cluster, f"{plural}.{GROUP}", lambda c: condition(c, "NamesAccepted"),
                    "a NamesAccepted condition")


def test_a_kind_already_accepted_in_the_group_is_not_accepted_again(cluster, widgets):
    crd = conflicting_definition(cluster, "otherwidgets")
    try:
        names = condition(crd, "NamesAccepted")
        assert (names["status"], names["message"]) == ("False", '"Widget" is already in use'), \
            names
        est = condition(crd, "Established")
        assert (est["status"], est["reason"], est["message"]) == \
            ("False", "NotAccepted", "not all names are accepted"), est
        assert not crd["status"]["acceptedNames"].get("kind"), crd["status"]
        time.sleep(0.5)  # give a wrong implementation the chance to serve it anyway
        assert_status(cluster.get(f"{W}/otherwidgets"), 404, "NotFound")
        assert "otherwidgets" not in {r["name"] for r in cluster.ok("GET", W)["resources"]}
        # the first definition is untouched
        assert is_true(cluster.ok("GET", f"{CRDS}/widgets.{GROUP}"), "NamesAccepted")
    finally:
        delete_crd_and_wait(cluster, crd["metadata"]["name"])


def test_the_names_conflict_reason_names_what_conflicts(cluster, widgets):
    crd = conflicting_definition(cluster, "morewidgets")
    try:
        assert condition(crd, "NamesAccepted")["reason"] == "KindConflict", crd["status"]
    finally:
        delete_crd_and_wait(cluster, crd["metadata"]["name"])


def test_the_names_that_do_not_conflict_are_accepted(cluster, widgets):
    crd = conflicting_definition(cluster, "yetmorewidgets")
    try:
        accepted = crd["status"]["acceptedNames"]
        assert (accepted.get("plural"), accepted.get("singular"), accepted.get("listKind"),
                accepted.get("kind") or "") == \
            ("yetmorewidgets", "yetmorewidget", "YetmorewidgetsList", ""), accepted
    finally:
        delete_crd_and_wait(cluster, crd["metadata"]["name"])


def test_a_definition_named_other_than_plural_dot_group_is_invalid(cluster):
    body = simple_crd(own_group(), "things", "Thing")
    body["metadata"]["name"] = "wrong.example.com"
    st = assert_status(cluster.post(CRDS, body), 422, "Invalid")
    assert 'metadata.name: Invalid value: "wrong.example.com": must be ' \
           'spec.names.plural+"."+spec.group' in st["message"], st


def test_a_definition_needs_exactly_one_storage_version_and_a_known_scope(cluster):
    body = simple_crd(own_group(), "things", "Thing", scope="Global")
    body["spec"]["versions"][0]["storage"] = False
    st = assert_status(cluster.post(CRDS, body), 422, "Invalid")
    assert "must have exactly one version marked as storage version" in st["message"], st
    assert 'spec.scope: Unsupported value: "Global": supported values: "Cluster", ' \
           '"Namespaced"' in st["message"], st
    fields = {c.get("field") for c in st["details"]["causes"]}
    assert {"spec.versions", "spec.scope"} <= fields, st


def test_a_definition_group_must_be_a_domain_with_a_dot(cluster):
    body = simple_crd("example", "things", "Thing")
    st = assert_status(cluster.post(CRDS, body), 422, "Invalid")
    assert 'spec.group: Invalid value: "example": should be a domain with at least one dot' \
        in st["message"], st


def test_a_protected_group_needs_the_api_approved_annotation(cluster):
    group = f"e2e-{rand_suffix()}.k8s.io"
    body = simple_crd(group, "things", "Thing")
    st = assert_status(cluster.post(CRDS, body), 422, "Invalid")
    assert ("metadata.annotations[api-approved.kubernetes.io]: Required value: protected "
            'groups must have approval annotation "api-approved.kubernetes.io", see '
            "https://github.com/kubernetes/enhancements/pull/1111") in st["message"], st
    body["metadata"]["annotations"] = {
        "api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/1111"}
    cluster.ok("POST", CRDS, body=body, expect=(201,))


def test_changing_the_storage_version_appends_to_stored_versions(cluster, ns):
    group = own_group()
    body = simple_crd(group, "shifts", "Shift")
    v1 = body["spec"]["versions"][0]
    body["spec"]["versions"].append(dict(v1, name="v2", storage=False))
    create_crd(cluster, body)
    cluster.ok("POST", f"/apis/{group}/v1/namespaces/{ns}/shifts",
               body={"apiVersion": f"{group}/v1", "kind": "Shift", "metadata": {"name": "s"}},
               expect=(201,))
    cluster.ok("PATCH", f"{CRDS}/shifts.{group}", body=[
        {"op": "replace", "path": "/spec/versions/0/storage", "value": False},
        {"op": "replace", "path": "/spec/versions/1/storage", "value": True}],
        headers={"Content-Type": "application/json-patch+json"})
    crd = wait_crd(cluster, f"shifts.{group}", lambda c: len(c["status"]["storedVersions"]) == 2,
                   "two stored versions", timeout=5)
    assert crd["status"]["storedVersions"] == ["v1", "v2"]
    got = cluster.ok("GET", f"/apis/{group}/v2/namespaces/{ns}/shifts/s")
    assert got["apiVersion"] == f"{group}/v2"


# ---------------------------------------------------------------------------------------------
# CRUD


def test_create_get_list_update_delete_over_rest(cluster, widgets, ns):
    created = create_widget(cluster, ns, "w1", size=3, labels={"app": "w1"})
    md = created["metadata"]
    assert (created["apiVersion"], created["kind"]) == (f"{GROUP}/v1", "Widget")
    assert md["namespace"] == ns and md["uid"] and md["resourceVersion"] and \
        md["creationTimestamp"] and md["generation"] == 1
    assert created["spec"] == {"color": "blue", "size": 3}

    got = cluster.ok("GET", wpath(ns, "w1"))
    assert got["metadata"]["uid"] == md["uid"] and got["spec"] == created["spec"]

    listing = cluster.ok("GET", wpath(ns))
    assert (listing["apiVersion"], listing["kind"]) == (f"{GROUP}/v1", "WidgetList")
    assert listing["metadata"]["resourceVersion"]
    assert names_of(listing) == ["w1"]
    assert listing["items"][0]["apiVersion"] == f"{GROUP}/v1"
    assert listing["items"][0]["kind"] == "Widget"

    got["spec"]["size"] = 4
    updated = cluster.ok("PUT", wpath(ns, "w1"), body=got)
    assert updated["spec"]["size"] == 4 and updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(md["resourceVersion"])

    r = cluster.delete(wpath(ns, "w1"))
    assert r.status_code == 200, r.text
    st = r.json()  # upstream's store answers a Status for custom resources, not the object
    assert (st["kind"], st["status"]) == ("Status", "Success"), st
    assert st["details"] == {"name": "w1", "group": GROUP, "kind": "widgets",
                             "uid": md["uid"]}, st
    assert_status(cluster.get(wpath(ns, "w1")), 404, "NotFound")


def test_errors_name_the_group_qualified_resource(cluster, widgets, ns):
    create_widget(cluster, ns, "dup")
    st = assert_status(cluster.post(wpath(ns), widget("dup")), 409, "AlreadyExists")
    assert st["message"] == f'widgets.{GROUP} "dup" already exists', st
    assert st["details"] == {"name": "dup", "group": GROUP, "kind": "widgets"}, st

    st = assert_status(cluster.get(wpath(ns, "nope")), 404, "NotFound")
    assert st["message"] == f'widgets.{GROUP} "nope" not found', st

    stale = cluster.ok("GET", wpath(ns, "dup"))
    stale["spec"]["size"] = 9
    cluster.ok("PATCH", wpath(ns, "dup"), body={"spec": {"size": 2}},
               headers={"Content-Type": "application/merge-patch+json"})
    st = assert_status(cluster.put(wpath(ns, "dup"), stale), 409, "Conflict")
    assert st["message"] == (f'Operation cannot be fulfilled on widgets.{GROUP} "dup": the '
                             "object has been modified; please apply your changes to the "
                             "latest version and try again"), st


def test_an_update_without_resource_version_is_refused(cluster, widgets, ns):
    # custom resources do not allow unconditional updates
    create_widget(cluster, ns, "uncond")
    body = widget("uncond", size=5)
    st = assert_status(cluster.put(wpath(ns, "uncond"), body), 422, "Invalid")
    assert "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update" \
        in st["message"], st
    assert cluster.ok("GET", wpath(ns, "uncond"))["spec"]["size"] == 1


def test_invalid_object_names_are_refused(cluster, widgets, ns):
    st = assert_status(cluster.post(wpath(ns), widget("Bad_Name")), 422, "Invalid")
    assert st["message"].startswith(f'Widget.{GROUP} "Bad_Name" is invalid: metadata.name: '
                                    'Invalid value: "Bad_Name"'), st
    assert st["details"]["kind"] == "Widget" and st["details"]["group"] == GROUP
    assert any(c.get("field") == "metadata.name" for c in st["details"]["causes"]), st


def test_create_in_a_missing_namespace_is_not_found(cluster, widgets):
    st = assert_status(cluster.post(wpath("no-such-ns-e2e"), widget("w")), 404, "NotFound")
    assert st["message"] == 'namespaces "no-such-ns-e2e" not found', st


def test_generate_name_makes_a_unique_name(cluster, widgets, ns):
    body = widget("")
    body["metadata"] = {"generateName": "gen-"}
    a = cluster.ok("POST", wpath(ns), body=body, expect=(201,))
    b = cluster.ok("POST", wpath(ns), body=body, expect=(201,))
    assert a["metadata"]["name"].startswith("gen-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


def test_kubectl_create_get_replace_delete(kubectl, widgets, ns):
    doc = json.dumps(widget("kw", size=2))
    assert kubectl("create", "-n", ns, "-f", "-", input=doc).strip() == \
        f"widget.{GROUP}/kw created"
    err = kubectl.fail("create", "-n", ns, "-f", "-", input=doc)
    assert f'widgets.{GROUP} "kw" already exists' in err, err
    got = kubectl.json("get", "widget", "kw", "-n", ns)
    assert got["spec"] == {"color": "blue", "size": 2}
    got["spec"]["size"] = 5
    assert kubectl("replace", "-f", "-", input=json.dumps(got)).strip() == \
        f"widget.{GROUP}/kw replaced"
    assert kubectl("get", "wd", "kw", "-n", ns, "-o", "jsonpath={.spec.size}") == "5"
    assert kubectl("label", "wd", "kw", "-n", ns, "tier=gold").strip() == \
        f"widget.{GROUP}/kw labeled"
    assert kubectl("delete", "widget", "kw", "-n", ns).strip() == f'widget.{GROUP} "kw" deleted'
    err = kubectl.fail("get", "widget", "kw", "-n", ns)
    assert f'Error from server (NotFound): widgets.{GROUP} "kw" not found' in err, err


def test_kubectl_apply_client_side_creates_then_patches(kubectl, widgets, ns):
    doc = widget("ap", size=1, labels={"a": "1"})
    assert kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc)).strip() == \
        f"widget.{GROUP}/ap created"
    doc["spec"]["size"] = 6
    del doc["metadata"]["labels"]
    assert kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc)).strip() == \
        f"widget.{GROUP}/ap configured"
    got = kubectl.json("get", "widget", "ap", "-n", ns)
    assert got["spec"]["size"] == 6
    assert "labels" not in got["metadata"] or "a" not in got["metadata"]["labels"], got
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]


def test_kubectl_apply_server_side(kubectl, widgets, ns):
    doc = widget("ssa", size=1)
    out = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(doc))
    assert out.strip() == f"widget.{GROUP}/ssa serverside-applied"
    doc["spec"]["size"] = 7
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(doc))
    assert kubectl.json("get", "widget", "ssa", "-n", ns)["spec"] == {"color": "blue", "size": 7}


def managers(obj):
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields") or []}


def test_server_side_apply_records_its_manager_on_a_custom_resource(kubectl, widgets, ns):
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(widget("mf")))
    owned = managers(kubectl.json("get", "widget", "mf", "-n", ns, "--show-managed-fields"))
    assert owned == {("kubectl", "Apply", ""): {"f:spec": {"f:color": {}, "f:size": {}}}}, owned


def test_server_side_apply_on_a_custom_resource_conflicts_until_forced(kubectl, widgets, ns):
    kubectl("apply", "--server-side", "--field-manager", "alice", "-n", ns, "-f", "-",
            input=json.dumps(widget("cf", color="red", size=1)))
    doc = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "cf"},
           "spec": {"size": 2}}
    err = kubectl.fail("apply", "--server-side", "--field-manager", "bob", "-n", ns, "-f", "-",
                       input=json.dumps(doc))
    assert 'Apply failed with 1 conflict: conflict with "alice": .spec.size' in err, err
    kubectl("apply", "--server-side", "--field-manager", "bob", "--force-conflicts", "-n", ns,
            "-f", "-", input=json.dumps(doc))
    got = kubectl.json("get", "widget", "cf", "-n", ns, "--show-managed-fields")
    assert got["spec"] == {"color": "red", "size": 2}
    owned = managers(got)
    assert owned[("alice", "Apply", "")] == {"f:spec": {"f:color": {}}}, owned
    assert owned[("bob", "Apply", "")] == {"f:spec": {"f:size": {}}}, owned


def test_status_writes_are_managed_under_the_status_subresource(cluster, widgets, ns):
    create_widget(cluster, ns, "mst")
    cluster.ok("PATCH", wpath(ns, "mst", "status"), body={"status": {"phase": "Up"}},
               params={"fieldManager": "e2e-status"},
               headers={"Content-Type": "application/merge-patch+json"})
    owned = managers(cluster.ok("GET", wpath(ns, "mst")))
    # ("." : the update created the status map itself)
    assert owned[("e2e-status", "Update", "status")] == {"f:status": {".": {}, "f:phase": {}}}, \
        owned


def test_list_is_paginated_with_limit_and_continue(cluster, widgets, ns):
    for i in range(5):
        create_widget(cluster, ns, f"page{i}")
    first = cluster.ok("GET", wpath(ns), params={"limit": 2})
    assert names_of(first) == ["page0", "page1"]
    assert first["metadata"]["continue"] and first["metadata"]["remainingItemCount"] == 3
    second = cluster.ok("GET", wpath(ns), params={"limit": 2,
                                                  "continue": first["metadata"]["continue"]})
    assert names_of(second) == ["page2", "page3"]
    third = cluster.ok("GET", wpath(ns), params={"limit": 2,
                                                 "continue": second["metadata"]["continue"]})
    assert names_of(third) == ["page4"] and not third["metadata"].get("continue")


def test_dry_run_create_and_delete_persist_nothing(cluster, widgets, ns):
    out = cluster.ok("POST", wpath(ns), body=widget("dry"), params={"dryRun": "All"},
                     expect=(201,))
    assert out["metadata"]["name"] == "dry"
    assert_status(cluster.get(wpath(ns, "dry")), 404, "NotFound")
    create_widget(cluster, ns, "wet")
    cluster.ok("DELETE", wpath(ns, "wet"), params={"dryRun": "All"})
    cluster.ok("GET", wpath(ns, "wet"))


def test_a_finalizer_holds_the_deletion_of_a_custom_resource(cluster, widgets, ns):
    create_widget(cluster, ns, "fin", finalizers=["e2e.krust.dev/hold"])
    r = cluster.delete(wpath(ns, "fin"))
    assert r.status_code == 200, r.text
    obj = r.json()  # not deleted yet: the object itself, marked
    assert obj["kind"] == "Widget" and obj["metadata"]["deletionTimestamp"], obj
    assert cluster.ok("GET", wpath(ns, "fin"))["metadata"]["deletionTimestamp"]
    cluster.ok("PATCH", wpath(ns, "fin"), body={"metadata": {"finalizers": None}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert_status(cluster.get(wpath(ns, "fin")), 404, "NotFound")


def test_deleting_a_namespace_deletes_its_custom_resources(cluster, widgets, ns_name):
    cluster.create_namespace(ns_name)
    create_widget(cluster, ns_name, "doomed")
    cluster.ok("DELETE", f"/api/v1/namespaces/{ns_name}")
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns_name}").status_code == 404, 30,
             interval=0.2, what="the namespace gone")
    assert cluster.ok("GET", f"{W}/widgets",
                      params={"fieldSelector": f"metadata.namespace={ns_name}"})["items"] == []


def test_garbage_collector_deletes_a_custom_resource_whose_owner_is_gone(cluster, widgets, ns):
    owner = cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, expect=(201,))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
           "uid": owner["metadata"]["uid"]}
    create_widget(cluster, ns, "owned", ownerReferences=[ref])
    cluster.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner")
    wait_for(lambda: cluster.get(wpath(ns, "owned")).status_code == 404, 30, interval=0.2,
             what="the owned widget collected")


def test_garbage_collector_deletes_the_dependents_of_a_custom_resource(cluster, widgets, ns):
    owner = create_widget(cluster, ns, "parent")
    ref = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "name": "parent",
           "uid": owner["metadata"]["uid"]}
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "child", "ownerReferences": [ref]}}, expect=(201,))
    cluster.ok("DELETE", wpath(ns, "parent"))
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}/configmaps/child").status_code
             == 404, 30, interval=0.2, what="the child collected")


def test_foreground_deletion_of_a_custom_resource_waits_for_its_dependents(cluster, widgets,
                                                                            ns):
    owner = create_widget(cluster, ns, "fg-parent")
    ref = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "name": "fg-parent",
           "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}
    create_widget(cluster, ns, "fg-child", ownerReferences=[ref],
                  finalizers=["e2e.krust.dev/hold"])
    out = cluster.ok("DELETE", wpath(ns, "fg-parent"),
                     body={"kind": "DeleteOptions", "apiVersion": "v1",
                           "propagationPolicy": "Foreground"})
    assert "foregroundDeletion" in out["metadata"]["finalizers"], out["metadata"]
    wait_for(lambda: cluster.ok("GET", wpath(ns, "fg-child"))["metadata"]
             .get("deletionTimestamp"), 30, interval=0.2, what="the child being deleted")
    assert cluster.get(wpath(ns, "fg-parent")).status_code == 200
    cluster.ok("PATCH", wpath(ns, "fg-child"), body={"metadata": {"finalizers": None}},
               headers={"Content-Type": "application/merge-patch+json"})
    wait_for(lambda: cluster.get(wpath(ns, "fg-parent")).status_code == 404, 30,
             interval=0.2, what="the parent gone after its child")


def test_json_is_chosen_when_protobuf_is_offered_too(cluster, widgets, ns):
    create_widget(cluster, ns, "neg")
    # what client-go sends when configured for protobuf: custom resources have no protobuf
    r = cluster.get(wpath(ns, "neg"),
                    headers={"Accept": "application/vnd.kubernetes.protobuf,application/json"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["kind"] == "Widget"


def test_protobuf_only_is_not_acceptable(cluster, widgets, ns):
    create_widget(cluster, ns, "neg-pb")
    assert_status(cluster.get(wpath(ns, "neg-pb"),
                              headers={"Accept": "application/vnd.kubernetes.protobuf"}),
                  406, "NotAcceptable")


def test_kubectl_describe_shows_the_fields(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "desc", color="green", size=3)
    out = kubectl("describe", "widget", "desc", "-n", ns)
    lines = [ln.split() for ln in out.splitlines()]
    assert ["Name:", "desc"] in lines and ["Namespace:", ns] in lines, out
    assert ["API", "Version:", f"{GROUP}/v1"] in lines and ["Kind:", "Widget"] in lines, out
    assert ["Color:", "green"] in lines and ["Size:", "3"] in lines, out


def test_kubectl_wait_for_a_jsonpath_value(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "waited")
    bg = kubectl.background("wait", "widget/waited", "-n", ns, "--timeout=30s",
                            "--for=jsonpath={.status.phase}=Ready")
    try:
        time.sleep(0.5)
        cluster.ok("PATCH", wpath(ns, "waited", "status"), body={"status": {"phase": "Ready"}},
                   headers={"Content-Type": "application/merge-patch+json"})
        bg.expect(rf"^widget.{GROUP}/waited condition met$")
        assert bg.wait(10) == 0
    finally:
        bg.stop()


def test_a_deprecated_version_answers_with_its_warning(cluster, ns):
    group = own_group()
    body = simple_crd(group, "olds", "Old")
    v1 = body["spec"]["versions"][0]
    body["spec"]["versions"].insert(0, dict(v1, name="v1alpha1", storage=False, deprecated=True,
                                            deprecationWarning="v1alpha1 is going away"))
    create_crd(cluster, body)
    r = cluster.get(f"/apis/{group}/v1alpha1/namespaces/{ns}/olds")
    assert r.status_code == 200, r.text
    assert r.headers.get("Warning") == '299 - "v1alpha1 is going away"', r.headers
    r = cluster.get(f"/apis/{group}/v1/namespaces/{ns}/olds")
    assert "Warning" not in r.headers, r.headers


def test_an_object_count_quota_limits_custom_resources(cluster, widgets, ns):
    res = f"count/widgets.{GROUP}"
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body={
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "wq"},
        "spec": {"hard": {res: "1"}}}, expect=(201,))
    wait_for(lambda: (cluster.ok("GET", f"/api/v1/namespaces/{ns}/resourcequotas/wq")
                      .get("status") or {}).get("used", {}).get(res) == "0", 10,
             what="the quota's usage")
    create_widget(cluster, ns, "q1")
    wait_for(lambda: cluster.ok("GET", f"/api/v1/namespaces/{ns}/resourcequotas/wq")
             ["status"]["used"][res] == "1", 10, what="the quota charged")
    st = assert_status(cluster.post(wpath(ns), widget("q2")), 403, "Forbidden")
    assert st["message"] == (f'widgets.{GROUP} "q2" is forbidden: exceeded quota: wq, '
                             f"requested: {res}=1, used: {res}=1, limited: {res}=1"), st


def test_kubectl_diff_shows_a_change_without_making_it(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "df", size=1)
    p = kubectl.run("diff", "-n", ns, "-f", "-", input=json.dumps(widget("df", size=2)))
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    changed = [ln for ln in p.stdout.splitlines() if ln[:1] in "+-" and "size" in ln]
    assert [ln.split() for ln in changed] == [["-", "size:", "1"], ["+", "size:", "2"]], p.stdout
    assert cluster.ok("GET", wpath(ns, "df"))["spec"]["size"] == 1


# ---------------------------------------------------------------------------------------------
# patch types


def test_json_patch_and_merge_patch(cluster, widgets, ns):
    create_widget(cluster, ns, "p", size=1, labels={"a": "1"})
    out = cluster.ok("PATCH", wpath(ns, "p"), body={"spec": {"size": 2, "color": None},
                                                      "metadata": {"labels": {"b": "2"}}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert out["spec"] == {"size": 2}, out["spec"]
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    out = cluster.ok("PATCH", wpath(ns, "p"), body=[
        {"op": "test", "path": "/spec/size", "value": 2},
        {"op": "replace", "path": "/spec/size", "value": 3},
        {"op": "add", "path": "/spec/color", "value": "red"},
        {"op": "remove", "path": "/metadata/labels/a"}],
        headers={"Content-Type": "application/json-patch+json"})
    assert out["spec"] == {"size": 3, "color": "red"}
    assert out["metadata"]["labels"] == {"b": "2"}
    r = cluster.patch(wpath(ns, "p"), [{"op": "test", "path": "/spec/size", "value": 99}],
                      ptype="json")
    assert r.status_code == 422, r.text


def test_strategic_merge_patch_is_unsupported_media_type(cluster, widgets, ns):
    create_widget(cluster, ns, "smp")
    st = assert_status(cluster.patch(wpath(ns, "smp"), {"spec": {"size": 2}},
                                     ptype="strategic"), 415, "UnsupportedMediaType")
    assert st["message"] == ("the body of the request was in an unknown format - accepted media "
                             "types include: application/json-patch+json, "
                             "application/merge-patch+json, application/apply-patch+yaml"), st


def test_kubectl_patch_strategic_fails_and_merge_succeeds(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "kp", size=1)
    err = kubectl.fail("patch", "widget", "kp", "-n", ns, "--type=strategic",
                       "-p", '{"spec":{"size":2}}')
    assert ("the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml") in err, err
    out = kubectl("patch", "widget", "kp", "-n", ns, "--type=merge", "-p", '{"spec":{"size":2}}')
    assert out.strip() == f"widget.{GROUP}/kp patched"
    out = kubectl("patch", "widget", "kp", "-n", ns, "--type=json",
                  "-p", '[{"op":"replace","path":"/spec/size","value":3}]')
    assert out.strip() == f"widget.{GROUP}/kp patched"
    assert cluster.ok("GET", wpath(ns, "kp"))["spec"]["size"] == 3


# ---------------------------------------------------------------------------------------------
# collections and selectors


def test_kubectl_delete_all_deletes_the_collection_of_one_namespace_only(kubectl, cluster,
                                                                        widgets, ns):
    other = f"{ns}-b"
    cluster.create_namespace(other)
    try:
        for n in ("a", "b", "c"):
            create_widget(cluster, ns, n)
        create_widget(cluster, other, "keep")
        out = kubectl("delete", "widgets", "--all", "-n", ns)
        assert sorted(out.split("\n")[:-1]) == \
            sorted(f'widget.{GROUP} "{n}" deleted' for n in "abc"), out
        assert cluster.ok("GET", wpath(ns))["items"] == []
        assert names_of(cluster.ok("GET", wpath(other))) == ["keep"]
    finally:
        cluster.delete_namespace(other)


def test_deletecollection_over_rest_honours_a_label_selector(cluster, widgets, ns):
    create_widget(cluster, ns, "x1", labels={"tier": "x"})
    create_widget(cluster, ns, "x2", labels={"tier": "x"})
    create_widget(cluster, ns, "y1", labels={"tier": "y"})
    out = cluster.ok("DELETE", wpath(ns), params={"labelSelector": "tier=x"})
    assert out["kind"] == "WidgetList", out
    assert names_of(out) == ["x1", "x2"]
    assert names_of(cluster.ok("GET", wpath(ns))) == ["y1"]


def test_label_selectors(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "b1", labels={"color": "blue", "tier": "1"})
    create_widget(cluster, ns, "b2", labels={"color": "blue", "tier": "2"})
    create_widget(cluster, ns, "r1", labels={"color": "red"})
    assert names_of(cluster.ok("GET", wpath(ns), params={"labelSelector": "color=blue"})) == \
        ["b1", "b2"]
    assert names_of(cluster.ok("GET", wpath(ns), params={"labelSelector": "color!=blue"})) == \
        ["r1"]
    assert names_of(cluster.ok("GET", wpath(ns), params={"labelSelector": "tier in (2,3)"})) == \
        ["b2"]
    assert names_of(cluster.ok("GET", wpath(ns), params={"labelSelector": "!tier"})) == ["r1"]
    out = kubectl("get", "widgets", "-n", ns, "-l", "color=blue,tier=1", "-o", "name")
    assert out.split() == [f"widget.{GROUP}/b1"]


def test_field_selectors_on_name_and_namespace(cluster, widgets, ns):
    other = f"{ns}-b"
    cluster.create_namespace(other)
    try:
        create_widget(cluster, ns, "f1")
        create_widget(cluster, ns, "f2")
        create_widget(cluster, other, "f1")
        assert names_of(cluster.ok("GET", wpath(ns),
                                   params={"fieldSelector": "metadata.name=f2"})) == ["f2"]
        assert names_of(cluster.ok("GET", wpath(ns),
                                   params={"fieldSelector": "metadata.name!=f2"})) == ["f1"]
        everywhere = cluster.ok("GET", f"{W}/widgets",
                                params={"fieldSelector": f"metadata.namespace={other}"})
        assert [(i["metadata"]["namespace"], i["metadata"]["name"])
                for i in everywhere["items"]] == [(other, "f1")]
        both = cluster.ok("GET", f"{W}/widgets", params={"fieldSelector": "metadata.name=f1"})
        assert sorted(i["metadata"]["namespace"] for i in both["items"]) == sorted([ns, other])
    finally:
        cluster.delete_namespace(other)


def test_selectable_fields_select_on_the_spec(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "blue1", color="blue")
    create_widget(cluster, ns, "blue2", color="blue")
    create_widget(cluster, ns, "red1", color="red")
    assert names_of(cluster.ok("GET", wpath(ns),
                               params={"fieldSelector": "spec.color=red"})) == ["red1"]
    assert names_of(cluster.ok("GET", wpath(ns),
                               params={"fieldSelector": "spec.color!=red"})) == ["blue1", "blue2"]
    out = kubectl("get", "widgets", "-n", ns, "--field-selector", "spec.color=blue", "-o", "name")
    assert sorted(out.split()) == [f"widget.{GROUP}/blue1", f"widget.{GROUP}/blue2"]


def test_a_field_that_is_not_selectable_is_a_bad_request(kubectl, cluster, widgets, ns):
    st = assert_status(cluster.get(wpath(ns), params={"fieldSelector": "spec.size=1"}),
                       400, "BadRequest")
    assert st["message"] == "field label not supported: spec.size", st
    # spec.color is selectable in v1 only
    st = assert_status(cluster.get(wpath(ns, base=W_BETA),
                                   params={"fieldSelector": "spec.color=red"}), 400, "BadRequest")
    assert st["message"] == "field label not supported: spec.color", st
    err = kubectl.fail("get", "widgets", "-n", ns, "--field-selector", "spec.size=1")
    assert "field label not supported: spec.size" in err, err


# ---------------------------------------------------------------------------------------------
# watch


def test_rest_watch_sees_added_modified_deleted(cluster, widgets, ns):
    rv = cluster.ok("GET", wpath(ns))["metadata"]["resourceVersion"]
    w = cluster.watch(wpath(ns), {"resourceVersion": rv})
    try:
        assert w.status == 200, w.body
        create_widget(cluster, ns, "wa", size=1)
        cluster.ok("PATCH", wpath(ns, "wa"), body={"spec": {"size": 2}},
                   headers={"Content-Type": "application/merge-patch+json"})
        cluster.ok("DELETE", wpath(ns, "wa"))
        evs = w.take(3)
        assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"], evs
        assert all(e["object"]["kind"] == "Widget" and
                   e["object"]["apiVersion"] == f"{GROUP}/v1" for e in evs)
        assert evs[1]["object"]["spec"]["size"] == 2
    finally:
        w.close()


def test_a_watch_across_namespaces_sees_every_namespace(cluster, widgets, ns):
    other = f"{ns}-b"
    cluster.create_namespace(other)
    try:
        rv = cluster.ok("GET", f"{W}/widgets")["metadata"]["resourceVersion"]
        w = cluster.watch(f"{W}/widgets", {"resourceVersion": rv})
        try:
            create_widget(cluster, ns, "here")
            create_widget(cluster, other, "there")
            # Widgets of earlier tests' namespaces may still be going (namespace deletion is
            # asynchronous): the watch sees them too, rightly; only these two are checked.
            evs = []
            while len(evs) < 2:
                ev = w.take(1)[0]
                if ev["object"]["metadata"]["namespace"] in (ns, other):
                    evs.append(ev)
            assert sorted((e["type"], e["object"]["metadata"]["namespace"],
                           e["object"]["metadata"]["name"]) for e in evs) == \
                sorted([("ADDED", ns, "here"), ("ADDED", other, "there")]), evs
        finally:
            w.close()
    finally:
        cluster.delete_namespace(other)


def test_watch_with_a_selectable_field_sees_objects_leave_the_selection(cluster, widgets, ns):
    rv = cluster.ok("GET", wpath(ns))["metadata"]["resourceVersion"]
    w = cluster.watch(wpath(ns), {"resourceVersion": rv, "fieldSelector": "spec.color=red"})
    try:
        assert w.status == 200, w.body
        create_widget(cluster, ns, "sel-blue", color="blue")
        create_widget(cluster, ns, "sel-red", color="red")
        cluster.ok("PATCH", wpath(ns, "sel-red"), body={"spec": {"color": "green"}},
                   headers={"Content-Type": "application/merge-patch+json"})
        evs = w.take(2)
        # as upstream's watch cache does: an object that stops matching is a DELETED event
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == \
            [("ADDED", "sel-red"), ("DELETED", "sel-red")], evs
    finally:
        w.close()


def test_kubectl_get_watch_prints_changes(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "kw1", size=3)
    bg = kubectl.background("get", "widgets", "-n", ns, "-w")
    try:
        bg.expect(r"^NAME\s+COLOR\s+SIZE\s+READY\s+AGE")
        bg.expect(r"^kw1\s+blue\s+3\s")
        cluster.ok("PATCH", wpath(ns, "kw1"), body={"spec": {"size": 7}},
                   headers={"Content-Type": "application/merge-patch+json"})
        bg.expect(r"^kw1\s+blue\s+7\s")
        create_widget(cluster, ns, "kw2", color="red", size=1)
        bg.expect(r"^kw2\s+red\s+1\s")
    finally:
        bg.stop()


# ---------------------------------------------------------------------------------------------
# status subresource


def test_create_ignores_status_and_sets_generation_1(cluster, widgets, ns):
    body = widget("st0")
    body["status"] = {"phase": "Ready"}
    created = cluster.ok("POST", wpath(ns), body=body, expect=(201,))
    assert "status" not in created, created
    assert created["metadata"]["generation"] == 1


def test_writes_to_the_main_resource_ignore_status(cluster, widgets, ns):
    create_widget(cluster, ns, "st1")
    cur = cluster.ok("PUT", wpath(ns, "st1", "status"),
                     body={**cluster.ok("GET", wpath(ns, "st1")), "status": {"phase": "Ready"}})
    assert cur["status"] == {"phase": "Ready"}
    cur["status"] = {"phase": "Broken"}
    cur["spec"]["size"] = 2
    out = cluster.ok("PUT", wpath(ns, "st1"), body=cur)
    assert out["status"] == {"phase": "Ready"} and out["spec"]["size"] == 2
    out = cluster.ok("PATCH", wpath(ns, "st1"), body={"status": {"phase": "Broken"}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert out["status"] == {"phase": "Ready"}


def test_status_writes_ignore_spec_and_metadata(cluster, widgets, ns):
    create_widget(cluster, ns, "st2", size=1, labels={"a": "1"})
    cur = cluster.ok("GET", wpath(ns, "st2"))
    cur["spec"]["size"] = 50
    cur["metadata"]["labels"] = {"a": "2"}
    cur["status"] = {"phase": "Ready", "replicas": 1}
    out = cluster.ok("PUT", wpath(ns, "st2", "status"), body=cur)
    assert out["status"] == {"phase": "Ready", "replicas": 1}
    assert out["spec"]["size"] == 1 and out["metadata"]["labels"] == {"a": "1"}
    out = cluster.ok("PATCH", wpath(ns, "st2", "status"),
                     body={"spec": {"size": 60}, "status": {"phase": "Done"}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert out["status"] == {"phase": "Done", "replicas": 1} and out["spec"]["size"] == 1
    got = cluster.ok("GET", wpath(ns, "st2", "status"))
    assert got["kind"] == "Widget" and got["status"]["phase"] == "Done"


def test_kubectl_patches_the_status_subresource(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "kst", size=1)
    out = kubectl("patch", "widget", "kst", "-n", ns, "--subresource=status", "--type=merge",
                  "-p", '{"status":{"phase":"Patched"},"spec":{"size":9}}')
    assert out.strip() == f"widget.{GROUP}/kst patched"
    got = cluster.ok("GET", wpath(ns, "kst"))
    assert got["status"] == {"phase": "Patched"} and got["spec"]["size"] == 1


def test_generation_changes_with_spec_only(cluster, widgets, ns):
    create_widget(cluster, ns, "gen", size=1)

    def gen():
        return cluster.ok("GET", wpath(ns, "gen"))["metadata"]["generation"]

    merge = {"Content-Type": "application/merge-patch+json"}
    cluster.ok("PATCH", wpath(ns, "gen", "status"), body={"status": {"phase": "A"}},
               headers=merge)
    assert gen() == 1, "a status write bumped the generation"
    cluster.ok("PATCH", wpath(ns, "gen"), body={"metadata": {"labels": {"x": "y"},
                                                             "annotations": {"n": "1"}}},
               headers=merge)
    assert gen() == 1, "a metadata write bumped the generation"
    cluster.ok("PATCH", wpath(ns, "gen"), body={"spec": {"size": 2}}, headers=merge)
    assert gen() == 2
    cluster.ok("PATCH", wpath(ns, "gen"), body={"spec": {"size": 2}}, headers=merge)
    assert gen() == 2, "a no-op spec write bumped the generation"


def test_without_a_status_subresource_status_is_written_with_the_object(cluster, ns):
    group = own_group()
    create_crd(cluster, simple_crd(group, "plains", "Plain"))
    path = f"/apis/{group}/v1/namespaces/{ns}/plains"
    body = {"apiVersion": f"{group}/v1", "kind": "Plain", "metadata": {"name": "p"},
            "spec": {"a": 1}, "status": {"phase": "Set"}}
    created = cluster.ok("POST", path, body=body, expect=(201,))
    assert created["status"] == {"phase": "Set"}
    assert_status(cluster.get(f"{path}/p/status"), 404, "NotFound")
    out = cluster.ok("PATCH", f"{path}/p", body={"status": {"phase": "Other"}},
                     headers={"Content-Type": "application/merge-patch+json"})
    # without the status subresource every change outside metadata is a new generation
    assert out["status"] == {"phase": "Other"} and out["metadata"]["generation"] == 2


# ---------------------------------------------------------------------------------------------
# scale subresource


def test_scale_subresource_reads_replicas_and_selector(cluster, widgets, ns):
    created = create_widget(cluster, ns, "sc", replicas=2)
    cluster.ok("PATCH", wpath(ns, "sc", "status"),
               body={"status": {"replicas": 1, "selector": "app=sc"}},
               headers={"Content-Type": "application/merge-patch+json"})
    scale = cluster.ok("GET", wpath(ns, "sc", "scale"))
    assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale"), scale
    assert scale["metadata"]["name"] == "sc" and scale["metadata"]["namespace"] == ns
    assert scale["metadata"]["uid"] == created["metadata"]["uid"]
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "app=sc"}


def test_scale_writes_spec_replicas(cluster, widgets, ns):
    create_widget(cluster, ns, "sw", replicas=1)
    scale = cluster.ok("GET", wpath(ns, "sw", "scale"))
    scale["spec"]["replicas"] = 4
    out = cluster.ok("PUT", wpath(ns, "sw", "scale"), body=scale)
    assert out["kind"] == "Scale" and out["spec"]["replicas"] == 4
    obj = cluster.ok("GET", wpath(ns, "sw"))
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["generation"] == 2
    out = cluster.ok("PATCH", wpath(ns, "sw", "scale"), body={"spec": {"replicas": 6}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert out["spec"]["replicas"] == 6
    assert cluster.ok("GET", wpath(ns, "sw"))["spec"]["replicas"] == 6


def test_scale_of_an_object_without_replicas_reads_zero(cluster, widgets, ns):
    create_widget(cluster, ns, "sz")
    scale = cluster.ok("GET", wpath(ns, "sz", "scale"))
    assert scale["spec"].get("replicas", 0) == 0 and scale["status"]["replicas"] == 0, scale
    assert not scale["status"].get("selector"), scale


def test_scale_omits_zero_replicas_and_an_empty_selector(cluster, widgets, ns):
    create_widget(cluster, ns, "sz0")
    scale = cluster.ok("GET", wpath(ns, "sz0", "scale"))
    assert scale["spec"] == {} and scale["status"] == {"replicas": 0}, scale


def test_kubectl_scale(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "ks", replicas=1)
    assert kubectl("scale", "widget", "ks", "-n", ns, "--replicas=5").strip() == \
        f"widget.{GROUP}/ks scaled"
    assert cluster.ok("GET", wpath(ns, "ks"))["spec"]["replicas"] == 5
    err = kubectl.fail("scale", "widget", "ks", "-n", ns, "--replicas=3",
                       "--current-replicas=4")
    assert "Expected replicas to be 4, was 5" in err, err


def test_scale_is_not_served_where_the_version_does_not_declare_it(cluster, widgets, ns):
    create_widget(cluster, ns, "nosc", replicas=1)
    assert_status(cluster.get(wpath(ns, "nosc", "scale", base=W_BETA)), 404, "NotFound")


# ---------------------------------------------------------------------------------------------
# printer columns


def test_kubectl_get_shows_the_additional_printer_columns(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "pc", color="green", size=12)
    cluster.ok("PATCH", wpath(ns, "pc", "status"), body={"status": {
        "phase": "Running", "conditions": [{"type": "Synced", "status": "False"},
                                           {"type": "Ready", "status": "True"}]}},
        headers={"Content-Type": "application/merge-patch+json"})
    cols, rows = parse_table(kubectl("get", "widgets", "-n", ns))
    assert cols == ["NAME", "COLOR", "SIZE", "READY", "AGE"], cols
    assert (rows[0]["NAME"], rows[0]["COLOR"], rows[0]["SIZE"], rows[0]["READY"]) == \
        ("pc", "green", "12", "True"), rows
    assert rows[0]["AGE"][-1] in "smh" and rows[0]["AGE"][:-1].isdigit(), rows[0]
    cols, rows = parse_table(kubectl("get", "widgets", "-n", ns, "-o", "wide"))
    assert cols == ["NAME", "COLOR", "SIZE", "READY", "AGE", "PHASE"], cols
    assert rows[0]["PHASE"] == "Running"
    cols, rows = parse_table(kubectl("get", "widgets", "-A", "--field-selector",
                                     f"metadata.namespace={ns}"))
    assert cols == ["NAMESPACE", "NAME", "COLOR", "SIZE", "READY", "AGE"], cols
    assert (rows[0]["NAMESPACE"], rows[0]["NAME"]) == (ns, "pc")


def test_server_side_table_has_typed_column_definitions(cluster, widgets, ns):
    create_widget(cluster, ns, "tb", color="red", size=3)
    r = cluster.get(wpath(ns), headers={"Accept": TABLE})
    assert r.status_code == 200, r.text[:500]
    table = r.json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    defs = [(c["name"], c["type"], c.get("format", ""), c.get("priority", 0))
            for c in table["columnDefinitions"]]
    assert defs == [("Name", "string", "name", 0), ("Color", "string", "", 0),
                    ("Size", "integer", "", 0), ("Ready", "string", "", 0),
                    ("Age", "date", "", 0), ("Phase", "string", "", 1)], defs
    (row,) = table["rows"]
    name, color, size, ready, _age, phase = row["cells"]
    # a path that finds nothing is a null cell
    assert (name, color, size, ready, phase) == ("tb", "red", 3, None, None), row["cells"]
    assert row["object"]["kind"] == "PartialObjectMetadata", row["object"]
    assert row["object"]["metadata"]["name"] == "tb"


def test_printer_columns_are_per_version(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "pv")
    cols, rows = parse_table(kubectl("get", f"widgets.v1beta1.{GROUP}", "-n", ns))
    assert cols == ["NAME", "AGE"], cols  # v1beta1 declares no columns
    assert rows[0]["NAME"] == "pv"


def test_the_default_age_column_is_of_type_date(cluster, widgets, ns):
    create_widget(cluster, ns, "dage")
    table = cluster.ok("GET", wpath(ns, base=W_BETA), headers={"Accept": TABLE})
    defs = [(c["name"], c["type"], c.get("format", "")) for c in table["columnDefinitions"]]
    assert defs == [("Name", "string", "name"), ("Age", "date", "")], defs


def test_without_printer_columns_kubectl_shows_name_and_age(kubectl, cluster):
    group = own_group()
    create_crd(cluster, simple_crd(group, "bares", "Bare", scope="Cluster"))
    name = f"bare-{rand_suffix()}"
    cluster.ok("POST", f"/apis/{group}/v1/bares",
               body={"apiVersion": f"{group}/v1", "kind": "Bare", "metadata": {"name": name}},
               expect=(201,))
    cols, rows = parse_table(kubectl("get", f"bares.{group}"))
    assert cols == ["NAME", "AGE"], cols
    assert [r["NAME"] for r in rows] == [name]


# ---------------------------------------------------------------------------------------------
# scopes and versions


def test_cluster_scoped_resources(cluster):
    group = own_group()
    create_crd(cluster, simple_crd(group, "gears", "Gear", scope="Cluster"))
    base = f"/apis/{group}/v1/gears"
    created = cluster.ok("POST", base, body={"apiVersion": f"{group}/v1", "kind": "Gear",
                                             "metadata": {"name": "g1"}, "spec": {"t": 1}},
                         expect=(201,))
    assert "namespace" not in created["metadata"], created["metadata"]
    assert cluster.ok("GET", f"{base}/g1")["spec"] == {"t": 1}
    assert names_of(cluster.ok("GET", base)) == ["g1"]
    assert_status(cluster.get(f"/apis/{group}/v1/namespaces/default/gears"), 404, "NotFound")
    rl = cluster.ok("GET", f"/apis/{group}/v1")
    assert rl["resources"][0]["namespaced"] is False
    assert names_of(cluster.ok("GET", base, params={"fieldSelector": "metadata.name=g1"})) == \
        ["g1"]


def test_cluster_scoped_resources_have_no_namespace_field_selector(cluster):
    group = own_group()
    create_crd(cluster, simple_crd(group, "levers", "Lever", scope="Cluster"))
    st = assert_status(cluster.get(f"/apis/{group}/v1/levers",
                                   params={"fieldSelector": "metadata.namespace=x"}),
                       400, "BadRequest")
    assert st["message"] == "field label not supported: metadata.namespace", st


def test_an_object_created_through_one_version_reads_through_another(cluster, widgets, ns):
    created = cluster.ok("POST", wpath(ns, base=W_BETA),
                         body=widget("vb", size=4, version="v1beta1"), expect=(201,))
    assert created["apiVersion"] == f"{GROUP}/v1beta1"
    got = cluster.ok("GET", wpath(ns, "vb"))
    assert (got["apiVersion"], got["kind"]) == (f"{GROUP}/v1", "Widget")
    assert got["spec"] == {"color": "blue", "size": 4}
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    listing = cluster.ok("GET", wpath(ns, base=W_BETA))
    assert listing["apiVersion"] == f"{GROUP}/v1beta1"
    assert [i["apiVersion"] for i in listing["items"]] == [f"{GROUP}/v1beta1"]
    # an update through v1 shows through v1beta1
    cluster.ok("PATCH", wpath(ns, "vb"), body={"spec": {"size": 5}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert cluster.ok("GET", wpath(ns, "vb", base=W_BETA))["spec"]["size"] == 5
    # one object whatever the version it is named through
    assert_status(cluster.post(wpath(ns), widget("vb")), 409, "AlreadyExists")
    crd = cluster.ok("GET", f"{CRDS}/widgets.{GROUP}")
    assert crd["status"]["storedVersions"] == ["v1"]


def test_a_watch_through_one_version_sees_objects_in_that_version(cluster, widgets, ns):
    rv = cluster.ok("GET", wpath(ns))["metadata"]["resourceVersion"]
    w = cluster.watch(wpath(ns, base=W_BETA), {"resourceVersion": rv})
    try:
        create_widget(cluster, ns, "wv")
        (ev,) = w.take(1)
        assert ev["type"] == "ADDED" and ev["object"]["apiVersion"] == f"{GROUP}/v1beta1", ev
    finally:
        w.close()


def test_kubectl_reads_a_version_by_its_qualified_name(kubectl, cluster, widgets, ns):
    create_widget(cluster, ns, "kv")
    got = kubectl.json("get", f"widgets.v1beta1.{GROUP}", "kv", "-n", ns)
    assert got["apiVersion"] == f"{GROUP}/v1beta1"
    assert kubectl.json("get", "widgets", "kv", "-n", ns)["apiVersion"] == f"{GROUP}/v1"


# ---------------------------------------------------------------------------------------------
# deleting a definition


def test_deleting_a_definition_deletes_its_objects_in_every_namespace(kubectl, cluster, ns):
    group = own_group()
    create_crd(cluster, simple_crd(group, "gadgets", "Gadget"))
    other = f"{ns}-b"
    cluster.create_namespace(other)
    try:
        for n in (ns, other):
            cluster.ok("POST", f"/apis/{group}/v1/namespaces/{n}/gadgets",
                       body={"apiVersion": f"{group}/v1", "kind": "Gadget",
                             "metadata": {"name": "g"}}, expect=(201,))
        out = kubectl("delete", "crd", f"gadgets.{group}", timeout=60)
        assert out.strip() == \
            f'customresourcedefinition.apiextensions.k8s.io "gadgets.{group}" deleted'
        # kubectl waited: the definition is gone once it returns
        assert_status(cluster.get(f"{CRDS}/gadgets.{group}"), 404, "NotFound")
        # (upstream's handler reads definitions from an informer: a moment's delay is allowed)
        wait_for(lambda: cluster.get(f"/apis/{group}/v1/gadgets").status_code == 404, 2,
                 what="the resource no longer served")
        assert all(g["name"] != group for g in cluster.ok("GET", "/apis")["groups"])
        assert_status(cluster.get(f"/apis/{group}/v1"), 404, "NotFound")
        agg = cluster.get("/apis", headers={"Accept": AGGREGATED}).json()
        assert all(i["metadata"]["name"] != group for i in agg["items"])
    finally:
        cluster.delete_namespace(other)


class Held:
    """A definition being deleted, kept terminating by an object with a finalizer of ours;
    `release()` removes the finalizer (and so lets the deletion finish)."""

    def __init__(self, cluster, ns, plural, kind):
        self.cluster, self.kind = cluster, kind
        self.group = own_group()
        self.name = f"{plural}.{self.group}"
        create_crd(cluster, simple_crd(self.group, plural, kind))
        self.base = f"/apis/{self.group}/v1/namespaces/{ns}/{plural}"
        self.plural = plural
        cluster.ok("POST", self.base, body=self.obj("held", finalizers=["e2e.krust.dev/hold"]),
                   expect=(201,))
        cluster.ok("POST", self.base, body=self.obj("free"), expect=(201,))
        self.deleting = cluster.ok("DELETE", f"{CRDS}/{self.name}")

    def obj(self, name, **meta):
        return {"apiVersion": f"{self.group}/v1", "kind": self.kind,
                "metadata": {"name": name, **meta}}

    def crd(self):
        return self.cluster.ok("GET", f"{CRDS}/{self.name}")

    def wait_in_progress(self):
        """The Terminating condition once the finalizer controller is deleting objects."""
        def in_progress():
            c = condition(self.crd(), "Terminating")
            return c if c and c["reason"] == "InstanceDeletionInProgress" else None
        return wait_for(in_progress, 10, what="Terminating: InstanceDeletionInProgress")

    def release(self):
        self.cluster.request("PATCH", f"{self.base}/held",
                             body={"metadata": {"finalizers": None}},
                             headers={"Content-Type": "application/merge-patch+json"})


@pytest.fixture
def held(cluster, ns, request):
    made = []

    def make(plural, kind):
        h = Held(cluster, ns, plural, kind)
        made.append(h)
        return h
    yield make
    for h in made:
        h.release()


def test_a_terminating_definition_refuses_creates_until_its_objects_are_gone(cluster, held):
    h = held("holds", "Hold")
    assert h.deleting["metadata"].get("deletionTimestamp"), h.deleting
    crd = wait_crd(cluster, h.name, lambda c: is_true(c, "Terminating"), "Terminating")
    assert "customresourcecleanup.apiextensions.k8s.io" in crd["metadata"]["finalizers"]
    # InstanceDeletionPending when marked, InstanceDeletionInProgress once the finalizer
    # controller started deleting, InstanceDeletionCheck after a minute of waiting
    assert condition(crd, "Terminating")["reason"] in (
        "InstanceDeletionPending", "InstanceDeletionInProgress"), crd["status"]
    h.wait_in_progress()
    wait_for(lambda: cluster.get(f"{h.base}/free").status_code == 404, 10,
             what="the free object deleted")
    held_obj = cluster.ok("GET", f"{h.base}/held")  # reads are still served
    assert held_obj["metadata"].get("deletionTimestamp"), held_obj
    assert is_true(h.crd(), "Terminating")

    assert_status(cluster.post(h.base, h.obj("late")), 405, "MethodNotAllowed")


def test_a_terminating_definition_goes_once_its_last_held_object_is_released(cluster, held):
    h = held("releases", "Release")
    h.wait_in_progress()
    wait_for(lambda: cluster.get(f"{h.base}/free").status_code == 404, 10,
             what="the free object deleted")
    h.release()
    wait_for(lambda: cluster.get(f"{h.base}/held").status_code == 404, 10,
             what="the released object deleted")
    # upstream's finalizer controller checks every 5s for the objects to be gone
    wait_for(lambda: cluster.get(f"{CRDS}/{h.name}").status_code == 404, 10, interval=0.2,
             what="the definition gone once its last object is")
    # discovery follows definitions through a watch (upstream: an informer)
    wait_for(lambda: all(g["name"] != h.group
                         for g in cluster.ok("GET", "/apis")["groups"]), 2,
             what="the group gone from discovery")


def test_discovery_drops_the_write_verbs_of_a_terminating_definition(cluster, held):
    h = held("drops", "Drop")
    h.wait_in_progress()
    res = next(r for r in cluster.ok("GET", f"/apis/{h.group}/v1")["resources"]
               if r["name"] == "drops")
    assert set(res["verbs"]) == {"delete", "deletecollection", "get", "list", "watch"}, res


def test_a_terminating_definition_has_upstreams_messages(cluster, held):
    h = held("stucks", "Stuck")
    term = h.wait_in_progress()
    st = assert_status(cluster.post(h.base, h.obj("late")), 405, "MethodNotAllowed")
    assert st["message"] == "create not allowed while custom resource definition is " \
                            "terminating", st
    assert term["message"] == "CustomResource deletion is in progress", term


def test_a_watch_sees_the_objects_of_a_deleted_definition_deleted(cluster, ns):
    group = own_group()
    create_crd(cluster, simple_crd(group, "fades", "Fade"))
    base = f"/apis/{group}/v1/namespaces/{ns}/fades"
    for n in ("f1", "f2"):
        cluster.ok("POST", base, body={"apiVersion": f"{group}/v1", "kind": "Fade",
                                       "metadata": {"name": n}}, expect=(201,))
    rv = cluster.ok("GET", base)["metadata"]["resourceVersion"]
    w = cluster.watch(base, {"resourceVersion": rv})
    try:
        cluster.ok("DELETE", f"{CRDS}/fades.{group}")
        evs = w.take(2, timeout=15)
        assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in evs) == \
            [("DELETED", "f1"), ("DELETED", "f2")], evs
    finally:
        w.close()


def test_a_definition_recreated_after_deletion_serves_an_empty_collection(cluster, ns):
    group = own_group()
    body = simple_crd(group, "phoenixes", "Phoenix")
    create_crd(cluster, body)
    base = f"/apis/{group}/v1/namespaces/{ns}/phoenixes"
    cluster.ok("POST", base, body={"apiVersion": f"{group}/v1", "kind": "Phoenix",
                                   "metadata": {"name": "old"}}, expect=(201,))
    delete_crd_and_wait(cluster, body["metadata"]["name"])
    create_crd(cluster, body)
    assert cluster.ok("GET", base)["items"] == []


# ---------------------------------------------------------------------------------------------
# RBAC


def test_rbac_role_on_the_resource_allows_one_user_and_not_another(kubectl, cluster, widgets,
                                                                   ns):
    create_widget(cluster, ns, "secret-widget")
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    cluster.ok("POST", f"{rbac}/namespaces/{ns}/roles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "widget-reader"},
        "rules": [{"apiGroups": [GROUP], "resources": ["widgets"], "verbs": ["get", "list"]}]},
        expect=(201,))
    cluster.ok("POST", f"{rbac}/namespaces/{ns}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-reads-widgets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "widget-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "alice"}]}, expect=(201,))

    def as_user(user):
        return {"Impersonate-User": user}

    wait_for(lambda: cluster.get(wpath(ns), headers=as_user("alice")).status_code == 200, 10,
             what="alice allowed to list widgets")
    assert names_of(cluster.ok("GET", wpath(ns), headers=as_user("alice"))) == ["secret-widget"]
    out = kubectl("--as=alice", "get", "widgets", "-n", ns, "-o", "name")
    assert out.split() == [f"widget.{GROUP}/secret-widget"]

    st = assert_status(cluster.get(wpath(ns), headers=as_user("eve")), 403, "Forbidden")
    assert st["message"] == (f'widgets.{GROUP} is forbidden: User "eve" cannot list resource '
                             f'"widgets" in API group "{GROUP}" in the namespace "{ns}"'), st
    st = assert_status(cluster.post(wpath(ns), widget("x"), headers=as_user("alice")), 403,
                       "Forbidden")
    assert 'User "alice" cannot create resource "widgets"' in st["message"], st
    # the subresource is a resource of its own for RBAC
    st = assert_status(cluster.get(wpath(ns, "secret-widget", "status"),
                                   headers=as_user("alice")), 403, "Forbidden")
    assert 'cannot get resource "widgets/status"' in st["message"], st
    err = kubectl.fail("--as=eve", "get", "widgets", "-n", ns)
    assert "Forbidden" in err and 'User "eve" cannot list resource "widgets"' in err, err


# ---------------------------------------------------------------------------------------------
# the Python client


def test_python_custom_objects_api_crud(cluster, widgets, ns):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    co = client.CustomObjectsApi(cluster.api_client())
    args = (GROUP, "v1", ns, "widgets")
    created = co.create_namespaced_custom_object(*args, widget("py", size=2))
    assert created["metadata"]["name"] == "py" and created["spec"]["size"] == 2
    got = co.get_namespaced_custom_object(*args, "py")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    listing = co.list_namespaced_custom_object(*args, label_selector="")
    assert names_of(listing) == ["py"]
    patched = co.patch_namespaced_custom_object(*args, "py", {"spec": {"size": 3}})
    assert patched["spec"]["size"] == 3
    scaled = co.patch_namespaced_custom_object_scale(*args, "py", {"spec": {"replicas": 2}})
    assert scaled["kind"] == "Scale" and scaled["spec"]["replicas"] == 2
    st = co.patch_namespaced_custom_object_status(*args, "py", {"status": {"phase": "Py"}})
    assert st["status"]["phase"] == "Py"
    co.delete_namespaced_custom_object(*args, "py")
    with pytest.raises(ApiException) as e:
        co.get_namespaced_custom_object(*args, "py")
    assert e.value.status == 404


def test_python_dynamic_client_finds_the_resource_through_discovery(cluster, widgets, ns):
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(cluster.api_client())
    res = dyn.resources.get(api_version=f"{GROUP}/v1", kind="Widget")
    assert res.name == "widgets" and res.namespaced and "wd" in res.short_names
    res.create(body=widget("dyn", size=2), namespace=ns)
    got = res.get(name="dyn", namespace=ns)
    assert got.spec.size == 2 and got.kind == "Widget"
    assert [i.metadata.name for i in res.get(namespace=ns).items] == ["dyn"]
    scale = dyn.resources.get(api_version=f"{GROUP}/v1", kind="Widget").subresources["scale"]
    assert scale.kind == "Scale"


def test_python_watch_of_custom_objects(cluster, widgets, ns):
    from kubernetes import client, watch

    co = client.CustomObjectsApi(cluster.api_client())
    rv = co.list_namespaced_custom_object(GROUP, "v1", ns, "widgets")["metadata"][
        "resourceVersion"]

    def writer():
        time.sleep(0.3)
        create_widget(cluster, ns, "pw", size=1)
        cluster.ok("PATCH", wpath(ns, "pw"), body={"spec": {"size": 2}},
                   headers={"Content-Type": "application/merge-patch+json"})
        cluster.ok("DELETE", wpath(ns, "pw"))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    seen = []
    w = watch.Watch()
    for ev in w.stream(co.list_namespaced_custom_object, GROUP, "v1", ns, "widgets",
                       resource_version=rv, timeout_seconds=15):
        seen.append((ev["type"], ev["object"]["metadata"]["name"],
                     ev["object"]["spec"]["size"]))
        if ev["type"] == "DELETED":
            w.stop()
    t.join(5)
    assert seen == [("ADDED", "pw", 1), ("MODIFIED", "pw", 2), ("DELETED", "pw", 2)], seen


# ---------------------------------------------------------------------------------------------
# structural schemas (validation, pruning, defaulting)

GIZMO_SCHEMA = obj_schema({
    "spec": obj_schema({
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 5},
        "size": {"type": "integer", "minimum": 1, "maximum": 10},
        "min": {"type": "integer", "default": 0},
        "max": {"type": "integer", "default": 100},
        "replicas": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "fast"},
        "port": {"x-kubernetes-int-or-string": True},
        "zone": {"type": "string",
                 "x-kubernetes-validations": [{"rule": "self == oldSelf",
                                               "message": "zone is immutable"}]},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }, required=["color"], **{"x-kubernetes-validations": [
        {"rule": "self.min <= self.max", "message": "min must not exceed max"}]}),
    "status": obj_schema({"phase": {"type": "string"}}),
})


@pytest.fixture(scope="module")
def gizmos(cluster):
    """gizmos.<group>, a definition with a rich structural schema; answers its group."""
    group = own_group()
    crd = simple_crd(group, "gizmos", "Gizmo", schema=GIZMO_SCHEMA)
    crd["spec"]["versions"][0]["subresources"] = {"status": {}}
    create_crd(cluster, crd)
    return group


def gizmo(group, name, **spec):
    spec.setdefault("color", "red")
    return {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": name},
            "spec": spec}


def gpath(group, ns, name=""):
    return f"/apis/{group}/v1/namespaces/{ns}/gizmos" + (f"/{name}" if name else "")


def invalid(cluster, group, ns, name, **spec):
    """Creates an invalid gizmo; answers the 422 Status after checking its envelope."""
    st = assert_status(cluster.post(gpath(group, ns), gizmo(group, name, **spec)), 422,
                       "Invalid")
    assert st["message"].startswith(f'Gizmo.{group} "{name}" is invalid: '), st
    assert (st["details"]["name"], st["details"]["group"], st["details"]["kind"]) == \
        (name, group, "Gizmo"), st
    return st


def causes(st):
    """(reason, field) of the Status' causes. Upstream adds a cause of its own when a blocking
    error made it skip the CEL rules: assert on the causes of interest, not on all."""
    return [(c.get("reason"), c.get("field")) for c in st["details"].get("causes") or []]


def test_schema_rejects_a_wrong_type(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "t", size="big")
    assert 'spec.size: Invalid value: "string": spec.size in body must be of type integer: ' \
           '"string"' in st["message"], st
    assert ("FieldValueTypeInvalid", "spec.size") in causes(st), st


def test_schema_rejects_a_value_outside_the_enum(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "e", color="purple")
    assert 'spec.color: Unsupported value: "purple": supported values: "red", "green", "blue"' \
        in st["message"], st
    assert ("FieldValueNotSupported", "spec.color") in causes(st), st


def test_schema_rejects_a_string_not_matching_the_pattern(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "p", code="abc")
    assert "spec.code: Invalid value: \"abc\": spec.code in body should match '^[A-Z]+$'" \
        in st["message"], st
    assert causes(st) == [("FieldValueInvalid", "spec.code")], st


def test_schema_enforces_minimum_and_maximum(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "lo", size=0)
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal " \
           "to 1" in st["message"], st
    st = invalid(cluster, gizmos, ns, "hi", size=11)
    assert "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10" \
        in st["message"], st
    cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "ok", size=10), expect=(201,))


def test_schema_requires_required_fields(cluster, gizmos, ns):
    body = gizmo(gizmos, "req")
    del body["spec"]["color"]
    st = assert_status(cluster.post(gpath(gizmos, ns), body), 422, "Invalid")
    assert "spec.color: Required value" in st["message"], st
    assert ("FieldValueRequired", "spec.color") in causes(st), st
    # a blocking error (type, required, enum, too long) skips the CEL rules, and says so
    assert "some validation rules were not checked because the object was invalid; correct " \
           "the existing errors to complete validation" in st["message"], st


def test_schema_enforces_max_length(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "long", code="ABCDEF")
    assert "spec.code: Too long" in st["message"], st  # the wording changed across releases
    assert ("FieldValueTooLong", "spec.code") in causes(st), st


def test_schema_reports_every_error_at_once(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "many", color="purple", size=0)
    assert {"spec.color", "spec.size"} <= {f for _, f in causes(st)}, st


def test_int_or_string_accepts_both_and_nothing_else(cluster, gizmos, ns):
    cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "int", port=8080), expect=(201,))
    cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "str", port="http"), expect=(201,))
    st = invalid(cluster, gizmos, ns, "bool", port=True)
    assert "spec.port" in [f for _, f in causes(st)], st


def test_cel_rule_rejects_with_its_message(cluster, gizmos, ns):
    st = invalid(cluster, gizmos, ns, "cel", min=5, max=1)
    assert 'spec: Invalid value: "object": min must not exceed max' in st["message"], st
    assert causes(st) == [("FieldValueInvalid", "spec")], st
    cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "cel-ok", min=1, max=5),
               expect=(201,))


def test_cel_transition_rule_compares_with_the_old_object(cluster, gizmos, ns):
    cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "z", zone="a"), expect=(201,))
    merge = {"Content-Type": "application/merge-patch+json"}
    cluster.ok("PATCH", gpath(gizmos, ns, "z"), body={"spec": {"size": 2}}, headers=merge)
    st = assert_status(cluster.patch(gpath(gizmos, ns, "z"), {"spec": {"zone": "b"}}), 422,
                       "Invalid")
    assert 'spec.zone: Invalid value: "string": zone is immutable' in st["message"], st
    assert cluster.ok("GET", gpath(gizmos, ns, "z"))["spec"]["zone"] == "a"


def test_defaults_are_applied_on_create(cluster, gizmos, ns):
    created = cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "d", replicas=3),
                         expect=(201,))
    assert created["spec"] == {"color": "red", "replicas": 3, "min": 0, "max": 100,
                               "mode": "fast"}, created["spec"]
    assert cluster.ok("GET", gpath(gizmos, ns, "d"))["spec"] == created["spec"]


def test_unknown_fields_are_pruned_with_a_warning(cluster, gizmos, ns):
    body = gizmo(gizmos, "prune")
    body["spec"]["foo"] = "bar"
    body["top"] = 1
    r = cluster.post(gpath(gizmos, ns), body)
    assert r.status_code == 201, r.text
    assert "foo" not in r.json()["spec"] and "top" not in r.json(), r.json()
    assert 'unknown field \\"spec.foo\\"' in r.headers.get("Warning", ""), r.headers
    got = cluster.ok("GET", gpath(gizmos, ns, "prune"))
    assert "foo" not in got["spec"] and "top" not in got


def test_strict_field_validation_refuses_unknown_fields(cluster, gizmos, ns):
    body = gizmo(gizmos, "strict")
    body["spec"]["foo"] = "bar"
    st = assert_status(cluster.post(gpath(gizmos, ns), body,
                                    params={"fieldValidation": "Strict"}), 400, "BadRequest")
    assert 'unknown field "spec.foo"' in st["message"], st
    assert_status(cluster.get(gpath(gizmos, ns, "strict")), 404, "NotFound")


def test_kubectl_validates_strictly_by_default_and_prunes_without_validation(kubectl, gizmos,
                                                                            ns):
    body = gizmo(gizmos, f"k{kubectl.version.replace('.', '')}")
    body["spec"]["foo"] = "bar"
    err = kubectl.fail("create", "-n", ns, "-f", "-", input=json.dumps(body))
    assert 'unknown field "spec.foo"' in err, err
    kubectl("create", "-n", ns, "--validate=false", "-f", "-", input=json.dumps(body))
    got = kubectl.json("get", f"gizmos.{gizmos}", body["metadata"]["name"], "-n", ns)
    assert "foo" not in got["spec"], got


def test_preserve_unknown_fields_keeps_them(cluster, gizmos, ns):
    extra = {"anything": {"nested": [1, "two", {"three": True}]}, "n": 1.5}
    created = cluster.ok("POST", gpath(gizmos, ns), body=gizmo(gizmos, "keep", extra=extra),
                         expect=(201,))
    assert created["spec"]["extra"] == extra
    assert cluster.ok("GET", gpath(gizmos, ns, "keep"))["spec"]["extra"] == extra


# ---------------------------------------------------------------------------------------------
# restart (last: it restarts the module's server)


def test_custom_resources_are_served_right_after_a_restart(cluster, widgets, ns):
    created = create_widget(cluster, ns, "survivor", size=8)
    # and a definition created just before the restart
    group = own_group()
    create_crd(cluster, simple_crd(group, "lasts", "Last"))
    cluster.restart()
    # no waiting beyond readiness: the definitions are served as soon as /readyz says ok
    got = cluster.ok("GET", wpath(ns, "survivor"))
    assert got["metadata"]["uid"] == created["metadata"]["uid"] and got["spec"]["size"] == 8
    assert "widgets" in {r["name"] for r in cluster.ok("GET", W)["resources"]}
    cluster.ok("POST", f"/apis/{group}/v1/namespaces/{ns}/lasts",
               body={"apiVersion": f"{group}/v1", "kind": "Last", "metadata": {"name": "l"}},
               expect=(201,))
    create_widget(cluster, ns, "after-restart")
    assert is_true(cluster.ok("GET", f"{CRDS}/widgets.{GROUP}"), "Established")
    agg = cluster.get("/apis", headers={"Accept": AGGREGATED}).json()
    assert {GROUP, group} <= {i["metadata"]["name"] for i in agg["items"]}
