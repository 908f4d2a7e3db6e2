//! Table tests of the registry's verbs, driven in process through [`harness::Harness`]
//! (no TLS, no sockets), against upstream's semantics (`k8s.io/apiserver`'s generic
//! registry, `pkg/registry/generic/registry/store.go`, and the built-in strategies).
//!
//! Each table row names its setup, its action and the expected outcome: the typed
//! [`krust_api::Reason`] with the HTTP code (and upstream's message where krust words it as
//! upstream does), or the key fields of the result. Where krust differs from upstream the
//! row is left out, with a `// differs from upstream:` note.

// Tests: a failed unwrap is a failed row.
#![allow(clippy::unwrap_used)]

mod harness;

mod delete;
mod read;
mod write;
