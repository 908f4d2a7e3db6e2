//! Stopping one container run as upstream's kubelet kills a container: its `preStop` hook
//! (within the grace period), then its stop signal (the image's STOPSIGNAL, else SIGTERM),
//! then SIGKILL once the grace period is over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::LifecycleHandler;
use nix::sys::signal::Signal;

use super::{hooks, probe};
use crate::events::Type;
use crate::runtime::{Containers, Observed};

/// How a run is stopped.
pub struct Stop {
    /// The containers.
    pub containers: Arc<dyn Containers>,
    /// The run's bundle.
    pub bundle: PathBuf,
    /// Its stop signal.
    pub signal: Signal,
    /// How long it has from the start of the hook to its exit.
    pub grace: Duration,
    /// Its `preStop` hook and where it runs, if it has one.
    pub pre_stop: Option<(LifecycleHandler, probe::Target)>,
}

impl Stop {
    /// Stops the run; returns once it has exited, or was sent SIGKILL and given `settle` to
    /// go.
    pub async fn run(self, settle: Duration) {
        let deadline = Instant::now() + self.grace;
        if let Some((hook, target)) = &self.pre_stop
            && !self.grace.is_zero()
            && running(&self)
            && let Ok(Err(message)) =
                tokio::time::timeout(self.grace, hooks::run(hook, target)).await
        {
            tracing::info!(bundle = %self.bundle.display(), %message, "FailedPreStopHook");
            if let Some(events) = &target.events {
                events.record(Type::Warning, "FailedPreStopHook", message);
            }
        }
        self.containers
            .signal(&self.bundle, if self.grace.is_zero() { Signal::SIGKILL } else { self.signal });
        while running(&self) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.containers.signal(&self.bundle, Signal::SIGKILL);
        let deadline = Instant::now() + settle;
        while running(&self) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn running(stop: &Stop) -> bool {
    matches!(stop.containers.observe(&stop.bundle), Observed::Running(_))
}
