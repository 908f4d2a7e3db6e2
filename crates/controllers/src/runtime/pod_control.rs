//! The writes a workload controller makes to pods, behind a small trait so that a test can
//! count them ("3 creates, 0 deletes") without a server.

use std::future::Future;

use super::owner::owners_patch;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};

/// Creates, deletes and re-parents pods.
pub trait PodControl: Send + Sync {
    /// Creates `pod` in `namespace`; answers it as created (with its generated name).
    fn create(
        &self,
        namespace: &str,
        pod: &Pod,
    ) -> impl Future<Output = Result<Pod, kube::Error>> + Send;

    /// Deletes the pod `name`, if it still has `uid`.
    fn delete(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;

    /// Sets the owner references of `pod` to `owners`, if it is still the pod as cached (same
    /// uid and resourceVersion: a concurrent adoption or cut-off makes it fail).
    fn set_owners(
        &self,
        pod: &Pod,
        owners: &[OwnerReference],
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// Pod writes through the API.
#[derive(Clone)]
pub struct ApiPodControl {
    client: Client,
}

impl ApiPodControl {
    /// Writes as `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client it writes as.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl PodControl for ApiPodControl {
    async fn create(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), pod)
            .await
    }

    async fn delete(&self, namespace: &str, name: &str, uid: &str) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match Api::<Pod>::namespaced(self.client.clone(), namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_owners(&self, pod: &Pod, owners: &[OwnerReference]) -> Result<(), kube::Error> {
        let meta = &pod.metadata;
        let patch = owners_patch(meta, owners);
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        match Api::<Pod>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
