//! Service cluster IPs and node ports. Each allocated cluster IP is an `IPAddress` object
//! (networking.k8s.io/v1) named after the address, as upstream 1.33 records them; each node
//! port is a key under `/registry/krust/servicenodeports/`. The store's create-if-absent makes
//! an allocation atomic, so two servers never hand out the same address.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use async_trait::async_trait;
use krust_api::StatusError;
use krust_api::cidr::{Cidr, Family};
use krust_api::object::{meta_str, path};
use krust_api::strategy::core::gets_node_ports;
use krust_api::validation::FieldError;
use krust_store::{Store, StoreError};
use serde_json::{Value, json};

use super::service_families::settle;
use super::{Reserved, ResourceHooks, ResourceStorage};
use crate::registry::meta::timestamp;

/// The storage of `services`: cluster IPs and node ports allocated from `ranges` around its
/// writes.
pub(super) fn storage(ranges: ServiceRanges) -> ResourceStorage {
    ResourceStorage {
        hooks: Some(std::sync::Arc::new(ServiceAllocator::new(ranges))),
        ..ResourceStorage::new("", "services")
    }
}

/// How many random picks are tried before the range is scanned.
const ATTEMPTS: usize = 64;

/// The address ranges services are allocated from.
#[derive(Debug, Clone)]
pub struct ServiceRanges {
    /// The service CIDRs: one, or one of each family, the primary family's first.
    pub cidrs: Vec<Cidr>,
    /// The first and last node port.
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        let v4 = Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 43, 0, 0)), 16);
        Self { cidrs: v4.into_iter().collect(), node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    /// The families served, the primary first.
    pub fn families(&self) -> Vec<Family> {
        self.cidrs.iter().map(Cidr::family).collect()
    }

    /// The range of `family`, if the cluster serves it.
    fn cidr(&self, family: Family) -> Option<&Cidr> {
        self.cidrs.iter().find(|c| c.family() == family)
    }

    /// The primary range.
    pub fn primary(&self) -> Option<&Cidr> {
        self.cidrs.first()
    }

    /// Whether `ip` is an allocatable address of its family's range (not the network
    /// address, nor an IPv4 range's broadcast address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let Some(cidr) = self.cidr(Family::of(ip)) else { return false };
        let last = match ip {
            IpAddr::V4(_) => cidr.size() - 1,
            IpAddr::V6(_) => cidr.size(),
        };
        cidr.offset_of(ip).is_some_and(|offset| offset > 0 && offset < last)
    }

    /// The first address of the primary range, kept for the `kubernetes` service.
    pub fn first(&self) -> Option<IpAddr> {
        self.primary().and_then(|c| c.nth(1))
    }

    /// The tenth address of each range, kept for the cluster DNS service
    /// (`kube-system/kube-dns`), as upstream's installers and k3s keep it; the primary first.
    pub fn dns(&self) -> Vec<IpAddr> {
        self.cidrs.iter().filter_map(|c| c.nth(10)).filter(|ip| self.contains(*ip)).collect()
    }
}

/// A random number from a fresh UUID (no other randomness source is needed here).
fn random() -> u128 {
    u128::from_le_bytes(uuid::Uuid::new_v4().into_bytes())
}

/// Allocates cluster IPs and node ports for services.
#[derive(Debug, Clone, Default)]
pub struct ServiceAllocator {
    ranges: ServiceRanges,
}

/// Where allocated cluster IPs are recorded (upstream's IPAddress objects' place).
const IP_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// Where allocated node ports are recorded.
const PORT_PREFIX: &str = "/registry/krust/servicenodeports/";

