//! Expectations (upstream's `ControllerExpectations`): what a controller created or deleted
//! and its cache has not shown yet. Until the cache caught up, the controller does not act on
//! the owner again, or it would create twice what it just created. Expectations older than
//! five minutes are dropped, as upstream's, so a lost event cannot stall an owner for ever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an expectation holds at most.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    /// Names created, not yet in the cache.
    creates: HashSet<String>,
    /// Uids deleted, still in the cache.
    deletes: HashSet<String>,
    since: Instant,
}

/// Expectations per owner key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// `owner` created these objects (by name) and deleted these (by uid).
    pub fn expect(
        &self,
        owner: &str,
        created: impl IntoIterator<Item = String>,
        deleted: impl IntoIterator<Item = String>,
    ) {
        let Ok(mut pending) = self.pending.lock() else { return };
        let entry = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        entry.creates.extend(created);
        entry.deletes.extend(deleted);
        entry.since = Instant::now();
        if entry.creates.is_empty() && entry.deletes.is_empty() {
            pending.remove(owner);
        }
    }

    /// Whether the cache shows everything `owner` did: `present(name)` says whether an object
    /// of that name is cached, `cached(uid)` whether one of that uid still is.
    pub fn satisfied(
        &self,
        owner: &str,
        present: impl Fn(&str) -> bool,
        cached: impl Fn(&str) -> bool,
    ) -> bool {
        let Ok(mut pending) = self.pending.lock() else { return true };
        let Some(entry) = pending.get_mut(owner) else { return true };
        entry.creates.retain(|name| !present(name));
        entry.deletes.retain(|uid| cached(uid));
        if (entry.creates.is_empty() && entry.deletes.is_empty()) || entry.since.elapsed() > TIMEOUT
        {
            pending.remove(owner);
            return true;
        }
        false
    }

    /// Forgets `owner` (deleted).
    pub fn forget(&self, owner: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_waits_until_its_creates_and_deletes_show() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs", |_| false, |_| true));
        e.expect("ns/rs", ["a".to_string(), "b".to_string()], ["u1".to_string()]);
        assert!(!e.satisfied("ns/rs", |n| n == "a", |_| false));
        assert!(!e.satisfied("ns/rs", |_| false, |_| false), "b is still to show");
        assert!(e.satisfied("ns/rs", |n| n == "b", |_| false));
        assert!(e.satisfied("ns/rs", |_| false, |_| true), "satisfied expectations are gone");
    }
}
