//! How the API server reaches node agents (upstream's kubelet client): on the HTTPS port
//! the Node reports, with the API server's own client certificate (`system:masters`),
//! checking theirs against `--kubelet-certificate-authority` when given (without it, as
//! upstream, unchecked).

use std::sync::Arc;

use bytes::Bytes;
use hyper::{HeaderMap, Method, Request, Response, header};
use krust_api::StatusError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use crate::ApiServer;

/// How long an agent has for its TLS handshake, and then for the head of its answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How the API server reaches node agents.
#[derive(Debug, Clone)]
pub struct NodeClient {
    tls: Arc<rustls::ClientConfig>,
}

impl NodeClient {
    /// A client presenting `cert` and `key` (PEM), checking agents' serving certificates
    /// against `ca` (PEM) when given (upstream's `--kubelet-certificate-authority`), else
    /// accepting any (upstream's default towards kubelets).
    pub fn new(cert: &str, key: &str, ca: Option<&[u8]>) -> Result<NodeClient, String> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
            .ok()
            .flatten()
            .ok_or("no private key for the node client")?;
        let provider = krust_tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in rustls_pemfile::certs(&mut &pem[..]) {
                    roots.add(ca.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                }
                if roots.is_empty() {
                    return Err("no certificate in the file".into());
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(krust_tls::AnyServer(provider))),
        };
        let tls = builder.with_client_auth_cert(certs, key).map_err(|e| e.to_string())?;
        Ok(NodeClient { tls: Arc::new(tls) })
    }

    /// GETs `path_and_query` from the agent at `host:port`.
    pub async fn get(
        &self,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<Response<hyper::body::Incoming>, String> {
        self.send(host, port, Method::GET, path_and_query, &HeaderMap::new()).await
    }

    /// Sends a request without a body to the agent at `host:port`, on a connection of its
    /// own that may be upgraded (`headers` carry the upgrade).
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Response<hyper::body::Incoming>, String> {
        let address = format!("{host}:{port}");
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        .map_err(|_| format!("dial tcp {address}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {address}: {e}"))?;
        // Streaming sessions exchange small frames both ways: no Nagle delay on them.
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let handshake = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp);
        let tls = tokio::time::timeout(ANSWER_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("TLS handshake with {address}: timed out"))?
            .map_err(|e| format!("TLS handshake with {address}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(header::HOST, &address)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request.headers_mut().append(name, value.clone());
        }
        let verb = if method == Method::GET { "Get" } else { "Post" };
        let failed = |e: &dyn std::fmt::Display| {
            format!("{verb} \"https://{address}{path_and_query}\": {e}")
        };
        tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| failed(&"timed out waiting for the agent's answer"))?
            .map_err(|e| failed(&e))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddressView {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EndpointView {
    #[serde(rename = "Port")]
    port: u16,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DaemonEndpointsView {
    kubelet_endpoint: EndpointView,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NodeStatusView {
    addresses: Vec<AddressView>,
    daemon_endpoints: DaemonEndpointsView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeView {
    status: NodeStatusView,
}

/// The address and agent port of node `name`, from its status.
pub async fn address(api: &ApiServer, name: &str) -> Result<(String, u16), StatusError> {
    let nodes = api
        .registry
        .catalog()
        .lookup("", "v1", "nodes")
        .ok_or_else(|| StatusError::internal("nodes are not served"))?;
    let node: NodeView =
        serde_json::from_value(api.registry.get(&nodes, None, name).await?).unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| node.status.addresses.iter().find(|a| a.kind == *kind))
        .map(|a| a.address.clone())
        .ok_or_else(|| StatusError::internal(format!("node {name} has no address")))?;
    let port = match node.status.daemon_endpoints.kubelet_endpoint.port {
        0 => 10250,
        port => port,
    };
    Ok((address, port))
}
