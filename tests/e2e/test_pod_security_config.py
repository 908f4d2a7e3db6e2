"""PodSecurity configured through `--admission-control-config-file`: an `AdmissionConfiguration`
whose PodSecurity entry points (by a path relative to the file) at a `PodSecurityConfiguration`
with a default `enforce: restricted` and exemptions by namespace, username and runtime class.

A server of its own: an unlabelled namespace refuses a privileged pod with upstream's message, a
label still wins over the default; an exempt namespace, an exempt user (by static token, or
impersonated with kubectl's `--as`: upstream checks the name the request runs as) and an exempt
runtime class are not checked; a namespace's new `enforce` label is not checked against the pods
of an exempt namespace, nor against pods of an exempt runtime class. A configuration that cannot
be used stops the server at start with a clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
import yaml

from conftest import (KRUST_BIN, KUBECTL_VERSIONS, Cluster, Kubectl, KrustServer, assert_status,
                      free_port, rand_suffix)

EXEMPT_NS = "psa-exempt"
EXEMPT_CLASS = "psa-exempt-class"
OTHER_CLASS = "psa-other-class"
TOKENS = {"exempt-user": "psa-exempt-token", "plain-user": "psa-plain-token"}

PSA_CONFIG = {
    "apiVersion": "pod-security.admission.config.k8s.io/v1",
    "kind": "PodSecurityConfiguration",
    "defaults": {"enforce": "restricted", "enforce-version": "latest"},
    "exemptions": {"usernames": ["exempt-user"], "namespaces": [EXEMPT_NS],
                   "runtimeClasses": [EXEMPT_CLASS]},
}

ADMISSION_CONFIG = {
    "apiVersion": "apiserver.config.k8s.io/v1",
    "kind": "AdmissionConfiguration",
    "plugins": [
        {"name": "PodSecurity", "path": "psa/podsecurity.yaml"},
        # A plugin krust reads no configuration for: logged and ignored.
        {"name": "EventRateLimit", "configuration": {"kind": "Configuration"}},
    ],
}


def refusal(name, container="c"):
    """Upstream's refusal of a privileged container against restricted:latest."""
    return (
        f'pods "{name}" is forbidden: violates PodSecurity "restricted:latest": privileged '
        f'(container "{container}" must not set securityContext.privileged=true), '
        f'allowPrivilegeEscalation != false (container "{container}" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "
        f'"{container}" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true '
        f'(pod or container "{container}" must set securityContext.runAsNonRoot=true), '
        f'seccompProfile (pod or container "{container}" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )


def privileged(name, runtime_class=None):
    spec = {"containers": [{"name": "c", "image": "busybox",
                            "securityContext": {"privileged": True}}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def psa(e2e_tmp):
    """A server whose PodSecurity enforces restricted by default, with exemptions; its users
    `exempt-user` and `plain-user` (static tokens) may edit everything."""
    workdir = Path(tempfile.mkdtemp(prefix="pod-security-config-", dir=e2e_tmp))
    (workdir / "psa").mkdir()
    (workdir / "psa" / "podsecurity.yaml").write_text(yaml.safe_dump(PSA_CONFIG))
    admission = workdir / "admission.yaml"
    admission.write_text(yaml.safe_dump(ADMISSION_CONFIG))
    tokens = workdir / "tokens.csv"
    tokens.write_text("".join(f"{t},{u},{u}-uid\n" for u, t in TOKENS.items()))
    server = KrustServer(workdir, "embedded", None)
    server.extra_args = ["--admission-control-config-file", admission,
                         "--token-auth-file", tokens]
    server.start()
    try:
        cluster = Cluster(server, None)
        cluster.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body={
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "psa-users-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}
                         for u in TOKENS]})
        for name in (EXEMPT_CLASS, OTHER_CLASS):
            cluster.ok("POST", "/apis/node.k8s.io/v1/runtimeclasses", body={
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": name}, "handler": "runc"})
        cluster.create_namespace(EXEMPT_NS)
        yield cluster
    finally:
        server.stop(signal.SIGTERM, timeout=15)


@pytest.fixture
def space(psa):
    """A fresh unlabelled namespace on the configured server, deleted afterwards."""
    name = f"psa-{rand_suffix(8)}"
    psa.create_namespace(name)
    yield name
    psa.delete_namespace(name)


def as_user(cluster, user) -> requests.Session:
    s = cluster.creds.session(with_client_cert=False)
    s.headers["Authorization"] = f"Bearer {TOKENS[user]}"
    return s


def test_the_ignored_entry_is_logged(psa):
    log = psa.server.log_path.read_text()
    assert "EventRateLimit" in log and "ignored" in log


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_the_default_enforce_refuses_a_privileged_pod_and_a_label_wins(psa, space, version):
    k = Kubectl(version, psa, psa.workdir)
    name = f"priv-{version.replace('.', '-')}"
    err = k.fail("create", "-n", space, "-f", "-", input=json.dumps(privileged(name)))
    assert f"Error from server (Forbidden): error when creating \"STDIN\": {refusal(name)}" \
        in err, err
    # The Python client sees the same 403.
    r = psa.post(f"/api/v1/namespaces/{space}/pods", privileged(name))
    st = assert_status(r, 403, "Forbidden")
    assert st["message"] == refusal(name)
    # A namespace label wins over the default.
    k("label", "ns", space, "pod-security.kubernetes.io/enforce=privileged")
    out = k("create", "-n", space, "-f", "-", input=json.dumps(privileged(name)))
    assert f"pod/{name} created" in out


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_an_exempt_namespace_admits_a_privileged_pod(psa, version):
    k = Kubectl(version, psa, psa.workdir)
    name = f"priv-{version.replace('.', '-')}"
    out = k("create", "-n", EXEMPT_NS, "-f", "-", input=json.dumps(privileged(name)))
    assert f"pod/{name} created" in out


def test_an_exempt_user_is_not_checked(psa, space):
    base = psa.url
    r = as_user(psa, "exempt-user").post(f"{base}/api/v1/namespaces/{space}/pods",
                                          json=privileged("by-exempt"), timeout=30)
    assert r.status_code == 201, r.text
    r = as_user(psa, "plain-user").post(f"{base}/api/v1/namespaces/{space}/pods",
                                         json=privileged("by-plain"), timeout=30)
    st = assert_status(r, 403, "Forbidden")
    assert st["message"] == refusal("by-plain")


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_an_impersonated_exempt_user_is_not_checked(psa, space, version):
    # Upstream checks the user the request runs as: the impersonated one.
    k = Kubectl(version, psa, psa.workdir)
    tag = version.replace(".", "-")
    out = k("create", "-n", space, "-f", "-", "--as", "exempt-user",
            input=json.dumps(privileged(f"as-exempt-{tag}")))
    assert f"pod/as-exempt-{tag} created" in out
    got = k.json("get", "pod", f"as-exempt-{tag}", "-n", space)
    assert got["metadata"]["name"] == f"as-exempt-{tag}"
    err = k.fail("create", "-n", space, "-f", "-", "--as", "plain-user",
                 input=json.dumps(privileged(f"as-plain-{tag}")))
    assert refusal(f"as-plain-{tag}") in err, err


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_an_exempt_runtime_class_is_not_checked(psa, space, version):
    k = Kubectl(version, psa, psa.workdir)
    tag = version.replace(".", "-")
    out = k("create", "-n", space, "-f", "-",
            input=json.dumps(privileged(f"exempt-class-{tag}", EXEMPT_CLASS)))
    assert f"pod/exempt-class-{tag} created" in out
    err = k.fail("create", "-n", space, "-f", "-",
                 input=json.dumps(privileged(f"other-class-{tag}", OTHER_CLASS)))
    assert refusal(f"other-class-{tag}") in err, err


def test_a_new_enforce_label_skips_exempt_namespaces_and_runtime_classes(psa, space):
    k = Kubectl("1.33", psa, psa.workdir)
    k("label", "ns", space, "pod-security.kubernetes.io/enforce=privileged")
    for pod in (privileged("plain"), privileged("in-class", EXEMPT_CLASS)):
        psa.ok("POST", f"/api/v1/namespaces/{space}/pods", body=pod, expect=(201,))
    p = k.run("label", "ns", space, "--overwrite", "pod-security.kubernetes.io/enforce=baseline")
    assert p.returncode == 0, p.stderr
    assert (f'Warning: existing pods in namespace "{space}" violate the new PodSecurity enforce '
            'level "baseline:latest"') in p.stderr
    assert "Warning: plain: privileged" in p.stderr
    assert "in-class" not in p.stderr
    # The exempt namespace holds privileged pods too; its new label checks none of them.
    psa.ok("POST", f"/api/v1/namespaces/{EXEMPT_NS}/pods", body=privileged("relabel"),
           expect=(201,))
    k("label", "ns", EXEMPT_NS, "--overwrite", "pod-security.kubernetes.io/enforce=privileged")
    p = k.run("label", "ns", EXEMPT_NS, "--overwrite",
              "pod-security.kubernetes.io/enforce=baseline")
    assert p.returncode == 0, p.stderr
    assert "Warning" not in p.stderr, p.stderr
    # Its labels are still validated.
    err = k.fail("label", "ns", EXEMPT_NS, "--overwrite", "pod-security.kubernetes.io/enforce=strict")
    assert 'Invalid value: "strict": must be one of privileged, baseline, restricted' in err


@pytest.mark.parametrize("files, message", [
    pytest.param(
        {"admission.yaml": {**ADMISSION_CONFIG, "plugins": [{"name": "PodSecurity", "configuration": {
            **PSA_CONFIG, "defaults": {"enforce": "strict"}}}]}},
        'defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted',
        id="a bad level"),
    pytest.param(
        {"admission.yaml": ADMISSION_CONFIG,
         "psa/podsecurity.yaml": {**PSA_CONFIG, "defaults": {"warn-version": "1.30"}}},
        'defaults.warn-version: Invalid value: "1.30": must be "latest" or "v1.x"',
        id="a bad version in the plugin's own file"),
    pytest.param(
        {"admission.yaml": ADMISSION_CONFIG,
         "psa/podsecurity.yaml": {**PSA_CONFIG, "exemptions": {"namespaces": ["Not_A_Name"]}}},
        'exemptions.namespaces[0]: Invalid value: "Not_A_Name"',
        id="a bad exempt namespace"),
    pytest.param(
        {"admission.yaml": {**ADMISSION_CONFIG, "apiVersion": "apiserver.config.k8s.io/v2"}},
        'apiVersion "apiserver.config.k8s.io/v2" is not apiserver.config.k8s.io/v1 or '
        "apiserver.k8s.io/v1alpha1",
        id="an unknown apiVersion"),
    pytest.param(
        {"admission.yaml": {**ADMISSION_CONFIG, "plugin": []}},
        "unknown field `plugin`",
        id="an unknown field"),
    pytest.param(
        {"admission.yaml": ADMISSION_CONFIG},
        "cannot use PodSecurity's configuration",
        id="a missing plugin file"),
])
def test_a_configuration_that_cannot_be_used_stops_the_server(tmp_path, files, message):
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(yaml.safe_dump(body))
    p = subprocess.run([KRUST_BIN, "server", "--data-dir", tmp_path / "data", "--bind-address",
                        "127.0.0.1", "--port", str(free_port()), "--disable-agent",
                        "--disable-scheduler", "--disable-ingress",
                        "--admission-control-config-file", tmp_path / "admission.yaml"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NO_COLOR="1"))
    assert p.returncode != 0, "the server started"
    assert "cannot use" in p.stderr and str(tmp_path / "admission.yaml") in p.stderr, p.stderr
    assert message in p.stderr, p.stderr
    assert "panicked" not in p.stderr, p.stderr
