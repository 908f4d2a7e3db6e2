//! DefaultBinder: binds a pod through the `pods/binding` subresource, as upstream's default
//! Bind plugin. It is the last Bind plugin of a profile, so it binds what no other did.

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::framework::{BindError, BindFuture, Bound, CycleState, Plugin, PodInfo, Points};

/// The plugin's name.
pub const NAME: &str = "DefaultBinder";

/// Posts a `Binding` of the pod to the node.
pub struct DefaultBinder;

/// The `Binding` of `pod` to `node`, with the pod's uid so that a pod deleted and made again
/// under the same name is not bound in its place.
pub fn binding(pod: &Pod, node: &str) -> serde_json::Value {
    let meta = &pod.metadata;
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    })
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::BIND
    }

    fn bind<'a>(
        &'a self,
        client: &'a Client,
        _state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BindFuture<'a, Bound> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(client.clone(), pod.namespace());
            let name = pod.pod.metadata.name.as_deref().unwrap_or_default();
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding(&pod.pod, node),
                )
                .await;
            match result {
                Ok(_) => Bound::Done,
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    Bound::Failed(BindError::PodGone)
                }
                Err(e) => Bound::Failed(BindError::Api(describe(&e))),
            }
        })
    }
}

/// An API error as upstream's events word it: the Status message alone.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::pod;

    #[test]
    fn a_binding_names_the_pod_by_uid_and_the_node() {
        let mut p = pod(serde_json::json!({}));
        p.metadata.uid = Some("u1".into());
        let b = binding(&p, "n1");
        assert_eq!(b["kind"], "Binding");
        assert_eq!(b["metadata"]["uid"], "u1");
        assert_eq!(
            b["target"],
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": "n1"})
        );
    }
}
