//! The EndpointSlices a Service should have, as changes to the ones it has (upstream's
//! endpointslice `reconciler`): the selected pods become endpoints, grouped by address type
//! and by the ports they offer; each group fills its existing slices first (a slice is only
//! rewritten when what it holds changes), then new slices of at most [`MAX_ENDPOINTS`].
//! A service without endpoints keeps one empty placeholder slice per address type.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpoints::subsets::{HEADLESS, is_family};
use crate::runtime::endpoint::{
    hostname, is_headless, is_ready, pod_ips, publishes_not_ready, should_include, target_port,
};
use crate::runtime::owner::controller_ref;

/// The most endpoints one slice holds (upstream's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS: usize = 100;
/// The label naming a slice's service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY`].
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The node label giving its zone.
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// The zone of `node`, from its label.
pub fn zone_of(node: &Node) -> Option<String> {
    node.metadata.labels.as_ref()?.get(ZONE).cloned()
}

/// What to write.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (named by `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed slices, each still carrying the resourceVersion it was read at.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The ports and address type that put endpoints in the same slices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Group {
    address_type: String,
    ports: Vec<PortKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

/// The plan for `service` over the `pods` its selector matches, its `existing` slices (those
/// this controller manages for it), with `zone` giving the zone of the node a pod runs on.
pub fn plan(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    zone: impl Fn(&str) -> Option<String>,
) -> Plan {
    let address_types = address_types(service);
    let mut desired: BTreeMap<Group, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for pod in pods.iter().copied().filter(|p| should_include(p, true)) {
        let ports = ports(service, pod);
        for address_type in &address_types {
            let Some(ip) = pod_ips(pod).into_iter().find(|ip| is_family(ip, address_type)) else {
                continue;
            };
            let group = Group { address_type: address_type.clone(), ports: ports.clone() };
            let endpoint = endpoint(service, pod, ip, &zone);
            desired.entry(group).or_default().insert(key(&endpoint), endpoint);
        }
    }
    let labels = labels(service);
    let mut by_group: HashMap<Group, Vec<&EndpointSlice>> = HashMap::new();
    let mut plan = Plan::default();
    for slice in existing {
        let group = slice_group(slice);
        if address_types.contains(&group.address_type) {
            by_group.entry(group).or_default().push(slice);
        } else {
            plan.delete.push((*slice).clone());
        }
    }
    for (group, endpoints) in desired {
        let slices = by_group.remove(&group).unwrap_or_default();
        fill(&mut plan, service, &labels, &group, endpoints, slices);
    }
    // Slices of ports no endpoint offers any more.
    let mut stale: Vec<&EndpointSlice> = by_group.into_values().flatten().collect();
    stale.sort_by_key(|s| s.metadata.name.clone());
    plan.delete.extend(stale.into_iter().cloned());
    placeholders(&mut plan, service, &labels, &address_types, existing);
    plan
}

/// Puts one group's endpoints into its existing slices and new ones.
fn fill(
    plan: &mut Plan,
    service: &Service,
    labels: &BTreeMap<String, String>,
    group: &Group,
    mut desired: BTreeMap<String, Endpoint>,
    mut slices: Vec<&EndpointSlice>,
) {
    slices.sort_by_key(|s| s.metadata.name.clone());
    let mut changed: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    for slice in slices {
        let kept: Vec<Endpoint> =
            slice.endpoints.iter().filter_map(|e| desired.remove(&key(e))).collect();
        if kept.is_empty() {
            plan.delete.push(slice.clone());
        } else if kept != slice.endpoints || slice.metadata.labels.as_ref() != Some(labels) {
            let mut updated = slice.clone();
            updated.endpoints = kept;
            updated.metadata.labels = Some(labels.clone());
            changed.push(updated);
        } else {
            unchanged.push(slice);
        }
    }
    let mut left: Vec<Endpoint> = desired.into_values().collect();
    // First into the slices written anyway.
    for slice in &mut changed {
        let room = MAX_ENDPOINTS.saturating_sub(slice.endpoints.len()).min(left.len());
        slice.endpoints.extend(left.drain(..room));
    }
    // Then into one untouched slice, if it takes them all (one write instead of a new slice).
    if !left.is_empty()
        && let Some(slice) = unchanged
            .iter()
            .find(|s| MAX_ENDPOINTS - s.endpoints.len().min(MAX_ENDPOINTS) >= left.len())
    {
        let mut updated = (*slice).clone();
        updated.endpoints.append(&mut left);
        changed.push(updated);
    }
    for chunk in left.chunks(MAX_ENDPOINTS) {
        plan.create.push(new_slice(service, labels, group, chunk.to_vec()));
    }
    plan.update.extend(changed);
}

