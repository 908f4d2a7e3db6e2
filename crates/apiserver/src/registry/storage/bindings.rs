//! The storage of the legacy `bindings` resource (`POST /api/v1/namespaces/NS/bindings`):
//! served by the handler of `pods/binding`.

use std::sync::Arc;

use super::pods::binding::Binding;
use super::{Handler, ResourceStorage};

/// The declaration of `bindings`.
pub(super) fn storage() -> ResourceStorage {
    ResourceStorage {
        handlers: vec![("", Handler::Create(Arc::new(Binding)))],
        ..ResourceStorage::new("", "bindings")
    }
}
