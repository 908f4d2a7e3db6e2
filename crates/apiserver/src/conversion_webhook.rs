//! The `Webhook` conversion of custom resources, as upstream apiextensions-apiserver's
//! `webhookConverter`: objects travel to the definition's webhook in a `ConversionReview`
//! (one per object read or written, one per batch of a list), and what comes back is checked
//! before it is served or stored.
//!
//! The catalog's [`Conversion`] is synchronous (it runs where objects are encoded, listed and
//! watched); the HTTPS call runs on the server's runtime with the calling worker handed over
//! to blocking work meanwhile ([`tokio::task::block_in_place`]), or on a thread of its own
//! outside a multi-threaded runtime.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion;
use krust_admission::webhook::Endpoint;
use krust_api::Catalog;
use krust_api::catalog::{Conversion, ConversionError};
use serde_json::{Map, Value, json};

use crate::admission::CacheView;
use crate::admission::webhook::Client;
use crate::watchcache::WatchCache;

/// How long a conversion webhook may take (upstream's default for conversion webhooks).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a definition's conversion webhook is and how it is spoken to.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    endpoint: Option<Endpoint>,
    ca_bundle: Vec<u8>,
    /// The `ConversionReview` version sent: `v1` when the webhook takes it, else `v1beta1`.
    review_version: &'static str,
}

impl WebhookConfig {
    /// The webhook of a definition whose `spec.conversion.strategy` is `Webhook`; `None` for
    /// other strategies.
    pub fn of_definition(definition: &Value) -> Option<Self> {
        let conversion: CustomResourceConversion =
            serde_json::from_value(definition.pointer("/spec/conversion")?.clone()).ok()?;
        if conversion.strategy != "Webhook" {
            return None;
        }
        let webhook = conversion.webhook.unwrap_or_default();
        let client = webhook.client_config.unwrap_or_default();
        let endpoint = match (client.url, client.service) {
            (Some(url), _) => Some(Endpoint::Url(url)),
            (None, Some(service)) => Some(Endpoint::Service {
                namespace: service.namespace,
                name: service.name,
                path: service.path.unwrap_or_else(|| "/".into()),
                port: service.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
            }),
            (None, None) => None,
        };
        let review_version = if webhook.conversion_review_versions.iter().any(|v| v == "v1") {
            "v1"
        } else {
            "v1beta1"
        };
        Some(Self {
            endpoint,
            ca_bundle: client.ca_bundle.map(|b| b.0).unwrap_or_default(),
            review_version,
        })
    }
}

/// What a webhook conversion needs from the server: the HTTPS client, and the cluster to find
/// a webhook Service's endpoints in. Held weakly: the catalog that holds the conversion is the
/// server's.
#[derive(Clone)]
pub struct WebhookContext {
    /// The client that posts reviews.
    pub client: Arc<Client>,
    /// The watch cache (Services and Endpoints).
    pub cache: Weak<WatchCache>,
    /// The catalog the cache's resources are found in.
    pub catalog: Weak<Catalog>,
}

/// The conversion of one served version of a custom resource to and from its storage version,
/// through the definition's webhook.
pub struct WebhookConversion {
    served: String,
    stored: String,
    config: WebhookConfig,
    context: WebhookContext,
}

impl WebhookConversion {
    /// The conversion between `served` and `stored` (both `group/version`).
    pub fn new(
        served: String,
        stored: String,
        config: WebhookConfig,
        context: WebhookContext,
    ) -> Self {
        Self { served, stored, config, context }
    }

    /// Converts `objects` to `desired`; objects already in it are not sent.
    fn convert(
        &self,
        mut objects: Vec<Value>,
        desired: &str,
    ) -> Result<Vec<Value>, ConversionError> {
        let pending: Vec<usize> =
            (0..objects.len()).filter(|&i| api_version(&objects[i]) != desired).collect();
        let Some(&first) = pending.first() else { return Ok(objects) };
        let gvk = gvk_text(&objects[first]);
        let fail = |reason: String| {
            ConversionError(format!("conversion webhook for {gvk} failed: {reason}"))
        };
        let uid = uuid::Uuid::new_v4().to_string();
        let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
        let review = json!({
            "apiVersion": format!("apiextensions.k8s.io/{}", self.config.review_version),
            "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": sent},
        });
        let body = self.post(&review).map_err(fail)?;
        let converted = converted_objects(&body, &uid, self.config.review_version).map_err(fail)?;
        if converted.len() != pending.len() {
            return Err(ConversionError(format!(
                "conversion webhook for {gvk} returned {} objects, expected {}",
                converted.len(),
                pending.len()
            )));
        }
        for (index, (&i, converted)) in pending.iter().zip(converted).enumerate() {
            objects[i] = checked(&objects[i], converted, desired).map_err(|reason| {
                ConversionError(format!(
                    "conversion webhook for {gvk} returned invalid converted object at index {index}: {reason}"
                ))
            })?;
        }
        Ok(objects)
    }

    /// Posts `review` and answers the response's body.
    fn post(&self, review: &Value) -> Result<Vec<u8>, String> {
        let (Some(cache), Some(catalog)) =
            (self.context.cache.upgrade(), self.context.catalog.upgrade())
        else {
            return Err("the server is shutting down".into());
        };
        let client = Arc::clone(&self.context.client);
        let config = &self.config;
        block_on(async move {
            let view = CacheView::new(&cache, &catalog);
            client
                .post(config.endpoint.as_ref(), &config.ca_bundle, TIMEOUT, review, &view)
                .await
                .map_err(|e| e.to_string())
        })?
    }
}

