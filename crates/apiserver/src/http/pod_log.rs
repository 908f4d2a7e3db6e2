//! `pods/log`: the API server finds the pod's node and container, and relays the node
//! agent's answer (`/containerLogs/...` on the agent's HTTPS port), streamed as it comes.
//! It authenticates to agents with its own client certificate (`system:masters`) and, as
//! upstream does without `--kubelet-certificate-authority`, does not verify theirs.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode, header};
use krust_api::{ResourceInfo, StatusError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;

use super::response::{self, Body};
use crate::ApiServer;

/// How the API server reaches node agents.
#[derive(Debug, Clone)]
pub struct NodeClient {
    tls: Arc<rustls::ClientConfig>,
}

impl NodeClient {
    /// A client presenting `cert` and `key` (PEM).
    pub fn new(cert: &str, key: &str) -> Result<NodeClient, String> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
            .ok()
            .flatten()
            .ok_or("no private key for the node client")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(NodeClient { tls: Arc::new(tls) })
    }

    /// GETs `path_and_query` from the agent at `host:port`.
    async fn get(
        &self,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<Response<hyper::body::Incoming>, String> {
        let address = format!("{host}:{port}");
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        .map_err(|_| format!("dial tcp {address}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {address}: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {address}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::get(path_and_query)
            .header(header::HOST, &address)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("Get \"https://{address}{path_and_query}\": {e}"))
    }
}

/// Accepts any server certificate (upstream's default towards kubelets).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpecView {
    node_name: Option<String>,
    containers: Vec<Named>,
    init_containers: Vec<Named>,
    ephemeral_containers: Vec<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StateView {
    waiting: Option<WaitingView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WaitingView {
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ContainerStatusView {
    name: String,
    state: Option<StateView>,
    last_state: Option<serde_json::Value>,
    restart_count: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatusView {
    container_statuses: Vec<ContainerStatusView>,
    init_container_statuses: Vec<ContainerStatusView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetaView {
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodView {
    metadata: MetaView,
    spec: PodSpecView,
    status: PodStatusView,
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

/// The container a log request names, or the one it means when it names none.
fn container_of(pod: &PodView, name: &str, asked: Option<&str>) -> Result<String, StatusError> {
    let spec = &pod.spec;
    let all =
        || spec.containers.iter().chain(&spec.init_containers).chain(&spec.ephemeral_containers);
    match asked.filter(|c| !c.is_empty()) {
        Some(container) if all().any(|c| c.name == container) => Ok(container.to_string()),
        Some(container) => Err(StatusError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None if spec.containers.len() == 1 => Ok(spec.containers[0].name.clone()),
        None => match pod.metadata.annotations.get("kubectl.kubernetes.io/default-container") {
            Some(default) if all().any(|c| c.name == *default) => Ok(default.clone()),
            _ => {
                let names = |list: &Vec<Named>| {
                    list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" ")
                };
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names(&spec.containers)
                );
                if !spec.init_containers.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        names(&spec.init_containers)
                    ));
                }
                Err(StatusError::bad_request(message))
            }
        },
    }
}

/// Serves `GET .../pods/NAME/log`.
pub async fn serve(
    api: &ApiServer,
    pods: &ResourceInfo,
    namespace: &str,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Body>, StatusError> {
    let object = api.registry.get(pods, Some(namespace), name).await?;
    let pod: PodView = serde_json::from_value(object).unwrap_or_default();
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let container = container_of(&pod, name, param("container"))?;
    let node_name = pod.spec.node_name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
        StatusError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    let statuses = pod.status.container_statuses.iter().chain(&pod.status.init_container_statuses);
    if let Some(status) = statuses.into_iter().find(|s| s.name == container) {
        let never_ran = status.restart_count == 0
            && status
                .last_state
                .as_ref()
                .is_none_or(|s| s.as_object().is_none_or(|o| o.is_empty()));
        if let (Some(waiting), true) =
            (status.state.as_ref().and_then(|s| s.waiting.as_ref()), never_ran)
        {
            return Err(StatusError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                waiting.reason.as_deref().unwrap_or("ContainerCreating")
            )));
        }
    }
    let nodes = api
        .registry
        .catalog()
        .lookup("", "v1", "nodes")
        .copied()
        .ok_or_else(|| StatusError::internal("nodes are not served"))?;
    let node: NodeView = serde_json::from_value(api.registry.get(&nodes, None, &node_name).await?)
        .unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| node.status.addresses.iter().find(|a| a.kind == *kind))
        .map(|a| a.address.clone())
        .ok_or_else(|| StatusError::internal(format!("node {node_name} has no address")))?;
    let port = match node.status.daemon_endpoints.kubelet_endpoint.port {
        0 => 10250,
        port => port,
    };
    let forwarded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "container" && k != "insecureSkipTLSVerifyBackend")
        .cloned()
        .collect();
    let mut path = format!("/containerLogs/{namespace}/{name}/{container}");
    if !forwarded.is_empty() {
        path.push('?');
        path.push_str(
            &form_urlencoded::Serializer::new(String::new()).extend_pairs(forwarded).finish(),
        );
    }
    let client = api
        .node_client
        .as_ref()
        .ok_or_else(|| StatusError::internal("the API server has no client for nodes"))?;
    let answer = client.get(&address, port, &path).await.map_err(StatusError::internal)?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        let code = if status == StatusCode::NOT_FOUND { 400 } else { 500 };
        return Err(if code == 400 {
            StatusError::bad_request(message)
        } else {
            StatusError::internal(message)
        });
    }
    let chunks = futures::stream::unfold(answer.into_body(), |mut body| async move {
        loop {
            match body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((data, body)),
                    Err(_) => continue,
                },
                Err(_) => return None,
            }
        }
    });
    Ok(response::streamed(StatusCode::OK, chunks, "text/plain"))
}
