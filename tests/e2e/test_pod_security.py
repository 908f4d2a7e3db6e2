"""PodSecurity: a namespace's `pod-security.kubernetes.io/enforce` label decides which pods it
admits, refused with upstream's message (403); its `warn` label (and a stricter `enforce`) is
answered as warnings, for pods and workloads; the `-version` labels pick the rules; bad labels
are refused and a stricter `enforce` warns about the pods already there."""

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


def warning(container):
    """Upstream's warning for a bare container against restricted:latest."""
    return (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != '
        f'false (container "{container}" must set securityContext.allowPrivilegeEscalation=false)'
        f', unrestricted capabilities (container "{container}" must set '
        'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container '
        f'"{container}" must set securityContext.runAsNonRoot=true), seccompProfile (pod or '
        f'container "{container}" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")'
    )


def test_the_warn_label_answers_warnings_for_pods_and_workloads(cluster, ns_name, kubectl):
    cluster.create_namespace(ns_name, labels={"pod-security.kubernetes.io/warn": "restricted"})
    p = kubectl.run("run", "web", "-n", ns_name, "--image=busybox")
    assert p.returncode == 0, p.stderr
    assert warning("web") in p.stderr
    assert cluster.get(f"/api/v1/namespaces/{ns_name}/pods/web").status_code == 200
    # A workload is never refused, but its template is warned about.
    p = kubectl.run("create", "deployment", "web", "-n", ns_name, "--image=busybox")
    assert p.returncode == 0, p.stderr
    assert warning("busybox") in p.stderr


def test_a_workload_in_an_enforcing_namespace_is_warned_about(cluster, ns_name, kubectl):
    ns = labelled(cluster, ns_name, "restricted")
    p = kubectl.run("create", "deployment", "web", "-n", ns, "--image=busybox")
    assert p.returncode == 0, p.stderr
    assert warning("busybox") in p.stderr


def test_the_version_label_picks_the_rules(cluster, ns_name):
    cluster.create_namespace(ns_name, labels={
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.21"})
    # Before 1.22 the restricted standard asks nothing of capabilities, nor of runAsUser.
    old_rules = pod("root", {"allowPrivilegeEscalation": False, "runAsUser": 0},
                    securityContext={"runAsNonRoot": True,
                                     "seccompProfile": {"type": "RuntimeDefault"}})
    r = cluster.post(f"/api/v1/namespaces/{ns_name}/pods", old_rules)
    assert r.status_code == 201, r.text
    r = cluster.post(f"/api/v1/namespaces/{ns_name}/pods", pod("bad"))
    st = assert_status(r, 403, "Forbidden")
    assert st["message"].startswith(
        'pods "bad" is forbidden: violates PodSecurity "restricted:v1.21": '
        "allowPrivilegeEscalation != false")
    assert "capabilities" not in st["message"]


def test_namespace_labels_are_checked(cluster, ns_name, kubectl):
    ns = labelled(cluster, ns_name, None)
    r = cluster.patch(f"/api/v1/namespaces/{ns}",
                      {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "strict"}}})
    st = assert_status(r, 422, "Invalid")
    assert st["message"] == (
        f'Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
        'Invalid value: "strict": must be one of privileged, baseline, restricted')
    err = kubectl.fail("label", "ns", ns, "pod-security.kubernetes.io/enforce-version=1.30")
    assert 'Invalid value: "1.30": must be "latest" or "v1.x"' in err
    cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("host", hostNetwork=True))
    p = kubectl.run("label", "ns", ns, "pod-security.kubernetes.io/enforce=baseline")
    assert p.returncode == 0, p.stderr
    assert (f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce '
            'level "baseline:latest"') in p.stderr
    assert "Warning: host: host namespaces" in p.stderr
