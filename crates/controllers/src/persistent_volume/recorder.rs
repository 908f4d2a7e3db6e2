//! The binder's events, in upstream's reasons and words, through `krust_client::events`.
//!
//! The binder looks at every claim again every 15 s, and a claim that waits says why each
//! time (`WaitForFirstConsumer`, `FailedBinding`, ...). Upstream's recorder folds such
//! repeats into one Event whose count grows, and its spam filter lets one through per object
//! every 5 minutes once a burst is spent; `krust_client::events` writes every event it is
//! given, so repeats are held back here: the same event about the same object is recorded
//! again only after [`REPEAT_AFTER`]. A different event is recorded at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;

use krust_client::Events;

use super::{Note, reason};

/// How long the same event about the same object is held back (upstream's spam filter
/// refills one token per object every 5 minutes).
pub const REPEAT_AFTER: Duration = Duration::from_secs(300);

/// Remembered events beyond which the expired ones are forgotten.
const REMEMBERED: usize = 4096;

/// Which events were recorded when, to hold repeats back.
#[derive(Debug, Default)]
pub struct RepeatFilter {
    last: HashMap<(String, &'static str, String), Instant>,
}

impl RepeatFilter {
    /// Whether the event `note` about the object `object` (its uid) may be recorded at `now`;
    /// if so, it counts as recorded.
    pub fn admit(&mut self, object: &str, note: &Note, now: Instant) -> bool {
        let key = (object.to_string(), note.reason, note.message.clone());
        if self.last.get(&key).is_some_and(|at| now.saturating_duration_since(*at) < REPEAT_AFTER) {
            return false;
        }
        if self.last.len() >= REMEMBERED {
            self.last.retain(|_, at| now.saturating_duration_since(*at) < REPEAT_AFTER);
        }
        self.last.insert(key, now);
        true
    }
}

/// Records the binder's events, repeats held back.
pub struct Recorder {
    events: Events,
    filter: Mutex<RepeatFilter>,
}

impl Recorder {
    /// Events reported by `controller`, written as `client`.
    pub fn new(client: Client, controller: &str) -> Self {
        Self { events: Events::new(client, controller), filter: Mutex::default() }
    }

    /// Records `note` about `regarding`, unless it was recorded lately.
    pub fn record(&self, regarding: ObjectReference, note: &Note) {
        let object = regarding.uid.clone().unwrap_or_default();
        let admitted =
            self.filter.lock().map(|mut f| f.admit(&object, note, Instant::now())).unwrap_or(true);
        if !admitted {
            return;
        }
        let action = action(note.reason);
        if note.warning {
            self.events.warning(regarding, note.reason, action, note.message.clone());
        } else {
            self.events.normal(regarding, note.reason, action, note.message.clone());
        }
    }
}

/// The `action` of an event (events.k8s.io asks for one; upstream's core events have none).
fn action(of: &str) -> &'static str {
    match of {
        reason::EXTERNAL_PROVISIONING
        | reason::PROVISIONING_FAILED
        | reason::PROVISIONING_SUCCEEDED => "Provision",
        reason::VOLUME_FAILED_DELETE
        | reason::VOLUME_FAILED_RECYCLE
        | reason::VOLUME_UNKNOWN_RECLAIM_POLICY => "Reclaim",
        _ => "Bind",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_and_changes_pass() {
        let mut filter = RepeatFilter::default();
        let start = Instant::now();
        let waiting = Note::normal(reason::WAIT_FOR_FIRST_CONSUMER, "waiting".into());
        let scheduled = Note::normal(reason::WAIT_FOR_POD_SCHEDULED, "waiting for pod p".into());
        assert!(filter.admit("uid-a", &waiting, start));
        assert!(!filter.admit("uid-a", &waiting, start + Duration::from_secs(15)));
        assert!(filter.admit("uid-b", &waiting, start + Duration::from_secs(15)), "another object");
        assert!(
            filter.admit("uid-a", &scheduled, start + Duration::from_secs(30)),
            "another event"
        );
        assert!(filter.admit("uid-a", &waiting, start + REPEAT_AFTER), "again after a while");
    }

    #[test]
    fn old_events_are_forgotten_when_many_are_remembered() {
        let mut filter = RepeatFilter::default();
        let start = Instant::now();
        let note = Note::normal(reason::FAILED_BINDING, "none".into());
        for i in 0..REMEMBERED {
            assert!(filter.admit(&format!("uid-{i}"), &note, start));
        }
        assert!(filter.admit("uid-new", &note, start + REPEAT_AFTER));
        assert_eq!(filter.last.len(), 1);
    }
}
