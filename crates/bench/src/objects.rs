//! Objects shaped like a real cluster's, generated from an index so that the benchmark holds
//! none of them: Nodes as a kubelet registers them, and Pods as a Deployment's running pods
//! (created, then given the status a kubelet reports), spread over nodes and namespaces.

use serde_json::{Value, json};

/// The alphabet of upstream's generated name suffixes (`k8s.io/apimachinery/.../rand`).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The Deployments of every namespace.
const APPS: [&str; 10] = [
    "web", "api", "worker", "cache", "frontend", "checkout", "search", "auth", "billing", "notify",
];

/// The label every generated pod carries, whose `"key":"value"` text counts the pods of a
/// streamed list.
pub const POD_MARKER: &str = r#""bench.krust.dev/scale":"pod""#;

/// A 64-bit mix of `x` (splitmix64's finalizer): deterministic ids and hashes.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `n` characters of upstream's suffix alphabet, from `x`.
fn suffix(mut x: u64, n: usize) -> String {
    let base = SUFFIX_ALPHABET.len() as u64;
    (0..n)
        .map(|_| {
            let c = SUFFIX_ALPHABET[(x % base) as usize];
            x /= base;
            char::from(c)
        })
        .collect()
}

/// 64 hex digits derived from `seed` (an image digest, a container id).
fn hex64(seed: u64) -> String {
    (0..4).map(|k| format!("{:016x}", mix(seed.wrapping_mul(4).wrapping_add(k)))).collect()
}

/// A UUID-shaped id derived from `seed`.
fn uid(seed: u64) -> String {
    let (a, b) = (mix(seed), mix(!seed));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Where each of a run's pods goes: its node and namespace, chosen so that two probes return
/// the same pods at the early point (when `early` pods exist) and at full size. The probe
/// node (`node 0`) gets its whole share of pods first, and the probe namespace (`namespace 0`)
/// gets its pods only among the first `early`; every other node and namespace keeps filling.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Pods in all.
    pub pods: usize,
    /// Nodes in all.
    pub nodes: usize,
    /// Namespaces in all.
    pub namespaces: usize,
    /// Pods in the store at the early point.
    pub early: usize,
}

impl Layout {
    /// The name of namespace `k`.
    pub fn namespace(&self, k: usize) -> String {
        format!("ns-{k:03}")
    }

    /// The name of node `n`.
    pub fn node(&self, n: usize) -> String {
        format!("node-{n:05}")
    }

    /// How many pods the probe node holds (all created before the early point).
    pub fn probe_node_pods(&self) -> usize {
        self.pods.div_ceil(self.nodes.max(1)).min(self.early).max(1)
    }

    /// The node pod `i` runs on.
    pub fn node_of(&self, i: usize) -> usize {
        let first = self.probe_node_pods();
        if self.nodes <= 1 || i < first { 0 } else { 1 + (i - first) % (self.nodes - 1) }
    }

    /// The namespace pod `i` is in.
    pub fn namespace_of(&self, i: usize) -> usize {
        if self.namespaces <= 1 {
            0
        } else if i < self.early {
            i % self.namespaces
        } else {
            1 + (i - self.early) % (self.namespaces - 1)
        }
    }

    /// The Deployment (an index in [`APPS`]) of pod `i`.
    fn app_of(&self, i: usize) -> usize {
        (i / self.namespaces.max(1)) % APPS.len()
    }

    /// The pod-template-hash of a Deployment in a namespace.
    fn template_hash(&self, namespace: usize, app: usize) -> String {
        suffix(mix((namespace * APPS.len() + app) as u64), 10)
    }

    /// The namespace and name of pod `i`.
    pub fn pod_key(&self, i: usize) -> (String, String) {
        let (k, app) = (self.namespace_of(i), self.app_of(i));
        let name = format!("{}-{}-{}", APPS[app], self.template_hash(k, app), suffix(i as u64, 5));
        (self.namespace(k), name)
    }

