"""The OpenAPI documents: `/openapi/v2` and `/openapi/v3` describe every built-in kind with
upstream's descriptions and every custom resource with its definition's schema, so that
`kubectl explain` shows them (`/openapi/v2` in JSON and, as client-go asks for it, in gnostic's
protobuf); ETags answer `If-None-Match` with 304, the v3 index names each
group version's document with its hash; kubectl's apply and create keep leaving field
validation to the server (the `fieldValidation` parameter of the PATCH operations)."""

import yaml

from conftest import deployment, rand_suffix, wait_for

TYPO = 'unknown field "spec.template.spec.containers[0].imagePullPolice"'


def crd(group):
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A Gadget is a thing made in the e2e tests.",
                    "properties": {"spec": {
                        "type": "object",
                        "description": "What the gadget is made of.",
                        "properties": {
                            "color": {"type": "string",
                                      "description": "The gadget's color, in plain words."},
                            "size": {"type": "integer",
                                     "description": "How many centimetres long it is."},
                        },
                    }},
                }},
            }],
        },
    }


def create_crd(cluster, group):
    cluster.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd(group))

    def established():
        d = cluster.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}")
        conditions = (d.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, 30, what="the definition established")
    wait_for(lambda: cluster.get(f"/apis/{group}/v1").status_code == 200, 30,
             what="the group version served")


def write(tmp_path, obj, name="o.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(obj))
    return f


def test_explain_shows_upstreams_descriptions_of_deployment_strategy(kubectl):
    out = kubectl("explain", "deployment.spec.strategy")
    assert "KIND:       Deployment" in out or "KIND:     Deployment" in out, out
    assert "The deployment strategy to use to replace existing pods with new ones." in out, out
    assert "DeploymentStrategy describes how to replace existing pods with new ones." in out, out
    assert "rollingUpdate" in out and "<RollingUpdateDeployment>" in out, out


def test_explain_shows_a_containers_image(kubectl):
    out = " ".join(kubectl("explain", "pods.spec.containers.image").split())
    assert "FIELD: image <string>" in out, out
    assert ("Container image name. More info: https://kubernetes.io/docs/concepts/containers/images"
            " This field is optional to allow higher level config management") in out, out


def test_explain_shows_a_custom_resources_descriptions(kubectl, cluster):
    group = f"e2e-{rand_suffix()}.example.com"
    create_crd(cluster, group)
    out = " ".join(kubectl("explain", f"gadgets.{group}.spec").split())
    assert "What the gadget is made of." in out, out
    assert "color <string> The gadget's color, in plain words." in out, out
    assert "size <integer> How many centimetres long it is." in out, out
    top = " ".join(kubectl("explain", f"gadgets.{group}").split())
    assert "A Gadget is a thing made in the e2e tests." in top, top
    assert "metadata <ObjectMeta>" in top, top


def test_a_custom_resources_document_changes_with_its_definition(cluster):
    group = f"e2e-{rand_suffix()}.example.com"
    create_crd(cluster, group)
    path = f"apis/{group}/v1"
    before = cluster.ok("GET", "/openapi/v3")["paths"][path]["serverRelativeURL"]
    d = cluster.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}")
    d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "color"]["description"] = "The gadget's colour."
    cluster.ok("PUT", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}",
               body=d)

    def moved():
        return cluster.ok("GET", "/openapi/v3")["paths"][path]["serverRelativeURL"] != before

    wait_for(moved, 30, what="a new hash for the group version")
    doc = cluster.ok("GET", f"/openapi/v3/{path}")
    gadget = doc["components"]["schemas"][f"com.example.{group.split('.')[0]}.v1.Gadget"]
    assert gadget["properties"]["spec"]["properties"]["color"]["description"] == "The gadget's colour."
    assert gadget["x-kubernetes-group-version-kind"] == [
        {"group": group, "kind": "Gadget", "version": "v1"}]


