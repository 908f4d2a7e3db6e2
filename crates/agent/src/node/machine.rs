//! What the node's status says about the machine, read from `/proc` and the file system,
//! and the pure rules that turn those readings into capacity, allocatable and conditions.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// One reading of the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Online CPUs.
    pub cpus: u64,
    /// `MemTotal`, in bytes.
    pub memory_total: u64,
    /// `MemAvailable`, in bytes.
    pub memory_available: u64,
    /// The size of the file system holding the agent's data, in bytes.
    pub disk_total: u64,
    /// What is free there for unprivileged users, in bytes.
    pub disk_available: u64,
    /// Processes (threads) running now.
    pub pids_running: u64,
    /// The most the kernel allows (`kernel.pid_max`).
    pub pid_max: u64,
}

/// Reads the machine, measuring the file system of `data_dir`.
pub fn read(data_dir: &Path) -> Readings {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (disk_total, disk_available) = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| {
            let frag = s.fragment_size();
            (s.blocks() * frag, s.blocks_available() * frag)
        })
        .unwrap_or((0, 0));
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Readings {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        memory_total: meminfo_bytes(&meminfo, "MemTotal"),
        memory_available: meminfo_bytes(&meminfo, "MemAvailable"),
        disk_total,
        disk_available,
        pids_running: loadavg
            .split_whitespace()
            .nth(3)
            .and_then(|r| r.split_once('/'))
            .and_then(|(_, total)| total.parse().ok())
            .unwrap_or(0),
        pid_max: std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768),
    }
}

/// A `/proc/meminfo` field in bytes (the file counts in kB).
pub fn meminfo_bytes(meminfo: &str, field: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// What is held back from pods: system and kube reservations, and the hard eviction
/// threshold for memory (upstream's default: 100Mi).
#[derive(Debug, Clone, PartialEq)]
pub struct Reserved {
    /// Millicores.
    pub cpu_millis: u64,
    /// Bytes.
    pub memory: u64,
    /// Bytes of ephemeral storage.
    pub ephemeral_storage: u64,
}

impl Default for Reserved {
    fn default() -> Self {
        Reserved { cpu_millis: 0, memory: 100 << 20, ephemeral_storage: 0 }
    }
}

/// The most pods the node runs (upstream's default).
pub const MAX_PODS: u64 = 110;

/// The node's capacity and allocatable resources.
pub fn resources(
    r: &Readings,
    reserved: &Reserved,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(r.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", r.memory_total / 1024))),
        ("ephemeral-storage".to_string(), Quantity(format!("{}Ki", r.disk_total / 1024))),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
    ]);
    let cpu = (r.cpus * 1000).saturating_sub(reserved.cpu_millis);
    let allocatable = BTreeMap::from([
        (
            "cpu".to_string(),
            Quantity(if cpu.is_multiple_of(1000) {
                (cpu / 1000).to_string()
            } else {
                format!("{cpu}m")
            }),
        ),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", r.memory_total.saturating_sub(reserved.memory) / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(r.disk_total.saturating_sub(reserved.ephemeral_storage).to_string()),
        ),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
    ]);
    (capacity, allocatable)
}

/// One hard eviction threshold: an amount, or a share of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Bytes (or PIDs).
    Amount(u64),
    /// Percent of the total.
    Percent(f64),
}

impl Threshold {
    /// Whether `available` of `total` is below the threshold.
    fn crossed(self, available: u64, total: u64) -> bool {
        match self {
            Threshold::Amount(amount) => available < amount,
            Threshold::Percent(percent) => {
                total > 0 && (available as f64) < total as f64 * percent / 100.0
            }
        }
    }
}

/// The hard eviction thresholds that make the pressure conditions (the kubelet's
/// `--eviction-hard`); upstream's defaults: `memory.available<100Mi`,
/// `nodefs.available<10%`, `pid.available<10%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `memory.available`.
    pub memory: Threshold,
    /// `nodefs.available` (`imagefs.available` is the same filesystem here).
    pub nodefs: Threshold,
    /// `pid.available`.
    pub pid: Threshold,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            memory: Threshold::Amount(100 << 20),
            nodefs: Threshold::Percent(10.0),
            pid: Threshold::Percent(10.0),
        }
    }
}

impl std::str::FromStr for Thresholds {
    type Err = String;

