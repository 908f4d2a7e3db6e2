//! `pods/log`: the API server finds the pod's node and container, and relays the node
//! agent's answer (`/containerLogs/...` on the agent's HTTPS port), streamed as it comes.

use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use krust_api::{ResourceInfo, StatusError};
use serde::Deserialize;

use super::response::{self, Body};
use crate::ApiServer;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Named {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct PodSpecView {
    pub(super) node_name: Option<String>,
    containers: Vec<Named>,
    init_containers: Vec<Named>,
    ephemeral_containers: Vec<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StateView {
    waiting: Option<WaitingView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WaitingView {
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct ContainerStatusView {
    name: String,
    state: Option<StateView>,
    last_state: Option<serde_json::Value>,
    restart_count: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct PodStatusView {
    container_statuses: Vec<ContainerStatusView>,
    init_container_statuses: Vec<ContainerStatusView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MetaView {
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PodView {
    metadata: MetaView,
    pub(super) spec: PodSpecView,
    status: PodStatusView,
}

/// The container a log request names, or the one it means when it names none.
pub(super) fn container_of(
    pod: &PodView,
    name: &str,
    asked: Option<&str>,
) -> Result<String, StatusError> {
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
    let (address, port) = super::node_client::address(api, &node_name).await?;
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
    let answer = api.node_client.get(&address, port, &path).await.map_err(StatusError::internal)?;
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
