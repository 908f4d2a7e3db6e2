//! Core resources with few rules: component statuses, endpoints, limit ranges, pod
//! templates, resource quotas and service accounts.

use serde_json::{Map, Value, json};

use super::podspec::{default_template, validate_template};
use crate::strategy::Strategy;
use crate::strategy::util::{
    AGE, IMAGES, age, array_at, col, container_cells, each_mut, format_labels, keep_status,
    object_at, reset_status,
};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `ComponentStatus`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComponentStatusStrategy;

/// Rules of `Endpoints`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointsStrategy;

/// Rules of `LimitRange`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitRangeStrategy;

/// Rules of `PodTemplate`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodTemplateStrategy;

/// Rules of `ResourceQuota`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceQuotaStrategy;

/// Rules of `ServiceAccount`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceAccountStrategy;

impl Strategy for ComponentStatusStrategy {
    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Status", "Status of the component conditions"),
            col("Message", "Message of the component conditions"),
            col("Error", "Error of the component conditions"),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        let mut status = "Unknown".to_string();
        let (mut message, mut error) = (String::new(), String::new());
        for c in array_at(obj, "conditions") {
            if c.get("type").and_then(Value::as_str) == Some("Healthy") {
                status = match c.get("status").and_then(Value::as_str) {
                    Some("True") => "Healthy".into(),
                    _ => "Unhealthy".into(),
                };
                message = c.get("message").and_then(Value::as_str).unwrap_or_default().into();
                error = c.get("error").and_then(Value::as_str).unwrap_or_default().into();
                break;
            }
        }
        vec![json!(status), json!(message), json!(error)]
    }
}

/// `formatEndpoints` with no port filter: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = array_at(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses =
            ss.get("addresses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let ip = |a: &Value| a.get("ip").and_then(Value::as_str).unwrap_or_default().to_string();
        let ports =
            ss.get("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                } else {
                    list.push(ip(a));
                }
            }
        } else {
            for p in ports {
                count += addresses.len();
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                for a in addresses {
                    if list.len() == MAX {
                        more = true;
                    }
                    if !more {
                        let host = ip(a);
                        let host = if host.contains(':') { format!("[{host}]") } else { host };
                        list.push(format!("{host}:{port}"));
                    }
                }
            }
        }
    }
    let joined = list.join(",");
    if more { format!("{joined} + {} more...", count - MAX) } else { joined }
}

impl Strategy for EndpointsStrategy {
    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Endpoints",
                "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(format_endpoints(obj)), age(obj, ctx)]
    }
}

impl Strategy for LimitRangeStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "spec.limits", |item| {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                return;
            }
            let get = |item: &Value, f: &str| {
                item.get(f).and_then(Value::as_object).cloned().unwrap_or_default()
            };
            let mut default = get(item, "default");
            let mut default_request = get(item, "defaultRequest");
            for (k, v) in get(item, "max") {
                default.entry(k).or_insert(v);
            }
            for (k, v) in &default {
                default_request.entry(k.clone()).or_insert(v.clone());
            }
            for (k, v) in get(item, "min") {
                default_request.entry(k).or_insert(v);
            }
            if let Some(map) = item.as_object_mut() {
                if !default.is_empty() {
                    map.insert("default".into(), Value::Object(default));
                }
                if !default_request.is_empty() {
                    map.insert("defaultRequest".into(), Value::Object(default_request));
                }
            }
        });
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[Column::new(
            "Created At",
            "date",
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        )];
        COLUMNS
    }

    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        vec![obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)]
    }
}

impl Strategy for PodTemplateStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_template(obj, "template");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_template(obj, "template", &["Always", "OnFailure", "Never"], &mut errors);
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Containers", "Names of each container in the template."),
            Column { priority: 0, ..IMAGES },
            col("Pod Labels", "The labels for the pod template."),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        let (names, images) = container_cells(array_at(obj, "template.spec.containers"));
        vec![names, images, json!(format_labels(obj.pointer("/template/metadata/labels")))]
    }
}

/// `used/hard` pairs of a quota, split into requests and limits as `printResourceQuota` does.
fn quota_columns(obj: &Value) -> (String, String) {
    let hard = object_at(obj, "status.hard").cloned().unwrap_or_default();
    let used = object_at(obj, "status.used").cloned().unwrap_or_else(Map::new);
    let mut names: Vec<&String> = hard.keys().collect();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "0".into(),
    };
    for name in names {
        let entry = format!("{name}: {}/{}", text(used.get(name)), text(hard.get(name)));
        let is_limit = name.split('.').next() == Some("limits") && name.contains('.');
        if is_limit { limits.push(entry) } else { requests.push(entry) }
    }
    (requests.join(", "), limits.join(", "))
}

impl Strategy for ResourceQuotaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            AGE,
            col(
                "Request",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let (requests, limits) = quota_columns(obj);
        vec![age(obj, ctx), json!(requests), json!(limits)]
    }
}

impl Strategy for ServiceAccountStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(array_at(obj, "secrets").len()), age(obj, ctx)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_cell_truncates_after_three() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 80}]}]});
        assert_eq!(format_endpoints(&ep), "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...");
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }

    #[test]
    fn quota_cells_split_limits() {
        let q = json!({"status": {"hard": {"limits.cpu": "2", "pods": "10", "requests.cpu": "1"},
            "used": {"pods": "3"}}});
        assert_eq!(
            quota_columns(&q),
            ("pods: 3/10, requests.cpu: 0/1".into(), "limits.cpu: 0/2".into())
        );
    }
}
