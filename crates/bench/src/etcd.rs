//! A throwaway etcd on loopback for the benchmark's reference runs.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running etcd, killed on drop.
pub struct Etcd {
    child: Child,
    /// Its client URL.
    pub url: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    /// Starts `binary` with its data in `dir` and waits until it answers.
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(binary, dir, &[]).await
    }

    /// Starts `binary` with its data in `dir` and the flags `extra`, and waits until it
    /// answers.
    pub async fn start_with(binary: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let (client, peer) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client}");
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let etcd = Self { child, url };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if krust_store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url)).await.is_ok()
            {
                return Ok(etcd);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("etcd at {} did not answer within 20 s", etcd.url)
    }
}

impl Etcd {
    /// The process id of the etcd process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
