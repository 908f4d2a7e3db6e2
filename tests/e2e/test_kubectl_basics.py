"""kubectl against a fresh server: namespaces, discovery, cluster-info, version, simple CRUD."""

import json
import re

from conftest import parse_table, pod

SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}

CORE_V1 = ["namespaces", "pods", "services", "endpoints", "configmaps", "secrets",
           "serviceaccounts", "nodes", "events", "persistentvolumes", "persistentvolumeclaims",
           "replicationcontrollers", "resourcequotas", "limitranges", "podtemplates"]

# group/version -> resources that upstream serves there (a representative subset).
GROUPS = {
    "apps/v1": ["deployments", "replicasets", "statefulsets", "daemonsets",
                "controllerrevisions"],
    "batch/v1": ["jobs", "cronjobs"],
    "networking.k8s.io/v1": ["ingresses", "networkpolicies", "ingressclasses"],
    "rbac.authorization.k8s.io/v1": ["roles", "rolebindings", "clusterroles",
                                     "clusterrolebindings"],
    "storage.k8s.io/v1": ["storageclasses", "volumeattachments", "csidrivers", "csinodes"],
    "coordination.k8s.io/v1": ["leases"],
    "discovery.k8s.io/v1": ["endpointslices"],
    "policy/v1": ["poddisruptionbudgets"],
    "autoscaling/v1": ["horizontalpodautoscalers"],
    "autoscaling/v2": ["horizontalpodautoscalers"],
    "events.k8s.io/v1": ["events"],
    "certificates.k8s.io/v1": ["certificatesigningrequests"],
    "scheduling.k8s.io/v1": ["priorityclasses"],
    "node.k8s.io/v1": ["runtimeclasses"],
    "apiextensions.k8s.io/v1": ["customresourcedefinitions"],
    "admissionregistration.k8s.io/v1": ["validatingwebhookconfigurations",
                                        "mutatingwebhookconfigurations"],
    "apiregistration.k8s.io/v1": ["apiservices"],
    "flowcontrol.apiserver.k8s.io/v1": ["flowschemas", "prioritylevelconfigurations"],
}

CLUSTER_SCOPED = {"namespaces", "nodes", "persistentvolumes", "clusterroles",
                  "clusterrolebindings", "storageclasses", "volumeattachments", "csidrivers",
                  "csinodes", "ingressclasses", "certificatesigningrequests", "priorityclasses",
                  "runtimeclasses", "customresourcedefinitions",
                  "validatingwebhookconfigurations", "mutatingwebhookconfigurations",
                  "apiservices", "flowschemas", "prioritylevelconfigurations"}


def test_get_ns_shows_system_namespaces(kubectl):
    names = set(kubectl("get", "ns", "-o", "name").split())
    assert {f"namespace/{n}" for n in SYSTEM_NAMESPACES} <= names, names
    cols, rows = parse_table(kubectl("get", "ns"))
    assert cols == ["NAME", "STATUS", "AGE"], cols
    by_name = {r["NAME"]: r for r in rows}
    for n in SYSTEM_NAMESPACES:
        assert by_name[n]["STATUS"] == "Active", by_name.get(n)


def test_api_resources_core_v1(kubectl):
    cols, rows = parse_table(kubectl("api-resources"))
    assert cols == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], cols
    core = {r["NAME"]: r for r in rows if r["APIVERSION"] == "v1"}
    missing = [r for r in CORE_V1 if r not in core]
    assert not missing, f"core v1 resources missing from api-resources: {missing}"
    assert core["pods"]["SHORTNAMES"] == "po" and core["pods"]["KIND"] == "Pod"
    assert core["pods"]["NAMESPACED"] == "true"
    assert core["namespaces"]["NAMESPACED"] == "false" and core["namespaces"]["SHORTNAMES"] == "ns"
    assert core["services"]["SHORTNAMES"] == "svc" and core["services"]["KIND"] == "Service"
    assert core["configmaps"]["SHORTNAMES"] == "cm"
    assert core["nodes"]["NAMESPACED"] == "false"
    assert core["persistentvolumeclaims"]["SHORTNAMES"] == "pvc"


