"""REST semantics over raw HTTPS with the admin client certificate (upstream is the reference)."""

import datetime
import re
import time
import uuid

from conftest import (assert_status, configmap, deployment, pod, rand_suffix, rv_int, summarize,
                      wait_for)


# Every namespace holds the cluster CA (kube-root-ca.crt), as upstream's; tests that count
# ConfigMaps leave it out.
NO_CA = {"fieldSelector": "metadata.name!=kube-root-ca.crt"}


def cms(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def deploys(ns, name=""):
    return f"/apis/apps/v1/namespaces/{ns}/deployments" + (f"/{name}" if name else "")


def mk(cluster, ns, name, data=None, **kw):
    return cluster.ok("POST", cms(ns), body=configmap(name, data or {"k": "v"}, **kw),
                      expect=(201,))


def list_names(cluster, path, **params):
    """Names listed, leaving out the CA bundle configmap that upstream puts everywhere."""
    body = cluster.ok("GET", path, params=params)
    return [i["metadata"]["name"] for i in body["items"]
            if i["metadata"]["name"] != "kube-root-ca.crt"]


# --------------------------------------------------------------------------------------------
# authentication


def test_request_without_credentials_is_anonymous_and_forbidden(cluster):
    # Anonymous requests reach discovery only (test_authn.py has the details).
    anon = cluster.creds.session(with_client_cert=False)
    for path in ["/api/v1/namespaces", "/apis/apps/v1/deployments"]:
        r = anon.get(cluster.url + path, timeout=30)
        st = assert_status(r, 403, "Forbidden")
        assert st["message"], st
    assert anon.get(cluster.url + "/api", timeout=30).status_code == 200
    r = anon.get(cluster.url + "/api/v1/namespaces", timeout=30,
                 headers={"Authorization": "Bearer not-a-real-token"})
    assert_status(r, 401, "Unauthorized")
    assert cluster.ready()


# --------------------------------------------------------------------------------------------
# create


def test_create_sets_metadata_and_generate_name(cluster, ns):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    r = cluster.post(cms(ns), body={"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"generateName": "gen-"}, "data": {"a": "b"}})
    assert r.status_code == 201, r.text
    o = r.json()
    md = o["metadata"]
    assert re.fullmatch(r"gen-[a-z0-9]{5}", md["name"]), md["name"]
    assert md["generateName"] == "gen-"
    assert md["namespace"] == ns
    uuid.UUID(md["uid"])
    ts = datetime.datetime.strptime(md["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert before - datetime.timedelta(seconds=5) <= ts <= before + datetime.timedelta(seconds=60)
    assert md["resourceVersion"]
    assert o["kind"] == "ConfigMap" and o["apiVersion"] == "v1"
    # a second create with the same generateName gets another name
    o2 = cluster.ok("POST", cms(ns), body={"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"generateName": "gen-"}})
    assert o2["metadata"]["name"] != md["name"]
    assert o2["metadata"]["uid"] != md["uid"]
    # and GET returns what create returned
    got = cluster.ok("GET", cms(ns, md["name"]))
    assert got == o


def test_create_ignores_client_set_system_fields(cluster, ns):
    fake_uid = "11111111-2222-3333-4444-555555555555"
    o = cluster.ok("POST", cms(ns), body=configmap(
        "sysfields", uid=fake_uid, creationTimestamp="2001-01-01T00:00:00Z"))
    md = o["metadata"]
    assert md["uid"] != fake_uid
    assert md["creationTimestamp"] != "2001-01-01T00:00:00Z"


def test_create_duplicate_is_409_already_exists(cluster, ns):
    mk(cluster, ns, "dup")
    r = cluster.post(cms(ns), body=configmap("dup"))
    st = assert_status(r, 409, "AlreadyExists")
    assert st["details"]["name"] == "dup" and st["details"]["kind"] == "configmaps", st
    assert st["message"] == 'configmaps "dup" already exists', st


def test_get_missing_is_404(cluster, ns):
    st = assert_status(cluster.get(cms(ns, "missing")), 404, "NotFound")
    assert st["message"] == 'configmaps "missing" not found', st
    assert st["details"] == {"name": "missing", "kind": "configmaps"}, st
    st = assert_status(cluster.get(deploys(ns, "missing")), 404, "NotFound")
    assert st["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}, st


# --------------------------------------------------------------------------------------------
# validation


def causes(st):
    return {c.get("field"): c for c in st.get("details", {}).get("causes", [])}


def test_validation_errors_are_422_with_causes(cluster, ns):
    r = cluster.post(cms(ns), body=configmap("badkey", {"bad key!": "x"}))
    st = assert_status(r, 422, "Invalid")
    assert st["details"]["name"] == "badkey" and st["details"]["kind"] == "ConfigMap", st
    assert "data[bad key!]" in causes(st), st

    r = cluster.post(deploys(ns), body=deployment("neg", replicas=-1))
    st = assert_status(r, 422, "Invalid")
    assert st["details"]["group"] == "apps" and st["details"]["kind"] == "Deployment", st
    c = causes(st)["spec.replicas"]
    assert c["reason"] == "FieldValueInvalid", c
    # A cause's message is upstream's error body: the field is in `field`, not repeated here
    # (kubectl prints "field: message").
    assert c["message"].startswith("Invalid value: -1: "), c
    assert st["message"].startswith('Deployment.apps "neg" is invalid: '), st

    d = deployment("mismatch")
    d["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    st = assert_status(cluster.post(deploys(ns), body=d), 422, "Invalid")
    assert "spec.template.metadata.labels" in causes(st), st

    p = pod("nocontainers")
    p["spec"]["containers"] = []
    st = assert_status(cluster.post(f"/api/v1/namespaces/{ns}/pods", body=p), 422, "Invalid")
    assert causes(st)["spec.containers"]["reason"] == "FieldValueRequired", st

    p = pod("noimage")
    del p["spec"]["containers"][0]["image"]
    st = assert_status(cluster.post(f"/api/v1/namespaces/{ns}/pods", body=p), 422, "Invalid")
    assert "spec.containers[0].image" in causes(st), st
    # nothing was created
    assert "badkey" not in list_names(cluster, cms(ns))
    assert list_names(cluster, deploys(ns)) == []


def test_update_validation_and_immutable_fields(cluster, ns):
    mk(cluster, ns, "imm")
    o = cluster.ok("GET", cms(ns, "imm"))
    o["immutable"] = True
    cluster.ok("PUT", cms(ns, "imm"), body=o)
    o = cluster.ok("GET", cms(ns, "imm"))
    o["data"] = {"k": "changed"}
    st = assert_status(cluster.put(cms(ns, "imm"), body=o), 422, "Invalid")
    assert "data" in causes(st), st

    cluster.ok("POST", deploys(ns), body=deployment("sel"))
    d = cluster.ok("GET", deploys(ns, "sel"))
    d["spec"]["selector"] = {"matchLabels": {"app": "sel", "x": "y"}}
    d["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    st = assert_status(cluster.put(deploys(ns, "sel"), body=d), 422, "Invalid")
    assert "spec.selector" in causes(st), st  # selector is immutable in apps/v1


# --------------------------------------------------------------------------------------------
# list: selectors, paging, resource versions


def test_list_label_selectors(cluster, ns):
    mk(cluster, ns, "p-web", labels={"env": "prod", "tier": "web"})
    mk(cluster, ns, "p-db", labels={"env": "prod", "tier": "db"})
    mk(cluster, ns, "d-web", labels={"env": "dev", "tier": "web"})
    mk(cluster, ns, "plain")
    sel = lambda s: sorted(list_names(cluster, cms(ns), labelSelector=s))  # noqa: E731
    assert sel("env=prod") == ["p-db", "p-web"]
    assert sel("env==prod,tier=web") == ["p-web"]
    assert sel("env!=prod") == ["d-web", "plain"]
    assert sel("env in (prod,dev)") == ["d-web", "p-db", "p-web"]
    assert sel("env notin (prod)") == ["d-web", "plain"]
    assert sel("tier") == ["d-web", "p-db", "p-web"]
    assert sel("!tier") == ["plain"]
    assert sel("env=none") == []
    st = assert_status(cluster.get(cms(ns), params={"labelSelector": "env in (prod"}), 400,
                       "BadRequest")
    assert st["message"], st


def test_list_field_selectors(cluster, ns):
    mk(cluster, ns, "f1")
    mk(cluster, ns, "f2")
    assert list_names(cluster, cms(ns), fieldSelector="metadata.name=f1") == ["f1"]
    assert list_names(cluster, cms(ns), fieldSelector="metadata.name!=f1") == ["f2"]
    assert list_names(cluster, "/api/v1/configmaps",
                      fieldSelector=f"metadata.namespace={ns},metadata.name=f2") == ["f2"]
    st = assert_status(cluster.get(cms(ns), params={"fieldSelector": "data.k=v"}), 400,
                       "BadRequest")
    assert "data.k" in st["message"], st

    pods = f"/api/v1/namespaces/{ns}/pods"
    cluster.ok("POST", pods, body=pod("pending"))
    running = cluster.ok("POST", pods, body=pod("running"))
    assert running["status"]["phase"] == "Pending"
    running["status"]["phase"] = "Running"
    cluster.ok("PUT", f"{pods}/running/status", body=running)
    assert list_names(cluster, pods, fieldSelector="status.phase=Pending") == ["pending"]
    assert list_names(cluster, pods, fieldSelector="status.phase=Running") == ["running"]
    assert list_names(cluster, pods, fieldSelector="status.phase=Running,metadata.name=x") == []
    assert sorted(list_names(cluster, pods, fieldSelector="spec.nodeName=")) == [
        "pending", "running"]


def test_list_paging_limit_continue(cluster, ns):
    for i in reversed(range(7)):
        mk(cluster, ns, f"page-{i:02d}")
    full = cluster.ok("GET", cms(ns))["items"]
    names = [i["metadata"]["name"] for i in full]
    assert names == sorted(names), "lists come in key (name) order"
    assert len(names) in (7, 8), names  # 8 with upstream's kube-root-ca.crt
    first = cluster.ok("GET", cms(ns), params={"limit": 3})
    assert [i["metadata"]["name"] for i in first["items"]] == names[:3]  # key (name) order
    token = first["metadata"].get("continue")
    assert token, first["metadata"]
    assert first["metadata"].get("remainingItemCount") == len(names) - 3, first["metadata"]
    snapshot_rv = first["metadata"]["resourceVersion"]

    # a write between pages is not seen by later pages (consistent snapshot)
    mk(cluster, ns, "page-99")
    second = cluster.ok("GET", cms(ns), params={"limit": 3, "continue": token})
    assert [i["metadata"]["name"] for i in second["items"]] == names[3:6]
    assert second["metadata"]["resourceVersion"] == snapshot_rv
    third = cluster.ok("GET", cms(ns), params={"limit": 3,
                                               "continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in third["items"]] == names[6:9]
    assert not third["metadata"].get("continue"), third["metadata"]
    assert list_names(cluster, cms(ns))[-1] == "page-99"

    assert_status(cluster.get(cms(ns), params={"limit": 3, "continue": "not-a-token"}), 400,
                  "BadRequest")


def test_list_resource_version_match(cluster, ns):
    mk(cluster, ns, "rv-a")
    rv1 = cluster.ok("GET", cms(ns), params=NO_CA)["metadata"]["resourceVersion"]
    mk(cluster, ns, "rv-b")
    now = cluster.ok("GET", cms(ns), params=NO_CA)
    assert sorted(i["metadata"]["name"] for i in now["items"]) == ["rv-a", "rv-b"]
    assert rv_int(now["metadata"]["resourceVersion"]) > rv_int(rv1)

    exact = cluster.ok("GET", cms(ns), params={**NO_CA, "resourceVersion": rv1,
                                               "resourceVersionMatch": "Exact"})
    assert [i["metadata"]["name"] for i in exact["items"]] == ["rv-a"], "Exact reads the past"
    assert exact["metadata"]["resourceVersion"] == rv1

    newer = cluster.ok("GET", cms(ns), params={**NO_CA, "resourceVersion": rv1,
                                               "resourceVersionMatch": "NotOlderThan"})
    assert rv_int(newer["metadata"]["resourceVersion"]) >= rv_int(rv1)
    assert "rv-a" in [i["metadata"]["name"] for i in newer["items"]]

    any_rv = cluster.ok("GET", cms(ns), params={**NO_CA, "resourceVersion": "0"})
    assert "rv-a" in [i["metadata"]["name"] for i in any_rv["items"]]

    # resourceVersionMatch without resourceVersion is invalid
    assert_status(cluster.get(cms(ns), params={**NO_CA, "resourceVersionMatch": "Exact"}),
                  422, "Invalid")


def test_list_future_resource_version_times_out(cluster, ns):
    rv = rv_int(cluster.ok("GET", cms(ns))["metadata"]["resourceVersion"])
    t0 = time.monotonic()
    r = cluster.get(cms(ns), params={"resourceVersion": str(rv + 100000),
                                     "resourceVersionMatch": "NotOlderThan"})
    assert time.monotonic() - t0 < 15
    st = assert_status(r, 504, "Timeout")
    assert "Too large resource version" in st["message"], st
    assert any(c.get("reason") == "ResourceVersionTooLarge"
               for c in st["details"].get("causes", [])), st


# --------------------------------------------------------------------------------------------
# update, optimistic concurrency, no-op writes


def test_update_with_stale_resource_version_is_409(cluster, ns):
    o = mk(cluster, ns, "occ")
    stale = dict(o)
    o["data"] = {"k": "v2"}
    o2 = cluster.ok("PUT", cms(ns, "occ"), body=o)
    assert o2["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
    assert o2["data"] == {"k": "v2"}
    stale = {**stale, "data": {"k": "v3"}}
    st = assert_status(cluster.put(cms(ns, "occ"), body=stale), 409, "Conflict")
    assert "the object has been modified" in st["message"], st
    assert st["details"]["name"] == "occ", st
    assert cluster.ok("GET", cms(ns, "occ"))["data"] == {"k": "v2"}
    # a merge patch carrying a stale resourceVersion is checked too
    r = cluster.patch(cms(ns, "occ"), {"metadata": {"resourceVersion": stale["metadata"]
                                                    ["resourceVersion"]}, "data": {"k": "v4"}})
    assert_status(r, 409, "Conflict")
    # configmaps allow unconditional updates (no resourceVersion)
    o3 = dict(o2)
    o3["metadata"] = {k: v for k, v in o2["metadata"].items() if k != "resourceVersion"}
    o3["data"] = {"k": "v5"}
    assert cluster.ok("PUT", cms(ns, "occ"), body=o3)["data"] == {"k": "v5"}


def test_update_of_missing_object_is_404(cluster, ns):
    st = assert_status(cluster.put(cms(ns, "ghost"), body=configmap("ghost")), 404, "NotFound")
    assert st["details"]["name"] == "ghost", st


def test_noop_update_keeps_resource_version(cluster, ns):
    o = mk(cluster, ns, "noop", {"a": "1"})
    same = cluster.ok("PUT", cms(ns, "noop"), body=o)
    assert same["metadata"]["resourceVersion"] == o["metadata"]["resourceVersion"]
    p = cluster.patch(cms(ns, "noop"), {"data": {"a": "1"}})
    assert p.status_code == 200
    assert p.json()["metadata"]["resourceVersion"] == o["metadata"]["resourceVersion"]


# --------------------------------------------------------------------------------------------
# delete: preconditions, finalizers, collections


def test_delete_preconditions(cluster, ns):
    o = mk(cluster, ns, "pre")
    uid, rv = o["metadata"]["uid"], o["metadata"]["resourceVersion"]
    opts = lambda **p: {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": p}  # noqa: E731
    st = assert_status(cluster.delete(cms(ns, "pre"), body=opts(uid=str(uuid.uuid4()))), 409,
                       "Conflict")
    # Worded as upstream's rest.BeforeDelete, on the object's kind.
    assert st["message"].startswith('Operation cannot be fulfilled on ConfigMap "pre": the UID '
                                    "in the precondition ("), st
    assert f"does not match the UID in record ({uid})" in st["message"], st
    assert st["details"]["kind"] == "ConfigMap", st
    st = assert_status(
        cluster.delete(cms(ns, "pre"), body=opts(resourceVersion=str(rv_int(rv) + 1000))),
        409, "Conflict")
    assert f"does not match the ResourceVersion in record ({rv})" in st["message"], st
    assert cluster.get(cms(ns, "pre")).status_code == 200, "failed preconditions delete nothing"
    r = cluster.delete(cms(ns, "pre"), body=opts(uid=uid, resourceVersion=rv))
    assert r.status_code == 200, r.text
    assert cluster.get(cms(ns, "pre")).status_code == 404
    # deleting again: 404
    assert_status(cluster.delete(cms(ns, "pre")), 404, "NotFound")


def test_delete_returns_status_success(cluster, ns):
    mk(cluster, ns, "del")
    r = cluster.delete(cms(ns, "del"))
    assert r.status_code == 200, r.text
    body = r.json()
    # configmaps answer with a Status (upstream: returnDeletedObject is off for them)
    assert body["kind"] == "Status" and body["status"] == "Success", body
    assert body["details"]["name"] == "del" and body["details"]["uid"], body


def test_finalizers_hold_deletion(cluster, ns):
    o = mk(cluster, ns, "fin", finalizers=["e2e.krust.dev/hold"])
    w = cluster.watch(cms(ns), {"resourceVersion": o["metadata"]["resourceVersion"],
                                "fieldSelector": "metadata.name=fin"})
    try:
        r = cluster.delete(cms(ns, "fin"))
        assert r.status_code in (200, 202), r.text
        body = r.json()
        assert body["kind"] == "ConfigMap", body  # not deleted yet: the object comes back
        assert body["metadata"].get("deletionTimestamp"), body["metadata"]
        got = cluster.ok("GET", cms(ns, "fin"))
        assert got["metadata"]["deletionTimestamp"]
        assert got["metadata"]["deletionGracePeriodSeconds"] == 0
        assert got["metadata"]["finalizers"] == ["e2e.krust.dev/hold"]
        assert "fin" in list_names(cluster, cms(ns))

        # a second delete changes nothing and the object stays
        again = cluster.delete(cms(ns, "fin"))
        assert again.status_code in (200, 202), again.text
        assert cluster.get(cms(ns, "fin")).status_code == 200

        # no new finalizers may be added to an object being deleted
        got["metadata"]["finalizers"].append("e2e.krust.dev/another")
        assert_status(cluster.put(cms(ns, "fin"), body=got), 422, "Invalid")

        # removing the last finalizer deletes it
        cluster.ok("PATCH", cms(ns, "fin"), body={"metadata": {"finalizers": None}},
                   headers={"Content-Type": "application/merge-patch+json"})
        assert_status(cluster.get(cms(ns, "fin")), 404, "NotFound")

        first = w.take(1)[0]
        assert first["type"] == "MODIFIED", summarize(first)
        assert first["object"]["metadata"]["deletionTimestamp"]
        w.until(lambda e: e["type"] == "DELETED")
        assert {e["type"] for e in w.events} <= {"MODIFIED", "DELETED"}, \
            [summarize(e) for e in w.events]
    finally:
        w.close()


def test_deletecollection(cluster, ns):
    for i in range(5):
        mk(cluster, ns, f"gone-{i}", labels={"group": "x"})
    mk(cluster, ns, "keep-1")
    mk(cluster, ns, "keep-2", labels={"group": "y"})
    r = cluster.delete(cms(ns), params={"labelSelector": "group=x"})
    assert r.status_code == 200, r.text
    assert sorted(list_names(cluster, cms(ns))) == ["keep-1", "keep-2"]
    # dryRun deletecollection deletes nothing
    r = cluster.delete(cms(ns), params={"dryRun": "All"})
    assert r.status_code == 200, r.text
    assert sorted(list_names(cluster, cms(ns))) == ["keep-1", "keep-2"]
    r = cluster.delete(cms(ns))
    assert r.status_code == 200, r.text
    assert [n for n in list_names(cluster, cms(ns)) if n.startswith("keep")] == []


# --------------------------------------------------------------------------------------------
# subresources


def test_status_subresource(quiet_cluster):
    cluster = quiet_cluster
    ns = f"e2e-status-{rand_suffix()}"
    cluster.create_namespace(ns)
    d = deployment("st")
    d["status"] = {"replicas": 9, "observedGeneration": 5}
    created = cluster.ok("POST", deploys(ns), body=d)
    assert not created.get("status", {}).get("replicas"), "status is dropped on create"
    assert created["metadata"]["generation"] == 1

    # PUT .../status changes the status only
    obj = cluster.ok("GET", deploys(ns, "st"))
    obj["status"] = {"replicas": 3, "readyReplicas": 2, "observedGeneration": 1}
    obj["spec"]["replicas"] = 7
    obj["metadata"].setdefault("labels", {})["via"] = "status"
    after = cluster.ok("PUT", deploys(ns, "st") + "/status", body=obj)
    assert after["status"]["replicas"] == 3 and after["status"]["readyReplicas"] == 2
    assert after["spec"]["replicas"] == 1, "a status update must not change spec"
    assert "via" not in after["metadata"].get("labels", {}), "nor labels"
    assert after["metadata"]["generation"] == 1

    # the main resource ignores status
    obj = cluster.ok("GET", deploys(ns, "st"))
    obj["status"]["replicas"] = 42
    obj["spec"]["replicas"] = 2
    after = cluster.ok("PUT", deploys(ns, "st"), body=obj)
    assert after["spec"]["replicas"] == 2
    assert after["status"]["replicas"] == 3, "a main update must not change status"
    assert after["metadata"]["generation"] == 2

    # GET and PATCH on .../status
    got = cluster.ok("GET", deploys(ns, "st") + "/status")
    assert got["kind"] == "Deployment" and got["status"]["replicas"] == 3
    patched = cluster.ok("PATCH", deploys(ns, "st") + "/status",
                         body={"status": {"availableReplicas": 1}, "spec": {"replicas": 5}},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert patched["status"]["availableReplicas"] == 1 and patched["spec"]["replicas"] == 2

    # configmaps have no status subresource
    mk(cluster, ns, "nostatus")
    r = cluster.get(cms(ns, "nostatus") + "/status")
    assert r.status_code == 404, r.text


def test_scale_subresource(quiet_cluster):
    cluster = quiet_cluster
    ns = f"e2e-scale-{rand_suffix()}"
    cluster.create_namespace(ns)
    cluster.ok("POST", deploys(ns), body=deployment("sc"))
    scale = cluster.ok("GET", deploys(ns, "sc") + "/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1", scale
    assert scale["metadata"]["name"] == "sc" and scale["metadata"]["namespace"] == ns
    assert scale["spec"] == {"replicas": 1}, scale
    assert scale["status"]["selector"] == "app=sc", scale
    dep = cluster.ok("GET", deploys(ns, "sc"))
    assert scale["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]
    assert scale["metadata"]["uid"] == dep["metadata"]["uid"]

    scale["spec"]["replicas"] = 4
    put = cluster.ok("PUT", deploys(ns, "sc") + "/scale", body=scale)
    assert put["kind"] == "Scale" and put["spec"]["replicas"] == 4
    assert cluster.ok("GET", deploys(ns, "sc"))["spec"]["replicas"] == 4

    cluster.ok("PATCH", deploys(ns, "sc") + "/scale", body={"spec": {"replicas": 2}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert cluster.ok("GET", deploys(ns, "sc"))["spec"]["replicas"] == 2

    # stale resourceVersion on the scale: conflict
    assert_status(cluster.put(deploys(ns, "sc") + "/scale", body=scale), 409, "Conflict")
    bad = cluster.ok("GET", deploys(ns, "sc") + "/scale")
    bad["spec"]["replicas"] = -1
    assert_status(cluster.put(deploys(ns, "sc") + "/scale", body=bad), 422, "Invalid")
    assert_status(cluster.get(deploys(ns, "nope") + "/scale"), 404, "NotFound")


# --------------------------------------------------------------------------------------------
# dry run


def test_dry_run_creates_updates_deletes_nothing(cluster, ns):
    r = cluster.post(cms(ns), body=configmap("dry", {"a": "1"}), params={"dryRun": "All"})
    assert r.status_code == 201, r.text
    o = r.json()
    assert o["metadata"]["name"] == "dry" and o["metadata"]["uid"]
    assert_status(cluster.get(cms(ns, "dry")), 404, "NotFound")
    assert "dry" not in list_names(cluster, cms(ns))

    real = mk(cluster, ns, "real", {"a": "1"})
    real["data"] = {"a": "2"}
    dry_put = cluster.ok("PUT", cms(ns, "real"), body=real, params={"dryRun": "All"})
    assert dry_put["data"] == {"a": "2"}
    assert cluster.ok("GET", cms(ns, "real"))["data"] == {"a": "1"}
    dry_patch = cluster.ok("PATCH", cms(ns, "real"), body={"data": {"b": "x"}},
                           params={"dryRun": "All"},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert dry_patch["data"] == {"a": "1", "b": "x"}
    assert cluster.ok("DELETE", cms(ns, "real"), params={"dryRun": "All"})
    live = cluster.ok("GET", cms(ns, "real"))
    assert live["data"] == {"a": "1"}
    assert live["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]

    # dry-run validation still runs
    assert_status(cluster.post(cms(ns), body=configmap("Bad_Name"), params={"dryRun": "All"}),
                  422, "Invalid")
    assert_status(cluster.post(cms(ns), body=configmap("x"), params={"dryRun": "Maybe"}),
                  422, "Invalid")


# --------------------------------------------------------------------------------------------
# discovery


def test_discovery_documents(cluster):
    api = cluster.ok("GET", "/api")
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"], api
    groups = cluster.ok("GET", "/apis")
    assert groups["kind"] == "APIGroupList"
    apps = next(g for g in groups["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"]["groupVersion"] == "apps/v1"
    core = cluster.ok("GET", "/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    res = {r["name"]: r for r in core["resources"]}
    assert res["pods"]["namespaced"] is True and res["pods"]["kind"] == "Pod"
    assert set(res["pods"]["verbs"]) >= {"create", "delete", "deletecollection", "get", "list",
                                         "patch", "update", "watch"}, res["pods"]
    assert "pods/status" in res
    d = {r["name"]: r for r in cluster.ok("GET", "/apis/apps/v1")["resources"]}
    assert d["deployments/scale"]["group"] == "autoscaling" and d["deployments/scale"]["kind"] == "Scale"
    assert "deployments/status" in d
    v = cluster.ok("GET", "/version")
    assert v["major"] == "1" and v["gitVersion"].startswith("v1.")


# --------------------------------------------------------------------------------------------
# watch


def test_watch_from_resource_version_replays_history(cluster, ns):
    mk(cluster, ns, "h-a", {"v": "1"})
    rv0 = cluster.ok("GET", cms(ns))["metadata"]["resourceVersion"]
    mk(cluster, ns, "h-b")
    cluster.ok("PATCH", cms(ns, "h-a"), body={"data": {"v": "2"}},
               headers={"Content-Type": "application/merge-patch+json"})
    cluster.ok("DELETE", cms(ns, "h-b"))
    w = cluster.watch(cms(ns), {"resourceVersion": rv0})
    try:
        assert w.status == 200, w.body
        ev = w.take(3)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in ev] == [
            ("ADDED", "h-b"), ("MODIFIED", "h-a"), ("DELETED", "h-b")], [summarize(e) for e in ev]
        assert ev[1]["object"]["data"] == {"v": "2"}
        rvs = [rv_int(e["object"]["metadata"]["resourceVersion"]) for e in ev]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] > rv_int(rv0), rvs
        assert all(e["object"]["kind"] == "ConfigMap" and e["object"]["apiVersion"] == "v1"
                   for e in ev)
        # and then live events
        mk(cluster, ns, "h-c")
        ev = w.take(1)[0]
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "h-c")
        assert rv_int(ev["object"]["metadata"]["resourceVersion"]) > rvs[-1]
    finally:
        w.close()


def test_watch_without_resource_version_starts_with_current_state(cluster, ns):
    mk(cluster, ns, "s-a")
    mk(cluster, ns, "s-b")
    for rv in (None, "0"):
        w = cluster.watch(cms(ns), {**NO_CA, "resourceVersion": rv} if rv else NO_CA)
        try:
            ev = w.take(2)
            assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in ev) == [
                ("ADDED", "s-a"), ("ADDED", "s-b")], [summarize(e) for e in ev]
        finally:
            w.close()


def test_watch_selectors_and_all_namespaces(cluster, ns):
    other = ns + "-o"
    cluster.create_namespace(other)
    try:
        rv = cluster.ok("GET", "/api/v1/configmaps", params={"limit": 1})["metadata"][
            "resourceVersion"]
        w = cluster.watch("/api/v1/configmaps", {"resourceVersion": rv,
                                                  "labelSelector": "watched=yes"})
        try:
            mk(cluster, ns, "sel-1", labels={"watched": "yes"})
            mk(cluster, ns, "sel-2")
            mk(cluster, other, "sel-3", labels={"watched": "yes"})
            ev = w.take(2)
            assert [(e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
                    for e in ev] == [(ns, "sel-1"), (other, "sel-3")]
            # an object that stops matching the selector is seen as DELETED
            cluster.ok("PATCH", cms(ns, "sel-1"), body={"metadata": {"labels": {"watched": "no"}}},
                       headers={"Content-Type": "application/merge-patch+json"})
            ev = w.take(1)[0]
            assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "sel-1"), \
                summarize(ev)
        finally:
            w.close()
    finally:
        cluster.delete_namespace(other)


def test_watch_timeout_seconds_and_bookmarks(cluster, ns):
    o = mk(cluster, ns, "bm")
    t0 = time.monotonic()
    w = cluster.watch(cms(ns), {"resourceVersion": o["metadata"]["resourceVersion"],
                                "allowWatchBookmarks": "true", "timeoutSeconds": "5"})
    try:
        ev = w.until(lambda e: e["type"] == "BOOKMARK", timeout=10)
        assert ev["object"]["kind"] == "ConfigMap" and ev["object"]["apiVersion"] == "v1", ev
        assert rv_int(ev["object"]["metadata"]["resourceVersion"]) >= rv_int(
            o["metadata"]["resourceVersion"]), ev
        w.wait_end(timeout=10)
        took = time.monotonic() - t0
        assert 4 <= took <= 10, f"a watch with timeoutSeconds=5 ended after {took:.1f}s"
    finally:
        w.close()


def test_watch_send_initial_events(cluster, ns):
    mk(cluster, ns, "ie-a")
    mk(cluster, ns, "ie-b")
    w = cluster.watch(cms(ns), {**NO_CA, "sendInitialEvents": "true",
                                "resourceVersionMatch": "NotOlderThan",
                                "allowWatchBookmarks": "true"})
    try:
        assert w.status == 200, w.body
        ev = w.take(2, skip_bookmarks=False)
        assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in ev) == [
            ("ADDED", "ie-a"), ("ADDED", "ie-b")], [summarize(e) for e in ev]
        bm = w.next(timeout=10)
        assert bm is not None and bm["type"] == "BOOKMARK", summarize(bm)
        ann = bm["object"]["metadata"].get("annotations", {})
        assert ann.get("k8s.io/initial-events-end") == "true", bm
        assert rv_int(bm["object"]["metadata"]["resourceVersion"]) >= max(
            rv_int(e["object"]["metadata"]["resourceVersion"]) for e in ev)
        mk(cluster, ns, "ie-c")
        ev = w.take(1)[0]
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "ie-c")
    finally:
        w.close()


def expect_gone(cluster, path, params):
    """A watch at a compacted resourceVersion: HTTP 410, or an ERROR event with a 410 Status."""
    w = cluster.watch(path, params)
    try:
        if w.status != 200:
            assert w.status == 410, (w.status, w.body)
            return
        ev = w.next(timeout=10)
        assert ev is not None and ev["type"] == "ERROR", f"expected ERROR 410, got {summarize(ev)}"
        st = ev["object"]
        assert st["kind"] == "Status" and st["code"] == 410, st
        assert st["reason"] in ("Expired", "Gone"), st
        assert w.wait_end(timeout=10) == [], "the watch ends after the ERROR event"
    finally:
        w.close()


def test_watch_too_old_resource_version_is_410(cluster, ns):
    old = mk(cluster, ns, "old")
    mk(cluster, ns, "old-too")
    old_rv = old["metadata"]["resourceVersion"]
    page = cluster.ok("GET", cms(ns), params={**NO_CA, "limit": 1})
    for i in range(3):
        mk(cluster, ns, f"newer-{i}")
    # restart with a short compaction interval (upstream's --etcd-compaction-interval, which
    # krust applies to both backends): history older than one interval is dropped
    cluster.server.extra_args = ["--etcd-compaction-interval", "1s"]
    try:
        cluster.restart()
        mk(cluster, ns, "after-restart")

        def list_gone():
            r = cluster.get(cms(ns), params={**NO_CA, "resourceVersion": old_rv,
                                             "resourceVersionMatch": "Exact"})
            return [r] if r.status_code != 200 else None  # (a 4xx Response is falsy)
        [r] = wait_for(list_gone, 15, interval=0.5, what=f"history before {old_rv} compacted")
        st = assert_status(r, 410, "Expired")
        assert st["message"], st
        mk(cluster, ns, "after-compaction")

        expect_gone(cluster, cms(ns), {**NO_CA, "resourceVersion": old_rv})
        assert page["metadata"].get("continue"), page["metadata"]
        st = assert_status(cluster.get(cms(ns), params={**NO_CA, "limit": 1,
                                                        "continue": page["metadata"]["continue"]}),
                           410, "Expired")
        # upstream hands back an inconsistent continue token that lists the rest as of now
        inconsistent = st["metadata"].get("continue")
        assert inconsistent and "inconsistent list" in st["message"], st
        rest = cluster.ok("GET", cms(ns),
                          params={**NO_CA, "limit": 500, "continue": inconsistent})
        first = page["items"][0]["metadata"]["name"]
        names = [i["metadata"]["name"] for i in rest["items"]]
        # keys sort by name: only "old-too" follows the first page's "old"
        assert first == "old" and names == ["old-too"], names
        # the server still answers normally, and a watch from now works
        assert "after-compaction" in list_names(cluster, cms(ns))
        now = cluster.ok("GET", cms(ns), params=NO_CA)["metadata"]["resourceVersion"]
        w = cluster.watch(cms(ns), {**NO_CA, "resourceVersion": now})
        try:
            assert w.status == 200, w.body
            mk(cluster, ns, "live")
            ev = w.take(1)[0]
            assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "live")
        finally:
            w.close()
    finally:
        cluster.server.extra_args = []
        cluster.restart()


def test_a_create_with_a_resource_version_is_refused(cluster, ns):
    """As upstream's storage: `resourceVersion should not be set on objects to be created`,
    an internal error without a reason (500)."""
    body = configmap("with-rv", {"a": "b"})
    body["metadata"]["resourceVersion"] = "12"
    r = cluster.post(cms(ns), body=body)
    assert r.status_code == 500, r.text
    st = r.json()
    assert st["message"] == "resourceVersion should not be set on objects to be created", st
    assert "reason" not in st, st
    assert cluster.get(cms(ns, "with-rv")).status_code == 404
    # "0" and an empty one are no resourceVersion.
    body["metadata"]["resourceVersion"] = "0"
    assert cluster.post(cms(ns), body=body).status_code == 201


def test_a_put_of_a_missing_service_creates_it_and_of_a_configmap_is_not_found(cluster, ns):
    """Upstream's AllowCreateOnUpdate: Services yes (201 Created), ConfigMaps no (404)."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "put-made"},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}
    r = cluster.put(f"/api/v1/namespaces/{ns}/services/put-made", body=svc)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["clusterIP"], r.text
    r = cluster.put(f"/api/v1/namespaces/{ns}/services/put-made", body=r.json())
    assert r.status_code == 200, r.text
    r = cluster.put(cms(ns, "put-missing"), body=configmap("put-missing", {"a": "b"}))
    assert_status(r, 404, "NotFound")
