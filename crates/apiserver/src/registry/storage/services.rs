//! Service cluster IPs and node ports. Each allocated cluster IP is an `IPAddress` object
//! (networking.k8s.io/v1) named after the address, as upstream 1.33 records them; each node
//! port is a key under `/registry/krust/servicenodeports/`. The store's create-if-absent makes
//! an allocation atomic, so two servers never hand out the same address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use krust_api::StatusError;
use krust_api::object::{meta_str, path};
use krust_api::validation::FieldError;
use krust_store::{Store, StoreError};
use serde_json::{Value, json};

use super::{ResourceHooks, ResourceStorage};
use crate::registry::meta::timestamp;

/// The storage of `services`: cluster IPs and node ports allocated from `ranges` around its
/// writes.
pub(super) fn storage(ranges: ServiceRanges) -> ResourceStorage {
    ResourceStorage {
        hooks: Some(std::sync::Arc::new(ServiceAllocator::new(ranges))),
        ..ResourceStorage::new("", "services")
    }
}

/// How many random picks are tried before the range is called full.
const ATTEMPTS: usize = 64;

/// The address ranges services are allocated from.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRanges {
    /// The service CIDR's network address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The first and last node port.
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self { network: Ipv4Addr::new(10, 43, 0, 0), prefix: 16, node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    /// The number of addresses in the CIDR.
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix.min(32)))
    }

    /// Whether `ip` is an allocatable address (not the network or broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.network));
        offset > 0 && offset < self.size() - 1
    }

    /// The address `offset` places into the range.
    fn at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    /// The first address, kept for the `kubernetes` service.
    pub fn first(&self) -> Ipv4Addr {
        self.at(1)
    }

    /// The tenth address, kept for the cluster DNS service (`kube-system/kube-dns`), as
    /// upstream's installers and k3s keep it.
    pub fn dns(&self) -> Ipv4Addr {
        self.at(10)
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }
}

/// A random number from a fresh UUID (no other randomness source is needed here).
fn random() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Allocates cluster IPs and node ports for services.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceAllocator {
    ranges: ServiceRanges,
}

/// Where allocated cluster IPs are recorded (upstream's IPAddress objects' place).
const IP_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// Where allocated node ports are recorded.
const PORT_PREFIX: &str = "/registry/krust/servicenodeports/";

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// The last segment of every key under `prefix`: the addresses or ports already taken.
async fn taken(store: &dyn Store, prefix: &str) -> Result<HashSet<String>, StatusError> {
    let mut names = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), 4096, None).await.map_err(internal)?;
        for item in &page.items {
            names.insert(item.key.rsplit('/').next().unwrap_or_default().to_string());
        }
        match (page.more, page.items.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(names),
        }
    }
}

fn invalid(obj: &Value, errors: Vec<FieldError>) -> StatusError {
    StatusError::invalid("", "Service", meta_str(obj, "name").unwrap_or_default(), &errors)
}

fn internal(e: StoreError) -> StatusError {
    StatusError::internal(format!("cannot record an allocation: {e}"))
}

impl ServiceAllocator {
    /// An allocator over `ranges`.
    pub fn new(ranges: ServiceRanges) -> Self {
        Self { ranges }
    }

