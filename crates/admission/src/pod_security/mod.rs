//! PodSecurity: upstream's Pod Security Admission. A namespace's labels
//! (`pod-security.kubernetes.io/enforce`, `audit`, `warn`, each with a `-version`) name a Pod
//! Security Standard (`privileged`, `baseline`, `restricted`) and the Kubernetes version of its
//! rules (`latest`, `v1.N`) per mode ([`policy`]). Every violated check is named in upstream's
//! words and order (baseline checks, then restricted ones, each sorted by check ID; [`checks`]).
//!
//! - A pod created (or significantly updated: its containers' images, count or seccomp
//!   annotations, or a new ephemeral container, as upstream's `isSignificantPodUpdate`)
//!   against the `enforce` standard is refused; one that passes gets a warning
//!   (`would violate PodSecurity "level:version": ...`) for each violation of the `warn`
//!   standard. Without a `warn` label, `warn` follows a stricter `enforce` label.
//! - A workload (pod templates, replication controllers, replica sets, deployments, stateful
//!   sets, daemon sets, jobs, cron jobs) is never refused: its pod template gets the `warn`
//!   warnings.
//! - A namespace created or updated with labels that do not parse is refused (422); a new,
//!   stricter `enforce` standard is checked against the namespace's pods, answered as
//!   warnings naming the pods that violate it.
//!
//! The configuration (`--admission-control-config-file`, [`config`]) gives the `defaults`: each
//! mode's level and version for namespaces without that mode's label (a label still wins), and
//! the `exemptions`, as upstream's `exemptNamespace`, `exemptUser` and `exemptRuntimeClass`:
//! pods and workloads in an exempt namespace, or written by an exempt user (the requesting
//! user's name: the impersonated one when impersonating), are not checked at all; a pod (or
//! pod template) naming an exempt `runtimeClassName` is not checked, nor counted among the
//! pods that violate a namespace's new `enforce` standard; an exempt namespace's new `enforce`
//! standard is not checked against its pods (its labels are still validated).
//!
//! Limits: the `audit` mode records nothing (krust has no audit log); the user-namespace and
//! Windows relaxations are not applied; `latest` is the rules of 1.33.

mod checks;
pub mod config;
pub mod policy;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec};
use krust_api::StatusError;
use krust_api::validation::FieldError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Operation, Plugin, Validating, forbidden, typed};

pub use checks::{Violation, evaluate};
pub use config::{ConfigError, Configuration, Exemptions};
pub use policy::{
    AUDIT_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LABEL, ENFORCE_VERSION_LABEL, Level, LevelVersion,
    Policy, Version, WARN_LABEL, WARN_VERSION_LABEL,
};

/// Upstream's name.
pub const NAME: &str = "PodSecurity";

/// The most pods of a namespace checked against its new `enforce` standard, as upstream's
/// default.
pub const MAX_PODS_CHECKED: usize = 3000;

/// The workloads whose pod templates are checked (for warnings), with where the template is.
const CONTROLLERS: &[(&str, &str, &str)] = &[
    ("", "podtemplates", "/template"),
    ("", "replicationcontrollers", "/spec/template"),
    ("apps", "replicasets", "/spec/template"),
    ("apps", "deployments", "/spec/template"),
    ("apps", "statefulsets", "/spec/template"),
    ("apps", "daemonsets", "/spec/template"),
    ("batch", "jobs", "/spec/template"),
    ("batch", "cronjobs", "/spec/jobTemplate/spec/template"),
];

/// The plugin, with its configuration (the default one: every mode `privileged:latest` for
/// unlabelled namespaces, nothing exempt).
#[derive(Debug, Default)]
pub struct PodSecurity {
    configuration: Configuration,
}

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The violations joined as upstream's `ForbiddenDetail`: `reason (detail), ...`.
fn details(violations: &[Violation]) -> String {
    let list: Vec<String> =
        violations.iter().map(|v| format!("{} ({})", v.reason, v.detail)).collect();
    list.join(", ")
}

/// Upstream's refusal: `violates PodSecurity "LEVEL:VERSION": reason (detail), ...`.
pub fn message(standard: LevelVersion, violations: &[Violation]) -> String {
    format!("violates PodSecurity \"{standard}\": {}", details(violations))
}

/// Upstream's warning: `would violate PodSecurity "LEVEL:VERSION": reason (detail), ...`.
pub fn warning(standard: LevelVersion, violations: &[Violation]) -> String {
    format!("would violate PodSecurity \"{standard}\": {}", details(violations))
}

