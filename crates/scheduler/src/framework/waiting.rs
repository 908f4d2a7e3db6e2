//! Pods held at Permit: a plugin answered [`Permit::Wait`](super::Permit::Wait), and the pod's
//! binding waits until every plugin that made it wait allows it, one rejects it, or the
//! shortest of their timeouts passes (upstream's `waitingPodsMap`). A plugin's later Permit
//! call for another pod may allow or reject pods that wait (a gang that is now complete).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// Every plugin that made the pod wait allowed it.
    Allowed,
    /// A plugin rejected it, with its message.
    Rejected {
        /// The plugin.
        plugin: &'static str,
        /// Why.
        message: String,
    },
}

struct Waiting {
    /// Plugins that have not yet allowed the pod.
    pending: Vec<&'static str>,
    /// Where the end is sent.
    done: Option<oneshot::Sender<WaitEnd>>,
}

/// The pods waiting at Permit, by uid. Clones share one map.
#[derive(Clone, Default)]
pub struct WaitingPods(Arc<Mutex<HashMap<String, Waiting>>>);

impl WaitingPods {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds pod `uid` until `plugins` all allow it; the end arrives on the receiver.
    pub fn hold(&self, uid: &str, plugins: Vec<&'static str>) -> oneshot::Receiver<WaitEnd> {
        let (tx, rx) = oneshot::channel();
        self.map().insert(uid.to_string(), Waiting { pending: plugins, done: Some(tx) });
        rx
    }

    /// Whether pod `uid` waits.
    pub fn contains(&self, uid: &str) -> bool {
        self.map().contains_key(uid)
    }

    /// The uids of the pods that wait.
    pub fn uids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// `plugin` allows pod `uid`; it goes on once no plugin holds it.
    pub fn allow(&self, uid: &str, plugin: &'static str) {
        let mut map = self.map();
        let Some(waiting) = map.get_mut(uid) else { return };
        waiting.pending.retain(|p| *p != plugin);
        if waiting.pending.is_empty()
            && let Some(waiting) = map.remove(uid)
            && let Some(done) = waiting.done
        {
            let _ = done.send(WaitEnd::Allowed);
        }
    }

    /// `plugin` rejects pod `uid`.
    pub fn reject(&self, uid: &str, plugin: &'static str, message: impl Into<String>) {
        if let Some(waiting) = self.map().remove(uid)
            && let Some(done) = waiting.done
        {
            let _ = done.send(WaitEnd::Rejected { plugin, message: message.into() });
        }
    }

    /// Waits for the end of pod `uid`'s wait, at most `timeout`; a timeout is a rejection by
    /// the first plugin still holding it, worded as upstream's.
    pub async fn wait(
        &self,
        uid: &str,
        end: oneshot::Receiver<WaitEnd>,
        timeout: Duration,
    ) -> WaitEnd {
        match tokio::time::timeout(timeout, end).await {
            Ok(Ok(end)) => end,
            Ok(Err(_)) => WaitEnd::Rejected {
                plugin: "",
                message: "the scheduler stopped waiting for the pod".into(),
            },
            Err(_) => {
                let plugin = self.map().remove(uid).and_then(|w| w.pending.first().copied());
                let plugin = plugin.unwrap_or_default();
                WaitEnd::Rejected {
                    plugin,
                    message: format!(
                        "rejected due to timeout after waiting {timeout:?} at plugin {plugin}"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pod_goes_on_once_every_holding_plugin_allows_it() {
        let waiting = WaitingPods::default();
        let end = waiting.hold("u", vec!["A", "B"]);
        waiting.allow("u", "A");
        assert!(waiting.contains("u"));
        waiting.allow("u", "B");
        assert!(!waiting.contains("u"));
        assert_eq!(waiting.wait("u", end, Duration::from_secs(1)).await, WaitEnd::Allowed);
    }

    #[tokio::test]
    async fn a_rejection_or_a_timeout_ends_the_wait() {
        let waiting = WaitingPods::default();
        let end = waiting.hold("u", vec!["A"]);
        waiting.reject("u", "A", "gang incomplete");
        assert_eq!(
            waiting.wait("u", end, Duration::from_secs(1)).await,
            WaitEnd::Rejected { plugin: "A", message: "gang incomplete".into() }
        );
        let end = waiting.hold("v", vec!["Gang"]);
        let WaitEnd::Rejected { plugin, message } =
            waiting.wait("v", end, Duration::from_millis(10)).await
        else {
            panic!("timed out")
        };
        assert_eq!(plugin, "Gang");
        assert!(message.starts_with("rejected due to timeout after waiting"), "{message}");
        assert!(!waiting.contains("v"));
    }
}