    /// Pod `i` as its ReplicaSet creates it (bound to its node already), and the merge patch
    /// of its status the kubelet then writes.
    pub fn pod(&self, i: usize) -> (Value, Value) {
        let (namespace, name) = self.pod_key(i);
        let (k, a, n) = (self.namespace_of(i), self.app_of(i), self.node_of(i));
        let app = APPS[a];
        let hash = self.template_hash(k, a);
        let replica_set = format!("{app}-{hash}");
        let image = format!("registry.example.com/shop/{app}:v1.{a}.3");
        let seed = i as u64;
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": format!("{replica_set}-"),
                "namespace": namespace,
                "labels": {
                    "app": app,
                    "app.kubernetes.io/name": app,
                    "app.kubernetes.io/part-of": "shop",
                    "pod-template-hash": hash,
                    "bench.krust.dev/scale": "pod",
                },
                "annotations": {
                    "prometheus.io/scrape": "true",
                },
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replica_set,
                    "uid": uid(mix((k * APPS.len() + a) as u64)),
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "containers": [{
                    "name": app,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    ],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
                        {"name": "LOG_FORMAT", "value": "json"},
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "volumeMounts": [{"name": "config", "mountPath": format!("/etc/{app}"), "readOnly": true}],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1,
                        "successThreshold": 1, "failureThreshold": 3,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                        "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }],
                "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config"), "defaultMode": 420}}],
                "nodeName": self.node(n),
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
            },
        });
        let host_ip = node_ip(n);
        let pod_ip = format!(
            "10.{}.{}.{}",
            64 + (n / 256) % 192,
            n % 256,
            2 + (i / self.nodes.max(1)) % 250
        );
        let (t0, t1) = ("2026-01-05T09:12:51Z", "2026-01-05T09:12:58Z");
        let status = json!({"status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": t1},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": t0},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": t1},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": t1},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": t0},
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": t0,
            "containerStatuses": [{
                "name": app,
                "state": {"running": {"startedAt": t1}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": image,
                "imageID": format!("registry.example.com/shop/{app}@sha256:{}", hex64(a as u64)),
                "containerID": format!("containerd://{}", hex64(seed ^ 0x5eed)),
                "started": true,
            }],
            "qosClass": "Burstable",
        }});
        (pod, status)
    }

    /// Node `n` as its kubelet registers it, with the status it reports.
    pub fn node_object(&self, n: usize) -> Value {
        let name = self.node(n);
        let zone = ["a", "b", "c"][n % 3];
        let ip = node_ip(n);
        let cidr = format!("10.{}.{}.0/24", 64 + (n / 256) % 192, n % 256);
        let instance = format!("i-{:017x}", mix(n as u64) >> 4);
        let heartbeat = "2026-01-05T09:40:12Z";
        let since = "2026-01-05T08:02:31Z";
        let condition = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "lastHeartbeatTime": heartbeat, "lastTransitionTime": since, "reason": reason, "message": message});
        let images: Vec<Value> = [
            ("registry.k8s.io/kube-proxy", "v1.33.1", 30_218_335),
            ("registry.k8s.io/pause", "3.10", 320_368),
            ("docker.io/calico/node", "v3.29.1", 142_519_862),
            ("docker.io/calico/cni", "v3.29.1", 96_128_774),
            ("registry.k8s.io/coredns/coredns", "v1.12.0", 20_939_036),
            ("quay.io/prometheus/node-exporter", "v1.9.0", 12_147_890),
        ]
        .iter()
        .enumerate()
        .map(|(k, (repo, tag, size))| {
            json!({"names": [format!("{repo}@sha256:{}", hex64(1000 + k as u64)), format!("{repo}:{tag}")], "sizeBytes": size})
        })
        .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/instance-type": "m5.xlarge",
                    "beta.kubernetes.io/os": "linux",
                    "failure-domain.beta.kubernetes.io/region": "us-east-1",
                    "failure-domain.beta.kubernetes.io/zone": format!("us-east-1{zone}"),
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "m5.xlarge",
                    "topology.kubernetes.io/region": "us-east-1",
                    "topology.kubernetes.io/zone": format!("us-east-1{zone}"),
                    "node-pool": format!("pool-{}", n % 4),
                },
                "annotations": {
                    "alpha.kubernetes.io/provided-node-ip": ip,
                    "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"{instance}\"}}"),
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {
                "podCIDR": cidr,
                "podCIDRs": [cidr],
                "providerID": format!("aws:///us-east-1{zone}/{instance}"),
            },
            "status": {
                "capacity": {"cpu": "4", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "16073600Ki", "pods": "110"},
                "allocatable": {"cpu": "3920m", "ephemeral-storage": "95551679124", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "15056768Ki", "pods": "110"},
                "conditions": [
                    condition("NetworkUnavailable", "False", "CalicoIsUp", "Calico is running on this node"),
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "InternalDNS", "address": format!("ip-{}.ec2.internal", ip.replace('.', "-"))},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": uid(mix(n as u64 ^ 0xb007)),
                    "containerRuntimeVersion": "containerd://1.7.24",
                    "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                    "kubeProxyVersion": "v1.33.1",
                    "kubeletVersion": "v1.33.1",
                    "machineID": format!("{:016x}{:016x}", mix(n as u64 ^ 0x3ac), mix(n as u64 ^ 0x3ad)),
                    "operatingSystem": "linux",
                    "osImage": "Amazon Linux 2023.6.20241212",
                    "systemUUID": uid(mix(n as u64 ^ 0x5e5)),
                },
                "images": images,
            },
        })
    }
}

