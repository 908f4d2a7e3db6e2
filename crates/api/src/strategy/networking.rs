//! Rules of the `networking.k8s.io` resources: ingresses, ingress classes, network policies,
//! IP addresses and service CIDRs.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{
    AGE, age, array_at, col, default_field, each_mut, format_label_selector, immutable,
    keep_status, reset_status, str_at,
};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `Ingress`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressStrategy;

/// Rules of `IngressClass`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressClassStrategy;

/// Rules of `NetworkPolicy`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkPolicyStrategy;

/// Rules of `IPAddress`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IpAddressStrategy;

/// Rules of `ServiceCIDR`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceCidrStrategy;

/// Load-balancer ingress points as `ip` or `hostname`, comma-joined.
fn load_balancer(obj: &Value) -> String {
    array_at(obj, "status.loadBalancer.ingress")
        .iter()
        .filter_map(|i| {
            let ip = i.get("ip").and_then(Value::as_str).filter(|s| !s.is_empty());
            ip.or_else(|| i.get("hostname").and_then(Value::as_str).filter(|s| !s.is_empty()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Strategy for IngressStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"loadBalancer": {}}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let has_backend = obj.pointer("/spec/defaultBackend").is_some_and(|b| !b.is_null());
        if array_at(obj, "spec.rules").is_empty() && !has_backend {
            errors.push(FieldError::invalid(
                "spec",
                obj.get("spec").cloned().unwrap_or(Value::Null),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        for (i, rule) in array_at(obj, "spec.rules").iter().enumerate() {
            let paths = rule.pointer("/http/paths").and_then(Value::as_array).into_iter().flatten();
            for (j, p) in paths.enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{j}]");
                match p.get("pathType").and_then(Value::as_str) {
                    None => errors.push(FieldError::required(format!("{at}.pathType"))),
                    Some(t) if !["Exact", "Prefix", "ImplementationSpecific"].contains(&t) => {
                        errors.push(FieldError::not_supported(
                            format!("{at}.pathType"),
                            json!(t),
                            &["Exact", "Prefix", "ImplementationSpecific"],
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Class",
                "The name of the IngressClass resource that should be used by this Ingress",
            ),
            col(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            col("Address", "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "Ports of TLS configurations that open"),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let hosts: Vec<&str> = array_at(obj, "spec.rules")
            .iter()
            .filter_map(|r| r.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()))
            .collect();
        const MAX: usize = 4;
        let hosts = match hosts.len() {
            0 => "*".to_string(),
            n if n > MAX => format!("{} + {} more...", hosts[..MAX].join(","), n - MAX),
            _ => hosts.join(","),
        };
        let ports = if array_at(obj, "spec.tls").is_empty() { "80" } else { "80, 443" };
        vec![
            json!(str_at(obj, "spec.ingressClassName").unwrap_or("<none>")),
            json!(hosts),
            json!(load_balancer(obj)),
            json!(ports),
            age(obj, ctx),
        ]
    }
}

impl Strategy for IngressClassStrategy {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable(new, old, "spec.controller", &mut errors);
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Controller", "Controller that is responsible for handling this class"),
            col("Parameters", "A reference to a resource with additional parameters"),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let mut text =
                    p.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
                if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                    text = format!("{text}.{group}");
                }
                format!("{text}/{}", p.get("name").and_then(Value::as_str).unwrap_or_default())
            }
        };
        vec![
            json!(str_at(obj, "spec.controller").unwrap_or_default()),
            json!(parameters),
            age(obj, ctx),
        ]
    }
}

impl Strategy for NetworkPolicyStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        for rules in ["ingress", "egress"] {
            each_mut(spec, rules, |rule| {
                each_mut(rule, "ports", |p| {
                    if p.is_object() {
                        default_field(p, "protocol", json!("TCP"));
                    }
                });
            });
        }
        if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            let mut types = vec![json!("Ingress")];
            if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
                types.push(json!("Egress"));
            }
            spec["policyTypes"] = Value::Array(types);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, t) in array_at(obj, "spec.policyTypes").iter().enumerate() {
            let t = t.as_str().unwrap_or_default();
            if t != "Ingress" && t != "Egress" {
                errors.push(FieldError::not_supported(
                    format!("spec.policyTypes[{i}]"),
                    json!(t),
                    &["Ingress", "Egress"],
                ));
            }
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Pod-Selector",
                "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(format_label_selector(obj.pointer("/spec/podSelector"))), age(obj, ctx)]
    }
}

impl Strategy for IpAddressStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if obj.pointer("/spec/parentRef").is_none_or(Value::is_null) {
            errors.push(FieldError::required("spec.parentRef"));
        }
        let name = crate::object::name(obj).unwrap_or_default();
        if !name.is_empty() && name.parse::<std::net::IpAddr>().is_err() {
            errors.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        immutable(new, old, "spec.parentRef", &mut errors);
        errors
    }

    fn name_rule(&self) -> crate::validation::NameRule {
        crate::validation::NameRule::PathSegment
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[col(
            "ParentRef",
            "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object.",
        )];
        COLUMNS
    }

    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        let Some(parent) = obj.pointer("/spec/parentRef").filter(|p| p.is_object()) else {
            return vec![json!("<none>")];
        };
        let get = |f: &str| parent.get(f).and_then(Value::as_str).unwrap_or_default();
        let mut text = if get("group").is_empty() {
            get("resource").to_lowercase()
        } else {
            format!("{}.{}", get("resource"), get("group")).to_lowercase()
        };
        if !get("namespace").is_empty() {
            text = format!("{text}/{}", get("namespace"));
        }
        vec![json!(format!("{text}/{}", get("name")))]
    }
}

impl Strategy for ServiceCidrStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let cidrs = array_at(obj, "spec.cidrs");
        if cidrs.is_empty() {
            errors.push(FieldError::required("spec.cidrs"));
        } else if cidrs.len() > 2 {
            errors.push(FieldError::invalid(
                "spec.cidrs",
                json!(cidrs),
                "may only hold up to 2 values",
            ));
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable(new, old, "spec.cidrs", &mut errors);
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "CIDRs",
                "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let cidrs: Vec<&str> =
            array_at(obj, "spec.cidrs").iter().filter_map(Value::as_str).collect();
        vec![json!(cidrs.join(",")), age(obj, ctx)]
    }
}
