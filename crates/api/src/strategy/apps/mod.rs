//! Rules of the `apps` resources: `pkg/apis/apps/v1/defaults.go`,
//! `pkg/registry/apps/*/strategy.go` and their printers.

use serde_json::{Value, json};

use super::Strategy;
use super::core::podspec::{default_template, validate_template};
use super::util::{
    AGE, CONTAINERS, IMAGES, age, array_at, col, container_cells, default_field,
    format_label_selector, format_labels, immutable, int_at, int_cell, int_col, keep_status,
    non_negative, reset_status, str_at, supported,
};
use super::workload::{require_template, validate_replicas, validate_selector};
use crate::object::{default_path, path};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `Deployment`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeploymentStrategy;

/// Rules of `ReplicaSet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaSetStrategy;

/// Rules of `StatefulSet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatefulSetStrategy;

/// Rules of `DaemonSet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonSetStrategy;

/// Rules of `ControllerRevision`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControllerRevisionStrategy;

const SELECTOR_DOC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";

fn has_spec(obj: &Value) -> bool {
    obj.get("spec").is_some_and(Value::is_object)
}

/// Validation every apps controller shares: replicas, selector, template.
fn validate_controller(obj: &Value, kind: &str, errors: &mut Vec<FieldError>) {
    validate_replicas(obj, errors);
    validate_selector(obj, "spec.template", kind, errors);
    if require_template(obj, "spec.template", errors) {
        validate_template(obj, "spec.template", &["Always"], errors);
    }
    non_negative(obj, "spec.minReadySeconds", errors);
    non_negative(obj, "spec.revisionHistoryLimit", errors);
}

fn selector_immutable(new: &Value, old: &Value, errors: &mut Vec<FieldError>) {
    immutable(new, old, "spec.selector", errors);
}

fn workload_cells(obj: &Value) -> (Value, Value) {
    container_cells(array_at(obj, "spec.template.spec.containers"))
}

// Deployments.

