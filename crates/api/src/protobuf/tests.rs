//! Objects encoded with an independent encoder (`k8s-pb`'s prost structs), decoded here and
//! compared with the JSON upstream writes for them.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as networking;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::api::scheduling::v1 as scheduling;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use super::special::go_duration;
use super::{ProtobufError, decode};

/// A body as a Go client sends it: the prefix and the envelope around `raw`.
fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s(api_version), kind: s(kind) }),
        raw: Some(raw),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut bytes = b"k8s\0".to_vec();
    bytes.extend(unknown.encode_to_vec());
    bytes
}

/// Encodes `object`, decodes the body and returns the JSON.
fn roundtrip(api_version: &str, kind: &str, object: &impl Message) -> Value {
    decode(&body(api_version, kind, object.encode_to_vec())).expect("the body decodes")
}

fn s(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn quantities(entries: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), Quantity { string: s(v) })).collect()
}

fn int(n: i32) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(0), int_val: Some(n), str_val: s("") })
}

fn string(text: &str) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: s(text) })
}

fn time(seconds: i64) -> Option<meta::Time> {
    Some(meta::Time { seconds: Some(seconds), nanos: Some(0) })
}

/// Metadata as Go writes it: every non-pointer field, set or not, and an empty
/// `creationTimestamp`.
fn metadata(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        creation_timestamp: Some(meta::Time::default()),
        labels: map(&[("app", name)]),
        ..Default::default()
    })
}

/// The JSON of [`metadata`].
fn metadata_json(name: &str, namespace: &str) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": null, "labels": {"app": name}});
    if !namespace.is_empty() {
        m["namespace"] = json!(namespace);
    }
    m
}

/// A pod template with the parts whose protobuf and JSON shapes differ: inlined volume
/// sources, probe handlers and object references, quantities and int-or-strings.
fn pod_template(name: &str) -> Option<core::PodTemplateSpec> {
    let container = core::Container {
        name: s(name),
        image: s("nginx:1.27"),
        command: vec!["sh".into(), "-c".into(), String::new()],
        working_dir: s(""),
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            host_port: Some(0),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar { name: s("PLAIN"), value: s("v"), value_from: None },
            core::EnvVar {
                name: s("FROM_CM"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    config_map_key_ref: Some(core::ConfigMapKeySelector {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                        key: s("k"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("memory", "128Mi"), ("cpu", "500m")]),
            requests: quantities(&[("cpu", "100m")]),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: s("data"),
            read_only: Some(false),
            mount_path: s("/data"),
            ..Default::default()
        }],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: string("http"),
                    host: s(""),
                    scheme: s("HTTP"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            period_seconds: Some(10),
            ..Default::default()
        }),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        security_context: Some(core::SecurityContext {
            run_as_user: Some(0),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        stdin: Some(false),
        ..Default::default()
    };
    let volumes = vec![
        core::Volume {
            name: s("data"),
            volume_source: Some(core::VolumeSource {
                empty_dir: Some(core::EmptyDirVolumeSource {
                    medium: s(""),
                    size_limit: Some(Quantity { string: s("1Gi") }),
                }),
                ..Default::default()
            }),
        },
        core::Volume {
            name: s("config"),
            volume_source: Some(core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                    default_mode: Some(0o644),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        },
    ];
    Some(core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time::default()),
            labels: map(&[("app", name)]),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes,
            containers: vec![container],
            restart_policy: s(""),
            termination_grace_period_seconds: Some(0),
            dns_policy: s(""),
            host_network: Some(false),
            tolerations: vec![core::Toleration {
                key: s("node.kubernetes.io/not-ready"),
                operator: s("Exists"),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
                ..Default::default()
            }],
            ..Default::default()
        }),
    })
}