/// Whether a pod update is checked again, as upstream's `isSignificantPodUpdate`: the number
/// of containers or init containers changed, or one's image or seccomp annotation, or an
/// ephemeral container was added or changed so. Other changes are refused by validation.
fn significant_update(new: &Pod, old: &Pod) -> bool {
    let (Some(spec), Some(old_spec)) = (new.spec.as_ref(), old.spec.as_ref()) else {
        return new.spec.is_some() != old.spec.is_some();
    };
    let annotation = |p: &Pod, name: &str| {
        let key = format!("container.seccomp.security.alpha.kubernetes.io/{name}");
        p.metadata.annotations.as_ref().and_then(|a| a.get(&key)).cloned()
    };
    let changed = |name: &str, image: &Option<String>, old_image: &Option<String>| {
        image != old_image || annotation(new, name) != annotation(old, name)
    };
    let (inits, old_inits) = (
        spec.init_containers.as_deref().unwrap_or_default(),
        old_spec.init_containers.as_deref().unwrap_or_default(),
    );
    if spec.containers.len() != old_spec.containers.len() || inits.len() != old_inits.len() {
        return true;
    }
    let pairs = spec.containers.iter().zip(&old_spec.containers).chain(inits.iter().zip(old_inits));
    if pairs.into_iter().any(|(c, o)| changed(&c.name, &c.image, &o.image)) {
        return true;
    }
    let old_ephemeral = old_spec.ephemeral_containers.as_deref().unwrap_or_default();
    spec.ephemeral_containers.iter().flatten().any(|c| {
        match old_ephemeral.iter().find(|o| o.name == c.name) {
            None => true,
            Some(o) => changed(&c.name, &c.image, &o.image),
        }
    })
}

/// The runtime class a pod names, if any.
fn runtime_class(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_deref())
}

/// The warning for the `warn` standard, unless it is the one just evaluated (`enforced`).
fn warn(
    policy: &Policy,
    pod: &Pod,
    enforced: Option<(LevelVersion, &[Violation])>,
    warnings: &mut Vec<String>,
) {
    let violations = match enforced {
        Some((standard, violations)) if standard == policy.warn => violations.to_vec(),
        _ => evaluate(policy.warn, pod),
    };
    if !violations.is_empty() {
        warnings.push(warning(policy.warn, &violations));
    }
}

impl PodSecurity {
    /// The plugin with `configuration` (defaults and exemptions).
    pub fn new(configuration: Configuration) -> Self {
        Self { configuration }
    }

    /// The policy of `namespace`, from its labels over the configured defaults, and whether
    /// the labels parse; `None` when it does not exist.
    fn namespace_policy(
        &self,
        cluster: &dyn ClusterView,
        namespace: &str,
    ) -> Option<(Policy, bool)> {
        let namespace = cluster.get::<Namespace>("", "namespaces", "", namespace)?;
        let labels = namespace.metadata.labels.unwrap_or_default();
        let (policy, errors) = Policy::from_labels(&labels, self.configuration.defaults);
        Some((policy, errors.is_empty()))
    }

    /// Whether a pod or workload write is exempt by its namespace or its requesting user.
    fn exempt_request(&self, attributes: &Attributes<'_>) -> bool {
        let exemptions = &self.configuration.exemptions;
        exemptions.namespace(attributes.namespace)
            || attributes.user.is_some_and(|user| exemptions.user(&user.name))
    }

    /// Pods (and their ephemeral containers): refused against `enforce`, warned about `warn`.
    fn pod(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) -> Result<(), StatusError> {
        if self.exempt_request(attributes) {
            return Ok(());
        }
        let Some((policy, valid)) = self.namespace_policy(cluster, attributes.namespace) else {
            return Ok(());
        };
        if valid && policy.fully_privileged() {
            return Ok(());
        }
        let Some(pod) = typed::<Pod>(object) else { return Ok(()) };
        if attributes.operation == Operation::Update
            && let Some(old) = old.and_then(typed::<Pod>)
            && !significant_update(&pod, &old)
        {
            return Ok(());
        }
        if self.configuration.exemptions.runtime_class(runtime_class(&pod)) {
            return Ok(());
        }
        let violations = evaluate(policy.enforce, &pod);
        if !violations.is_empty() {
            return Err(forbidden(attributes, Some(object), &message(policy.enforce, &violations)));
        }
        warn(&policy, &pod, Some((policy.enforce, &violations)), warnings);
        Ok(())
    }

