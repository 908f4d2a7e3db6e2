//! `krust server` as a child process of a benchmark, and what is read of a process from
//! `/proc`: a child's resident memory and CPU time are its own, apart from the client's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;

use crate::client::ApiClient;

/// A child process, killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to start a `krust server` child process.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// The krust binary.
    pub krust: PathBuf,
    /// Its data dir.
    pub dir: PathBuf,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// The etcd endpoint, or the embedded store when `None`.
    pub endpoint: Option<String>,
    /// More arguments of `krust server`.
    pub extra: Vec<String>,
    /// Where its standard error goes (`None`: discarded).
    pub log: Option<PathBuf>,
}

impl ServerCommand {
    /// A server of `krust` on `dir`, on a free port.
    pub fn new(krust: &Path, dir: &Path, endpoint: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            krust: krust.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port()?,
            endpoint: endpoint.map(str::to_owned),
            extra: Vec::new(),
            log: None,
        })
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&self) -> anyhow::Result<Killed> {
        let mut command = Command::new(&self.krust);
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--bind-address", "127.0.0.1", "--port", &self.port.to_string()])
            // The API server alone is measured: the controllers' and the scheduler's own work
            // (a garbage collector watching every resource) would add to its memory and CPU.
            .arg("--disable-controller-manager")
            .arg("--disable-scheduler")
            .arg("--disable-agent")
            .arg("--disable-ingress")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match &self.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        if let Some(endpoint) = &self.endpoint {
            command.args(["--datastore-endpoint", endpoint]);
        }
        let child =
            command.spawn().with_context(|| format!("cannot start {}", self.krust.display()))?;
        Ok(Killed(child))
    }

    /// Starts the process and waits (at most 60 s) until it answers with the admin
    /// kubeconfig.
    pub async fn start(&self) -> anyhow::Result<Server> {
        let mut child = self.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.0.try_wait()? {
                bail!("krust server exited: {status}{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("krust server did not answer within 60 s{}", self.log_tail());
            }
            if let Some(client) = connect(&self.dir).await {
                return Ok(Server { child, client });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the server's log, for an error message.
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("\n{} (last lines):\n{tail}", path.display())
    }
}

/// A started `krust server` child process, killed on drop.
pub struct Server {
    /// The process.
    pub child: Killed,
    /// An admin client of it.
    pub client: ApiClient,
}

impl Server {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends it SIGTERM and waits (at most 60 s) for it to exit; returns how long that took.
    pub async fn terminate(mut self) -> anyhow::Result<Duration> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid())?)
            .context("the server has no valid pid")?;
        let started = Instant::now();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("cannot send SIGTERM to the server")?;
        while self.child.0.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not exit within 60 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(started.elapsed())
    }
}

/// Connects with the admin kubeconfig once the server answers.
pub async fn connect(dir: &Path) -> Option<ApiClient> {
    let kubeconfig = std::fs::read_to_string(dir.join("admin.kubeconfig")).ok()?;
    let client = ApiClient::connect(&kubeconfig).await.ok()?;
    client.request(Method::GET, "/api/v1/namespaces/default", None).await.ok()?;
    Some(client)
}

/// Resident memory of a process, in bytes (0 when it cannot be read).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The unit of CPU times in `/proc/<pid>/stat`: the kernel's `USER_HZ`, 100 on every Linux
/// architecture krust builds for (x86-64, arm64).
const USER_HZ: f64 = 100.0;

/// CPU time (user plus system) a process has used, in seconds (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // space separated, utime and stime being the 12th and 13th of them.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// Waits until the process `pid` is idle (it used under 2% of one core over a quarter of a
/// second: its background work, such as a store checkpoint, is done), at most `limit`; returns
/// the seconds waited.
pub async fn settle(pid: u32, limit: std::time::Duration) -> f64 {
    let started = std::time::Instant::now();
    let interval = std::time::Duration::from_millis(250);
    loop {
        let before = cpu_seconds(pid);
        tokio::time::sleep(interval).await;
        let used = cpu_seconds(pid) - before;
        if used < 0.02 * interval.as_secs_f64() || started.elapsed() >= limit {
            return started.elapsed().as_secs_f64();
        }
    }
}

/// Bytes allocated on disk under `dir` (sparse files count what they use).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_usage(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
