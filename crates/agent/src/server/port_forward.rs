//! `/portForward/NAMESPACE/POD`: connections a client forwards, dialed on the loopback of
//! the pod's network namespace.

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};

use super::{Body, text, upgrade};
use crate::Agent;
use crate::pod::locate;
use crate::stream::{self, port_forward, spdy, websocket};

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
    let upgrade =
        match upgrade::negotiate(request.headers(), &[PROTOCOL], &[websocket::SPDY_TUNNEL]) {
            Ok(upgrade) => upgrade,
            Err(refused) => return refused,
        };
    let response = upgrade::switching(&upgrade);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (agent, pod) = (Arc::clone(agent), pod.to_string());
    tokio::spawn(async move {
        let Some(io) = upgrade::connection(on_upgrade).await else { return };
        let connection = match upgrade {
            upgrade::Upgrade::Spdy(_) => spdy::Connection::serve(io),
            upgrade::Upgrade::WebSocket { .. } => {
                spdy::Connection::serve(websocket::tunnel(upgrade::websocket(io).await))
            }
        };
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
        let stop =
            stream::ended(connection.activity(), agent.options.streaming_idle_timeout, move || {
                !still_here.exists()
            });
        port_forward::over_spdy(connection, dial, stop).await;
    });
    response
}
