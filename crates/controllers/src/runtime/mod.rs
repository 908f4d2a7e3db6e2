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
