//! Events about pods, as the kubelet records them: core `v1` Events from the `kubelet`
//! component on this host, regarding a pod or one of its containers (`fieldPath`
//! `spec.containers{NAME}`). The same event again within ten minutes bumps the first one's
//! `count` and `lastTimestamp` instead of making another (the kubelet's correlator), and an
//! object gets at most 25 events in a burst, then one per 5 minutes (its spam filter).
//! Events go out from one task, in order; when it falls 1,000 behind, new ones are dropped,
//! as the kubelet's broadcaster drops them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// How far the writer may fall behind before events are dropped.
const QUEUE: usize = 1000;
/// How long a repeat bumps the first event.
const CORRELATION_WINDOW: Duration = Duration::from_secs(600);
/// Events remembered for bumping (the kubelet's LRU holds 4,096).
const REMEMBERED: usize = 4096;
/// Events an object may get at once, and how often it earns another (upstream's spam filter).
const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_secs(300);

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// Things going as they should.
    Normal,
    /// Something the user may need to look at.
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What it is about.
    pub regarding: ObjectReference,
    /// Its type.
    pub type_: Type,
    /// Its reason (`Pulling`, `Started`, `BackOff`, ...).
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// Records events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Record>,
}

impl Recorder {
    /// A recorder writing as `kubelet` on `node` through `client`.
    pub fn start(client: Client, node: String) -> Recorder {
        let (queue, records) = mpsc::channel(QUEUE);
        tokio::spawn(write(client, node, records));
        Recorder { queue }
    }

    /// Records an event about `pod`, or about its container `container`.
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: Type,
        reason: &'static str,
        message: String,
    ) {
        self.send(Record { regarding: reference(pod, container), type_, reason, message });
    }

    /// Queues `record`, or drops it when the writer is behind.
    fn send(&self, record: Record) {
        let reason = record.reason;
        if self.queue.try_send(record).is_err() {
            tracing::debug!(reason, "event dropped: the event writer is behind");
        }
    }
}

/// A recorder bound to one object (a pod's container, for its probes).
#[derive(Debug, Clone)]
pub struct Regarding {
    recorder: Recorder,
    regarding: ObjectReference,
}

impl Regarding {
    /// Binds `recorder` to `pod`'s container `container`.
    pub fn container(recorder: &Recorder, pod: &Pod, container: &str) -> Regarding {
        Regarding { recorder: recorder.clone(), regarding: reference(pod, Some(container)) }
    }

    /// Records an event about it.
    pub fn record(&self, type_: Type, reason: &'static str, message: String) {
        self.recorder.send(Record { regarding: self.regarding.clone(), type_, reason, message });
    }
}

/// The reference to `pod`, or to its container `container` (by where the spec lists it).
pub fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let field_path = container.map(|name| {
        let spec = pod.spec.as_ref();
        let listed = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
            list.is_some_and(|l| l.iter().any(|c| c.name == name))
        };
        let list = if listed(spec.and_then(|s| s.init_containers.as_ref())) {
            "initContainers"
        } else if spec
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|l| l.iter().any(|c| c.name == name))
        {
            "ephemeralContainers"
        } else {
            "containers"
        };
        format!("spec.{list}{{{name}}}")
    });
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// What to do with an event: make it, bump the one made for it before, or drop it (its
/// object had too many).
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Create,
    Bump { name: String, count: i32 },
    Drop,
}

/// The kubelet's correlator, reduced to what it does for one host's events: the same
/// event (regarding, type, reason and message) within the window is the same Event.
#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
    /// Each object's tokens (by its uid) and when they were counted.
    tokens: HashMap<Option<String>, (f64, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: Option<String>,
    field_path: Option<String>,
    type_: Type,
    reason: &'static str,
    message: String,
}

#[derive(Debug)]
struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

impl Correlator {
    fn key(record: &Record) -> Key {
        Key {
            uid: record.regarding.uid.clone(),
            field_path: record.regarding.field_path.clone(),
            type_: record.type_,
            reason: record.reason,
            message: record.message.clone(),
        }
    }

    /// What to do with `record` at `now`.
    fn observe(&mut self, record: &Record, now: Instant) -> Action {
        if !self.take_token(record, now) {
            return Action::Drop;
        }
        let key = Correlator::key(record);
        match self.seen.get_mut(&key) {
            Some(seen) if now.duration_since(seen.last) < CORRELATION_WINDOW => {
                seen.count += 1;
                seen.last = now;
                Action::Bump { name: seen.name.clone(), count: seen.count }
            }
            _ => Action::Create,
        }
    }

