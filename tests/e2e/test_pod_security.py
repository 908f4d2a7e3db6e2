"""PodSecurity: a namespace's `pod-security.kubernetes.io/enforce` label decides which pods it
admits, refused with upstream's message (403)."""

from conftest import assert_status

RESTRICTED_MESSAGE = (
    'pods "bad" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "c" must set '
    "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities "
    '(container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true '
    '(pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile '
    '(pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" '
    'or "Localhost")'
)


def pod(name, container_security=None, **spec):
    container = {"name": "c", "image": "busybox"}
    if container_security is not None:
        container["securityContext"] = container_security
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], **spec}}


def labelled(cluster, ns_name, level):
    labels = {"pod-security.kubernetes.io/enforce": level} if level else {}
    cluster.create_namespace(ns_name, labels=labels)
    return ns_name


def test_a_restricted_namespace_refuses_a_bare_pod_and_admits_a_compliant_one(cluster, ns_name):
    ns = labelled(cluster, ns_name, "restricted")
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("bad"))
    st = assert_status(r, 403, "Forbidden")
    assert st["message"] == RESTRICTED_MESSAGE

    r = cluster.post(f"/api/v1/namespaces/{ns}/pods",
                     pod("priv", {"privileged": True}))
    st = assert_status(r, 403, "Forbidden")
    assert 'privileged (container "c" must not set securityContext.privileged=true)' \
        in st["message"]

    good = pod("good",
               {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
               securityContext={"runAsNonRoot": True, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}})
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", good)
    assert r.status_code == 201, r.text


def test_a_baseline_namespace_refuses_host_network(cluster, ns_name):
    ns = labelled(cluster, ns_name, "baseline")
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("host", hostNetwork=True))
    st = assert_status(r, 403, "Forbidden")
    assert st["message"] == ('pods "host" is forbidden: violates PodSecurity "baseline:latest": '
                             "host namespaces (hostNetwork=true)")
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods", pod("plain"))
    assert r.status_code == 201, r.text


def test_an_unlabelled_namespace_admits_a_privileged_pod(cluster, ns_name):
    ns = labelled(cluster, ns_name, None)
    r = cluster.post(f"/api/v1/namespaces/{ns}/pods",
                     pod("priv", {"privileged": True}, hostNetwork=True))
    assert r.status_code == 201, r.text
