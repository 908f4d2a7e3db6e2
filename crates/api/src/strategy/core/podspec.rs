//! Pod spec rules shared by pods and every pod template (deployments, jobs, ...), after
//! upstream's `pkg/apis/core/v1/defaults.go` and `pkg/apis/core/validation`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::strategy::util::{default_field, each_mut, int_at, parse_quantity, str_at};
use crate::validation::{FieldError, dns1123_label};

/// The default termination message path.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Volume sources' default file mode (0644).
const DEFAULT_MODE: i64 = 420;

/// Whether an image reference names the `latest` tag (explicitly or by having no tag and no
/// digest), which is what upstream's `parsers.ParseImageName` reports.
fn is_latest(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => digest.is_none(),
    }
}

fn default_probe(probe: &mut Value) {
    if !probe.is_object() {
        return;
    }
    default_field(probe, "timeoutSeconds", json!(1));
    default_field(probe, "periodSeconds", json!(10));
    default_field(probe, "successThreshold", json!(1));
    default_field(probe, "failureThreshold", json!(3));
    default_handler(probe);
}

fn default_handler(handler: &mut Value) {
    if let Some(get) = handler.get_mut("httpGet").filter(|g| g.is_object()) {
        default_field(get, "path", json!("/"));
        default_field(get, "scheme", json!("HTTP"));
    }
}

fn default_field_ref(holder: &mut Value) {
    if let Some(field_ref) = holder.get_mut("fieldRef").filter(|f| f.is_object()) {
        default_field(field_ref, "apiVersion", json!("v1"));
    }
}

