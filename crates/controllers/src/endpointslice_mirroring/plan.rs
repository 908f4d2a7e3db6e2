//! The EndpointSlices that mirror an Endpoints object (upstream's endpointslicemirroring
//! `reconciler`): each subset's addresses become endpoints (ready, or not for
//! `notReadyAddresses`), grouped by address type and ports, at most [`MAX_ENDPOINTS`] a slice;
//! the slices carry the Endpoints' labels and annotations and are owned by it. The changes are
//! found by content: a slice already holding what one desired slice holds is left alone, others
//! are rewritten, and what is left over is created or deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpoint_slice::plan::{MANAGED_BY, Plan, SERVICE_NAME};
use crate::runtime::owner::controller_ref;

/// This controller's value of the `managed-by` label.
pub const CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints labelled `"true"` with this are not mirrored (their writer writes slices too).
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The most addresses of one subset mirrored (upstream's
/// `--mirroring-max-endpoints-per-subset` default).
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// The most endpoints one slice holds.
pub const MAX_ENDPOINTS: usize = 100;
/// Annotations of the Endpoints that are not copied to its slices.
const NOT_COPIED: &[&str] = &[
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Whether `endpoints` is mirrored: not marked to skip, and its Service exists without a
/// selector (the EndpointSlice controller serves those with one).
pub fn should_mirror(endpoints: &Endpoints, service: Option<&Service>) -> bool {
    let skip = endpoints.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR));
    let selector = service.and_then(|s| s.spec.as_ref()?.selector.as_ref());
    skip.map(String::as_str) != Some("true")
        && service.is_some()
        && selector.is_none_or(BTreeMap::is_empty)
}

/// The slices `endpoints` mirrors into, without names (they are created with `generateName`).
pub fn desired(endpoints: &Endpoints) -> Vec<EndpointSlice> {
    // (address type, ports) → the ports and the endpoints, in the subsets' order.
    type Group = (Vec<EndpointPort>, Vec<Endpoint>);
    let mut groups: BTreeMap<(String, Vec<PortKey>), Group> = BTreeMap::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone().or_else(|| Some("TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        ports.sort_by_key(PortKey::of);
        let key: Vec<PortKey> = ports.iter().map(PortKey::of).collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (address, is_ready) in ready.chain(not_ready).take(MAX_ENDPOINTS_PER_SUBSET) {
            let Some(address_type) = address_type(&address.ip) else { continue };
            let (_, group) = groups
                .entry((address_type.to_string(), key.clone()))
                .or_insert_with(|| (ports.clone(), Vec::new()));
            if !group.iter().any(|e| e.addresses.first() == Some(&address.ip)) {
                group.push(endpoint(address, is_ready));
            }
        }
    }
    let mut slices = Vec::new();
    for ((address_type, _), (ports, members)) in groups {
        for chunk in members.chunks(MAX_ENDPOINTS) {
            slices.push(EndpointSlice {
                metadata: metadata(endpoints),
                address_type: address_type.clone(),
                endpoints: chunk.to_vec(),
                ports: Some(ports.clone()),
            });
        }
    }
    slices
}

/// What makes two ports the same for grouping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey(Option<String>, Option<i32>, Option<String>, Option<String>);

impl PortKey {
    fn of(port: &EndpointPort) -> Self {
        Self(port.name.clone(), port.port, port.protocol.clone(), port.app_protocol.clone())
    }
}

fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

fn endpoint(address: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![address.ip.clone()],
        conditions: Some(EndpointConditions { ready: Some(ready), ..Default::default() }),
        hostname: address.hostname.clone(),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    }
}

/// A mirrored slice's metadata: the Endpoints' labels and annotations, the service name and
/// manager, owned by the Endpoints.
fn metadata(endpoints: &Endpoints) -> ObjectMeta {
    let name = endpoints.metadata.name.clone().unwrap_or_default();
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let annotations: BTreeMap<String, String> = endpoints
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ObjectMeta {
        generate_name: Some(format!("{name}-")),
        namespace: endpoints.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![controller_ref("v1", "Endpoints", &endpoints.metadata)]),
        ..Default::default()
    }
}

/// Whether `slice` holds what `want` does.
fn holds(slice: &EndpointSlice, want: &EndpointSlice) -> bool {
    slice.address_type == want.address_type
        && slice.ports == want.ports
        && slice.endpoints == want.endpoints
        && slice.metadata.labels == want.metadata.labels
        && slice.metadata.annotations.clone().unwrap_or_default()
            == want.metadata.annotations.clone().unwrap_or_default()
        && slice.metadata.owner_references == want.metadata.owner_references
}

