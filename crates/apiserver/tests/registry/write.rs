//! create, get, update and patch.

use krust_api::{PatchType, Reason};
use krust_apiserver::registry::{DeleteOptions, Deleted, Subresource, WriteOptions};
use serde_json::{Value, json};

use crate::harness::{
    CONFIGMAPS, DEPLOYMENTS, Harness, NAMESPACES, NS, config_map, deployment, name, outcome, rv,
};

/// What a row expects: the object's key fields, or an error.
enum Expect {
    /// Success; the check is handed the answered object.
    Ok(fn(&Value) -> bool),
    /// Failure with this code, reason and (when `Some`) message.
    Err(u16, Reason, Option<&'static str>),
}

/// Compares an outcome with a row's expectation.
fn check(case: &str, got: Result<Value, krust_api::StatusError>, expect: &Expect) {
    match (got, expect) {
        (Ok(obj), Expect::Ok(fields)) => assert!(fields(&obj), "{case}: unexpected object {obj}"),
        (Err(e), Expect::Err(code, reason, message)) => {
            assert_eq!(outcome(&e), (*code, *reason), "{case}: {}", e.message);
            if let Some(message) = message {
                assert_eq!(e.message, *message, "{case}");
            }
        }
        (Ok(obj), Expect::Err(..)) => panic!("{case}: succeeded with {obj}"),
        (Err(e), Expect::Ok(_)) => panic!("{case}: failed with {e:?}"),
    }
}

/// What exists before a create row runs.
enum Before {
    /// Only the `default` namespace.
    Nothing,
    /// A ConfigMap `dup` in `default`.
    ConfigMap,
    /// A namespace `closing` being deleted (held by its `kubernetes` finalizer).
    TerminatingNamespace,
}

#[tokio::test]
async fn create() {
    struct Case {
        name: &'static str,
        before: Before,
        namespace: &'static str,
        obj: Value,
        dry_run: bool,
        expect: Expect,
    }
    let cases = [
        Case {
            name: "a duplicate name already exists",
            before: Before::ConfigMap,
            namespace: "default",
            obj: config_map("dup", json!({}), json!({})),
            dry_run: false,
            expect: Expect::Err(
                409,
                Reason::AlreadyExists,
                Some("configmaps \"dup\" already exists"),
            ),
        },
        Case {
            name: "a dry run of a duplicate already exists too",
            before: Before::ConfigMap,
            namespace: "default",
            obj: config_map("dup", json!({}), json!({})),
            dry_run: true,
            expect: Expect::Err(409, Reason::AlreadyExists, None),
        },
        Case {
            name: "generateName appends five characters to the prefix",
            before: Before::Nothing,
            namespace: "default",
            obj: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}}),
            dry_run: false,
            expect: Expect::Ok(|o| name(o).starts_with("web-") && name(o).len() == 9),
        },
        Case {
            name: "create sets uid, creationTimestamp and resourceVersion",
            before: Before::Nothing,
            namespace: "default",
            obj: config_map("fresh", json!({}), json!({"k": "v"})),
            dry_run: false,
            expect: Expect::Ok(|o| {
                o.pointer("/metadata/uid").is_some()
                    && o.pointer("/metadata/creationTimestamp").is_some()
                    && rv(o).parse::<u64>().is_ok()
            }),
        },
        Case {
            // NamespaceLifecycle: `errors.NewNotFound(v1.Resource("namespaces"), ns)`.
            name: "a missing namespace is not found",
            before: Before::Nothing,
            namespace: "nope",
            obj: config_map("x", json!({}), json!({})),
            dry_run: false,
            expect: Expect::Err(404, Reason::NotFound, Some("namespaces \"nope\" not found")),
        },
        Case {
            // NamespaceLifecycle: `admission.NewForbidden(a, ...)`.
            name: "a terminating namespace takes no new content",
            before: Before::TerminatingNamespace,
            namespace: "closing",
            obj: config_map("x", json!({}), json!({})),
            dry_run: false,
            expect: Expect::Err(
                403,
                Reason::Forbidden,
                Some(
                    "configmaps \"x\" is forbidden: unable to create new content in namespace closing because it is being terminated",
                ),
            ),
        },
        Case {
            name: "a dry run answers the object",
            before: Before::Nothing,
            namespace: "default",
            obj: config_map("dry", json!({}), json!({"k": "v"})),
            dry_run: true,
            expect: Expect::Ok(|o| name(o) == "dry" && o["data"]["k"] == "v"),
        },
        // `metadata.resourceVersion` set on a create is refused at the HTTP edge (a POST), as
        // upstream's storage refuses it (`storage.ErrResourceVersionSetOnCreate`); the
        // registry's own creates (apply's create, the server's) drop it.
    ];
    for case in cases {
        let h = Harness::new().await;
        match case.before {
            Before::Nothing => {}
            Before::ConfigMap => {
                h.create(CONFIGMAPS, NS, config_map("dup", json!({}), json!({}))).await.unwrap();
            }
            Before::TerminatingNamespace => {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "closing"}});
                h.create(NAMESPACES, None, ns).await.unwrap();
                let deleted =
                    h.delete(NAMESPACES, None, "closing", &DeleteOptions::default()).await.unwrap();
                assert!(matches!(deleted, Deleted::Pending(_)), "{}: {deleted:?}", case.name);
            }
        }
        let opts = WriteOptions { dry_run: case.dry_run, ..WriteOptions::default() };
        let got = h.create_with(CONFIGMAPS, Some(case.namespace), case.obj.clone(), opts).await;
        check(case.name, got, &case.expect);
        if case.dry_run && matches!(case.before, Before::Nothing) {
            // A dry run stores nothing.
            let stored = h.get(CONFIGMAPS, Some(case.namespace), name(&case.obj)).await;
            assert_eq!(
                stored.map_err(|e| outcome(&e)),
                Err((404, Reason::NotFound)),
                "{}",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn get_of_a_missing_object_is_not_found_as_upstream_words_it() {
    let h = Harness::new().await;
    let error = h.get(CONFIGMAPS, NS, "nope").await.unwrap_err();
    assert_eq!(outcome(&error), (404, Reason::NotFound));
    assert_eq!(error.message, "configmaps \"nope\" not found");
    let status = error.to_status();
    assert_eq!(status["details"], json!({"name": "nope", "kind": "configmaps"}));
    assert_eq!(status["code"], 404);
    assert_eq!(status["reason"], "NotFound");
    let deployment = h.get(DEPLOYMENTS, NS, "web").await.unwrap_err();
    assert_eq!(deployment.message, "deployments.apps \"web\" not found");
    assert_eq!(deployment.to_status()["details"]["group"], "apps");
}

/// How an update row builds its body from the stored object.
type Edit = fn(&mut Value);

#[tokio::test]
async fn update_of_a_config_map() {
    struct Case {
        name: &'static str,
        /// The object updated (`cm` exists).
        target: &'static str,
        edit: Edit,
        expect: Expect,
    }
    let cases = [
        Case {
            name: "a stale resourceVersion conflicts",
            target: "cm",
            edit: |o| {
                o["metadata"]["resourceVersion"] = json!("1");
                o["data"]["k"] = json!("new");
            },
            expect: Expect::Err(
                409,
                Reason::Conflict,
                Some(
                    "Operation cannot be fulfilled on configmaps \"cm\": the object has been modified; please apply your changes to the latest version and try again",
                ),
            ),
        },
        Case {
            name: "the current resourceVersion updates",
            target: "cm",
            edit: |o| o["data"]["k"] = json!("new"),
            expect: Expect::Ok(|o| o["data"]["k"] == "new"),
        },
        Case {
            // ConfigMap's strategy: `AllowUnconditionalUpdate() == true`.
            name: "no resourceVersion is an unconditional update",
            target: "cm",
            edit: |o| {
                o["metadata"].as_object_mut().unwrap().remove("resourceVersion");
                o["data"]["k"] = json!("new");
            },
            expect: Expect::Ok(|o| o["data"]["k"] == "new"),
        },
        Case {
            // ConfigMap's strategy: `AllowCreateOnUpdate() == false`.
            name: "a missing object is not found",
            target: "missing",
            edit: |o| {
                o["metadata"]["name"] = json!("missing");
                o["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            },
            expect: Expect::Err(404, Reason::NotFound, Some("configmaps \"missing\" not found")),
        },
        // Services are created by an update of a missing one: see
        // `an_update_of_a_missing_service_creates_it`.
    ];
    for case in cases {
        let h = Harness::new().await;
        let mut body = h
            .create(CONFIGMAPS, NS, config_map("cm", json!({}), json!({"k": "old"})))
            .await
            .unwrap();
        (case.edit)(&mut body);
        let got = h.update(CONFIGMAPS, NS, case.target, body).await;
        check(case.name, got, &case.expect);
    }
}

#[tokio::test]
async fn update_of_a_deployment_generation_and_status() {
    struct Case {
        name: &'static str,
        sub: Subresource,
        edit: Edit,
        /// The stored object afterwards.
        expect: fn(&Value) -> bool,
    }
    let cases = [
        Case {
            name: "a spec change bumps the generation",
            sub: Subresource::Main,
            edit: |o| o["spec"]["replicas"] = json!(3),
            expect: |o| o["metadata"]["generation"] == 2 && o["spec"]["replicas"] == 3,
        },
        Case {
            name: "a label change leaves the generation",
            sub: Subresource::Main,
            edit: |o| o["metadata"]["labels"] = json!({"tier": "front"}),
            expect: |o| {
                o["metadata"]["generation"] == 1 && o["metadata"]["labels"]["tier"] == "front"
            },
        },
        // An annotation change advances a Deployment's generation, as upstream's
        // deploymentStrategy.PrepareForUpdate compares Spec and Annotations.
        Case {
            name: "an annotation change advances the generation",
            sub: Subresource::Main,
            edit: |o| o["metadata"]["annotations"] = json!({"note": "x"}),
            expect: |o| o["metadata"]["generation"] == 2,
        },
        Case {
            name: "the main resource ignores status",
            sub: Subresource::Main,
            edit: |o| o["status"] = json!({"replicas": 7, "observedGeneration": 1}),
            expect: |o| o["metadata"]["generation"] == 1 && o["status"].get("replicas").is_none(),
        },
        Case {
            name: "the status subresource ignores spec",
            sub: Subresource::Status,
            edit: |o| {
                o["spec"]["replicas"] = json!(5);
                o["status"] = json!({"replicas": 1, "observedGeneration": 1});
            },
            expect: |o| {
                o["spec"]["replicas"] == 1
                    && o["status"]["replicas"] == 1
                    && o["metadata"]["generation"] == 1
            },
        },
    ];
    for case in cases {
        let h = Harness::new().await;
        let created = h.create(DEPLOYMENTS, NS, deployment("web", "nginx:1", 1)).await.unwrap();
        assert_eq!(created["metadata"]["generation"], 1, "{}", case.name);
        let mut body = created.clone();
        (case.edit)(&mut body);
        let answered = h
            .update_sub(DEPLOYMENTS, NS, "web", case.sub, body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        let stored = h.get(DEPLOYMENTS, NS, "web").await.unwrap();
        assert!((case.expect)(&answered), "{}: answered {answered}", case.name);
        assert!((case.expect)(&stored), "{}: stored {stored}", case.name);
    }
}

#[tokio::test]
async fn patch() {
    struct Case {
        name: &'static str,
        gvr: crate::harness::Gvr,
        target: &'static str,
        kind: PatchType,
        body: Value,
        expect: Expect,
    }
    let cases = [
        Case {
            name: "a merge patch sets and removes keys",
            gvr: CONFIGMAPS,
            target: "cm",
            kind: PatchType::Merge,
            body: json!({"data": {"a": null, "c": "3"}}),
            expect: Expect::Ok(|o| o["data"] == json!({"b": "2", "c": "3"})),
        },
        Case {
            name: "a JSON patch whose test passes applies",
            gvr: CONFIGMAPS,
            target: "cm",
            kind: PatchType::Json,
            body: json!([
                {"op": "test", "path": "/data/a", "value": "1"},
                {"op": "replace", "path": "/data/a", "value": "9"},
            ]),
            expect: Expect::Ok(|o| o["data"] == json!({"a": "9", "b": "2"})),
        },
        Case {
            // Upstream answers `NewGenericServerResponse(422, ...)`: 422 Invalid.
            // Upstream's generic server response (endpoints/handlers/patch.go applyJSPatch),
            // with "testing value /data/a failed: test failed" as its cause.
            name: "a JSON patch whose test fails is invalid",
            gvr: CONFIGMAPS,
            target: "cm",
            kind: PatchType::Json,
            body: json!([
                {"op": "test", "path": "/data/a", "value": "other"},
                {"op": "replace", "path": "/data/a", "value": "9"},
            ]),
            expect: Expect::Err(
                422,
                Reason::Invalid,
                Some("the server rejected our request due to an error in our request"),
            ),
        },
        Case {
            name: "a strategic merge patch merges containers by name",
            gvr: DEPLOYMENTS,
            target: "web",
            kind: PatchType::StrategicMerge,
            body: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:2"},
            ]}}}}),
            expect: Expect::Ok(|o| {
                let containers = &o["spec"]["template"]["spec"]["containers"];
                containers.as_array().map(Vec::len) == Some(2)
                    && containers[0]["name"] == "main"
                    && containers[0]["image"] == "nginx:2"
                    && containers[1]["name"] == "side"
                    && o["metadata"]["generation"] == 2
            }),
        },
        Case {
            name: "a merge patch replaces the containers list",
            gvr: DEPLOYMENTS,
            target: "web",
            kind: PatchType::Merge,
            body: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:2"},
            ]}}}}),
            expect: Expect::Ok(|o| {
                o["spec"]["template"]["spec"]["containers"].as_array().map(Vec::len) == Some(1)
            }),
        },
        Case {
            name: "a patch of a missing object is not found",
            gvr: CONFIGMAPS,
            target: "missing",
            kind: PatchType::Merge,
            body: json!({"data": {"a": "x"}}),
            expect: Expect::Err(404, Reason::NotFound, Some("configmaps \"missing\" not found")),
        },
        Case {
            name: "a strategic merge patch of a missing object is not found",
            gvr: DEPLOYMENTS,
            target: "missing",
            kind: PatchType::StrategicMerge,
            body: json!({"spec": {"replicas": 2}}),
            expect: Expect::Err(
                404,
                Reason::NotFound,
                Some("deployments.apps \"missing\" not found"),
            ),
        },
    ];
    for case in cases {
        let h = Harness::new().await;
        h.create(CONFIGMAPS, NS, config_map("cm", json!({}), json!({"a": "1", "b": "2"})))
            .await
            .unwrap();
        let mut web = deployment("web", "nginx:1", 1);
        web["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        h.create(DEPLOYMENTS, NS, web).await.unwrap();
        let got = h.patch(case.gvr, NS, case.target, case.kind, case.body).await;
        check(case.name, got, &case.expect);
    }
}