    /// `SIGNAL<QUANTITY|PERCENT%`, comma separated. As the kubelet's, a signal left out is
    /// off once any is given.
    fn from_str(text: &str) -> Result<Thresholds, String> {
        let off = Threshold::Amount(0);
        let mut thresholds = Thresholds { memory: off, nodefs: off, pid: off };
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item
                .split_once('<')
                .ok_or_else(|| format!("{item:?}: want SIGNAL<VALUE, as memory.available<100Mi"))?;
            let threshold = match value.strip_suffix('%') {
                Some(percent) => Threshold::Percent(
                    percent
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p))
                        .ok_or_else(|| format!("{item:?}: a percent from 0 to 100"))?,
                ),
                None => {
                    let quantity =
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(value.to_string());
                    let amount = krust_api::quantity::Amount::of(&quantity)
                        .ok()
                        .and_then(|a| u64::try_from(a.value()).ok())
                        .ok_or_else(|| format!("{item:?}: {value:?} is not a quantity"))?;
                    Threshold::Amount(amount)
                }
            };
            match signal {
                "memory.available" => thresholds.memory = threshold,
                "nodefs.available" | "imagefs.available" => thresholds.nodefs = threshold,
                "pid.available" => thresholds.pid = threshold,
                "nodefs.inodesFree" | "imagefs.inodesFree" => {}
                other => return Err(format!("unknown eviction signal {other:?}")),
            }
        }
        Ok(thresholds)
    }
}

impl Thresholds {
    /// The memory threshold in bytes, when it is an amount (what allocatable leaves out).
    pub fn memory_amount(&self) -> u64 {
        match self.memory {
            Threshold::Amount(bytes) => bytes,
            Threshold::Percent(_) => 0,
        }
    }
}

/// The pressure conditions' verdicts: (memory, disk, pids), each true under pressure.
pub fn pressure(r: &Readings, thresholds: &Thresholds) -> (bool, bool, bool) {
    let memory = thresholds.memory.crossed(r.memory_available, r.memory_total);
    let disk = thresholds.nodefs.crossed(r.disk_available, r.disk_total);
    let pids = r.pid_max > 0
        && thresholds.pid.crossed(r.pid_max.saturating_sub(r.pids_running), r.pid_max);
    (memory, disk, pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_kilobytes() {
        let text = "MemTotal:       16384 kB\nMemFree:   1 kB\nMemAvailable:    8192 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), 16384 * 1024);
        assert_eq!(meminfo_bytes(text, "MemAvailable"), 8192 * 1024);
        assert_eq!(meminfo_bytes(text, "Mem"), 0);
    }

    #[test]
    fn allocatable_is_capacity_less_reservations() {
        let r = Readings {
            cpus: 2,
            memory_total: 4 << 30,
            disk_total: 100 << 30,
            ..Readings::default()
        };
        let reserved = Reserved { cpu_millis: 100, memory: 512 << 20, ephemeral_storage: 1 << 30 };
        let (capacity, allocatable) = resources(&r, &reserved);
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "4194304Ki");
        assert_eq!(allocatable["cpu"].0, "1900m");
        assert_eq!(allocatable["memory"].0, format!("{}Ki", (4u64 << 20) - (512 << 10)));
        assert_eq!(allocatable["pods"].0, "110");
    }

    #[test]
    fn pressure_follows_upstreams_thresholds() {
        let calm = Readings {
            memory_available: 1 << 30,
            disk_total: 100,
            disk_available: 50,
            pids_running: 100,
            pid_max: 1000,
            ..Readings::default()
        };
        let defaults = Thresholds::default();
        assert_eq!(pressure(&calm, &defaults), (false, false, false));
        let squeezed =
            Readings { memory_available: 50 << 20, disk_available: 9, pids_running: 901, ..calm };
        assert_eq!(pressure(&squeezed, &defaults), (true, true, true));
        // `--eviction-hard` as kind sets it for CI: the disk never presses, the others are off.
        let lenient: Thresholds =
            "nodefs.available<0%,imagefs.available<0%".parse().expect("valid");
        assert_eq!(pressure(&squeezed, &lenient), (false, false, false));
    }

    #[test]
    fn eviction_hard_reads_the_kubelets_syntax() {
        let t: Thresholds =
            "memory.available<1Gi, nodefs.available<5%,pid.available<100,nodefs.inodesFree<5%"
                .parse()
                .expect("valid");
        assert_eq!(t.memory, Threshold::Amount(1 << 30));
        assert_eq!(t.nodefs, Threshold::Percent(5.0));
        assert_eq!(t.pid, Threshold::Amount(100));
        for bad in [
            "memory.available>1Gi",
            "memory.available<lots",
            "nodefs.available<150%",
            "cpu.idle<5%",
        ] {
            assert!(bad.parse::<Thresholds>().is_err(), "{bad}");
        }
    }
}