impl Conversion for WebhookConversion {
    fn to_stored(&self, obj: Value) -> Result<Value, ConversionError> {
        let mut objects = self.convert(vec![obj], &self.stored)?;
        Ok(objects.pop().unwrap_or_default())
    }

    fn to_served(&self, obj: Value) -> Result<Value, ConversionError> {
        let mut objects = self.convert(vec![obj], &self.served)?;
        Ok(objects.pop().unwrap_or_default())
    }

    fn to_served_all(&self, objects: Vec<Value>) -> Result<Vec<Value>, ConversionError> {
        self.convert(objects, &self.served)
    }
}

/// Runs `future` to its end from synchronous code inside or outside the runtime.
fn block_on<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| handle.block_on(future)))
        }
        _ => std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(runtime.block_on(future))
            });
            thread.join().map_err(|_| "the conversion thread panicked".to_string())?
        }),
    }
}

fn api_version(obj: &Value) -> &str {
    obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default()
}

/// An object's group, version and kind as upstream prints them: `g/v, Kind=K`.
fn gvk_text(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    format!("{}, Kind={kind}", api_version(obj))
}

/// The converted objects of a webhook's `ConversionReview`, as upstream's
/// `getConvertedObjectsFromResponse` checks them.
fn converted_objects(body: &[u8], uid: &str, review_version: &str) -> Result<Vec<Value>, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid ConversionReview: {e}"))?;
    let expected = format!("apiextensions.k8s.io/{review_version}, Kind=ConversionReview");
    if gvk_text(&review) != expected {
        return Err(format!("expected webhook response of {expected}, got {}", gvk_text(&review)));
    }
    let Some(response) = review.get("response").filter(|r| r.is_object()) else {
        return Err("no response provided".into());
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let result = response.get("result");
    let status = result.and_then(|r| r.get("status")).and_then(Value::as_str).unwrap_or_default();
    if status != "Success" {
        let message = result.and_then(|r| r.get("message")).and_then(Value::as_str);
        return Err(match message.filter(|m| !m.is_empty()) {
            Some(message) => message.to_string(),
            None => format!("response.result.status was '{status}', not 'Success'"),
        });
    }
    Ok(response.get("convertedObjects").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// A converted object checked against its original, with the original's metadata but for the
/// labels and annotations the webhook may change (upstream's `validateConvertedObject` and
/// `restoreObjectMeta`).
fn checked(original: &Value, mut converted: Value, desired: &str) -> Result<Value, String> {
    let Some(map) = converted.as_object_mut() else {
        return Err("converted object is not a JSON object".into());
    };
    let got = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if got != desired {
        return Err(format!("invalid groupVersion (expected {desired}, received {got})"));
    }
    let kind = original.get("kind").and_then(Value::as_str).unwrap_or_default();
    let got = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if got != kind {
        return Err(format!("invalid kind (expected {kind}, received {got})"));
    }
    let before = original.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let after = map.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    for field in ["name", "namespace", "uid"] {
        let (was, is) = (text(&before, field), text(&after, field));
        if was != is {
            return Err(format!("must have the same {field}: {was:?} != {is:?}"));
        }
    }
    let mut metadata = before;
    for field in ["labels", "annotations"] {
        match after.get(field) {
            Some(Value::Object(values)) => {
                if let Some((key, _)) = values.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!(
                        "invalid metadata.{field}: value of {key:?} is not a string"
                    ));
                }
                metadata.insert(field.into(), Value::Object(values.clone()));
            }
            None | Some(Value::Null) => {
                metadata.remove(field);
            }
            Some(_) => return Err(format!("invalid metadata.{field}: not a map")),
        }
    }
    map.insert("metadata".into(), Value::Object(metadata));
    Ok(converted)
}