/// Upstream's `svcStrategy.AllowCreateOnUpdate() == true` (pkg/registry/core/service/
/// strategy.go): a PUT of a missing Service creates it; a ConfigMap's is NotFound (above).
#[tokio::test]
async fn an_update_of_a_missing_service_creates_it() {
    let h = Harness::new().await;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}},
    });
    let created = h.update(("", "v1", "services"), NS, "web", service).await.unwrap();
    assert_eq!(name(&created), "web");
    assert!(created["spec"]["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{created}");
    assert_eq!(
        h.get(("", "v1", "services"), NS, "web").await.unwrap()["metadata"]["uid"],
        created["metadata"]["uid"]
    );
}

/// A subresource that a strategy merges replaces only its part of the object
/// (`namespaces/finalize`: `spec.finalizers`), and is served only where the strategy says so.
#[tokio::test]
async fn part_subresources_replace_only_their_part() {
    let h = Harness::new().await;
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "parted"}, "spec": {"finalizers": ["kubernetes"]}});
    h.create(NAMESPACES, None, namespace).await.unwrap();
    let finalize = Subresource::parse(&h.info(NAMESPACES), Some("finalize"))
        .expect("namespaces serve finalize");
    assert_eq!(finalize.as_str(), "finalize");
    let view = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "parted", "labels": {"extra": "label"}}, "spec": {"finalizers": []}});
    let new = h.update_sub(NAMESPACES, None, "parted", finalize, view).await.unwrap();
    assert_eq!(new["spec"]["finalizers"], json!([]));
    assert!(new["metadata"]["labels"].get("extra").is_none(), "labels are not finalize's part");
    for name in ["finalize", "approval"] {
        assert!(Subresource::parse(&h.info(CONFIGMAPS), Some(name)).is_none(), "{name}");
    }
}

