//! The HTTPS client of the webhooks: one POST of an AdmissionReview per call, over a fresh
//! connection, trusting only the webhook's `caBundle` (a TLS configuration is built once per
//! bundle), within the webhook's timeout.
//!
//! Where a webhook is reached: its `url`; or, for a `service`, an address of the Service's
//! Endpoints (the port named as the Service's port), else the Service's cluster IP, with the
//! certificate checked for `<service>.<namespace>.svc`. Cluster IPs are not routed by krust
//! yet, so a Service without ready endpoints is not reachable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use krust_admission::ClusterView;
use krust_admission::webhook::{Endpoint, Webhook};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest answer read from a webhook.
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Why a call to a webhook failed (its failure policy decides what follows).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The webhook's address could not be worked out.
    #[error("{0}")]
    Address(String),
    /// The `caBundle` holds no usable certificate.
    #[error("invalid caBundle: {0}")]
    CaBundle(String),
    /// Connecting, TLS or HTTP failed.
    #[error("failed to call webhook: Post \"{url}\": {reason}")]
    Transport {
        /// The URL posted to.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The webhook did not answer in time.
    #[error("failed to call webhook: Post \"{url}\": context deadline exceeded")]
    Timeout {
        /// The URL posted to.
        url: String,
    },
    /// The webhook answered with an error status.
    #[error("failed to call webhook: the server responded with the status code {code}")]
    Status {
        /// The HTTP status.
        code: u16,
    },
    /// The answer is not a usable AdmissionReview.
    #[error("{0}")]
    Response(String),
}

/// Posts AdmissionReviews to webhooks.
#[derive(Default)]
pub struct Client {
    /// TLS configurations by CA bundle.
    tls: Mutex<HashMap<Vec<u8>, Arc<rustls::ClientConfig>>>,
}

/// Where to connect and what to ask for.
struct Target {
    url: String,
    address: SocketAddr,
    host: String,
    authority: String,
    path: String,
}

/// Splits an `https://host[:port][/path]` URL.
fn parse_url(url: &str) -> Result<(String, u16, String, String), CallError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| CallError::Address(format!("webhook URL {url:?} is not https")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| CallError::Address(format!("bad host in {url:?}")))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 443,
        Some(p) => p.parse().map_err(|_| CallError::Address(format!("bad port in {url:?}")))?,
    };
    Ok((host.to_string(), port, authority.to_string(), path.to_string()))
}

/// The address of a Service's webhook: a ready endpoint, else the cluster IP.
fn service_address(
    cluster: &dyn ClusterView,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<SocketAddr, CallError> {
    let service = cluster.get::<Value>("", "services", namespace, name).ok_or_else(|| {
        CallError::Address(format!("unable to resolve service {name}.{namespace}: not found"))
    })?;
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    let service_port = ports
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)));
    let port_name = service_port.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or("");
    if let Some(endpoints) = cluster.get::<Value>("", "endpoints", namespace, name) {
        for subset in endpoints.get("subsets").and_then(Value::as_array).into_iter().flatten() {
            let target = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name);
            let ip = subset
                .pointer("/addresses/0/ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            let target_port = target
                .and_then(|p| p.get("port"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            if let (Some(ip), Some(p)) = (ip, target_port) {
                return Ok(SocketAddr::new(ip, p));
            }
        }
    }
    let ip = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            CallError::Address(format!("service {name}.{namespace} has no cluster IP"))
        })?;
    Ok(SocketAddr::new(ip, port))
}

impl Client {
    /// The TLS configuration trusting `bundle`.
    fn tls(&self, bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, CallError> {
        let mut cache = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = cache.get(bundle) {
            return Ok(Arc::clone(config));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &bundle[..]) {
            let cert = cert.map_err(|e| CallError::CaBundle(e.to_string()))?;
            roots.add(cert).map_err(|e| CallError::CaBundle(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(CallError::CaBundle("no certificates".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CallError::CaBundle(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let config = Arc::new(config);
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(bundle.to_vec(), Arc::clone(&config));
        Ok(config)
    }

    /// Where `endpoint` is reached.
    async fn target(
        &self,
        endpoint: Option<&Endpoint>,
        cluster: &dyn ClusterView,
    ) -> Result<Target, CallError> {
        match endpoint {
            None => Err(CallError::Address("webhook has neither a url nor a service".into())),
            Some(Endpoint::Url(url)) => {
                let (host, port, authority, path) = parse_url(url)?;
                let address = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| CallError::Transport {
                        url: url.clone(),
                        reason: format!("dial tcp: lookup {host}: no such host"),
                    })?;
                Ok(Target { url: url.clone(), address, host, authority, path })
            }
            Some(endpoint @ Endpoint::Service { namespace, name, path, port }) => {
                let host = endpoint.server_name();
                let address = service_address(cluster, namespace, name, *port)?;
                let authority = format!("{host}:{port}");
                let url = format!("https://{authority}{path}");
                Ok(Target { url, address, host, authority, path: path.clone() })
            }
        }
    }

    /// Posts `review` to `hook` and returns the answer's body.
    pub async fn call(
        &self,
        hook: &Webhook,
        review: &Value,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<u8>, CallError> {
        let timeout = Duration::from_secs(hook.timeout_seconds);
        let endpoint = hook.endpoint.as_ref();
        self.post(endpoint, &hook.ca_bundle, timeout, review, cluster).await
    }

    /// Posts `review` to `endpoint`, trusting `ca_bundle`, and returns the answer's body.
    pub async fn post(
        &self,
        endpoint: Option<&Endpoint>,
        ca_bundle: &[u8],
        timeout: Duration,
        review: &Value,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<u8>, CallError> {
        let tls = self.tls(ca_bundle)?;
        let target = self.target(endpoint, cluster).await?;
        let body = serde_json::to_vec(review).map_err(|e| CallError::Response(e.to_string()))?;
        match tokio::time::timeout(timeout, post(tls, &target, body)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout { url: target.url }),
        }
    }
}

/// One POST over a fresh TLS connection.
async fn post(
    tls: Arc<rustls::ClientConfig>,
    target: &Target,
    body: Vec<u8>,
) -> Result<Vec<u8>, CallError> {
    let fail = |reason: String| CallError::Transport { url: target.url.clone(), reason };
    let name = ServerName::try_from(target.host.clone()).map_err(|e| fail(e.to_string()))?;
    let tcp = TcpStream::connect(target.address)
        .await
        .map_err(|e| fail(format!("dial tcp {}: {e}", target.address)))?;
    let stream =
        TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| fail(format!("tls: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "webhook connection ended");
        }
    });
    let request = http::Request::post(&target.path)
        .header(http::header::HOST, &target.authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| fail(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(CallError::Status { code: status.as_u16() });
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443/mutate?x=1").unwrap(),
            ("127.0.0.1".into(), 8443, "127.0.0.1:8443".into(), "/mutate?x=1".into())
        );
        assert_eq!(
            parse_url("https://hooks.example.com").unwrap(),
            ("hooks.example.com".into(), 443, "hooks.example.com".into(), "/".into())
        );
        assert_eq!(parse_url("https://[::1]:9/").unwrap().0, "::1");
        assert!(parse_url("http://insecure/").is_err());
    }
}