/// Keeps one empty slice per address type that has no endpoints at all.
fn placeholders(
    plan: &mut Plan,
    service: &Service,
    labels: &BTreeMap<String, String>,
    address_types: &[String],
    existing: &[&EndpointSlice],
) {
    for address_type in address_types {
        let has = |s: &EndpointSlice| s.address_type == *address_type;
        let kept =
            existing.iter().filter(|s| has(s) && !plan.delete.iter().any(|d| same(d, s))).count();
        if kept + plan.create.iter().filter(|s| has(s)).count() > 0 {
            continue;
        }
        // An existing placeholder stays; anything else is replaced by one.
        let placeholder = |s: &EndpointSlice| {
            has(s) && s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty)
        };
        if let Some(at) = plan.delete.iter().position(placeholder) {
            let slice = plan.delete.remove(at);
            if slice.metadata.labels.as_ref() != Some(labels) {
                let mut updated = slice;
                updated.metadata.labels = Some(labels.clone());
                plan.update.push(updated);
            }
            continue;
        }
        let group = Group { address_type: address_type.clone(), ports: Vec::new() };
        plan.create.push(new_slice(service, labels, &group, Vec::new()));
    }
}

fn same(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.metadata.name == b.metadata.name
}

/// The address types a service's slices carry: one per IP family (IPv4 when none is set).
fn address_types(service: &Service) -> Vec<String> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.clone()).unwrap_or_default();
    if families.is_empty() { vec!["IPv4".to_string()] } else { families }
}

/// The ports `pod` offers for the service's ports (those it cannot resolve left out).
fn ports(service: &Service, pod: &Pod) -> Vec<PortKey> {
    let mut ports: Vec<PortKey> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(PortKey {
                name: port.name.clone().unwrap_or_default(),
                port: target_port(pod, port)?,
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort();
    ports
}

/// A pod's endpoint (upstream's `podToEndpoint`).
fn endpoint(
    service: &Service,
    pod: &Pod,
    ip: &str,
    zone: &impl Fn(&str) -> Option<String>,
) -> Endpoint {
    let publish = publishes_not_ready(service);
    let serving = publish || is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    let zone = node_name.as_deref().and_then(zone).filter(|z| !z.is_empty());
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, service),
        node_name,
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// An endpoint's identity within a service: its pod, else its first address.
fn key(endpoint: &Endpoint) -> String {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|t| t.uid.clone())
        .unwrap_or_else(|| endpoint.addresses.first().cloned().unwrap_or_default())
}

fn slice_group(slice: &EndpointSlice) -> Group {
    let mut ports: Vec<PortKey> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| PortKey {
            name: p.name.clone().unwrap_or_default(),
            port: p.port.unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    ports.sort();
    Group { address_type: slice.address_type.clone(), ports }
}

/// A slice's labels (upstream's `setEndpointSliceLabels`): the service's, its name, the
/// manager, and the headless mark.
fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS);
    labels.insert(SERVICE_NAME.to_string(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY.to_string(), CONTROLLER.to_string());
    if is_headless(service) {
        labels.insert(HEADLESS.to_string(), String::new());
    }
    labels
}

fn new_slice(
    service: &Service,
    labels: &BTreeMap<String, String>,
    group: &Group,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    // generateName leaves room for its five characters within 63.
    let prefix: String = name.chars().take(57).collect();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![controller_ref("v1", "Service", &service.metadata)]),
            ..ObjectMeta::default()
        },
        address_type: group.address_type.clone(),
        endpoints,
        ports: Some(
            group
                .ports
                .iter()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone()),
                    port: Some(p.port),
                    protocol: Some(p.protocol.clone()),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
        ),
    }
}

