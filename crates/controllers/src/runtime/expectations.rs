//! Expectations (upstream's `ControllerExpectations`): what a controller created or deleted
//! and its cache has not shown yet. Until the cache caught up, the controller does not act on
//! the owner again, or it would create twice what it just created. A creation counts as seen
//! when the object is cached or its event passed; a deletion when the object is gone from the
//! cache or marked for deletion. Expectations older than five minutes are dropped, as
//! upstream's, so that a lost event cannot stall an owner for ever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an expectation holds at most.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    /// Names created, not seen yet.
    creates: HashSet<String>,
    /// Uids deleted, still seen.
    deletes: HashSet<String>,
    /// When the last expectation was added.
    since: Instant,
}

/// Expectations per owner, by the owner's uid.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

/// Whether an owner may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Everything it did shows: it may act.
    Satisfied,
    /// It waits, at most this long.
    Pending(Duration),
}

impl Expectations {
    /// `owner` created these objects (by name) and deleted these (by uid).
    pub fn expect(
        &self,
        owner: &str,
        created: impl IntoIterator<Item = String>,
        deleted: impl IntoIterator<Item = String>,
    ) {
        let (created, deleted): (Vec<String>, Vec<String>) =
            (created.into_iter().collect(), deleted.into_iter().collect());
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else { return };
        let entry = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        entry.creates.extend(created);
        entry.deletes.extend(deleted);
        entry.since = Instant::now();
    }

    /// An event of an object of `owner` passed: `name` is seen, and when `gone` (deleted or
    /// marked for deletion) so is the deletion of `uid`.
    pub fn observe(&self, owner: &str, name: &str, uid: &str, gone: bool) {
        let Ok(mut pending) = self.pending.lock() else { return };
        if let Some(entry) = pending.get_mut(owner) {
            entry.creates.remove(name);
            if gone {
                entry.deletes.remove(uid);
            }
        }
    }

    /// Whether `owner` may act: what it did shows in the cache (`present(name)`: an object
    /// of that name is cached; `cached(uid)`: one of that uid is, not marked for deletion).
    pub fn check(
        &self,
        owner: &str,
        present: impl Fn(&str) -> bool,
        cached: impl Fn(&str) -> bool,
    ) -> Wait {
        let Ok(mut pending) = self.pending.lock() else { return Wait::Satisfied };
        let Some(entry) = pending.get_mut(owner) else { return Wait::Satisfied };
        entry.creates.retain(|name| !present(name));
        entry.deletes.retain(|uid| cached(uid));
        let waited = entry.since.elapsed();
        if (entry.creates.is_empty() && entry.deletes.is_empty()) || waited > TIMEOUT {
            pending.remove(owner);
            return Wait::Satisfied;
        }
        Wait::Pending(TIMEOUT - waited)
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

    fn satisfied(w: Wait) -> bool {
        w == Wait::Satisfied
    }

    #[test]
    fn an_owner_waits_until_its_creates_and_deletes_show() {
        let e = Expectations::default();
        assert!(satisfied(e.check("rs", |_| false, |_| true)));
        e.expect("rs", ["a".to_string(), "b".to_string()], ["u1".to_string()]);
        assert!(!satisfied(e.check("rs", |n| n == "a", |_| false)));
        assert!(!satisfied(e.check("rs", |_| false, |_| false)), "b is still to show");
        assert!(satisfied(e.check("rs", |n| n == "b", |_| false)));
        assert!(satisfied(e.check("rs", |_| false, |_| true)), "satisfied expectations are gone");
    }

    #[test]
    fn events_count_even_when_the_object_is_gone_again() {
        let e = Expectations::default();
        e.expect("rs", ["a".to_string()], ["u1".to_string()]);
        // `a` was created and deleted before the owner looked again: its event counts.
        e.observe("rs", "a", "ua", true);
        e.observe("rs", "old", "u1", true);
        assert!(satisfied(e.check("rs", |_| false, |_| true)));
    }
}
