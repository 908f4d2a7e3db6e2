//! Backend-independent checks of the [`Store`] contract.
//!
//! Each check is an `async fn` taking a [`Fixture`]; [`conformance_tests!`] turns the whole list
//! into one `#[tokio::test]` per check for a backend:
//!
//! ```ignore
//! mod conformance;
//! async fn fixture() -> conformance::Fixture { /* a fresh store */ }
//! conformance_tests!(fixture().await);
//! ```
//!
//! The checks keep their keys under `fixture.prefix`, but they assume nothing else writes to the
//! store while they run (they check that each write advances the revision by exactly one, and
//! some compact): a backend whose tests share one server must run them one at a time, e.g. by
//! holding a lock in `fixture.guard`.

#![allow(dead_code, missing_docs)]

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use krust_store::{Event, EventKind, KeyValue, Revision, Store, StoreError, WatchStream};

/// How long a check waits for a watch event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A store to check, with whatever must live as long as it.
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// Every key a check writes starts with this.
    pub prefix: String,
    /// Dropped after the store (a temporary directory, a lock, ...).
    pub guard: Box<dyn Any + Send>,
}

impl Fixture {
    /// A fixture with an empty guard.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>) -> Self {
        Fixture { store, prefix: prefix.into(), guard: Box::new(()) }
    }

    /// `name` under the fixture's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Generates one `#[tokio::test]` per check; `$fixture` is an expression evaluated inside an
/// async test body (so it may `.await`) that yields a fresh [`Fixture`].
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@each $fixture;
            create_get,
            create_conflict,
            update_guarded,
            delete_guarded,
            delete_unguarded,
            revision_arithmetic,
            list_pagination,
            list_at_old_revision,
            list_compacted,
            list_future_revision,
            watch_replay_then_live,
            watch_filters_prefix,
            watch_compacted,
            watch_progress,
            watch_while_writing,
            concurrent_writers,
            concurrent_guarded_updates,
            check_healthy_store,
        );
    };
    (@each $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture;
                $crate::conformance::$check(fixture).await;
            }
        )*
    };
}

fn kv(key: &str, value: &[u8], create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_vec(), create_revision, mod_revision }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// The next change on `stream`, skipping progress events (which must not go backwards).
pub async fn next_change(stream: &mut WatchStream) -> Event {
    loop {
        let event = next_event(stream).await;
        if event.kind != EventKind::Progress {
            return event;
        }
    }
}

/// The next event on `stream`, progress included.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a watch event within the time limit")
        .expect("the watch stream is still open")
        .expect("a watch event, not an error")
}

/// Asserts that nothing but progress arrives on `stream` for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await {
        let event = item.expect("the watch stream is still open").expect("no watch error");
        assert_eq!(event.kind, EventKind::Progress, "unexpected change {event:?}");
    }
}

pub async fn create_get(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("a");
    assert_eq!(s.get(&key).await.expect("get"), None);
    let created = s.create(&key, b"one".to_vec()).await.expect("create");
    assert!(created.mod_revision > 0);
    assert_eq!(created, kv(&key, b"one", created.mod_revision, created.mod_revision));
    assert_eq!(s.get(&key).await.expect("get"), Some(created.clone()));
    assert_eq!(s.current_revision().await.expect("revision"), created.mod_revision);
    assert_eq!(s.get(&fx.key("b")).await.expect("get"), None);
    let empty = s.list(&fx.key("none/"), None, 0, None).await.expect("list");
    assert!(empty.items.is_empty() && !empty.more && empty.remaining == Some(0));
    assert_eq!(empty.revision, created.mod_revision);
}

