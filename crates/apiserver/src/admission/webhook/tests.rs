//! The dispatcher against real HTTPS webhooks on loopback, with a CA made for the test.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use krust_admission::Operation;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::net::TcpListener;

use super::*;
use crate::admission::Admission;

/// The objects of the test's cluster, by resource.
#[derive(Default)]
struct View(HashMap<&'static str, Vec<Value>>);

impl ClusterView for View {
    fn get_json(&self, _: &str, resource: &str, _: &str, name: &str) -> Option<bytes::Bytes> {
        let object = self.0.get(resource)?.iter().find(|o| o["metadata"]["name"] == name)?;
        Some(serde_json::to_vec(object).unwrap().into())
    }
    fn list_json(&self, _: &str, resource: &str, _: &str) -> Vec<bytes::Bytes> {
        let objects = self.0.get(resource).map(Vec::as_slice).unwrap_or_default();
        objects.iter().map(|o| serde_json::to_vec(o).unwrap().into()).collect()
    }
}

/// A CA's PEM and a serving configuration for 127.0.0.1 signed by it.
fn certificates() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_pem, config)
}

type Handler = Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>;

/// Serves webhooks on loopback: `handler(path, request)` answers the AdmissionReview's
/// `response` (its `uid` is filled in). Returns the base URL and the CA bundle.
async fn serve(handler: Handler) -> (String, String) {
    let (ca, config) = certificates();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let mut response = handler(&path, &review["request"]);
                        response["uid"] = review["request"]["uid"].clone();
                        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            answer.to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{address}"), ca)
}

fn hook(name: &str, url: &str, ca: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        hook[k] = v.clone();
    }
    hook
}

fn configuration(name: &str, hooks: Vec<Value>) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": "1"}, "webhooks": hooks})
}

fn attributes(dry_run: bool) -> Attributes<'static> {
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
        dry_run,
    }
}

fn patch(ops: Value) -> Value {
    json!({"allowed": true, "patchType": "JSONPatch", "patch": base64::engine::general_purpose::STANDARD.encode(ops.to_string())})
}

#[tokio::test]
async fn a_mutating_webhook_patches_the_object() {
    let (url, ca) = serve(Arc::new(|_, _| {
        patch(json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]))
    }))
    .await;
    let mut view = View::default();
    view.0.insert(
        MUTATING,
        vec![configuration(
            "m",
            vec![hook("label.example.com", &format!("{url}/mutate"), &ca, json!({}))],
        )],
    );
    let admission = Admission::default();
    let mut object = json!({"metadata": {"name": "cm"}});
    admission.mutate(&attributes(false), Some(&mut object), None, &view).await.unwrap();
    assert_eq!(object["metadata"]["labels"]["mutated"], "yes");
}

#[tokio::test]
async fn a_validating_webhook_refuses_with_upstreams_message() {
    let (url, ca) = serve(Arc::new(|_, request| {
        if request["name"] == "forbidden" {
            json!({"allowed": false, "status": {"code": 403, "message": "the name forbidden is not allowed"}})
        } else {
            json!({"allowed": true})
        }
    }))
    .await;
    let mut view = View::default();
    view.0.insert(
        VALIDATING,
        vec![configuration("v", vec![hook("deny.example.com", &url, &ca, json!({}))])],
    );
    let admission = Admission::default();
    let object = json!({"metadata": {"name": "cm"}});
    admission.validate(&attributes(false), Some(&object), None, &view).await.unwrap();
    let mut attrs = attributes(false);
    attrs.name = "forbidden";
    let e = admission.validate(&attrs, Some(&object), None, &view).await.unwrap_err();
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.message,
        "admission webhook \"deny.example.com\" denied the request: the name forbidden is not allowed"
    );
}

