"""Server-side field validation (`fieldValidation=Strict|Warn|Ignore`): unknown and duplicate
fields of built-in kinds fail a Strict write (kubectl's default), become `Warning` headers
otherwise (the API's default), and are not looked at with Ignore (`kubectl --validate=false`)."""

import json

import yaml

from conftest import assert_status, configmap, deployment

TYPO = 'unknown field "spec.template.spec.containers[0].imagePullPolice"'


def misspelled(name):
    d = deployment(name)
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    return d


def write(tmp_path, obj, name="d.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(obj))
    return f


def warnings(resp):
    return resp.headers.get("Warning", "")


def test_kubectl_apply_of_a_misspelled_field_fails(kubectl, ns, tmp_path):
    f = write(tmp_path, misspelled("web"))
    err = kubectl.fail("apply", "-n", ns, "-f", f)
    assert (f'Error from server (BadRequest): error when creating "{f}": Deployment in version '
            f'"v1" cannot be handled as a Deployment: strict decoding error: {TYPO}') in err, err
    assert kubectl.run("get", "deployment", "web", "-n", ns).returncode != 0


def test_kubectl_create_and_replace_report_every_unknown_field(kubectl, ns, tmp_path):
    d = misspelled("web")
    d["spec"]["foo"] = 1
    f = write(tmp_path, d)
    err = kubectl.fail("create", "-n", ns, "-f", f)
    assert ('strict decoding error: unknown field "spec.foo", ' + TYPO) in err, err
    kubectl("create", "-n", ns, "-f", write(tmp_path, deployment("web"), "ok.yaml"))
    current = kubectl.json("get", "deployment", "web", "-n", ns)
    current["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    err = kubectl.fail("replace", "-n", ns, "-f", write(tmp_path, current, "replace.yaml"))
    assert ("Deployment in version \"v1\" cannot be handled as a Deployment: "
            f"strict decoding error: {TYPO}") in err, err


def test_kubectl_apply_patch_of_a_misspelled_field_fails(kubectl, ns, tmp_path):
    kubectl("apply", "-n", ns, "-f", write(tmp_path, deployment("web")))
    err = kubectl.fail("apply", "-n", ns, "-f", write(tmp_path, misspelled("web"), "typo.yaml"))
    assert f"strict decoding error: {TYPO}" in err, err
    d = kubectl.json("get", "deployment", "web", "-n", ns)
    assert "imagePullPolice" not in d["spec"]["template"]["spec"]["containers"][0]


def test_kubectl_validate_false_and_warn(kubectl, ns, tmp_path):
    out = kubectl("apply", "--validate=false", "-n", ns, "-f", write(tmp_path, misspelled("a")))
    assert "deployment.apps/a created" in out, out
    p = kubectl.run("apply", "--validate=warn", "-n", ns,
                    "-f", write(tmp_path, misspelled("b"), "b.yaml"))
    assert p.returncode == 0, p.stderr
    assert "deployment.apps/b created" in p.stdout, p.stdout
    assert f"Warning: {TYPO}" in p.stderr, p.stderr
    # A later strict apply does not trip over what an earlier write let in.
    d = misspelled("a")
    d["metadata"]["annotations"] = {"tier": "front"}
    kubectl("apply", "-n", ns, "-f", write(tmp_path, d, "a2.yaml"))


def test_raw_create_warns_by_default(cluster, ns):
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    r = cluster.post(path, body=misspelled("web"))
    assert r.status_code == 201, r.text
    assert warnings(r) == '299 - "' + TYPO.replace('"', '\\"') + '"', r.headers

    r = cluster.post(path, body=deployment("clean"))
    assert r.status_code == 201, r.text
    assert "Warning" not in r.headers, r.headers

    r = cluster.post(path, body=misspelled("ignored"), params={"fieldValidation": "Ignore"})
    assert r.status_code == 201, r.text
    assert "Warning" not in r.headers, r.headers


def test_raw_strict_create_and_duplicate_fields(cluster, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    cm = configmap("c", {"a": "1"})
    cm["extra"] = True
    st = assert_status(cluster.post(path, body=cm, params={"fieldValidation": "Strict"}),
                       400, "BadRequest")
    assert st["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                             'strict decoding error: unknown field "extra"'), st

    body = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},'
            '"data":{"a":"1","a":"2"}}')
    headers = {"Content-Type": "application/json"}
    st = assert_status(cluster.post(path, data=body, headers=headers,
                                    params={"fieldValidation": "Strict"}), 400, "BadRequest")
    assert st["message"].endswith('strict decoding error: duplicate field "data.a"'), st
    r = cluster.post(path, data=body, headers=headers)
    assert r.status_code == 201, r.text
    assert warnings(r) == '299 - "duplicate field \\"data.a\\""', r.headers
    assert r.json()["data"] == {"a": "2"}


def test_invalid_field_validation_is_refused(cluster, ns):
    r = cluster.post(f"/api/v1/namespaces/{ns}/configmaps", body=configmap("c"),
                     params={"fieldValidation": "strict"})
    st = assert_status(r, 422, "Invalid")
    assert st["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: '
                             'Unsupported value: "strict": supported values: "", "Ignore", '
                             '"Strict", "Warn"'), st


def test_raw_patches_check_the_patched_object(cluster, ns):
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    d = deployment("web", replicas=1)
    d["spec"]["extra"] = "kept"
    assert cluster.post(base, body=d).status_code == 201
    strict = {"fieldValidation": "Strict"}

    r = cluster.patch(f"{base}/web", {"spec": {"paused": True, "foo": 1}}, "merge", params=strict)
    st = assert_status(r, 400, "BadRequest")
    assert st["message"] == 'strict decoding error: unknown field "spec.foo"', st

    # What an earlier write stored is not reported again.
    r = cluster.patch(f"{base}/web", {"metadata": {"labels": {"x": "y"}}}, "strategic",
                      params=strict)
    assert r.status_code == 200, r.text
    assert "Warning" not in r.headers, r.headers

    r = cluster.patch(f"{base}/web", [{"op": "add", "path": "/spec/bar", "value": 1}], "json")
    assert r.status_code == 200, r.text
    assert warnings(r) == '299 - "unknown field \\"spec.bar\\""', r.headers

    # The scale subresource is checked as a Scale, not as a Deployment.
    r = cluster.patch(f"{base}/web/scale", {"spec": {"replicas": 2}}, "merge", params=strict)
    assert r.status_code == 200, r.text
    r = cluster.patch(f"{base}/web/scale", {"spec": {"replicaz": 2}}, "merge", params=strict)
    st = assert_status(r, 400, "BadRequest")
    assert st["message"] == 'strict decoding error: unknown field "spec.replicaz"', st
    assert cluster.ok("GET", f"{base}/web")["spec"]["replicas"] == 2


def test_raw_strict_update(cluster, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    assert cluster.post(path, body=configmap("c", {"a": "1"})).status_code == 201
    cm = cluster.ok("GET", f"{path}/c")
    cm["data"]["a"] = "2"
    cm["metadata"]["lables"] = {"x": "y"}
    r = cluster.put(f"{path}/c", body=cm, params={"fieldValidation": "Strict"})
    st = assert_status(r, 400, "BadRequest")
    assert st["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                             'strict decoding error: unknown field "metadata.lables"'), st
    del cm["metadata"]["lables"]
    r = cluster.put(f"{path}/c", body=cm, params={"fieldValidation": "Strict"})
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["data"] == {"a": "2"}
