//! A pod's sandbox: its pinned namespaces, its address on the node's bridge, its
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (its volumes are `volumes.rs`).

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::resources::{self, Qos};
use crate::host::Host;
use crate::{Options, sys};

/// What a ready sandbox recorded (`sandbox.json`), so that a restarted agent knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The pod's address (the node's for `hostNetwork` pods).
    pub ip: Option<String>,
    /// Its IPv6 address on a dual-stack node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// The host end of its veth pair.
    pub host_veth: Option<String>,
    /// The PID 1 of the pod's shared PID namespace (`shareProcessNamespace`), if any.
    #[serde(default)]
    pub pid_holder: Option<u32>,
}

/// The sandbox of the pod whose directory is `dir`, if it is ready.
pub fn read(dir: &Path) -> Option<Sandbox> {
    fs::read(dir.join("sandbox.json")).ok().and_then(|raw| serde_json::from_slice(&raw).ok())
}

/// Makes the sandbox of `pod` in `dir`.
pub fn create(
    dir: &Path,
    pod: &Pod,
    options: &Options,
    host: &dyn Host,
) -> Result<Sandbox, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let hostname = spec.hostname.clone().or_else(|| pod.metadata.name.clone()).unwrap_or_default();
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
    let mut sandbox = Sandbox {
        ip: options.node_ip.map(|ip| ip.to_string()),
        ip6: options.node_ip6.filter(|_| host_network).map(|ip| ip.to_string()),
        host_veth: None,
        pid_holder: None,
    };
    if spec.share_process_namespace.unwrap_or(false) && !spec.host_pid.unwrap_or(false) {
        sandbox.pid_holder = Some(pid_namespace_holder(dir, host)?);
    }
    let mut kinds = Vec::new();
    if !host_network {
        kinds.extend(["net", "uts"]);
    }
    if !spec.host_ipc.unwrap_or(false) {
        kinds.push("ipc");
    }
    host.pin_namespaces(&dir.join("ns"), &hostname, &kinds).map_err(|e| e.to_string())?;
    if !host_network {
        let address = allocate(&options.data_dir.join("ipam"), options, &uid)?;
        let host_veth =
            format!("veth{}", &uid.replace('-', "")[..8.min(uid.replace('-', "").len())]);
        let v6 = options.pod_cidr_v6.map(|(network, prefix)| sys::PodLink6 {
            gateway: ipv6_at(network, 1),
            prefix,
            address: ipv6_at(network, offset(options, address)),
        });
        let link = sys::PodLink {
            bridge: options.bridge.clone(),
            gateway: gateway(options),
            prefix: options.pod_cidr.1,
            host_veth: host_veth.clone(),
            address,
            v6,
        };
        host.attach(&dir.join("ns/net"), &link).map_err(|e| e.to_string())?;
        sandbox.ip = Some(address.to_string());
        sandbox.ip6 = v6.map(|v6| v6.address.to_string());
        sandbox.host_veth = Some(host_veth);
    }
    let ip = sandbox.ip.clone().unwrap_or_default();
    let domain = &options.cluster_domain;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !host_network {
        let fqdn = match spec.subdomain.as_deref() {
            Some(sub) if !sub.is_empty() => {
                format!("{hostname}.{sub}.{namespace}.svc.{domain}\t{hostname}")
            }
            _ => hostname.clone(),
        };
        hosts.push_str(&format!("{ip}\t{fqdn}\n"));
        if let Some(ip6) = &sandbox.ip6 {
            hosts.push_str(&format!("{ip6}\t{fqdn}\n"));
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        if let Some(aliased) = &alias.hostnames {
            hosts.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                aliased.join("\t")
            ));
        }
    }
    fs::write(etc.join("hosts"), hosts).map_err(|e| e.to_string())?;
    fs::write(etc.join("hostname"), format!("{hostname}\n")).map_err(|e| e.to_string())?;
    fs::write(etc.join("resolv.conf"), resolv_conf(pod, options)).map_err(|e| e.to_string())?;
    // The pod's own cgroup, which its containers' cgroups go under, with the pod's limits.
    let parent = resources::cgroup_parent(resources::qos(pod), &uid);
    host.set_cgroup(&parent, &resources::pod_cgroup(pod)).map_err(|e| e.to_string())?;
    let raw = serde_json::to_vec(&sandbox).map_err(|e| e.to_string())?;
    fs::write(dir.join("sandbox.json"), raw).map_err(|e| e.to_string())?;
    Ok(sandbox)
}

