//! What can go wrong while the controllers start or run.

/// Why the controllers could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A controller asked for a client that was not minted for it.
    #[error("no client was minted for controller {controller}")]
    NotMinted {
        /// The controller.
        controller: String,
    },
    /// The server answered a token that cannot be sent in a header.
    #[error("the token of controller {controller} is not a valid header value")]
    InvalidToken {
        /// The controller.
        controller: String,
    },
}
