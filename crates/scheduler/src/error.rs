//! What can go wrong while the scheduler starts.

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No client could be built for the server.
    #[error("cannot make a client of the API server")]
    Client(#[source] kube::Error),
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] crate::profile::ConfigError),
}
