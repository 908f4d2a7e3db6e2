#![allow(clippy::unwrap_used, clippy::type_complexity)]

use serde_json::json;

use super::*;
use crate::testing::create;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

/// A quota as the controller left it: `hard` and `used` in its status (and spec).
fn quota(name: &str, hard: Value, used: Value) -> Quota {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
        "spec": {"hard": hard},
        "status": {"hard": hard, "used": used},
    }))
    .unwrap()
}

fn scoped(name: &str, scopes: Value, hard: Value, used: Value) -> Quota {
    let mut q = quota(name, hard, used);
    q.spec.as_mut().unwrap().scopes = serde_json::from_value(scopes).unwrap();
    q
}

fn pod(resources: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}})
}

fn update<'a>(group: &'a str, resource: &'a str) -> Attributes<'a> {
    Attributes { operation: Operation::Update, ..create(group, resource, "ns") }
}

/// The quotas charged, as `name: used`, or the refusal's message.
fn outcome(result: Result<Vec<Quota>, StatusError>) -> Result<Vec<String>, (u16, String)> {
    result
        .map(|charged| {
            charged
                .iter()
                .map(|q| {
                    let used = resources::parse(q.status.as_ref().unwrap().used.as_ref());
                    format!("{}: {}", q.metadata.name.as_deref().unwrap(), resources::pretty(&used))
                })
                .collect()
        })
        .map_err(|e| (e.code(), e.message))
}

