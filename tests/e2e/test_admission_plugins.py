"""The admission plugins upstream enables by default beyond the core ones: DefaultIngressClass,
RuntimeClass, PersistentVolumeClaimResize, CertificateSubjectRestriction, CertificateApproval
and CertificateSigning, driven by kubectl and the REST API with upstream's messages."""

from __future__ import annotations

import base64
import json
import subprocess

from conftest import assert_status, rand_suffix, wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def create_ingress_class(cluster, name, default):
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    cluster.ok("POST", "/apis/networking.k8s.io/v1/ingressclasses", body={
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": "example.com/ingress-controller"}})


def test_kubectl_create_ingress_gets_the_default_class(cluster, ns, kubectl):
    default, other = f"default-{rand_suffix()}", f"other-{rand_suffix()}"
    create_ingress_class(cluster, other, default=False)
    create_ingress_class(cluster, default, default=True)
    try:
        kubectl("create", "ingress", "web", "-n", ns, "--rule=example.com/=web:80")
        got = kubectl.json("get", "ingress", "web", "-n", ns)
        assert got["spec"]["ingressClassName"] == default
        # A class named by the client is kept.
        kubectl("create", "ingress", "named", "-n", ns, f"--class={other}",
                "--rule=example.com/=web:80")
        assert kubectl.json("get", "ingress", "named", "-n", ns)["spec"]["ingressClassName"] \
            == other
    finally:
        for name in (default, other):
            cluster.delete(f"/apis/networking.k8s.io/v1/ingressclasses/{name}")


def pod(name, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_a_runtime_class_sets_the_overhead_and_scheduling_of_its_pods(cluster, ns, kubectl):
    name = f"kata-{rand_suffix()}"
    cluster.ok("POST", "/apis/node.k8s.io/v1/runtimeclasses", body={
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name},
        "handler": "kata", "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
        "scheduling": {"nodeSelector": {"sandbox": "kata"},
                       "tolerations": [{"key": "sandbox", "operator": "Exists",
                                        "effect": "NoSchedule"}]}})
    try:
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(pod("web", runtimeClassName=name, nodeSelector={"disk": "ssd"})))
        spec = kubectl.json("get", "pod", "web", "-n", ns)["spec"]
        assert spec["overhead"] == {"cpu": "250m", "memory": "120Mi"}
        assert spec["nodeSelector"] == {"disk": "ssd", "sandbox": "kata"}
        assert {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"} \
            in spec["tolerations"]
        # An overhead of the pod's own that is not the class's is refused.
        r = cluster.post(f"/api/v1/namespaces/{ns}/pods",
                         pod("greedy", runtimeClassName=name, overhead={"cpu": "1"}))
        assert_status(r, 403, "Forbidden")
        assert r.json()["message"] == ('pods "greedy" is forbidden: pod rejected: Pod\'s Overhead '
                                       "doesn't match RuntimeClass's defined Overhead")
        # So is a selector that disagrees with the class's.
        r = cluster.post(f"/api/v1/namespaces/{ns}/pods",
                         pod("elsewhere", runtimeClassName=name, nodeSelector={"sandbox": "no"}))
        assert_status(r, 403, "Forbidden")
        assert r.json()["message"] == (
            'pods "elsewhere" is forbidden: conflict: '
            "runtimeClass.scheduling.nodeSelector[sandbox] = kata; "
            "pod.spec.nodeSelector[sandbox] = no")
        # And an overhead without a class.
        r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("bare", overhead={"cpu": "1"}))
        assert_status(r, 403, "Forbidden")
        assert r.json()["message"] == (
            'pods "bare" is forbidden: pod rejected: Pod Overhead set without corresponding '
            "RuntimeClass defined Overhead")
    finally:
        cluster.delete(f"/apis/node.k8s.io/v1/runtimeclasses/{name}")


def test_a_pod_of_a_missing_runtime_class_is_refused(cluster, ns, kubectl):
    err = kubectl.fail("run", "web", "-n", ns, "--image=busybox",
                       '--overrides={"spec": {"runtimeClassName": "no-such-class"}}')
    assert 'pods "web" is forbidden: pod rejected: RuntimeClass "no-such-class" not found' in err


def claim(name, cls, size="1Gi"):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "resources": {"requests": {"storage": size}}}}


def grow(size):
    return json.dumps({"spec": {"resources": {"requests": {"storage": size}}}})


