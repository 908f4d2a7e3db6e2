//! The agent's HTTPS endpoint (upstream's kubelet port): the API server reaches it for a
//! container's logs, and relays exec, attach and port-forward sessions to it. Clients
//! authenticate with a certificate of the cluster CA, and only the API server's
//! (`system:masters`) is served: others ask the API server, which authorizes them against
//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`.

pub mod certificate;
pub mod exec;
pub mod logs;
pub mod port_forward;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::CertificateDer;

use crate::Agent;
use certificate::Served;
use logs::LogOptions;

type Body = BoxBody<Bytes, Infallible>;

/// The endpoint's TLS material (PEM).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Its serving certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
    /// The CA its clients' certificates come from.
    pub client_ca: String,
}

/// A failure to start the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS material is unusable.
    #[error("the agent's TLS material: {0}")]
    Tls(String),
    /// The port cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A self-signed serving certificate and key (PEM) for `node`: what an agent given none
/// serves until the cluster issues one, or for good with `--rotate-server-certificates=false`
/// (an API server checking agents refuses it).
pub fn self_signed(
    node: &str,
    ip: Option<std::net::Ipv4Addr>,
) -> Result<(String, String), certificate::CertificateError> {
    let mut names = vec![node.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(ip.map(|ip| ip.to_string()));
    let bad = certificate::CertificateError::Generate;
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let params = rcgen::CertificateParams::new(names).map_err(bad)?;
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn tls_config(served: Arc<Served>, client_ca: &str) -> Result<rustls::ServerConfig, ServeError> {
    let bad = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut client_ca.as_bytes()) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = served.provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| bad(&e))?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(served))
}

/// Whether a verified client certificate belongs to `system:masters` (the API server's).
fn is_master(cert: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(cert.as_ref()).is_ok_and(|(_, parsed)| {
        parsed
            .subject()
            .iter_organization()
            .any(|o| o.as_str().is_ok_and(|o| o == "system:masters"))
    })
}

/// Serves the endpoint for ever, with the certificate `served` holds at each handshake, to
/// clients with a certificate of `client_ca` (PEM).
pub async fn serve(
    agent: Arc<Agent>,
    address: SocketAddr,
    served: Arc<Served>,
    client_ca: &str,
) -> Result<(), ServeError> {
    let config = Arc::new(tls_config(served, client_ca)?);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let master =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).is_some_and(is_master);
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let agent = Arc::clone(&agent);
                    async move { Ok::<_, Infallible>(route(&agent, master, request).await) }
                });
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}

fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

fn text(code: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))).boxed());
    *response.status_mut() = code;
    response
}

async fn route(
    agent: &Arc<Agent>,
    master: bool,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if !master {
        return text(
            StatusCode::FORBIDDEN,
            "Forbidden: only the API server is served; ask it for pods/log",
        );
    }
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().as_str().to_string();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["healthz"]) => text(StatusCode::OK, "ok"),
        ("GET" | "POST", ["exec", namespace, pod, container]) => {
            exec::serve(agent, request, (namespace, pod, container), exec::Kind::Exec)
        }
        ("GET" | "POST", ["attach", namespace, pod, container]) => {
            exec::serve(agent, request, (namespace, pod, container), exec::Kind::Attach)
        }
        ("GET" | "POST", ["portForward", namespace, pod]) => {
            port_forward::serve(agent, request, (namespace, pod))
        }
        ("GET", ["containerLogs", namespace, pod, container]) => {
            match LogOptions::from_query(&query) {
                Ok(options) => container_logs(agent, namespace, pod, container, options).await,
                Err(e) => text(StatusCode::BAD_REQUEST, &e),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The log file of one run of a container, and where its shim records its exit.
fn log_file(
    agent: &Agent,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Option<(PathBuf, PathBuf)> {
    let prefix = format!("{namespace}_{pod}_");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf, String)> =
        std::fs::read_dir(&agent.logs_dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let uid = name.strip_prefix(&prefix)?.to_string();
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, e.path(), uid))
            })
            .collect();
    // The pod that runs here now first, then the newest.
    candidates.sort_by_key(|(modified, _, uid)| (agent.pods_dir.join(uid).exists(), *modified));
    let (_, dir, uid) = candidates.pop()?;
    let mut attempts: Vec<u32> = std::fs::read_dir(dir.join(container))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let attempt = if previous { attempts.iter().rev().nth(1)? } else { attempts.last()? };
    let exit = agent
        .pods_dir
        .join(&uid)
        .join("containers")
        .join(container)
        .join(attempt.to_string())
        .join(crate::runtime::shim::EXITED);
    Some((dir.join(container).join(format!("{attempt}.log")), exit))
}

