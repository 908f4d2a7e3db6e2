//! What every krust component that is an API client runs on (the controllers, the scheduler,
//! the node agent): a client from a kubeconfig, shared caches, leader election on a Lease,
//! and events. kube-rs supplies the client, the watchers and the reflectors.
//!
//! *Invariant*: depends on no other krust crate; it knows the API only as kube-rs does.

pub mod connection;
pub mod error;
pub mod events;
pub mod informer;
pub mod kubeconfig;
pub mod leader;
pub mod trimmed;

pub use connection::client;
pub use error::Error;
pub use events::Events;
pub use informer::Informer;
pub use kubeconfig::{acting_as, config_from_kubeconfig, config_or_default, identity};
pub use leader::LeaderElection;
pub use trimmed::{Trimmed, untrimmed};