/// The changes that turn `current` (the mirrored slices of one Endpoints) into `desired`.
pub fn plan(desired: Vec<EndpointSlice>, current: &[&EndpointSlice]) -> Plan {
    let mut unused: Vec<&EndpointSlice> = current.to_vec();
    let mut missing = Vec::new();
    for want in desired {
        match unused.iter().position(|c| holds(c, &want)) {
            Some(i) => {
                unused.remove(i);
            }
            None => missing.push(want),
        }
    }
    let mut plan = Plan::default();
    for want in missing {
        if unused.is_empty() {
            plan.create.push(want);
            continue;
        }
        let old = unused.remove(0);
        let mut metadata = old.metadata.clone();
        metadata.labels = want.metadata.labels;
        metadata.annotations = want.metadata.annotations;
        metadata.owner_references = want.metadata.owner_references;
        plan.update.push(EndpointSlice { metadata, ..want });
    }
    plan.delete = unused.into_iter().cloned().collect();
    plan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::core::v1::{EndpointPort as CorePort, EndpointSubset, ServiceSpec};

    use super::*;

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress { ip: ip.into(), ..Default::default() }
    }

    fn endpoints(subsets: Vec<EndpointSubset>) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                annotations: Some(
                    [
                        ("note".to_string(), "kept".to_string()),
                        (NOT_COPIED[0].to_string(), "t".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            subsets: Some(subsets),
        }
    }

    fn subset(ready: &[&str], not_ready: &[&str], port: i32) -> EndpointSubset {
        EndpointSubset {
            addresses: Some(ready.iter().map(|ip| address(ip)).collect()),
            not_ready_addresses: Some(not_ready.iter().map(|ip| address(ip)).collect()),
            ports: Some(vec![CorePort { port, name: Some("pg".into()), ..Default::default() }]),
        }
    }

    #[test]
    fn only_selector_less_services_are_mirrored() {
        let e = endpoints(vec![]);
        let plain = Service::default();
        let selected = Service {
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(should_mirror(&e, Some(&plain)));
        assert!(!should_mirror(&e, Some(&selected)));
        assert!(!should_mirror(&e, None));
        let mut skipped = endpoints(vec![]);
        skipped.metadata.labels.as_mut().unwrap().insert(SKIP_MIRROR.into(), "true".into());
        assert!(!should_mirror(&skipped, Some(&plain)));
    }

    #[test]
    fn subsets_become_slices_by_address_type_and_ports() {
        let e = endpoints(vec![
            subset(&["10.0.0.1"], &["10.0.0.2"], 5432),
            subset(&["fd00::1"], &[], 5432),
            subset(&["10.0.0.3"], &[], 6432),
        ]);
        let slices = desired(&e);
        assert_eq!(slices.len(), 3);
        let v4: Vec<&EndpointSlice> = slices.iter().filter(|s| s.address_type == "IPv4").collect();
        let first = v4.iter().find(|s| s.ports.as_ref().unwrap()[0].port == Some(5432)).unwrap();
        let ready: Vec<(String, bool)> = first
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready.unwrap()))
            .collect();
        assert_eq!(ready, [("10.0.0.1".to_string(), true), ("10.0.0.2".to_string(), false)]);
        let meta = &first.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("db-"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME], "db");
        assert_eq!(labels[MANAGED_BY], CONTROLLER);
        assert_eq!(labels["team"], "a");
        assert_eq!(meta.annotations.as_ref().unwrap().keys().collect::<Vec<_>>(), ["note"]);
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].kind, "Endpoints");
        assert_eq!(first.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn slices_already_right_are_left_alone_and_others_rewritten() {
        let e = endpoints(vec![subset(&["10.0.0.1"], &[], 80)]);
        let mut kept = desired(&e).remove(0);
        kept.metadata.name = Some("db-abc".into());
        let plan1 = plan(desired(&e), &[&kept]);
        assert!(plan1.is_empty());

        let moved = endpoints(vec![subset(&["10.0.0.9"], &[], 80)]);
        let plan2 = plan(desired(&moved), &[&kept]);
        assert_eq!(plan2.update.len(), 1);
        assert_eq!(plan2.update[0].metadata.name.as_deref(), Some("db-abc"));
        assert_eq!(plan2.update[0].endpoints[0].addresses, ["10.0.0.9"]);

        let gone = plan(Vec::new(), &[&kept]);
        assert_eq!(gone.delete.len(), 1);
        let fresh = plan(desired(&e), &[]);
        assert_eq!(fresh.create.len(), 1);
    }
}