async fn container_logs(
    agent: &Arc<Agent>,
    namespace: &str,
    pod: &str,
    container: &str,
    options: LogOptions,
) -> Response<Body> {
    let Some((file, exit)) = log_file(agent, namespace, pod, container, options.previous) else {
        let what = if options.previous { "previous terminated container" } else { "container" };
        return text(
            StatusCode::NOT_FOUND,
            &format!("{what} \"{container}\" in pod \"{pod}\" not found"),
        );
    };
    // The rotated file (`N.log.1`) holds the older lines: read first, as the kubelet reads
    // rotated logs in order.
    let mut rotated_name = file.clone().into_os_string();
    rotated_name.push(".1");
    let mut bytes = tokio::fs::read(&rotated_name).await.unwrap_or_default();
    let rotated = bytes.len();
    bytes.extend(tokio::fs::read(&file).await.unwrap_or_default());
    let (first, used) = logs::initial(&bytes, &options, k8s_openapi::jiff::Timestamp::now());
    // Following goes on in the current file.
    let used = used.saturating_sub(rotated);
    let limit = options.limit_bytes.filter(|l| *l > 0).map(|l| l as usize);
    let clip = |mut chunk: Vec<u8>, sent: usize| -> (Vec<u8>, bool) {
        match limit {
            Some(limit) if sent + chunk.len() >= limit => {
                chunk.truncate(limit - sent);
                (chunk, true)
            }
            _ => (chunk, false),
        }
    };
    let (first, done) = clip(first, 0);
    if !options.follow || done {
        return Response::new(Full::new(Bytes::from(first)).boxed());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let since = options.since(k8s_openapi::jiff::Timestamp::now());
    tokio::spawn(follow(file, exit, used, first, since, options.timestamps, limit, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::new(StreamBody::new(stream).boxed())
}

/// Streams what is appended to `file` after `offset`, until the container's exit is
/// recorded and its output read, the byte limit is reached, or the client is gone.
#[allow(clippy::too_many_arguments)]
async fn follow(
    file: PathBuf,
    exit: PathBuf,
    mut offset: usize,
    first: Vec<u8>,
    since: Option<k8s_openapi::jiff::Timestamp>,
    timestamps: bool,
    limit: Option<usize>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut sent = first.len();
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    let mut exited_reads = 0;
    loop {
        // A rotated file starts over.
        if tokio::fs::metadata(&file).await.is_ok_and(|m| (m.len() as usize) < offset) {
            offset = 0;
        }
        let bytes = read_from(&file, offset).await;
        let (lines, used) = logs::parse(&bytes);
        offset += used;
        let kept: Vec<logs::Line> = lines.into_iter().filter(|l| logs::keep(l, since)).collect();
        if !kept.is_empty() {
            let mut chunk = logs::render(&kept, timestamps);
            let mut done = false;
            if let Some(limit) = limit
                && sent + chunk.len() >= limit
            {
                chunk.truncate(limit - sent);
                done = true;
            }
            sent += chunk.len();
            if tx.send(Bytes::from(chunk)).await.is_err() || done {
                return;
            }
        } else if Path::new(&exit).exists() {
            // The shim records the exit after the output is in the file: one more read
            // takes what came last.
            exited_reads += 1;
            if exited_reads > 1 {
                return;
            }
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_from(file: &Path, offset: usize) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut f) = tokio::fs::File::open(file).await else { return Vec::new() };
    if f.seek(std::io::SeekFrom::Start(offset as u64)).await.is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes).await;
    bytes
}
