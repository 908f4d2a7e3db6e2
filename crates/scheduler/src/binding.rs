//! A pod's binding cycle, after the scheduling cycle chose its node: the Reserve and Permit
//! stages run in the scheduling loop ([`reserve`], [`permit`]), then the binding cycle runs in
//! the background: it waits while a Permit plugin holds the pod ([`wait`]), runs the PreBind
//! plugins, then the Bind plugins until one binds ([`bind`]). A failure anywhere gives back what Reserve
//! set aside ([`unreserve`], in reverse order, as upstream).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::oneshot;

use crate::framework::{
    BindError, Bound, CycleState, Permit, Plugin, PodInfo, WaitEnd, WaitingPods,
};

/// The longest a Permit plugin may hold a pod (upstream's `maxTimeout`).
pub const MAX_PERMIT_WAIT: Duration = Duration::from_secs(15 * 60);

/// Why a binding cycle did not bind the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The pod is gone: it is not tried again.
    pub gone: bool,
    /// Whether a plugin refused the pod (it waits for a cluster change) rather than an
    /// error happening (it is tried again after a back-off).
    pub unschedulable: bool,
    /// The plugin that failed or refused.
    pub plugin: &'static str,
    /// What upstream's `FailedScheduling` event says.
    pub message: String,
}

/// Runs the Reserve plugins on `node`; the first refusal is the failure, and every Reserve
/// plugin's Unreserve then runs.
pub fn reserve(
    plugins: &[Arc<dyn Plugin>],
    state: &mut CycleState,
    pod: &PodInfo,
    node: &str,
) -> Result<(), Failure> {
    for plugin in plugins {
        if let Err(message) = plugin.reserve(state, pod, node) {
            unreserve(plugins, state, pod, node);
            return Err(Failure {
                gone: false,
                unschedulable: false,
                plugin: plugin.name(),
                message: format!("running Reserve plugin {:?}: {message}", plugin.name()),
            });
        }
    }
    Ok(())
}

/// Gives back what the Reserve plugins set aside, in reverse order.
pub fn unreserve(plugins: &[Arc<dyn Plugin>], state: &mut CycleState, pod: &PodInfo, node: &str) {
    for plugin in plugins.iter().rev() {
        plugin.unreserve(state, pod, node);
    }
}

/// What the Permit plugins said: the pod goes on, waits for some of them, or is refused.
#[derive(Debug)]
pub enum Permitted {
    /// Every plugin allowed it.
    Now,
    /// These plugins hold it, at most this long.
    Held(oneshot::Receiver<WaitEnd>, Duration),
}

/// Runs the Permit plugins; a refusal is the failure (the caller unreserves).
pub fn permit(
    plugins: &[Arc<dyn Plugin>],
    waiting: &WaitingPods,
    state: &CycleState,
    pod: &PodInfo,
    node: &str,
) -> Result<Permitted, Failure> {
    let mut holding = Vec::new();
    let mut timeout = MAX_PERMIT_WAIT;
    for plugin in plugins {
        match plugin.permit(state, pod, node, waiting) {
            Permit::Allow => {}
            Permit::Wait(wait) => {
                holding.push(plugin.name());
                timeout = timeout.min(wait);
            }
            Permit::Reject(message) => {
                return Err(Failure {
                    gone: false,
                    unschedulable: true,
                    plugin: plugin.name(),
                    message,
                });
            }
        }
    }
    if holding.is_empty() {
        return Ok(Permitted::Now);
    }
    let uid = pod.pod.metadata.uid.as_deref().unwrap_or_default();
    Ok(Permitted::Held(waiting.hold(uid, holding), timeout))
}

/// Waits out a Permit hold, if any: the first part of the binding cycle.
pub async fn wait(
    waiting: &WaitingPods,
    permitted: Permitted,
    pod: &PodInfo,
) -> Result<(), Failure> {
    if let Permitted::Held(end, timeout) = permitted {
        let uid = pod.pod.metadata.uid.as_deref().unwrap_or_default();
        if let WaitEnd::Rejected { plugin, message } = waiting.wait(uid, end, timeout).await {
            return Err(Failure { gone: false, unschedulable: true, plugin, message });
        }
    }
    Ok(())
}