def test_a_claim_grows_only_when_bound_and_its_class_allows_expansion(cluster, ns, kubectl):
    fixed, grows = f"fixed-{rand_suffix()}", f"grows-{rand_suffix()}"
    for name, expand in ((fixed, None), (grows, True)):
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name}, "provisioner": "example.com/disks"}
        if expand is not None:
            body["allowVolumeExpansion"] = expand
        cluster.ok("POST", "/apis/storage.k8s.io/v1/storageclasses", body=body)
    claims = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    try:
        for name, cls in (("data", fixed), ("scratch", grows)):
            cluster.ok("POST", claims, body=claim(name, cls))
        # No volume controller binds claims here: the status a binder would write is written
        # through the status subresource, which is what the plugin reads (the stored phase).
        pending = kubectl.fail("patch", "pvc", "scratch", "-n", ns, "-p", grow("2Gi"))
        assert ('persistentvolumeclaims "scratch" is forbidden: '
                "Only bound persistent volume claims can be expanded") in pending
        for name in ("data", "scratch"):
            r = cluster.patch(f"{claims}/{name}/status", {"status": {"phase": "Bound"}})
            assert r.status_code == 200, r.text
        refused = kubectl.fail("patch", "pvc", "data", "-n", ns, "-p", grow("2Gi"))
        assert ('persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc '
                "can be resized and the storageclass that provisions the pvc must support "
                "resize") in refused
        assert cluster.ok("GET", f"{claims}/data")["spec"]["resources"]["requests"]["storage"] \
            == "1Gi"
        kubectl("patch", "pvc", "scratch", "-n", ns, "-p", grow("2Gi"))
        assert cluster.ok("GET", f"{claims}/scratch")["spec"]["resources"]["requests"][
            "storage"] == "2Gi"
        # Shrinking, or a write that leaves the size, is not the plugin's business.
        kubectl("label", "pvc", "data", "-n", ns, "tier=gold")
    finally:
        for name in (fixed, grows):
            cluster.delete(f"/apis/storage.k8s.io/v1/storageclasses/{name}")


def openssl_request(out, cn, orgs):
    key, csr = out / f"{cn}.key", out / f"{cn}.csr"
    subj = f"/CN={cn}" + "".join(f"/O={o}" for o in orgs)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", subj], check=True, capture_output=True)
    return csr.read_bytes()


def csr(name, request, signer):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(request).decode(), "signerName": signer,
                     "usages": ["digital signature", "client auth"]}}


def workdir(cluster, kubectl, what):
    out = cluster.workdir / f"{what}-{kubectl.version}-{rand_suffix()}"
    out.mkdir()
    return out


def test_a_client_certificate_for_system_masters_is_refused(cluster, kubectl):
    out = workdir(cluster, kubectl, "masters")
    name = f"eve-{rand_suffix()}"
    request = openssl_request(out, "eve", ["system:masters", "dev"])
    r = cluster.post(CSRS, csr(name, request, "kubernetes.io/kube-apiserver-client"))
    assert_status(r, 403, "Forbidden")
    assert r.json()["message"] == (
        f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: use of '
        "kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed")
    # kubectl shows the same refusal.
    path = out / "csr.json"
    path.write_text(json.dumps(csr(name, request, "kubernetes.io/kube-apiserver-client")))
    err = kubectl.fail("create", "-f", path)
    assert "use of kubernetes.io/kube-apiserver-client signer with system:masters group is " \
           "not allowed" in err
    # Another signer is not restricted, nor is another group.
    other = f"other-{rand_suffix()}"
    cluster.ok("POST", CSRS, body=csr(other, request, "example.com/widgets"))
    dev = f"dev-{rand_suffix()}"
    cluster.ok("POST", CSRS, body=csr(dev, openssl_request(out, "dev", ["dev"]),
                                       "kubernetes.io/kube-apiserver-client"))
    for n in (other, dev):
        cluster.delete(f"{CSRS}/{n}")


def grant(cluster, user, rules):
    """A ClusterRole of `rules` bound to `user`; answers its name."""
    name = f"{user}-{rand_suffix()}"
    cluster.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules})
    cluster.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
    return name


def revoke(cluster, name):
    cluster.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
    cluster.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")


def test_approving_needs_approve_on_the_signer(cluster, kubectl):
    out = workdir(cluster, kubectl, "approval")
    signer = "example.com/widgets"
    user = f"approver-{rand_suffix()}"
    name = f"widget-{rand_suffix()}"
    cluster.ok("POST", CSRS, body=csr(name, openssl_request(out, "widget", []), signer))
    roles = [grant(cluster, user, [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["certificates.k8s.io"],
         "resources": ["certificatesigningrequests/approval", "certificatesigningrequests/status"],
         "verbs": ["update"]}])]
    try:
        # The approval subresource alone is not enough.
        def refused():
            p = kubectl.run("certificate", "approve", name, f"--as={user}")
            return p.stderr if p.returncode != 0 and "signerName" in p.stderr else None
        err = wait_for(refused, 10, interval=0.2, what="the refusal naming the signer")
        assert (f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: user not '
                f'permitted to approve requests with signerName "{signer}"') in err
        # Nor may the user issue the certificate through status without `sign`.
        current = cluster.ok("GET", f"{CSRS}/{name}")
        current["status"] = {"certificate": base64.b64encode(b"not a certificate").decode()}
        r = cluster.put(f"{CSRS}/{name}/status", current, headers={"Impersonate-User": user})
        assert_status(r, 403, "Forbidden")
        assert r.json()["message"] == (
            f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: user not '
            f'permitted to sign requests with signerName "{signer}"')
        # `approve` on every signer of the domain lets the approval through.
        roles.append(grant(cluster, user, [
            {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
             "resourceNames": ["example.com/*"], "verbs": ["approve"]}]))

        def approved():
            p = kubectl.run("certificate", "approve", name, f"--as={user}")
            return p.returncode == 0
        wait_for(approved, 10, interval=0.2, what="the approval once granted")
        conditions = cluster.ok("GET", f"{CSRS}/{name}")["status"]["conditions"]
        assert [c["type"] for c in conditions] == ["Approved"]
    finally:
        for role in roles:
            revoke(cluster, role)
        cluster.delete(f"{CSRS}/{name}")
