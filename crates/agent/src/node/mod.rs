//! The node: registers its Node object, keeps its status true (capacity, allocatable,
//! addresses, node info, conditions from real measurements), and renews its Lease in
//! `kube-node-lease` every 10 s.

pub mod machine;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::Options;

/// How often the lease is renewed (upstream's `nodeLeaseRenewInterval`: a quarter of 40 s).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The lease's duration (upstream's default `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The longest the status goes unreported when nothing changes (upstream's
/// `nodeStatusReportFrequency`).
pub const STATUS_REPORT: Duration = Duration::from_secs(300);
/// How often the machine is measured.
const MEASURE: Duration = Duration::from_secs(10);

/// Registers the node and keeps its status and lease current; runs for ever.
pub async fn run(client: Client, options: Options) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = loop {
        match register(&nodes, &options).await {
            Ok(node) => break node,
            Err(e) => {
                tracing::warn!(node = %options.node_name, error = %e, "cannot register the node yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(node = %options.node_name, "node registered");
    let uid = node.metadata.uid.clone().unwrap_or_default();
    tokio::spawn(renew_lease(client, options.node_name.clone(), uid));
    // What does not change while the agent runs is read once.
    let info = node_info(&options);
    // What was last written: the conditions' verdicts, when, and the status.
    let mut reported: Option<(Verdicts, std::time::Instant, NodeStatus)> = None;
    loop {
        let status = status(&options, &info, node.status.as_ref());
        let verdicts = verdicts(&status);
        let due = match &reported {
            None => true,
            Some((last, at, last_status)) => {
                *last != verdicts
                    || at.elapsed() >= STATUS_REPORT
                    || last_status.allocatable != status.allocatable
                    || last_status.addresses != status.addresses
                    || last_status.images != status.images
            }
        };
        if due {
            let patch = serde_json::json!({ "status": status });
            match nodes
                .patch_status(&options.node_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => {
                    node = updated;
                    reported = Some((verdicts, std::time::Instant::now(), status));
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    tracing::warn!(node = %options.node_name, "the node object is gone; registering again");
                    if let Ok(again) = register(&nodes, &options).await {
                        node = again;
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %options.node_name, error = %e, "cannot update the node's status")
                }
            }
        }
        tokio::time::sleep(MEASURE).await;
    }
}

/// Each condition's (type, status, reason).
type Verdicts = Vec<(String, String, String)>;

fn verdicts(status: &NodeStatus) -> Verdicts {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

/// Creates the Node, or takes the one that exists.
async fn register(nodes: &Api<Node>, options: &Options) -> Result<Node, kube::Error> {
    let hostname = options.node_name.clone();
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), hostname.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    labels.extend(options.node_labels.clone());
    let cidr = format!("{}/{}", options.pod_cidr.0, options.pod_cidr.1);
    let mut cidrs = vec![cidr.clone()];
    cidrs.extend(options.pod_cidr_v6.map(|(network, prefix)| format!("{network}/{prefix}")));
    let node = Node {
        metadata: ObjectMeta {
            name: Some(hostname.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(cidrs),
            ..NodeSpec::default()
        }),
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&hostname).await,
        Err(e) => Err(e),
    }
}

/// The node's status now: capacity and allocatable, conditions (each keeping its last
/// transition time while its verdict holds), addresses and node info.
fn status(options: &Options, info: &NodeSystemInfo, previous: Option<&NodeStatus>) -> NodeStatus {
    let readings = machine::read(&options.data_dir);
    let (capacity, allocatable) = machine::resources(&readings, &options.reserved);
    let (memory, disk, pids) = machine::pressure(&readings, &options.eviction_hard);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str,
                     under: bool,
                     (yes, yes_message): (&str, &str),
                     (no, no_message): (&str, &str)| {
        let (status, reason, message) =
            if under { ("True", yes, yes_message) } else { ("False", no, no_message) };
        let reported = previous.and_then(|p| p.conditions.as_ref()).into_iter().flatten();
        let since = crate::transition_time(
            reported
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.last_transition_time.as_ref())),
            type_,
            status,
            &now,
        );
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since),
        }
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            memory,
            ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
            ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ),
        condition(
            "DiskPressure",
            disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        condition(
            "PIDPressure",
            pids,
            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ),
        condition(
            "Ready",
            true,
            ("KubeletReady", "kubelet is posting ready status"),
            ("KubeletNotReady", "kubelet is not ready"),
        ),
    ];
    let mut addresses = Vec::new();
    let ips = options.node_ip.map(IpAddr::V4).into_iter().chain(options.node_ip6.map(IpAddr::V6));
    for ip in ips {
        addresses.push(NodeAddress { type_: "InternalIP".into(), address: ip.to_string() });
    }
    addresses.push(NodeAddress { type_: "Hostname".into(), address: options.node_name.clone() });
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(options.port) }),
        }),
        node_info: Some(info.clone()),
        images: crate::image::ImageStore::open(&options.data_dir.join("images"))
            .and_then(|store| store.list())
            .ok()
            .map(|images| {
                images
                    .into_iter()
                    .map(|i| ContainerImage {
                        names: Some(
                            i.repo_digests
                                .into_iter()
                                .chain(i.names)
                                .chain(std::iter::once(i.id))
                                .collect(),
                        ),
                        size_bytes: Some(i.size as i64),
                    })
                    .collect()
            }),
        ..NodeStatus::default()
    }
}

fn node_info(options: &Options) -> NodeSystemInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
    };
    let os_release = read("/etc/os-release");
    let os_image = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let uname = nix::sys::utsname::uname().ok();
    let machine_id = read("/etc/machine-id");
    let product_uuid = read("/sys/class/dmi/id/product_uuid");
    NodeSystemInfo {
        architecture: arch().to_string(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!("krust://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kube_proxy_version: String::new(),
        kubelet_version: options.version.clone(),
        machine_id: machine_id.clone(),
        operating_system: "linux".into(),
        os_image,
        system_uuid: if product_uuid.is_empty() { machine_id } else { product_uuid },
        ..NodeSystemInfo::default()
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Renews the node's Lease for ever (creating it when missing), owned by the Node so that
/// it goes with it.
async fn renew_lease(client: Client, node: String, node_uid: String) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let renewed = Lease {
            metadata: ObjectMeta {
                name: Some(node.clone()),
                namespace: Some("kube-node-lease".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.clone(),
                    uid: node_uid.clone(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let result = match leases.get_opt(&node).await {
            Ok(Some(mut current)) => {
                current.spec = renewed.spec.clone();
                leases.replace(&node, &PostParams::default(), &current).await.map(|_| ())
            }
            Ok(None) => leases.create(&PostParams::default(), &renewed).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(node = %node, error = %e, "cannot renew the node's lease");
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}
