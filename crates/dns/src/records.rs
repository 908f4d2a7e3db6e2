//! What the cluster's DNS names stand for: Services and their EndpointSlices, reduced to the
//! few fields DNS answers from and indexed for lookups by name and by address.
//!
//! An entry costs its strings and addresses (a Service with two ports is about 200 bytes, an
//! endpoint about 60); nothing else of the objects is kept.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespace and a name.
pub type Key = (String, String);

/// A port as DNS names it (`_name._protocol`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port's name (may be empty).
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The number.
    pub port: u16,
}

/// How a Service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// Through its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// Straight to its endpoints (`clusterIP: None`).
    Headless,
    /// An alias of another name.
    ExternalName(String),
}

/// The part of a Service that DNS answers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// How it is reached.
    pub kind: ServiceKind,
    /// Its ports.
    pub ports: Vec<Port>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// `hostname`, set for pods with a hostname and subdomain (StatefulSets).
    pub hostname: Option<String>,
    /// Whether it is ready (an absent condition counts as ready).
    pub ready: bool,
}

impl Endpoint {
    /// The label that names this endpoint under its Service: its hostname, else its first
    /// address with dashes (`10-42-0-5`), as upstream's DNS specification has it.
    pub fn label(&self) -> Option<String> {
        match &self.hostname {
            Some(h) => Some(h.to_ascii_lowercase()),
            None => self.addresses.first().map(dashed),
        }
    }
}

/// An address written as a DNS label: dots (or colons) as dashes.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The part of an EndpointSlice that DNS answers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRecord {
    /// The Service it belongs to (its namespace and `kubernetes.io/service-name`).
    pub service: Key,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Its ports (the endpoints' ports).
    pub ports: Vec<Port>,
}

/// What owns an address, for reverse lookups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Service(Key),
    Slice(Key),
}

/// Every Service and EndpointSlice, indexed.
#[derive(Debug, Default)]
pub struct Records {
    services: HashMap<Key, ServiceRecord>,
    slices: HashMap<Key, SliceRecord>,
    slices_of: HashMap<Key, BTreeSet<String>>,
    services_in: HashMap<String, usize>,
    by_address: HashMap<IpAddr, BTreeSet<Owner>>,
}