#[test]
fn pod_creates_are_charged_or_refused_with_upstreams_messages() {
    let compute = || {
        quota(
            "compute",
            json!({"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}),
            json!({"pods": "1", "requests.cpu": "500m", "limits.memory": "512Mi"}),
        )
    };
    let full = || quota("full", json!({"pods": "2"}), json!({"pods": "2"}));
    let fitting = json!({"requests": {"cpu": "250m"}, "limits": {"memory": "256Mi"}});
    let cases: &[(&str, Vec<Quota>, Value, Result<Vec<&str>, (u16, &str)>)] = &[
        (
            "a pod that fits is charged",
            vec![compute()],
            fitting.clone(),
            Ok(vec!["compute: limits.memory=768Mi,pods=2,requests.cpu=750m"]),
        ),
        (
            "a full quota refuses the next pod",
            vec![full()],
            fitting.clone(),
            Err((
                403,
                "pods \"p\" is forbidden: exceeded quota: full, requested: pods=1, used: pods=2, limited: pods=2",
            )),
        ),
        (
            "only the exceeded resources are named",
            vec![compute()],
            json!({"requests": {"cpu": "600m"}, "limits": {"memory": "1Gi"}}),
            Err((
                403,
                "pods \"p\" is forbidden: exceeded quota: compute, requested: limits.memory=1Gi,requests.cpu=600m, used: limits.memory=512Mi,requests.cpu=500m, limited: limits.memory=1Gi,requests.cpu=1",
            )),
        ),
        (
            "a limited resource must be named by every container",
            vec![compute()],
            json!({"requests": {"cpu": "100m"}}),
            Err((
                403,
                "pods \"p\" is forbidden: failed quota: compute: must specify limits.memory for: c",
            )),
        ),
        (
            "two limited resources missing",
            vec![compute()],
            json!({}),
            Err((
                403,
                "pods \"p\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c",
            )),
        ),
        (
            "a quota without usage refuses",
            vec![quota("fresh", json!({"pods": "2", "secrets": "1"}), json!({"secrets": "0"}))],
            fitting.clone(),
            Err((403, "pods \"p\" is forbidden: status unknown for quota: fresh, resources: pods")),
        ),
        (
            "a quota of other resources does not cover pods",
            vec![quota("secrets", json!({"secrets": "1"}), json!({"secrets": "1"}))],
            json!({}),
            Ok(vec![]),
        ),
        (
            "every covering quota is charged, in name order",
            vec![
                quota("a", json!({"pods": "5"}), json!({"pods": "0"})),
                quota("b", json!({"count/pods": "5"}), json!({"count/pods": "4"})),
            ],
            json!({}),
            Ok(vec!["a: pods=1", "b: count/pods=5"]),
        ),
        (
            "extended resources are charged as requests",
            vec![quota(
                "gpu",
                json!({"requests.example.com/gpu": "1"}),
                json!({"requests.example.com/gpu": "1"}),
            )],
            json!({"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "1"}}),
            Err((
                403,
                "pods \"p\" is forbidden: exceeded quota: gpu, requested: requests.example.com/gpu=1, used: requests.example.com/gpu=1, limited: requests.example.com/gpu=1",
            )),
        ),
        (
            "cpu is the requests' alias",
            vec![quota("alias", json!({"cpu": "1"}), json!({"cpu": "900m"}))],
            json!({"requests": {"cpu": "200m"}}),
            Err((
                403,
                "pods \"p\" is forbidden: exceeded quota: alias, requested: cpu=200m, used: cpu=900m, limited: cpu=1",
            )),
        ),
    ];
    for (case, quotas, resources, expected) in cases {
        let got = ResourceQuota.check(
            &create("", "pods", "ns"),
            Some(&pod(resources.clone())),
            None,
            quotas,
            now(),
        );
        let expected = expected
            .clone()
            .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(|(c, m)| (c, m.to_string()));
        assert_eq!(outcome(got), expected, "{case}");
    }
}

#[test]
fn scopes_select_the_pods_a_quota_covers() {
    let best_effort =
        scoped("be", json!(["BestEffort"]), json!({"pods": "1"}), json!({"pods": "1"}));
    let not_best_effort =
        scoped("nbe", json!(["NotBestEffort"]), json!({"pods": "5"}), json!({"pods": "0"}));
    let quotas = vec![best_effort, not_best_effort];
    // A pod with requests is not best effort: only `nbe` covers it.
    let got = ResourceQuota.check(
        &create("", "pods", "ns"),
        Some(&pod(json!({"requests": {"cpu": "1"}}))),
        None,
        &quotas,
        now(),
    );
    assert_eq!(outcome(got), Ok(vec!["nbe: pods=1".to_string()]));
    // A best-effort pod meets the full `be`.
    let got =
        ResourceQuota.check(&create("", "pods", "ns"), Some(&pod(json!({}))), None, &quotas, now());
    assert_eq!(
        outcome(got).unwrap_err().1,
        "pods \"p\" is forbidden: exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"
    );
    // A priority class selector.
    let mut high: Quota = quota("high", json!({"pods": "1"}), json!({"pods": "1"}));
    high.spec.as_mut().unwrap().scope_selector =
        serde_json::from_value(json!({"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}))
        .unwrap();
    let mut p = pod(json!({}));
    let got = ResourceQuota.check(
        &create("", "pods", "ns"),
        Some(&p),
        None,
        std::slice::from_ref(&high),
        now(),
    );
    assert_eq!(outcome(got), Ok(vec![]));
    p["spec"]["priorityClassName"] = json!("high");
    let got = ResourceQuota.check(&create("", "pods", "ns"), Some(&p), None, &[high], now());
    assert!(outcome(got).unwrap_err().1.contains("exceeded quota: high"));
}

#[test]
fn other_resources_are_counted() {
    let quotas = vec![quota(
        "objects",
        json!({"count/configmaps": "1", "services": "5", "services.loadbalancers": "0", "count/deployments.apps": "1", "persistentvolumeclaims": "2", "gold.storageclass.storage.k8s.io/requests.storage": "10Gi"}),
        json!({"count/configmaps": "1", "services": "0", "services.loadbalancers": "0", "count/deployments.apps": "0", "persistentvolumeclaims": "0", "gold.storageclass.storage.k8s.io/requests.storage": "0"}),
    )];
    let named = |name: &str| json!({"metadata": {"name": name, "namespace": "ns"}});
    let cases: &[(&str, &str, Value, Result<Vec<&str>, &str>)] = &[
        (
            "configmaps",
            "",
            named("cm"),
            Err(
                "configmaps \"cm\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1",
            ),
        ),
        (
            "services",
            "",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            Err(
                "services \"lb\" is forbidden: exceeded quota: objects, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0",
            ),
        ),
        (
            "deployments",
            "apps",
            named("d"),
            Ok(vec![
                "objects: count/configmaps=1,count/deployments.apps=1,gold.storageclass.storage.k8s.io/requests.storage=0,persistentvolumeclaims=0,services=0,services.loadbalancers=0",
            ]),
        ),
        (
            "persistentvolumeclaims",
            "",
            json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "20Gi"}}}}),
            Err(
                "persistentvolumeclaims \"c\" is forbidden: exceeded quota: objects, requested: gold.storageclass.storage.k8s.io/requests.storage=20Gi, used: gold.storageclass.storage.k8s.io/requests.storage=0, limited: gold.storageclass.storage.k8s.io/requests.storage=10Gi",
            ),
        ),
        ("events are ignored", "", named("e"), Ok(vec![])),
    ];
    for (resource, group, object, expected) in cases {
        let resource = if *resource == "events are ignored" { "events" } else { resource };
        let got =
            ResourceQuota.check(&create(group, resource, "ns"), Some(object), None, &quotas, now());
        let expected = expected
            .clone()
            .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(|m| (403, m.to_string()));
        assert_eq!(outcome(got), expected, "{resource}");
    }
}

#[test]
fn updates_are_charged_what_they_add() {
    let quotas = vec![quota(
        "svc",
        json!({"services.nodeports": "2", "services": "5"}),
        json!({"services.nodeports": "1", "services": "1"}),
    )];
    let service = |kind: &str, ports: usize| {
        json!({"metadata": {"name": "s", "namespace": "ns", "resourceVersion": "3"},
               "spec": {"type": kind, "ports": (0..ports).map(|p| json!({"port": 80 + p})).collect::<Vec<_>>()}})
    };
    // ClusterIP to NodePort with one port: one more node port.
    let got = ResourceQuota.check(
        &update("", "services"),
        Some(&service("NodePort", 1)),
        Some(&service("ClusterIP", 1)),
        &quotas,
        now(),
    );
    assert_eq!(outcome(got), Ok(vec!["svc: services=1,services.nodeports=2".to_string()]));
    // Two more node ports do not fit.
    let got = ResourceQuota.check(
        &update("", "services"),
        Some(&service("NodePort", 3)),
        Some(&service("NodePort", 1)),
        &quotas,
        now(),
    );
    assert_eq!(
        outcome(got).unwrap_err().1,
        "services \"s\" is forbidden: exceeded quota: svc, requested: services.nodeports=2, used: services.nodeports=1, limited: services.nodeports=2"
    );
    // Fewer ports: nothing charged (usage goes down with the controller).
    let got = ResourceQuota.check(
        &update("", "services"),
        Some(&service("ClusterIP", 1)),
        Some(&service("NodePort", 1)),
        &quotas,
        now(),
    );
    assert_eq!(outcome(got), Ok(vec![]));
    // Config maps are counted on create only.
    let counted = vec![quota("cm", json!({"configmaps": "1"}), json!({"configmaps": "1"}))];
    let cm = json!({"metadata": {"name": "x", "namespace": "ns", "resourceVersion": "1"}});
    let got = ResourceQuota.check(&update("", "configmaps"), Some(&cm), Some(&cm), &counted, now());
    assert_eq!(outcome(got), Ok(vec![]));
}

#[test]
fn writes_quota_does_not_look_at() {
    let quotas = vec![quota(
        "full",
        json!({"pods": "0", "count/namespaces": "0"}),
        json!({"pods": "0", "count/namespaces": "0"}),
    )];
    let p = pod(json!({}));
    let status = Attributes { subresource: "status", ..update("", "pods") };
    assert!(!ResourceQuota.handles(&status, Some(&p), Some(&p)));
    assert_eq!(
        outcome(ResourceQuota.check(&status, Some(&p), Some(&p), &quotas, now())),
        Ok(vec![])
    );
    let cluster_scoped = create("", "namespaces", "");
    assert_eq!(
        outcome(ResourceQuota.check(&cluster_scoped, Some(&p), None, &quotas, now())),
        Ok(vec![])
    );
    let delete = Attributes { operation: Operation::Delete, ..create("", "pods", "ns") };
    assert!(!ResourceQuota.handles(&delete, None, Some(&p)));
    // A pod update that keeps its scope is not looked at.
    assert!(!ResourceQuota.handles(&update("", "pods"), Some(&p), Some(&p)));
    assert!(ResourceQuota.handles(&create("", "pods", "ns"), Some(&p), None));
}

#[test]
fn quotas_are_read_in_name_order() {
    let objects = crate::testing::Objects(vec![
        ("", "resourcequotas", json!({"metadata": {"name": "b", "namespace": "ns"}})),
        ("", "resourcequotas", json!({"metadata": {"name": "a", "namespace": "ns"}})),
        ("", "resourcequotas", json!({"metadata": {"name": "c", "namespace": "other"}})),
    ]);
    let names: Vec<String> =
        quotas(&objects, "ns").into_iter().filter_map(|q| q.metadata.name).collect();
    assert_eq!(names, ["a", "b"]);
}
