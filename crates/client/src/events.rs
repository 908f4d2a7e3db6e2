//! Events a controller records about the objects it acts on, in upstream's reasons and words
//! (`SuccessfulCreate`, `ScalingReplicaSet`, ...), as `events.k8s.io/v1` Events, visible in
//! `kubectl describe` and `kubectl events`. Best effort, as upstream's broadcaster: they wait
//! in a queue of at most [`QUEUED`] and are written one at a time in the background; when the
//! queue is full (the API server is slower than the controller) new ones are dropped, and a
//! failure to write one is logged, never a failure of the controller.
//!
//! Written directly rather than through kube-rs's `Recorder`, which merges events that differ
//! only in their note into one series (upstream keys a series by its note too, so "Scaled up"
//! and "Scaled down" stay apart).

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// Events waiting to be written, at most (upstream's `maxQueuedEvents`).
pub const QUEUED: usize = 1000;

/// Publishes the events of one controller. Clones share one queue and one writer.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    controller: String,
    /// The writer's queue, started with the first event (inside the runtime).
    queue: OnceLock<mpsc::Sender<Event>>,
}

impl Events {
    /// Events reported by `controller`, written as `client`.
    pub fn new(client: Client, controller: &str) -> Self {
        let inner = Inner { client, controller: controller.to_string(), queue: OnceLock::new() };
        Self { inner: Arc::new(inner) }
    }

    /// A `Normal` event about `regarding`.
    pub fn normal(&self, regarding: ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(regarding, "Normal", reason, action, note);
    }

    /// A `Warning` event about `regarding`.
    pub fn warning(&self, regarding: ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(regarding, "Warning", reason, action, note);
    }

    fn publish(
        &self,
        regarding: ObjectReference,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
        // Upstream's name: the object's name and the time in hexadecimal nanoseconds.
        let name =
            format!("{}.{:x}", regarding.name.as_deref().unwrap_or("event"), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_.to_string()),
            regarding: Some(regarding),
            reporting_controller: Some(self.inner.controller.clone()),
            reporting_instance: Some(self.inner.controller.clone()),
            ..Default::default()
        };
        let queue = self.inner.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUED);
            tokio::spawn(write(self.inner.client.clone(), receiver));
            sender
        });
        if let Err(mpsc::error::TrySendError::Full(event)) = queue.try_send(event) {
            tracing::debug!(reason = event.reason, "event queue full; event dropped");
        }
    }
}

/// Writes queued events one at a time until every publisher is gone.
async fn write(client: Client, mut queue: mpsc::Receiver<Event>) {
    while let Some(event) = queue.recv().await {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, reason = event.reason, "cannot write an event");
        }
    }
}