def test_swagger_answers_if_none_match_with_not_modified(cluster):
    r = cluster.get("/openapi/v2")
    assert r.status_code == 200, r.text[:500]
    etag = r.headers["ETag"]
    assert etag.startswith('"') and len(etag) == 130, etag
    doc = r.json()
    assert doc["swagger"] == "2.0"
    deployment = doc["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"][
        "x-kubernetes-patch-merge-key"] == "name"
    again = cluster.get("/openapi/v2", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"", again.status_code
    assert again.headers["ETag"] == etag
    assert cluster.get("/openapi/v2", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_swagger_is_served_in_protobuf_to_who_asks_for_it(cluster):
    r = cluster.get("/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert r.status_code == 200, r.status_code
    assert r.headers["Content-Type"] == \
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    # gnostic's Document: field 1 is `swagger`, "2.0".
    assert r.content[:5] == b"\x0a\x032.0", r.content[:16]
    assert b"io.k8s.api.apps.v1.Deployment" in r.content
    assert cluster.get("/openapi/v2", headers={"Accept": "*/*"}).headers["Content-Type"] == \
        "application/json"
    # The v3 documents have no protobuf form here.
    r = cluster.get("/openapi/v3/apis/apps/v1", headers={
        "Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"})
    assert r.status_code == 406, r.status_code


def test_explain_reads_the_protobuf_swagger(kubectl, cluster):
    """`--output=plaintext-openapiv2` reads `/openapi/v2` in protobuf, as client-go asks it."""
    out = kubectl("explain", "deployment.spec.strategy", "--output=plaintext-openapiv2")
    assert "DeploymentStrategy describes how to replace existing pods with new ones." in out, out
    assert "rollingUpdate" in out, out
    group = f"e2e-{rand_suffix()}.example.com"
    create_crd(cluster, group)
    out = " ".join(kubectl("explain", "gadgets.spec", f"--api-version={group}/v1",
                           "--output=plaintext-openapiv2").split())
    assert "color <string> The gadget's color, in plain words." in out, out


def test_group_version_documents_carry_their_hash_and_etag(cluster):
    index = cluster.ok("GET", "/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash="), url
    r = cluster.get(url)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, immutable"
    assert "Expires" in r.headers
    etag = r.headers["ETag"]
    assert etag == '"' + url.split("hash=")[1] + '"'
    doc = r.json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    plain = cluster.get("/openapi/v3/apis/apps/v1")
    assert plain.status_code == 200 and "Cache-Control" not in plain.headers
    assert cluster.get("/openapi/v3/apis/apps/v1",
                       headers={"If-None-Match": etag}).status_code == 304
    old = cluster.http.get(cluster.url + "/openapi/v3/apis/apps/v1?hash=0123",
                           allow_redirects=False, timeout=30)
    assert old.status_code == 301 and old.headers["Location"] == url
    assert cluster.get("/openapi/v3/apis/nothing.example.com/v1").status_code == 404


def test_apply_leaves_field_validation_to_the_server(kubectl, ns, tmp_path):
    d = deployment("web", env={"A": "1"})
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    f = write(tmp_path, d)
    p = kubectl.run("apply", "-n", ns, "-f", f)
    assert p.returncode == 0 and "warning" not in p.stderr.lower(), p.stderr
    # A change to one container's environment: kubectl's patch (computed from the published
    # schema's merge keys) keeps the other container.
    d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "2"
    p = kubectl.run("apply", "-n", ns, "-f", write(tmp_path, d))
    assert p.returncode == 0 and "warning" not in p.stderr.lower(), p.stderr
    got = kubectl.json("get", "deployment", "web", "-n", ns)
    containers = got["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"], containers
    assert containers[0]["env"] == [{"name": "A", "value": "2"}]

    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    err = kubectl.fail("apply", "-n", ns, "-f", write(tmp_path, d))
    assert "Error from server (BadRequest)" in err and TYPO in err, err
    bad = deployment("other")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    err = kubectl.fail("create", "--validate=strict", "-n", ns, "-f", write(tmp_path, bad))
    assert "Error from server (BadRequest)" in err and TYPO in err, err
    kubectl("create", "-n", ns, "-f", write(tmp_path, deployment("good")))


def test_custom_resources_apply_with_merge_patches(kubectl, cluster, ns, tmp_path):
    group = f"e2e-{rand_suffix()}.example.com"
    create_crd(cluster, group)
    g = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g"},
         "spec": {"color": "red", "size": 3}}
    kubectl("apply", "-n", ns, "-f", write(tmp_path, g))
    g["spec"]["size"] = 4
    p = kubectl.run("apply", "-n", ns, "-f", write(tmp_path, g))
    assert p.returncode == 0 and "warning" not in p.stderr.lower(), p.stderr
    got = kubectl.json("get", f"gadgets.{group}", "g", "-n", ns)
    assert got["spec"] == {"color": "red", "size": 4}
