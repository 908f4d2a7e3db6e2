//! `pods/exec`, `pods/attach` and `pods/portforward`: the API server checks the request
//! against the pod, opens an upgraded connection to the node agent's streaming endpoint
//! (`/exec/...`, `/attach/...`, `/portForward/...`) with the client's upgrade headers, and
//! once the agent switched protocols, relays bytes both ways. The protocols themselves
//! (SPDY, WebSocket channels, SPDY tunnelled through a WebSocket) are the agent's: this
//! side never reads them, as upstream's upgrade-aware proxy.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use krust_api::{ResourceInfo, StatusError};

use super::node_client;
use super::pod_log::{PodView, container_of};
use super::response::{self, Body};
use crate::ApiServer;

/// The request headers an upgrade carries to the agent.
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The answer headers of the agent's `101` passed to the client.
const SWITCH_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Bytes buffered per direction of a relayed session.
const RELAY_BUFFER: usize = 64 * 1024;

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        && headers.contains_key(header::UPGRADE)
}

fn copy_headers(from: &HeaderMap, names: &[&'static str], to: &mut HeaderMap) {
    for name in names {
        for value in from.get_all(*name) {
            to.append(*name, value.clone());
        }
    }
}

/// Serves an exec, attach or port-forward request for pod `namespace/name`.
pub async fn serve(
    api: &ApiServer,
    pods: &ResourceInfo,
    (namespace, name): (&str, &str),
    subresource: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, StatusError> {
    let object = api.registry.get(pods, Some(namespace), name).await?;
    let pod: PodView = serde_json::from_value(object).unwrap_or_default();
    let query = req.uri().query().unwrap_or_default().to_string();
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let path = match subresource {
        "portforward" => format!("/portForward/{namespace}/{name}"),
        _ => {
            let container = container_of(&pod, name, param("container"))?;
            format!("/{subresource}/{namespace}/{name}/{container}")
        }
    };
    let node_name = pod.spec.node_name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
        StatusError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    if !is_upgrade(req.headers()) {
        return Err(StatusError::bad_request("Upgrade request required"));
    }
    let forwarded: Vec<(String, String)> =
        pairs.into_iter().filter(|(k, _)| k != "container").collect();
    let mut path_and_query = path;
    if !forwarded.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(
            &form_urlencoded::Serializer::new(String::new()).extend_pairs(forwarded).finish(),
        );
    }
    let (address, port) = node_client::address(api, &node_name).await?;
    let mut headers = HeaderMap::new();
    copy_headers(req.headers(), &UPGRADE_HEADERS, &mut headers);
    let mut answer = api
        .node_client
        .send(&address, port, req.method().clone(), &path_and_query, &headers)
        .await
        .map_err(StatusError::internal)?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The agent's refusal reaches the client as it is, as upstream's proxy passes the
        // kubelet's on (kubectl shows it as "unable to upgrade connection: ...").
        let status = answer.status();
        let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Ok(response::text(status, &message));
    }
    let mut switched = response::bare(StatusCode::SWITCHING_PROTOCOLS);
    copy_headers(answer.headers(), &SWITCH_HEADERS, switched.headers_mut());
    let from_client = hyper::upgrade::on(&mut req);
    let to_agent = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(from_client, to_agent) {
            (Ok(client), Ok(agent)) => (client, agent),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "a streaming session was not relayed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        let _ = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut agent,
            RELAY_BUFFER,
            RELAY_BUFFER,
        )
        .await;
    });
    Ok(switched)
}
