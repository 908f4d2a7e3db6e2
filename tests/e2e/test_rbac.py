"""RBAC: the default policy, aggregation, bindings as SubjectAccessReviews see them,
`kubectl auth can-i`, and escalation prevention for a user who is not in system:masters."""

import subprocess
import time

import pytest
import yaml

from conftest import assert_status, wait_for

RBAC = "/apis/rbac.authorization.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"


def sar(cluster, user, groups, ns, verb, resource, group="", **extra):
    """Posts a SubjectAccessReview as the admin; answers its status."""
    attrs = {"namespace": ns, "verb": verb, "resource": resource, "group": group, **extra}
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}}
    out = cluster.ok("POST", f"{AUTHZ}/subjectaccessreviews", body=body, expect=(201,))
    assert out["kind"] == "SubjectAccessReview", out
    return out["status"]


def eventually_allowed(cluster, *args, expect=True, **kw):
    """The review's answer once the server has seen the latest RBAC writes."""
    deadline = time.monotonic() + 5
    while True:
        status = sar(cluster, *args, **kw)
        if status["allowed"] == expect or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def binding(name, role_kind, role, subjects, ns=None):
    md = {"name": name}
    if ns:
        md["namespace"] = ns
    return {"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding" if ns else "ClusterRoleBinding", "metadata": md,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects}


def group(name):
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def user(name):
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def rule(verbs, groups, resources):
    return {"verbs": verbs, "apiGroups": groups, "resources": resources}


@pytest.fixture(scope="module")
def bob(cluster):
    """A client certificate for CN=bob O=dev signed by the cluster CA, and its kubeconfig."""
    tls = cluster.server.data_dir / "tls"
    out = cluster.workdir / "bob"
    out.mkdir(exist_ok=True)
    key, csr, crt = out / "bob.key", out / "bob.csr", out / "bob.crt"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=bob/O=dev"], check=True, capture_output=True)
    ext = out / "client.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", tls / "ca.crt", "-CAkey",
                    tls / "ca.key", "-CAcreateserial", "-out", crt, "-days", "1",
                    "-extfile", ext], check=True, capture_output=True)
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    for u in cfg["users"]:
        u["user"] = {"client-certificate": str(crt), "client-key": str(key)}
    kubeconfig = out / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    session = cluster.creds.session(with_client_cert=False)
    session.cert = (str(crt), str(key))
    return {"session": session, "kubeconfig": kubeconfig}


def test_the_default_roles_and_bindings_exist(kubectl):
    out = kubectl("get", "clusterrole", "admin", "edit", "view", "cluster-admin", "-o", "name")
    assert out.split() == ["clusterrole.rbac.authorization.k8s.io/" + n
                           for n in ("admin", "edit", "view", "cluster-admin")]
    crb = kubectl.json("get", "clusterrolebinding", "cluster-admin")
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                "name": "system:masters"}]
    assert crb["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    role = kubectl.json("get", "clusterrole", "system:controller:deployment-controller")
    assert role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"


def test_admin_edit_and_view_are_aggregated(cluster):
    view = cluster.ok("GET", f"{RBAC}/clusterroles/view")
    resources = {res for r in view["rules"] for res in r.get("resources", [])}
    assert {"pods", "deployments", "configmaps"} <= resources
    assert "secrets" not in resources
    edit = cluster.ok("GET", f"{RBAC}/clusterroles/edit")
    assert {"secrets", "pods/exec"} <= {res for r in edit["rules"] for res in r["resources"]}
    admin = cluster.ok("GET", f"{RBAC}/clusterroles/admin")
    assert "rolebindings" in {res for r in admin["rules"] for res in r["resources"]}


def test_a_labelled_cluster_role_shows_up_in_edit_and_admin(cluster):
    name = "e2e-widgets-edit"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name,
                         "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
            "rules": [rule(["get", "create"], ["example.com"], ["widgets"])]}
    cluster.ok("POST", f"{RBAC}/clusterroles", body=role, expect=(201,))
    try:
        def has_widgets(role_name):
            rules = cluster.ok("GET", f"{RBAC}/clusterroles/{role_name}").get("rules") or []
            return any("widgets" in r.get("resources", []) for r in rules)

        wait_for(lambda: has_widgets("edit"), 10, what="edit to aggregate widgets")
        wait_for(lambda: has_widgets("admin"), 10, what="admin to aggregate edit's widgets")
        assert not has_widgets("view")
    finally:
        cluster.delete(f"{RBAC}/clusterroles/{name}")
    wait_for(lambda: not any("widgets" in r.get("resources", []) for r in
                             cluster.ok("GET", f"{RBAC}/clusterroles/edit").get("rules") or []),
             10, what="edit to drop the deleted role's rules")


