//! A pod's containers' images, as the kubelet's image manager gets them: by the container's
//! pull policy, with the pod's pull secrets, one pull at a time per image on this node, and
//! after a failure a back-off of 10 s that doubles up to 5 minutes (`ImagePullBackOff`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;
use tokio::task::JoinHandle;

use crate::Agent;
use crate::events::Type;
use crate::image::registry::keyring::Keyring;
use crate::image::registry::{self, PullError};
use crate::image::{Image, Reference};

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a worker looks at a pull in flight.
const POLL: Duration = Duration::from_millis(200);

/// When a container's image is pulled (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// On every container start.
    Always,
    /// When the node does not have it.
    IfNotPresent,
    /// Never: the node must have it.
    Never,
}

impl Policy {
    /// The container's policy; when unset (the server defaults it), upstream's default:
    /// `Always` for `:latest` or no tag, `IfNotPresent` otherwise.
    pub fn of(container: &Container, image: &str) -> Policy {
        match container.image_pull_policy.as_deref() {
            Some("Always") => Policy::Always,
            Some("Never") => Policy::Never,
            Some("IfNotPresent") => Policy::IfNotPresent,
            _ => match Reference::parse(image) {
                Some(r) if r.digest.is_none() && r.tag.as_deref() == Some("latest") => {
                    Policy::Always
                }
                _ => Policy::IfNotPresent,
            },
        }
    }
}

/// Where a container's image stands.
#[derive(Debug)]
pub enum Pulled {
    /// In the store, ready to run.
    Ready(Image),
    /// Not yet: the container waits with this reason and message, and is looked at again
    /// after `retry`.
    Waiting {
        /// `ContainerCreating`, `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull` or
        /// `InvalidImageName`.
        reason: &'static str,
        /// Why.
        message: Option<String>,
        /// When to look again.
        retry: Duration,
    },
}

#[derive(Debug)]
struct Backoff {
    image: String,
    until: Instant,
    delay: Duration,
}

/// The pulls of one pod's containers, by container name.
#[derive(Debug, Default)]
pub struct Pulls {
    in_flight: HashMap<String, (String, JoinHandle<Result<Image, PullError>>)>,
    backoff: HashMap<String, Backoff>,
}

impl Drop for Pulls {
    fn drop(&mut self) {
        for (_, (_, task)) in self.in_flight.drain() {
            task.abort();
        }
    }
}

