//! The scheduling queue, in upstream's shape: pods ready to try (highest priority first, then
//! the longest waiting), pods backing off after a failed attempt (1 s doubling to 10 s), and
//! pods no node fits, parked until a cluster change that one of the plugins that refused them
//! listens for and, by its queueing hint, may help them (or five minutes at most). Pods with
//! scheduling gates wait until the gates are gone.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::framework::PodInfo;

/// The first back-off after a failed attempt (upstream's `podInitialBackoffDuration`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off (upstream's `podMaxBackoffDuration`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays parked without any event (upstream's
/// `podMaxInUnschedulablePodsDuration`).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Where a pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Ready to try.
    Active,
    /// Tried and failed; ready again at the instant.
    Backoff(Instant),
    /// No node fits; parked since the instant, waiting for an event.
    Unschedulable(Instant),
    /// Has scheduling gates.
    Gated,
    /// Popped: being scheduled or bound.
    InFlight,
    /// Bound; waiting for the watch to show it.
    Bound,
}

struct Queued {
    info: PodInfo,
    state: State,
    attempts: u32,
    /// When it entered the queue (older first among equal priorities).
    since: u64,
    /// The plugins that refused it in its last attempt.
    rejected_by: BTreeSet<&'static str>,
    /// Heap entries carry it; an entry with an older one is stale.
    generation: u64,
}

/// An entry of the ready heap.
#[derive(PartialEq, Eq)]
struct Ready {
    priority: i32,
    since: u64,
    generation: u64,
    uid: String,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.since.cmp(&self.since))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pods waiting for a node.
#[derive(Default)]
pub struct Queue {
    pods: HashMap<String, Queued>,
    /// The uids of the parked pods (what an event walks).
    parked: HashSet<String>,
    ready: BinaryHeap<Ready>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    clock: u64,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn gated(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
}

/// How long a pod backs off after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

impl Queue {
    /// How many pods the queue holds (in any state).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the queue holds no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Adds a pending pod, or takes its new version. A pod that was parked or gated goes
    /// back to the ready pods when its spec or labels changed (its new version may fit).
    pub fn upsert(&mut self, pod: Arc<Pod>, now: Instant) {
        let uid = uid(&pod);
        let gated = gated(&pod);
        let Some(queued) = self.pods.get_mut(&uid) else {
            self.clock += 1;
            let state = if gated { State::Gated } else { State::Active };
            self.pods.insert(
                uid.clone(),
                Queued {
                    info: PodInfo::new(pod),
                    state: state.clone(),
                    attempts: 0,
                    since: self.clock,
                    rejected_by: BTreeSet::new(),
                    generation: 0,
                },
            );
            if state == State::Active {
                self.make_ready(&uid, now);
            }
            return;
        };
        let changed = queued.info.pod.spec != pod.spec
            || queued.info.pod.metadata.labels != pod.metadata.labels;
        queued.info = PodInfo::new(pod);
        let parked = matches!(queued.state, State::Unschedulable(_) | State::Gated);
        if parked && changed {
            if gated {
                queued.state = State::Gated;
                self.parked.remove(&uid);
            } else {
                self.move_back(&uid, now);
            }
        }
    }

    /// Forgets a pod (deleted, bound elsewhere, or no longer this scheduler's).
    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.parked.remove(uid);
    }

    /// Whether the queue holds the pod.
    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// The next pod to try, if one is ready: it is in flight until [`Queue::bound`],
    /// [`Queue::unschedulable`] or [`Queue::failed`].
    pub fn pop(&mut self, now: Instant) -> Option<PodInfo> {
        self.flush_backoff(now);
        while let Some(entry) = self.ready.pop() {
            let Some(queued) = self.pods.get_mut(&entry.uid) else { continue };
            if queued.generation != entry.generation || queued.state != State::Active {
                continue;
            }
            queued.state = State::InFlight;
            queued.attempts += 1;
            return Some(queued.info.clone());
        }
        None
    }

    /// The pod was bound; it stays (neither ready nor parked) until the watch shows it bound.
    pub fn bound(&mut self, uid: &str) {
        if let Some(queued) = self.pods.get_mut(uid) {
            queued.state = State::Bound;
        }
    }

    /// No node fits the pod: park it until an event that `rejected_by` listen for.
    pub fn unschedulable(&mut self, uid: &str, rejected_by: BTreeSet<&'static str>, now: Instant) {
        if let Some(queued) = self.pods.get_mut(uid) {
            queued.state = State::Unschedulable(now);
            queued.rejected_by = rejected_by;
            self.parked.insert(uid.to_string());
        }
    }

    /// The attempt failed for another reason (an API error): back off, then try again.
    pub fn failed(&mut self, uid: &str, now: Instant) {
        let Some(queued) = self.pods.get_mut(uid) else { return };
        let until = now + backoff(queued.attempts);
        queued.state = State::Backoff(until);
        queued.generation += 1;
        self.backoff.push(Reverse((until, queued.generation, uid.to_string())));
    }