/// Whether a slice is one this controller manages for the service `name`.
pub fn managed_for(slice: &EndpointSlice, name: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    labels.and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(CONTROLLER)
        && labels.and_then(|l| l.get(SERVICE_NAME)).map(String::as_str) == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::endpoint::tests::{pod, port, service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn no_node(_: &str) -> Option<String> {
        None
    }

    fn pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 250, i % 250 + 1), true))
            .collect()
    }

    /// The plan's creations as if the server had named them.
    fn created(plan: &Plan) -> Vec<EndpointSlice> {
        plan.create
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("web-{i}"));
                s
            })
            .collect()
    }

    #[test]
    fn a_new_service_gets_slices_of_at_most_a_hundred() {
        let svc = service(vec![port("http", 8080, IntOrString::String("http".into()))]);
        let pods = pods(250);
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan(&svc, &refs, &[], no_node);
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(plan.update.is_empty() && plan.delete.is_empty());
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.as_ref().expect("present");
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], CONTROLLER);
        let ports = slice.ports.as_ref().expect("present");
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), Some(80)));
        let owner = &slice.metadata.owner_references.as_ref().expect("present")[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Service", Some(true)));
    }

    #[test]
    fn unchanged_slices_are_not_written_and_changes_touch_one_slice() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let mut pods = pods(150);
        let refs: Vec<&Pod> = pods.iter().collect();
        let existing = created(&plan(&svc, &refs, &[], no_node));
        let existing_refs: Vec<&EndpointSlice> = existing.iter().collect();
        assert!(plan(&svc, &refs, &existing_refs, no_node).is_empty());
        // One pod turns unready: only its slice is rewritten, with its conditions.
        let flipped = pods[120].metadata.name.clone();
        pods[120] = pod(flipped.as_deref().expect("present"), "10.42.0.121", false);
        let refs: Vec<&Pod> = pods.iter().collect();
        let next = plan(&svc, &refs, &existing_refs, no_node);
        assert!(next.create.is_empty() && next.delete.is_empty());
        assert_eq!(next.update.len(), 1);
        let ep = next.update[0]
            .endpoints
            .iter()
            .find(|e| e.addresses == ["10.42.0.121"])
            .expect("present");
        let conditions = ep.conditions.as_ref().expect("present");
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn new_endpoints_fill_room_before_new_slices() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let pods = pods(130);
        let first: Vec<&Pod> = pods.iter().take(120).collect();
        let existing = created(&plan(&svc, &first, &[], no_node));
        let existing_refs: Vec<&EndpointSlice> = existing.iter().collect();
        let all: Vec<&Pod> = pods.iter().collect();
        let next = plan(&svc, &all, &existing_refs, no_node);
        assert!(next.create.is_empty(), "ten more fit the slice of twenty");
        assert_eq!(next.update.len(), 1);
        assert_eq!(next.update[0].endpoints.len(), 30);
    }

    #[test]
    fn terminating_pods_stay_as_terminating_endpoints() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let mut p = pod("a", "10.42.0.5", true);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let plan = plan(&svc, &[&p], &[], no_node);
        let c = plan.create[0].endpoints[0].conditions.clone().expect("present");
        assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let plan1 = plan(&svc, &[], &[], no_node);
        assert_eq!(plan1.create.len(), 1);
        assert!(plan1.create[0].endpoints.is_empty());
        assert_eq!(plan1.create[0].ports.as_deref(), Some(&[][..]));
        let placeholder = created(&plan1);
        let refs: Vec<&EndpointSlice> = placeholder.iter().collect();
        assert!(plan(&svc, &[], &refs, no_node).is_empty(), "the placeholder stays as it is");
        // Pods arrive: a real slice is made and the placeholder goes.
        let p = pod("a", "10.42.0.5", true);
        let next = plan(&svc, &[&p], &refs, no_node);
        assert_eq!((next.create.len(), next.delete.len()), (1, 1));
        // All pods go: the emptied slice is replaced by a placeholder.
        let real = created(&next);
        let refs: Vec<&EndpointSlice> = real.iter().collect();
        let last = plan(&svc, &[], &refs, no_node);
        assert_eq!((last.create.len(), last.delete.len()), (1, 1));
        assert!(last.create[0].endpoints.is_empty());
    }

    #[test]
    fn ports_split_slices_and_zones_come_from_nodes() {
        let svc = service(vec![port("http", 8080, IntOrString::String("http".into()))]);
        let a = pod("a", "10.42.0.5", true);
        let mut b = pod("b", "10.42.0.6", true);
        b.spec.as_mut().expect("present").containers[0].ports.as_mut().expect("present")[0]
            .container_port = 81;
        let node = Node {
            metadata: ObjectMeta {
                name: Some("node-a".into()),
                labels: Some([(ZONE.to_string(), "zone-1".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let plan =
            plan(&svc, &[&a, &b], &[], |n: &str| (n == "node-a").then(|| zone_of(&node)).flatten());
        assert_eq!(plan.create.len(), 2, "pods offering different ports go to different slices");
        assert_eq!(plan.create[0].endpoints[0].zone.as_deref(), Some("zone-1"));
        assert_eq!(plan.create[0].endpoints[0].node_name.as_deref(), Some("node-a"));
    }
}
