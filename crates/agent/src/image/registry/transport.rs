//! HTTP(S) GETs to registries: a connection per request (a pull makes a handful), TLS
//! checked against the host's CA bundle, redirects followed (blob stores answer with one),
//! and a body read that gives up when nothing arrives for a minute.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use rustls::pki_types::ServerName;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response (its head, or the next piece of its body) may keep us waiting.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;

/// A failure to talk to a registry.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL cannot be requested.
    #[error("invalid URL {url:?}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No connection (refused, unreachable, DNS, timeout).
    #[error("dial tcp {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        message: String,
    },
    /// The TLS handshake failed (a plain HTTP server, or a certificate not trusted).
    #[error("tls: {address}: {message}")]
    Tls {
        /// `host:port`.
        address: String,
        /// Why.
        message: String,
    },
    /// The exchange broke off or timed out.
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// Sends GETs; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    tls: Tls,
}

/// Where a transport's TLS settings come from.
#[derive(Clone)]
enum Tls {
    /// The host's CAs, read at the first HTTPS request: their root store takes a third of a
    /// megabyte, and many nodes pull only from archives or plain-HTTP mirrors.
    Host(Arc<OnceLock<Result<Arc<rustls::ClientConfig>, String>>>),
    /// Settings of its own.
    Own(Arc<rustls::ClientConfig>),
}

impl Tls {
    /// The settings, the host's CAs read now if not yet.
    fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        match self {
            Tls::Host(host) => host
                .get_or_init(|| {
                    krust_tls::verified_client().map(Arc::new).map_err(|e| e.to_string())
                })
                .clone(),
            Tls::Own(config) => Ok(Arc::clone(config)),
        }
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

/// A response whose body is still to be read.
pub struct Response {
    /// The URL that answered (after redirects).
    pub url: String,
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    body: Incoming,
}

impl Transport {
    /// A transport trusting the host's CAs (`SSL_CERT_FILE` first, as OpenSSL), read when
    /// it first speaks HTTPS.
    pub fn new() -> Transport {
        Transport { tls: Tls::Host(Arc::default()) }
    }

    /// A transport with TLS settings of its own.
    pub fn with_tls(tls: rustls::ClientConfig) -> Transport {
        Transport { tls: Tls::Own(Arc::new(tls)) }
    }

    /// GETs `url` with `headers`, following redirects. `authorization` goes only to the
    /// first host: a redirect elsewhere (a blob store's signed URL) goes without it.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response, TransportError> {
        let mut url = url.to_string();
        let first: Uri = parse(&url)?;
        for _ in 0..=MAX_REDIRECTS {
            let uri = parse(&url)?;
            // Credentials go back only to where they were sent, never over a downgrade.
            let same_host = uri.authority() == first.authority() && uri.scheme() == first.scheme();
            let response = self.once(&uri, headers, authorization.filter(|_| same_host)).await?;
            if response.status.is_redirection()
                && let Some(location) =
                    response.headers.get(hyper::header::LOCATION).and_then(|l| l.to_str().ok())
            {
                url = resolve(&uri, location);
                continue;
            }
            return Ok(response);
        }
        Err(TransportError::Http { url, message: "stopped after 10 redirects".into() })
    }

    async fn once(
        &self,
        uri: &Uri,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response, TransportError> {
        let url = uri.to_string();
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address =
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let connect =
            |message: String| TransportError::Connect { address: address.clone(), message };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| connect("i/o timeout".into()))?
        .map_err(|e| connect(e.to_string()))?;
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header(hyper::header::USER_AGENT, concat!("krust/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(authorization) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| TransportError::Url { url: url.clone(), message: e.to_string() })?;
        let http = |message: String| TransportError::Http { url: url.clone(), message };
        let response = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| TransportError::Url { url: url.clone(), message: e.to_string() })?;
            let config = self
                .tls
                .config()
                .map_err(|message| TransportError::Tls { address: address.clone(), message })?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| TransportError::Tls {
                address: address.clone(),
                message: "handshake timed out".into(),
            })?
            .map_err(|e| TransportError::Tls {
                address: address.clone(),
                message: e.to_string(),
            })?;
            send(tls, request).await.map_err(http)?
        } else {
            send(tcp, request).await.map_err(http)?
        };
        let (head, body) = response.into_parts();
        Ok(Response { url, status: head.status, headers: head.headers, body })
    }
}

/// The exchange, waiting at most a minute for the response's head.
async fn send<T>(
    io: T,
    request: Request<http_body_util::Empty<Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(IDLE_TIMEOUT, crate::exchange::send(io, request))
        .await
        .map_err(|_| "no answer within 60s".to_string())?
        .map_err(|e| e.to_string())
}

impl Response {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            let frame = tokio::time::timeout(IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| self.error("nothing received for 60s".into()))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(self.error(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, refused when longer than `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> Result<Vec<u8>, TransportError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(self.error(format!("the answer is larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error(&self, message: String) -> TransportError {
        TransportError::Http { url: self.url.clone(), message }
    }
}

fn parse(url: &str) -> Result<Uri, TransportError> {
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| TransportError::Url {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => {
            Err(TransportError::Url { url: url.to_string(), message: "not an http(s) URL".into() })
        }
    }
}

/// A `Location` against the URL that sent it.
fn resolve(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin = format!(
        "{}://{}",
        base.scheme_str().unwrap_or("https"),
        base.authority().map_or("", |a| a.as_str())
    );
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = base.path();
    let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{origin}{directory}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_sender() {
        let base: Uri = "http://127.0.0.1:5000/v2/app/blobs/sha256:x".parse().expect("a URI");
        assert_eq!(resolve(&base, "https://cdn.example/b?sig=1"), "https://cdn.example/b?sig=1");
        assert_eq!(resolve(&base, "/store/b"), "http://127.0.0.1:5000/store/b");
        assert_eq!(resolve(&base, "other"), "http://127.0.0.1:5000/v2/app/blobs/other");
    }

    #[test]
    fn only_http_urls_are_requested() {
        assert!(parse("ftp://x/y").is_err());
        assert!(parse("/relative").is_err());
        assert!(parse("https://[::1]:5000/v2/").is_ok());
    }
}
