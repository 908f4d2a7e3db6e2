//! Services: `SetDefaults_Service`, `pkg/registry/core/service/strategy.go`, `printService`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::strategy::Strategy;
use crate::strategy::util::{
    AGE, age, array_at, col, default_field, each_mut, format_labels, keep_status, str_at, string_at,
};
use crate::table::{Column, TableContext};
use crate::validation::{FieldError, NameRule, dns1123_label};

/// Rules of `Service`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceStrategy;

const COLUMNS: &[Column] = &[
    col("Type", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"),
    col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
    col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system."),
    col("Port(s)", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
    AGE,
    col("Selector", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/").wide(),
];

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn externally_accessible(svc: &Value) -> bool {
    match str_at(svc, "spec.type") {
        Some("LoadBalancer" | "NodePort") => true,
        Some("ClusterIP") => !array_at(svc, "spec.externalIPs").is_empty(),
        _ => false,
    }
}

/// Whether a Service is given node ports for its ports without: a NodePort, and a
/// LoadBalancer unless `allocateLoadBalancerNodePorts` is false (upstream's `needsNodePort`).
pub fn gets_node_ports(svc: &Value) -> bool {
    match str_at(svc, "spec.type") {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// Fields the allocators fill that an update may leave out and keep.
const ALLOCATED: &[&str] =
    &["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"];

impl Strategy for ServiceStrategy {
    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn default(&self, obj: &mut Value) {
        let accessible = externally_accessible(obj);
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        default_field(spec, "sessionAffinity", json!("None"));
        if spec.get("sessionAffinity").and_then(Value::as_str) == Some("None") {
            if let Some(map) = spec.as_object_mut() {
                map.remove("sessionAffinityConfig");
            }
        } else if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
            && spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds").is_none()
        {
            crate::object::set_path(
                spec,
                "sessionAffinityConfig.clientIP.timeoutSeconds",
                json!(10800),
            );
        }
        default_field(spec, "type", json!("ClusterIP"));
        each_mut(spec, "ports", |p| {
            if !p.is_object() {
                return;
            }
            default_field(p, "protocol", json!("TCP"));
            let target = p.get("targetPort");
            let unset = target.is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!(""));
            if unset && let Some(port) = p.get("port").cloned() {
                p["targetPort"] = port;
            }
        });
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        if accessible || matches!(kind.as_str(), "LoadBalancer" | "NodePort") {
            default_field(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
            default_field(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if kind == "LoadBalancer" {
            default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
            each_mut(obj, "status.loadBalancer.ingress", |ing| {
                if ing.get("ip").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty()) {
                    default_field(ing, "ipMode", json!("VIP"));
                }
            });
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
        if str_at(obj, "spec.type") == Some("ExternalName") {
            return;
        }
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty())
        {
            let ip = ip.to_string();
            default_field(spec, "clusterIPs", json!([ip]));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        let to_external = str_at(new, "spec.type") == Some("ExternalName");
        let (needs_node_ports, needed) = (gets_node_ports(new), gets_node_ports(old));
        let Some(spec) = new.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        if !to_external {
            for field in ALLOCATED {
                let missing = spec.get(*field).is_none_or(|v| v.is_null() || *v == json!(""));
                if let (true, Some(old_value)) = (missing, old.pointer(&format!("/spec/{field}"))) {
                    spec[*field] = old_value.clone();
                }
            }
        }
        // Node ports allocated before stay when the update leaves them out; a Service that
        // stops needing them (ClusterIP, ExternalName) loses those it did not change
        // (upstream's `dropTypeDependentFields`), so that `type: ClusterIP` alone is a valid
        // change, and an ExternalName keeps no port it no longer holds.
        let old_ports = array_at(old, "spec.ports").to_vec();
        each_mut(spec, "ports", |p| {
            let matching = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
            let old_node_port = matching.and_then(|o| o.get("nodePort"));
            let given = p.get("nodePort").filter(|n| !n.is_null());
            match (needs_node_ports, given, old_node_port) {
                (true, None, Some(node_port)) => p["nodePort"] = node_port.clone(),
                (false, Some(n), Some(o)) if n == o && needed => {
                    if let Some(map) = p.as_object_mut() {
                        map.remove("nodePort");
                    }
                }
                _ => {}
            }
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let kind = str_at(obj, "spec.type").unwrap_or("ClusterIP");
        if !TYPES.contains(&kind) {
            errors.push(FieldError::not_supported("spec.type", json!(kind), TYPES));
        }
        if let Some(a) = str_at(obj, "spec.sessionAffinity")
            && !["ClientIP", "None"].contains(&a)
        {
            errors.push(FieldError::not_supported(
                "spec.sessionAffinity",
                json!(a),
                &["ClientIP", "None"],
            ));
        }
        let headless = str_at(obj, "spec.clusterIP") == Some("None");
        let ports = array_at(obj, "spec.ports");
        if kind == "ExternalName" {
            if str_at(obj, "spec.externalName").is_none_or(str::is_empty) {
                errors.push(FieldError::required("spec.externalName"));
            }
        } else if ports.is_empty() && !headless {
            errors.push(FieldError::required("spec.ports"));
        }
        let mut names = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                if ports.len() > 1 {
                    errors.push(FieldError::required(format!("{at}.name")));
                }
            } else {
                for problem in dns1123_label(name) {
                    errors.push(FieldError::invalid(format!("{at}.name"), json!(name), problem));
                }
                if !names.insert(name) {
                    errors.push(FieldError::duplicate(format!("{at}.name"), json!(name)));
                }
            }
            match p.get("port").and_then(Value::as_i64) {
                None => errors.push(FieldError::required(format!("{at}.port"))),
                Some(n) if !(1..=65535).contains(&n) => errors.push(FieldError::invalid(
                    format!("{at}.port"),
                    json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                Some(_) => {}
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && !["SCTP", "TCP", "UDP"].contains(&proto)
            {
                errors.push(FieldError::not_supported(
                    format!("{at}.protocol"),
                    json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            if let Some(n) = p.get("targetPort").and_then(Value::as_i64)
                && !(1..=65535).contains(&n)
            {
                errors.push(FieldError::invalid(
                    format!("{at}.targetPort"),
                    json!(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            let node_port = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0);
            if node_port.is_some() && kind == "ClusterIP" {
                errors.push(FieldError::forbidden(
                    format!("{at}.nodePort"),
                    format!("may not be used when `type` is '{kind}'"),
                ));
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        let external = |s: &Value| str_at(s, "spec.type") == Some("ExternalName");
        if !external(new) && !external(old) {
            let old_ip = str_at(old, "spec.clusterIP").unwrap_or_default();
            let new_ip = str_at(new, "spec.clusterIP").unwrap_or_default();
            if !old_ip.is_empty() && new_ip != old_ip {
                errors.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    json!([new_ip]),
                    "may not change once set",
                ));
            }
        }
        errors
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![
            ("spec.clusterIP", string_at(obj, "spec.clusterIP")),
            ("spec.type", string_at(obj, "spec.type")),
        ]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["spec.clusterIP", "spec.type"])
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let kind = string_at(obj, "spec.type");
        let cluster_ip = array_at(obj, "spec.clusterIPs")
            .first()
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string();
        let ports: Vec<String> = array_at(obj, "spec.ports")
            .iter()
            .map(|p| {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or_default();
                match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                    Some(node) => format!("{port}:{node}/{proto}"),
                    None => format!("{port}/{proto}"),
                }
            })
            .collect();
        let ports = if ports.is_empty() { "<none>".into() } else { ports.join(",") };
        vec![
            json!(kind),
            json!(cluster_ip),
            json!(external_ip(obj, &kind)),
            json!(ports),
            age(obj, ctx),
            json!(format_labels(obj.pointer("/spec/selector"))),
        ]
    }
}

/// `getServiceExternalIP` with `wide` set, as server-side tables are.
fn external_ip(svc: &Value, kind: &str) -> String {
    let external: Vec<&str> =
        array_at(svc, "spec.externalIPs").iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<&str> = array_at(svc, "status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| {
                    i.get("ip").and_then(Value::as_str).filter(|s| !s.is_empty()).or_else(|| {
                        i.get("hostname").and_then(Value::as_str).filter(|s| !s.is_empty())
                    })
                })
                .collect();
            all.extend(external);
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => string_at(svc, "spec.externalName"),
        _ => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_type_affinity_and_ports() {
        let mut svc = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        ServiceStrategy.default(&mut svc);
        let once = svc.clone();
        ServiceStrategy.default(&mut svc);
        assert_eq!(svc, once);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        // The families are the allocator's: only it knows the cluster's.
        ServiceStrategy.prepare_for_create(&mut svc);
        assert!(svc["spec"].get("ipFamilyPolicy").is_none());
    }

    #[test]
    fn node_ports_go_with_the_type_that_gets_them() {
        let node_port = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.9",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        // Left out of an update, kept.
        let mut kept =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        ServiceStrategy.prepare_for_update(&mut kept, &node_port);
        assert_eq!(kept["spec"]["ports"][0]["nodePort"], 30080);
        // Turned into an ExternalName or a ClusterIP, dropped.
        for kind in ["ExternalName", "ClusterIP"] {
            let mut turned = node_port.clone();
            turned["spec"]["type"] = json!(kind);
            ServiceStrategy.prepare_for_update(&mut turned, &node_port);
            assert!(turned["spec"]["ports"][0].get("nodePort").is_none(), "{kind}: {turned}");
        }
        // An ExternalName that names one keeps it through other changes.
        let external = json!({"spec": {"type": "ExternalName", "externalName": "a.test",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut relabelled = external.clone();
        ServiceStrategy.prepare_for_update(&mut relabelled, &external);
        assert_eq!(relabelled["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn validation_and_cells() {
        let bad = json!({"spec": {"type": "Weird", "ports": [{"port": 70000}]}});
        let errors: Vec<String> =
            ServiceStrategy.validate(&bad).iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
        let svc = json!({"spec": {"type": "NodePort", "clusterIPs": ["10.0.0.1"], "selector": {"app": "x"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let ctx = TableContext { now: chrono::Utc::now() };
        let cells = ServiceStrategy.cells(&svc, &ctx);
        assert_eq!(
            cells[..4],
            [json!("NodePort"), json!("10.0.0.1"), json!("<none>"), json!("80:30080/TCP")]
        );
        assert_eq!(cells[5], "app=x");
    }
}
