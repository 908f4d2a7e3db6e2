//! Stopping the server within a bound: no new connections, every open connection told to
//! close once its requests are answered (HTTP/2 GOAWAY), every watch ended cleanly (its
//! client re-watches elsewhere or later), then a wait for the connections to go, at most the
//! grace period.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The server's shutdown signal and its open connections.
#[derive(Debug)]
pub struct Shutdown {
    signal: watch::Sender<bool>,
    connections: AtomicUsize,
    closed: tokio::sync::Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            signal: watch::channel(false).0,
            connections: AtomicUsize::new(0),
            closed: tokio::sync::Notify::new(),
        }
    }
}

/// One open connection, counted until dropped.
pub struct Connection<'a>(&'a Shutdown);

impl Shutdown {
    /// Starts shutting down: listeners stop accepting, connections and watches end.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn begun(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|begun| *begun).await;
    }

    /// Counts an open connection until the returned guard is dropped.
    pub fn connection(&self) -> Connection<'_> {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Connection(self)
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Waits until every connection closed, at most `grace`; returns how many are left.
    pub async fn drained(&self, grace: Duration) -> usize {
        let wait = async {
            loop {
                let closed = self.closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if self.open_connections() == 0 {
                    return;
                }
                closed.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.open_connections()
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_waits_for_connections_within_the_grace_period() {
        let shutdown = std::sync::Arc::new(Shutdown::default());
        assert!(!shutdown.begun());
        let first = shutdown.connection();
        let second = shutdown.connection();
        shutdown.begin();
        shutdown.wait().await;
        drop(first);
        assert_eq!(shutdown.drained(Duration::from_millis(20)).await, 1);
        let waiter = {
            let shutdown = std::sync::Arc::clone(&shutdown);
            tokio::spawn(async move { shutdown.drained(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(second);
        assert_eq!(waiter.await.ok(), Some(0));
    }
}
