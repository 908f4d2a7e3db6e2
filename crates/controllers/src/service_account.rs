//! The service account controller (upstream's `serviceaccount-controller`): every active
//! namespace has a `default` ServiceAccount, made again if it is deleted. Pods need it: the
//! ServiceAccount admission refuses a pod whose account is missing.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use krust_client::{Informer, informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "service-account-controller";

/// The account every namespace has.
pub const DEFAULT: &str = "default";

/// Whether a namespace takes new objects (not being deleted).
pub fn active(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// The account to create in `namespace`, if it lacks one.
pub fn missing(namespace: &Namespace, existing: Option<&ServiceAccount>) -> Option<ServiceAccount> {
    if !active(namespace) || existing.is_some() {
        return None;
    }
    Some(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.to_string()),
            namespace: namespace.metadata.name.clone(),
            ..Default::default()
        },
        ..Default::default()
    })
}

struct Context {
    client: Client,
    accounts: Store<ServiceAccount>,
}

/// Runs the controller: woken by the shared namespace cache and by the `default` accounts
/// (read with `root`), writing as `client`.
pub fn run(
    root: Client,
    client: Client,
    namespaces: &mut Informer<Namespace>,
) -> impl Future<Output = ()> + Send + 'static {
    let (accounts, changed) = informer::named(Api::<ServiceAccount>::all(root), DEFAULT);
    Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_stream(changed, |sa| sa.namespace().map(|ns| ObjectRef::new(&ns)))
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(Context { client, accounts }))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(namespace: Arc<Namespace>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = %namespace.name_any(), error = %error, "cannot make the default service account");
    Action::requeue(std::time::Duration::from_secs(5))
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let name = namespace.name_any();
    krust_client::informer::ready(&ctx.accounts).await;
    let existing = ctx.accounts.get(&ObjectRef::new(DEFAULT).within(&name));
    let Some(account) = missing(&namespace, existing.as_deref()) else {
        return Ok(Action::await_change());
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(Action::await_change()),
        // Made meanwhile, or the namespace went away or began terminating.
        Err(kube::Error::Api(s))
            if s.is_already_exists() || s.is_not_found() || s.is_forbidden() =>
        {
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn an_active_namespace_without_an_account_gets_one() {
        let made = missing(&namespace("a"), None).expect("an account");
        assert_eq!(made.metadata.name.as_deref(), Some("default"));
        assert_eq!(made.metadata.namespace.as_deref(), Some("a"));
        assert!(missing(&namespace("a"), Some(&made)).is_none());
    }

    #[test]
    fn a_terminating_namespace_gets_none() {
        let mut ns = namespace("a");
        ns.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(missing(&ns, None).is_none());
    }
}
