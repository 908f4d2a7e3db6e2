//! What every controller runs on: shared caches, per-controller credentials and leader
//! election. kube-rs supplies the client, the watchers, the reflectors and the work queue
//! (its `Controller`: one reconcile at a time per object, retries after errors).

pub mod credentials;
pub mod discovery;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod leader;
pub mod owner;
pub mod pod_control;

pub use credentials::Credentials;
pub use informer::Informer;
pub use leader::LeaderElection;
