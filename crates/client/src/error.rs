//! What can go wrong while a client starts or holds its lease.

use std::path::PathBuf;

/// Why a client could not start or keep its lease.
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
    /// No kubeconfig was given and none was found where kubectl looks.
    #[error("cannot find a kubeconfig: {0}")]
    Infer(String),
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