fn ip_key(ip: IpAddr) -> String {
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

    /// What a node port's record says: the Service that holds it (by uid, which a Service
    /// keeps for its life), so that only that Service gives it back.
    fn port_record(svc: &Value) -> Vec<u8> {
        let owner = json!({
            "namespace": meta_str(svc, "namespace").unwrap_or_default(),
            "name": meta_str(svc, "name").unwrap_or_default(),
            "uid": meta_str(svc, "uid").unwrap_or_default(),
        });
        serde_json::to_vec(&owner).unwrap_or_default()
    }

    /// The uid of the Service a node port's record names; `None` for a record written
    /// before owners were kept.
    fn owner(record: &[u8]) -> Option<String> {
        let record = serde_json::from_slice::<Value>(record).ok()?;
        record.get("uid").and_then(Value::as_str).filter(|uid| !uid.is_empty()).map(Into::into)
    }

    /// Whether `record` (a node port's) is held by the Service with `uid`. A record without
    /// an owner is anyone's.
    fn holds(record: &[u8], uid: Option<&str>) -> bool {
        Self::owner(record).is_none_or(|owner| Some(owner.as_str()) == uid)
    }

    fn ip_record(&self, ip: IpAddr, svc: &Value) -> Vec<u8> {
        let record = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip.to_string(),
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": timestamp(chrono::Utc::now()),
                "labels": {
                    "ipaddress.kubernetes.io/ip-family": Family::of(ip).name(),
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

    /// Reserves `requested` (an address asked for, at `spec.clusterIPs[index]`) or a free
    /// one of `family`; answers the address.
    async fn reserve_ip(
        &self,
        store: &dyn Store,
        svc: &Value,
        (index, family): (usize, Family),
        requested: Option<IpAddr>,
        dry_run: bool,
    ) -> Result<IpAddr, StatusError> {
        let Some(cidr) = self.ranges.cidr(family).copied() else {
            return Err(StatusError::internal(format!("no {} service range", family.name())));
        };
        if let Some(ip) = requested {
            let field = format!("spec.clusterIPs[{index}]");
            let raw = ip.to_string();
            if !self.ranges.contains(ip) {
                let detail = format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
                );
                return Err(invalid(svc, vec![FieldError::invalid(field, json!([raw]), detail)]));
            }
            let taken = || {
                let detail =
                    format!("failed to allocate IP {ip}: provided IP is already allocated");
                Err(invalid(svc, vec![FieldError::invalid(field.clone(), json!([raw]), detail)]))
            };
            // A dry run checks that the address is free, as upstream's dry-run allocator does.
            if dry_run {
                return match store.get(&ip_key(ip)).await {
                    Ok(None) => Ok(ip),
                    Ok(Some(_)) => taken(),
                    Err(e) => Err(internal(e)),
                };
            }
            return match store.create(&ip_key(ip), self.ip_record(ip, svc)).await {
                Ok(_) => Ok(ip),
                Err(StoreError::AlreadyExists { .. }) => taken(),
                Err(e) => Err(internal(e)),
            };
        }
        // Offsets 2.. (the first address belongs to the `kubernetes` service); an IPv4
        // range's broadcast address is left out.
        let last = if family == Family::V4 { cidr.size() - 1 } else { cidr.size() };
        let count = last.saturating_sub(2).max(1);
        for _ in 0..ATTEMPTS {
            let Some(ip) = cidr.nth(2 + random() % count) else { continue };
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
        // A range far larger than what can be taken was not crowded: give up after as many
        // addresses as are recorded, and some.
        let held = taken(store, IP_PREFIX).await?;
        let start = random() % count;
        let steps = count.min(held.len() as u128 + 1024);
        for step in 0..steps {
            let Some(ip) = cidr.nth(2 + (start + step) % count) else { continue };
            if held.contains(&ip.to_string()) {
                continue;
            }
            match store.create(&ip_key(ip), self.ip_record(ip, svc)).await {
                Ok(_) => return Ok(ip),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(StatusError::internal(format!("failed to allocate a serviceIP: range {cidr} is full")))
    }

    /// Settles `svc`'s families and reserves the cluster IPs it lacks, writing
    /// `ipFamilyPolicy`, `ipFamilies`, `clusterIPs` and `clusterIP`. `held` are the addresses
    /// the stored object already holds (an update's); answers those it reserved (none in a dry
    /// run). On failure, what this call reserved is released.
    async fn reserve_ips(
        &self,
        store: &dyn Store,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Vec<IpAddr>, StatusError> {
        let settled = settle(svc, old, &self.ranges.families()).map_err(|e| invalid(svc, e))?;
        let held = old.map(Self::held_ips).unwrap_or_default();
        let mut ips = Vec::new();
        let mut reserved = Vec::new();
        for (index, (family, requested)) in
            settled.families.iter().zip(&settled.addresses).enumerate()
        {
            let result = match requested {
                Some(ip) if held.contains(ip) => Ok(*ip),
                _ => self.reserve_ip(store, svc, (index, *family), *requested, dry_run).await,
            };
            match result {
                Ok(ip) => {
                    if !held.contains(&ip) {
                        reserved.push(ip);
                    }
                    ips.push(ip.to_string());
                }
                Err(e) => {
                    if !dry_run {
                        self.release(store, svc, &reserved, &[]).await;
                    }
                    return Err(e);
                }
            }
        }
        // A dry run reserved nothing.
        if dry_run {
            reserved.clear();
        }
        // `spec` is an object here (the body was type-checked); a missing one is made.
        let Some(spec) = svc.as_object_mut().map(|o| o.entry("spec").or_insert_with(|| json!({})))
        else {
            return Ok(reserved);
        };
        let Some(spec) = spec.as_object_mut() else { return Ok(reserved) };
        spec.insert("ipFamilyPolicy".into(), json!(settled.policy));
        let families: Vec<&str> = settled.families.iter().map(|f| f.name()).collect();
        spec.insert("ipFamilies".into(), json!(families));
        let primary = ips.first().cloned().unwrap_or_else(|| "None".to_string());
        let all = if ips.is_empty() { vec![primary.clone()] } else { ips };
        spec.insert("clusterIP".into(), json!(primary));
        spec.insert("clusterIPs".into(), json!(all));
        Ok(reserved)
    }

    /// Reserves the node ports of a NodePort or LoadBalancer service: those it asks for
    /// (beyond `held`, which an update's old object already holds) and new ones for ports
    /// without (unless a LoadBalancer's `allocateLoadBalancerNodePorts` is false). Answers
    /// those it reserved (none in a dry run, nor one whose record was this Service's already).
    /// On failure, what it reserved is released again (never a port it was refused).
    async fn reserve_ports(
        &self,
        store: &dyn Store,
        svc: &mut Value,
        held: &[u16],
        dry_run: bool,
    ) -> Result<Vec<u16>, StatusError> {
        let mut reserved = Vec::new();
        match self.reserve_ports_into(store, svc, held, dry_run, &mut reserved).await {
            Ok(()) => Ok(reserved),
            Err(e) => {
                self.release(store, svc, &[], &reserved).await;
                Err(e)
            }
        }
    }

    async fn reserve_ports_into(
        &self,
        store: &dyn Store,
        svc: &mut Value,
        held: &[u16],
        dry_run: bool,
        reserved: &mut Vec<u16>,
    ) -> Result<(), StatusError> {
        let name = meta_str(svc, "name").unwrap_or_default().to_string();
        let kind = path(svc, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            return Ok(());
        }
        // A LoadBalancer with `allocateLoadBalancerNodePorts: false` gets only those it names.
        let allocates = gets_node_ports(svc);
        let record = Self::port_record(svc);
        let uid = meta_str(svc, "uid").map(str::to_string);
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
                if held.contains(&p) {
                    continue;
                }
                // A dry run checks that the port is free (or its own), reserving nothing.
                let created = match dry_run {
                    true => match store.get(&port_key(p)).await {
                        Ok(None) => Ok(()),
                        Ok(Some(_)) => Err(StoreError::AlreadyExists { key: port_key(p) }),
                        Err(e) => Err(e),
                    },
                    false => store.create(&port_key(p), record.clone()).await.map(|_| ()),
                };
                match created {
                    Ok(()) => {
                        if !dry_run {
                            reserved.push(p);
                        }
                        continue;
                    }
                    Err(StoreError::AlreadyExists { .. })
                        if Self::owned(store, p, uid.as_deref()).await =>
                    {
                        // Its own already (named while it was of a type without node ports).
                        continue;
                    }
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
            if !allocates {
                continue;
            }
            let mut chosen = None;
            for _ in 0..ATTEMPTS {
                let p = low + (random() % u128::from(count)) as u16;
                if dry_run {
                    chosen = Some(p);
                    break;
                }
                match store.create(&port_key(p), record.clone()).await {
                    Ok(_) => {
                        reserved.push(p);
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
                let start = (random() % u128::from(count)) as u32;
                for step in 0..count {
                    let p = low + ((start + step) % count) as u16;
                    if held.contains(&p.to_string()) {
                        continue;
                    }
                    match store.create(&port_key(p), record.clone()).await {
                        Ok(_) => {
                            reserved.push(p);
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

    /// The cluster IPs a service holds.
    fn held_ips(svc: &Value) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = path(svc, "spec.clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.as_str()?.parse().ok())
            .collect();
        if ips.is_empty()
            && let Some(ip) =
                path(svc, "spec.clusterIP").and_then(Value::as_str).and_then(|ip| ip.parse().ok())
        {
            ips.push(ip);
        }
        ips
    }

    /// What a service may hold: its cluster IPs and the node ports it names (released only
    /// if their records say it holds them: an ExternalName Service may name another's).
    fn held(svc: &Value) -> (Vec<IpAddr>, Vec<u16>) {
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
        (Self::held_ips(svc), ports)
    }

    /// Whether node port `port` is recorded as held by the Service with `uid`, by name (a
    /// record without an owner is nobody's here).
    async fn owned(store: &dyn Store, port: u16, uid: Option<&str>) -> bool {
        let Ok(Some(kv)) = store.get(&port_key(port)).await else { return false };
        Self::owner(&kv.value).is_some_and(|owner| Some(owner.as_str()) == uid)
    }

    /// Gives back the addresses `ips` and the node ports `ports` of `svc`: a port only if
    /// `svc` holds it (an ExternalName Service may name another's).
    async fn release(&self, store: &dyn Store, svc: &Value, ips: &[IpAddr], ports: &[u16]) {
        for ip in ips.iter().filter(|ip| self.ranges.contains(**ip)) {
            let _ = store.delete(&ip_key(*ip), None).await;
        }
        let uid = meta_str(svc, "uid");
        for p in ports {
            let key = port_key(*p);
            if let Ok(Some(kv)) = store.get(&key).await
                && Self::holds(&kv.value, uid)
            {
                let _ = store.delete(&key, Some(kv.mod_revision)).await;
            }
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
        if kind != "ExternalName" {
            self.reserve_ips(store, obj, None, dry_run).await?;
        }
        if let Err(e) = self.reserve_ports(store, obj, &[], dry_run).await {
            if !dry_run {
                self.release(store, obj, &Self::held_ips(obj), &[]).await;
            }
            return Err(e);
        }
        Ok(())
    }

    async fn create_failed(&self, store: &dyn Store, obj: &Value) {
        let (ips, ports) = Self::held(obj);
        self.release(store, obj, &ips, &ports).await;
    }

    async fn before_update(
        &self,
        store: &dyn Store,
        new: &mut Value,
        old: &Value,
        dry_run: bool,
    ) -> Result<Reserved, StatusError> {
        let (_, old_ports) = Self::held(old);
        let kind = path(new, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
        // A write that leaves the addressing as it was (a status write, a label) settles
        // nothing again: it must not fail because the cluster's ranges changed since.
        let addressing = |svc: &Value| {
            ["type", "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "selector"]
                .map(|field| svc.pointer(&format!("/spec/{field}")).cloned())
        };
        let mut ips = Vec::new();
        if kind != "ExternalName" && addressing(new) != addressing(old) {
            ips = self.reserve_ips(store, new, Some(old), dry_run).await?;
        }
        match self.reserve_ports(store, new, &old_ports, dry_run).await {
            Ok(ports) => {
                let keys = ips.into_iter().map(ip_key).chain(ports.into_iter().map(port_key));
                Ok(Reserved { keys: keys.collect() })
            }
            Err(e) => {
                self.release(store, new, &ips, &[]).await;
                Err(e)
            }
        }
    }

    async fn update_failed(&self, store: &dyn Store, reserved: &Reserved) {
        for key in &reserved.keys {
            let _ = store.delete(key, None).await;
        }
    }

    async fn after_update(&self, store: &dyn Store, new: &Value, old: &Value) {
        let (old_ips, old_ports) = Self::held(old);
        let (new_ips, new_ports) = Self::held(new);
        let gone_ips: Vec<IpAddr> =
            old_ips.into_iter().filter(|ip| !new_ips.contains(ip)).collect();
        let gone_ports: Vec<u16> =
            old_ports.into_iter().filter(|p| !new_ports.contains(p)).collect();
        self.release(store, old, &gone_ips, &gone_ports).await;
    }

    async fn after_delete(&self, store: &dyn Store, obj: &Value) {
        let (ips, ports) = Self::held(obj);
        self.release(store, obj, &ips, &ports).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v4(ip: &str) -> IpAddr {
        ip.parse().unwrap()
    }

    #[test]
    fn the_range_excludes_network_and_broadcast_addresses() {
        let ranges = ServiceRanges::default();
        assert!(!ranges.contains(v4("10.43.0.0")));
        assert!(ranges.contains(v4("10.43.0.1")));
        assert!(ranges.contains(v4("10.43.255.254")));
        assert!(!ranges.contains(v4("10.43.255.255")));
        assert!(!ranges.contains(v4("10.44.0.1")));
        assert!(!ranges.contains(v4("fd00::1")));
        assert_eq!(ranges.first(), Some(v4("10.43.0.1")));
        assert_eq!(ranges.dns(), vec![v4("10.43.0.10")]);
        let dual = ServiceRanges {
            cidrs: vec!["10.43.0.0/16".parse().unwrap(), "fd00:43::/112".parse().unwrap()],
            node_ports: (30000, 32767),
        };
        assert!(dual.contains(v4("fd00:43::ffff")));
        assert_eq!(dual.dns(), vec![v4("10.43.0.10"), v4("fd00:43::a")]);
    }

    #[tokio::test]
    async fn a_crowded_range_gives_its_last_free_address() {
        let (_dir, store) = store();
        // A /27: 30 usable addresses, the first the `kubernetes` Service's.
        let ranges = ServiceRanges {
            cidrs: vec!["10.9.0.0/27".parse().unwrap()],
            node_ports: (30000, 30004),
        };
        let allocator = ServiceAllocator::new(ranges);
        let svc = json!({"metadata": {"name": "s", "namespace": "default"}});
        let mut got = HashSet::new();
        for _ in 0..29 {
            let ip = allocator.reserve_ip(&store, &svc, (0, Family::V4), None, false).await;
            assert!(got.insert(ip.unwrap()));
        }
        assert!(!got.contains(&v4("10.9.0.1")));
        let full =
            allocator.reserve_ip(&store, &svc, (0, Family::V4), None, false).await.unwrap_err();
        assert!(full.to_string().contains("is full"), "{full}");
    }

    #[tokio::test]
    async fn a_dual_stack_service_gets_an_address_of_each_family() {
        let (_dir, store) = store();
        let ranges = ServiceRanges {
            cidrs: vec!["fd00:9::/120".parse().unwrap(), "10.9.0.0/24".parse().unwrap()],
            node_ports: (30000, 30004),
        };
        let allocator = ServiceAllocator::new(ranges);
        let mut svc = json!({"metadata": {"name": "s", "namespace": "default"},
            "spec": {"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}});
        allocator.before_create(&store, &mut svc, false).await.unwrap();
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv6", "IPv4"]));
        let ips = ServiceAllocator::held_ips(&svc);
        assert_eq!(ips.len(), 2);
        assert!(ips[0].is_ipv6() && ips[1].is_ipv4());
        assert_eq!(svc["spec"]["clusterIP"], json!(ips[0].to_string()));
        // Down to one stack: the IPv4 address is given back.
        let old = svc.clone();
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        allocator.before_update(&store, &mut svc, &old, false).await.unwrap();
        assert_eq!(svc["spec"]["clusterIPs"], json!([ips[0].to_string()]));
        allocator.after_update(&store, &svc, &old).await;
        assert!(store.get(&ip_key(ips[1])).await.unwrap().is_none());
        assert!(store.get(&ip_key(ips[0])).await.unwrap().is_some());
    }

    /// An embedded store in a folder of its own (kept while the test runs).
    fn store() -> (tempfile::TempDir, krust_store::embedded::EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = krust_store::embedded::EmbeddedStore::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn node_ports_an_external_name_names_stay_with_the_service_that_holds_them() {
        let (_dir, store) = store();
        let allocator = ServiceAllocator::new(ServiceRanges::default());
        let mut node_port = json!({"metadata": {"name": "a", "namespace": "default", "uid": "uid-a"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        allocator.before_create(&store, &mut node_port, false).await.unwrap();
        let mut external = json!({"metadata": {"name": "b", "namespace": "default", "uid": "uid-b"},
            "spec": {"type": "ExternalName", "externalName": "example.test",
                     "ports": [{"port": 80, "nodePort": 30080}]}});
        allocator.before_create(&store, &mut external, false).await.unwrap();
        allocator.after_delete(&store, &external).await;
        assert!(store.get(&port_key(30080)).await.unwrap().is_some());
        // Another Service asking for it is refused, whatever it names.
        let mut other = json!({"metadata": {"name": "c", "namespace": "default", "uid": "uid-c"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let refused = allocator.before_create(&store, &mut other, false).await.unwrap_err();
        assert!(refused.to_string().contains("already allocated"), "{refused}");
        // Its own Service turned into an ExternalName (the strategy drops the node port it
        // kept) gives it back.
        let mut turned = node_port.clone();
        turned["spec"]["type"] = json!("ExternalName");
        turned["spec"]["ports"][0].as_object_mut().unwrap().remove("nodePort");
        allocator.before_update(&store, &mut turned, &node_port, false).await.unwrap();
        allocator.after_update(&store, &turned, &node_port).await;
        assert!(store.get(&port_key(30080)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_service_gets_back_a_node_port_it_still_holds() {
        let (_dir, store) = store();
        let allocator = ServiceAllocator::new(ServiceRanges::default());
        let mut node_port = json!({"metadata": {"name": "a", "namespace": "default", "uid": "uid-a"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]}});
        allocator.before_create(&store, &mut node_port, false).await.unwrap();
        // Stored since as an ExternalName without the port, but still holding it; then a
        // NodePort asking for it again: it is its own.
        let stale = json!({"metadata": node_port["metadata"],
            "spec": {"type": "ExternalName", "externalName": "example.test", "ports": [{"port": 80}]}});
        let mut back = json!({"metadata": node_port["metadata"],
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]}});
        allocator.before_update(&store, &mut back, &stale, false).await.unwrap();
        assert_eq!(back["spec"]["ports"][0]["nodePort"], json!(30081));
        // A record without an owner (written before owners were kept) goes with the Service
        // that names it.
        store.delete(&port_key(30081), None).await.unwrap();
        store.create(&port_key(30081), Vec::new()).await.unwrap();
        allocator.after_delete(&store, &back).await;
        assert!(store.get(&port_key(30081)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_dry_run_is_refused_what_is_taken_and_reserves_nothing() {
        let (_dir, store) = store();
        let allocator = ServiceAllocator::new(ServiceRanges::default());
        let mut first = json!({"metadata": {"name": "a", "namespace": "default", "uid": "uid-a"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.43.0.20"],
                     "ports": [{"port": 80, "nodePort": 30082}]}});
        allocator.before_create(&store, &mut first, false).await.unwrap();
        let asking = |ip: &str, port: u16| {
            json!({"metadata": {"name": "b", "namespace": "default", "uid": "uid-b"},
                "spec": {"type": "NodePort", "clusterIPs": [ip], "ports": [{"port": 80, "nodePort": port}]}})
        };
        let refused = allocator.before_create(&store, &mut asking("10.43.0.21", 30082), true).await;
        assert!(refused.unwrap_err().to_string().contains("already allocated"));
        let refused = allocator.before_create(&store, &mut asking("10.43.0.20", 30083), true).await;
        assert!(refused.unwrap_err().to_string().contains("already allocated"));
        allocator.before_create(&store, &mut asking("10.43.0.21", 30083), true).await.unwrap();
        assert!(store.get(&port_key(30083)).await.unwrap().is_none());
        assert!(store.get(&ip_key(v4("10.43.0.21"))).await.unwrap().is_none());
        // Its own port stays its own in a dry-run update.
        let mut again = first.clone();
        again["metadata"]["labels"] = json!({"a": "b"});
        allocator.before_update(&store, &mut again, &first, true).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_update_gives_back_what_it_reserved_and_nothing_else() {
        let (_dir, store) = store();
        let allocator = ServiceAllocator::new(ServiceRanges::default());
        let mut node_port = json!({"metadata": {"name": "a", "namespace": "default", "uid": "uid-a"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30084}]}});
        allocator.before_create(&store, &mut node_port, false).await.unwrap();
        // An attempt from a copy that lacks the port another write of the same Service gave
        // it: the port is its own already, so not reserved by this attempt; its new address is.
        let behind = json!({"metadata": node_port["metadata"],
            "spec": {"type": "ExternalName", "externalName": "example.test", "ports": [{"port": 80}]}});
        let mut attempt = json!({"metadata": node_port["metadata"],
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30084}]}});
        let reserved = allocator.before_update(&store, &mut attempt, &behind, false).await.unwrap();
        let ip = v4(attempt["spec"]["clusterIP"].as_str().unwrap());
        assert_eq!(reserved.keys, vec![ip_key(ip)]);
        allocator.update_failed(&store, &reserved).await;
        assert!(store.get(&ip_key(ip)).await.unwrap().is_none());
        assert!(store.get(&port_key(30084)).await.unwrap().is_some());
        // A dry run reserves nothing to give back.
        let mut dry = attempt.clone();
        dry["spec"]["ports"][0]["nodePort"] = json!(30085);
        let reserved = allocator.before_update(&store, &mut dry, &behind, true).await.unwrap();
        assert!(reserved.keys.is_empty(), "{:?}", reserved.keys);
    }

    #[tokio::test]
    async fn a_load_balancer_may_go_without_node_ports() {
        let (_dir, store) = store();
        let allocator = ServiceAllocator::new(ServiceRanges::default());
        let mut lb = json!({"metadata": {"name": "lb", "namespace": "default", "uid": "uid-lb"},
            "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                     "ports": [{"port": 80}, {"port": 81, "nodePort": 30091}]}});
        allocator.before_create(&store, &mut lb, false).await.unwrap();
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none(), "{lb}");
        assert_eq!(lb["spec"]["ports"][1]["nodePort"], json!(30091));
        assert!(store.get(&port_key(30091)).await.unwrap().is_some());
    }
}