    /// Workloads: their pod template warned about `warn` (never refused).
    fn controller(
        &self,
        attributes: &Attributes<'_>,
        template_at: &str,
        object: &Value,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) {
        if self.exempt_request(attributes) {
            return;
        }
        let Some((policy, valid)) = self.namespace_policy(cluster, attributes.namespace) else {
            return;
        };
        if valid
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return;
        }
        let Some(template) = object.pointer(template_at).and_then(typed::<PodTemplateSpec>) else {
            return;
        };
        let pod = Pod {
            metadata: template.metadata.unwrap_or_default(),
            spec: template.spec,
            ..Pod::default()
        };
        if self.configuration.exemptions.runtime_class(runtime_class(&pod)) {
            return;
        }
        warn(&policy, &pod, None, warnings);
    }

    /// Namespaces: labels that do not parse are refused; a new, stricter `enforce` standard
    /// is checked against the namespace's pods, as warnings, unless the namespace is exempt
    /// (upstream's namespace of a namespace write is the namespace itself).
    fn namespace(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) -> Result<(), StatusError> {
        let Some(namespace) = typed::<Namespace>(object) else { return Ok(()) };
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let defaults = self.configuration.defaults;
        let (policy, errors) =
            Policy::from_labels(&namespace.metadata.labels.unwrap_or_default(), defaults);
        let old = old.and_then(typed::<Namespace>);
        let (old_policy, old_errors) = match &old {
            Some(old) => {
                Policy::from_labels(&old.metadata.labels.clone().unwrap_or_default(), defaults)
            }
            None => (defaults, Vec::new()),
        };
        let refuse = match attributes.operation {
            Operation::Create => !errors.is_empty(),
            Operation::Update => {
                !errors.is_empty() && (old_errors.is_empty() || errors != old_errors)
            }
            _ => false,
        };
        if refuse {
            let causes: Vec<FieldError> = errors
                .iter()
                .map(|e| {
                    FieldError::invalid(
                        format!("metadata.labels[{}]", e.label),
                        Value::String(e.value.clone()),
                        e.message,
                    )
                })
                .collect();
            return Err(StatusError::invalid("", "Namespace", &name, &causes));
        }
        if attributes.operation != Operation::Update
            || old.is_none()
            || policy.enforce == old_policy.enforce
            || policy.enforce.level == Level::Privileged
            || (policy.enforce.version == old_policy.enforce.version
                && policy.enforce.level <= old_policy.enforce.level)
            || self.configuration.exemptions.namespace(&name)
        {
            return Ok(());
        }
        let exemptions = &self.configuration.exemptions;
        warnings.extend(pods_violating(cluster, &name, policy.enforce, exemptions));
        Ok(())
    }
}

/// Upstream's `EvaluatePodsInNamespace`: the namespace's pods against a new `enforce`
/// standard (one pod per controller first, at most [`MAX_PODS_CHECKED`]; pods of an exempt
/// runtime class are skipped), as warnings: a summary, then each distinct set of reasons with
/// the first pod (by name) showing it and how many others do, sorted.
pub fn pods_violating(
    cluster: &dyn ClusterView,
    namespace: &str,
    standard: LevelVersion,
    exemptions: &Exemptions,
) -> Vec<String> {
    let mut pods: Vec<Pod> = cluster.list("", "pods", namespace);
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut seen_controllers = std::collections::BTreeSet::new();
    let (mut first, mut rest): (Vec<Pod>, Vec<Pod>) = (Vec::new(), Vec::new());
    for pod in pods {
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone());
        let repeated = controller.is_some_and(|uid| !seen_controllers.insert(uid));
        if repeated {
            rest.push(pod);
        } else {
            first.push(pod);
        }
    }
    let total = first.len() + rest.len();
    first.extend(rest);
    first.truncate(MAX_PODS_CHECKED);
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for pod in &first {
        if exemptions.runtime_class(runtime_class(pod)) {
            continue;
        }
        let violations = evaluate(standard, pod);
        if violations.is_empty() {
            continue;
        }
        let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
        let reasons = reasons.join(", ");
        let name = pod.metadata.name.clone().unwrap_or_default();
        match counts.get_mut(&reasons) {
            None => {
                order.push(reasons.clone());
                counts.insert(reasons, (name, 1));
            }
            Some((first_name, count)) => {
                if name < *first_name {
                    *first_name = name;
                }
                *count += 1;
            }
        }
    }
    let mut warnings = Vec::new();
    if first.len() < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            first.len()
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{standard}\""
        ));
    }
    let mut pods: Vec<String> = order
        .into_iter()
        .filter_map(|reasons| {
            let (name, count) = counts.get(&reasons)?;
            Some(match count {
                1 => format!("{name}: {reasons}"),
                2 => format!("{name} (and 1 other pod): {reasons}"),
                n => format!("{name} (and {} other pods): {reasons}", n - 1),
            })
        })
        .collect();
    pods.sort();
    warnings.extend(pods);
    warnings
}