const DEPLOYMENT_COLUMNS: &[Column] = &[
    col("Ready", "Number of the pod with ready state"),
    int_col(
        "Up-to-date",
        "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
    ),
    int_col(
        "Available",
        "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", SELECTOR_DOC).wide(),
];

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        if !has_spec(obj) {
            return;
        }
        default_path(obj, "spec.replicas", json!(1));
        default_path(obj, "spec.strategy.type", json!("RollingUpdate"));
        if str_at(obj, "spec.strategy.type") == Some("RollingUpdate") {
            default_path(obj, "spec.strategy.rollingUpdate.maxUnavailable", json!("25%"));
            default_path(obj, "spec.strategy.rollingUpdate.maxSurge", json!("25%"));
        }
        default_path(obj, "spec.revisionHistoryLimit", json!(10));
        default_path(obj, "spec.progressDeadlineSeconds", json!(600));
        default_template(obj, "spec.template");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_controller(obj, "deployment", &mut errors);
        supported(obj, "spec.strategy.type", &["Recreate", "RollingUpdate"], &mut errors);
        let recreate = str_at(obj, "spec.strategy.type") == Some("Recreate");
        if recreate && path(obj, "spec.strategy.rollingUpdate").is_some_and(|r| !r.is_null()) {
            errors.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        let zero = |v: Option<&Value>| {
            v.is_some_and(|v| *v == json!(0) || *v == json!("0%") || *v == json!("0"))
        };
        let unavailable = path(obj, "spec.strategy.rollingUpdate.maxUnavailable");
        if zero(unavailable) && zero(path(obj, "spec.strategy.rollingUpdate.maxSurge")) {
            errors.push(FieldError::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                unavailable.cloned().unwrap_or(Value::Null),
                "may not be 0 when `maxSurge` is 0",
            ));
        }
        if let Some(deadline) = int_at(obj, "spec.progressDeadlineSeconds") {
            non_negative(obj, "spec.progressDeadlineSeconds", &mut errors);
            if deadline <= int_at(obj, "spec.minReadySeconds").unwrap_or(0) {
                errors.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    json!(deadline),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        selector_immutable(new, old, &mut errors);
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn status_keeps_annotations(&self) -> bool {
        true
    }

    fn generation_follows_annotations(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        DEPLOYMENT_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let ready = int_at(obj, "status.readyReplicas").unwrap_or(0);
        let desired = int_at(obj, "spec.replicas").unwrap_or(0);
        let (names, images) = workload_cells(obj);
        // printDeployment uses the selector's String(), which is empty for no requirements.
        let selector = match format_label_selector(path(obj, "spec.selector")).as_str() {
            "<none>" => String::new(),
            other => other.to_string(),
        };
        vec![
            json!(format!("{ready}/{desired}")),
            int_cell(obj, "status.updatedReplicas"),
            int_cell(obj, "status.availableReplicas"),
            age(obj, ctx),
            names,
            images,
            json!(selector),
        ]
    }
}

// Replica sets.

const REPLICA_SET_COLUMNS: &[Column] = &[
    int_col("Desired", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    int_col("Current", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    int_col("Ready", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        if has_spec(obj) {
            default_path(obj, "spec.replicas", json!(1));
        }
        default_template(obj, "spec.template");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_controller(obj, "deployment", &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        selector_immutable(new, old, &mut errors);
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn status_keeps_annotations(&self) -> bool {
        true
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("status.replicas", int_at(obj, "status.replicas").unwrap_or(0).to_string())]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["status.replicas"])
    }

    fn columns(&self) -> &[Column] {
        REPLICA_SET_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let (names, images) = workload_cells(obj);
        vec![
            int_cell(obj, "spec.replicas"),
            int_cell(obj, "status.replicas"),
            int_cell(obj, "status.readyReplicas"),
            age(obj, ctx),
            names,
            images,
            json!(format_label_selector(path(obj, "spec.selector"))),
        ]
    }
}

// Stateful sets.

const STATEFUL_SET_COLUMNS: &[Column] =
    &[col("Ready", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

/// The spec fields a stateful set update may change.
const STATEFUL_SET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "revisionHistoryLimit",
];

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        if !has_spec(obj) {
            return;
        }
        default_path(obj, "spec.podManagementPolicy", json!("OrderedReady"));
        if path(obj, "spec.updateStrategy.type").is_none_or(Value::is_null) {
            crate::object::set_path(obj, "spec.updateStrategy.type", json!("RollingUpdate"));
            default_path(obj, "spec.updateStrategy.rollingUpdate", json!({}));
        }
        let rolling = str_at(obj, "spec.updateStrategy.type") == Some("RollingUpdate");
        if rolling && path(obj, "spec.updateStrategy.rollingUpdate").is_some_and(Value::is_object) {
            default_path(obj, "spec.updateStrategy.rollingUpdate.partition", json!(0));
        }
        default_path(obj, "spec.persistentVolumeClaimRetentionPolicy.whenDeleted", json!("Retain"));
        default_path(obj, "spec.persistentVolumeClaimRetentionPolicy.whenScaled", json!("Retain"));
        default_path(obj, "spec.replicas", json!(1));
        default_path(obj, "spec.revisionHistoryLimit", json!(10));
        default_template(obj, "spec.template");
        super::util::each_mut(obj, "spec.volumeClaimTemplates", |pvc| {
            if let Some(spec) = pvc.get_mut("spec").filter(|s| s.is_object()) {
                default_field(spec, "volumeMode", json!("Filesystem"));
            }
            if pvc.pointer("/status/phase").is_none() && pvc.is_object() {
                crate::object::set_path(pvc, "status.phase", json!("Pending"));
            }
        });
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_controller(obj, "statefulset", &mut errors);
        supported(obj, "spec.podManagementPolicy", &["OrderedReady", "Parallel"], &mut errors);
        supported(obj, "spec.updateStrategy.type", &["OnDelete", "RollingUpdate"], &mut errors);
        non_negative(obj, "spec.updateStrategy.rollingUpdate.partition", &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        let strip = |obj: &Value| {
            let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(map) = spec.as_object_mut() {
                for field in STATEFUL_SET_MUTABLE {
                    map.remove(*field);
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            errors.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn status_keeps_annotations(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        STATEFUL_SET_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let ready = int_at(obj, "status.readyReplicas").unwrap_or(0);
        let desired = int_at(obj, "spec.replicas").unwrap_or(0);
        let (names, images) = workload_cells(obj);
        vec![json!(format!("{ready}/{desired}")), age(obj, ctx), names, images]
    }
}

// Daemon sets.

const DAEMON_SET_COLUMNS: &[Column] = &[
    int_col("Desired", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    int_col("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    int_col("Ready", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    int_col("Up-to-date", "The total number of nodes that are running updated daemon pod"),
    int_col("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        if !has_spec(obj) {
            return;
        }
        default_path(obj, "spec.updateStrategy.type", json!("RollingUpdate"));
        if str_at(obj, "spec.updateStrategy.type") == Some("RollingUpdate") {
            default_path(obj, "spec.updateStrategy.rollingUpdate.maxUnavailable", json!(1));
            default_path(obj, "spec.updateStrategy.rollingUpdate.maxSurge", json!(0));
        }
        default_path(obj, "spec.revisionHistoryLimit", json!(10));
        default_template(obj, "spec.template");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}),
        );
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_controller(obj, "daemonset", &mut errors);
        supported(obj, "spec.updateStrategy.type", &["OnDelete", "RollingUpdate"], &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        selector_immutable(new, old, &mut errors);
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn status_keeps_annotations(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        DAEMON_SET_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let (names, images) = workload_cells(obj);
        vec![
            int_cell(obj, "status.desiredNumberScheduled"),
            int_cell(obj, "status.currentNumberScheduled"),
            int_cell(obj, "status.numberReady"),
            int_cell(obj, "status.updatedNumberScheduled"),
            int_cell(obj, "status.numberAvailable"),
            json!(format_labels(obj.pointer("/spec/template/spec/nodeSelector"))),
            age(obj, ctx),
            names,
            images,
            json!(format_label_selector(path(obj, "spec.selector"))),
        ]
    }
}

// Controller revisions.

impl Strategy for ControllerRevisionStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        non_negative(obj, "revision", &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable(new, old, "data", &mut errors);
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Controller", "Controller of the object"),
            int_col(
                "Revision",
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(controller_name(obj)), int_cell(obj, "revision"), age(obj, ctx)]
    }
}

/// The controlling owner as `kind.group/name`, `<none>` without one.
pub(crate) fn controller_name(obj: &Value) -> String {
    let owner = array_at(obj, "metadata.ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true));
    let Some(owner) = owner else {
        return "<none>".into();
    };
    let kind = owner.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = owner.get("name").and_then(Value::as_str).unwrap_or_default();
    let group = owner
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g)
        .unwrap_or_default();
    if kind.is_empty() {
        return name.to_string();
    }
    let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    format!("{}/{name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        })
    }

    #[test]
    fn deployment_defaults_are_upstream_and_idempotent() {
        let mut d = deployment();
        DeploymentStrategy.default(&mut d);
        let once = d.clone();
        DeploymentStrategy.default(&mut d);
        assert_eq!(d, once);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(pod.get("enableServiceLinks").is_none());
        assert!(DeploymentStrategy.validate(&d).is_empty());
    }

    #[test]
    fn deployment_validation_messages() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["replicas"] = json!(-1);
        let errors: Vec<String> =
            DeploymentStrategy.validate(&d).iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
            ]
        );
        let mut no_selector = deployment();
        no_selector["spec"].as_object_mut().map(|s| s.remove("selector"));
        assert_eq!(
            DeploymentStrategy.validate(&no_selector)[0].to_string(),
            "spec.selector: Required value"
        );
        let mut changed = deployment();
        changed["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        changed["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        let errors = DeploymentStrategy.validate_update(&changed, &deployment());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().ends_with("field is immutable"));
    }

    #[test]
    fn workload_rows() {
        let ctx = TableContext { now: chrono::Utc::now() };
        let mut d = deployment();
        DeploymentStrategy.default(&mut d);
        d["status"] = json!({"readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        let cells = DeploymentStrategy.cells(&d, &ctx);
        assert_eq!(cells[..3], [json!("1/1"), json!(1), json!(1)]);
        assert_eq!(cells[4..], [json!("web"), json!("nginx:1.27"), json!("app=web")]);
        assert_eq!(DEPLOYMENT_COLUMNS.len(), cells.len());
        let rs_cells = ReplicaSetStrategy.cells(&d, &ctx);
        assert_eq!(rs_cells.len(), REPLICA_SET_COLUMNS.len());
        assert_eq!(StatefulSetStrategy.cells(&d, &ctx).len(), STATEFUL_SET_COLUMNS.len());
        assert_eq!(DaemonSetStrategy.cells(&d, &ctx).len(), DAEMON_SET_COLUMNS.len());
        let cr = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2});
        assert_eq!(controller_name(&cr), "statefulset.apps/db");
    }

    #[test]
    fn statefulset_defaults() {
        let mut s = deployment();
        StatefulSetStrategy.default(&mut s);
        let once = s.clone();
        StatefulSetStrategy.default(&mut s);
        assert_eq!(s, once);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
    }
}
