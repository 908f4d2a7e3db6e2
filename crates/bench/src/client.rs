//! A minimal HTTPS client for the benchmark: one HTTP/2 connection with the admin client
//! certificate (or a bearer token), shared by many concurrent requests.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;

/// The TLS client configuration of `kubeconfig` (the ring provider, as the server's): its
/// cluster's CA as the only root and, with `client_cert`, its user's certificate.
pub fn tls_config(kubeconfig: &str, client_cert: bool) -> anyhow::Result<rustls::ClientConfig> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD.decode(s).context("bad base64 in kubeconfig")
    };
    let ca = b64(field(kubeconfig, "certificate-authority-data")?)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    if !client_cert {
        return Ok(builder.with_no_client_auth());
    }
    let cert = b64(field(kubeconfig, "client-certificate-data")?)?;
    let key = b64(field(kubeconfig, "client-key-data")?)?;
    let certs = rustls_pemfile::certs(&mut cert.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())?
        .ok_or_else(|| anyhow!("no client key"))?;
    Ok(builder.with_client_auth_cert(certs, key)?)
}

/// A client of one API server.
#[derive(Clone)]
pub struct ApiClient {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
    /// The `Authorization` header sent with every request (bearer-token clients).
    authorization: Option<http::HeaderValue>,
}

fn field<'a>(kubeconfig: &'a str, name: &str) -> anyhow::Result<&'a str> {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .ok_or_else(|| anyhow!("kubeconfig has no {name}"))
}

impl ApiClient {
    /// Connects with the credentials of an admin kubeconfig written by `krust server`.
    pub async fn connect(kubeconfig: &str) -> anyhow::Result<Self> {
        Self::connect_as(kubeconfig, None).await
    }

    /// Connects to the server of an admin kubeconfig, trusting its CA, and authenticates
    /// with `token` as a bearer token instead of the admin's certificate.
    pub async fn connect_with_token(kubeconfig: &str, token: &str) -> anyhow::Result<Self> {
        let header = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("a token that cannot be sent in a header")?;
        Self::connect_as(kubeconfig, Some(header)).await
    }

    async fn connect_as(
        kubeconfig: &str,
        authorization: Option<http::HeaderValue>,
    ) -> anyhow::Result<Self> {
        let mut tls = tls_config(kubeconfig, authorization.is_none())?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let server = field(kubeconfig, "server")?;
        let authority = server.trim_start_matches("https://").to_string();
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
            .await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, authority, authorization })
    }

    /// A request to `path` with this client's credentials.
    fn builder(&self, method: Method, path: &str) -> http::request::Builder {
        let builder =
            Request::builder().method(method).uri(format!("https://{}{path}", self.authority));
        match &self.authorization {
            Some(value) => builder.header(http::header::AUTHORIZATION, value.clone()),
            None => builder,
        }
    }

    /// Sends one request and reads the whole answer; fails on a non-2xx status.
    /// Creates namespace `name` with its `default` ServiceAccount, which pods need to be
    /// admitted. The benchmarked servers run without controllers (their memory and CPU are
    /// the API server's alone), so the bench makes the account the service account
    /// controller would.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.request(Method::POST, "/api/v1/namespaces", Some(&ns)).await?;
        let sa = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        self.request(
            Method::POST,
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            Some(&sa),
        )
        .await?;
        Ok(())
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Bytes> {
        let body = body
            .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
            .unwrap_or_default();
        self.send(method, path, "application/json", body).await
    }

    /// Sends one request with a body of `content_type` and reads the whole answer; fails on a
    /// non-2xx status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<Bytes> {
        let req = self
            .builder(method, path)
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(anyhow!("{path}: {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }

    /// Sends a GET that accepts `accept` and reads the whole answer; fails on a non-2xx
    /// status.
    pub async fn get_accepting(&self, path: &str, accept: &str) -> anyhow::Result<Bytes> {
        let req = self
            .builder(Method::GET, path)
            .header(http::header::ACCEPT, accept)
            .body(Full::new(Bytes::new()))?;
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(anyhow!("{path}: {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }

    /// Sends a GET and returns the answer's status and its body unread, for a reader that
    /// streams it.
    pub async fn get_streaming(
        &self,
        path: &str,
    ) -> anyhow::Result<(http::StatusCode, hyper::body::Incoming)> {
        let req = self.builder(Method::GET, path).body(Full::new(Bytes::new()))?;
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        Ok((response.status(), response.into_body()))
    }

    /// Opens a watch and returns its body as a stream of frames.
    pub async fn watch(&self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        let req = self.builder(Method::GET, path).body(Full::new(Bytes::new()))?;
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        Ok(response.into_body())
    }
}