fn text<'a>(metadata: &'a Map<String, Value>, field: &str) -> &'a str {
    metadata.get(field).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn original() -> Value {
        json!({
            "apiVersion": "example.com/v1beta1",
            "kind": "Widget",
            "metadata": {"name": "a", "namespace": "default", "uid": "u1",
                         "resourceVersion": "7", "labels": {"x": "1"}},
            "spec": {"hostPort": "h:1"},
        })
    }

    fn response(uid: &str, objects: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "response": {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objects},
        }))
        .unwrap()
    }

    #[test]
    fn a_response_is_read_for_its_uid_only() {
        let body = response("u", json!([{"a": 1}]));
        assert_eq!(converted_objects(&body, "u", "v1").unwrap(), vec![json!({"a": 1})]);
        let err = converted_objects(&body, "other", "v1").unwrap_err();
        assert_eq!(err, r#"expected response.uid="other", got "u""#);
        let err = converted_objects(&body, "u", "v1beta1").unwrap_err();
        assert!(
            err.starts_with("expected webhook response of apiextensions.k8s.io/v1beta1"),
            "{err}"
        );
    }

    #[test]
    fn a_failure_result_carries_the_webhook_message() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "response": {"uid": "u", "result": {"status": "Failure", "message": "no way"}},
        }))
        .unwrap();
        assert_eq!(converted_objects(&body, "u", "v1").unwrap_err(), "no way");
        assert_eq!(
            converted_objects(b"{", "u", "v1").unwrap_err().split(':').next(),
            Some("invalid ConversionReview")
        );
    }

    #[test]
    fn converted_objects_keep_the_original_metadata_but_labels_and_annotations() {
        let converted = json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "a", "namespace": "default", "uid": "u1",
                         "resourceVersion": "999", "labels": {"y": "2"}, "annotations": {"n": "m"}},
            "spec": {"host": "h", "port": 1},
        });
        let out = checked(&original(), converted, "example.com/v1").unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(out["metadata"]["annotations"], json!({"n": "m"}));
        assert_eq!(out["spec"], json!({"host": "h", "port": 1}));
    }

    #[test]
    fn converted_objects_must_keep_version_kind_and_name() {
        let mut converted = original();
        let err = checked(&original(), converted.clone(), "example.com/v1").unwrap_err();
        assert_eq!(
            err,
            "invalid groupVersion (expected example.com/v1, received example.com/v1beta1)"
        );
        converted["apiVersion"] = json!("example.com/v1");
        converted["kind"] = json!("Gadget");
        let err = checked(&original(), converted.clone(), "example.com/v1").unwrap_err();
        assert_eq!(err, "invalid kind (expected Widget, received Gadget)");
        converted["kind"] = json!("Widget");
        converted["metadata"]["name"] = json!("b");
        let err = checked(&original(), converted, "example.com/v1").unwrap_err();
        assert_eq!(err, r#"must have the same name: "a" != "b""#);
    }

    #[test]
    fn objects_already_in_the_desired_version_are_not_sent() {
        let context = WebhookContext {
            client: Arc::new(Client::default()),
            cache: Weak::new(),
            catalog: Weak::new(),
        };
        let config = WebhookConfig { endpoint: None, ca_bundle: Vec::new(), review_version: "v1" };
        let conversion = WebhookConversion::new(
            "example.com/v1beta1".into(),
            "example.com/v1".into(),
            config,
            context,
        );
        let stored = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
        assert_eq!(conversion.to_stored(stored.clone()).unwrap(), stored);
        // Another version needs the webhook, which cannot be reached here.
        let err = conversion.to_served(stored).unwrap_err();
        assert!(
            err.0.starts_with("conversion webhook for example.com/v1, Kind=Widget failed:"),
            "{err}"
        );
    }

    #[test]
    fn a_definition_names_its_webhook() {
        let definition = json!({"spec": {"conversion": {
            "strategy": "Webhook",
            "webhook": {
                "conversionReviewVersions": ["v1beta1"],
                "clientConfig": {"service": {"namespace": "ns", "name": "conv", "path": "/convert"}},
            },
        }}});
        let config = WebhookConfig::of_definition(&definition).unwrap();
        assert_eq!(config.review_version, "v1beta1");
        assert!(matches!(
            config.endpoint,
            Some(Endpoint::Service { ref name, port: 443, ref path, .. }) if name == "conv" && path == "/convert"
        ));
        let none = json!({"spec": {"conversion": {"strategy": "None"}}});
        assert!(WebhookConfig::of_definition(&none).is_none());
    }
}
