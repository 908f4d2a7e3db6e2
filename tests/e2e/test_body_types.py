"""Bodies are type-checked against upstream's schema before anything is stored (issue 11).

A value of the wrong type is refused as upstream's decoder refuses it: 400 BadRequest
`<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal ...` for a
create or update, 422 Invalid on the field `patch` for a patch. One such object stored would
break typed clients (the Python client's list of ConfigMaps) for everyone.
"""

import json

import pytest
from kubernetes import client

from conftest import assert_status, configmap, deployment


def cms(ns, name=""):
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def secrets(ns, name=""):
    return f"/api/v1/namespaces/{ns}/secrets" + (f"/{name}" if name else "")


def deploys(ns, name=""):
    return f"/apis/apps/v1/namespaces/{ns}/deployments" + (f"/{name}" if name else "")


def assert_bad_body(resp, kind, needle, field=None):
    """A 400 from decoding a body: upstream's wording, naming the field."""
    st = assert_status(resp, 400, "BadRequest")
    prefix = f'{kind} in version "'
    assert st["message"].startswith(prefix), st
    assert f"cannot be handled as a {kind}: " in st["message"], st
    assert needle in st["message"], st
    if field is not None:
        causes = st.get("details", {}).get("causes", [])
        assert [c.get("field") for c in causes] == [field], st
    return st


def assert_bad_patch(resp, needle):
    """A 422 from decoding a patched object: upstream's `patch: Invalid value` form."""
    st = assert_status(resp, 422, "Invalid")
    assert "patch: Invalid value: " in st["message"], st
    assert needle in st["message"], st
    causes = st.get("details", {}).get("causes", [])
    assert [c.get("field") for c in causes] == ["patch"], st
    return st


@pytest.mark.parametrize("validation", [None, "Strict", "Warn", "Ignore"])
def test_a_number_in_configmap_data_is_refused_whatever_the_field_validation(
        cluster, ns, validation):
    params = {"fieldValidation": validation} if validation else None
    r = cluster.post(cms(ns), configmap("num", {"a": "x", "b": 1}), params=params)
    assert_bad_body(r, "ConfigMap",
                    "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
                    field="data.b")
    assert_status(cluster.get(cms(ns, "num")), 404, "NotFound")


def test_a_wrong_type_on_update_is_refused_and_the_object_kept(cluster, ns):
    cluster.ok("POST", cms(ns), body=configmap("upd", {"a": "1"}))
    body = configmap("upd", {"a": True})
    assert_bad_body(cluster.put(cms(ns, "upd"), body), "ConfigMap",
                    "cannot unmarshal bool into Go struct field ConfigMap.data of type string",
                    field="data.a")
    assert cluster.ok("GET", cms(ns, "upd"))["data"] == {"a": "1"}


@pytest.mark.parametrize("ptype,patch", [
    ("merge", {"data": "oops"}),
    ("strategic", {"data": "oops"}),
    ("json", [{"op": "replace", "path": "/data", "value": "oops"}]),
])
def test_a_patch_that_makes_data_a_string_is_refused(cluster, ns, ptype, patch):
    cluster.ok("POST", cms(ns), body=configmap("pat", {"a": "1"}))
    r = cluster.patch(cms(ns, "pat"), patch, ptype)
    st = assert_bad_patch(
        r, "json: cannot unmarshal string into Go struct field ConfigMap.data of type "
           "map[string]string")
    assert st["message"].startswith(' "" is invalid: patch: Invalid value: "{'), st
    assert cluster.ok("GET", cms(ns, "pat"))["data"] == {"a": "1"}


def test_secret_data_that_is_not_base64_is_refused(cluster, ns):
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"good": "aGVsbG8=", "bad": "not base64!"}}
    assert_bad_body(cluster.post(secrets(ns), body), "Secret",
                    "illegal base64 data at input byte 3", field="data.bad")
    body["data"] = {"good": "aGVsbG8="}
    created = cluster.ok("POST", secrets(ns), body=body, expect=(201,))
    assert created["data"] == {"good": "aGVsbG8="}
    r = cluster.patch(secrets(ns, "s"), {"data": {"more": "%%%"}})
    assert_bad_patch(r, "illegal base64 data at input byte 0")


