//! Lifecycle hooks: `postStart` right after a container starts (a failure kills it, and it
//! restarts by its policy), `preStop` before the stop signal, within the grace period.
//! Handlers: `exec` (through the OCI runtime), `httpGet` and `sleep`.

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::probe::{self, Target};

/// Runs one hook handler; `Err` says why it failed.
pub async fn run(handler: &LifecycleHandler, target: &Target) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let (ok, message) =
            probe::exec_in(target, exec.command.as_deref().unwrap_or_default()).await;
        return if ok { Ok(()) } else { Err(message) };
    }
    if let Some(http) = &handler.http_get {
        let (ok, message) = probe::http::get(&probe::Get::of(http, target)?).await;
        return if ok { Ok(()) } else { Err(message) };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err("the hook has no handler this agent supports".into())
}
