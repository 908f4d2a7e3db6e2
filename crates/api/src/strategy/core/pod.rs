//! Pods: `pkg/registry/core/pod/strategy.go` and `printPod`.

use serde_json::{Value, json};

use super::podspec::{default_pod_spec, qos_class, validate_pod_spec};
use crate::strategy::Strategy;
use crate::strategy::util::{
    AGE, age, array_at, bool_at, col, int_at, keep_status, path_mut, reset_status, since, str_at,
    string_at,
};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `Pod`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodStrategy;

const COLUMNS: &[Column] = &[
    col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    col("IP", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
    col("Node", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename").wide(),
    col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.").wide(),
    col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates").wide(),
];

/// The message of a forbidden pod spec update.
pub(crate) const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec, true);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        let mut status = json!({"phase": "Pending", "qosClass": qos});
        let gated = !array_at(obj, "spec.schedulingGates").is_empty();
        if gated {
            status["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null,
                "lastTransitionTime": null,
            }]);
        }
        reset_status(obj, status);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        // CheckGracefulDelete: the requested period, else the pod's own; at once when the pod
        // was never scheduled or has already finished; a negative period becomes 1.
        let own = int_at(obj, "spec.terminationGracePeriodSeconds").unwrap_or(0);
        let mut period = requested.unwrap_or(own);
        let phase = str_at(obj, "status.phase");
        if str_at(obj, "spec.nodeName").is_none_or(str::is_empty)
            || matches!(phase, Some("Failed" | "Succeeded"))
        {
            period = 0;
        }
        if period < 0 {
            period = 1;
        }
        (period > 0).then_some(period)
    }

    fn deletion_held(&self, obj: &Value) -> bool {
        // A pod marked with a grace period stays until its kubelet deletes it with 0.
        int_at(obj, "metadata.deletionGracePeriodSeconds").is_some_and(|g| g > 0)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(hash) = mirror_annotation(obj)
            && str_at(obj, "spec.nodeName").is_none_or(str::is_empty)
        {
            errors.push(FieldError::invalid(
                MIRROR_FIELD,
                Value::String(hash.into()),
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        // A mirror pod stays one, of the same static pod, and nothing else becomes one.
        match (mirror_annotation(old), mirror_annotation(new)) {
            (Some(was), now) if now != Some(was) => errors.push(FieldError::forbidden(
                MIRROR_FIELD,
                "may not remove or update mirror pod annotation",
            )),
            (None, Some(_)) => errors
                .push(FieldError::forbidden(MIRROR_FIELD, "may not add mirror pod annotation")),
            _ => {}
        }
        if !errors.is_empty() {
            return errors;
        }
        if !pod_spec_update_allowed(new, old) {
            errors.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
        }
        errors
    }

    fn indexed_field(&self) -> Option<&'static str> {
        Some("spec.nodeName")
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let pod_ip = array_at(obj, "status.podIPs")
            .first()
            .and_then(|ip| ip.get("ip"))
            .and_then(Value::as_str)
            .or_else(|| str_at(obj, "status.podIP"))
            .unwrap_or_default()
            .to_string();
        vec![
            ("spec.nodeName", string_at(obj, "spec.nodeName")),
            ("spec.restartPolicy", string_at(obj, "spec.restartPolicy")),
            ("spec.schedulerName", string_at(obj, "spec.schedulerName")),
            ("spec.serviceAccountName", string_at(obj, "spec.serviceAccountName")),
            ("spec.hostNetwork", bool_at(obj, "spec.hostNetwork").unwrap_or(false).to_string()),
            ("status.phase", string_at(obj, "status.phase")),
            ("status.podIP", pod_ip),
            ("status.nominatedNodeName", string_at(obj, "status.nominatedNodeName")),
        ]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIPs",
            "status.podIP",
            "status.nominatedNodeName",
        ])
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        pod_cells(obj, ctx)
    }
}

/// The annotation of mirror pods (a node's copies of its static pods): the static pod's hash.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const MIRROR_FIELD: &str = "metadata.annotations[kubernetes.io/config.mirror]";

fn mirror_annotation(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/annotations")?.get(MIRROR_ANNOTATION)?.as_str()
}