/// The JSON of [`pod_template`].
fn pod_template_json(name: &str) -> Value {
    json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": name}},
        "spec": {
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "config", "configMap": {"name": "cm", "defaultMode": 420}},
            ],
            "containers": [{
                "name": name,
                "image": "nginx:1.27",
                "command": ["sh", "-c", ""],
                "ports": [{"name": "http", "containerPort": 8080, "hostPort": 0, "protocol": "TCP"}],
                "env": [
                    {"name": "PLAIN", "value": "v"},
                    {"name": "FROM_CM", "valueFrom": {
                        "configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}},
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "100m"},
                },
                "volumeMounts": [{"name": "data", "readOnly": false, "mountPath": "/data"}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "initialDelaySeconds": 0,
                    "periodSeconds": 10,
                },
                "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false},
                "stdin": false,
            }],
            "terminationGracePeriodSeconds": 0,
            "hostNetwork": false,
            "tolerations": [{
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }],
        },
    })
}

#[test]
fn namespace_configmap_secret_and_service_account() {
    let ns = core::Namespace {
        metadata: metadata("x", ""),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus { phase: s(""), conditions: vec![] }),
    };
    assert_eq!(
        roundtrip("v1", "Namespace", &ns),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata_json("x", ""),
            "spec": {}, "status": {}})
    );

    let cm = core::ConfigMap {
        metadata: metadata("c", "x"),
        immutable: Some(false),
        data: map(&[("b", "2"), ("a", ""), ("c", "x\ny")]),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2, 255])].into(),
    };
    let decoded = roundtrip("v1", "ConfigMap", &cm);
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata_json("c", "x"),
            "immutable": false, "data": {"a": "", "b": "2", "c": "x\ny"},
            "binaryData": {"bin": "AAEC/w=="}})
    );
    let keys: Vec<&String> =
        decoded["data"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["a", "b", "c"], "map members are sorted, as Go writes them");

    let secret = core::Secret {
        metadata: metadata("s", "x"),
        data: [("a".to_owned(), b"b".to_vec())].into(),
        r#type: s("Opaque"),
        ..Default::default()
    };
    assert_eq!(
        roundtrip("v1", "Secret", &secret),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata_json("s", "x"),
            "data": {"a": "Yg=="}, "type": "Opaque"})
    );

    let sa = core::ServiceAccount {
        metadata: metadata("sa", "x"),
        secrets: vec![core::ObjectReference { name: s("tok"), ..Default::default() }],
        image_pull_secrets: vec![core::LocalObjectReference { name: s("reg") }],
        automount_service_account_token: Some(false),
    };
    assert_eq!(
        roundtrip("v1", "ServiceAccount", &sa),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata_json("sa", "x"),
            "secrets": [{"name": "tok"}], "imagePullSecrets": [{"name": "reg"}],
            "automountServiceAccountToken": false})
    );
}

#[test]
fn service_ports_keep_int_or_string_and_drop_empty_strings() {
    let svc = core::Service {
        metadata: metadata("svc", "x"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("80-8080"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int(8080),
                    node_port: Some(0),
                    app_protocol: None,
                },
                core::ServicePort {
                    name: s("web"),
                    protocol: s("TCP"),
                    port: Some(443),
                    target_port: string("https"),
                    ..Default::default()
                },
            ],
            selector: map(&[("app", "svc")]),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            external_name: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    assert_eq!(
        roundtrip("v1", "Service", &svc),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata_json("svc", "x"),
            "spec": {
                "ports": [
                    {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                        "nodePort": 0},
                    {"name": "web", "protocol": "TCP", "port": 443, "targetPort": "https"},
                ],
                "selector": {"app": "svc"},
                "type": "ClusterIP",
                "healthCheckNodePort": 0,
                "publishNotReadyAddresses": false,
            },
            "status": {"loadBalancer": {}}})
    );
}

