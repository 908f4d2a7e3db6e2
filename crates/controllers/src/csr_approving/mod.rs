//! The approver of node agents' serving certificates (part of upstream's `csrapproving`
//! controller, under the `certificate-controller` account): each pending
//! `kubernetes.io/kubelet-serving` request that `decide.rs` finds to be a node's own is
//! approved; the signer then issues it. Woken by requests and by changes of their nodes
//! (a request made before its node registered is approved once it has).

pub mod decide;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use decide::Decision;
use krust_client::Informer;

/// The account the approver writes as (upstream runs it as the certificate controller).
pub const NAME: &str = "certificate-controller";

struct Context {
    client: Client,
    nodes: Store<Node>,
}

/// Runs the approver over the request and node caches it is given, writing as `client`.
pub fn run(
    client: Client,
    requests: &mut Informer<CertificateSigningRequest>,
    nodes: &mut Informer<Node>,
) -> impl Future<Output = ()> + Send + 'static {
    let pending = requests.store();
    let context = Arc::new(Context { client, nodes: nodes.store() });
    Controller::for_shared_stream(requests.subscribe(), requests.store())
        .watches_shared_stream(nodes.subscribe(), move |node: Arc<Node>| {
            let name = node.name_any();
            pending
                .state()
                .into_iter()
                .filter(|csr| {
                    decide::node_of(csr) == Some(name.as_str()) && !decide::is_decided(csr)
                })
                .map(|csr| ObjectRef::from_obj(&*csr))
                .collect::<Vec<_>>()
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, context)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &kube::Error,
    _: Arc<Context>,
) -> Action {
    tracing::warn!(csr = %csr.name_any(), error = %error, "cannot approve a certificate signing request");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    context: Arc<Context>,
) -> Result<Action, kube::Error> {
    // Decided requests (most, once their nodes run) cost neither a parse nor a node list.
    if decide::node_of(&csr).is_none() || decide::is_decided(&csr) {
        return Ok(Action::await_change());
    }
    let requested = decide::read(&csr.spec.request.0);
    let name = decide::node_of(&csr);
    let node = name.and_then(|name| context.nodes.get(&ObjectRef::new(name)));
    let nodes = if node.is_some() { context.nodes.state() } else { Vec::new() };
    let others = nodes.iter().map(|n| &**n).filter(|n| n.metadata.name.as_deref() != name);
    match decide::decide(&csr, requested.as_ref().ok(), node.as_deref(), others) {
        Decision::NotOurs => {}
        Decision::Leave(reason) => {
            tracing::debug!(csr = %csr.name_any(), %reason, "left a serving certificate request pending");
        }
        Decision::Approve => {
            // An update of the object as read: a request denied meanwhile conflicts, and is
            // not approved over its denial.
            let mut approved = (*csr).clone();
            let status = approved.status.get_or_insert_with(Default::default);
            status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(
                    "Auto approving the node's serving certificate: it names only the node's own names and addresses."
                        .into(),
                ),
                last_update_time: Some(Time(jiff::Timestamp::now())),
                ..CertificateSigningRequestCondition::default()
            });
            let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
            match api
                .replace_subresource("approval", &csr.name_any(), &PostParams::default(), &approved)
                .await
            {
                Ok(_) => {
                    tracing::info!(csr = %csr.name_any(), "approved a node's serving certificate")
                }
                Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Action::await_change())
}