/// The internal IP of node `n`.
fn node_ip(n: usize) -> String {
    format!("172.{}.{}.{}", 16 + (n / 65_536) % 16, (n / 256) % 256, n % 256)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;

    use super::*;

    fn layout() -> Layout {
        Layout { pods: 1500, nodes: 50, namespaces: 10, early: 300 }
    }

    #[test]
    fn pod_names_are_unique_and_valid() {
        let l = layout();
        let keys: HashSet<_> = (0..l.pods).map(|i| l.pod_key(i)).collect();
        assert_eq!(keys.len(), l.pods);
        for (_, name) in &keys {
            assert!(name.len() <= 63);
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }

    #[test]
    fn the_probes_are_complete_at_the_early_point() {
        let l = layout();
        let on_probe_node = (0..l.pods).filter(|&i| l.node_of(i) == 0).collect::<Vec<_>>();
        assert_eq!(on_probe_node.len(), 30);
        assert!(on_probe_node.iter().all(|&i| i < l.early));
        let in_probe_ns = (0..l.pods).filter(|&i| l.namespace_of(i) == 0).collect::<Vec<_>>();
        assert_eq!(in_probe_ns.len(), 30);
        assert!(in_probe_ns.iter().all(|&i| i < l.early));
        // Every other node gets about its share.
        let on_node_7 = (0..l.pods).filter(|&i| l.node_of(i) == 7).count();
        assert!((29..=31).contains(&on_node_7), "{on_node_7}");
    }

    #[test]
    fn objects_are_about_the_sizes_of_real_ones() {
        let l = layout();
        let node = serde_json::to_vec(&l.node_object(3)).unwrap().len();
        assert!((3000..5000).contains(&node), "{node}");
        let (pod, status) = l.pod(17);
        let pod = serde_json::to_vec(&pod).unwrap().len();
        let status = serde_json::to_vec(&status).unwrap().len();
        // The server adds defaults, tolerations and the service-account volume.
        assert!((2000..3800).contains(&(pod + status)), "{pod} + {status}");
        assert!(serde_json::to_string(&l.pod(17).0).unwrap().contains(POD_MARKER));
    }
}