    fn ip_record(&self, ip: Ipv4Addr, svc: &Value) -> Vec<u8> {
        let record = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip.to_string(),
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": timestamp(chrono::Utc::now()),
                "labels": {
                    "ipaddress.kubernetes.io/ip-family": "IPv4",
                    "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                },
            },
            "spec": {"parentRef": {
                "group": "",
                "resource": "services",
                "namespace": meta_str(svc, "namespace").unwrap_or_default(),
                "name": meta_str(svc, "name").unwrap_or_default(),
            }},
        });
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// Reserves `ip` (a requested address) or a free one; answers the address.
    async fn reserve_ip(
        &self,
        store: &dyn Store,
        svc: &Value,
        requested: Option<&str>,
        dry_run: bool,
    ) -> Result<Ipv4Addr, StatusError> {
        if let Some(raw) = requested {
            let field = "spec.clusterIPs[0]";
            let ip: Ipv4Addr = raw.parse().map_err(|_| {
                invalid(
                    svc,
                    vec![FieldError::invalid(
                        field,
                        json!(raw),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )],
                )
            })?;
            if !self.ranges.contains(ip) {
                let detail = format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    self.ranges.cidr()
                );
                return Err(invalid(svc, vec![FieldError::invalid(field, json!([raw]), detail)]));
            }
            if dry_run {
                return Ok(ip);
            }
            return match store.create(&ip_key(ip), self.ip_record(ip, svc)).await {
                Ok(_) => Ok(ip),
                Err(StoreError::AlreadyExists { .. }) => {
                    let detail =
                        format!("failed to allocate IP {ip}: provided IP is already allocated");
                    Err(invalid(svc, vec![FieldError::invalid(field, json!([raw]), detail)]))
                }
                Err(e) => Err(internal(e)),
            };
        }
        let usable = self.ranges.size().saturating_sub(2).max(1);
        for _ in 0..ATTEMPTS {
            // Skip the first address: it belongs to the `kubernetes` service.
            let ip = self.ranges.at(2 + random() % usable.saturating_sub(1).max(1));
            if dry_run {
                return Ok(ip);
            }
            match store.create(&ip_key(ip), self.ip_record(ip, svc)).await {
                Ok(_) => return Ok(ip),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        // A crowded range: scan it from a random offset, past the addresses taken (as
        // upstream's bitmap allocator does), so that the last free address is found too.
        let held = taken(store, IP_PREFIX).await?;
        let count = usable.saturating_sub(1).max(1);
        let start = random() % count;
        for step in 0..count {
            let ip = self.ranges.at(2 + (start + step) % count);
            if held.contains(&ip.to_string()) {
                continue;
            }
            match store.create(&ip_key(ip), self.ip_record(ip, svc)).await {
                Ok(_) => return Ok(ip),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(StatusError::internal(format!(
            "failed to allocate a serviceIP: range {} is full",
            self.ranges.cidr()
        )))
    }

    /// Reserves the node ports of a NodePort or LoadBalancer service: those it asks for
    /// (beyond `held`, which an update's old object already holds) and new ones for ports
    /// without.
    async fn reserve_ports(
        &self,
        store: &dyn Store,
        svc: &mut Value,
        held: &[u16],
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let name = meta_str(svc, "name").unwrap_or_default().to_string();
        let kind = path(svc, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            return Ok(());
        }
        let (low, high) = self.ranges.node_ports;
        let count = u32::from(high - low) + 1;
        let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (i, port) in ports.iter_mut().enumerate() {
            let wanted = port.get("nodePort").and_then(Value::as_u64).filter(|p| *p != 0);
            if let Some(p) = wanted {
                let ok = u16::try_from(p).ok().filter(|p| (low..=high).contains(p));
                let Some(p) = ok else {
                    let detail = format!(
                        "provided port is not in the valid range. The range of valid ports is {low}-{high}"
                    );
                    return Err(StatusError::invalid(
                        "",
                        "Service",
                        &name,
                        &[FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            json!(p),
                            detail,
                        )],
                    ));
                };
                if dry_run || held.contains(&p) {
                    continue;
                }
                match store.create(&port_key(p), Vec::new()).await {
                    Ok(_) => continue,
                    Err(StoreError::AlreadyExists { .. }) => {
                        let detail = "provided port is already allocated";
                        return Err(StatusError::invalid(
                            "",
                            "Service",
                            &name,
                            &[FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(p),
                                detail,
                            )],
                        ));
                    }
                    Err(e) => return Err(internal(e)),
                }
            }
            let mut chosen = None;
            for _ in 0..ATTEMPTS {
                let p = low + (random() % count) as u16;
                if dry_run {
                    chosen = Some(p);
                    break;
                }
                match store.create(&port_key(p), Vec::new()).await {
                    Ok(_) => {
                        chosen = Some(p);
                        break;
                    }
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(internal(e)),
                }
            }
            if chosen.is_none() {
                // A crowded range: scan it from a random offset, past the ports taken.
                let held = taken(store, PORT_PREFIX).await?;
                let start = random() % count;
                for step in 0..count {
                    let p = low + ((start + step) % count) as u16;
                    if held.contains(&p.to_string()) {
                        continue;
                    }
                    match store.create(&port_key(p), Vec::new()).await {
                        Ok(_) => {
                            chosen = Some(p);
                            break;
                        }
                        Err(StoreError::AlreadyExists { .. }) => continue,
                        Err(e) => return Err(internal(e)),
                    }
                }
            }
            let Some(p) = chosen else {
                return Err(StatusError::internal("failed to allocate a nodePort: range is full"));
            };
            port["nodePort"] = json!(p);
        }
        Ok(())
    }

    /// What a service holds: its cluster IP (if allocated) and node ports.
    fn held(svc: &Value) -> (Option<Ipv4Addr>, Vec<u16>) {
        let ip = path(svc, "spec.clusterIP").and_then(Value::as_str).and_then(|ip| ip.parse().ok());
        let ports = path(svc, "spec.ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                    .filter_map(|p| u16::try_from(p).ok())
                    .collect()
            })
            .unwrap_or_default();
        (ip, ports)
    }

    async fn release(&self, store: &dyn Store, ip: Option<Ipv4Addr>, ports: &[u16]) {
        if let Some(ip) = ip.filter(|ip| self.ranges.contains(*ip)) {
            let _ = store.delete(&ip_key(ip), None).await;
        }
        for p in ports {
            let _ = store.delete(&port_key(*p), None).await;
        }
    }
}

