"""The official Python client (`kubernetes` on PyPI): typed APIs, watch, dynamic client."""

import datetime
import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from conftest import rand_suffix


@pytest.fixture
def api(cluster):
    return cluster.api_client()


def cm(name, data=None, labels=None, generate=False):
    md = client.V1ObjectMeta(generate_name=name, labels=labels) if generate else \
        client.V1ObjectMeta(name=name, labels=labels)
    return client.V1ConfigMap(metadata=md, data=data or {"k": "v"})


def test_list_namespaces_and_version(api):
    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    v = client.VersionApi(api).get_code()
    assert v.major == "1" and v.git_version.startswith("v1.")


def test_configmap_crud(api, ns):
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, cm("py-", {"a": "1"}, generate=True))
    name = created.metadata.name
    assert name.startswith("py-") and len(name) == len("py-") + 5
    assert created.metadata.uid and created.metadata.resource_version
    assert isinstance(created.metadata.creation_timestamp, datetime.datetime)

    got = core.read_namespaced_config_map(name, ns)
    assert got.data == {"a": "1"} and got.metadata.uid == created.metadata.uid

    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map(name, ns, got)
    assert replaced.data == {"a": "1", "b": "2"}

    patched = core.patch_namespaced_config_map(name, ns, {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}

    patched = core.patch_namespaced_config_map(
        name, ns, [{"op": "remove", "path": "/data/a"}])  # a list: JSON patch
    assert patched.data == {"b": "2", "c": "3"}

    # replacing with the stale object conflicts
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map(name, ns, got)
    assert e.value.status == 409

    core.delete_namespaced_config_map(name, ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map(name, ns)
    assert e.value.status == 404 and '"reason":"NotFound"' in e.value.body.replace(" ", "")


def test_list_with_selectors(api, ns):
    core = client.CoreV1Api(api)
    for i, env in enumerate(["prod", "prod", "dev"]):
        core.create_namespaced_config_map(ns, cm(f"sel-{i}", labels={"env": env}))
    prod = core.list_namespaced_config_map(ns, label_selector="env=prod")
    assert sorted(i.metadata.name for i in prod.items) == ["sel-0", "sel-1"]
    one = core.list_namespaced_config_map(ns, field_selector="metadata.name=sel-2")
    assert [i.metadata.name for i in one.items] == ["sel-2"]
    page = core.list_namespaced_config_map(ns, label_selector="env", limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_config_map(ns, label_selector="env", limit=2,
                                           _continue=page.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["sel-2"]


def test_deployment_typed_defaults_and_scale(quiet_cluster):
    # Without controllers: the Deployment's status and resourceVersion are this test's alone
    # (a Deployment controller writing its status would make the scale replace conflict).
    ns = f"e2e-pydeploy-{rand_suffix()}"
    quiet_cluster.create_namespace(ns)
    appsv1 = client.AppsV1Api(quiet_cluster.api_client())
    labels = {"app": "pyweb"}
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="pyweb"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(name="web", image="nginx:1.25")]))))
    created = appsv1.create_namespaced_deployment(ns, dep)
    assert created.spec.replicas == 1
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    assert created.spec.template.spec.restart_policy == "Always"

    scale = appsv1.read_namespaced_deployment_scale("pyweb", ns)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=pyweb"
    appsv1.patch_namespaced_deployment_scale("pyweb", ns, {"spec": {"replicas": 3}})
    assert appsv1.read_namespaced_deployment("pyweb", ns).spec.replicas == 3
    scale = appsv1.read_namespaced_deployment_scale("pyweb", ns)
    scale.spec.replicas = 5
    appsv1.replace_namespaced_deployment_scale("pyweb", ns, scale)
    assert appsv1.read_namespaced_deployment("pyweb", ns).spec.replicas == 5

    st = appsv1.read_namespaced_deployment_status("pyweb", ns)
    st.status = client.V1DeploymentStatus(replicas=5, ready_replicas=1, observed_generation=3)
    appsv1.replace_namespaced_deployment_status("pyweb", ns, st)
    got = appsv1.read_namespaced_deployment("pyweb", ns)
    assert got.status.replicas == 5 and got.status.ready_replicas == 1


def test_job_defaults(api, ns):
    batch = client.BatchV1Api(api)
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="pyjob"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="c", image="busybox:1.36",
                                           command=["true"])]))))
    created = batch.create_namespaced_job(ns, job)
    assert created.spec.backoff_limit == 6
    assert created.spec.completions == 1 and created.spec.parallelism == 1
    assert created.spec.completion_mode == "NonIndexed"
    # a selector is generated from the job's uid
    ml = created.spec.selector.match_labels
    assert ml["batch.kubernetes.io/controller-uid"] == created.metadata.uid, ml
    tl = created.spec.template.metadata.labels
    assert tl["batch.kubernetes.io/controller-uid"] == created.metadata.uid
    assert tl["batch.kubernetes.io/job-name"] == "pyjob"


def test_rbac_objects(api, ns):
    rbac = client.RbacAuthorizationV1Api(api)
    role = client.V1Role(metadata=client.V1ObjectMeta(name="reader"), rules=[
        client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])])
    rbac.create_namespaced_role(ns, role)
    rb = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="reader-binding"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="default", namespace=ns)])
    rbac.create_namespaced_role_binding(ns, rb)
    got = rbac.read_namespaced_role_binding("reader-binding", ns)
    assert got.role_ref.name == "reader" and got.subjects[0].kind == "ServiceAccount"
    names = [r.metadata.name for r in rbac.list_namespaced_role(ns).items]
    assert names == ["reader"]


def test_watch_stream(api, ns):
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("w-1"))
    core.patch_namespaced_config_map("w-1", ns, {"data": {"k": "v2"}})
    core.delete_namespaced_config_map("w-1", ns)
    w = watch.Watch()
    seen = []
    timer = threading.Timer(20, w.stop)  # never hang
    timer.start()
    try:
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                           timeout_seconds=15):
            seen.append((ev["type"], ev["object"].metadata.name,
                         (ev["object"].data or {}).get("k")))
            if len(seen) == 3:
                w.stop()
    finally:
        timer.cancel()
    assert seen == [("ADDED", "w-1", "v"), ("MODIFIED", "w-1", "v2"), ("DELETED", "w-1", "v2")]


def test_dynamic_client(api, ns):
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(api)  # walks discovery: /api, /apis and each group version
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deps.namespaced and deps.name == "deployments"
    cms.create(namespace=ns, body={"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "dyn"}, "data": {"x": "y"}})
    got = cms.get(namespace=ns, name="dyn")
    assert got.data.x == "y"
    listed = cms.get(namespace=ns)
    assert "dyn" in [i.metadata.name for i in listed.items]
    leases = dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    assert leases.namespaced