/// Whether only the fields a pod update may change differ between `new` and `old`.
fn pod_spec_update_allowed(new: &Value, old: &Value) -> bool {
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    let mut munged = old.get("spec").cloned().unwrap_or(Value::Null);
    // Images may change when the container lists keep their shape.
    for list in ["containers", "initContainers"] {
        let new_list = array_at(&new_spec, list);
        if let Some(old_list) = path_mut(&mut munged, list).and_then(Value::as_array_mut)
            && old_list.len() == new_list.len()
        {
            for (o, n) in old_list.iter_mut().zip(new_list) {
                if let (Some(o), Some(image)) = (o.as_object_mut(), n.get("image")) {
                    o.insert("image".into(), image.clone());
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        // activeDeadlineSeconds may be set or lowered.
        let old_deadline = m.get("activeDeadlineSeconds").and_then(Value::as_i64);
        match (old_deadline, new_spec.get("activeDeadlineSeconds").and_then(Value::as_i64)) {
            (None, Some(n)) => {
                m.insert("activeDeadlineSeconds".into(), json!(n));
            }
            (Some(o), Some(n)) if n <= o => {
                m.insert("activeDeadlineSeconds".into(), json!(n));
            }
            _ => {}
        }
        // Tolerations may only be added.
        let old_tolerations =
            m.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        let new_tolerations = array_at(&new_spec, "tolerations");
        if old_tolerations.iter().all(|t| new_tolerations.contains(t))
            && !new_tolerations.is_empty()
        {
            m.insert("tolerations".into(), Value::Array(new_tolerations.to_vec()));
        }
        // A negative grace period may become 1.
        let old_grace = m.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        let new_grace = new_spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), json!(1));
        }
        // Scheduling gates may be removed.
        let new_gates = array_at(&new_spec, "schedulingGates");
        let old_gates =
            m.get("schedulingGates").and_then(Value::as_array).cloned().unwrap_or_default();
        if new_gates.iter().all(|g| old_gates.contains(g)) {
            match new_spec.get("schedulingGates") {
                Some(g) => m.insert("schedulingGates".into(), g.clone()),
                None => m.remove("schedulingGates"),
            };
        }
    }
    munged == new_spec
}

fn is_restartable_init(spec: &Value, name: &str) -> bool {
    array_at(spec, "initContainers").iter().any(|c| {
        c.get("name").and_then(Value::as_str) == Some(name)
            && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    match terminated.get("reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        Some(reason) => format!("{prefix}{reason}"),
        None => match terminated.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
            Some(signal) => format!("{prefix}Signal:{signal}"),
            None => {
                let code = terminated.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                format!("{prefix}ExitCode:{code}")
            }
        },
    }
}

/// The later of two RFC 3339 timestamps.
fn later<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (a, b) {
        (Some(x), Some(y)) => match (parse(x), parse(y)) {
            (Some(px), Some(py)) if py > px => Some(y),
            (None, Some(_)) => Some(y),
            _ => Some(x),
        },
        (x, None) => x,
        (None, y) => y,
    }
}

fn finished_at(status: &Value) -> Option<&str> {
    status.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str)
}

