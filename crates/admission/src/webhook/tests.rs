#![allow(clippy::unwrap_used)]

use base64::Engine;
use serde_json::json;

use super::*;

struct Empty;
impl ClusterView for Empty {
    fn get_json(&self, _: &str, _: &str, _: &str, _: &str) -> Option<bytes::Bytes> {
        None
    }
    fn list_json(&self, _: &str, _: &str, _: &str) -> Vec<bytes::Bytes> {
        Vec::new()
    }
}

fn attributes() -> Attributes<'static> {
    Attributes {
        operation: Operation::Create,
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
        subresource: "",
        namespace: "",
        name: "cm",
        user: None,
        dry_run: false,
    }
}

fn config(extra: Value) -> ValidatingWebhookConfiguration {
    let mut hook = json!({
        "name": "deny.example.com",
        "clientConfig": {"url": "https://127.0.0.1:8443/validate", "caBundle": "AAEC"},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        hook[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": "cfg"}, "webhooks": [hook]})).unwrap()
}

#[test]
fn a_configuration_reads_into_webhooks_with_upstream_defaults() {
    let hooks = validating_webhooks(&config(json!({})));
    let hook = &hooks[0];
    assert_eq!(hook.configuration, "cfg");
    assert_eq!(hook.endpoint, Some(Endpoint::Url("https://127.0.0.1:8443/validate".into())));
    assert_eq!(hook.ca_bundle, vec![0, 1, 2]);
    assert_eq!(hook.failure_policy, FailurePolicy::Fail);
    assert_eq!(hook.match_policy, MatchPolicy::Equivalent);
    assert_eq!(hook.timeout_seconds, 10);
    assert!(hook.supports_dry_run());
}

#[test]
fn service_endpoints_default_to_port_443_and_the_root_path() {
    let hooks = validating_webhooks(&config(json!({
        "clientConfig": {"service": {"namespace": "ns", "name": "hook"}}
    })));
    let endpoint = hooks[0].endpoint.clone().unwrap();
    assert_eq!(
        endpoint,
        Endpoint::Service {
            namespace: "ns".into(),
            name: "hook".into(),
            path: "/".into(),
            port: 443
        }
    );
    assert_eq!(endpoint.server_name(), "hook.ns.svc");
    assert_eq!(Endpoint::Url("https://[::1]:99/x".into()).server_name(), "::1");
    assert_eq!(Endpoint::Url("https://localhost/x".into()).server_name(), "localhost");
}

#[test]
fn webhooks_apply_by_rules_selectors_and_match_conditions() {
    let attrs = attributes();
    let object = json!({"metadata": {"name": "cm", "labels": {"team": "a"}}});
    let request = Request { attributes: &attrs, object: Some(&object), old: None };
    let hook = &validating_webhooks(&config(json!({})))[0];
    assert!(hook.applies(&request, &Empty).unwrap());

    let other =
        &validating_webhooks(&config(json!({"objectSelector": {"matchLabels": {"team": "b"}}})))[0];
    assert!(!other.applies(&request, &Empty).unwrap());

    let conditional = &validating_webhooks(&config(json!({"matchConditions": [
        {"name": "team-a", "expression": "object.metadata.labels.team == 'a'"}
    ]})))[0];
    assert!(conditional.applies(&request, &Empty).unwrap());
    let failing = &validating_webhooks(&config(json!({"matchConditions": [
        {"name": "broken", "expression": "object.spec.nothing"}
    ]})))[0];
    assert_eq!(failing.applies(&request, &Empty).unwrap_err().code(), 500);
}

#[test]
fn writes_to_webhook_configurations_never_reach_webhooks() {
    let mut attrs = attributes();
    attrs.group = "admissionregistration.k8s.io";
    attrs.resource = "validatingwebhookconfigurations";
    let request = Request { attributes: &attrs, object: None, old: None };
    let mut cfg = config(json!({}));
    cfg.webhooks.as_mut().unwrap()[0].rules.as_mut().unwrap()[0] = serde_json::from_value(
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}),
    )
    .unwrap();
    assert!(!validating_webhooks(&cfg)[0].applies(&request, &Empty).unwrap());
}

#[test]
fn the_review_carries_the_request() {
    let user = krust_auth::UserInfo {
        name: "alice".into(),
        groups: vec!["dev".into()],
        ..Default::default()
    };
    let mut attrs = attributes();
    attrs.user = Some(&user);
    attrs.namespace = "default";
    attrs.dry_run = true;
    let object = json!({"metadata": {"name": "cm"}});
    let review =
        review_request(&Request { attributes: &attrs, object: Some(&object), old: None }, "u-1");
    let r = &review["request"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["uid"], "u-1");
    assert_eq!(r["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
    assert_eq!(r["resource"]["resource"], "configmaps");
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["userInfo"], json!({"username": "alice", "groups": ["dev"]}));
    assert_eq!(r["object"], object);
    assert_eq!(r["oldObject"], Value::Null);
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
}

fn response(body: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": body}),
    )
    .unwrap()
}

#[test]
fn responses_are_checked_and_patches_decoded() {
    let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]);
    let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    let verdict = parse_response(
        &response(json!({"uid": "u", "allowed": true, "patch": encoded, "patchType": "JSONPatch", "warnings": ["careful"]})),
        "u",
    )
    .unwrap();
    assert!(verdict.allowed);
    assert_eq!(verdict.patch, Some(patch.clone()));
    assert_eq!(verdict.warnings, vec!["careful".to_string()]);

    assert!(matches!(
        parse_response(&response(json!({"uid": "other", "allowed": true})), "u"),
        Err(ResponseError::Uid { .. })
    ));
    assert!(matches!(
        parse_response(&response(json!({"uid": "u", "allowed": true, "patch": encoded})), "u"),
        Err(ResponseError::PatchType(_))
    ));
    assert_eq!(
        parse_response(b"{}", "u").unwrap_err().to_string(),
        "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got , Kind="
    );
    assert!(matches!(
        parse_response(
            &serde_json::to_vec(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
            )
            .unwrap(),
            "u"
        ),
        Err(ResponseError::Absent)
    ));

    let mut object = json!({"metadata": {"name": "cm"}});
    assert!(apply_patch("h", &patch, Some(&mut object)).unwrap());
    assert_eq!(object["metadata"]["labels"]["a"], "b");
    assert!(!apply_patch("h", &json!([]), None).unwrap());
    assert_eq!(apply_patch("h", &patch, None).unwrap_err().code(), 500);
}

#[test]
fn refusals_are_worded_as_upstream() {
    let e = denied(
        "deny.example.com",
        Some(&json!({"message": "name is taken", "code": 403, "reason": "Forbidden"})),
    );
    assert_eq!(
        e.message,
        "admission webhook \"deny.example.com\" denied the request: name is taken"
    );
    assert_eq!((e.code(), e.reason.as_str()), (403, "Forbidden"));
    let e = denied("h", Some(&json!({"code": 200})));
    assert_eq!(e.message, "admission webhook \"h\" denied the request without explanation");
    assert_eq!(e.code(), 400);
    assert_eq!(denied("h", None).code(), 400);
    assert_eq!(
        call_failed("h", "connection refused").message,
        "Internal error occurred: failed calling webhook \"h\": connection refused"
    );
    assert_eq!(
        dry_run_unsupported("h").message,
        "admission webhook \"h\" does not support dry run"
    );
}
