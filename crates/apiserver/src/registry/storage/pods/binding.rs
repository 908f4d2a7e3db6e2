//! `pods/binding` and the legacy `bindings`: what a scheduler posts to put a pod on a node,
//! as upstream's `BindingREST` (`pkg/registry/core/pod/storage/storage.go`).
//!
//! The pod's `spec.nodeName` is set once: a pod already assigned, or being deleted, is a
//! conflict. The binding's annotations are copied onto the pod and its `PodScheduled`
//! condition becomes `True`. A binding's `metadata.uid`, when given, must be the pod's.

use async_trait::async_trait;
use chrono::Utc;
use krust_api::StatusError;
use serde_json::{Value, json};

use crate::registry::storage::{SubresourceHandler, SubresourceRequest, success};
use crate::registry::{Registry, timestamp};

/// The binding handler.
pub struct Binding;

/// A conflict on `pods/binding`, worded as upstream's.
fn conflict(name: &str, why: &str) -> StatusError {
    StatusError::conflict("", "pods/binding", name, why)
}

/// Binds `pod` (served) to `node`, as upstream's `setPodNodeAndMetadata`.
pub fn bind(pod: &mut Value, binding: &Value, node: &str, now: &str) -> Result<(), StatusError> {
    let name =
        pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(conflict(
            &name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(uid) =
        binding.pointer("/metadata/uid").and_then(Value::as_str).filter(|u| !u.is_empty())
        && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
    {
        return Err(conflict(
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
            ),
        ));
    }
    if let Some(current) =
        pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
    {
        return Err(conflict(
            &name,
            &format!("pod {name} is already assigned to node {current:?}"),
        ));
    }
    pod["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding.pointer("/metadata/annotations").and_then(Value::as_object)
        && !annotations.is_empty()
    {
        let meta = krust_api::object::metadata_mut(pod);
        let target = meta.entry("annotations").or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        if let Some(target) = target.as_object_mut() {
            for (k, v) in annotations {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(conditions) = status["conditions"].as_array_mut() {
        match conditions
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        {
            Some(c) => *c = scheduled,
            None => conditions.push(scheduled),
        }
    }
    Ok(())
}

#[async_trait]
impl SubresourceHandler for Binding {
    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn handle(
        &self,
        registry: &Registry,
        request: SubresourceRequest<'_>,
    ) -> Result<(u16, Value), StatusError> {
        let binding = request.body;
        let given = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let name = if request.name.is_empty() { given } else { request.name };
        if !request.name.is_empty() && !given.is_empty() && given != request.name {
            return Err(StatusError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let kind = binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or_default();
        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default();
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(krust_api::validation::FieldError::required("metadata.name"));
        }
        if !kind.is_empty() && kind != "Node" {
            errors.push(krust_api::validation::FieldError::not_supported(
                "target.kind",
                json!(kind),
                &["Node", "<empty>"],
            ));
        }
        if node.is_empty() {
            errors.push(krust_api::validation::FieldError::required("target.name"));
        }
        if !errors.is_empty() {
            return Err(StatusError::invalid("", "Binding", name, &errors));
        }
        let pods = registry
            .catalog()
            .lookup("", "v1", "pods")
            .ok_or_else(|| StatusError::internal("pods are not served"))?;
        let now = timestamp(Utc::now());
        registry
            .modify(&pods, request.namespace, name, request.dry_run, |pod| {
                bind(pod, &binding, node, &now)
            })
            .await?;
        Ok((201, success(201)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pod_is_bound_once_and_never_while_being_deleted() {
        let binding = json!({"metadata": {"name": "web", "annotations": {"a": "b"}}, "target": {"name": "n1"}});
        let mut pod = json!({"metadata": {"name": "web", "uid": "u"}, "spec": {}, "status": {"phase": "Pending"}});
        bind(&mut pod, &binding, "n1", "now").unwrap();
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(pod["metadata"]["annotations"]["a"], "b");
        assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(pod["status"]["conditions"][0]["status"], "True");
        let again = bind(&mut pod, &binding, "n2", "now").unwrap_err();
        assert_eq!(again.code(), 409);
        assert!(
            again.message.ends_with(r#"pod web is already assigned to node "n1""#),
            "{}",
            again.message
        );
        let mut deleting = json!({"metadata": {"name": "x", "deletionTimestamp": "t"}, "spec": {}});
        assert_eq!(bind(&mut deleting, &binding, "n1", "now").unwrap_err().code(), 409);
        let mut other = json!({"metadata": {"name": "web", "uid": "v"}, "spec": {}});
        let wrong_uid = json!({"metadata": {"uid": "u"}, "target": {"name": "n1"}});
        assert_eq!(bind(&mut other, &wrong_uid, "n1", "now").unwrap_err().code(), 409);
    }
}