/// The pod's `resolv.conf` by its `dnsPolicy` and `dnsConfig`, as upstream writes it.
pub fn resolv_conf(pod: &Pod, options: &Options) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let domain = &options.cluster_domain;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (mut servers, mut searches, mut opts): (Vec<String>, Vec<String>, Vec<String>) =
        (vec![], vec![], vec![]);
    let cluster =
        policy == "ClusterFirstWithHostNet" || (policy == "ClusterFirst" && !host_network);
    if cluster && !options.cluster_dns.is_empty() {
        servers = options.cluster_dns.iter().map(ToString::to_string).collect();
        searches =
            vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
        opts = vec!["ndots:5".into()];
    } else if policy != "None" {
        for line in host.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => servers.extend(words.map(str::to_string)),
                Some("search") => searches.extend(words.map(str::to_string)),
                Some("options") => opts.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(config) = &spec.dns_config {
        servers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for o in config.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            opts.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            opts.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut text = String::new();
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in &servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !opts.is_empty() {
        text.push_str(&format!("options {}\n", opts.join(" ")));
    }
    text
}

fn gateway(options: &Options) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(options.pod_cidr.0) + 1)
}

/// Where `address` lies in the node's IPv4 pod network.
fn offset(options: &Options, address: Ipv4Addr) -> u32 {
    u32::from(address).wrapping_sub(u32::from(options.pod_cidr.0))
}

/// The address `offset` places into the IPv6 network `network`: a pod's IPv6 address sits
/// at its IPv4 address's offset, so one allocation gives both.
pub fn ipv6_at(network: Ipv6Addr, offset: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(network) + u128::from(offset))
}

/// Takes a free address of the pod CIDR for `uid` (a file per address, made exclusively;
/// an address already held by `uid` is returned again).
fn allocate(dir: &Path, options: &Options, uid: &str) -> Result<Ipv4Addr, String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let base = u32::from(options.pod_cidr.0);
    let size = 1u32 << (32 - u32::from(options.pod_cidr.1));
    for offset in 2..size.saturating_sub(1) {
        let ip = Ipv4Addr::from(base + offset);
        let path = dir.join(ip.to_string());
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => {
                fs::write(&path, uid).map_err(|e| e.to_string())?;
                return Ok(ip);
            }
            Err(_) if fs::read_to_string(&path).is_ok_and(|holder| holder == uid) => return Ok(ip),
            Err(_) => continue,
        }
    }
    Err(format!(
        "no free address left in the pod CIDR {}/{}",
        options.pod_cidr.0, options.pod_cidr.1
    ))
}