/// The PreBind plugins, then the Bind plugins until one binds; the name of the one that did.
pub async fn bind(
    client: &Client,
    pre_bind: &[Arc<dyn Plugin>],
    binders: &[Arc<dyn Plugin>],
    state: &CycleState,
    pod: &PodInfo,
    node: &str,
) -> Result<&'static str, Failure> {
    let failed = |plugin: &dyn Plugin, stage: &str, error: BindError| Failure {
        gone: matches!(error, BindError::PodGone),
        unschedulable: false,
        plugin: plugin.name(),
        message: format!("running {stage} plugin {:?}: {error}", plugin.name()),
    };
    for plugin in pre_bind {
        if let Err(e) = plugin.pre_bind(client, state, pod, node).await {
            return Err(failed(plugin.as_ref(), "PreBind", e));
        }
    }
    for plugin in binders {
        match plugin.bind(client, state, pod, node).await {
            Bound::Done => return Ok(plugin.name()),
            Bound::Skip => {}
            Bound::Failed(e) => {
                let mut failure = failed(plugin.as_ref(), "Bind", e);
                failure.message = format!("Binding rejected: {}", failure.message);
                return Err(failure);
            }
        }
    }
    Err(Failure {
        gone: false,
        unschedulable: false,
        plugin: "",
        message: "Binding rejected: no Bind plugin bound the pod".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::framework::Points;
    use crate::plugins::fixtures::{info, requesting};

    /// Records the calls it gets, and answers as told.
    struct Recorder {
        name: &'static str,
        calls: Arc<Mutex<Vec<String>>>,
        reserve_fails: bool,
        permit: Permit,
    }

    impl Plugin for Recorder {
        fn name(&self) -> &'static str {
            self.name
        }
        fn points(&self) -> Points {
            Points::RESERVE | Points::PERMIT
        }
        fn reserve(&self, _: &mut CycleState, _: &PodInfo, node: &str) -> Result<(), String> {
            self.calls.lock().expect("calls").push(format!("reserve {} {node}", self.name));
            if self.reserve_fails { Err("volume taken".into()) } else { Ok(()) }
        }
        fn unreserve(&self, _: &mut CycleState, _: &PodInfo, node: &str) {
            self.calls.lock().expect("calls").push(format!("unreserve {} {node}", self.name));
        }
        fn permit(&self, _: &CycleState, _: &PodInfo, _: &str, _: &WaitingPods) -> Permit {
            self.permit.clone()
        }
    }

    fn plugins(
        calls: &Arc<Mutex<Vec<String>>>,
        specs: &[(&'static str, bool, Permit)],
    ) -> Vec<Arc<dyn Plugin>> {
        specs
            .iter()
            .map(|(name, reserve_fails, permit)| {
                Arc::new(Recorder {
                    name,
                    calls: Arc::clone(calls),
                    reserve_fails: *reserve_fails,
                    permit: permit.clone(),
                }) as Arc<dyn Plugin>
            })
            .collect()
    }

    #[test]
    fn a_failed_reserve_unreserves_every_plugin_in_reverse() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let list = plugins(&calls, &[("A", false, Permit::Allow), ("B", true, Permit::Allow)]);
        let pod = info(requesting("1", "1Gi"));
        let failure = reserve(&list, &mut CycleState::default(), &pod, "n1").expect_err("B fails");
        assert_eq!(failure.plugin, "B");
        assert_eq!(failure.message, "running Reserve plugin \"B\": volume taken");
        assert_eq!(
            *calls.lock().expect("calls"),
            ["reserve A n1", "reserve B n1", "unreserve B n1", "unreserve A n1"]
        );
    }

    #[tokio::test]
    async fn permit_allows_holds_or_refuses() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut pod = info(requesting("1", "1Gi"));
        Arc::make_mut(&mut pod.pod).metadata.uid = Some("u1".into());
        let waiting = WaitingPods::default();
        let state = CycleState::default();

        let allow = plugins(&calls, &[("A", false, Permit::Allow)]);
        assert!(matches!(permit(&allow, &waiting, &state, &pod, "n"), Ok(Permitted::Now)));

        let refuse = plugins(
            &calls,
            &[
                ("A", false, Permit::Allow),
                ("Gang", false, Permit::Reject("gang of 3 incomplete".into())),
            ],
        );
        let failure = permit(&refuse, &waiting, &state, &pod, "n").expect_err("refused");
        assert!(failure.unschedulable);
        assert_eq!((failure.plugin, failure.message.as_str()), ("Gang", "gang of 3 incomplete"));

        let hold = plugins(
            &calls,
            &[
                ("Slow", false, Permit::Wait(Duration::from_secs(60))),
                ("Gang", false, Permit::Wait(Duration::from_millis(20))),
            ],
        );
        let Ok(Permitted::Held(_, timeout)) = permit(&hold, &waiting, &state, &pod, "n") else {
            panic!("held")
        };
        assert_eq!(timeout, Duration::from_millis(20), "the shortest hold");
        assert!(waiting.contains("u1"));
        waiting.allow("u1", "Slow");
        waiting.allow("u1", "Gang");
        assert!(!waiting.contains("u1"));
    }
}
