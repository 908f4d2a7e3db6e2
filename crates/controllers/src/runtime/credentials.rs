//! One client per controller, each acting as its own service account, as upstream's
//! `--use-service-account-credentials`: the controller manager's own credential only makes
//! the `kube-system` service account `NAME` and asks for its tokens (TokenRequest); the
//! controller's writes then carry that token, so RBAC sees `system:serviceaccount:kube-system:NAME`
//! with the `system:controller:NAME` role and nothing more. The clients differ only in that
//! header: they share one connection pool, so that the controllers' idle connections are few.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::client::Body;
use kube::{Api, Client, Config};
use tower::Layer;
use tower::util::MapRequestLayer;

use crate::Error;

/// Where the controllers' service accounts live.
pub const NAMESPACE: &str = "kube-system";

/// How long a requested token lives; it is renewed after four fifths of that.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Makes the clients of the controllers, from the controller manager's own configuration.
#[derive(Clone)]
pub struct Credentials {
    /// The controller manager's own client: it reads the shared caches and mints tokens.
    root: Client,
    /// A client of the server without the manager's credential, whose connections every
    /// controller's client uses.
    shared: Client,
    /// The namespace of the controllers' clients.
    default_namespace: String,
}

impl Credentials {
    /// Credentials minted through `root`, for clients that reach the server as `config` does.
    pub fn new(root: Client, config: &Config) -> Result<Self, kube::Error> {
        let mut base = config.clone();
        base.auth_info = Default::default();
        let default_namespace = base.default_namespace.clone();
        Ok(Self { root, shared: krust_client::client(base)?, default_namespace })
    }

    /// The controller manager's own client.
    pub fn root(&self) -> &Client {
        &self.root
    }

    /// A client that acts as the service account `kube-system/<controller>`, made if absent.
    /// Its token is renewed in the background for as long as the client is used.
    pub async fn client_for(&self, controller: &str) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(controller.to_string()), ..Default::default() },
            ..Default::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(Error::Credentials { controller: controller.to_string(), source });
            }
        }
        let token = Arc::new(RwLock::new(self.token(controller).await?));
        let header = Arc::clone(&token);
        let layer = MapRequestLayer::new(move |mut request: http::Request<Body>| {
            if let Ok(value) = header.read() {
                request.headers_mut().insert(AUTHORIZATION, value.clone());
            }
            request
        });
        let shared = self.shared.clone();
        let send = tower::service_fn(move |request: http::Request<Body>| {
            let shared = shared.clone();
            async move { shared.send(request).await }
        });
        let client = Client::new(layer.layer(send), self.default_namespace.clone());
        tokio::spawn(renew(self.clone(), controller.to_string(), Arc::downgrade(&token)));
        Ok(client)
    }

    /// A fresh token of `kube-system/<controller>`, as an `Authorization` header value.
    async fn token(&self, controller: &str) -> Result<HeaderValue, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_LIFETIME.as_secs() as i64),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = |source| Error::Credentials { controller: controller.to_string(), source };
        let answer: TokenRequest = accounts
            .create_subresource("token", controller, &PostParams::default(), &request)
            .await
            .map_err(err)?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::InvalidToken { controller: controller.to_string() })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Renews a controller's token until its client is dropped; retries every few seconds when
/// the server does not answer.
async fn renew(
    credentials: Credentials,
    controller: String,
    token: std::sync::Weak<RwLock<HeaderValue>>,
) {
    let mut wait = TOKEN_LIFETIME * 4 / 5;
    loop {
        tokio::time::sleep(wait).await;
        let Some(slot) = token.upgrade() else { return };
        match credentials.token(&controller).await {
            Ok(fresh) => {
                if let Ok(mut current) = slot.write() {
                    *current = fresh;
                }
                wait = TOKEN_LIFETIME * 4 / 5;
            }
            Err(e) => {
                tracing::warn!(controller, error = %e, "cannot renew the controller's token");
                wait = Duration::from_secs(5);
            }
        }
    }
}

/// The clients of several controllers, minted together.
pub struct Clients {
    minted: std::collections::HashMap<String, Client>,
}

impl Clients {
    /// Mints a client for each of `controllers` concurrently.
    pub async fn mint(credentials: &Credentials, controllers: &[&str]) -> Result<Self, Error> {
        let minted = futures::future::try_join_all(controllers.iter().map(|name| async move {
            Ok::<_, Error>((name.to_string(), credentials.client_for(name).await?))
        }))
        .await?;
        Ok(Self { minted: minted.into_iter().collect() })
    }

    /// The client of `controller` (each minted client is taken once).
    pub fn take(&mut self, controller: &str) -> Result<Client, Error> {
        self.minted
            .remove(controller)
            .ok_or_else(|| Error::NotMinted { controller: controller.to_string() })
    }
}