impl Records {
    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.services.get(&(namespace.to_string(), name.to_string()))
    }

    /// Whether any Service lives in `namespace`.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.services_in.contains_key(namespace)
    }

    /// The slices of the Service `namespace/name`.
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        name: &str,
    ) -> impl Iterator<Item = &'a SliceRecord> + 'a {
        self.slices_of
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .filter_map(move |slice| self.slices.get(&(namespace.to_string(), slice.clone())))
    }

    /// The names an address has: `(service key, endpoint label)` for each owner, the label
    /// `None` for a Service's cluster IP.
    pub fn names_of(&self, ip: &IpAddr) -> Vec<(Key, Option<String>)> {
        let mut names = Vec::new();
        for owner in self.by_address.get(ip).into_iter().flatten() {
            match owner {
                Owner::Service(key) => names.push((key.clone(), None)),
                Owner::Slice(key) => {
                    let Some(slice) = self.slices.get(key) else { continue };
                    let headless = matches!(
                        self.services.get(&slice.service),
                        Some(ServiceRecord { kind: ServiceKind::Headless, .. })
                    );
                    if !headless {
                        continue;
                    }
                    for endpoint in &slice.endpoints {
                        if endpoint.ready && endpoint.addresses.contains(ip) {
                            names.push((slice.service.clone(), endpoint.label()));
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Adds or replaces a Service.
    pub fn put_service(&mut self, key: Key, record: ServiceRecord) {
        self.delete_service(&key);
        if let ServiceKind::ClusterIp(ips) = &record.kind {
            for ip in ips {
                self.by_address.entry(*ip).or_default().insert(Owner::Service(key.clone()));
            }
        }
        *self.services_in.entry(key.0.clone()).or_default() += 1;
        self.services.insert(key, record);
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, key: &Key) {
        let Some(old) = self.services.remove(key) else { return };
        if let ServiceKind::ClusterIp(ips) = &old.kind {
            for ip in ips {
                self.unindex(ip, &Owner::Service(key.clone()));
            }
        }
        if let Some(count) = self.services_in.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.services_in.remove(&key.0);
            }
        }
    }

    /// Adds or replaces an EndpointSlice.
    pub fn put_slice(&mut self, key: Key, record: SliceRecord) {
        self.delete_slice(&key);
        for endpoint in &record.endpoints {
            for ip in &endpoint.addresses {
                self.by_address.entry(*ip).or_default().insert(Owner::Slice(key.clone()));
            }
        }
        self.slices_of.entry(record.service.clone()).or_default().insert(key.1.clone());
        self.slices.insert(key, record);
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, key: &Key) {
        let Some(old) = self.slices.remove(key) else { return };
        for endpoint in &old.endpoints {
            for ip in &endpoint.addresses {
                self.unindex(ip, &Owner::Slice(key.clone()));
            }
        }
        if let Some(names) = self.slices_of.get_mut(&old.service) {
            names.remove(&key.1);
            if names.is_empty() {
                self.slices_of.remove(&old.service);
            }
        }
    }

    /// The keys of every Service.
    pub fn service_keys(&self) -> Vec<Key> {
        self.services.keys().cloned().collect()
    }

    /// The keys of every EndpointSlice.
    pub fn slice_keys(&self) -> Vec<Key> {
        self.slices.keys().cloned().collect()
    }

    fn unindex(&mut self, ip: &IpAddr, owner: &Owner) {
        if let Some(owners) = self.by_address.get_mut(ip) {
            owners.remove(owner);
            if owners.is_empty() {
                self.by_address.remove(ip);
            }
        }
    }
}

/// The key of an object: its namespace and name.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// A Service's record.
pub fn service_record(service: &Service) -> ServiceRecord {
    let spec = service.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.unwrap_or_default();
        ServiceKind::ExternalName(target.trim_end_matches('.').to_ascii_lowercase())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .unwrap_or_default()
            .iter()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        ips.dedup();
        ServiceKind::ClusterIp(ips)
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(Port {
                name: p.name.unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    ServiceRecord { kind, ports }
}

/// An EndpointSlice's record, or `None` for a slice that names no Service.
pub fn slice_record(slice: &EndpointSlice) -> Option<SliceRecord> {
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| Endpoint {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname.clone(),
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .collect();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    Some(SliceRecord { service: (namespace, service), endpoints, ports })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    #[test]
    fn addresses_are_indexed_and_unindexed() {
        let mut records = Records::default();
        let ip: IpAddr = "10.43.0.20".parse().unwrap();
        records.put_service(
            key("default", "web"),
            ServiceRecord { kind: ServiceKind::ClusterIp(vec![ip]), ports: vec![] },
        );
        assert_eq!(records.names_of(&ip), vec![(key("default", "web"), None)]);
        assert!(records.has_namespace("default"));
        records.put_service(
            key("default", "web"),
            ServiceRecord { kind: ServiceKind::Headless, ports: vec![] },
        );
        assert!(records.names_of(&ip).is_empty());
        records.delete_service(&key("default", "web"));
        assert!(!records.has_namespace("default"));
    }

    #[test]
    fn endpoints_have_names_only_under_headless_services() {
        let mut records = Records::default();
        let ip: IpAddr = "10.42.0.5".parse().unwrap();
        let slice = SliceRecord {
            service: key("default", "db"),
            endpoints: vec![Endpoint { addresses: vec![ip], hostname: None, ready: true }],
            ports: vec![],
        };
        records.put_slice(key("default", "db-abc"), slice);
        records.put_service(
            key("default", "db"),
            ServiceRecord { kind: ServiceKind::ClusterIp(vec![]), ports: vec![] },
        );
        assert!(records.names_of(&ip).is_empty());
        records.put_service(
            key("default", "db"),
            ServiceRecord { kind: ServiceKind::Headless, ports: vec![] },
        );
        assert_eq!(
            records.names_of(&ip),
            vec![(key("default", "db"), Some("10-42-0-5".to_string()))]
        );
        assert_eq!(records.slices_of("default", "db").count(), 1);
        records.delete_slice(&key("default", "db-abc"));
        assert!(records.names_of(&ip).is_empty());
        assert_eq!(records.slices_of("default", "db").count(), 0);
    }
}
