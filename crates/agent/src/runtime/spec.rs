//! The OCI runtime config (`config.json`) of one container: a plain function of what the
//! pod logic decided, so that it is tested without a runtime.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::seccomp::{self, Seccomp};

/// Where a container's namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The host's (no namespace of its own).
    Host,
    /// A new one, the container's own.
    New,
    /// The pod's, pinned at this path.
    Join(PathBuf),
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it appears in the container.
    pub destination: String,
    /// What is bind-mounted there (a host path).
    pub source: PathBuf,
    /// Whether the container may not write to it.
    pub read_only: bool,
}

/// A container's input, as its spec asks (`tty`, `stdin`, `stdinOnce`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    /// A terminal (its output is the container's stdout).
    pub tty: bool,
    /// An input that attached clients write to.
    pub stdin: bool,
    /// The input closes when the first attached client leaves.
    pub stdin_once: bool,
}

/// The annotation that tells the shim to keep the container's input open for attach.
pub const STDIN_ANNOTATION: &str = "krust.io/stdin";

/// What the runtime needs to run one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// The process and its arguments.
    pub args: Vec<String>,
    /// `NAME=value` environment.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user, group and supplementary groups the process runs as.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The container's root filesystem (the overlay's mount point).
    pub rootfs: PathBuf,
    /// `readOnlyRootFilesystem`.
    pub read_only_rootfs: bool,
    /// The hostname (set in the pod's UTS namespace already; also given to the runtime).
    pub hostname: Option<String>,
    /// Network, IPC, UTS and PID namespaces.
    pub network: Namespace,
    /// The IPC namespace.
    pub ipc: Namespace,
    /// The UTS namespace.
    pub uts: Namespace,
    /// The PID namespace.
    pub pid: Namespace,
    /// Bind mounts (volumes, `/etc/hosts`, `/etc/resolv.conf`, ...).
    pub mounts: Vec<Mount>,
    /// The capabilities the process keeps (bounding, effective, permitted).
    pub capabilities: Vec<String>,
    /// `privileged`: every capability, every device, no masked paths.
    pub privileged: bool,
    /// `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// The seccomp filter (none for privileged containers, whatever this says).
    pub seccomp: Seccomp,
    /// The cgroup path, relative to each hierarchy's root.
    pub cgroups_path: String,
    /// The memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// CPU shares (from the CPU request).
    pub cpu_shares: u64,
    /// CPU quota per 100 ms period, in microseconds (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// How the container's first process gets its input: a terminal (`tty`), an open pipe
    /// (`stdin`), or nothing.
    pub stdio: Stdio,
    /// The OOM score adjustment (from the pod's QoS class).
    pub oom_score_adj: i32,
}

/// The capabilities a container keeps by default (containerd's and CRI-O's defaults).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The kernel files hidden from unprivileged containers (containerd's defaults).
const MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: [&str; 6] =
    ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The OCI config of `c`.