def test_replicas_as_a_word_is_refused(cluster, ns):
    body = deployment("web")
    body["spec"]["replicas"] = "three"
    assert_bad_body(cluster.post(deploys(ns), body), "Deployment",
                    "json: cannot unmarshal string into Go struct field "
                    "DeploymentSpec.spec.replicas of type int32",
                    field="spec.replicas")
    body["spec"]["replicas"] = 2**31
    assert_bad_body(cluster.post(deploys(ns), body), "Deployment",
                    f"cannot unmarshal number {2**31} into Go struct field "
                    "DeploymentSpec.spec.replicas of type int32")
    body["spec"]["replicas"] = 2
    cluster.ok("POST", deploys(ns), body=body, expect=(201,))
    r = cluster.patch(deploys(ns, "web"), {"spec": {"replicas": "three"}})
    assert_bad_patch(r, "DeploymentSpec.spec.replicas of type int32")
    scale = f"{deploys(ns, 'web')}/scale"
    r = cluster.patch(scale, {"spec": {"replicas": "three"}})
    assert_bad_patch(r, "ScaleSpec.spec.replicas of type int32")
    assert cluster.ok("GET", deploys(ns, "web"))["spec"]["replicas"] == 2


def test_well_typed_bodies_with_int_or_string_and_quantities_pass(cluster, ns):
    body = deployment("typed")
    body["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "500m", "memory": 134217728}, "requests": {"cpu": 0.25}}
    body["metadata"]["creationTimestamp"] = None
    cluster.ok("POST", deploys(ns), body=body, expect=(201,))
    body = deployment("badq")
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    assert_bad_body(cluster.post(deploys(ns), body), "Deployment",
                    "quantities must match the regular expression",
                    field="spec.template.spec.containers[0].resources.limits.cpu")


def test_a_resource_version_as_a_number_is_refused(cluster, ns):
    body = configmap("rvnum", {"a": "1"}, resourceVersion=5)
    assert_bad_body(cluster.post(cms(ns), body), "ConfigMap",
                    "json: cannot unmarshal number into Go struct field "
                    "ObjectMeta.metadata.resourceVersion of type string",
                    field="metadata.resourceVersion")
    created = cluster.ok("POST", cms(ns), body=configmap("rvnum", {"a": "1"}), expect=(201,))
    rv = int(created["metadata"]["resourceVersion"])
    body = configmap("rvnum", {"a": "2"}, resourceVersion=rv)
    assert_bad_body(cluster.put(cms(ns, "rvnum"), body), "ConfigMap",
                    "ObjectMeta.metadata.resourceVersion of type string")
    r = cluster.patch(cms(ns, "rvnum"), {"metadata": {"resourceVersion": rv}})
    assert_bad_patch(r, "ObjectMeta.metadata.resourceVersion of type string")


def test_a_patch_may_not_rename_move_or_retype_the_object(cluster, ns):
    cluster.ok("POST", cms(ns), body=configmap("keep", {"a": "1"}))
    r = cluster.patch(cms(ns, "keep"), {"metadata": {"name": "other"}})
    st = assert_status(r, 400, "BadRequest")
    assert st["message"] == \
        "the name of the object (other) does not match the name on the URL (keep)", st
    r = cluster.patch(cms(ns, "keep"), [{"op": "replace", "path": "/metadata/name",
                                          "value": "other"}], "json")
    assert_status(r, 400, "BadRequest")
    r = cluster.patch(cms(ns, "keep"), {"metadata": {"namespace": "default"}})
    st = assert_status(r, 400, "BadRequest")
    assert st["message"] == ("the namespace of the object (default) does not match the "
                             f"namespace on the request ({ns})"), st
    r = cluster.patch(cms(ns, "keep"), {"kind": "Secret"})
    assert_bad_patch(r, "the object provided is of kind Secret, but the request is for ConfigMap")
    r = cluster.patch(cms(ns, "keep"), {"apiVersion": "v2"})
    assert_bad_patch(r, "the API version in the data (v2) does not match the expected API "
                        "version (v1)")
    got = cluster.ok("GET", cms(ns, "keep"))
    assert (got["metadata"]["name"], got["kind"], got["data"]) == ("keep", "ConfigMap", {"a": "1"})
    assert_status(cluster.get(cms(ns, "other")), 404, "NotFound")


@pytest.mark.parametrize("where", ["list", "get", "watch"])
def test_a_malformed_resource_version_parameter_is_a_bad_request(cluster, ns, where):
    cluster.ok("POST", cms(ns), body=configmap("rv", {"a": "1"}))
    path = cms(ns, "rv") if where == "get" else cms(ns)
    params = {"resourceVersion": "abc"}
    if where == "watch":
        params["watch"] = "true"
    st = assert_status(cluster.get(path, params=params), 400, "BadRequest")
    assert st["message"] == ('resourceVersion: Invalid value: "abc": strconv.ParseUint: '
                             'parsing "abc": invalid syntax'), st
    assert cluster.get(path, params={"resourceVersion": "0"} if where != "watch" else
                       {"resourceVersion": "0", "watch": "true", "timeoutSeconds": "1"}
                       ).status_code == 200


def test_a_huge_invalid_value_gets_a_small_answer(cluster, ns):
    huge = "-" + "x" * 3_000_000
    r = cluster.post(cms(ns), configmap("big", labels={"app": huge}))
    st = assert_status(r, 422, "Invalid")
    assert "metadata.labels: Invalid value: " in st["message"], st["message"][:500]
    assert len(r.content) < 8 * 1024, len(r.content)
    body = configmap("big")
    body["metadata"]["creationTimestamp"] = huge
    r = cluster.post(cms(ns), body)
    assert_bad_body(r, "ConfigMap", "parsing time ")
    assert len(r.content) < 8 * 1024, len(r.content)
    cluster.ok("POST", cms(ns), body=configmap("big", {"a": "1"}), expect=(201,))
    r = cluster.patch(cms(ns, "big"), {"data": {"a": 1}, "metadata": {"annotations":
                                                                     {"x": "y" * 1_000_000}}})
    assert_bad_patch(r, "ConfigMap.data of type string")
    assert len(r.content) < 8 * 1024, len(r.content)


def test_kubectl_reports_the_decoding_error(cluster, ns, kubectl):
    manifest = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kc\n"
                f"  namespace: {ns}\ndata:\n  a: 1\n")
    err = kubectl.fail("create", "-f", "-", input=manifest)
    assert "BadRequest" in err and "cannot unmarshal number into Go struct field " \
        "ConfigMap.data of type string" in err, err
    assert_status(cluster.get(cms(ns, "kc")), 404, "NotFound")


def test_the_python_client_still_lists_configmaps_after_bad_writes(cluster, ns):
    bad = [
        configmap("p1", {"a": 1}),
        configmap("p2", {"a": ["x"]}),
        configmap("p3", {"a": {"b": "c"}}),
        {**configmap("p4"), "binaryData": {"x": "***"}},
        {**configmap("p5"), "immutable": "yes"},
    ]
    for body in bad:
        assert cluster.post(cms(ns), body).status_code == 400, body
    cluster.ok("POST", cms(ns), body=configmap("good", {"a": "1"}))
    for patch in ({"data": {"a": 1}}, {"data": "s"}, {"data": ["x"]}):
        assert cluster.patch(cms(ns, "good"), patch).status_code == 422, patch
    core = client.CoreV1Api(cluster.api_client())
    names = [c.metadata.name for c in core.list_namespaced_config_map(ns).items]
    assert "good" in names and not any(n.startswith("p") for n in names), names
    everywhere = core.list_config_map_for_all_namespaces()
    assert all(isinstance(c.data or {}, dict) for c in everywhere.items)
    assert json.dumps(core.read_namespaced_config_map("good", ns).data) == '{"a": "1"}'
