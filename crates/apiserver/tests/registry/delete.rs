//! delete and deletecollection.

use krust_api::Reason;
use krust_apiserver::registry::{DeleteOptions, Deleted};
use serde_json::{Value, json};

use crate::harness::{CONFIGMAPS, Gvr, Harness, NS, config_map, name, outcome, rv};

/// `v1` Pods.
const PODS: Gvr = ("", "v1", "pods");
/// `v1` ServiceAccounts.
const SERVICE_ACCOUNTS: Gvr = ("", "v1", "serviceaccounts");

/// What a delete row expects.
enum Expect {
    /// Gone at once.
    Now,
    /// Kept, marked with a deletionTimestamp (and this grace period).
    Pending(i64),
    /// Refused.
    Err(u16, Reason),
}

#[tokio::test]
async fn delete_of_a_config_map() {
    struct Case {
        name: &'static str,
        /// The ConfigMap's finalizers.
        finalizers: Value,
        /// The options, given the object as created.
        opts: fn(&Value) -> DeleteOptions,
        expect: Expect,
    }
    let cases = [
        Case {
            name: "no options deletes at once",
            finalizers: json!([]),
            opts: |_| DeleteOptions::default(),
            expect: Expect::Now,
        },
        Case {
            name: "matching uid and resourceVersion preconditions delete",
            finalizers: json!([]),
            opts: |o| DeleteOptions {
                uid: o["metadata"]["uid"].as_str().map(str::to_string),
                resource_version: Some(rv(o).to_string()),
                ..DeleteOptions::default()
            },
            expect: Expect::Now,
        },
        // Worded as upstream's rest.BeforeDelete: `Operation cannot be fulfilled on ConfigMap
        // "cm": the UID in the precondition (..) does not match the UID in record (..). ...`
        // (the unit test in registry/delete.rs checks the words).
        Case {
            name: "a uid precondition that does not match conflicts",
            finalizers: json!([]),
            opts: |_| DeleteOptions { uid: Some("other".into()), ..DeleteOptions::default() },
            expect: Expect::Err(409, Reason::Conflict),
        },
        Case {
            name: "a resourceVersion precondition that does not match conflicts",
            finalizers: json!([]),
            opts: |_| DeleteOptions {
                resource_version: Some("1".into()),
                ..DeleteOptions::default()
            },
            expect: Expect::Err(409, Reason::Conflict),
        },
        Case {
            // ConfigMaps are not gracefully deleted upstream (no CheckGracefulDelete).
            name: "a grace period does not hold a config map",
            finalizers: json!([]),
            opts: |_| DeleteOptions { grace_period_seconds: Some(30), ..DeleteOptions::default() },
            expect: Expect::Now,
        },
        Case {
            name: "a finalizer keeps the object, marked",
            finalizers: json!(["example.com/hold"]),
            opts: |_| DeleteOptions::default(),
            expect: Expect::Pending(0),
        },
        Case {
            name: "a dry run changes nothing",
            finalizers: json!([]),
            opts: |_| DeleteOptions { dry_run: true, ..DeleteOptions::default() },
            expect: Expect::Now,
        },
    ];
    for case in cases {
        let h = Harness::new().await;
        let mut cm = config_map("cm", json!({}), json!({}));
        cm["metadata"]["finalizers"] = case.finalizers.clone();
        let created = h.create(CONFIGMAPS, NS, cm).await.unwrap();
        let opts = (case.opts)(&created);
        let got = h.delete(CONFIGMAPS, NS, "cm", &opts).await;
        let stored = h.get(CONFIGMAPS, NS, "cm").await;
        match (got, case.expect) {
            (Ok(Deleted::Now(obj)), Expect::Now) => {
                assert_eq!(name(&obj), "cm", "{}", case.name);
                let gone = stored.map_err(|e| outcome(&e));
                if opts.dry_run {
                    assert!(gone.is_ok(), "{}: a dry run deleted the object", case.name);
                } else {
                    assert_eq!(gone.err(), Some((404, Reason::NotFound)), "{}", case.name);
                }
            }
            (Ok(Deleted::Pending(obj)), Expect::Pending(grace)) => {
                let stored = stored.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                for o in [&obj, &stored] {
                    assert!(o.pointer("/metadata/deletionTimestamp").is_some(), "{}", case.name);
                    assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], grace, "{}", case.name);
                }
            }
            (Err(e), Expect::Err(code, reason)) => {
                assert_eq!(outcome(&e), (code, reason), "{}: {}", case.name, e.message);
                assert!(stored.is_ok(), "{}: a refused delete deleted", case.name);
            }
            (got, _) => panic!("{}: unexpected {got:?}", case.name),
        }
    }
}

