//! What can go wrong while the controllers start or run.

use std::path::PathBuf;

/// Why the controllers could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("cannot use kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No client could be built for the server.
    #[error("cannot make a client of the API server")]
    Client(#[source] kube::Error),
    /// A controller's service account or token could not be made.
    #[error("cannot make the credentials of controller {controller}")]
    Credentials {
        /// The controller.
        controller: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The server answered a token that cannot be sent in a header.
    #[error("the token of controller {controller} is not a valid header value")]
    InvalidToken {
        /// The controller.
        controller: String,
    },
    /// The leader election lease could not be read or written.
    #[error("leader election on lease {lease}")]
    LeaderElection {
        /// The lease, as `namespace/name`.
        lease: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}