impl Validating for PodSecurity {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        self.validate_with_warnings(attributes, object, old, cluster, &mut Vec::new())
    }

    fn validate_with_warnings(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) -> Result<(), StatusError> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let (group, resource, sub) =
            (attributes.group, attributes.resource, attributes.subresource);
        if group.is_empty() && resource == "namespaces" {
            if sub.is_empty() {
                return self.namespace(attributes, object, old, cluster, warnings);
            }
            return Ok(());
        }
        if attributes.namespace.is_empty() {
            return Ok(());
        }
        if group.is_empty() && resource == "pods" {
            if matches!(sub, "" | "ephemeralcontainers") {
                return self.pod(attributes, object, old, cluster, warnings);
            }
            return Ok(());
        }
        if sub.is_empty()
            && let Some((_, _, at)) =
                CONTROLLERS.iter().find(|(g, r, _)| *g == group && *r == resource)
        {
            self.controller(attributes, at, object, cluster, warnings);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster(level: Option<&str>) -> Objects {
        let labels = match level {
            Some(l) => json!({ ENFORCE_LABEL: l }),
            None => json!({}),
        };
        Objects(vec![("", "namespaces", json!({"metadata": {"name": "ns", "labels": labels}}))])
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn bare() -> Value {
        pod(json!({"containers": [{"name": "c", "image": "i"}]}))
    }

    fn compliant() -> Value {
        pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
            }}],
            "volumes": [{"name": "v", "emptyDir": {}}]
        }))
    }

    fn run(level: Option<&str>, object: &Value) -> Result<(), String> {
        PodSecurity::default()
            .validate(&create("", "pods", "ns"), Some(object), None, &cluster(level))
            .map_err(|e| e.message)
    }

    #[test]
    fn pods_are_admitted_or_refused_by_the_namespace_level() {
        let privileged = pod(json!({"containers": [
            {"name": "c", "image": "i", "securityContext": {"privileged": true}}
        ]}));
        let host_network =
            pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}));
        let cases: &[(&str, Option<&str>, Value, bool)] = &[
            ("a privileged pod passes an unlabelled namespace", None, privileged.clone(), true),
            (
                "a privileged pod passes a privileged namespace",
                Some("privileged"),
                privileged.clone(),
                true,
            ),
            (
                "a privileged pod is refused under baseline",
                Some("baseline"),
                privileged.clone(),
                false,
            ),
            ("a hostNetwork pod is refused under baseline", Some("baseline"), host_network, false),
            ("a bare pod passes baseline", Some("baseline"), bare(), true),
            ("a bare pod is refused under restricted", Some("restricted"), bare(), false),
            ("a compliant pod passes restricted", Some("restricted"), compliant(), true),
            ("an unknown level is treated as restricted", Some("nope"), bare(), false),
        ];
        for (case, level, object, ok) in cases {
            assert_eq!(run(*level, object).is_ok(), *ok, "{case}");
        }
    }

    #[test]
    fn refusals_carry_upstreams_messages() {
        let cases: &[(&str, Option<&str>, Value, &str)] = &[
            (
                "the exact restricted message for a bare pod",
                Some("restricted"),
                bare(),
                r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            ),
            (
                "baseline names privileged containers and host namespaces in check order",
                Some("baseline"),
                pod(json!({"hostNetwork": true, "hostPID": true, "initContainers": [
                    {"name": "init", "image": "i", "securityContext": {"privileged": true}}
                ], "containers": [
                    {"name": "c", "image": "i", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}
                ]})),
                r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), privileged (containers "init", "c" must not set securityContext.privileged=true)"#,
            ),
            (
                "baseline refuses hostPath volumes, hostPorts, unsafe sysctls and Unconfined seccomp",
                Some("baseline"),
                pod(json!({
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}, "sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 80}]}],
                    "volumes": [{"name": "h", "hostPath": {"path": "/"}}]
                })),
                r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "h"), hostPort (container "c" uses hostPort 80), seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined"), forbidden sysctls (kernel.msgmax)"#,
            ),
            (
                "restricted names hostPath as a restricted volume type and runAsUser=0",
                Some("restricted"),
                {
                    let mut p = compliant();
                    p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]);
                    p["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "i", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
                    p
                },
                r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": restricted volume types (volume "h" uses restricted volume type "hostPath"), runAsUser=0 (container "e" must not set runAsUser=0)"#,
            ),
        ];
        for (case, level, object, want) in cases {
            assert_eq!(run(*level, object).unwrap_err(), *want, "{case}");
        }
    }

    #[test]
    fn restricted_checks_replace_the_baseline_ones_they_cover() {
        let mut p = compliant();
        p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        assert_eq!(
            run(Some("restricted"), &p).unwrap_err(),
            r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#
        );
    }

    fn namespace(labels: &[(&str, &str)]) -> Objects {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        Objects(vec![("", "namespaces", json!({"metadata": {"name": "ns", "labels": labels}}))])
    }

    fn check(
        attributes: &Attributes<'_>,
        labels: &[(&str, &str)],
        object: &Value,
        old: Option<&Value>,
    ) -> (Result<(), String>, Vec<String>) {
        let mut warnings = Vec::new();
        let got = PodSecurity::default()
            .validate_with_warnings(
                attributes,
                Some(object),
                old,
                &namespace(labels),
                &mut warnings,
            )
            .map_err(|e| e.message);
        (got, warnings)
    }

    #[test]
    fn the_version_label_picks_the_rules() {
        let mut sysctl = bare();
        sysctl["spec"]["securityContext"] =
            json!({"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "1"}]});
        let cases: &[(&str, &str, &str, Value, Result<(), &str>)] = &[
            (
                "restricted at v1.21 has no capabilities or runAsUser rule",
                "restricted",
                "v1.21",
                {
                    let mut p = compliant();
                    p["spec"]["containers"][0]["securityContext"] =
                        json!({"allowPrivilegeEscalation": false, "runAsUser": 0});
                    p
                },
                Ok(()),
            ),
            (
                "restricted at v1.23 has both",
                "restricted",
                "v1.23",
                {
                    let mut p = compliant();
                    p["spec"]["containers"][0]["securityContext"] =
                        json!({"allowPrivilegeEscalation": false, "runAsUser": 0});
                    p
                },
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "restricted:v1.23": unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsUser=0 (container "c" must not set runAsUser=0)"#,
                ),
            ),
            (
                "a keepalive sysctl is forbidden before v1.29",
                "baseline",
                "v1.28",
                sysctl.clone(),
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:v1.28": forbidden sysctls (net.ipv4.tcp_keepalive_time)"#,
                ),
            ),
            ("and allowed since", "baseline", "v1.29", sysctl.clone(), Ok(())),
            (
                "before v1.19 seccomp is read from the annotations",
                "baseline",
                "v1.18",
                {
                    let mut p = bare();
                    p["metadata"]["annotations"] =
                        json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"});
                    p["spec"]["securityContext"] =
                        json!({"seccompProfile": {"type": "Unconfined"}});
                    p
                },
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:v1.18": seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#,
                ),
            ),
            (
                "a future version gets the newest rules and keeps its name",
                "baseline",
                "v1.99",
                pod(json!({"hostIPC": true, "containers": [{"name": "c", "image": "i"}]})),
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:v1.99": host namespaces (hostIPC=true)"#,
                ),
            ),
        ];
        for (case, level, version, object, want) in cases {
            let labels = [(ENFORCE_LABEL, *level), (ENFORCE_VERSION_LABEL, *version)];
            let (got, _) = check(&create("", "pods", "ns"), &labels, object, None);
            assert_eq!(got, want.map_err(str::to_string), "{case}");
        }
    }

    #[test]
    fn the_warn_label_answers_warnings() {
        let bare_warning = r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;
        let deployment = json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let cases: &[(&str, Attributes<'_>, &[(&str, &str)], Value, Result<(), &str>, &[&str])] = &[
            (
                "a warned pod is admitted with a warning",
                create("", "pods", "ns"),
                &[(WARN_LABEL, "restricted")],
                bare(),
                Ok(()),
                &[bare_warning],
            ),
            (
                "a compliant pod gets none",
                create("", "pods", "ns"),
                &[(WARN_LABEL, "restricted")],
                compliant(),
                Ok(()),
                &[],
            ),
            (
                "a refused pod gets no warning",
                create("", "pods", "ns"),
                &[(ENFORCE_LABEL, "baseline"), (WARN_LABEL, "restricted")],
                pod(json!({"hostPID": true, "containers": [{"name": "c", "image": "i"}]})),
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true)"#,
                ),
                &[],
            ),
            (
                "a deployment is warned about against warn",
                create("apps", "deployments", "ns"),
                &[(WARN_LABEL, "restricted")],
                deployment.clone(),
                Ok(()),
                &[bare_warning],
            ),
            (
                "and against an explicit enforce, never refused",
                create("apps", "deployments", "ns"),
                &[(ENFORCE_LABEL, "restricted")],
                deployment.clone(),
                Ok(()),
                &[bare_warning],
            ),
            (
                "a privileged namespace warns about nothing",
                create("apps", "deployments", "ns"),
                &[],
                deployment.clone(),
                Ok(()),
                &[],
            ),
        ];
        for (case, attributes, labels, object, want, warnings) in cases {
            let (got, got_warnings) = check(attributes, labels, object, None);
            assert_eq!(got, want.map_err(str::to_string), "{case}");
            assert_eq!(got_warnings, *warnings, "{case}");
        }
    }

    #[test]
    fn pod_updates_are_checked_when_images_change() {
        let mut attributes = create("", "pods", "ns");
        attributes.operation = Operation::Update;
        let old = bare();
        let mut relabelled = bare();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        let mut new_image = bare();
        new_image["spec"]["containers"][0]["image"] = json!("j");
        let mut tolerating = bare();
        tolerating["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        let mut debugged = bare();
        debugged["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "i"}]);
        let cases: &[(&str, Value, bool)] = &[
            ("a metadata-only update passes", relabelled, true),
            ("a toleration added passes", tolerating, true),
            ("an image change is checked", new_image, false),
            ("an ephemeral container added is checked", debugged, false),
        ];
        for (case, new, ok) in cases {
            let (got, _) = check(&attributes, &[(ENFORCE_LABEL, "restricted")], new, Some(&old));
            assert_eq!(got.is_ok(), *ok, "{case}");
        }
    }

    #[test]
    fn namespace_labels_are_validated_and_a_stricter_enforce_warns_about_pods() {
        let ns = |labels: Value| json!({"metadata": {"name": "ns", "labels": labels}});
        let mut attributes = create("", "namespaces", "");
        let (got, _) = check(&attributes, &[], &ns(json!({ENFORCE_LABEL: "strict"})), None);
        assert_eq!(
            got.unwrap_err(),
            r#"Namespace "ns" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        attributes.operation = Operation::Update;
        let pod = |name: &str, spec: Value, owner: Option<&str>| {
            let mut p = json!({"metadata": {"name": name, "namespace": "ns"}, "spec": spec});
            if let Some(uid) = owner {
                p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
            }
            ("", "pods", p)
        };
        let containers = json!([{"name": "c", "image": "i"}]);
        let cluster = Objects(vec![
            pod("b-host", json!({"hostNetwork": true, "containers": containers}), None),
            pod("a-host", json!({"hostNetwork": true, "containers": containers}), None),
            pod("c-host", json!({"hostNetwork": true, "containers": containers}), None),
            pod("plain", json!({"containers": containers}), None),
            pod(
                "priv",
                json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]}),
                Some("u1"),
            ),
        ]);
        let mut warnings = Vec::new();
        PodSecurity::default()
            .validate_with_warnings(
                &attributes,
                Some(&ns(json!({ENFORCE_LABEL: "baseline"}))),
                Some(&ns(json!({}))),
                &cluster,
                &mut warnings,
            )
            .unwrap();
        assert_eq!(
            warnings,
            [
                r#"existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest""#,
                "a-host (and 2 other pods): host namespaces",
                "priv: privileged",
            ]
        );
        // Relaxing, or keeping, the level checks nothing; nor does a label already bad.
        for (new, old) in [
            (json!({ENFORCE_LABEL: "baseline"}), json!({ENFORCE_LABEL: "restricted"})),
            (json!({ENFORCE_LABEL: "baseline", "other": "x"}), json!({ENFORCE_LABEL: "baseline"})),
            (json!({ENFORCE_LABEL: "strict", "other": "x"}), json!({ENFORCE_LABEL: "strict"})),
        ] {
            let mut warnings = Vec::new();
            PodSecurity::default()
                .validate_with_warnings(
                    &attributes,
                    Some(&ns(new)),
                    Some(&ns(old)),
                    &cluster,
                    &mut warnings,
                )
                .unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    /// A plugin configured by a `PodSecurityConfiguration`'s `defaults` and `exemptions`.
    fn configured(defaults: Value, exemptions: Value) -> PodSecurity {
        let file = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration", "defaults": defaults, "exemptions": exemptions});
        PodSecurity::new(Configuration::from_value(&file).unwrap())
    }

    fn privileged_pod(runtime_class: Option<&str>) -> Value {
        let mut p = pod(json!({"containers": [
            {"name": "c", "image": "i", "securityContext": {"privileged": true}}
        ]}));
        if let Some(class) = runtime_class {
            p["spec"]["runtimeClassName"] = json!(class);
        }
        p
    }

    #[test]
    fn defaults_apply_to_modes_without_a_label_and_labels_win() {
        let plugin = configured(json!({"enforce": "baseline", "warn": "restricted"}), json!({}));
        let host = pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}));
        let bare_warning = warning(
            LevelVersion { level: Level::Restricted, version: Version::Latest },
            &evaluate(LevelVersion { level: Level::Restricted, version: Version::Latest }, &{
                typed::<Pod>(&bare()).unwrap()
            }),
        );
        let cases: &[(&str, &[(&str, &str)], Value, Result<(), &str>, Vec<String>)] = &[
            (
                "an unlabelled namespace enforces the default level",
                &[],
                host.clone(),
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#,
                ),
                vec![],
            ),
            (
                "and warns about the default warn level",
                &[],
                bare(),
                Ok(()),
                vec![bare_warning.clone()],
            ),
            (
                "an enforce label wins over the default",
                &[(ENFORCE_LABEL, "privileged")],
                host.clone(),
                Ok(()),
                vec![
                    r#"would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#.to_string(),
                ],
            ),
            (
                "a warn label wins over its default",
                &[(WARN_LABEL, "privileged")],
                bare(),
                Ok(()),
                vec![],
            ),
            (
                "an enforce-version label keeps the default level",
                &[(ENFORCE_VERSION_LABEL, "v1.20")],
                host,
                Err(
                    r#"pods "p" is forbidden: violates PodSecurity "baseline:v1.20": host namespaces (hostNetwork=true)"#,
                ),
                vec![],
            ),
        ];
        for (case, labels, object, want, want_warnings) in cases {
            let mut warnings = Vec::new();
            let got = plugin
                .validate_with_warnings(
                    &create("", "pods", "ns"),
                    Some(object),
                    None,
                    &namespace(labels),
                    &mut warnings,
                )
                .map_err(|e| e.message);
            assert_eq!(got, want.map_err(str::to_string), "{case}");
            assert_eq!(&warnings, want_warnings, "{case}");
        }
        // Without configuration the same namespace is privileged.
        assert_eq!(run(None, &privileged_pod(None)), Ok(()));
        // `warn` follows a labelled `enforce` only: a default `enforce` alone warns about no
        // workload, as upstream's.
        let plugin = configured(json!({"enforce": "restricted"}), json!({}));
        let deployment = json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        for (labels, count) in [(&[][..], 0), (&[(ENFORCE_LABEL, "restricted")][..], 1)] {
            let mut warnings = Vec::new();
            plugin
                .validate_with_warnings(
                    &create("apps", "deployments", "ns"),
                    Some(&deployment),
                    None,
                    &namespace(labels),
                    &mut warnings,
                )
                .unwrap();
            assert_eq!(warnings.len(), count, "{labels:?}: {warnings:?}");
        }
    }

    #[test]
    fn exempt_namespaces_users_and_runtime_classes_are_not_checked() {
        let plugin = configured(
            json!({"enforce": "restricted", "warn": "restricted"}),
            json!({"namespaces": ["ns"], "usernames": ["alice"], "runtimeClasses": ["kata"]}),
        );
        let user = |name: &str| krust_auth::UserInfo { name: name.into(), ..Default::default() };
        let (alice, bob) = (user("alice"), user("bob"));
        let other =
            Objects(vec![("", "namespaces", json!({"metadata": {"name": "other", "labels": {}}}))]);
        let cases: &[(&str, Option<&krust_auth::UserInfo>, &str, Option<&str>, bool)] = &[
            ("a pod in an exempt namespace is admitted", None, "ns", None, true),
            ("a pod elsewhere is refused", None, "other", None, false),
            ("a pod of an exempt user is admitted", Some(&alice), "other", None, true),
            ("a pod of another user is refused", Some(&bob), "other", None, false),
            (
                "a pod of an exempt runtime class is admitted",
                Some(&bob),
                "other",
                Some("kata"),
                true,
            ),
            ("a pod of another runtime class is refused", Some(&bob), "other", Some("runc"), false),
        ];
        for (case, who, ns, class, ok) in cases {
            let mut attributes = create("", "pods", ns);
            attributes.user = *who;
            let cluster = if *ns == "ns" { cluster(None) } else { Objects(other.0.clone()) };
            let got = plugin.validate(&attributes, Some(&privileged_pod(*class)), None, &cluster);
            assert_eq!(got.is_ok(), *ok, "{case}: {got:?}");
        }
        // Workloads: an exempt request or template gets no warning; others do.
        let deployment = |class: Option<&str>| {
            let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
            if let Some(class) = class {
                spec["runtimeClassName"] = json!(class);
            }
            json!({"metadata": {"name": "web", "namespace": "other"},
                "spec": {"selector": {}, "template": {"spec": spec}}})
        };
        let cases: &[(&str, Option<&krust_auth::UserInfo>, Option<&str>, usize)] = &[
            ("a deployment is warned about", None, None, 1),
            ("unless an exempt user writes it", Some(&alice), None, 0),
            ("or its template names an exempt runtime class", None, Some("kata"), 0),
        ];
        for (case, who, class, count) in cases {
            let mut attributes = create("apps", "deployments", "other");
            attributes.user = *who;
            let mut warnings = Vec::new();
            plugin
                .validate_with_warnings(
                    &attributes,
                    Some(&deployment(*class)),
                    None,
                    &other,
                    &mut warnings,
                )
                .unwrap();
            assert_eq!(warnings.len(), *count, "{case}: {warnings:?}");
        }
        let mut warnings = Vec::new();
        let mut in_ns = deployment(None);
        in_ns["metadata"]["namespace"] = json!("ns");
        plugin
            .validate_with_warnings(
                &create("apps", "deployments", "ns"),
                Some(&in_ns),
                None,
                &cluster(None),
                &mut warnings,
            )
            .unwrap();
        assert!(warnings.is_empty(), "a workload in an exempt namespace: {warnings:?}");
    }

    #[test]
    fn a_stricter_enforce_skips_exempt_namespaces_and_runtime_classes() {
        let ns = |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}});
        let pod = |name: &str, namespace: &str, class: Option<&str>| {
            let mut p = json!({"metadata": {"name": name, "namespace": namespace},
                "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}});
            if let Some(class) = class {
                p["spec"]["runtimeClassName"] = json!(class);
            }
            ("", "pods", p)
        };
        let cluster = Objects(vec![
            pod("a", "ns", Some("kata")),
            pod("b", "ns", None),
            pod("c", "open", Some("kata")),
        ]);
        let plugin =
            configured(json!({}), json!({"namespaces": ["open"], "runtimeClasses": ["kata"]}));
        let mut attributes = create("", "namespaces", "");
        attributes.operation = Operation::Update;
        let check = |name: &str| {
            let mut warnings = Vec::new();
            plugin
                .validate_with_warnings(
                    &attributes,
                    Some(&ns(name, json!({ENFORCE_LABEL: "baseline"}))),
                    Some(&ns(name, json!({}))),
                    &cluster,
                    &mut warnings,
                )
                .map(|()| warnings)
                .map_err(|e| e.message)
        };
        assert_eq!(
            check("ns").unwrap(),
            [
                r#"existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest""#,
                "b: host namespaces",
            ],
            "the pod of an exempt runtime class is not named"
        );
        assert_eq!(check("open").unwrap(), Vec::<String>::new(), "an exempt namespace");
        // An exempt namespace's labels are still validated.
        let got = plugin.validate(
            &create("", "namespaces", ""),
            Some(&ns("open", json!({ENFORCE_LABEL: "strict"}))),
            None,
            &cluster,
        );
        assert_eq!(got.unwrap_err().code(), 422);
    }

    #[test]
    fn a_default_enforce_is_the_old_policy_of_a_namespace_labelled_stricter() {
        // The default (baseline) is what an unlabelled namespace had: labelling it baseline
        // changes nothing, labelling it restricted checks its pods.
        let plugin = configured(json!({"enforce": "baseline"}), json!({}));
        let ns = |labels: Value| json!({"metadata": {"name": "ns", "labels": labels}});
        let cluster = Objects(vec![(
            "",
            "pods",
            json!({"metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )]);
        let mut attributes = create("", "namespaces", "");
        attributes.operation = Operation::Update;
        let warnings = |level: &str| {
            let mut warnings = Vec::new();
            plugin
                .validate_with_warnings(
                    &attributes,
                    Some(&ns(json!({ENFORCE_LABEL: level}))),
                    Some(&ns(json!({}))),
                    &cluster,
                    &mut warnings,
                )
                .unwrap();
            warnings.len()
        };
        assert_eq!(warnings("baseline"), 0);
        assert_eq!(warnings("restricted"), 2);
    }
}