#[tokio::test]
async fn removing_the_last_finalizer_deletes_the_marked_object() {
    let h = Harness::new().await;
    let mut cm = config_map("cm", json!({}), json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/a", "example.com/b"]);
    h.create(CONFIGMAPS, NS, cm).await.unwrap();
    let pending = h.delete(CONFIGMAPS, NS, "cm", &DeleteOptions::default()).await.unwrap();
    assert!(matches!(pending, Deleted::Pending(_)));
    // Deleting again while marked changes nothing.
    let again = h.delete(CONFIGMAPS, NS, "cm", &DeleteOptions::default()).await.unwrap();
    assert!(matches!(again, Deleted::Pending(_)));
    // One finalizer left: still there.
    let mut body = h.get(CONFIGMAPS, NS, "cm").await.unwrap();
    body["metadata"]["finalizers"] = json!(["example.com/b"]);
    let kept = h.update(CONFIGMAPS, NS, "cm", body).await.unwrap();
    assert!(kept.pointer("/metadata/deletionTimestamp").is_some());
    // Adding a finalizer to a marked object is forbidden (ValidateObjectMetaUpdate).
    let mut body = kept.clone();
    body["metadata"]["finalizers"] = json!(["example.com/b", "example.com/c"]);
    let refused = h.update(CONFIGMAPS, NS, "cm", body).await.unwrap_err();
    assert_eq!(outcome(&refused), (422, Reason::Invalid), "{}", refused.message);
    // The last one removed: gone.
    let mut body = kept;
    body["metadata"]["finalizers"] = json!([]);
    h.update(CONFIGMAPS, NS, "cm", body).await.unwrap();
    let gone = h.get(CONFIGMAPS, NS, "cm").await.unwrap_err();
    assert_eq!(outcome(&gone), (404, Reason::NotFound));
}

#[tokio::test]
async fn grace_periods_of_pods() {
    struct Case {
        name: &'static str,
        node: Option<&'static str>,
        grace: Option<i64>,
        expect: Expect,
    }
    // Upstream's podStrategy.CheckGracefulDelete: the pod's own grace period (30 s) by
    // default, the one asked for otherwise, and 0 for a pod never scheduled.
    let cases = [
        Case {
            name: "a scheduled pod waits its default grace",
            node: Some("n1"),
            grace: None,
            expect: Expect::Pending(30),
        },
        Case {
            name: "a scheduled pod waits the grace asked for",
            node: Some("n1"),
            grace: Some(5),
            expect: Expect::Pending(5),
        },
        Case {
            name: "a grace of zero deletes at once",
            node: Some("n1"),
            grace: Some(0),
            expect: Expect::Now,
        },
        Case {
            name: "a pod never scheduled goes at once",
            node: None,
            grace: Some(30),
            expect: Expect::Now,
        },
    ];
    for case in cases {
        let h = Harness::new().await;
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        h.create(SERVICE_ACCOUNTS, NS, sa).await.unwrap();
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        if let Some(node) = case.node {
            pod["spec"]["nodeName"] = json!(node);
        }
        h.create(PODS, NS, pod).await.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        let opts = DeleteOptions { grace_period_seconds: case.grace, ..DeleteOptions::default() };
        let got = h.delete(PODS, NS, "p", &opts).await;
        match (got, case.expect) {
            (Ok(Deleted::Now(_)), Expect::Now) => {
                assert!(h.get(PODS, NS, "p").await.is_err(), "{}", case.name);
            }
            (Ok(Deleted::Pending(obj)), Expect::Pending(grace)) => {
                assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], grace, "{}", case.name);
                assert!(h.get(PODS, NS, "p").await.is_ok(), "{}", case.name);
            }
            (got, _) => panic!("{}: unexpected {got:?}", case.name),
        }
    }
}

#[tokio::test]
async fn deletecollection_deletes_what_the_selector_selects() {
    let h = Harness::new().await;
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        h.create(CONFIGMAPS, NS, config_map(n, json!({"app": app}), json!({}))).await.unwrap();
    }
    let deleted = h
        .delete_collection(CONFIGMAPS, NS, "labelSelector=app%3Dx", &DeleteOptions::default())
        .await
        .unwrap();
    let mut names: Vec<&str> = deleted.iter().map(name).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(h.list(CONFIGMAPS, NS, "").await.unwrap().names(), ["c"]);
}
