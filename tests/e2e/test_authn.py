"""Authentication end to end: anonymous requests, static tokens, service-account tokens
(`kubectl create token`, bound to a pod), TokenReview, `kubectl auth whoami` and impersonation.

Upstream's behaviour is the specification: messages and codes are upstream's.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import KrustServer, KubectlError, wait_for


def whoami_args(kubectl) -> list[str]:
    # Experimental in 1.27 (SelfSubjectReview v1beta1), stable from 1.28 (v1).
    return ["auth", "whoami"]


def token_kubeconfig(cluster, token: str, path: Path) -> Path:
    """A kubeconfig for `cluster` that authenticates with `token` only."""
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "krust", "cluster": {
            "server": cluster.url,
            "certificate-authority-data": base64.b64encode(
                Path(cluster.creds.ca).read_bytes()).decode()}}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "krust", "user": "token"}}],
        "current-context": "token",
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def anonymous(cluster) -> requests.Session:
    return cluster.creds.session(with_client_cert=False)


def with_token(cluster, token: str) -> requests.Session:
    s = cluster.creds.session(with_client_cert=False)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def whoami_rest(cluster, session) -> dict:
    r = session.post(cluster.url + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                     json={"apiVersion": "authentication.k8s.io/v1",
                           "kind": "SelfSubjectReview"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["status"]["userInfo"]


# --------------------------------------------------------------------------------------------
# anonymous requests


def test_anonymous_requests_reach_public_information_and_discovery_only(cluster):
    anon = anonymous(cluster)
    for path in ["/version", "/healthz", "/readyz", "/livez", "/api", "/apis", "/api/v1",
                 "/apis/apps/v1", "/openapi/v3"]:
        r = anon.get(cluster.url + path, timeout=30)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    r = anon.get(cluster.url + "/api/v1/namespaces", timeout=30)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == ('namespaces is forbidden: User "system:anonymous" cannot list '
                               'resource "namespaces" in API group "" at the cluster scope')
    assert body["details"] == {"kind": "namespaces"}
    r = anon.get(cluster.url + "/api/v1/namespaces/default/pods/x", timeout=30)
    assert r.status_code == 403
    assert r.json()["message"] == (
        'pods "x" is forbidden: User "system:anonymous" cannot get resource "pods" in API '
        'group "" in the namespace "default"')
    assert r.json()["details"] == {"name": "x", "kind": "pods"}
    r = anon.get(cluster.url + "/metrics", timeout=30)
    assert r.status_code == 403
    assert r.json()["message"] == ('forbidden: User "system:anonymous" cannot get path '
                                   '"/metrics"')


def test_an_invalid_bearer_token_is_401_not_anonymous(cluster):
    r = with_token(cluster, "not-a-real-token").get(cluster.url + "/version", timeout=30)
    assert r.status_code == 401
    assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "Unauthorized",
                        "reason": "Unauthorized", "code": 401}


# --------------------------------------------------------------------------------------------
# whoami and impersonation


def test_whoami_shows_the_admin(cluster, kubectl):
    review = json.loads(kubectl(*whoami_args(kubectl), "-o", "json"))
    assert review["kind"] == "SelfSubjectReview"
    user = review["status"]["userInfo"]
    assert user["username"] == "system:admin"
    assert user["groups"] == ["system:masters", "system:authenticated"]


def test_impersonation_runs_the_request_as_the_impersonated_user(cluster, kubectl):
    # jane holds no role: the request runs as jane, and RBAC refuses it in her name.
    with pytest.raises(KubectlError) as refused:
        kubectl("--as=jane", "--as-group=dev", "get", "ns", "-o", "name")
    assert ('namespaces is forbidden: User "jane" cannot list resource "namespaces" in API '
            'group "" at the cluster scope') in refused.value.stderr
    review = json.loads(kubectl("--as=jane", "--as-group=dev", *whoami_args(kubectl), "-o",
                                "json"))
    assert review["status"]["userInfo"] == {"username": "jane",
                                            "groups": ["dev", "system:authenticated"]}
    review = json.loads(kubectl("--as=system:serviceaccount:kube-system:robot",
                                *whoami_args(kubectl), "-o", "json"))
    assert review["status"]["userInfo"]["groups"] == [
        "system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]


def test_impersonation_is_checked_against_the_impersonate_verb(cluster):
    # An anonymous requester may not impersonate anyone.
    r = anonymous(cluster).get(cluster.url + "/version", headers={"Impersonate-User": "jane"},
                               timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'users "jane" is forbidden: User "system:anonymous" cannot impersonate resource '
        '"users" in API group "" at the cluster scope')


# --------------------------------------------------------------------------------------------
# service-account tokens


def create_sa(cluster, ns, name="robot"):
    return cluster.ok("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                      body={"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": name}}, expect=(201,))


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_created_token_authenticates_as_its_service_account(cluster, kubectl, ns):
    sa = create_sa(cluster, ns)
    token = kubectl("create", "token", "robot", "-n", ns).strip()
    claims = jwt_claims(token)
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "robot",
                                                         "uid": sa["metadata"]["uid"]}
    config = token_kubeconfig(cluster, token, cluster.workdir / f"token-{ns}.kubeconfig")
    review = json.loads(kubectl(*whoami_args(kubectl), "-o", "json", kubeconfig=config))
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{ns}:robot"
    assert user["uid"] == sa["metadata"]["uid"]
    assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                              "system:authenticated"]
    assert user["extra"]["authentication.kubernetes.io/credential-id"] == [
        f"JTI={claims['jti']}"]
    # Authenticated, and authorized only by what RBAC binds to it.
    refused = kubectl.run("get", "configmaps", "-n", ns, kubeconfig=config)
    assert refused.returncode != 0
    assert (f'User "system:serviceaccount:{ns}:robot" cannot list resource "configmaps"'
            in refused.stderr), refused.stderr
    cluster.ok("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
               expect=(201,), body={
                   "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "robot-view"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "view"},
                   "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]})
    wait_for(lambda: kubectl.run("get", "configmaps", "-n", ns, kubeconfig=config).returncode
             == 0, 10, what="the service account to read configmaps")

    ten = jwt_claims(kubectl("create", "token", "robot", "-n", ns, "--duration", "10m").strip())
    assert ten["exp"] - ten["iat"] == 600
    err = kubectl.fail("create", "token", "robot", "-n", ns, "--duration", "5m")
    assert "may not specify a duration less than 10 minutes" in err
    err = kubectl.fail("create", "token", "nobody", "-n", ns)
    assert 'serviceaccounts "nobody" not found' in err


def test_a_pod_bound_token_stops_working_when_the_pod_is_deleted(cluster, kubectl, ns):
    create_sa(cluster, ns)
    pod = cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", expect=(201,), body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"serviceAccountName": "robot",
                 "containers": [{"name": "c", "image": "nginx"}]}})
    token = kubectl("create", "token", "robot", "-n", ns, "--bound-object-kind", "Pod",
                    "--bound-object-name", "web").strip()
    claims = jwt_claims(token)
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": pod["metadata"]["uid"]}
    session = with_token(cluster, token)
    user = whoami_rest(cluster, session)
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["web"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]

    kubectl("delete", "pod", "web", "-n", ns, "--grace-period=0", "--force", "--wait=false")
    wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}/pods/web").status_code == 404, 30,
             what="pod gone")
    wait_for(lambda: session.get(cluster.url + "/api", timeout=10).status_code == 401, 10,
             what="the token refused")

    # A pod of another service account cannot be bound.
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", expect=(201,), body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    err = kubectl.fail("create", "token", "robot", "-n", ns, "--bound-object-kind", "Pod",
                       "--bound-object-name", "other")
    assert "pod running with different serviceaccount name" in err


def test_token_review_tells_who_a_token_is(cluster, ns):
    create_sa(cluster, ns)
    minted = cluster.ok("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
                        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                              "spec": {"audiences": ["vault"]}}, expect=(201,))
    assert minted["kind"] == "TokenRequest"
    assert minted["spec"]["audiences"] == ["vault"]
    assert minted["spec"]["expirationSeconds"] == 3600
    token = minted["status"]["token"]
    assert minted["status"]["expirationTimestamp"].endswith("Z")

    def review(token, audiences=None):
        spec = {"token": token}
        if audiences is not None:
            spec["audiences"] = audiences
        return cluster.ok("POST", "/apis/authentication.k8s.io/v1/tokenreviews", expect=(201,),
                          body={"apiVersion": "authentication.k8s.io/v1",
                                "kind": "TokenReview", "spec": spec})["status"]

    ok = review(token, ["vault"])
    assert ok["authenticated"] is True
    assert ok["user"]["username"] == f"system:serviceaccount:{ns}:robot"
    assert ok["audiences"] == ["vault"]
    # Not for the API server's audience: refused there, and by the API server itself.
    assert not review(token).get("authenticated")
    assert with_token(cluster, token).get(cluster.url + "/api", timeout=30).status_code == 401
    bad = review("garbage")
    assert not bad.get("authenticated") and bad["error"]


# --------------------------------------------------------------------------------------------
# a server of its own: static tokens, anonymous requests off


@pytest.fixture(scope="module")
def token_server(e2e_tmp):
    workdir = e2e_tmp / "authn-token-server"
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = workdir / "tokens.csv"
    tokens.write_text('static-token-1,alice,1001,"dev,ops"\nstatic-token-2,bob,1002\n')
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--token-auth-file", str(tokens), "--anonymous-auth=false"]
    server.start()
    yield server
    server.stop(signal.SIGTERM, timeout=15)


def test_a_static_token_authenticates_its_user(token_server):
    creds = token_server.creds
    s = creds.session(with_client_cert=False)
    s.headers["Authorization"] = "Bearer static-token-1"
    r = s.post(creds.server + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
               json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
               timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["userInfo"] == {
        "username": "alice", "uid": "1001", "groups": ["dev", "ops", "system:authenticated"]}
    # Authenticated as alice, who holds no role: refused in her name, not as anonymous.
    r = s.get(creds.server + "/api/v1/namespaces", timeout=30)
    assert r.status_code == 403, r.text
    assert 'User "alice" cannot list resource "namespaces"' in r.json()["message"]
    s.headers["Authorization"] = "Bearer static-token-3"
    assert s.get(creds.server + "/api/v1/namespaces", timeout=30).status_code == 401


def test_without_anonymous_auth_even_version_is_401(token_server):
    anon = token_server.creds.session(with_client_cert=False)
    for path in ["/version", "/healthz", "/api"]:
        r = anon.get(token_server.creds.server + path, timeout=30)
        assert r.status_code == 401, f"{path}: {r.status_code}"
        assert r.json()["reason"] == "Unauthorized"


def test_service_account_tokens_survive_a_restart(token_server):
    creds = token_server.creds
    admin = creds.session()
    ns = "restart-tokens"
    admin.post(creds.server + "/api/v1/namespaces", timeout=30,
               json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    r = admin.post(creds.server + f"/api/v1/namespaces/{ns}/serviceaccounts", timeout=30,
                   json={"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "robot"}})
    assert r.status_code == 201, r.text
    r = admin.post(creds.server + f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
                   json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {}}, timeout=30)
    assert r.status_code == 201, r.text
    token = r.json()["status"]["token"]
    key = token_server.data_dir / "tls" / "service-account.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    token_server.restart()
    s = token_server.creds.session(with_client_cert=False)
    s.headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + 10
    while True:
        r = s.get(token_server.creds.server + "/api", timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
