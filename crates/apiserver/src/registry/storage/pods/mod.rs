//! The storage of `pods` beyond its strategy: the subresources served by handlers.
//!
//! - `binding` and `eviction` are writes handled here ([`binding`], [`eviction`]);
//! - `log` is read from the pod's node agent, and `exec`, `attach` and `portforward` are
//!   connections relayed to it, by the HTTP layer's node relays.

pub mod binding;
pub mod eviction;

use std::sync::Arc;

use super::{Handler, ResourceStorage};

/// The declaration of `pods`.
pub(super) fn storage() -> ResourceStorage {
    ResourceStorage {
        handlers: vec![
            ("binding", Handler::Create(Arc::new(binding::Binding))),
            ("eviction", Handler::Create(Arc::new(eviction::Eviction))),
            ("log", Handler::NodeLog),
            ("exec", Handler::NodeConnect),
            ("attach", Handler::NodeConnect),
            ("portforward", Handler::NodeConnect),
        ],
        ..ResourceStorage::new("", "pods")
    }
}
