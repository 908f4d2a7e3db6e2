//! What the controllers run on besides `krust-client`'s caches, leases and events:
//! per-controller credentials, expectations, owner references and pod writes. kube-rs
//! supplies the work queue (its `Controller`: one reconcile at a time per object, retries
//! after errors).

pub mod credentials;
pub mod discovery;
pub mod endpoint;
pub mod expectations;
pub mod history;
pub mod int_or_percent;
pub mod owner;
pub mod pod_control;

pub use credentials::Credentials;

/// Whether a write was refused because its namespace is being deleted (nothing may be created
/// in it then; the controller has nothing left to do there).
pub fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 403 && s.message.contains("terminat"))
}
