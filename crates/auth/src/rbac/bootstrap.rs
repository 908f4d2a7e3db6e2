//! The default ClusterRoles and ClusterRoleBindings, as upstream's bootstrap policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`) creates them, written as tables: one
//! entry per role, one line per rule. Every object carries the
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` annotation and the
//! `kubernetes.io/bootstrapping: rbac-defaults` label, so the server reconciles them at start.
//!
//! The controllers' roles (`system:controller:*`) are those of the controllers krust runs or
//! will run; each is bound to the service account of that name in `kube-system`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// The annotation that lets the server reconcile a default object (`"false"`: leave it be).
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label of every default object.
pub const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// The label that aggregates a ClusterRole into `admin`.
pub const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
/// The label that aggregates a ClusterRole into `edit`.
pub const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
/// The label that aggregates a ClusterRole into `view`.
pub const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// One rule of a table: verbs, then groups and resources, names, or paths.
struct R {
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
    urls: &'static [&'static str],
}

const fn r(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> R {
    R { verbs, groups, resources, names: &[], urls: &[] }
}

const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> R {
    R { verbs, groups, resources, names, urls: &[] }
}

const fn paths(verbs: &'static [&'static str], urls: &'static [&'static str]) -> R {
    R { verbs, groups: &[], resources: &[], names: &[], urls }
}

/// One ClusterRole of a table.
struct Entry {
    name: &'static str,
    /// Extra labels (aggregation into admin, edit, view).
    labels: &'static [&'static str],
    /// The label whose ClusterRoles this one aggregates (`admin`, `edit`, `view`).
    aggregates: Option<&'static str>,
    rules: &'static [R],
}

const READ: &[&str] = &["get", "list", "watch"];
const LW: &[&str] = &["list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_RW: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const CREATE: &[&str] = &["create"];
const UPDATE: &[&str] = &["update"];
const PATCH_UPDATE: &[&str] = &["patch", "update"];
const CORE: &[&str] = &[""];
const APPS_EXT: &[&str] = &["apps", "extensions"];
const EVENTS: R = r(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]);
const STAR: &[&str] = &["*"];

const ROLES: &[Entry] = &[
    Entry {
        name: "cluster-admin",
        labels: &[],
        aggregates: None,
        rules: &[r(STAR, STAR, STAR), paths(STAR, STAR)],
    },
    Entry { name: "admin", labels: &[], aggregates: Some(TO_ADMIN), rules: &[] },
    Entry { name: "edit", labels: &[TO_ADMIN], aggregates: Some(TO_EDIT), rules: &[] },
    Entry { name: "view", labels: &[TO_EDIT], aggregates: Some(TO_VIEW), rules: &[] },
    Entry {
        name: "system:aggregate-to-admin",
        labels: &[TO_ADMIN],
        aggregates: None,
        rules: &[
            r(CREATE, &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
            r(ALL_RW, &["rbac.authorization.k8s.io"], &["rolebindings", "roles"]),
        ],
    },
    Entry {
        name: "system:aggregate-to-edit",
        labels: &[TO_EDIT],
        aggregates: None,
        rules: &[
            r(
                READ,
                CORE,
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            r(&["impersonate"], CORE, &["serviceaccounts"]),
            r(WRITE, CORE, &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
            r(CREATE, CORE, &["pods/eviction"]),
            r(
                WRITE,
                CORE,
                &[
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            r(CREATE, CORE, &["serviceaccounts/token"]),
            r(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(WRITE, &["batch"], &["cronjobs", "jobs"]),
            r(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            r(WRITE, &["policy"], &["poddisruptionbudgets"]),
            r(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
            r(ALL_RW, &["coordination.k8s.io"], &["leases"]),
        ],
    },
    Entry {
        name: "system:aggregate-to-view",
        labels: &[TO_VIEW],
        aggregates: None,
        rules: &[
            r(
                READ,
                CORE,
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            r(
                READ,
                CORE,
                &[
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            r(READ, CORE, &["namespaces"]),
            r(READ, &["discovery.k8s.io"], &["endpointslices"]),
            r(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            r(
                READ,
                &["autoscaling"],
                &["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
            ),
            r(READ, &["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
            r(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            r(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
            r(READ, &["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"]),
        ],
    },
    Entry {
        name: "system:auth-delegator",
        labels: &[],
        aggregates: None,
        rules: &[
            r(CREATE, &["authentication.k8s.io"], &["tokenreviews"]),
            r(CREATE, &["authorization.k8s.io"], &["subjectaccessreviews"]),
        ],
    },
    Entry {
        name: "system:basic-user",
        labels: &[],
        aggregates: None,
        rules: &[
            r(
                CREATE,
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            r(CREATE, &["authentication.k8s.io"], &["selfsubjectreviews"]),
        ],
    },
    Entry {
        name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        labels: &[],
        aggregates: None,
        rules: &[r(CREATE, &["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"])],
    },
    Entry {
        name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        labels: &[],
        aggregates: None,
        rules: &[r(
            CREATE,
            &["certificates.k8s.io"],
            &["certificatesigningrequests/selfnodeclient"],
        )],
    },
    Entry {
        name: "system:certificates.k8s.io:kube-apiserver-client-approver",
        labels: &[],
        aggregates: None,
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client"],
        )],
    },
    Entry {
        name: "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        labels: &[],
        aggregates: None,
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client-kubelet"],
        )],
    },
    Entry {
        name: "system:certificates.k8s.io:kubelet-serving-approver",
        labels: &[],
        aggregates: None,
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kubelet-serving"],
        )],
    },
    Entry {
        name: "system:certificates.k8s.io:legacy-unknown-approver",
        labels: &[],
        aggregates: None,
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/legacy-unknown"],
        )],
    },
    Entry {
        name: "system:discovery",
        labels: &[],
        aggregates: None,
        rules: &[paths(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    },
    Entry {
        name: "system:kube-aggregator",
        labels: &[],
        aggregates: None,
        rules: &[r(READ, CORE, &["endpoints", "services"])],
    },
    Entry {
        name: "system:kube-controller-manager",
        labels: &[],
        aggregates: None,
        rules: &[
            EVENTS,
            r(CREATE, &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-controller-manager"],
            ),
            r(CREATE, CORE, &["secrets", "serviceaccounts"]),
            r(&["delete"], CORE, &["secrets"]),
            r(&["get"], CORE, &["configmaps", "namespaces", "secrets", "serviceaccounts"]),
            r(UPDATE, CORE, &["secrets", "serviceaccounts"]),
            r(CREATE, &["authentication.k8s.io"], &["tokenreviews"]),
            r(CREATE, &["authorization.k8s.io"], &["subjectaccessreviews"]),
            r(LW, STAR, STAR),
            r(CREATE, CORE, &["serviceaccounts/token"]),
        ],
    },
    Entry {
        name: "system:kube-dns",
        labels: &[],
        aggregates: None,
        rules: &[r(LW, CORE, &["endpoints", "services"])],
    },
    Entry {
        name: "system:kube-scheduler",
        labels: &[],
        aggregates: None,
        rules: &[
            EVENTS,
            r(CREATE, &["coordination.k8s.io"], &["leases"]),
            named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-scheduler"]),
            r(READ, CORE, &["nodes"]),
            r(&["delete", "get", "list", "watch"], CORE, &["pods"]),
            r(CREATE, CORE, &["bindings", "pods/binding"]),
            r(PATCH_UPDATE, CORE, &["pods/status"]),
            r(READ, CORE, &["replicationcontrollers", "services"]),
            r(READ, APPS_EXT, &["replicasets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(READ, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            r(CREATE, &["authentication.k8s.io"], &["tokenreviews"]),
            r(CREATE, &["authorization.k8s.io"], &["subjectaccessreviews"]),
            r(READ, &["storage.k8s.io"], &["csinodes"]),
            r(READ, CORE, &["namespaces"]),
            r(READ, &["storage.k8s.io"], &["csidrivers"]),
            r(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
        ],
    },
    Entry {
        name: "system:kubelet-api-admin",
        labels: &[],
        aggregates: None,
        rules: &[
            r(READ, CORE, &["nodes"]),
            r(&["proxy"], CORE, &["nodes"]),
            r(STAR, CORE, &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
        ],
    },
    Entry {
        name: "system:monitoring",
        labels: &[],
        aggregates: None,
        rules: &[paths(
            &["get"],
            &[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ],
        )],
    },
    Entry {
        name: "system:node",
        labels: &[],
        aggregates: None,
        rules: &[
            r(CREATE, &["authentication.k8s.io"], &["tokenreviews"]),
            r(
                CREATE,
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews", "subjectaccessreviews"],
            ),
            r(READ, CORE, &["services"]),
            r(&["create", "get", "list", "watch"], CORE, &["nodes"]),
            r(PATCH_UPDATE, CORE, &["nodes/status"]),
            r(PATCH_UPDATE, CORE, &["nodes"]),
            r(&["create", "patch", "update"], CORE, &["events"]),
            r(READ, CORE, &["pods"]),
            r(&["create", "delete"], CORE, &["pods"]),
            r(PATCH_UPDATE, CORE, &["pods/status"]),
            r(CREATE, CORE, &["pods/eviction"]),
            r(READ, CORE, &["configmaps", "secrets"]),
            r(&["get"], CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            r(&["get"], CORE, &["endpoints"]),
            r(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            r(
                &["create", "delete", "get", "patch", "update"],
                &["coordination.k8s.io"],
                &["leases"],
            ),
            r(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
            r(CREATE, CORE, &["serviceaccounts/token"]),
            r(&["get", "patch", "update"], CORE, &["persistentvolumeclaims/status"]),
            r(READ, &["storage.k8s.io"], &["csidrivers"]),
            r(&["create", "delete", "get", "patch", "update"], &["storage.k8s.io"], &["csinodes"]),
            r(READ, &["node.k8s.io"], &["runtimeclasses"]),
        ],
    },
    Entry {
        name: "system:node-bootstrapper",
        labels: &[],
        aggregates: None,
        rules: &[r(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        )],
    },
    Entry {
        name: "system:node-problem-detector",
        labels: &[],
        aggregates: None,
        rules: &[r(&["get"], CORE, &["nodes"]), r(&["patch"], CORE, &["nodes/status"]), EVENTS],
    },
    // krust's own: the built-in ingress controller (the rules of ingress-nginx's role).
    Entry {
        name: "system:krust-ingress",
        labels: &[],
        aggregates: None,
        rules: &[
            r(LW, CORE, &["services", "secrets"]),
            r(LW, &["discovery.k8s.io"], &["endpointslices"]),
            r(LW, &["networking.k8s.io"], &["ingresses"]),
            r(&["get", "list", "watch", "create"], &["networking.k8s.io"], &["ingressclasses"]),
            r(&["update", "patch"], &["networking.k8s.io"], &["ingresses/status"]),
            EVENTS,
        ],
    },
    // krust's own (as k3s's `system:k3s-controller` for its network policy controller): the
    // node agents enforce NetworkPolicy, so they read policies, namespaces and pods.
    Entry {
        name: "system:krust-network-policy",
        labels: &[],
        aggregates: None,
        rules: &[
            r(LW, CORE, &["namespaces", "pods"]),
            r(LW, &["networking.k8s.io"], &["networkpolicies"]),
        ],
    },
    // krust's own: the node agents keep the directories of local-path volumes (created for
    // the volumes labelled with their node, removed once those are gone), so they watch
    // every PersistentVolume. The Node authorizer only lets a node get the volumes of its
    // pods' claims, one at a time, and never list or watch them; a volume's directory must
    // exist before a pod uses it and outlive its pods until the volume is deleted.
    Entry {
        name: "system:krust-local-path-node",
        labels: &[],
        aggregates: None,
        rules: &[r(READ, CORE, &["persistentvolumes"])],
    },
    Entry {
        name: "system:node-proxier",
        labels: &[],
        aggregates: None,
        rules: &[
            r(LW, CORE, &["endpoints", "services"]),
            r(READ, CORE, &["nodes"]),
            EVENTS,
            r(LW, &["discovery.k8s.io"], &["endpointslices"]),
        ],
    },
    Entry {
        name: "system:persistent-volume-provisioner",
        labels: &[],
        aggregates: None,
        rules: &[
            r(&["create", "delete", "get", "list", "watch"], CORE, &["persistentvolumes"]),
            r(&["get", "list", "update", "watch"], CORE, &["persistentvolumeclaims"]),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(&["watch"], CORE, &["events"]),
            EVENTS,
        ],
    },
    Entry {
        name: "system:public-info-viewer",
        labels: &[],
        aggregates: None,
        rules: &[paths(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
    },
    Entry {
        name: "system:service-account-issuer-discovery",
        labels: &[],
        aggregates: None,
        rules: &[paths(&["get"], &["/.well-known/openid-configuration", "/openid/v1/jwks"])],
    },
    Entry {
        name: "system:volume-scheduler",
        labels: &[],
        aggregates: None,
        rules: &[
            r(&["get", "list", "patch", "update", "watch"], CORE, &["persistentvolumes"]),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(&["get", "list", "patch", "update", "watch"], CORE, &["persistentvolumeclaims"]),
        ],
    },
];

/// The controllers' roles, without the `system:controller:` prefix of their names.
const CONTROLLERS: &[(&str, &[R])] = &[
    (
        "certificate-controller",
        &[
            r(
                &["delete", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            r(
                UPDATE,
                &["certificates.k8s.io"],
                &["certificatesigningrequests/approval", "certificatesigningrequests/status"],
            ),
            // Beyond upstream: krust's approver also approves nodes' own serving certificates.
            named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving"],
            ),
            named(
                &["sign"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
            ),
            r(CREATE, &["authorization.k8s.io"], &["subjectaccessreviews"]),
            EVENTS,
        ],
    ),
    (
        "clusterrole-aggregation-controller",
        &[r(
            &["escalate", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
    ),
    (
        "cronjob-controller",
        &[
            r(&["get", "list", "update", "watch"], &["batch"], &["cronjobs"]),
            r(
                &["create", "delete", "get", "list", "patch", "update", "watch"],
                &["batch"],
                &["jobs"],
            ),
            r(UPDATE, &["batch"], &["cronjobs/status"]),
            r(UPDATE, &["batch"], &["cronjobs/finalizers"]),
            r(&["delete", "list", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "daemon-set-controller",
        &[
            r(READ, APPS_EXT, &["daemonsets"]),
            r(UPDATE, APPS_EXT, &["daemonsets/status"]),
            r(UPDATE, APPS_EXT, &["daemonsets/finalizers"]),
            r(LW, CORE, &["nodes"]),
            r(&["create", "delete", "list", "patch", "watch"], CORE, &["pods"]),
            r(CREATE, CORE, &["pods/binding"]),
            r(
                &["create", "delete", "get", "list", "patch", "update", "watch"],
                &["apps"],
                &["controllerrevisions"],
            ),
            EVENTS,
        ],
    ),
    (
        "deployment-controller",
        &[
            r(&["get", "list", "update", "watch"], APPS_EXT, &["deployments"]),
            r(UPDATE, APPS_EXT, &["deployments/status"]),
            r(UPDATE, APPS_EXT, &["deployments/finalizers"]),
            r(
                &["create", "delete", "get", "list", "patch", "update", "watch"],
                APPS_EXT,
                &["replicasets"],
            ),
            r(&["get", "list", "update", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "disruption-controller",
        &[
            r(READ, APPS_EXT, &["deployments"]),
            r(READ, APPS_EXT, &["replicasets"]),
            r(READ, CORE, &["replicationcontrollers"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(UPDATE, &["policy"], &["poddisruptionbudgets/status"]),
            r(PATCH_UPDATE, CORE, &["pods/status"]),
            r(&["get"], STAR, &["*/scale"]),
            EVENTS,
        ],
    ),
    (
        "endpoint-controller",
        &[
            r(READ, CORE, &["pods", "services"]),
            r(&["create", "delete", "get", "list", "update", "watch"], CORE, &["endpoints"]),
            r(CREATE, CORE, &["endpoints/restricted"]),
            EVENTS,
        ],
    ),
    (
        "endpointslice-controller",
        &[
            r(READ, CORE, &["nodes", "pods", "services"]),
            r(UPDATE, CORE, &["services/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
    (
        "endpointslicemirroring-controller",
        &[
            r(READ, CORE, &["endpoints", "services"]),
            r(UPDATE, CORE, &["services/finalizers"]),
            r(UPDATE, CORE, &["endpoints/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
    (
        "ephemeral-volume-controller",
        &[
            r(READ, CORE, &["pods"]),
            r(UPDATE, CORE, &["pods/finalizers"]),
            r(&["create", "get", "list", "watch"], CORE, &["persistentvolumeclaims"]),
            EVENTS,
        ],
    ),
    (
        "generic-garbage-collector",
        &[r(&["delete", "get", "list", "patch", "update", "watch"], STAR, STAR), EVENTS],
    ),
    (
        "horizontal-pod-autoscaler",
        &[
            r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(UPDATE, &["autoscaling"], &["horizontalpodautoscalers/status"]),
            r(&["get", "update"], STAR, &["*/scale"]),
            r(LW, CORE, &["pods"]),
            r(LW, &["metrics.k8s.io"], &["pods"]),
            r(READ, &["custom.metrics.k8s.io"], STAR),
            r(READ, &["external.metrics.k8s.io"], STAR),
            EVENTS,
        ],
    ),
    (
        "job-controller",
        &[
            r(&["get", "list", "patch", "update", "watch"], &["batch"], &["jobs"]),
            r(UPDATE, &["batch"], &["jobs/status"]),
            r(UPDATE, &["batch"], &["jobs/finalizers"]),
            r(&["create", "delete", "list", "patch", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    // krust's own: the local-path provisioner (as k3s's `local-path-provisioner-role`, less
    // what its helper pods need): it makes and deletes volumes, reads claims, classes and
    // nodes, and creates the default class.
    (
        "local-path-provisioner",
        &[
            r(&["create", "delete", "get", "list", "watch"], CORE, &["persistentvolumes"]),
            r(READ, CORE, &["persistentvolumeclaims", "nodes"]),
            r(&["create", "get", "list", "watch"], &["storage.k8s.io"], &["storageclasses"]),
            EVENTS,
        ],
    ),
    (
        "namespace-controller",
        &[
            r(&["delete", "get", "list", "watch"], CORE, &["namespaces"]),
            r(UPDATE, CORE, &["namespaces/finalize", "namespaces/status"]),
            r(&["delete", "deletecollection", "get", "list", "watch"], STAR, STAR),
        ],
    ),
    (
        "node-controller",
        &[
            r(&["delete", "get", "list", "patch", "update", "watch"], CORE, &["nodes"]),
            r(PATCH_UPDATE, CORE, &["nodes/status"]),
            r(PATCH_UPDATE, CORE, &["pods/status"]),
            r(&["delete", "get", "list", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "persistent-volume-binder",
        &[
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            r(UPDATE, CORE, &["persistentvolumes/status"]),
            r(&["get", "list", "update", "watch"], CORE, &["persistentvolumeclaims"]),
            r(UPDATE, CORE, &["persistentvolumeclaims/status"]),
            r(&["create", "delete", "get", "list", "watch"], CORE, &["pods"]),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(LW, CORE, &["nodes"]),
            EVENTS,
            r(&["watch"], CORE, &["events"]),
        ],
    ),
    (
        "pod-garbage-collector",
        &[
            r(&["delete", "list", "watch"], CORE, &["pods"]),
            r(READ, CORE, &["nodes"]),
            r(&["patch"], CORE, &["pods/status"]),
        ],
    ),
    (
        "pv-protection-controller",
        &[r(&["get", "list", "update", "watch"], CORE, &["persistentvolumes"]), EVENTS],
    ),
    (
        "pvc-protection-controller",
        &[
            r(&["get", "list", "update", "watch"], CORE, &["persistentvolumeclaims"]),
            r(UPDATE, CORE, &["persistentvolumeclaims/status"]),
            r(READ, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "replicaset-controller",
        &[
            r(&["get", "list", "update", "watch"], APPS_EXT, &["replicasets"]),
            r(UPDATE, APPS_EXT, &["replicasets/status"]),
            r(UPDATE, APPS_EXT, &["replicasets/finalizers"]),
            r(&["create", "delete", "list", "patch", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "replication-controller",
        &[
            r(&["get", "list", "update", "watch"], CORE, &["replicationcontrollers"]),
            r(UPDATE, CORE, &["replicationcontrollers/status"]),
            r(UPDATE, CORE, &["replicationcontrollers/finalizers"]),
            r(&["create", "delete", "list", "patch", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    (
        "resourcequota-controller",
        &[r(LW, STAR, STAR), r(UPDATE, CORE, &["resourcequotas/status"]), EVENTS],
    ),
    ("root-ca-cert-publisher", &[r(&["create", "update"], CORE, &["configmaps"]), EVENTS]),
    (
        "route-controller",
        &[r(LW, CORE, &["nodes"]), r(&["patch"], CORE, &["nodes/status"]), EVENTS],
    ),
    ("service-account-controller", &[r(CREATE, CORE, &["serviceaccounts"]), EVENTS]),
    (
        "service-cidrs-controller",
        &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &["networking.k8s.io"],
                &["servicecidrs"],
            ),
            r(PATCH_UPDATE, &["networking.k8s.io"], &["servicecidrs/finalizers"]),
            r(PATCH_UPDATE, &["networking.k8s.io"], &["servicecidrs/status"]),
            r(READ, &["networking.k8s.io"], &["ipaddresses"]),
            EVENTS,
        ],
    ),
    (
        "service-controller",
        &[
            r(READ, CORE, &["services"]),
            r(PATCH_UPDATE, CORE, &["services/status"]),
            r(LW, CORE, &["nodes"]),
            EVENTS,
        ],
    ),
    (
        "statefulset-controller",
        &[
            r(LW, CORE, &["pods"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(UPDATE, &["apps"], &["statefulsets/status"]),
            r(UPDATE, &["apps"], &["statefulsets/finalizers"]),
            r(&["create", "delete", "get", "patch", "update"], CORE, &["pods"]),
            r(
                &["create", "delete", "get", "list", "patch", "update", "watch"],
                &["apps"],
                &["controllerrevisions"],
            ),
            r(&["create", "get", "list", "watch"], CORE, &["persistentvolumeclaims"]),
            r(&["delete", "update"], CORE, &["persistentvolumeclaims"]),
            r(UPDATE, CORE, &["pods/finalizers"]),
            EVENTS,
        ],
    ),
    (
        "ttl-after-finished-controller",
        &[r(&["delete", "get", "list", "watch"], &["batch"], &["jobs"]), EVENTS],
    ),
    ("ttl-controller", &[r(&["list", "patch", "update", "watch"], CORE, &["nodes"]), EVENTS]),
];

/// The default ClusterRoleBindings: name (and role), then subjects as (kind, name).
const BINDINGS: &[(&str, &[(&str, &str)])] = &[
    ("cluster-admin", &[("Group", "system:masters")]),
    ("system:basic-user", &[("Group", "system:authenticated")]),
    // Upstream binds discovery to authenticated users only; krust lets anonymous clients read
    // the discovery documents too (issue 12), through this binding.
    ("system:discovery", &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")]),
    (
        "system:public-info-viewer",
        &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
    ),
    ("system:kube-controller-manager", &[("User", "system:kube-controller-manager")]),
    ("system:kube-dns", &[("ServiceAccount", "kube-dns")]),
    ("system:kube-scheduler", &[("User", "system:kube-scheduler")]),
    ("system:volume-scheduler", &[("User", "system:kube-scheduler")]),
    ("system:monitoring", &[("Group", "system:monitoring")]),
    ("system:node", &[]),
    // krust's node agents also serve the cluster DNS (and proxy services) as their node,
    // so nodes read what kube-proxy reads.
    ("system:node-proxier", &[("User", "system:kube-proxy"), ("Group", "system:nodes")]),
    ("system:krust-network-policy", &[("Group", "system:nodes")]),
    // The node agents' reading of PersistentVolumes, for the directories of local-path
    // volumes (see the role).
    ("system:krust-local-path-node", &[("Group", "system:nodes")]),
    ("system:krust-ingress", &[("User", "system:krust-ingress")]),
    ("system:service-account-issuer-discovery", &[("Group", "system:serviceaccounts")]),
];

/// The name prefix of the controllers' roles and bindings.
pub const CONTROLLER_PREFIX: &str = "system:controller:";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn optional(items: &[&str]) -> Option<Vec<String>> {
    if items.is_empty() { None } else { Some(strings(items)) }
}

fn rule(r: &R) -> PolicyRule {
    PolicyRule {
        verbs: strings(r.verbs),
        api_groups: optional(r.groups),
        resources: optional(r.resources),
        resource_names: optional(r.names),
        non_resource_urls: optional(r.urls),
    }
}

fn meta(name: &str, extra_labels: &[&str], annotated: bool) -> ObjectMeta {
    let mut labels = BTreeMap::from([(BOOTSTRAPPING.0.to_string(), BOOTSTRAPPING.1.to_string())]);
    labels.extend(extra_labels.iter().map(|l| (l.to_string(), "true".to_string())));
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(labels),
        annotations: annotated
            .then(|| BTreeMap::from([(AUTOUPDATE.to_string(), "true".to_string())])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, labels: &[&str], aggregates: Option<&str>, rules: &[R]) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels, true),
        rules: if aggregates.is_some() { None } else { Some(rules.iter().map(rule).collect()) },
        aggregation_rule: aggregates.map(|label| AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(label.to_string(), "true".to_string())])),
                match_expressions: None,
            }]),
        }),
    }
}

fn binding(name: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[], true),
        role_ref: RoleRef {
            api_group: super::GROUP.into(),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(subjects),
    }
}

/// The default ClusterRoles, in name order within each table.
pub fn cluster_roles() -> Vec<ClusterRole> {
    let mut roles: Vec<ClusterRole> =
        ROLES.iter().map(|e| cluster_role(e.name, e.labels, e.aggregates, e.rules)).collect();
    roles.extend(CONTROLLERS.iter().map(|(name, rules)| {
        cluster_role(&format!("{CONTROLLER_PREFIX}{name}"), &[], None, rules)
    }));
    roles
}

/// The default ClusterRoleBindings: the system ones, then one per controller to its service
/// account in `kube-system`.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let subject = |kind: &str, name: &str| Subject {
        api_group: (kind != "ServiceAccount").then(|| super::GROUP.to_string()),
        kind: kind.into(),
        name: name.into(),
        namespace: (kind == "ServiceAccount").then(|| "kube-system".to_string()),
    };
    let mut bindings: Vec<ClusterRoleBinding> = BINDINGS
        .iter()
        .map(|(name, subjects)| {
            binding(name, subjects.iter().map(|(k, n)| subject(k, n)).collect())
        })
        .collect();
    bindings.extend(CONTROLLERS.iter().map(|(name, _)| {
        binding(&format!("{CONTROLLER_PREFIX}{name}"), vec![subject("ServiceAccount", name)])
    }));
    bindings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_binding_refers_to_a_default_role() {
        let roles = cluster_roles();
        let names: Vec<_> = roles.iter().filter_map(|r| r.metadata.name.clone()).collect();
        for b in cluster_role_bindings() {
            assert!(names.contains(&b.role_ref.name), "{}", b.role_ref.name);
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "role names are unique");
    }

    #[test]
    fn every_default_object_is_labelled_and_annotated_for_reconciliation() {
        for role in cluster_roles() {
            let m = &role.metadata;
            assert_eq!(
                m.labels.as_ref().and_then(|l| l.get(BOOTSTRAPPING.0)).map(String::as_str),
                Some("rbac-defaults")
            );
            assert_eq!(
                m.annotations.as_ref().and_then(|a| a.get(AUTOUPDATE)).map(String::as_str),
                Some("true")
            );
        }
    }

    #[test]
    fn admin_edit_and_view_aggregate_and_nest() {
        let roles = cluster_roles();
        let find = |n: &str| roles.iter().find(|r| r.metadata.name.as_deref() == Some(n));
        let edit = find("edit")
            .map(|r| (r.aggregation_rule.is_some(), r.metadata.labels.clone().unwrap_or_default()));
        assert_eq!(edit.as_ref().map(|e| e.0), Some(true));
        assert_eq!(edit.and_then(|e| e.1.get(TO_ADMIN).cloned()).as_deref(), Some("true"));
    }
}

/// Whether a default object may be reconciled: unless its autoupdate annotation is `"false"`.
fn reconcilable(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(AUTOUPDATE)).map(String::as_str) != Some("false")
}

/// `existing` with the keys of `expected` it lacks (its own values win).
fn merged(
    expected: &Option<BTreeMap<String, String>>,
    existing: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let mut out = expected.clone().unwrap_or_default();
    out.extend(existing.clone().unwrap_or_default());
    if out.is_empty() && existing.is_none() { None } else { Some(out) }
}

/// What the server writes over an existing default ClusterRole at start, as upstream's
/// reconciliation without removing anything: the labels and annotations it lacks, the rules
/// it does not cover, and the aggregation selectors it lacks. `None` when nothing is missing
/// or the role opted out (`autoupdate: "false"`).
pub fn reconcile_cluster_role(
    existing: &ClusterRole,
    expected: &ClusterRole,
) -> Option<ClusterRole> {
    if !reconcilable(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    out.metadata.labels = merged(&expected.metadata.labels, &existing.metadata.labels);
    out.metadata.annotations =
        merged(&expected.metadata.annotations, &existing.metadata.annotations);
    let existing_rules = existing.rules.clone().unwrap_or_default();
    let (_, missing) =
        super::escalation::covers(&existing_rules, expected.rules.as_deref().unwrap_or_default());
    if !missing.is_empty() {
        let mut rules = existing_rules;
        rules.extend(missing);
        out.rules = Some(rules);
    }
    match (&expected.aggregation_rule, &existing.aggregation_rule) {
        (None, Some(_)) => out.aggregation_rule = None,
        (Some(wanted), have) => {
            let have_selectors =
                have.as_ref().and_then(|a| a.cluster_role_selectors.clone()).unwrap_or_default();
            let lacking: Vec<LabelSelector> = wanted
                .cluster_role_selectors
                .iter()
                .flatten()
                .filter(|s| !have_selectors.contains(s))
                .cloned()
                .collect();
            if !lacking.is_empty() {
                let mut selectors = have_selectors;
                selectors.extend(lacking);
                out.aggregation_rule =
                    Some(AggregationRule { cluster_role_selectors: Some(selectors) });
            }
        }
        (None, None) => {}
    }
    (out != *existing).then_some(out)
}

/// What the server does with an existing default ClusterRoleBinding at start.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingReconcile {
    /// Nothing is missing, or the binding opted out.
    Keep,
    /// Update it to this (labels, annotations and subjects it lacked).
    Update(ClusterRoleBinding),
    /// Its roleRef differs and cannot change: delete it and create this.
    Recreate(ClusterRoleBinding),
}

/// Whether two subjects name the same one: an unset `apiGroup` is the empty one, which the
/// stored object carries once defaulted.
fn same_subject(a: &Subject, b: &Subject) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && a.namespace.as_deref().unwrap_or_default() == b.namespace.as_deref().unwrap_or_default()
        && a.api_group.as_deref().unwrap_or_default() == b.api_group.as_deref().unwrap_or_default()
}

/// Reconciles an existing default ClusterRoleBinding, as upstream's reconciliation without
/// removing subjects.
pub fn reconcile_binding(
    existing: &ClusterRoleBinding,
    expected: &ClusterRoleBinding,
) -> BindingReconcile {
    if !reconcilable(&existing.metadata) {
        return BindingReconcile::Keep;
    }
    let mut out = existing.clone();
    out.metadata.labels = merged(&expected.metadata.labels, &existing.metadata.labels);
    out.metadata.annotations =
        merged(&expected.metadata.annotations, &existing.metadata.annotations);
    let mut subjects = existing.subjects.clone().unwrap_or_default();
    for s in expected.subjects.iter().flatten() {
        if !subjects.iter().any(|have| same_subject(have, s)) {
            subjects.push(s.clone());
        }
    }
    out.subjects = Some(subjects).filter(|s| !s.is_empty() || existing.subjects.is_some());
    if existing.role_ref != expected.role_ref {
        out.role_ref = expected.role_ref.clone();
        out.metadata.resource_version = None;
        out.metadata.uid = None;
        return BindingReconcile::Recreate(out);
    }
    if out == *existing { BindingReconcile::Keep } else { BindingReconcile::Update(out) }
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;

    #[test]
    fn a_stored_binding_whose_subjects_were_defaulted_is_kept() {
        let expected = cluster_role_bindings()
            .into_iter()
            .find(|b| b.metadata.name.as_deref() == Some("system:kube-dns"))
            .expect("system:kube-dns is a default binding");
        let mut stored = expected.clone();
        for subject in stored.subjects.iter_mut().flatten() {
            subject.api_group = Some(subject.api_group.clone().unwrap_or_default());
        }
        stored.metadata.resource_version = Some("5".into());
        assert!(matches!(reconcile_binding(&stored, &expected), BindingReconcile::Keep));
    }

    fn find(name: &str) -> ClusterRole {
        cluster_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_default()
    }

    #[test]
    fn reconciliation_adds_what_is_missing_and_keeps_the_rest() {
        let expected = find("system:basic-user");
        let mut trimmed = expected.clone();
        trimmed.rules = Some(vec![expected.rules.clone().unwrap_or_default()[0].clone()]);
        trimmed.metadata.labels = Some(BTreeMap::from([("mine".to_string(), "yes".to_string())]));
        let fixed = reconcile_cluster_role(&trimmed, &expected);
        let fixed = fixed.unwrap_or_default();
        assert_eq!(fixed.rules, expected.rules, "missing rules are added");
        let labels = fixed.metadata.labels.unwrap_or_default();
        assert_eq!(
            (
                labels.get("mine").map(String::as_str),
                labels.get(BOOTSTRAPPING.0).map(String::as_str)
            ),
            (Some("yes"), Some("rbac-defaults"))
        );
        assert_eq!(reconcile_cluster_role(&expected, &expected), None, "a complete role is kept");
        let mut opted_out = trimmed.clone();
        opted_out.metadata.annotations =
            Some(BTreeMap::from([(AUTOUPDATE.to_string(), "false".to_string())]));
        assert_eq!(
            reconcile_cluster_role(&opted_out, &expected),
            None,
            "autoupdate=false is left alone"
        );
        let mut aggregated = find("edit");
        aggregated.rules = Some(find("system:aggregate-to-edit").rules.unwrap_or_default());
        assert_eq!(
            reconcile_cluster_role(&aggregated, &find("edit")),
            None,
            "aggregated rules are not extra"
        );
    }

    #[test]
    fn binding_reconciliation_adds_subjects_and_recreates_a_changed_role_ref() {
        let expected = cluster_role_bindings()
            .into_iter()
            .find(|b| b.metadata.name.as_deref() == Some("system:public-info-viewer"))
            .unwrap_or_default();
        let mut fewer = expected.clone();
        fewer.subjects = Some(vec![expected.subjects.clone().unwrap_or_default()[0].clone()]);
        assert_eq!(
            reconcile_binding(&fewer, &expected),
            BindingReconcile::Update(expected.clone())
        );
        assert_eq!(reconcile_binding(&expected, &expected), BindingReconcile::Keep);
        let mut other = expected.clone();
        other.role_ref.name = "view".into();
        assert!(matches!(reconcile_binding(&other, &expected), BindingReconcile::Recreate(_)));
    }
}