def test_a_role_binding_of_edit_allows_in_its_namespace_only(cluster, ns_name):
    a, b = ns_name, ns_name + "-b"
    cluster.create_namespace(a)
    cluster.create_namespace(b)
    try:
        cluster.ok("POST", f"{RBAC}/namespaces/{a}/rolebindings",
                   body=binding("dev-edit", "ClusterRole", "edit", [group("dev")], ns=a),
                   expect=(201,))
        allowed = eventually_allowed(cluster, "jane", ["dev"], a, "create", "deployments",
                                     group="apps")
        assert allowed == {"allowed": True, "reason":
                           f'RBAC: allowed by RoleBinding "dev-edit/{a}" of ClusterRole "edit" '
                           f'to Group "dev"'}, allowed
        assert not sar(cluster, "jane", ["dev"], b, "create", "deployments", group="apps")["allowed"]
        assert not sar(cluster, "jane", ["dev"], "", "create", "namespaces")["allowed"]
        assert not sar(cluster, "jane", ["ops"], a, "create", "deployments", group="apps")["allowed"]
        assert not sar(cluster, "jane", ["dev"], a, "create", "roles",
                       group="rbac.authorization.k8s.io")["allowed"]
        # the default policy: everyone may discover, masters may do anything
        body = {"spec": {"user": "jane", "groups": ["system:authenticated"],
                         "nonResourceAttributes": {"path": "/apis/apps", "verb": "get"}}}
        out = cluster.ok("POST", f"{AUTHZ}/subjectaccessreviews", body=body, expect=(201,))
        assert out["status"]["allowed"], out
        assert sar(cluster, "x", ["system:masters"], b, "delete", "secrets")["allowed"]
        cluster.delete(f"{RBAC}/namespaces/{a}/rolebindings/dev-edit")
        assert not eventually_allowed(cluster, "jane", ["dev"], a, "create", "deployments",
                                      group="apps", expect=False)["allowed"]
    finally:
        cluster.delete_namespace(b)