#[test]
fn pod_and_workloads_with_full_pod_templates() {
    let template = pod_template("web");
    let template_json = pod_template_json("web");
    let selector = Some(meta::LabelSelector {
        match_labels: map(&[("app", "web")]),
        match_expressions: vec![meta::LabelSelectorRequirement {
            key: s("tier"),
            operator: s("In"),
            values: vec!["a".into(), "b".into()],
        }],
    });
    let selector_json = json!({"matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});

    let pod = core::Pod {
        metadata: metadata("p", "x"),
        spec: template.clone().and_then(|t| t.spec),
        status: Some(core::PodStatus::default()),
    };
    assert_eq!(
        roundtrip("v1", "Pod", &pod),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata_json("p", "x"),
            "spec": template_json["spec"], "status": {}})
    );

    let deployment = apps::Deployment {
        metadata: metadata("d", "x"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: selector.clone(),
            template: template.clone(),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int(0),
                    max_surge: string("25%"),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    assert_eq!(
        roundtrip("apps/v1", "Deployment", &deployment),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata_json("d", "x"),
            "spec": {
                "replicas": 0,
                "selector": selector_json,
                "template": template_json,
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "minReadySeconds": 0,
                "paused": false,
            },
            "status": {}})
    );

    let replica_set = apps::ReplicaSet {
        metadata: metadata("rs", "x"),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(2),
            selector: selector.clone(),
            template: template.clone(),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("apps/v1", "ReplicaSet", &replica_set),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata_json("rs", "x"),
            "spec": {"replicas": 2, "selector": selector_json, "template": template_json}})
    );

    let stateful_set = apps::StatefulSet {
        metadata: metadata("db", "x"),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(1),
            selector: selector.clone(),
            template: template.clone(),
            volume_claim_templates: vec![core::PersistentVolumeClaim {
                metadata: Some(meta::ObjectMeta { name: s("data"), ..Default::default() }),
                spec: Some(core::PersistentVolumeClaimSpec {
                    access_modes: vec!["ReadWriteOnce".into()],
                    resources: Some(core::VolumeResourceRequirements {
                        requests: quantities(&[("storage", "1Gi")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }],
            service_name: s("db"),
            pod_management_policy: s("Parallel"),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("apps/v1", "StatefulSet", &stateful_set),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata_json("db", "x"),
            "spec": {"replicas": 1, "selector": selector_json, "template": template_json,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}],
                "serviceName": "db", "podManagementPolicy": "Parallel"}})
    );

    let daemon_set = apps::DaemonSet {
        metadata: metadata("ds", "x"),
        spec: Some(apps::DaemonSetSpec {
            selector: selector.clone(),
            template: template.clone(),
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDaemonSet {
                    max_unavailable: int(1),
                    max_surge: int(0),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("apps/v1", "DaemonSet", &daemon_set),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": metadata_json("ds", "x"),
            "spec": {"selector": selector_json, "template": template_json,
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}})
    );

    let job_spec = batch::JobSpec {
        backoff_limit: Some(0),
        completions: Some(1),
        template: template.clone(),
        ttl_seconds_after_finished: Some(0),
        ..Default::default()
    };
    let job_spec_json = json!({"completions": 1, "backoffLimit": 0, "template": template_json,
            "ttlSecondsAfterFinished": 0});
    let job = batch::Job {
        metadata: metadata("j", "x"),
        spec: Some(job_spec.clone()),
        status: Some(batch::JobStatus::default()),
    };
    let decoded = roundtrip("batch/v1", "Job", &job);
    assert_eq!(
        decoded,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata_json("j", "x"),
            "spec": job_spec_json, "status": {}})
    );

    let cron_job = batch::CronJob {
        metadata: metadata("cj", "x"),
        spec: Some(batch::CronJobSpec {
            schedule: s("*/5 * * * *"),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(job_spec),
            }),
            successful_jobs_history_limit: Some(0),
            suspend: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("batch/v1", "CronJob", &cron_job),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata_json("cj", "x"),
            "spec": {"schedule": "*/5 * * * *",
                "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": job_spec_json},
                "suspend": false, "successfulJobsHistoryLimit": 0}})
    );
}