/// The row of `printPod`, after the name.
pub(crate) fn pod_cells(pod: &Value, ctx: &TableContext) -> Vec<Value> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let phase = string_at(pod, "status.phase");
    let mut reason =
        str_at(pod, "status.reason").filter(|r| !r.is_empty()).unwrap_or(&phase).to_string();
    let conditions = array_at(pod, "status.conditions");
    if conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
    }

    let init_specs = array_at(&spec, "initContainers");
    let mut total = array_at(&spec, "containers").len();
    total += init_specs
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<&str> = None;
    let mut last_sidecar_restart: Option<&str> = None;

    let mut initializing = false;
    for (i, c) in array_at(pod, "status.initContainerStatuses").iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let count = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        let restartable = is_restartable_init(&spec, name);
        restarts += count;
        last_restart = later(last_restart, finished_at(c));
        if restartable {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished_at(c));
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason =
            c.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| !r.is_empty());
        let exit_code =
            terminated.and_then(|t| t.get("exitCode")).and_then(Value::as_i64).unwrap_or(0);
        if terminated.is_some() && exit_code == 0 {
            continue;
        }
        if restartable && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match (terminated, waiting_reason) {
            (Some(t), _) => terminated_reason(t, "Init:"),
            (None, Some(w)) if w != "PodInitializing" => format!("Init:{w}"),
            _ => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    let initialized = conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Initialized")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in array_at(pod, "status.containerStatuses").iter().rev() {
            restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            last_restart = later(last_restart, finished_at(c));
            let waiting = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty());
            let terminated = c.pointer("/state/terminated");
            if let Some(w) = waiting {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = str_at(pod, "metadata.deletionTimestamp").is_some();
    if deleting && str_at(pod, "status.reason") == Some("NodeLost") {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), ctx, "")),
        _ => restarts.to_string(),
    };

    let none = |s: String| if s.is_empty() { "<none>".to_string() } else { s };
    let pod_ip = array_at(pod, "status.podIPs")
        .first()
        .and_then(|ip| ip.get("ip"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let gates = array_at(&spec, "readinessGates");
    let readiness = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let kind = g.get("conditionType").and_then(Value::as_str);
                conditions
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == kind)
                    .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(pod, ctx),
        json!(none(pod_ip)),
        json!(none(string_at(pod, "spec.nodeName"))),
        json!(none(string_at(pod, "status.nominatedNodeName"))),
        json!(readiness),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn ctx() -> TableContext {
        TableContext { now: Utc.with_ymd_and_hms(2025, 1, 1, 0, 10, 0).single().expect("time") }
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]},
            "status": status,
        })
    }

    fn status_cell(p: &Value) -> Value {
        pod_cells(p, &ctx())[1].clone()
    }

    #[test]
    fn defaults_match_upstream_and_are_idempotent() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]}]}});
        PodStrategy.default(&mut p);
        let once = p.clone();
        PodStrategy.default(&mut p);
        assert_eq!(p, once);
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn validation_messages() {
        let p = json!({"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "a"}, {"name": "Bad_Name", "image": "y"}]}});
        let errors: Vec<String> =
            PodStrategy.validate(&p).iter().map(ToString::to_string).collect();
        assert!(
            errors.contains(&"spec.containers[1].name: Duplicate value: \"a\"".to_string()),
            "{errors:?}"
        );
        assert!(errors.contains(&"spec.containers[1].image: Required value".to_string()));
        assert!(errors.iter().any(|e| e.starts_with(
            "spec.containers[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        )));
        let empty = PodStrategy.validate(&json!({"spec": {}}));
        assert_eq!(empty[0].to_string(), "spec.containers: Required value");
    }

    #[test]
    fn a_mirror_pod_is_bound_and_stays_a_mirror_of_the_same_pod() {
        let mirror = |hash: Option<&str>, node: &str| {
            let mut p = json!({"metadata": {"name": "web-n1", "annotations": {}},
                "spec": {"nodeName": node, "containers": [{"name": "a", "image": "nginx"}]}});
            if let Some(hash) = hash {
                p["metadata"]["annotations"][MIRROR_ANNOTATION] = json!(hash);
            }
            PodStrategy.default(&mut p);
            p
        };
        let messages = |errors: Vec<FieldError>| -> Vec<String> {
            errors.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            messages(PodStrategy.validate(&mirror(Some("h"), ""))),
            [
                r#"metadata.annotations[kubernetes.io/config.mirror]: Invalid value: "h": must set spec.nodeName if mirror pod annotation is set"#
            ]
        );
        assert!(PodStrategy.validate(&mirror(Some("h"), "n1")).is_empty());
        let cases = [
            ("unchanged", Some("h"), Some("h"), None),
            ("removed", Some("h"), None, Some("may not remove or update mirror pod annotation")),
            (
                "changed",
                Some("h"),
                Some("g"),
                Some("may not remove or update mirror pod annotation"),
            ),
            ("added", None, Some("h"), Some("may not add mirror pod annotation")),
        ];
        for (name, old, new, refused) in cases {
            let errors =
                messages(PodStrategy.validate_update(&mirror(new, "n1"), &mirror(old, "n1")));
            match refused {
                None => assert!(errors.is_empty(), "{name}: {errors:?}"),
                Some(why) => assert_eq!(
                    errors,
                    [format!(
                        "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: {why}"
                    )],
                    "{name}"
                ),
            }
        }
    }

    #[test]
    fn only_images_may_change_on_update() {
        let mut old = json!({"spec": {"containers": [{"name": "a", "image": "nginx:1"}]}});
        PodStrategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(PodStrategy.validate_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let errors = PodStrategy.validate_update(&new, &old);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("spec: Forbidden: pod updates may not change fields other than")
        );
    }

    #[test]
    fn status_column_cases() {
        assert_eq!(status_cell(&pod(json!({"phase": "Pending"}))), "Pending");
        let running = json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T00:05:00Z"}}}]});
        let cells = pod_cells(&pod(running), &ctx());
        assert_eq!(cells[0], "2/2");
        assert_eq!(cells[1], "Running");
        assert_eq!(cells[2], "2 (5m ago)");
        assert_eq!(cells[3], "10m");
        let crash = json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            {"name": "b", "ready": true, "state": {"running": {}}}]});
        assert_eq!(status_cell(&pod(crash)), "CrashLoopBackOff");
        let exit = json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 2}}}]});
        assert_eq!(status_cell(&pod(exit)), "ExitCode:2");
        let init = json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]});
        let mut p = pod(init);
        p["spec"]["initContainers"] = json!([{"name": "i", "image": "x"}]);
        assert_eq!(status_cell(&p), "Init:0/1");
        let mut deleting = pod(json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:09:00Z");
        assert_eq!(status_cell(&deleting), "Terminating");
        let gated = json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]});
        assert_eq!(status_cell(&pod(gated)), "SchedulingGated");
        let wide = pod_cells(&pod(json!({"phase": "Pending"})), &ctx());
        assert_eq!(
            &wide[4..],
            &[json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn create_resets_status_with_qos() {
        let mut p = pod(json!({"phase": "Running"}));
        PodStrategy.prepare_for_create(&mut p);
        assert_eq!(p["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
    }

    #[test]
    fn graceful_deletion_follows_check_graceful_delete() {
        let mut p = pod(json!({"phase": "Running"}));
        PodStrategy.default(&mut p);
        assert_eq!(PodStrategy.deletion_grace(&p, None), None, "unscheduled pods go at once");
        p["spec"]["nodeName"] = json!("node-1");
        assert_eq!(PodStrategy.deletion_grace(&p, None), Some(30));
        assert_eq!(PodStrategy.deletion_grace(&p, Some(0)), None);
        assert_eq!(PodStrategy.deletion_grace(&p, Some(-5)), Some(1));
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(PodStrategy.deletion_grace(&p, Some(10)), None);
        assert!(PodStrategy.returns_deleted_object());
    }
}
