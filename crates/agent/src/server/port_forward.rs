//! `/portForward/NAMESPACE/POD`: connections a client forwards, dialed on the loopback of
//! the pod's network namespace; over SPDY (kubectl up to 1.30), SPDY tunnelled through a
//! WebSocket (kubectl 1.31 and later), or WebSocket channels (`v4.channel.k8s.io`, client
//! libraries).

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};

use super::{Body, text, upgrade};
use crate::Agent;
use crate::pod::locate;
use crate::stream::{self, port_forward, process, spdy, websocket};

/// The stream protocol of port-forward over SPDY.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// Serves one port-forward request: answers the upgrade and runs the session on its own task.
pub fn serve(
    agent: &Arc<Agent>,
    mut request: Request<hyper::body::Incoming>,
    (namespace, pod): (&str, &str),
) -> Response<Body> {
    let Some(local) = locate::pod(&agent.pods_dir, namespace, pod) else {
        return text(StatusCode::NOT_FOUND, &format!("pod {namespace}/{pod} not found"));
    };
    let channels = process::Version::V4.name();
    let upgrade = match upgrade::negotiate(
        request.headers(),
        &[PROTOCOL],
        &[websocket::SPDY_TUNNEL, channels],
    ) {
        Ok(upgrade) => upgrade,
        Err(refused) => return refused,
    };
    // Over WebSocket channels the ports are the request's (SPDY names one per stream).
    let ports = match stream::ports_from_query(request.uri().query().unwrap_or_default()) {
        Ok(ports) => ports,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let tunnelled = matches!(&upgrade, upgrade::Upgrade::WebSocket { protocol, .. } if protocol == websocket::SPDY_TUNNEL);
    if matches!(upgrade, upgrade::Upgrade::WebSocket { .. }) && !tunnelled {
        if ports.is_empty() {
            return text(StatusCode::BAD_REQUEST, "query parameter \"ports\" is required");
        }
        // Two channels a port, numbered in a byte.
        if ports.len() > 127 {
            return text(StatusCode::BAD_REQUEST, "at most 127 ports can be forwarded at once");
        }
    }
    let response = upgrade::switching(&upgrade);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (agent, pod) = (Arc::clone(agent), pod.to_string());
    tokio::spawn(async move {
        let Some(io) = upgrade::connection(on_upgrade).await else { return };
        let netns = local.network();
        let uid = local.uid.clone();
        let dial = move |port: u16| {
            let (netns, pod, uid) = (netns.clone(), pod.clone(), uid.clone());
            async move {
                let dialed = tokio::task::spawn_blocking(move || {
                    crate::sys::connect_in_network(netns.as_deref(), port)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|dialed| dialed)
                .and_then(|tcp| {
                    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
                    tokio::net::TcpStream::from_std(tcp).map_err(|e| e.to_string())
                });
                dialed.map_err(|e| {
                    format!("error forwarding port {port} to pod {pod}, uid {uid}: {e}")
                })
            }
        };
        let still_here = local.clone();
        let timeout = agent.options.streaming_idle_timeout;
        let stop = |activity| stream::ended(activity, timeout, move || !still_here.exists());
        match upgrade {
            upgrade::Upgrade::WebSocket { .. } if !tunnelled => {
                let socket = upgrade::websocket(io).await;
                let activity = stream::Activity::new();
                let stop = stop(Arc::clone(&activity));
                port_forward::over_websocket(socket, ports, dial, activity, stop).await;
            }
            upgrade => {
                let connection = match upgrade {
                    upgrade::Upgrade::Spdy(_) => spdy::Connection::serve(io),
                    upgrade::Upgrade::WebSocket { .. } => {
                        spdy::Connection::serve(websocket::tunnel(upgrade::websocket(io).await))
                    }
                };
                let stop = stop(connection.activity());
                port_forward::over_spdy(connection, dial, stop).await;
            }
        }
    });
    response
}