#[async_trait]
impl ResourceHooks for ServiceAllocator {
    async fn before_create(
        &self,
        store: &dyn Store,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let kind = path(obj, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
        let requested = path(obj, "spec.clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string);
        if kind != "ExternalName" && requested.as_deref() != Some("None") {
            let ip = self.reserve_ip(store, obj, requested.as_deref(), dry_run).await?;
            obj["spec"]["clusterIP"] = json!(ip.to_string());
            obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        if let Err(e) = self.reserve_ports(store, obj, &[], dry_run).await {
            if !dry_run {
                self.create_failed(store, obj).await;
            }
            return Err(e);
        }
        Ok(())
    }

    async fn create_failed(&self, store: &dyn Store, obj: &Value) {
        let (ip, ports) = Self::held(obj);
        self.release(store, ip, &ports).await;
    }

    async fn before_update(
        &self,
        store: &dyn Store,
        new: &mut Value,
        old: &Value,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let (old_ip, old_ports) = Self::held(old);
        let kind = path(new, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
        let has_ip =
            path(new, "spec.clusterIP").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty());
        if kind != "ExternalName" && !has_ip && old_ip.is_none() {
            let ip = self.reserve_ip(store, new, None, dry_run).await?;
            new["spec"]["clusterIP"] = json!(ip.to_string());
            new["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        self.reserve_ports(store, new, &old_ports, dry_run).await
    }

    async fn after_update(&self, store: &dyn Store, new: &Value, old: &Value) {
        let (old_ip, old_ports) = Self::held(old);
        let (new_ip, new_ports) = Self::held(new);
        let gone_ip = old_ip.filter(|ip| Some(*ip) != new_ip);
        let gone_ports: Vec<u16> =
            old_ports.into_iter().filter(|p| !new_ports.contains(p)).collect();
        self.release(store, gone_ip, &gone_ports).await;
    }

    async fn after_delete(&self, store: &dyn Store, obj: &Value) {
        let (ip, ports) = Self::held(obj);
        self.release(store, ip, &ports).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_excludes_network_and_broadcast_addresses() {
        let ranges = ServiceRanges::default();
        assert!(!ranges.contains(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(ranges.contains(Ipv4Addr::new(10, 43, 0, 1)));
        assert!(ranges.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!ranges.contains(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!ranges.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(ranges.first(), Ipv4Addr::new(10, 43, 0, 1));
    }

    #[tokio::test]
    async fn a_crowded_range_gives_its_last_free_address() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let store = krust_store::embedded::EmbeddedStore::open(&dir.path().join("db")).unwrap();
        // A /27: 30 usable addresses, the first the `kubernetes` Service's.
        let ranges = ServiceRanges {
            network: Ipv4Addr::new(10, 9, 0, 0),
            prefix: 27,
            node_ports: (30000, 30004),
        };
        let allocator = ServiceAllocator::new(ranges);
        let svc = json!({"metadata": {"name": "s", "namespace": "default"}});
        let mut got = HashSet::new();
        for _ in 0..29 {
            assert!(got.insert(allocator.reserve_ip(&store, &svc, None, false).await.unwrap()));
        }
        assert!(!got.contains(&Ipv4Addr::new(10, 9, 0, 1)));
        let full = allocator.reserve_ip(&store, &svc, None, false).await.unwrap_err();
        assert!(full.to_string().contains("is full"), "{full}");
    }
}
