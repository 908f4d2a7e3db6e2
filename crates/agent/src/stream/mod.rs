//! The streaming protocols of `kubectl exec`, `attach`, `port-forward` and `cp`, as the
//! agent serves them after the HTTP upgrade the API server relays:
//!
//! - SPDY/3.1 (`spdy`), which kubectl up to 1.29 speaks for all four, and which kubectl 1.31
//!   and later tunnel through a WebSocket for port-forward (`SPDY/3.1+portforward.k8s.io`);
//! - WebSocket channels (`v5.channel.k8s.io` down to `channel.k8s.io`), which kubectl 1.30
//!   and later and the client libraries speak for exec, attach and cp (`websocket`).
//!
//! Each transport turns its streams into the same `ProcessStreams` (exec and attach) or
//! `Forward`s (port-forward), so what runs the process or dials the port never knows which
//! protocol carries its bytes. All buffers between a client and a process are bounded
//! channels: a client that stops reading stops the process's output, not the agent's memory.

pub mod port_forward;
pub mod process;
pub mod spdy;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use process::{Outcome, ProcessStreams, TerminalSize};

/// What an exec or attach request asks for (its query: `stdin`, `stdout`, `stderr`,
/// `tty`, `command`, `container`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRequest {
    /// The client sends input.
    pub stdin: bool,
    /// The client wants the process's output.
    pub stdout: bool,
    /// The client wants the process's errors (never with a terminal: they share it).
    pub stderr: bool,
    /// The process gets a terminal.
    pub tty: bool,
    /// The command (exec only).
    pub command: Vec<String>,
}

impl StreamRequest {
    /// Reads a request's query. Upstream's names (`stdin`, ...) and the kubelet's (`input`,
    /// `output`, `error`) are both taken.
    pub fn from_query(query: &str) -> StreamRequest {
        let mut request = StreamRequest::default();
        for (key, value) in form_pairs(query) {
            let on = value == "1" || value.eq_ignore_ascii_case("true");
            match key.as_str() {
                "stdin" | "input" => request.stdin = on,
                "stdout" | "output" => request.stdout = on,
                "stderr" | "error" => request.stderr = on,
                "tty" => request.tty = on,
                "command" => request.command.push(value),
                _ => {}
            }
        }
        if request.tty {
            request.stderr = false;
        }
        request
    }
}

/// The `ports` of a port-forward request (repeated, or comma-separated).
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in form_pairs(query) {
        if key != "ports" {
            continue;
        }
        for port in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => return Err(format!("invalid port {port:?}")),
            }
        }
    }
    Ok(ports)
}

/// A query's pairs, percent-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// How long a SPDY client has to open the streams it asked for: an exec's, or the second of
/// a port-forward pair (upstream's `streamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// When bytes last moved in a session, either way (for the idle timeout).
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// A session that starts now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0) })
    }

    /// Bytes moved.
    pub fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long no bytes moved.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Resolves once `activity` was idle for `timeout`, or `gone` says the session's pod or
/// container is gone (checked every second).
pub async fn ended(activity: Arc<Activity>, timeout: Duration, gone: impl Fn() -> bool) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if activity.idle() >= timeout || gone() {
            return;
        }
    }
}

/// The most bytes read from a process or a forwarded connection at once (and so carried in
/// one SPDY frame or WebSocket message): large enough that per-chunk costs (frames, TLS
/// records, the client's own handling) stay small beside copying.
pub const CHUNK: usize = 128 * 1024;

/// Reads `from` in chunks of up to `CHUNK` bytes and hands each to `send`, until either ends.
pub async fn copy_chunks<R, F, Fut, E>(mut from: R, mut send: F) -> Result<(), E>
where
    R: AsyncRead + Unpin,
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut buffer = BytesMut::with_capacity(CHUNK);
    loop {
        buffer.reserve(CHUNK);
        match from.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => send(buffer.split().freeze()).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_query_is_read_like_upstreams() {
        let request = StreamRequest::from_query(
            "command=sh&command=-c&command=echo+%22a+b%22&container=c&stdin=true&stdout=1&stderr=true&tty=false",
        );
        assert_eq!(
            request,
            StreamRequest {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
                command: vec!["sh".into(), "-c".into(), "echo \"a b\"".into()],
            }
        );
        // A terminal carries errors on its output.
        assert!(!StreamRequest::from_query("stderr=true&tty=true").stderr);
        // A trailing or bad escape is kept as it is.
        assert_eq!(StreamRequest::from_query("command=%4").command, vec!["%4"]);
        assert_eq!(StreamRequest::from_query("command=%zz").command, vec!["%zz"]);
    }

    #[tokio::test]
    async fn a_session_ends_when_idle_or_gone_not_while_bytes_move() {
        let activity = Activity::new();
        let busy = Arc::clone(&activity);
        let toucher = tokio::spawn(async move {
            loop {
                busy.touch();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let waited = tokio::time::timeout(
            Duration::from_millis(2500),
            ended(Arc::clone(&activity), Duration::from_secs(1), || false),
        );
        assert!(waited.await.is_err(), "ended while bytes moved");
        toucher.abort();
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            ended(Arc::clone(&activity), Duration::from_secs(1), || false),
        );
        assert!(waited.await.is_ok(), "an idle session did not end");
        let gone = tokio::time::timeout(
            Duration::from_secs(3),
            ended(Activity::new(), Duration::from_secs(3600), || true),
        );
        assert!(gone.await.is_ok(), "a session whose pod is gone did not end");
    }

    #[test]
    fn ports_are_repeated_or_comma_separated() {
        assert_eq!(ports_from_query("ports=80&ports=8080,9090"), Ok(vec![80, 8080, 9090]));
        assert!(ports_from_query("ports=0").is_err());
        assert!(ports_from_query("ports=http").is_err());
        assert_eq!(ports_from_query(""), Ok(vec![]));
    }
}
