//! The Kubernetes API machinery that needs no I/O.
//!
//! - [`catalog`]: every served resource (group, version, kind, plural, scope, short names,
//!   categories, verbs, subresources) with the [`Strategy`] that shapes its objects.
//! - [`strategy`]: per-resource rules: defaulting, validation, what create and update may
//!   change, field selectors, table rows.
//! - [`patch`]: JSON patch, JSON merge patch and strategic merge patch.
//! - [`selector`]: label and field selectors.
//! - [`validation`]: name rules and field errors.
//! - [`status`]: the `Status` error shape every failure is answered with.
//! - [`object`]: access to `metadata` on objects kept as JSON.
//! - [`protobuf`]: request bodies in the Kubernetes protobuf encoding, decoded to JSON.
//! - [`jsonpath`]: the JSONPath of printer columns and selectable fields.
//! - [`field_manager`]: `managedFields` and server-side apply.
//! - [`fieldcheck`]: server-side field validation (unknown and duplicate fields).
//! - [`typecheck`]: the types of an object's values against its kind's upstream schema.
//! - [`customresource`]: structural schemas of CustomResourceDefinitions: pruning,
//!   defaulting and validation (OpenAPI keywords and `x-kubernetes-validations` CEL rules).
//! - [`cel`]: JSON values as CEL values.
//! - [`persistent_volume`]: which PersistentVolume a claim may bind.
//! - [`cidr`]: IP networks of either family (service ranges, pod networks).
//!
//! Objects are `serde_json::Value`s: the registry stores what clients send, unknown fields
//! included. This crate never touches the network, the disk or the clock of a server; the
//! apiserver crate passes time and identities in.

pub mod catalog;
pub mod cel;
pub mod cidr;
pub mod customresource;
pub mod field_manager;
pub mod fieldcheck;
pub mod jsonpath;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod persistent_volume;
pub mod protobuf;
pub mod quantity;
pub mod selector;
pub mod sparse;
pub mod status;
pub mod strategy;
pub mod table;
pub mod typecheck;
pub mod validation;

/// The Kubernetes version krust serves (`major`, `minor`): the API server's `/version`, the
/// node agent's probes (`kube-probe/1.33`).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

pub use catalog::{Catalog, ResourceInfo, Scope};
pub use patch::{PatchError, PatchType, apply_patch};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Reason, StatusError};
pub use strategy::Strategy;