pub fn config(c: &ContainerConfig) -> Value {
    let namespace = |kind: &str, ns: &Namespace| match ns {
        Namespace::Host => None,
        Namespace::New => Some(json!({"type": kind})),
        Namespace::Join(path) => Some(json!({"type": kind, "path": path})),
    };
    let mut namespaces: Vec<Value> = [
        namespace("network", &c.network),
        namespace("ipc", &c.ipc),
        namespace("uts", &c.uts),
        namespace("pid", &c.pid),
    ]
    .into_iter()
    .flatten()
    .collect();
    namespaces.push(json!({"type": "mount"}));
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for m in &c.mounts {
        let mut options = vec!["rbind", "rprivate"];
        if m.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": options}));
    }
    let capabilities: Vec<&str> = if c.privileged {
        ALL_CAPABILITIES.to_vec()
    } else {
        c.capabilities.iter().map(String::as_str).collect()
    };
    let devices = if c.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        // The devices every container may use, as runc's defaults.
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        ])
    };
    let mut resources = json!({"devices": devices, "cpu": {"shares": c.cpu_shares}});
    if let Some(limit) = c.memory_limit {
        resources["memory"] = json!({"limit": limit, "swap": limit});
    }
    if let Some(quota) = c.cpu_quota {
        resources["cpu"]["quota"] = json!(quota);
        resources["cpu"]["period"] = json!(100_000);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": c.cgroups_path,
        "resources": resources,
    });
    if !c.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        // As containerd's, the default profile follows the capabilities the process keeps.
        match &c.seccomp {
            Seccomp::Unconfined => {}
            Seccomp::RuntimeDefault(host) => {
                linux["seccomp"] = seccomp::runtime_default(host, &capabilities).to_json();
            }
            Seccomp::Localhost(profile) => linux["seccomp"] = profile.clone(),
        }
    }
    let mut process = json!({
        "terminal": c.stdio.tty,
        "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
        "args": c.args,
        "env": c.env,
        "cwd": if c.cwd.is_empty() { "/" } else { c.cwd.as_str() },
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
        },
        "oomScoreAdj": c.oom_score_adj,
    });
    // Only when set: `libcontainer` reads a present `false` as "set" and then loads the
    // seccomp filter only after the capabilities are gone, when the kernel refuses it.
    if c.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if c.uid != 0 {
        // A non-root process keeps no effective capabilities (as Docker's and containerd's).
        process["capabilities"]["effective"] = json!([]);
        process["capabilities"]["permitted"] = json!([]);
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": c.rootfs, "readonly": c.read_only_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(hostname) = &c.hostname {
        config["hostname"] = json!(hostname);
    }
    if c.stdio.stdin {
        let mode = if c.stdio.stdin_once { "once" } else { "open" };
        config["annotations"] = json!({ STDIN_ANNOTATION: mode });
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ContainerConfig {
        ContainerConfig {
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: String::new(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            rootfs: "/r".into(),
            read_only_rootfs: false,
            hostname: None,
            network: Namespace::Join("/p/net".into()),
            ipc: Namespace::Join("/p/ipc".into()),
            uts: Namespace::Host,
            pid: Namespace::New,
            mounts: vec![Mount {
                destination: "/data".into(),
                source: "/v".into(),
                read_only: true,
            }],
            capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            privileged: false,
            no_new_privileges: true,
            seccomp: Seccomp::Unconfined,
            cgroups_path: "/krust/pod/c".into(),
            memory_limit: Some(64 << 20),
            cpu_shares: 2,
            cpu_quota: Some(50_000),
            oom_score_adj: 1000,
            stdio: Stdio::default(),
        }
    }

    #[test]
    fn joins_the_pods_namespaces_and_keeps_the_hosts() {
        let config = config(&base());
        let namespaces = &config["linux"]["namespaces"];
        assert_eq!(namespaces[0], json!({"type": "network", "path": "/p/net"}));
        assert_eq!(namespaces[1], json!({"type": "ipc", "path": "/p/ipc"}));
        assert_eq!(namespaces[2], json!({"type": "pid"}));
        assert!(!namespaces.as_array().is_some_and(|n| n.iter().any(|n| n["type"] == "uts")));
    }

    #[test]
    fn resources_volumes_and_privileges() {
        let config = config(&base());
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(config["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(config["process"]["noNewPrivileges"], true);
        let data = config["mounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["destination"] == "/data"))
            .cloned();
        assert_eq!(data.map(|d| d["options"].clone()), Some(json!(["rbind", "rprivate", "ro"])));
        assert!(config["linux"]["maskedPaths"].is_array());
        let privileged = super::config(&ContainerConfig { privileged: true, ..base() });
        assert_eq!(
            privileged["process"]["capabilities"]["bounding"].as_array().map(Vec::len),
            Some(41)
        );
        assert!(privileged["linux"]["maskedPaths"].is_null());
    }

    #[test]
    fn seccomp_default_profile_follows_the_kept_capabilities_and_spares_privileged() {
        let host = seccomp::Host { arch: seccomp::Arch::X86_64, kernel: Some((6, 1)) };
        assert!(config(&base())["linux"]["seccomp"].is_null());
        let confined = ContainerConfig { seccomp: Seccomp::RuntimeDefault(host), ..base() };
        let names = |config: &Value| -> Vec<String> {
            config["linux"]["seccomp"]["syscalls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["args"].is_null())
                .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        };
        let plain = config(&confined);
        assert_eq!(plain["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(!names(&plain).contains(&"mount".to_string()));
        let admin = config(&ContainerConfig {
            capabilities: vec!["CAP_SYS_ADMIN".into()],
            ..confined.clone()
        });
        assert!(names(&admin).contains(&"mount".to_string()));
        assert!(
            config(&ContainerConfig { privileged: true, ..confined })["linux"]["seccomp"].is_null()
        );
        let own = json!({"defaultAction": "SCMP_ACT_LOG"});
        let local = config(&ContainerConfig { seccomp: Seccomp::Localhost(own.clone()), ..base() });
        assert_eq!(local["linux"]["seccomp"], own);
    }
}