/// Gives back every address `uid` holds.
pub fn release_addresses(options: &Options, uid: &str) {
    let dir = options.data_dir.join("ipam");
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        if fs::read_to_string(entry.path()).is_ok_and(|holder| holder == uid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Starts the holder of the pod's shared PID namespace (through `krust pause-holder`, so
/// that the agent's own later children stay in its namespace); returns its pid.
fn pid_namespace_holder(dir: &Path, host: &dyn Host) -> Result<u32, String> {
    let pid = host.start_pid_holder()?;
    let _ = fs::write(dir.join("pid-holder"), pid.to_string());
    Ok(pid)
}

/// Lets go of an ended pod's network and cgroup: its veth, namespaces, address, its cgroup
/// (and the holder of its shared PID namespace, which ends every process left in it).
pub fn release(dir: &Path, options: &Options, uid: &str, host: &dyn Host) {
    if let Some(holder) = read(dir).and_then(|s| s.pid_holder) {
        let _ = host.kill(holder as i32, nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(sandbox) = read(dir)
        && let Some(veth) = sandbox.host_veth
    {
        let _ = host.detach(&veth);
    }
    let _ = host.unpin_namespaces(&dir.join("ns"));
    release_addresses(options, uid);
    for qos in [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort] {
        host.remove_cgroup(&resources::cgroup_parent(qos, uid));
    }
}

/// Removes the sandbox: namespaces, veth, address, cgroups, tmpfs volumes.
pub fn destroy(dir: &Path, options: &Options, uid: &str, host: &dyn Host) {
    release(dir, options, uid, host);
    for entry in fs::read_dir(dir.join("volumes")).into_iter().flatten().flatten() {
        let _ = host.unmount(&entry.path());
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::host::recording::{Call, Recording};
    use crate::pod::sources::Sources;
    use crate::pod::volumes::volumes;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut pod = serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "0a1b2c3d-0000-4000-8000-000000000001"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        if let (Some(base), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(pod).expect("a pod")
    }

    const UID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
    const ALLOCATABLE: (u64, u64) = (4000, 8 << 30);

    #[test]
    fn a_pod_gets_its_namespaces_and_link_and_destroy_leaves_nothing() {
        let data = tempfile::tempdir().expect("tempdir");
        let (options, host) = (Options::example(data.path()), Recording::new());
        let dir = data.path().join("pods").join(UID);
        let pod = pod(serde_json::json!({
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
        }));
        let sandbox = create(&dir, &pod, &options, &host).expect("a sandbox");
        assert_eq!(sandbox.ip.as_deref(), Some("10.42.0.2"));
        assert_eq!(sandbox.host_veth.as_deref(), Some("veth0a1b2c3d"));
        let made = volumes(&dir, &pod, &Sources::default(), &host, ALLOCATABLE).expect("volumes");
        assert_eq!(made["scratch"], dir.join("volumes/scratch"));
        assert_eq!(
            host.calls()[..2],
            [
                Call::Pin(dir.join("ns"), vec!["net".into(), "uts".into(), "ipc".into()]),
                Call::Attach("veth0a1b2c3d".into(), Ipv4Addr::new(10, 42, 0, 2)),
            ]
        );
        assert!(host.calls().contains(&Call::SetCgroup(
            format!("/kubepods/besteffort/pod{UID}"),
            resources::pod_cgroup(&pod)
        )));
        let hosts = fs::read_to_string(dir.join("etc/hosts")).expect("hosts");
        assert!(hosts.ends_with("10.42.0.2\tweb\n"), "{hosts}");
        assert!(!host.left().is_empty());
        destroy(&dir, &options, UID, &host);
        assert!(host.left().is_empty(), "{:?}", host.left());
        // The address is free again.
        assert!(!options.data_dir.join("ipam/10.42.0.2").exists());
    }

    #[test]
    fn a_dual_stack_pod_has_its_ipv6_address_at_its_ipv4_offset() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut options = Options::example(data.path());
        options.pod_cidr_v6 = Some(("fd42::".parse().expect("ip"), 64));
        let host = Recording::new();
        let dir = data.path().join("pods").join(UID);
        let sandbox = create(&dir, &pod(serde_json::json!({})), &options, &host).expect("sandbox");
        assert_eq!(sandbox.ip.as_deref(), Some("10.42.0.2"));
        assert_eq!(sandbox.ip6.as_deref(), Some("fd42::2"));
        let hosts = fs::read_to_string(dir.join("etc/hosts")).expect("hosts");
        assert!(hosts.ends_with("10.42.0.2\tweb\nfd42::2\tweb\n"), "{hosts}");
        destroy(&dir, &options, UID, &host);
    }

    #[test]
    fn host_namespaces_are_not_pinned_and_a_shared_pid_namespace_has_a_holder() {
        let data = tempfile::tempdir().expect("tempdir");
        let (options, host) = (Options::example(data.path()), Recording::new());
        let dir = data.path().join("pods").join(UID);
        let pod = pod(serde_json::json!({"hostNetwork": true, "shareProcessNamespace": true}));
        let sandbox = create(&dir, &pod, &options, &host).expect("a sandbox");
        assert_eq!(sandbox.ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(sandbox.host_veth, None);
        let calls = host.calls();
        assert!(matches!(calls[0], Call::StartPidHolder(_)));
        assert_eq!(calls[1], Call::Pin(dir.join("ns"), vec!["ipc".into()]));
        assert!(!calls.iter().any(|c| matches!(c, Call::Attach(..))));
        release(&dir, &options, UID, &host);
        assert!(host.left().is_empty(), "{:?}", host.left());
    }

    #[test]
    fn a_sandbox_that_fails_half_way_is_still_destroyed_completely() {
        let data = tempfile::tempdir().expect("tempdir");
        let (options, host) = (Options::example(data.path()), Recording::new());
        let dir = data.path().join("pods").join(UID);
        host.fail("attach");
        let error = create(&dir, &pod(serde_json::json!({})), &options, &host);
        assert!(error.is_err_and(|e| e.contains("attach")));
        // The namespaces were pinned and the address taken before the link failed.
        assert!(!host.left().namespaces.is_empty());
        destroy(&dir, &options, UID, &host);
        assert!(host.left().is_empty(), "{:?}", host.left());
        assert!(fs::read_dir(options.data_dir.join("ipam")).expect("ipam").next().is_none());
    }

    #[test]
    fn a_memory_volume_that_cannot_be_mounted_is_the_pods_error() {
        let data = tempfile::tempdir().expect("tempdir");
        let host = Recording::new();
        let dir = data.path().join("pods").join(UID);
        host.fail("mount_tmpfs");
        let pod = pod(serde_json::json!({
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
        }));
        let error =
            super::super::volumes::volumes(&dir, &pod, &Sources::default(), &host, (4000, 8 << 30));
        assert!(error.is_err_and(|e| e.contains("mount_tmpfs")));
        assert!(host.left().is_empty());
    }
}