def test_api_resources_groups(kubectl):
    _, rows = parse_table(kubectl("api-resources"))
    deploy = [r for r in rows if r["NAME"] == "deployments"]
    assert deploy, "deployments missing"
    assert deploy[0]["APIVERSION"] == "apps/v1" and deploy[0]["SHORTNAMES"] == "deploy"
    assert deploy[0]["NAMESPACED"] == "true" and deploy[0]["KIND"] == "Deployment"
    # api-resources shows the preferred version of each group only
    served = {(r["APIVERSION"].rsplit("/", 1)[0], r["NAME"]): r for r in rows if "/" in r["APIVERSION"]}
    missing = []
    for gv, resources in GROUPS.items():
        group = gv.rsplit("/", 1)[0]
        for res in resources:
            r = served.get((group, res))
            if r is None:
                missing.append(f"{res}.{group}")
                continue
            expected_ns = "false" if res in CLUSTER_SCOPED else "true"
            assert r["NAMESPACED"] == expected_ns, r
    assert not missing, f"missing from api-resources: {missing}"
    autoscaling = served[("autoscaling", "horizontalpodautoscalers")]
    assert autoscaling["APIVERSION"] == "autoscaling/v2", autoscaling  # preferred version


def test_api_versions_lists_every_group_version(kubectl):
    versions = set(kubectl("api-versions").split())
    expected = {"v1", *GROUPS}
    assert expected <= versions, f"missing group versions: {sorted(expected - versions)}"


def test_api_resources_filters(kubectl):
    out = kubectl("api-resources", "--api-group=apps", "-o", "name")
    names = set(out.split())
    assert {"deployments.apps", "statefulsets.apps", "daemonsets.apps", "replicasets.apps"} <= names
    cluster_scoped = set(kubectl("api-resources", "--namespaced=false", "-o", "name").split())
    assert "namespaces" in cluster_scoped and "nodes" in cluster_scoped
    assert "pods" not in cluster_scoped


def test_cluster_info(kubectl, cluster):
    out = kubectl("cluster-info")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert re.search(r"Kubernetes control plane is running at "
                     + re.escape(cluster.url) + r"/?\s*$", plain, re.M), plain


def test_version_prints_server_version(kubectl):
    out = kubectl("version")
    assert "Server Version" in out, out
    info = json.loads(kubectl("version", "-o", "json"))
    sv = info.get("serverVersion")
    assert sv, info
    assert sv["major"] == "1" and re.fullmatch(r"\d+\+?", sv["minor"]), sv
    assert re.match(r"v1\.\d+\.\d+", sv["gitVersion"]), sv
    assert sv.get("platform") == "linux/amd64", sv


def test_get_pods_table_columns(kubectl, ns):
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod("table-pod")))
    cols, rows = parse_table(kubectl("get", "pods", "-n", ns))
    assert cols == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], cols
    assert len(rows) == 1, rows
    r = rows[0]
    assert r["NAME"] == "table-pod"
    assert r["READY"] == "0/1", r  # one container, not ready
    assert r["STATUS"] == "Pending", r  # no node yet: phase Pending
    assert r["RESTARTS"] == "0", r
    assert re.fullmatch(r"\d+s", r["AGE"]), r


def test_create_get_describe_delete_configmap(kubectl, ns):
    out = kubectl("create", "configmap", "basic", "-n", ns, "--from-literal=greeting=hello")
    assert out.strip() == "configmap/basic created", out
    obj = kubectl.json("get", "configmap", "basic", "-n", ns)
    assert obj["data"] == {"greeting": "hello"}
    assert obj["metadata"]["namespace"] == ns
    desc = kubectl("describe", "configmap", "basic", "-n", ns)
    assert re.search(r"^Name:\s+basic$", desc, re.M), desc
    assert re.search(rf"^Namespace:\s+{ns}$", desc, re.M), desc
    assert "greeting" in desc and "hello" in desc, desc
    out = kubectl("delete", "configmap", "basic", "-n", ns)
    assert out.strip() == 'configmap "basic" deleted', out
    err = kubectl.fail("get", "configmap", "basic", "-n", ns)
    assert 'Error from server (NotFound): configmaps "basic" not found' in err, err


def test_create_deployment_and_get_by_short_name(kubectl, ns):
    kubectl("create", "deployment", "shorty", "-n", ns, "--image=nginx:1.25")
    out = kubectl("get", "deploy", "-n", ns, "-o", "name")
    assert out.split() == ["deployment.apps/shorty"], out
    out = kubectl("get", "deployments.apps/shorty", "-n", ns, "-o", "name")
    assert out.strip() == "deployment.apps/shorty"
    err = kubectl.fail("get", "nosuchresource")
    assert "the server doesn't have a resource type" in err, err


def test_get_all_namespaces(kubectl, ns):
    kubectl("create", "configmap", "everywhere", "-n", ns, "--from-literal=a=b")
    cols, rows = parse_table(kubectl("get", "configmaps", "-A"))
    assert cols[:2] == ["NAMESPACE", "NAME"], cols
    assert {"NAMESPACE": ns, "NAME": "everywhere"}.items() <= next(
        r for r in rows if r["NAME"] == "everywhere").items()
