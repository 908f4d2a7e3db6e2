//! list and watch.

use std::time::Duration;

use krust_api::Reason;
use krust_apiserver::registry::DeleteOptions;
use krust_apiserver::watchcache::HistoryLimits;
use serde_json::json;

use crate::harness::{CONFIGMAPS, Harness, NS, config_map, name, outcome, rv};

/// The longest a test waits for watch events that are due.
const WAIT: Duration = Duration::from_secs(10);

/// A harness with ConfigMaps a (app=x), b (app=x), c (app=y), d (app=y), e (app=z).
async fn five() -> Harness {
    let h = Harness::new().await;
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")] {
        h.create(CONFIGMAPS, NS, config_map(n, json!({"app": app}), json!({}))).await.unwrap();
    }
    h
}

#[tokio::test]
async fn list_selectors() {
    let cases: [(&str, &str, &[&str]); 7] = [
        ("everything", "", &["a", "b", "c", "d", "e"]),
        ("a label equality", "labelSelector=app%3Dx", &["a", "b"]),
        ("a label inequality", "labelSelector=app!%3Dx", &["c", "d", "e"]),
        ("a label set", "labelSelector=app+in+(x,z)", &["a", "b", "e"]),
        ("a field selector on the name", "fieldSelector=metadata.name%3Dc", &["c"]),
        (
            "a field selector excluding a name",
            "fieldSelector=metadata.name!%3Dc",
            &["a", "b", "d", "e"],
        ),
        ("both selectors", "labelSelector=app%3Dy&fieldSelector=metadata.name!%3Dc", &["d"]),
    ];
    let h = five().await;
    for (case, query, expected) in cases {
        let page = h.list(CONFIGMAPS, NS, query).await.unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(page.names(), expected, "{case}");
        assert_eq!(page.continue_token, None, "{case}");
    }
}

#[tokio::test]
async fn list_pages_return_every_object_once() {
    let cases: [(usize, &str, &[&str]); 4] = [
        (2, "", &["a", "b", "c", "d", "e"]),
        (1, "", &["a", "b", "c", "d", "e"]),
        (5, "", &["a", "b", "c", "d", "e"]),
        (1, "&labelSelector=app%3Dy", &["c", "d"]),
    ];
    for (limit, selector, expected) in cases {
        let h = five().await;
        let mut seen = Vec::new();
        let mut query = format!("limit={limit}{selector}");
        let mut revision = None;
        for _ in 0..10 {
            let page = h.list(CONFIGMAPS, NS, &query).await.unwrap();
            assert!(page.items.len() <= limit, "limit {limit}: page of {}", page.items.len());
            // Every page is read at the first page's revision.
            assert_eq!(*revision.get_or_insert(page.revision), page.revision);
            seen.extend(page.names());
            match page.continue_token {
                Some(token) => query = format!("limit={limit}{selector}&continue={token}"),
                None => break,
            }
            // A write between pages does not show in the later pages.
            let late = config_map(&format!("z{}", seen.len()), json!({"app": "y"}), json!({}));
            h.create(CONFIGMAPS, NS, late).await.unwrap();
        }
        assert_eq!(seen, expected, "limit {limit}{selector}");
    }
}