impl Pulls {
    /// The image of container `c` of `pod`: ready, or why the container waits.
    pub fn image(&mut self, agent: &Arc<Agent>, pod: &Pod, c: &Container) -> Pulled {
        let image = c.image.clone().unwrap_or_default();
        let event =
            |type_, reason, message| agent.events.pod(pod, Some(&c.name), type_, reason, message);
        match self.in_flight.remove(&c.name) {
            Some((pulling, task)) if pulling == image && !task.is_finished() => {
                self.in_flight.insert(c.name.clone(), (pulling, task));
                return Pulled::Waiting { reason: "ContainerCreating", message: None, retry: POLL };
            }
            Some((pulling, task)) if pulling == image => {
                return match outcome(task) {
                    Ok(image) => {
                        self.backoff.remove(&c.name);
                        Pulled::Ready(image)
                    }
                    Err(message) => {
                        event(
                            Type::Warning,
                            "Failed",
                            format!("Failed to pull image {image:?}: {message}"),
                        );
                        event(Type::Warning, "Failed", "Error: ErrImagePull".into());
                        self.failed(&c.name, &image, message)
                    }
                };
            }
            // The container's image changed while its old one was pulled.
            Some((_, stale)) => stale.abort(),
            None => {}
        }

        if Reference::parse(&image).is_none() {
            let message = format!(
                "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"
            );
            event(Type::Warning, "InspectFailed", message.clone());
            event(Type::Warning, "Failed", "Error: InvalidImageName".into());
            return Pulled::Waiting {
                reason: "InvalidImageName",
                message: Some(message),
                retry: BACKOFF_INITIAL,
            };
        }
        let present = agent.images.resolve(&image).ok();
        let policy = Policy::of(c, &image);
        match (policy, present) {
            (Policy::Never, Some(found)) | (Policy::IfNotPresent, Some(found)) => {
                event(
                    Type::Normal,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                return Pulled::Ready(found);
            }
            (Policy::Never, None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                event(Type::Warning, "ErrImageNeverPull", message.clone());
                event(Type::Warning, "Failed", "Error: ErrImageNeverPull".into());
                return Pulled::Waiting {
                    reason: "ErrImageNeverPull",
                    message: Some(message),
                    retry: Duration::from_secs(5),
                };
            }
            _ => {}
        }
        if let Some(backoff) = self.backoff.get(&c.name).filter(|b| b.image == image)
            && let Some(left) = backoff.until.checked_duration_since(Instant::now())
        {
            let message = format!("Back-off pulling image {image:?}");
            event(Type::Normal, "BackOff", message.clone());
            event(Type::Warning, "Failed", "Error: ImagePullBackOff".into());
            return Pulled::Waiting {
                reason: "ImagePullBackOff",
                message: Some(message),
                retry: left,
            };
        }
        event(Type::Normal, "Pulling", format!("Pulling image {image:?}"));
        let task = tokio::spawn(pull(
            Arc::clone(agent),
            pod.clone(),
            c.name.clone(),
            image.clone(),
            policy,
        ));
        self.in_flight.insert(c.name.clone(), (image, task));
        Pulled::Waiting {
            reason: "ContainerCreating",
            message: None,
            retry: Duration::from_millis(50),
        }
    }

    fn failed(&mut self, container: &str, image: &str, message: String) -> Pulled {
        let delay = match self.backoff.get(container) {
            Some(b) if b.image == image => (b.delay * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        self.backoff.insert(
            container.to_string(),
            Backoff { image: image.to_string(), until: Instant::now() + delay, delay },
        );
        Pulled::Waiting {
            reason: "ErrImagePull",
            message: Some(message),
            retry: Duration::from_secs(1),
        }
    }
}

/// A finished pull's outcome, its failure as the message to show.
fn outcome(task: JoinHandle<Result<Image, PullError>>) -> Result<Image, String> {
    match futures::FutureExt::now_or_never(task) {
        Some(Ok(Ok(image))) => Ok(image),
        Some(Ok(Err(e))) => Err(e.to_string()),
        Some(Err(e)) => Err(format!("the pull stopped: {e}")),
        None => Err("the pull stopped".into()),
    }
}

/// Pulls `image` for `pod` with its pull secrets, one pull of an image (by its normalised
/// reference) at a time on the node: a pod that waited for another's pull of its image
/// takes the result unless its policy is `Always`.
async fn pull(
    agent: Arc<Agent>,
    pod: Pod,
    container: String,
    image: String,
    policy: Policy,
) -> Result<Image, PullError> {
    let asked = Instant::now();
    let key = Reference::parse(&image).map_or_else(|| image.clone(), |r| r.to_string());
    let lock = {
        let mut locks = agent.pull_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(locks.entry(key).or_default())
    };
    let _turn = lock.lock().await;
    if policy != Policy::Always
        && let Ok(found) = agent.images.resolve(&image)
    {
        return Ok(found);
    }
    let keyring = keyring(&agent, &pod).await;
    let started = Instant::now();
    let pulled = registry::pull(&agent.registry, &agent.images, &image, &keyring).await;
    match &pulled {
        Ok(found) => {
            let message = format!(
                "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
                go_duration(started.elapsed()),
                go_duration(asked.elapsed()),
                found.size
            );
            tracing::info!(%image, id = %found.id, "{message}");
            agent.events.pod(&pod, Some(&container), Type::Normal, "Pulled", message);
        }
        Err(e) => tracing::info!(%image, error = %e, "Failed to pull image"),
    }
    pulled
}

/// A duration as Go prints one truncated to milliseconds (`512ms`, `1.25s`, `0s`).
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        1..=999 => format!("{ms}ms"),
        _ if ms < 60_000 => {
            let text = format!("{}.{:03}", ms / 1000, ms % 1000);
            format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => {
            let seconds = format!("{}.{:03}", (ms / 1000) % 60, ms % 1000);
            format!("{}m{}s", ms / 60_000, seconds.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// The credentials of the pod's `imagePullSecrets`; a secret that cannot be read is left
/// out (as the kubelet's `FailedToRetrieveImagePullSecret`), and the pull goes on.
async fn keyring(agent: &Agent, pod: &Pod) -> Keyring {
    let mut keyring = Keyring::default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(agent.client.clone(), namespace);
    for reference in pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()) {
        match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => {
                let data =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                keyring.add_secret(secret.type_.as_deref().unwrap_or_default(), &data);
            }
            Ok(None) => tracing::info!(
                pod = ?pod.metadata.name, secret = %reference.name,
                "FailedToRetrieveImagePullSecret: the pull goes on without it"
            ),
            Err(e) => tracing::info!(
                pod = ?pod.metadata.name, secret = %reference.name, error = %e,
                "FailedToRetrieveImagePullSecret: the pull goes on without it"
            ),
        }
    }
    keyring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image_pull_policy: policy.map(Into::into),
            ..Container::default()
        }
    }

    #[test]
    fn policy_follows_the_field_then_the_tag() {
        assert_eq!(Policy::of(&container(Some("Never")), "busybox"), Policy::Never);
        assert_eq!(Policy::of(&container(Some("IfNotPresent")), "busybox"), Policy::IfNotPresent);
        assert_eq!(Policy::of(&container(None), "busybox"), Policy::Always);
        assert_eq!(Policy::of(&container(None), "busybox:latest"), Policy::Always);
        assert_eq!(Policy::of(&container(None), "busybox:1.36"), Policy::IfNotPresent);
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(Policy::of(&container(None), &pinned), Policy::IfNotPresent);
    }

    #[test]
    fn durations_print_as_gos() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(512)), "512ms");
        assert_eq!(go_duration(ms(1250)), "1.25s");
        assert_eq!(go_duration(ms(2000)), "2s");
        assert_eq!(go_duration(ms(61_500)), "1m1.5s");
    }

    #[test]
    fn failures_back_off_doubling_to_five_minutes() {
        let mut pulls = Pulls::default();
        let mut delays = Vec::new();
        for _ in 0..7 {
            let _ = pulls.failed("c", "img", "boom".into());
            delays.push(pulls.backoff["c"].delay.as_secs());
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        // Another image starts over.
        let _ = pulls.failed("c", "other", "boom".into());
        assert_eq!(pulls.backoff["c"].delay, BACKOFF_INITIAL);
    }
}
