//! `httpGet` probes and hooks, as upstream's prober: HTTP or HTTPS (the server's certificate
//! is not checked, as upstream's `InsecureSkipVerify`), `User-Agent: kube-probe/MAJOR.MINOR`,
//! redirects followed on the same host, success for a status from 200 to 399.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper::{Request, StatusCode};
use rustls::pki_types::ServerName;

const MAX_REDIRECTS: usize = 10;

/// One `httpGet`: where it goes and what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// `http` or `https` (the probe's `scheme`, lowercased).
    pub https: bool,
    /// The host (the pod's address unless the probe names one).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path and query.
    pub path: String,
    /// The probe's own headers (a `Host` or `User-Agent` among them replaces ours).
    pub headers: Vec<(String, String)>,
}

impl Get {
    fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

/// Sends the GET; (success, why it failed).
pub async fn get(get: &Get) -> (bool, String) {
    let mut current = get.clone();
    if !current.path.starts_with('/') {
        current.path = format!("/{}", current.path);
    }
    for _ in 0..=MAX_REDIRECTS {
        let url = current.url(&current.path);
        let response = match once(&current).await {
            Ok(response) => response,
            Err(e) => return (false, format!("Get {url:?}: {e}")),
        };
        if response.status().is_redirection()
            && let Some(location) =
                response.headers().get(hyper::header::LOCATION).and_then(|l| l.to_str().ok())
        {
            match follow(&current, location) {
                Some(next) => {
                    current = next;
                    continue;
                }
                // Upstream does not follow a redirect to another host: the probe succeeds.
                None => return (true, String::new()),
            }
        }
        return verdict(response.status());
    }
    (false, format!("Get {:?}: stopped after 10 redirects", current.url(&current.path)))
}

/// Success for 200-399, as upstream's.
fn verdict(status: StatusCode) -> (bool, String) {
    if (200..400).contains(&status.as_u16()) {
        (true, String::new())
    } else {
        (false, format!("HTTP probe failed with statuscode: {}", status.as_u16()))
    }
}

/// The GET a `Location` leads to, with its own scheme, port and path; `None` when it leads
/// to another host.
fn follow(current: &Get, location: &str) -> Option<Get> {
    let mut next = current.clone();
    let absolute = location
        .strip_prefix("http://")
        .map(|rest| (false, rest))
        .or_else(|| location.strip_prefix("https://").map(|rest| (true, rest)))
        .or_else(|| location.strip_prefix("//").map(|rest| (current.https, rest)));
    match absolute {
        Some((https, rest)) => {
            let (authority, path) =
                rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port))
                    if !host.ends_with(':') && port.chars().all(|c| c.is_ascii_digit()) =>
                {
                    (host, port.parse().ok()?)
                }
                _ => (authority, if https { 443 } else { 80 }),
            };
            if host.trim_start_matches('[').trim_end_matches(']') != current.host {
                return None;
            }
            next.https = https;
            next.port = port;
            next.path = path;
        }
        None if location.starts_with('/') => next.path = location.to_string(),
        None => {
            let directory = &current.path[..current.path.rfind('/').map_or(0, |i| i + 1)];
            next.path = format!("{directory}{location}");
        }
    }
    Some(next)
}

async fn once(get: &Get) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let path = get.path.as_str();
    let tcp = tokio::net::TcpStream::connect((get.host.as_str(), get.port))
        .await
        .map_err(|e| format!("dial tcp {}:{}: connect: {e}", get.host, get.port))?;
    let mut request = Request::builder().uri(path);
    let has = |name: &str| get.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        request = request.header(hyper::header::HOST, format!("{}:{}", get.host, get.port));
    }
    if !has("user-agent") {
        request = request.header(hyper::header::USER_AGENT, super::user_agent());
    }
    if !has("accept") {
        request = request.header(hyper::header::ACCEPT, "*/*");
    }
    for (name, value) in &get.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    if get.https {
        let name = ServerName::try_from(get.host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(unverified()?)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        crate::exchange::send(tls, request).await.map_err(|e| e.to_string())
    } else {
        crate::exchange::send(tcp, request).await.map_err(|e| e.to_string())
    }
}

/// The TLS client of HTTPS probes, made once.
fn unverified() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| krust_tls::unverified_client().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(host: &str) -> Get {
        Get {
            https: false,
            host: host.into(),
            port: 8080,
            path: "/healthz".into(),
            headers: vec![],
        }
    }

    #[test]
    fn statuses_200_to_399_pass() {
        assert!(verdict(StatusCode::OK).0);
        assert!(verdict(StatusCode::NOT_MODIFIED).0);
        assert_eq!(
            verdict(StatusCode::SERVICE_UNAVAILABLE),
            (false, "HTTP probe failed with statuscode: 503".into())
        );
    }

    #[test]
    fn redirects_are_followed_on_the_same_host_only() {
        let get = probe("10.42.0.5");
        let at = |location: &str| follow(&get, location).map(|g| (g.https, g.port, g.path));
        assert_eq!(at("/ready"), Some((false, 8080, "/ready".into())));
        assert_eq!(at("ready"), Some((false, 8080, "/ready".into())));
        assert_eq!(at("http://10.42.0.5:8080/other?x=1"), Some((false, 8080, "/other?x=1".into())));
        // Another scheme and port on the same host: followed with them.
        assert_eq!(at("https://10.42.0.5:8443/healthz"), Some((true, 8443, "/healthz".into())));
        assert_eq!(at("https://10.42.0.5"), Some((true, 443, "/".into())));
        assert_eq!(at("http://example.com/ready"), None);
        assert_eq!(at("//example.com/ready"), None);
        assert_eq!(probe("fd00::5").url("/"), "http://[fd00::5]:8080/");
    }

    #[tokio::test]
    async fn a_refused_connection_reads_as_upstreams() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        drop(listener);
        let get = Get { port, ..probe("127.0.0.1") };
        let (ok, message) = super::get(&get).await;
        assert!(!ok);
        assert!(
            message.starts_with(&format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: "
            )),
            "{message}"
        );
    }
}