/// Writes another writer made straight to the store, which the watch cache may not have seen
/// yet (updates start from the cache's copy, as upstream's start from the cacher's).
async fn write_behind_the_cache(h: &Harness, name: &str, field: &str, value: &str) -> i64 {
    let key = h.info(CONFIGMAPS).storage_key(NS, name);
    let store = h.registry.store();
    let kv = store.get(&key).await.unwrap().expect("the object is stored");
    let mut obj: Value = serde_json::from_slice(&kv.value).unwrap();
    obj["data"][field] = json!(value);
    let bytes = serde_json::to_vec(&obj).unwrap();
    store.update(&key, bytes, kv.mod_revision).await.unwrap().mod_revision
}

#[tokio::test]
async fn updates_lose_no_write_the_watch_cache_has_not_seen() {
    let h = Harness::new().await;
    let first = h.create(CONFIGMAPS, NS, config_map("cm", json!({}), json!({}))).await.unwrap();
    for i in 0..40 {
        let i = i.to_string();
        write_behind_the_cache(&h, "cm", "store", &i).await;
        let patch = json!({"data": {"patch": i}});
        let patched = h.patch(CONFIGMAPS, NS, "cm", PatchType::Merge, patch).await.unwrap();
        assert_eq!((&patched["data"]["store"], &patched["data"]["patch"]), (&json!(i), &json!(i)));

        // The store's revision is the current one, whatever the cache holds.
        let revision = write_behind_the_cache(&h, "cm", "store", &format!("{i}+")).await;
        let mut body = patched.clone();
        body["metadata"]["resourceVersion"] = json!(revision.to_string());
        body["data"]["update"] = json!(i);
        let updated = h.update(CONFIGMAPS, NS, "cm", body).await.unwrap();
        assert_eq!(updated["data"]["update"], json!(i));

        // An older one conflicts, though the cache may still hold it.
        write_behind_the_cache(&h, "cm", "store", &i).await;
        let mut stale = updated.clone();
        stale["data"]["update"] = json!("lost");
        let refused = h.update(CONFIGMAPS, NS, "cm", stale).await.unwrap_err();
        assert_eq!(outcome(&refused), (409, Reason::Conflict), "{i}");
    }
    let last = h.get(CONFIGMAPS, NS, "cm").await.unwrap();
    assert_eq!(last["data"], json!({"store": "39", "patch": "39", "update": "39"}));
    assert_ne!(rv(&last), rv(&first));
}