    /// Takes one of the object's tokens; false when it has none left.
    fn take_token(&mut self, record: &Record, now: Instant) -> bool {
        if self.tokens.len() >= REMEMBERED {
            self.tokens.retain(|_, (_, at)| now.duration_since(*at) < REFILL * BURST as u32);
        }
        // Per object, as upstream's spam key (its containers share the pod's tokens).
        let object = record.regarding.uid.clone();
        let (tokens, at) = self.tokens.entry(object).or_insert((BURST, now));
        let earned = now.duration_since(*at).as_secs_f64() / REFILL.as_secs_f64();
        *tokens = (*tokens + earned).min(BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Remembers the Event made for `record`.
    fn made(&mut self, record: &Record, name: String, now: Instant) {
        if self.seen.len() >= REMEMBERED {
            self.seen.retain(|_, s| now.duration_since(s.last) < CORRELATION_WINDOW);
            if self.seen.len() >= REMEMBERED {
                self.seen.clear();
            }
        }
        self.seen.insert(Correlator::key(record), Seen { name, count: 1, last: now });
    }

    fn forget(&mut self, record: &Record) {
        self.seen.remove(&Correlator::key(record));
    }
}

/// The Event for `record`, first seen now.
fn event(record: &Record, node: &str, name: String, now: Time) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: record.regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        involved_object: record.regarding.clone(),
        reason: Some(record.reason.into()),
        message: Some(record.message.clone()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        type_: Some(record.type_.as_str().into()),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        ..Event::default()
    }
}

async fn write(client: Client, node: String, mut records: mpsc::Receiver<Record>) {
    let mut correlator = Correlator::default();
    while let Some(record) = records.recv().await {
        let namespace = record.regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = k8s_openapi::jiff::Timestamp::now();
        let action = correlator.observe(&record, Instant::now());
        if action == Action::Drop {
            tracing::debug!(reason = record.reason, "event dropped: too many about its object");
            continue;
        }
        if let Action::Bump { name, count } = action {
            let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
            match events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => continue,
                // Gone (its TTL passed, or someone deleted it): made anew below.
                Err(e) => {
                    tracing::debug!(error = %e, "cannot bump event {name}; making a new one");
                    correlator.forget(&record);
                }
            }
        }
        let base = record.regarding.name.as_deref().unwrap_or("pod");
        let name = format!("{base}.{:x}", now.as_nanosecond());
        match events
            .create(&PostParams::default(), &event(&record, &node, name.clone(), Time(now)))
            .await
        {
            Ok(_) => correlator.made(&record, name, Instant::now()),
            Err(e) => tracing::debug!(error = %e, reason = record.reason, "cannot record event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![Container {
                    name: "setup".into(),
                    ..Container::default()
                }]),
                containers: vec![Container { name: "app".into(), ..Container::default() }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn references_name_the_container_by_its_place() {
        let p = pod();
        assert_eq!(reference(&p, Some("app")).field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(
            reference(&p, Some("setup")).field_path.as_deref(),
            Some("spec.initContainers{setup}")
        );
        let whole = reference(&p, None);
        assert_eq!(
            (whole.kind.as_deref(), whole.uid.as_deref(), whole.field_path),
            (Some("Pod"), Some("u1"), None)
        );
    }

    #[test]
    fn repeats_bump_the_first_event_within_ten_minutes() {
        let record = |message: &str| Record {
            regarding: reference(&pod(), Some("app")),
            type_: Type::Warning,
            reason: "BackOff",
            message: message.into(),
        };
        let mut correlator = Correlator::default();
        let start = Instant::now();
        assert_eq!(correlator.observe(&record("a"), start), Action::Create);
        correlator.made(&record("a"), "web.1".into(), start);
        assert_eq!(
            correlator.observe(&record("a"), start + Duration::from_secs(5)),
            Action::Bump { name: "web.1".into(), count: 2 }
        );
        assert_eq!(
            correlator.observe(&record("a"), start + Duration::from_secs(9)),
            Action::Bump { name: "web.1".into(), count: 3 }
        );
        assert_eq!(
            correlator.observe(&record("b"), start),
            Action::Create,
            "another message is another event"
        );
        assert_eq!(
            correlator.observe(&record("a"), start + Duration::from_secs(700)),
            Action::Create
        );
    }

    #[test]
    fn an_object_gets_25_events_then_one_per_five_minutes() {
        let record = Record {
            regarding: reference(&pod(), Some("app")),
            type_: Type::Warning,
            reason: "Unhealthy",
            message: "Readiness probe failed".into(),
        };
        let mut correlator = Correlator::default();
        let start = Instant::now();
        let allowed =
            (0..30).filter(|_| correlator.observe(&record, start) != Action::Drop).count();
        assert_eq!(allowed, 25);
        assert_eq!(correlator.observe(&record, start + Duration::from_secs(60)), Action::Drop);
        assert_ne!(correlator.observe(&record, start + Duration::from_secs(301)), Action::Drop);
    }

    #[test]
    fn events_read_as_the_kubelets() {
        let record = Record {
            regarding: reference(&pod(), Some("app")),
            type_: Type::Normal,
            reason: "Started",
            message: "Started container app".into(),
        };
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let e = event(&record, "node-1", "web.abc".into(), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(e.source.and_then(|s| s.component).as_deref(), Some("kubelet"));
        assert_eq!(
            (e.count, e.type_.as_deref(), e.reporting_instance.as_deref()),
            (Some(1), Some("Normal"), Some("node-1"))
        );
    }
}