#[tokio::test]
async fn list_resource_versions() {
    let h = five().await;
    let first = h.list(CONFIGMAPS, NS, "limit=2").await.unwrap();
    let token = first.continue_token.clone().unwrap();
    // A consistent read (no resourceVersion) sees the latest write.
    let created = h.create(CONFIGMAPS, NS, config_map("f", json!({}), json!({}))).await.unwrap();
    let latest = h.list(CONFIGMAPS, NS, "").await.unwrap();
    assert_eq!(latest.revision.to_string(), rv(&created));
    assert_eq!(latest.names().last().map(String::as_str), Some("f"));
    // resourceVersion=0: any state the cache has; at least what it had before.
    let any = h.list(CONFIGMAPS, NS, "resourceVersion=0").await.unwrap();
    assert!(any.items.len() >= 5, "{:?}", any.names());
    // Exact: the state at the revision, without the later write.
    let exact = format!("resourceVersion={}&resourceVersionMatch=Exact", first.revision);
    assert_eq!(h.list(CONFIGMAPS, NS, &exact).await.unwrap().names(), ["a", "b", "c", "d", "e"]);
    // A continue token with a resourceVersion: 400, worded as upstream's storage
    // (etcd3 `GetList`: "specifying resource version is not allowed when using continue").
    let query = format!("limit=2&continue={token}&resourceVersion={}", first.revision);
    let error = h.list(CONFIGMAPS, NS, &query).await.unwrap_err();
    assert_eq!(outcome(&error), (400, Reason::BadRequest));
    assert_eq!(error.message, "specifying resource version is not allowed when using continue");
    // `resourceVersion=0` goes with a continue token, as upstream's storage allows (etcd3
    // `GetList` refuses only `len(rv) > 0 && rv != "0"`).
    let with_zero = format!("limit=2&continue={token}&resourceVersion=0");
    let zero = h.list(CONFIGMAPS, NS, &with_zero).await.unwrap();
    assert_eq!(zero.names(), ["c", "d"]);
    // The token alone goes on at the first page's revision.
    let next = h.list(CONFIGMAPS, NS, &format!("limit=2&continue={token}")).await.unwrap();
    assert_eq!(
        (next.names(), next.revision),
        (vec!["c".to_string(), "d".to_string()], first.revision)
    );
}

#[tokio::test]
async fn watch_from_a_resource_version_replays_later_events_in_order() {
    let h = Harness::new().await;
    let a = h.create(CONFIGMAPS, NS, config_map("a", json!({}), json!({}))).await.unwrap();
    let mut changed = a.clone();
    changed["data"] = json!({"k": "v"});
    h.update(CONFIGMAPS, NS, "a", changed).await.unwrap();
    h.create(CONFIGMAPS, NS, config_map("b", json!({"app": "x"}), json!({}))).await.unwrap();
    h.delete(CONFIGMAPS, NS, "a", &DeleteOptions::default()).await.unwrap();
    let query = format!("resourceVersion={}", rv(&a));
    let events = h.watch(CONFIGMAPS, NS, &query, 3, WAIT).await.unwrap();
    let seen: Vec<(&str, &str)> =
        events.iter().map(|e| (e.kind.as_str(), name(&e.object))).collect();
    assert_eq!(seen, [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]);
    let revisions: Vec<u64> = events.iter().map(|e| rv(&e.object).parse().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    // With a selector: only b's event.
    let selected =
        h.watch(CONFIGMAPS, NS, &format!("{query}&labelSelector=app%3Dx"), 1, WAIT).await.unwrap();
    assert_eq!(
        selected.iter().map(|e| (e.kind.as_str(), name(&e.object))).collect::<Vec<_>>(),
        [("ADDED", "b")]
    );
    // Without a resourceVersion: the current objects as ADDED first.
    let initial = h.watch(CONFIGMAPS, NS, "", 1, WAIT).await.unwrap();
    assert_eq!(
        initial.iter().map(|e| (e.kind.as_str(), name(&e.object))).collect::<Vec<_>>(),
        [("ADDED", "b")]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_expired() {
    // Upstream's cacher answers a resourceVersion older than its window with a watch whose
    // one event is an ERROR carrying 410 Expired ("too old resource version: X (Y)").
    let h = Harness::with_history(HistoryLimits { events: 2, ..HistoryLimits::default() }).await;
    let first = h.create(CONFIGMAPS, NS, config_map("cm-0", json!({}), json!({}))).await.unwrap();
    let mut last = first.clone();
    for i in 1..8 {
        last = h
            .create(CONFIGMAPS, NS, config_map(&format!("cm-{i}"), json!({}), json!({})))
            .await
            .unwrap();
    }
    let store = h.registry.store();
    store.compact(rv(&last).parse().unwrap()).await.unwrap();
    let query = format!("resourceVersion={}", rv(&first));
    let events = h.watch(CONFIGMAPS, NS, &query, 2, WAIT).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let (kind, status) = (&events[0].kind, &events[0].object);
    assert_eq!(kind, "ERROR");
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_u64(), status["reason"].as_str()),
        (Some("Status"), Some(410), Some("Expired"))
    );
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("too old resource version: {} (", rv(&first))),
        "{message}"
    );
}