def test_reviews_are_validated_as_upstream(cluster, ns_name):
    r = cluster.post(f"{AUTHZ}/subjectaccessreviews",
                     body={"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}})
    st = assert_status(r, 422, "Invalid")
    assert st["message"] == ('SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: '
                             'Invalid value: "": at least one of user or group must be specified')
    r = cluster.post(f"{AUTHZ}/namespaces/{ns_name}/localsubjectaccessreviews",
                     body={"spec": {"user": "jane", "resourceAttributes": {
                         "namespace": "other", "verb": "get", "resource": "pods"}}})
    assert_status(r, 422, "Invalid")
    r = cluster.post(f"{AUTHZ}/selfsubjectrulesreviews", body={"spec": {}})
    assert_status(r, 400, "BadRequest")
    r = cluster.get(f"{AUTHZ}/subjectaccessreviews")
    assert r.status_code == 405, r.text


def test_kubectl_auth_can_i_answers_from_the_bindings(kubectl, cluster, bob, ns_name):
    a = ns_name
    cluster.create_namespace(a)
    cluster.ok("POST", f"{RBAC}/namespaces/{a}/rolebindings",
               body=binding("dev-edit", "ClusterRole", "edit", [group("dev")], ns=a),
               expect=(201,))
    eventually_allowed(cluster, "bob", ["dev"], a, "create", "deployments", group="apps")
    as_bob = {"kubeconfig": bob["kubeconfig"]}
    assert kubectl("auth", "can-i", "create", "deployments.apps", "-n", a, **as_bob).strip() == "yes"
    r = kubectl.run("auth", "can-i", "create", "deployments.apps", "-n", "default", **as_bob)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r
    r = kubectl.run("auth", "can-i", "create", "clusterroles", **as_bob)
    assert r.stdout.strip() == "no", r
    listing = kubectl("auth", "can-i", "--list", "-n", a, **as_bob)
    lines = [line.split() for line in listing.splitlines()]
    assert any(line[0] == "deployments.apps" for line in lines), listing
    assert any(line[0] == "selfsubjectaccessreviews.authorization.k8s.io" for line in lines), listing
    listing = kubectl("auth", "can-i", "--list", "-n", "default", **as_bob)
    assert "deployments.apps" not in listing, listing
    # the admin is in system:masters
    assert kubectl("auth", "can-i", "delete", "nodes").strip() == "yes"
    assert "*.*" in kubectl("auth", "can-i", "--list", "-n", a)


def test_escalation_is_refused_to_a_user_outside_system_masters(cluster, bob, ns_name):
    a = ns_name
    cluster.create_namespace(a)
    s = bob["session"]
    # bob holds admin in a
    cluster.ok("POST", f"{RBAC}/namespaces/{a}/rolebindings",
               body=binding("bob-admin", "ClusterRole", "admin", [user("bob")], ns=a),
               expect=(201,))
    eventually_allowed(cluster, "bob", ["dev"], a, "create", "roles",
                       group="rbac.authorization.k8s.io")

    def as_bob(method, path, body):
        return cluster.request(method, path, body=body, session=s)

    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "e2e-bob-pods"}, "rules": [rule(["get"], [""], ["pods"])]}
    # Without the right to create ClusterRoles, bob is refused before any escalation check.
    st = assert_status(as_bob("POST", f"{RBAC}/clusterroles", role), 403, "Forbidden")
    assert st["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "bob" cannot create '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope')
    # With it, he may still not grant what he does not hold.
    writer = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
              "metadata": {"name": "e2e-role-writer"},
              "rules": [rule(["create", "update"], ["rbac.authorization.k8s.io"],
                             ["clusterroles"])]}
    cluster.ok("POST", f"{RBAC}/clusterroles", body=writer, expect=(201, 409))
    cluster.ok("POST", f"{RBAC}/clusterrolebindings", expect=(201, 409),
               body=binding("e2e-bob-role-writer", "ClusterRole", "e2e-role-writer",
                            [user("bob")]))
    eventually_allowed(cluster, "bob", ["dev"], None, "create", "clusterroles",
                       group="rbac.authorization.k8s.io")
    st = assert_status(as_bob("POST", f"{RBAC}/clusterroles", role), 403, "Forbidden")
    assert st["message"] == (
        'clusterroles.rbac.authorization.k8s.io "e2e-bob-pods" is forbidden: user "bob" '
        '(groups=["dev" "system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["get"]}'), st
    assert st["details"] == {"name": "e2e-bob-pods", "group": "rbac.authorization.k8s.io",
                             "kind": "clusterroles"}, st

    # within a, what bob holds he may grant, and no more
    ok = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
          "metadata": {"name": "pod-reader"}, "rules": [rule(["get", "list"], [""], ["pods"])]}
    r = as_bob("POST", f"{RBAC}/namespaces/{a}/roles", ok)
    assert r.status_code == 201, r.text
    too_much = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "node-reader"}, "rules": [rule(["get"], [""], ["nodes"])]}
    st = assert_status(as_bob("POST", f"{RBAC}/namespaces/{a}/roles", too_much), 403)
    assert 'is attempting to grant RBAC permissions not currently held:\n' \
           '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}' in st["message"], st
    # an update that adds what bob lacks is refused too
    ok["rules"].append(rule(["create"], [""], ["nodes"]))
    assert_status(as_bob("PUT", f"{RBAC}/namespaces/{a}/roles/pod-reader", ok), 403)

    rb = binding("bob-view", "ClusterRole", "view", [user("alice")], ns=a)
    r = as_bob("POST", f"{RBAC}/namespaces/{a}/rolebindings", rb)
    assert r.status_code == 201, r.text
    rb = binding("bob-cluster-admin", "ClusterRole", "cluster-admin", [user("bob")], ns=a)
    st = assert_status(as_bob("POST", f"{RBAC}/namespaces/{a}/rolebindings", rb), 403)
    assert st["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "bob-cluster-admin" is forbidden: user "bob" '
        '(groups=["dev" "system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n'), st
    rb = binding("bob-missing", "Role", "missing", [user("bob")], ns=a)
    assert_status(as_bob("POST", f"{RBAC}/namespaces/{a}/rolebindings", rb), 404)

    # the bind verb on cluster-admin lets bob bind it in a, and only there
    binder = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
              "metadata": {"name": "e2e-bind-cluster-admin"},
              "rules": [{"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"],
                         "resources": ["clusterroles"], "resourceNames": ["cluster-admin"]}]}
    cluster.ok("POST", f"{RBAC}/clusterroles", body=binder, expect=(201,))
    try:
        cluster.ok("POST", f"{RBAC}/namespaces/{a}/rolebindings",
                   body=binding("bob-binder", "ClusterRole", "e2e-bind-cluster-admin",
                                [user("bob")], ns=a), expect=(201,))
        eventually_allowed(cluster, "bob", ["dev"], a, "bind", "clusterroles",
                           group="rbac.authorization.k8s.io", name="cluster-admin")
        rb = binding("bob-cluster-admin", "ClusterRole", "cluster-admin", [user("bob")], ns=a)
        r = as_bob("POST", f"{RBAC}/namespaces/{a}/rolebindings", rb)
        assert r.status_code == 201, r.text
    finally:
        cluster.delete(f"{RBAC}/clusterroles/e2e-bind-cluster-admin")

    # the admin (system:masters) may grant anything
    cluster.ok("POST", f"{RBAC}/clusterroles", body=role, expect=(201,))
    cluster.delete(f"{RBAC}/clusterroles/e2e-bob-pods")


def test_self_subject_rules_review_lists_what_the_requester_holds(cluster, bob, ns_name):
    a = ns_name
    cluster.create_namespace(a)
    cluster.ok("POST", f"{RBAC}/namespaces/{a}/rolebindings",
               body=binding("dev-view", "ClusterRole", "view", [group("dev")], ns=a),
               expect=(201,))
    eventually_allowed(cluster, "bob", ["dev"], a, "list", "pods")
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": a}}
    r = cluster.request("POST", f"{AUTHZ}/selfsubjectrulesreviews", body=body,
                        session=bob["session"])
    assert r.status_code == 201, r.text
    status = r.json()["status"]
    assert status["incomplete"] is False
    resources = {res for rr in status["resourceRules"] for res in rr.get("resources", [])}
    assert {"pods", "deployments", "selfsubjectaccessreviews"} <= resources, resources
    assert "secrets" not in resources
    urls = {u for nr in status["nonResourceRules"] for u in nr["nonResourceURLs"]}
    assert {"/api", "/version"} <= urls, urls
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": a, "verb": "list", "resource": "pods"}}}
    r = cluster.request("POST", f"{AUTHZ}/selfsubjectaccessreviews", body=body,
                        session=bob["session"])
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True, r.text