#[test]
fn rbac_kinds() {
    let rule = rbac::PolicyRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec![String::new()],
        resources: vec!["pods".into()],
        resource_names: vec![],
        non_resource_ur_ls: vec![],
    };
    let rule_json = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]});
    let role = rbac::Role { metadata: metadata("r", "x"), rules: vec![rule.clone()] };
    assert_eq!(
        roundtrip("rbac.authorization.k8s.io/v1", "Role", &role),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": metadata_json("r", "x"), "rules": [rule_json]})
    );
    let cluster_role = rbac::ClusterRole {
        metadata: metadata("cr", ""),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into()],
            non_resource_ur_ls: vec!["/healthz".into()],
            ..Default::default()
        }],
        aggregation_rule: None,
    };
    assert_eq!(
        roundtrip("rbac.authorization.k8s.io/v1", "ClusterRole", &cluster_role),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": metadata_json("cr", ""),
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]})
    );
    let subjects = vec![
        rbac::Subject {
            kind: s("User"),
            api_group: s("rbac.authorization.k8s.io"),
            name: s("u"),
            namespace: s(""),
        },
        rbac::Subject {
            kind: s("ServiceAccount"),
            api_group: s(""),
            name: s("sa"),
            namespace: s("x"),
        },
    ];
    let subjects_json = json!([
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"},
        {"kind": "ServiceAccount", "name": "sa", "namespace": "x"},
    ]);
    let role_ref = Some(rbac::RoleRef {
        api_group: s("rbac.authorization.k8s.io"),
        kind: s("Role"),
        name: s("r"),
    });
    let binding = rbac::RoleBinding {
        metadata: metadata("rb", "x"),
        subjects: subjects.clone(),
        role_ref: role_ref.clone(),
    };
    assert_eq!(
        roundtrip("rbac.authorization.k8s.io/v1", "RoleBinding", &binding),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata_json("rb", "x"), "subjects": subjects_json,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}})
    );
    let cluster_binding =
        rbac::ClusterRoleBinding { metadata: metadata("crb", ""), subjects, role_ref };
    assert_eq!(
        roundtrip("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &cluster_binding)["subjects"],
        subjects_json
    );
}

