//! The CertificateSigningRequest cleaner (upstream's `csrcleaner`, under the
//! `certificate-controller` account): deletes each request when `deadline.rs` says it has
//! served its purpose, woken by the request's changes and again at its deadline.

pub mod deadline;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use krust_client::Informer;

/// The account the cleaner writes as (upstream runs it as the certificate controller).
pub const NAME: &str = "certificate-controller";

/// Runs the cleaner over the CertificateSigningRequest cache it is given, writing as `client`.
pub fn run(
    client: Client,
    requests: &mut Informer<CertificateSigningRequest>,
) -> impl Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(requests.subscribe(), requests.store())
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &kube::Error,
    _: Arc<Client>,
) -> Action {
    tracing::debug!(csr = %csr.name_any(), error = %error, "csr cleanup failed");
    Action::requeue(Duration::from_secs(30))
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    client: Arc<Client>,
) -> Result<Action, kube::Error> {
    let Some(at) = deadline::expires_at(&csr) else { return Ok(Action::await_change()) };
    let now = Timestamp::now();
    if at > now {
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        return Ok(Action::requeue(wait + Duration::from_secs(1)));
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: csr.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api: Api<CertificateSigningRequest> = Api::all((*client).clone());
    match api.delete(&csr.name_any(), &params).await {
        Ok(_) => tracing::info!(csr = %csr.name_any(), "cleaned up a certificate signing request"),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}
