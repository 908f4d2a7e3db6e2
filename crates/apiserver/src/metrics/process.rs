//! Metrics of the process itself, under the names Go's and Rust's Prometheus clients use,
//! read from `/proc` on each scrape. Where `/proc` cannot be read, they are left out.

use std::path::PathBuf;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors, when there is one.
    pub max_fds: Option<u64>,
}

/// CPU seconds and start time (seconds since the epoch) from `<pid>/stat` and the boot time.
fn parse_stat(stat: &str, boot_time: u64) -> Option<(f64, f64)> {
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is `fields[0]`; utime is 14, stime 15, starttime 22.
    let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu = (ticks(14)? + ticks(15)?) as f64 / TICKS_PER_SECOND;
    let start = boot_time as f64 + ticks(22)? as f64 / TICKS_PER_SECOND;
    Some((cpu, start))
}

/// The boot time, in seconds since the epoch, from `/proc/stat`.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// A `<pid>/status` field in kB, as bytes.
fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kb: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit of open files from `<pid>/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Reads the stats of the current process from `root` (normally `/proc`).
pub fn read(root: &std::path::Path) -> Option<ProcessStats> {
    let me = root.join("self");
    let stat = std::fs::read_to_string(me.join("stat")).ok()?;
    let boot_time = parse_boot_time(&std::fs::read_to_string(root.join("stat")).ok()?)?;
    let (cpu_seconds, start_time_seconds) = parse_stat(&stat, boot_time)?;
    let status = std::fs::read_to_string(me.join("status")).unwrap_or_default();
    let open_fds = std::fs::read_dir(me.join("fd")).map_or(0, |dir| dir.count() as u64);
    let max_fds = std::fs::read_to_string(me.join("limits")).ok().and_then(|l| parse_max_fds(&l));
    Some(ProcessStats {
        cpu_seconds,
        start_time_seconds,
        resident_memory_bytes: parse_status_kb(&status, "VmRSS").unwrap_or(0),
        virtual_memory_bytes: parse_status_kb(&status, "VmSize").unwrap_or(0),
        open_fds,
        max_fds,
    })
}

/// Reports [`ProcessStats`] on each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    root: PathBuf,
}

impl ProcessCollector {
    /// A collector reading from `root` (normally `/proc`).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read(&self.root) else { return Ok(()) };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let e = &mut encoder;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            stats.resident_memory_bytes as f64,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stats.virtual_memory_bytes as f64,
        )?;
        gauge(e, "process_open_fds", "Number of open file descriptors.", stats.open_fds as f64)?;
        if let Some(max) = stats.max_fds {
            gauge(e, "process_max_fds", "Maximum number of open file descriptors.", max as f64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (krust (a b) c) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 150 0 0 20 0 8 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat, 1_700_000_000), Some((4.0, 1_700_000_123.45)));
        assert_eq!(parse_stat("garbage", 0), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn status_and_limits_give_memory_and_the_fd_limit() {
        let status = "Name:\tkrust\nVmSize:\t  2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(2048 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_can_be_read_from_proc() {
        let Some(stats) = read(std::path::Path::new("/proc")) else { return };
        assert!(stats.resident_memory_bytes > 0);
        assert!(stats.open_fds > 0);
        assert!(stats.start_time_seconds > 1_000_000_000.0);
    }
}