#[test]
fn networking_policy_quota_priority_and_autoscaling_kinds() {
    let backend = |port: Option<networking::ServiceBackendPort>| {
        Some(networking::IngressBackend {
            service: Some(networking::IngressServiceBackend { name: s("svc"), port }),
            resource: None,
        })
    };
    let ingress = networking::Ingress {
        metadata: metadata("ing", "x"),
        spec: Some(networking::IngressSpec {
            ingress_class_name: s("nginx"),
            default_backend: backend(Some(networking::ServiceBackendPort {
                name: s(""),
                number: Some(80),
            })),
            rules: vec![networking::IngressRule {
                host: s("example.com"),
                ingress_rule_value: Some(networking::IngressRuleValue {
                    http: Some(networking::HttpIngressRuleValue {
                        paths: vec![networking::HttpIngressPath {
                            path: s("/"),
                            path_type: s("Prefix"),
                            backend: backend(Some(networking::ServiceBackendPort {
                                name: s("http"),
                                number: Some(0),
                            })),
                        }],
                    }),
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("networking.k8s.io/v1", "Ingress", &ingress),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": metadata_json("ing", "x"),
        "spec": {
            "defaultBackend": {"service": {"name": "svc", "port": {"number": 80}}},
            "rules": [{"host": "example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "svc", "port": {"name": "http", "number": 0}}},
            }]}}],
            "ingressClassName": "nginx",
        }})
    );

    let pdb = policy::PodDisruptionBudget {
        metadata: metadata("pdb", "x"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: string("50%"),
            selector: Some(meta::LabelSelector {
                match_labels: map(&[("app", "web")]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("policy/v1", "PodDisruptionBudget", &pdb)["spec"],
        json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}})
    );

    let quota = core::ResourceQuota {
        metadata: metadata("q", "x"),
        spec: Some(core::ResourceQuotaSpec {
            hard: quantities(&[("pods", "10"), ("requests.cpu", "2")]),
            scopes: vec!["BestEffort".into()],
            scope_selector: None,
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("v1", "ResourceQuota", &quota)["spec"],
        json!({"hard": {"pods": "10", "requests.cpu": "2"}, "scopes": ["BestEffort"]})
    );

    let priority = scheduling::PriorityClass {
        metadata: metadata("low", ""),
        value: Some(0),
        global_default: Some(false),
        description: s(""),
        preemption_policy: s("Never"),
    };
    assert_eq!(
        roundtrip("scheduling.k8s.io/v1", "PriorityClass", &priority),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": metadata_json("low", ""), "value": 0, "globalDefault": false,
            "preemptionPolicy": "Never"})
    );

    let target = |api_version: &str| (s("Deployment"), s("web"), s(api_version));
    let (kind, name, api_version) = target("apps/v1");
    let hpa_v1 = autoscaling_v1::HorizontalPodAutoscaler {
        metadata: metadata("web", "x"),
        spec: Some(autoscaling_v1::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(autoscaling_v1::CrossVersionObjectReference {
                kind: kind.clone(),
                name: name.clone(),
                api_version: api_version.clone(),
            }),
            min_replicas: Some(1),
            max_replicas: Some(5),
            target_cpu_utilization_percentage: Some(80),
        }),
        status: None,
    };
    let target_json = json!({"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"});
    assert_eq!(
        roundtrip("autoscaling/v1", "HorizontalPodAutoscaler", &hpa_v1)["spec"],
        json!({"scaleTargetRef": target_json, "minReplicas": 1, "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 80})
    );

    let hpa_v2 = autoscaling_v2::HorizontalPodAutoscaler {
        metadata: metadata("web", "x"),
        spec: Some(autoscaling_v2::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(autoscaling_v2::CrossVersionObjectReference {
                kind,
                name,
                api_version,
            }),
            min_replicas: Some(1),
            max_replicas: Some(5),
            metrics: vec![autoscaling_v2::MetricSpec {
                r#type: s("Resource"),
                resource: Some(autoscaling_v2::ResourceMetricSource {
                    name: s("memory"),
                    target: Some(autoscaling_v2::MetricTarget {
                        r#type: s("AverageValue"),
                        average_value: Some(Quantity { string: s("512Mi") }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            behavior: None,
        }),
        status: None,
    };
    assert_eq!(
        roundtrip("autoscaling/v2", "HorizontalPodAutoscaler", &hpa_v2)["spec"],
        json!({"scaleTargetRef": target_json, "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "512Mi"}}}]})
    );
}

#[test]
fn events_times_and_delete_options() {
    let event = core::Event {
        metadata: metadata("e", "x"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("p"),
            uid: s("123"),
            ..Default::default()
        }),
        reason: s("Started"),
        first_timestamp: time(1_700_000_000),
        last_timestamp: Some(meta::Time { seconds: Some(1_700_000_001), nanos: Some(5) }),
        count: Some(1),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        ..Default::default()
    };
    assert_eq!(
        roundtrip("v1", "Event", &event),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": metadata_json("e", "x"),
            "involvedObject": {"kind": "Pod", "name": "p", "uid": "123"},
            "reason": "Started",
            "firstTimestamp": "2023-11-14T22:13:20Z",
            "lastTimestamp": "2023-11-14T22:13:21Z",
            "count": 1,
            "eventTime": "2023-11-14T22:13:20.123456Z"})
    );

    let series_event = k8s_pb::api::events::v1::Event {
        metadata: metadata("e2", "x"),
        event_time: Some(meta::MicroTime { seconds: Some(0), nanos: Some(0) }),
        series: Some(k8s_pb::api::events::v1::EventSeries {
            count: Some(2),
            last_observed_time: Some(meta::MicroTime::default()),
        }),
        reporting_controller: s("kubelet"),
        ..Default::default()
    };
    assert_eq!(
        roundtrip("events.k8s.io/v1", "Event", &series_event),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": metadata_json("e2", "x"),
            "eventTime": "1970-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": null},
            "reportingController": "kubelet"})
    );

    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions { uid: s("u-1"), resource_version: None }),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let options_json = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": "u-1"},
        "propagationPolicy": "Foreground", "dryRun": ["All"]});
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let mut expected = json!({"apiVersion": api_version, "kind": "DeleteOptions"});
        if let (Some(e), Some(o)) = (expected.as_object_mut(), options_json.as_object()) {
            e.extend(o.clone());
        }
        assert_eq!(roundtrip(api_version, "DeleteOptions", &options), expected);
    }
}

#[test]
fn raw_json_fields_renamed_fields_and_string_lists() {
    let revision = apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: s("rev"),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                time: time(0),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:data":{}}"#.to_vec()) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        data: Some(RawExtension { raw: Some(br#"{"spec":{"a":[1,2]}}"#.to_vec()) }),
        revision: Some(3),
    };
    assert_eq!(
        roundtrip("apps/v1", "ControllerRevision", &revision),
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "rev", "managedFields": [{"manager": "kubectl",
                "operation": "Update", "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {}}}]},
            "data": {"spec": {"a": [1, 2]}}, "revision": 3})
    );

    use k8s_pb::api::admissionregistration::v1 as admission;
    let webhooks = admission::ValidatingWebhookConfiguration {
        metadata: Some(meta::ObjectMeta { name: s("w"), ..Default::default() }),
        webhooks: vec![admission::ValidatingWebhook {
            name: s("w.example.com"),
            rules: vec![admission::RuleWithOperations {
                operations: vec!["CREATE".into()],
                rule: Some(admission::Rule {
                    api_groups: vec![String::new()],
                    api_versions: vec!["v1".into()],
                    resources: vec!["pods".into()],
                    scope: s("*"),
                }),
            }],
            ..Default::default()
        }],
    };
    assert_eq!(
        roundtrip("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", &webhooks)["webhooks"],
        json!([{"name": "w.example.com", "rules": [{"operations": ["CREATE"],
            "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}]}])
    );

    use k8s_pb::api::authentication::v1 as authn;
    let review = authn::TokenReview {
        metadata: None,
        spec: None,
        status: Some(authn::TokenReviewStatus {
            user: Some(authn::UserInfo {
                username: s("u"),
                extra: [("scopes".to_owned(), authn::ExtraValue { items: vec!["a".into()] })]
                    .into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        roundtrip("authentication.k8s.io/v1", "TokenReview", &review)["status"],
        json!({"user": {"username": "u", "extra": {"scopes": ["a"]}}})
    );
}

#[test]
fn json_inside_the_envelope_is_taken_as_is() {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("ConfigMap") }),
        raw: Some(br#"{"apiVersion":"v1","kind":"ConfigMap","data":{"a":"b"}}"#.to_vec()),
        content_encoding: None,
        content_type: s("application/json"),
    };
    let mut bytes = b"k8s\0".to_vec();
    bytes.extend(unknown.encode_to_vec());
    assert_eq!(
        decode(&bytes),
        Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}))
    );
}

#[test]
fn malformed_bodies_and_unknown_kinds_are_errors() {
    assert_eq!(decode(b"{}"), Err(ProtobufError::MissingPrefix));
    assert!(matches!(decode(b"k8s\0\xff\xff\xff"), Err(ProtobufError::Envelope(_))));
    assert_eq!(decode(&body("", "", vec![])), Err(ProtobufError::MissingTypeMeta));

    let unknown = decode(&body("example.com/v1", "Widget", vec![])).expect_err("unknown");
    assert!(unknown.is_unsupported_kind());
    assert_eq!(unknown.to_string(), "no protobuf schema is known for example.com/v1, Kind=Widget");
    assert!(decode(&body("v1", "Deployment", vec![])).is_err_and(|e| e.is_unsupported_kind()));

    let garbage = decode(&body("v1", "ConfigMap", vec![0x0a, 0xff])).expect_err("garbage");
    assert!(!garbage.is_unsupported_kind());
    assert!(garbage.to_string().starts_with("cannot decode ConfigMap (v1) from protobuf: "));

    let mut gzip = Unknown::decode(&body("v1", "ConfigMap", vec![])[4..]).expect("envelope");
    gzip.content_encoding = s("gzip");
    let mut bytes = b"k8s\0".to_vec();
    bytes.extend(gzip.encode_to_vec());
    assert_eq!(decode(&bytes), Err(ProtobufError::ContentEncoding("gzip".into())));
}

#[test]
fn go_duration_strings() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_661_000_000_001, "1h1m1.000000001s"),
        (-60_000_000_000, "-1m0s"),
    ];
    for (nanos, text) in cases {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
}