    /// A cluster change: parked pods go back (to back off first if they still should) when
    /// they were refused by no plugin in particular, or when one of the plugins that refused
    /// them listens for the event and its hint says the change may help (`helps(plugin, pod)`).
    pub fn on_event(&mut self, helps: &dyn Fn(&'static str, &PodInfo) -> bool, now: Instant) {
        let moving: Vec<String> = self
            .parked
            .iter()
            .filter(|uid| {
                self.pods.get(*uid).is_some_and(|q| {
                    q.rejected_by.is_empty() || q.rejected_by.iter().any(|p| helps(p, &q.info))
                })
            })
            .cloned()
            .collect();
        for uid in moving {
            self.move_back(&uid, now);
        }
    }

    /// Moves pods whose back-off ended to the ready pods, and pods parked too long back.
    pub fn flush(&mut self, now: Instant) {
        self.flush_backoff(now);
        let stale: Vec<String> = self
            .parked
            .iter()
            .filter(|uid| {
                self.pods.get(*uid).is_some_and(|q| {
                    matches!(q.state, State::Unschedulable(since) if now.duration_since(since) >= MAX_UNSCHEDULABLE)
                })
            })
            .cloned()
            .collect();
        for uid in stale {
            self.move_back(&uid, now);
        }
    }

    /// When the next pod's back-off ends, if one is backing off.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Whether a pod is ready to pop.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, uid))) = self.backoff.peek().cloned() {
            if at > now {
                break;
            }
            self.backoff.pop();
            let current = self
                .pods
                .get(&uid)
                .is_some_and(|q| q.generation == generation && q.state == State::Backoff(at));
            if current {
                self.make_ready(&uid, now);
            }
        }
    }

    /// A parked pod goes back: to back off for what is left of its back-off, else ready.
    fn move_back(&mut self, uid: &str, now: Instant) {
        self.parked.remove(uid);
        let Some(queued) = self.pods.get_mut(uid) else { return };
        let until = match queued.state {
            State::Unschedulable(since) => since + backoff(queued.attempts),
            _ => now,
        };
        if until > now {
            queued.state = State::Backoff(until);
            queued.generation += 1;
            self.backoff.push(Reverse((until, queued.generation, uid.to_string())));
        } else {
            self.make_ready(uid, now);
        }
    }

    fn make_ready(&mut self, uid: &str, _now: Instant) {
        let Some(queued) = self.pods.get_mut(uid) else { return };
        queued.state = State::Active;
        queued.generation += 1;
        self.ready.push(Ready {
            priority: queued.info.priority(),
            since: queued.since,
            generation: queued.generation,
            uid: uid.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::ClusterEvent;
    use crate::plugins::fixtures::pod_with;

    fn pod(uid: &str, priority: i32) -> Arc<Pod> {
        Arc::new(pod_with(
            serde_json::json!({"name": uid, "uid": uid}),
            serde_json::json!({"priority": priority, "containers": []}),
        ))
    }

    fn names(queue: &mut Queue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| queue.pop(now)).map(|p| p.key()).collect()
    }

    #[test]
    fn priority_then_age() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.upsert(pod("low", 0), now);
        queue.upsert(pod("high", 100), now);
        queue.upsert(pod("low2", 0), now);
        assert_eq!(names(&mut queue, now), vec!["default/high", "default/low", "default/low2"]);
    }

    #[test]
    fn failures_back_off_and_double() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(9), MAX_BACKOFF);
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.upsert(pod("p", 0), now);
        assert!(queue.pop(now).is_some());
        queue.failed("p", now);
        assert!(queue.pop(now).is_none(), "backing off");
        assert_eq!(queue.next_backoff(), Some(now + Duration::from_secs(1)));
        assert!(queue.pop(now + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn parked_pods_move_on_events_their_plugins_listen_for() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut queue = Queue::default();
        queue.upsert(pod("p", 0), now);
        queue.pop(now);
        queue.unschedulable("p", ["NodeResourcesFit"].into(), now);
        let helps = |event: ClusterEvent| {
            move |plugin: &str, _: &PodInfo| {
                plugin == "NodeResourcesFit" && event == ClusterEvent::AssignedPodDelete
            }
        };
        queue.on_event(&helps(ClusterEvent::NodeLabel), later);
        assert!(queue.pop(later).is_none(), "not an event the plugin listens for");
        queue.on_event(&helps(ClusterEvent::AssignedPodDelete), later);
        assert!(queue.pop(later).is_some());
    }

    #[test]
    fn parked_pods_come_back_after_five_minutes_and_on_spec_changes() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.upsert(pod("p", 0), now);
        queue.pop(now);
        queue.unschedulable("p", ["NodeAffinity"].into(), now);
        queue.flush(now + Duration::from_secs(60));
        assert!(queue.pop(now + Duration::from_secs(60)).is_none());
        queue.flush(now + MAX_UNSCHEDULABLE);
        assert!(queue.pop(now + MAX_UNSCHEDULABLE).is_some());
        queue.unschedulable("p", ["NodeAffinity"].into(), now);
        let mut changed = (*pod("p", 0)).clone();
        changed.metadata.labels = Some([("new".to_string(), "label".to_string())].into());
        queue.upsert(Arc::new(changed), now + Duration::from_secs(30));
        assert!(queue.pop(now + Duration::from_secs(30)).is_some());
    }

    #[test]
    fn gated_pods_wait_for_their_gates() {
        let now = Instant::now();
        let mut queue = Queue::default();
        let gated = Arc::new(pod_with(
            serde_json::json!({"name": "g", "uid": "g"}),
            serde_json::json!({"containers": [], "schedulingGates": [{"name": "wait"}]}),
        ));
        queue.upsert(gated, now);
        assert!(queue.pop(now).is_none());
        queue.upsert(pod("g", 0), now);
        assert!(queue.pop(now).is_some());
    }

    #[test]
    fn in_flight_pods_are_not_queued_twice() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.upsert(pod("p", 0), now);
        assert!(queue.pop(now).is_some());
        queue.upsert(pod("p", 0), now);
        assert!(queue.pop(now).is_none());
        queue.bound("p");
        queue.upsert(pod("p", 0), now);
        assert!(queue.pop(now).is_none());
    }
}