#[tokio::test]
async fn failed_calls_follow_the_failure_policy() {
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (_, ca) = serve(Arc::new(|_, _| json!({"allowed": true}))).await;
    let url = format!("https://{closed}/");
    let object = json!({"metadata": {"name": "cm"}});
    let admission = Admission::default();

    let mut view = View::default();
    view.0.insert(
        VALIDATING,
        vec![configuration(
            "v",
            vec![hook("down.example.com", &url, &ca, json!({"failurePolicy": "Ignore"}))],
        )],
    );
    admission.validate(&attributes(false), Some(&object), None, &view).await.unwrap();

    view.0.insert(
        VALIDATING,
        vec![configuration("v", vec![hook("down.example.com", &url, &ca, json!({}))])],
    );
    view.0.get_mut(VALIDATING).unwrap()[0]["metadata"]["resourceVersion"] = json!("2");
    let e = admission.validate(&attributes(false), Some(&object), None, &view).await.unwrap_err();
    assert_eq!(e.code(), 500);
    assert!(
        e.message.starts_with(
            "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: Post"
        ),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_webhook_with_another_ca_is_not_trusted() {
    let (url, _) = serve(Arc::new(|_, _| json!({"allowed": true}))).await;
    let (other_ca, _) = certificates();
    let mut view = View::default();
    view.0
        .insert(VALIDATING, vec![configuration("v", vec![hook("h", &url, &other_ca, json!({}))])]);
    let object = json!({"metadata": {"name": "cm"}});
    let e = Admission::default()
        .validate(&attributes(false), Some(&object), None, &view)
        .await
        .unwrap_err();
    assert!(e.message.contains("tls"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_times_out() {
    let (url, ca) = serve(Arc::new(|_, _| {
        // Well past the 1 s timeout, so that a loaded machine cannot blur the two.
        std::thread::sleep(Duration::from_millis(4000));
        json!({"allowed": true})
    }))
    .await;
    let mut view = View::default();
    view.0.insert(
        VALIDATING,
        vec![configuration("v", vec![hook("slow", &url, &ca, json!({"timeoutSeconds": 1}))])],
    );
    let object = json!({"metadata": {"name": "cm"}});
    let e = Admission::default()
        .validate(&attributes(false), Some(&object), None, &view)
        .await
        .unwrap_err();
    assert!(e.message.ends_with("context deadline exceeded"), "{}", e.message);
}

#[tokio::test]
async fn dry_runs_skip_nothing_and_refuse_side_effects() {
    let (url, ca) = serve(Arc::new(|_, _| json!({"allowed": true}))).await;
    let mut view = View::default();
    view.0.insert(
        VALIDATING,
        vec![configuration("v", vec![hook("effects", &url, &ca, json!({"sideEffects": "Some"}))])],
    );
    let object = json!({"metadata": {"name": "cm"}});
    let admission = Admission::default();
    admission.validate(&attributes(false), Some(&object), None, &view).await.unwrap();
    let e = admission.validate(&attributes(true), Some(&object), None, &view).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message.as_str()),
        (400, "admission webhook \"effects\" does not support dry run")
    );
}

#[tokio::test]
async fn if_needed_webhooks_run_again_after_a_later_change() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let (url, ca) = serve(Arc::new(move |path, request| {
        let labels = &request["object"]["metadata"]["labels"];
        match path {
            "/first" => {
                counted.fetch_add(1, Ordering::SeqCst);
                json!({"allowed": true})
            }
            _ if labels.get("second").is_none() => patch(json!([
                {"op": "add", "path": "/metadata/labels", "value": {"second": "yes"}}
            ])),
            _ => json!({"allowed": true}),
        }
    }))
    .await;
    let mut view = View::default();
    view.0.insert(
        MUTATING,
        vec![
            configuration(
                "a",
                vec![hook(
                    "first",
                    &format!("{url}/first"),
                    &ca,
                    json!({"reinvocationPolicy": "IfNeeded"}),
                )],
            ),
            configuration("b", vec![hook("second", &format!("{url}/second"), &ca, json!({}))]),
        ],
    );
    let mut object = json!({"metadata": {"name": "cm"}});
    Admission::default().mutate(&attributes(false), Some(&mut object), None, &view).await.unwrap();
    assert_eq!(object["metadata"]["labels"]["second"], "yes");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_policy_refuses_through_its_binding() {
    let mut view = View::default();
    view.0.insert(
        "validatingadmissionpolicies",
        vec![json!({"metadata": {"name": "max-replicas", "resourceVersion": "1"}, "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 5"}],
        }})],
    );
    view.0.insert(
        "validatingadmissionpolicybindings",
        vec![
            json!({"metadata": {"name": "max-replicas-binding", "resourceVersion": "1"}, "spec": {
                "policyName": "max-replicas", "validationActions": ["Deny"],
            }}),
        ],
    );
    view.0.insert("namespaces", vec![json!({"metadata": {"name": "default"}})]);
    let attrs = Attributes {
        group: "apps",
        kind: "Deployment",
        resource: "deployments",
        namespace: "default",
        name: "web",
        ..attributes(false)
    };
    let admission = Admission::default();
    let six = json!({"metadata": {"name": "web"}, "spec": {"replicas": 6}});
    let e = admission.validate(&attrs, Some(&six), None, &view).await.unwrap_err();
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.message,
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: object.spec.replicas <= 5"
    );
    let five = json!({"metadata": {"name": "web"}, "spec": {"replicas": 5}});
    admission.validate(&attrs, Some(&five), None, &view).await.unwrap();
}

/// The stage runs inside request handlers, which are spawned: its futures must be `Send`.
#[allow(dead_code)]
fn the_stage_is_send(admission: &Admission, view: &View) {
    fn send<T: Send>(_: T) {}
    let attrs = attributes(false);
    send(admission.validate(&attrs, None, None, view));
    send(admission.mutate(&attrs, None, None, view));
}