/// `SetDefaults_Container` and what nests in a container.
fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    if c.get("imagePullPolicy").is_none_or(Value::is_null) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if is_latest(image) { "Always" } else { "IfNotPresent" };
        default_field(c, "imagePullPolicy", json!(policy));
    }
    default_field(c, "terminationMessagePath", json!(TERMINATION_MESSAGE_PATH));
    default_field(c, "terminationMessagePolicy", json!("File"));
    each_mut(c, "ports", |p| {
        if p.is_object() {
            default_field(p, "protocol", json!("TCP"));
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.get_mut("lifecycle").and_then(|l| l.get_mut(hook)) {
            default_handler(h);
        }
    }
    each_mut(c, "env", |e| {
        if let Some(from) = e.get_mut("valueFrom") {
            default_field_ref(from);
        }
    });
}

/// `SetDefaults_Volume` and the defaults of the volume sources.
fn default_volume(v: &mut Value) {
    let Some(map) = v.as_object_mut() else {
        return;
    };
    if map.keys().all(|k| k == "name") {
        map.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = map.get_mut(source).filter(|s| s.is_object()) {
            default_field(s, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(s) = map.get_mut("hostPath").filter(|s| s.is_object()) {
        default_field(s, "type", json!(""));
    }
    if let Some(d) = map.get_mut("downwardAPI") {
        each_mut(d, "items", default_field_ref);
    }
    if let Some(p) = map.get_mut("projected") {
        each_mut(p, "sources", |s| {
            if let Some(t) = s.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                default_field(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = s.get_mut("downwardAPI") {
                each_mut(d, "items", default_field_ref);
            }
        });
    }
}

/// Defaults a pod spec as `SetDefaults_PodSpec` and the nested defaulters do. `is_pod` adds
/// what upstream defaults only on pods (`SetDefaults_Pod`): `enableServiceLinks`, requests
/// from limits and host ports under `hostNetwork`.
pub(crate) fn default_pod_spec(spec: &mut Value, is_pod: bool) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_mut(spec, list, default_container);
    }
    each_mut(spec, "volumes", default_volume);
    if !is_pod {
        return;
    }
    default_field(spec, "enableServiceLinks", json!(true));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        each_mut(spec, list, |c| {
            if let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned()
            {
                let requests = c
                    .get_mut("resources")
                    .and_then(Value::as_object_mut)
                    .map(|r| r.entry("requests").or_insert_with(|| json!({})));
                if let Some(requests) = requests.and_then(Value::as_object_mut) {
                    for (k, v) in limits {
                        requests.entry(k).or_insert(v);
                    }
                }
            }
            if host_network {
                each_mut(c, "ports", |p| {
                    if let Some(port) = p.get("containerPort").cloned() {
                        default_field(p, "hostPort", port);
                    }
                });
            }
        });
    }
}

/// Defaults a pod template's spec (`template.spec`).
pub(crate) fn default_template(obj: &mut Value, template_path: &str) {
    if let Some(spec) = crate::strategy::util::path_mut(obj, &format!("{template_path}.spec")) {
        default_pod_spec(spec, false);
    }
}

fn validate_container(
    c: &Value,
    at: &str,
    names: &mut BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    match c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        None => errors.push(FieldError::required(format!("{at}.name"))),
        Some(name) => {
            for problem in dns1123_label(name) {
                errors.push(FieldError::invalid(format!("{at}.name"), json!(name), problem));
            }
            if !names.insert(name.to_string()) {
                errors.push(FieldError::duplicate(format!("{at}.name"), json!(name)));
            }
        }
    }
    if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
        errors.push(FieldError::required(format!("{at}.image")));
    }
    if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str) {
        let allowed = ["Always", "IfNotPresent", "Never"];
        if !allowed.contains(&p) {
            errors.push(FieldError::not_supported(
                format!("{at}.imagePullPolicy"),
                json!(p),
                &allowed,
            ));
        }
    }
    if let Some(p) = c.get("terminationMessagePolicy").and_then(Value::as_str) {
        let allowed = ["File", "FallbackToLogsOnError"];
        if !allowed.contains(&p) {
            errors.push(FieldError::not_supported(
                format!("{at}.terminationMessagePolicy"),
                json!(p),
                &allowed,
            ));
        }
    }
    for (i, port) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let pat = format!("{at}.ports[{i}]");
        match port.get("containerPort").and_then(Value::as_i64) {
            None => errors.push(FieldError::required(format!("{pat}.containerPort"))),
            Some(n) if !(1..=65535).contains(&n) => errors.push(FieldError::invalid(
                format!("{pat}.containerPort"),
                json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            Some(_) => {}
        }
        if let Some(n) = port.get("hostPort").and_then(Value::as_i64).filter(|n| *n != 0)
            && !(1..=65535).contains(&n)
        {
            errors.push(FieldError::invalid(
                format!("{pat}.hostPort"),
                json!(n),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(p) = port.get("protocol").and_then(Value::as_str) {
            let allowed = ["SCTP", "TCP", "UDP"];
            if !allowed.contains(&p) {
                errors.push(FieldError::not_supported(
                    format!("{pat}.protocol"),
                    json!(p),
                    &allowed,
                ));
            }
        }
    }
    for (i, env) in c.get("env").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if env.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{at}.env[{i}].name")));
        }
    }
    validate_resources(c, at, errors);
}

/// Requests may not exceed limits (`ValidateResourceRequirements`).
fn validate_resources(c: &Value, at: &str, errors: &mut Vec<FieldError>) {
    let (Some(requests), Some(limits)) = (
        c.pointer("/resources/requests").and_then(Value::as_object),
        c.pointer("/resources/limits").and_then(Value::as_object),
    ) else {
        return;
    };
    for (name, request) in requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if let (Some(r), Some(l)) = (parse_quantity(request), parse_quantity(limit))
            && r > l
        {
            let limit_text =
                limit.as_str().map(str::to_string).unwrap_or_else(|| limit.to_string());
            errors.push(FieldError::invalid(
                format!("{at}.resources.requests"),
                request.clone(),
                format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

/// Validates a pod spec found at `at` (`spec`, `spec.template.spec`, ...).
pub(crate) fn validate_pod_spec(spec: &Value, at: &str, errors: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        Some(list) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                validate_container(c, &format!("{at}.containers[{i}]"), &mut names, errors);
            }
        }
        _ => errors.push(FieldError::required(format!("{at}.containers"))),
    }
    let inits = spec.get("initContainers").and_then(Value::as_array).into_iter().flatten();
    for (i, c) in inits.enumerate() {
        validate_container(c, &format!("{at}.initContainers[{i}]"), &mut names, errors);
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        let allowed = ["Always", "OnFailure", "Never"];
        if !allowed.contains(&p) {
            errors.push(FieldError::not_supported(
                format!("{at}.restartPolicy"),
                json!(p),
                &allowed,
            ));
        }
    }
    if let Some(p) = spec.get("dnsPolicy").and_then(Value::as_str) {
        let allowed = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !allowed.contains(&p) {
            errors.push(FieldError::not_supported(format!("{at}.dnsPolicy"), json!(p), &allowed));
        }
    }
    if let Some(n) = int_at(spec, "activeDeadlineSeconds").filter(|n| *n <= 0) {
        errors.push(FieldError::invalid(
            format!("{at}.activeDeadlineSeconds"),
            json!(n),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let field = format!("{at}.volumes[{i}].name");
        match v.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(field)),
            Some(name) => {
                for problem in dns1123_label(name) {
                    errors.push(FieldError::invalid(field.clone(), json!(name), problem));
                }
                if !volumes.insert(name) {
                    errors.push(FieldError::duplicate(field, json!(name)));
                }
            }
        }
    }
    if let Some(sa) = str_at(spec, "serviceAccountName").filter(|s| !s.is_empty()) {
        for problem in crate::validation::dns1123_subdomain(sa) {
            errors.push(FieldError::invalid(
                format!("{at}.serviceAccountName"),
                json!(sa),
                problem,
            ));
        }
    }
}

/// Validates a pod template at `at` (`spec.template`): its spec, and for controllers the
/// restart policy they allow.
pub(crate) fn validate_template(
    obj: &Value,
    at: &str,
    restart_policies: &[&str],
    errors: &mut Vec<FieldError>,
) {
    let spec_at = format!("{at}.spec");
    let spec = crate::object::path(obj, &spec_at).cloned().unwrap_or(Value::Null);
    validate_pod_spec(&spec, &spec_at, errors);
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        let all = ["Always", "OnFailure", "Never"];
        if all.contains(&p) && !restart_policies.contains(&p) {
            errors.push(FieldError::not_supported(
                format!("{spec_at}.restartPolicy"),
                json!(p),
                restart_policies,
            ));
        }
    }
}

/// The QoS class of a pod (`qos.GetPodQOS`), from the cpu and memory of its containers.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| spec.get(*list).and_then(Value::as_array).into_iter().flatten())
        .collect();
    let tracked = ["cpu", "memory"];
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let get = |m: Option<&serde_json::Map<String, Value>>, k: &str| {
            m.and_then(|m| m.get(k)).and_then(parse_quantity).filter(|q| *q != 0.0)
        };
        for r in tracked {
            let (req, lim) = (get(requests, r), get(limits, r));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if req != lim => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert!(is_latest("nginx"));
        assert!(is_latest("nginx:latest"));
        assert!(is_latest("localhost:5000/nginx"));
        assert!(!is_latest("nginx:1.27"));
        assert!(!is_latest("nginx@sha256:abc"));
        assert!(!is_latest("localhost:5000/nginx:1.0"));
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let guaranteed = json!({"containers": [{"resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&burstable), "Burstable");
    }
}
