//! `/exec/NAMESPACE/POD/CONTAINER` and `/attach/NAMESPACE/POD/CONTAINER`: a session with a
//! new process in a running container, or with the container's own first process.

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};

use super::{Body, text, upgrade};
use crate::Agent;
use crate::pod::locate;
use crate::stream::process::{self, Version};
use crate::stream::{self, Activity, StreamRequest, spdy};

/// Which session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new process (`kubectl exec`).
    Exec,
    /// The container's first process (`kubectl attach`).
    Attach,
}

/// Serves one exec or attach request: checks it, answers the upgrade, and runs the session
/// on its own task.
pub fn serve(
    agent: &Arc<Agent>,
    mut request: Request<hyper::body::Incoming>,
    (namespace, pod, container): (&str, &str, &str),
    kind: Kind,
) -> Response<Body> {
    let wanted = StreamRequest::from_query(request.uri().query().unwrap_or_default());
    if kind == Kind::Exec && wanted.command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
    }
    if !(wanted.stdin || wanted.stdout || wanted.stderr) {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let Some(local) = locate::pod(&agent.pods_dir, namespace, pod) else {
        return text(StatusCode::NOT_FOUND, &format!("pod {namespace}/{pod} not found"));
    };
    let target = match locate::running_container(agent.containers.as_ref(), &local, container) {
        Ok(target) => target,
        Err(message) => return text(StatusCode::NOT_FOUND, &message),
    };
    let spdy_versions: Vec<&str> =
        Version::ALL.iter().filter(|v| **v <= Version::V4).map(|v| v.name()).collect();
    let websocket_versions: Vec<&str> = Version::ALL.iter().map(|v| v.name()).collect();
    let upgrade = match upgrade::negotiate(request.headers(), &spdy_versions, &websocket_versions) {
        Ok(upgrade) => upgrade,
        Err(refused) => return refused,
    };
    let response = upgrade::switching(&upgrade);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let agent = Arc::clone(agent);
    tokio::spawn(async move {
        let Some(io) = upgrade::connection(on_upgrade).await else { return };
        let activity = Activity::new();
        // Only idleness stops a session early: when the container ends, so does the
        // process, and its end is reported.
        let stop =
            stream::ended(Arc::clone(&activity), agent.options.streaming_idle_timeout, || false);
        let version = |name: &str| Version::from_name(name).unwrap_or(Version::V1);
        let (streams, life) = match upgrade {
            upgrade::Upgrade::Spdy(name) => {
                let connection = spdy::Connection::serve(io);
                match process::over_spdy(connection, version(&name), &wanted, activity, stop).await
                {
                    Ok((streams, life)) => (streams, futures::future::Either::Left(life)),
                    Err(e) => {
                        tracing::debug!(error = %e, "an exec session did not start");
                        return;
                    }
                }
            }
            upgrade::Upgrade::WebSocket { protocol, .. } => {
                let socket = upgrade::websocket(io).await;
                let (streams, life) =
                    process::over_websocket(socket, version(&protocol), &wanted, activity, stop);
                (streams, futures::future::Either::Right(life))
            }
        };
        let run = async {
            match kind {
                Kind::Exec => {
                    agent.runtime.exec(&target.id, &target.bundle, &wanted, streams).await
                }
                Kind::Attach => agent.runtime.attach(&target.bundle, &wanted, streams).await,
            }
        };
        tokio::join!(life, run);
    });
    response
}