pub async fn create_conflict(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("a");
    let created = s.create(&key, b"one".to_vec()).await.expect("create");
    match s.create(&key, b"two".to_vec()).await {
        Err(StoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.expect("get"), Some(created.clone()));
    assert_eq!(s.current_revision().await.expect("revision"), created.mod_revision);
}

pub async fn update_guarded(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("a");
    let created = s.create(&key, b"one".to_vec()).await.expect("create");
    let c = created.mod_revision;
    let updated = s.update(&key, b"two".to_vec(), c).await.expect("update");
    assert_eq!(updated, kv(&key, b"two", c, c + 1));
    match s.update(&key, b"three".to_vec(), c).await {
        Err(StoreError::Conflict { key: k, expected, actual }) => {
            assert_eq!((k.as_str(), expected, actual), (key.as_str(), c, c + 1));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s.update(&fx.key("missing"), b"x".to_vec(), c).await {
        Err(StoreError::NotFound { key: k }) => assert_eq!(k, fx.key("missing")),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.expect("get"), Some(updated));
    assert_eq!(s.current_revision().await.expect("revision"), c + 1);
}

pub async fn delete_guarded(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("a");
    let created = s.create(&key, b"one".to_vec()).await.expect("create");
    let c = created.mod_revision;
    match s.delete(&key, Some(c + 100)).await {
        Err(StoreError::Conflict { key: k, expected, actual }) => {
            assert_eq!((k.as_str(), expected, actual), (key.as_str(), c + 100, c));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.expect("get"), Some(created));
    let deleted = s.delete(&key, Some(c)).await.expect("delete");
    assert_eq!(deleted, kv(&key, b"one", c, c + 1));
    assert_eq!(s.get(&key).await.expect("get"), None);
    assert_eq!(s.current_revision().await.expect("revision"), c + 1);
    match s.delete(&key, Some(c)).await {
        Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match s.delete(&key, None).await {
        Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(s.current_revision().await.expect("revision"), c + 1);
}

pub async fn delete_unguarded(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("a");
    let created = s.create(&key, b"one".to_vec()).await.expect("create");
    let c = created.mod_revision;
    s.update(&key, b"two".to_vec(), c).await.expect("update");
    let deleted = s.delete(&key, None).await.expect("delete");
    assert_eq!(deleted, kv(&key, b"two", c, c + 2));
    assert_eq!(s.get(&key).await.expect("get"), None);
}

pub async fn revision_arithmetic(fx: Fixture) {
    let s = &fx.store;
    let (a, b) = (fx.key("a"), fx.key("b"));
    let r0 = s.current_revision().await.expect("revision");
    assert_eq!(s.create(&a, b"1".to_vec()).await.expect("create").mod_revision, r0 + 1);
    assert_eq!(s.create(&b, b"1".to_vec()).await.expect("create").mod_revision, r0 + 2);
    let updated = s.update(&a, b"2".to_vec(), r0 + 1).await.expect("update");
    assert_eq!((updated.create_revision, updated.mod_revision), (r0 + 1, r0 + 3));
    // Failed writes leave the revision alone.
    assert!(s.create(&a, b"x".to_vec()).await.is_err());
    assert!(s.update(&a, b"x".to_vec(), r0 + 1).await.is_err());
    assert!(s.delete(&fx.key("missing"), None).await.is_err());
    assert_eq!(s.current_revision().await.expect("revision"), r0 + 3);
    assert_eq!(s.delete(&b, None).await.expect("delete").mod_revision, r0 + 4);
    // A re-created key starts a new life.
    let recreated = s.create(&b, b"again".to_vec()).await.expect("create");
    assert_eq!(recreated, kv(&b, b"again", r0 + 5, r0 + 5));
    assert_eq!(s.current_revision().await.expect("revision"), r0 + 5);
    let page = s.list(&fx.prefix, None, 0, None).await.expect("list");
    assert_eq!(page.revision, r0 + 5);
    assert_eq!(page.items, vec![kv(&a, b"2", r0 + 1, r0 + 3), recreated]);
}

pub async fn list_pagination(fx: Fixture) {
    let s = &fx.store;
    let mut expected = Vec::new();
    for i in 1..=5 {
        let key = fx.key(&format!("a/{i}"));
        expected.push(s.create(&key, format!("v{i}").into_bytes()).await.expect("create"));
    }
    // Neighbours that must stay out of "a/" but fall under "a".
    let sibling = s.create(&fx.key("ab"), b"x".to_vec()).await.expect("create");
    s.create(&fx.key("b/1"), b"x".to_vec()).await.expect("create");
    let rev = s.current_revision().await.expect("revision");
    let prefix = fx.key("a/");

    let all = s.list(&prefix, None, 0, None).await.expect("list");
    assert_eq!(all.items, expected);
    assert!(!all.more);
    assert_eq!((all.remaining, all.revision), (Some(0), rev));

    let first = s.list(&prefix, None, 2, None).await.expect("list");
    assert_eq!(first.items, expected[..2]);
    assert!(first.more);
    assert!(matches!(first.remaining, None | Some(3)));
    let after = first.items[1].key.clone();
    let second = s.list(&prefix, Some(&after), 2, Some(first.revision)).await.expect("list");
    assert_eq!(second.items, expected[2..4]);
    assert!(second.more);
    assert!(matches!(second.remaining, None | Some(1)));
    let after = second.items[1].key.clone();
    let third = s.list(&prefix, Some(&after), 2, Some(first.revision)).await.expect("list");
    assert_eq!(third.items, expected[4..]);
    assert!(!third.more);
    assert_eq!(third.remaining, Some(0));

    // A start before the prefix starts at the prefix; one past the end finds nothing.
    let from_start = s.list(&prefix, Some(&fx.prefix), 1, None).await.expect("list");
    assert_eq!(from_start.items, expected[..1]);
    let past = s.list(&prefix, Some(&fx.key("a/9")), 0, None).await.expect("list");
    assert!(past.items.is_empty() && !past.more);

    let wider = s.list(&fx.key("a"), None, 0, None).await.expect("list");
    let mut with_sibling = expected.clone();
    with_sibling.push(sibling);
    assert_eq!(wider.items, with_sibling);
    let everything = s.list(&fx.prefix, None, 0, None).await.expect("list");
    assert_eq!(everything.items.len(), 7);
}

pub async fn list_at_old_revision(fx: Fixture) {
    let s = &fx.store;
    let (a, b, c) = (fx.key("a"), fx.key("b"), fx.key("c"));
    let a1 = s.create(&a, b"a1".to_vec()).await.expect("create");
    let b1 = s.create(&b, b"b1".to_vec()).await.expect("create");
    let r1 = b1.mod_revision;
    let a2 = s.update(&a, b"a2".to_vec(), a1.mod_revision).await.expect("update");
    let r2 = a2.mod_revision;
    s.delete(&b, None).await.expect("delete");
    let c1 = s.create(&c, b"c1".to_vec()).await.expect("create");
    let b2 = s.create(&b, b"b2".to_vec()).await.expect("create");

    let old = s.list(&fx.prefix, None, 0, Some(r1)).await.expect("list");
    assert_eq!(old.items, vec![a1.clone(), b1.clone()]);
    assert_eq!(old.revision, r1);
    assert!(!old.more);

    let page = s.list(&fx.prefix, None, 1, Some(r1)).await.expect("list");
    assert_eq!(page.items, vec![a1.clone()]);
    assert!(page.more);
    assert!(matches!(page.remaining, None | Some(1)));
    let page = s.list(&fx.prefix, Some(&a), 1, Some(r1)).await.expect("list");
    assert_eq!(page.items, vec![b1.clone()]);
    assert!(!page.more);

    let middle = s.list(&fx.prefix, None, 0, Some(r2)).await.expect("list");
    assert_eq!(middle.items, vec![a2.clone(), b1]);
    let deleted = s.list(&fx.prefix, None, 0, Some(r2 + 1)).await.expect("list");
    assert_eq!(deleted.items, vec![a2.clone()]);
    let before_any = s.list(&fx.prefix, None, 0, Some(a1.mod_revision - 1)).await;
    // Revision a1-1 may be compacted on a shared backend, but if it answers it must be empty.
    if let Ok(page) = before_any {
        assert!(page.items.is_empty(), "{page:?}");
    }
    let now = s.list(&fx.prefix, None, 0, None).await.expect("list");
    assert_eq!(now.items, vec![a2, b2.clone(), c1]);
    assert_eq!(now.revision, b2.mod_revision);
    let explicit = s.list(&fx.prefix, None, 0, Some(b2.mod_revision)).await.expect("list");
    assert_eq!(explicit.items, now.items);
}

/// The history used by the compaction checks; see the body for the layout.
struct Compacted {
    a1: KeyValue,
    a2: KeyValue,
    a3: KeyValue,
    b1: KeyValue,
    b_deleted: KeyValue,
    first: Revision,
    compacted: Revision,
}

async fn compacted_history(fx: &Fixture) -> Compacted {
    let s = &fx.store;
    let (a, b, x) = (fx.key("a"), fx.key("b"), fx.key("x"));
    let x1 = s.create(&x, b"x".to_vec()).await.expect("create");
    s.delete(&x, None).await.expect("delete");
    let a1 = s.create(&a, b"a1".to_vec()).await.expect("create");
    let a2 = s.update(&a, b"a2".to_vec(), a1.mod_revision).await.expect("update");
    let b1 = s.create(&b, b"b1".to_vec()).await.expect("create");
    let compacted = b1.mod_revision;
    let b_deleted = s.delete(&b, None).await.expect("delete");
    let a3 = s.update(&a, b"a3".to_vec(), a2.mod_revision).await.expect("update");
    s.compact(compacted).await.expect("compact");
    Compacted { a1, a2, a3, b1, b_deleted, first: x1.mod_revision, compacted }
}

pub async fn list_compacted(fx: Fixture) {
    let s = &fx.store;
    let h = compacted_history(&fx).await;
    match s.list(&fx.prefix, None, 0, Some(h.compacted - 1)).await {
        Err(StoreError::Compacted { requested, compacted }) => {
            assert_eq!(requested, h.compacted - 1);
            assert!(compacted >= h.compacted);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at = s.list(&fx.prefix, None, 0, Some(h.compacted)).await.expect("list");
    assert_eq!(at.items, vec![h.a2.clone(), h.b1.clone()]);
    let page = s.list(&fx.prefix, None, 1, Some(h.compacted)).await.expect("list");
    assert_eq!((page.items, page.more), (vec![h.a2.clone()], true));
    let after_delete =
        s.list(&fx.prefix, None, 0, Some(h.b_deleted.mod_revision)).await.expect("list");
    assert_eq!(after_delete.items, vec![h.a2.clone()]);
    let now = s.list(&fx.prefix, None, 0, None).await.expect("list");
    assert_eq!(now.items, vec![h.a3.clone()]);
    assert_eq!(s.get(&fx.key("a")).await.expect("get"), Some(h.a3));
    assert!(h.a1.mod_revision < h.compacted);
}

pub async fn list_future_revision(fx: Fixture) {
    let s = &fx.store;
    s.create(&fx.key("a"), b"1".to_vec()).await.expect("create");
    let current = s.current_revision().await.expect("revision");
    match s.list(&fx.prefix, None, 0, Some(current + 1)).await {
        Err(StoreError::FutureRevision { requested, current: c }) => {
            assert_eq!(requested, current + 1);
            assert!(c >= current);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

fn assert_change(event: &Event, kind: EventKind, kv: &KeyValue, prev: Option<&KeyValue>) {
    assert_eq!(event.kind, kind, "{event:?}");
    assert_eq!(&event.kv, kv, "{event:?}");
    assert_eq!(event.prev.as_ref(), prev, "{event:?}");
    assert_eq!(event.revision, kv.mod_revision, "{event:?}");
}

pub async fn watch_replay_then_live(fx: Fixture) {
    let s = &fx.store;
    let (a, b) = (fx.key("a"), fx.key("b"));
    let r0 = s.current_revision().await.expect("revision");
    let a1 = s.create(&a, b"a1".to_vec()).await.expect("create");
    let a2 = s.update(&a, b"a2".to_vec(), a1.mod_revision).await.expect("update");
    let a_gone = s.delete(&a, None).await.expect("delete");
    let b1 = s.create(&b, b"b1".to_vec()).await.expect("create");

    let mut w = s.watch(&fx.prefix, r0).await.expect("watch");
    assert_change(&next_change(&mut w).await, EventKind::Create, &a1, None);
    assert_change(&next_change(&mut w).await, EventKind::Update, &a2, Some(&a1));
    assert_change(&next_change(&mut w).await, EventKind::Delete, &a_gone, Some(&a2));
    assert_change(&next_change(&mut w).await, EventKind::Create, &b1, None);

    // From the middle of the history: only what follows.
    let mut from_middle = s.watch(&fx.prefix, a2.mod_revision).await.expect("watch");
    assert_change(&next_change(&mut from_middle).await, EventKind::Delete, &a_gone, Some(&a2));

    let a3 = s.create(&a, b"a3".to_vec()).await.expect("create");
    let b2 = s.update(&b, b"b2".to_vec(), b1.mod_revision).await.expect("update");
    let b_gone = s.delete(&b, Some(b2.mod_revision)).await.expect("delete");
    assert_change(&next_change(&mut w).await, EventKind::Create, &a3, None);
    assert_change(&next_change(&mut w).await, EventKind::Update, &b2, Some(&b1));
    assert_change(&next_change(&mut w).await, EventKind::Delete, &b_gone, Some(&b2));
    assert_change(&next_change(&mut from_middle).await, EventKind::Create, &b1, None);
    assert_change(&next_change(&mut from_middle).await, EventKind::Create, &a3, None);

    // A watch from now sees only what comes next.
    let now = s.current_revision().await.expect("revision");
    let mut fresh = s.watch(&fx.prefix, now).await.expect("watch");
    let a4 = s.update(&a, b"a4".to_vec(), a3.mod_revision).await.expect("update");
    assert_change(&next_change(&mut fresh).await, EventKind::Update, &a4, Some(&a3));
    assert_quiet(&mut fresh).await;
}

pub async fn watch_filters_prefix(fx: Fixture) {
    let s = &fx.store;
    let r0 = s.current_revision().await.expect("revision");
    s.create(&fx.key("other/1"), b"x".to_vec()).await.expect("create");
    s.create(&fx.key("wx"), b"x".to_vec()).await.expect("create");
    let inside = s.create(&fx.key("w/1"), b"x".to_vec()).await.expect("create");
    let mut w = s.watch(&fx.key("w/"), r0).await.expect("watch");
    assert_change(&next_change(&mut w).await, EventKind::Create, &inside, None);
    s.create(&fx.key("other/2"), b"x".to_vec()).await.expect("create");
    let live = s.create(&fx.key("w/2"), b"x".to_vec()).await.expect("create");
    assert_change(&next_change(&mut w).await, EventKind::Create, &live, None);
    s.create(&fx.key("w"), b"x".to_vec()).await.expect("create");
    assert_quiet(&mut w).await;
}

pub async fn watch_compacted(fx: Fixture) {
    let s = &fx.store;
    let h = compacted_history(&fx).await;
    match s.watch(&fx.prefix, h.first).await {
        Err(StoreError::Compacted { .. }) => {}
        Ok(mut stream) => {
            // A backend may report it as the first item instead.
            let item = tokio::time::timeout(WAIT, stream.next()).await.expect("in time");
            assert!(
                matches!(item, Some(Err(StoreError::Compacted { .. }))),
                "expected Compacted, got {item:?}"
            );
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
    }
    // From the compacted revision on, history is complete, previous values included.
    let mut w = s.watch(&fx.prefix, h.compacted).await.expect("watch");
    assert_change(&next_change(&mut w).await, EventKind::Delete, &h.b_deleted, Some(&h.b1));
    assert_change(&next_change(&mut w).await, EventKind::Update, &h.a3, Some(&h.a2));
}

pub async fn watch_progress(fx: Fixture) {
    let s = &fx.store;
    let r0 = s.current_revision().await.expect("revision");
    let mut w = s.watch(&fx.key("w/"), r0).await.expect("watch");
    let outside = s.create(&fx.key("x"), b"x".to_vec()).await.expect("create");
    let mut last = r0;
    loop {
        let event = next_event(&mut w).await;
        assert_eq!(event.kind, EventKind::Progress, "unexpected {event:?}");
        assert!(event.revision >= last, "progress went back: {event:?}");
        last = event.revision;
        if last >= outside.mod_revision {
            break;
        }
    }
}

pub async fn watch_while_writing(fx: Fixture) {
    let s = &fx.store;
    let r0 = s.current_revision().await.expect("revision");
    let mut writers = Vec::new();
    for task in 0..10 {
        let store = Arc::clone(s);
        let prefix = fx.key("w/");
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..20 {
                let key = format!("{prefix}{task}/{i}");
                revisions
                    .push(store.create(&key, b"x".to_vec()).await.expect("create").mod_revision);
            }
            revisions
        }));
    }
    // Start watching while the writes are under way: replay and live must join seamlessly.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut w = s.watch(&fx.key("w/"), r0).await.expect("watch");
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    written.sort_unstable();
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let event = next_change(&mut w).await;
        assert_eq!(event.kind, EventKind::Create);
        if let Some(last) = seen.last() {
            assert!(event.revision > *last, "out of order: {event:?} after {last}");
        }
        seen.push(event.revision);
    }
    assert_eq!(seen, written);
    assert_quiet(&mut w).await;
}

pub async fn concurrent_writers(fx: Fixture) {
    const TASKS: usize = 50;
    const WRITES: usize = 20;
    let s = &fx.store;
    let r0 = s.current_revision().await.expect("revision");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(s);
        let key = fx.key(&format!("c/{task:03}"));
        tasks.push(tokio::spawn(async move {
            let mut kv = store.create(&key, b"0".to_vec()).await.expect("create");
            let mut revisions = vec![kv.mod_revision];
            for i in 1..WRITES {
                let value = i.to_string().into_bytes();
                kv = store.update(&key, value, kv.mod_revision).await.expect("update");
                revisions.push(kv.mod_revision);
            }
            (kv, revisions)
        }));
    }
    let mut last = BTreeMap::new();
    let mut revisions = HashSet::new();
    for task in tasks {
        let (kv, revs) = task.await.expect("writer task");
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "one writer's revisions go up");
        for rev in revs {
            assert!(revisions.insert(rev), "revision {rev} given twice");
        }
        last.insert(kv.key.clone(), kv);
    }
    let total = (TASKS * WRITES) as Revision;
    assert_eq!(revisions.len() as Revision, total);
    assert_eq!(revisions.iter().min(), Some(&(r0 + 1)));
    assert_eq!(revisions.iter().max(), Some(&(r0 + total)));
    assert_eq!(s.current_revision().await.expect("revision"), r0 + total);
    let page = s.list(&fx.key("c/"), None, 0, None).await.expect("list");
    assert_eq!(page.items, last.into_values().collect::<Vec<_>>());
    assert!(page.items.iter().all(|kv| kv.value == b"19"));
}

pub async fn concurrent_guarded_updates(fx: Fixture) {
    let s = &fx.store;
    let key = fx.key("contended");
    let created = s.create(&key, b"0".to_vec()).await.expect("create");
    let mut tasks = Vec::new();
    for task in 0..20 {
        let (store, key) = (Arc::clone(s), key.clone());
        let expected = created.mod_revision;
        tasks.push(tokio::spawn(async move {
            store.update(&key, task.to_string().into_bytes(), expected).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(kv) => winners.push(kv),
            Err(StoreError::Conflict { expected, actual, .. }) => {
                assert_eq!(expected, created.mod_revision);
                assert_eq!(actual, created.mod_revision + 1);
            }
            Err(other) => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one guarded update wins");
    assert_eq!(s.get(&key).await.expect("get"), winners.pop());
    assert_eq!(s.current_revision().await.expect("revision"), created.mod_revision + 1);
    let keys_now = s.list(&fx.prefix, None, 0, None).await.expect("list");
    assert_eq!(keys(&keys_now.items), vec![key.as_str()]);
}

/// A healthy store passes its check, before and after writes and failed writes.
pub async fn check_healthy_store(fx: Fixture) {
    let s = &fx.store;
    s.check().await.expect("check of a fresh store");
    let a = s.create(&fx.key("a"), b"1".to_vec()).await.expect("create");
    assert!(matches!(
        s.create(&fx.key("a"), b"2".to_vec()).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    s.update(&fx.key("a"), b"3".to_vec(), a.mod_revision).await.expect("update");
    s.check().await.expect("check after writes");
}
