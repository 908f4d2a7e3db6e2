"""kubectl apply of a multi-document manifest, re-applied with changes and removals."""

import base64
import ipaddress
import json

import yaml

from conftest import wait_for

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def manifest(ns, image="nginx:1.25", color="blue", env=(("MODE", "prod"), ("DEBUG", "false")),
             ports=(("http", 80), ("https", 443)), extra_data=(("size", "large"),)):
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "app-config", "namespace": ns},
         "data": {"color": color, **dict(extra_data)}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": ns},
         "type": "Opaque", "stringData": {"password": "s3cret"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
         "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{
                                   "name": "web", "image": image,
                                   "ports": [{"containerPort": 80}],
                                   "env": [{"name": k, "value": v} for k, v in env]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"selector": {"app": "web"},
                  "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports]}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def apply(kubectl, tmp_path, text, name="m.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return kubectl("apply", "-f", f)


def lines(out):
    return sorted(ln.strip() for ln in out.splitlines() if ln.strip())


def test_apply_creates_all_documents(kubectl, ns_name, tmp_path, cluster):
    ns = ns_name
    out = apply(kubectl, tmp_path, manifest(ns))
    assert lines(out) == sorted([
        f"namespace/{ns} created", "configmap/app-config created", "secret/app-secret created",
        "deployment.apps/web created", "service/web created"]), out

    cm = kubectl.json("get", "configmap", "app-config", "-n", ns)
    assert cm["data"] == {"color": "blue", "size": "large"}
    assert LAST_APPLIED in cm["metadata"].get("annotations", {})
    assert json.loads(cm["metadata"]["annotations"][LAST_APPLIED])["data"]["color"] == "blue"

    sec = kubectl.json("get", "secret", "app-secret", "-n", ns)
    assert sec["type"] == "Opaque"
    assert base64.b64decode(sec["data"]["password"]) == b"s3cret", sec
    assert "stringData" not in sec, "stringData must be folded into data"

    namespace = kubectl.json("get", "namespace", ns)
    assert namespace["status"]["phase"] == "Active"


def test_apply_defaults_deployment(kubectl, ns_name, tmp_path):
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    d = kubectl.json("get", "deployment", "web", "-n", ns)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pspec = spec["template"]["spec"]
    assert pspec["restartPolicy"] == "Always"
    assert pspec["dnsPolicy"] == "ClusterFirst"
    assert pspec["terminationGracePeriodSeconds"] == 30
    assert pspec["schedulerName"] == "default-scheduler"
    assert pspec["securityContext"] == {}
    c = pspec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert d["metadata"]["generation"] == 1
    assert d["metadata"]["uid"] and d["metadata"]["creationTimestamp"]


def test_apply_defaults_service(kubectl, ns_name, tmp_path):
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    svc = kubectl.json("get", "service", "web", "-n", ns)
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in spec["ports"]] == [
        ("http", 80, 80, "TCP"), ("https", 443, 443, "TCP")]
    ip = ipaddress.ip_address(spec["clusterIP"])  # a clusterIP is allocated
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert ip.version == 4


def test_reapply_with_changes_and_removals(kubectl, ns_name, tmp_path):
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    d0 = kubectl.json("get", "deployment", "web", "-n", ns)
    sec0 = kubectl.json("get", "secret", "app-secret", "-n", ns)

    out = apply(kubectl, tmp_path, manifest(ns, image="nginx:1.26", color="green",
                                            env=(("MODE", "prod"),), ports=(("http", 80),)),
                name="m2.yaml")
    # kubectl reports a Secret written with stringData as "configured" on every apply (the live
    # object has no stringData, so its patch is never empty); the server must treat that
    # patch as a no-op, which the resourceVersion check below verifies
    assert lines(out) == sorted([
        f"namespace/{ns} unchanged", "configmap/app-config configured",
        "secret/app-secret configured", "deployment.apps/web configured",
        "service/web configured"]), out

    cm = kubectl.json("get", "configmap", "app-config", "-n", ns)
    assert cm["data"] == {"color": "green", "size": "large"}

    d = kubectl.json("get", "deployment", "web", "-n", ns)
    c = d["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1
    assert c[0]["image"] == "nginx:1.26"
    assert c[0]["env"] == [{"name": "MODE", "value": "prod"}], "removed env var must be gone"
    assert d["metadata"]["generation"] == 2, "a spec change bumps generation"
    assert d["metadata"]["uid"] == d0["metadata"]["uid"]
    assert d["metadata"]["resourceVersion"] != d0["metadata"]["resourceVersion"]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "RollingUpdate"

    svc = kubectl.json("get", "service", "web", "-n", ns)
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http"], "removed port must be gone"

    sec = kubectl.json("get", "secret", "app-secret", "-n", ns)
    assert sec["metadata"]["resourceVersion"] == sec0["metadata"]["resourceVersion"], \
        "an unchanged object is not rewritten"

    # a key removed from the manifest disappears from the live object
    apply(kubectl, tmp_path, manifest(ns, image="nginx:1.26", color="green",
                                      env=(("MODE", "prod"),), ports=(("http", 80),),
                                      extra_data=()), name="m3.yaml")
    cm = kubectl.json("get", "configmap", "app-config", "-n", ns)
    assert cm["data"] == {"color": "green"}


def test_reapply_keeps_fields_set_by_others(kubectl, ns_name, tmp_path):
    """A field not managed by apply (set by `kubectl scale`) survives a re-apply."""
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    kubectl("scale", "deployment/web", "-n", ns, "--replicas=3")
    apply(kubectl, tmp_path, manifest(ns, image="nginx:1.27"), name="m2.yaml")
    d = kubectl.json("get", "deployment", "web", "-n", ns)
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_apply_unchanged_is_noop(kubectl, ns_name, tmp_path):
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    # The Deployment controller writes the Deployment's status after the first apply: the
    # objects are compared once that settled (the same resourceVersions twice in a row).
    settled = []

    def quiet():
        now = kubectl.json("get", "configmaps,deployments,services,secrets", "-n", ns)
        rv = {(i["kind"], i["metadata"]["name"]): i["metadata"]["resourceVersion"]
              for i in now["items"]}
        same = bool(settled) and settled[-1][0] == rv
        settled.append((rv, now))
        return same
    wait_for(quiet, 30, interval=1.0, what="the controllers done with the objects")
    before = settled[-1][1]
    out = apply(kubectl, tmp_path, manifest(ns))
    assert all(ln.endswith(" unchanged") for ln in lines(out) if not ln.startswith("secret/")), out
    after = kubectl.json("get", "configmaps,deployments,services,secrets", "-n", ns)
    rvs = lambda lst: {(i["kind"], i["metadata"]["name"]): i["metadata"]["resourceVersion"]  # noqa: E731
                       for i in lst["items"]}
    assert rvs(after) == rvs(before)


def test_delete_with_file(kubectl, ns_name, tmp_path):
    ns = ns_name
    apply(kubectl, tmp_path, manifest(ns))
    f = tmp_path / "objs.yaml"
    # everything but the namespace
    f.write_text(yaml.safe_dump_all(list(yaml.safe_load_all(manifest(ns)))[1:]))
    out = kubectl("delete", "-f", f)
    assert lines(out) == sorted(['configmap "app-config" deleted', 'secret "app-secret" deleted',
                                 'deployment.apps "web" deleted', 'service "web" deleted']), out
    left = kubectl("get", "configmaps,secrets,deployments,services", "-n", ns, "-o", "name")
    names = set(left.split())
    assert not names & {"configmap/app-config", "secret/app-secret", "deployment.apps/web",
                        "service/web"}, left
