//! Per-resource rules, in the shape of upstream's `pkg/registry/<group>/<resource>/strategy.go`.
//!
//! The generic registry (in the apiserver crate) does what every resource shares: names,
//! uid, timestamps, resourceVersion, generation, status and scale subresources, finalizers.
//! A [`Strategy`] adds only what differs per resource. Every method has a neutral default, so
//! a resource with no rules of its own uses [`Plain`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::StatusError;
use crate::table::{Column, TableContext};
use crate::validation::{FieldError, NameRule};

/// Who makes a request (upstream's `user.Info`), for the strategies that record it.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The user name.
    pub name: &'a str,
    /// The user's uid, when known (else empty).
    pub uid: &'a str,
    /// The user's groups.
    pub groups: &'a [String],
    /// Extra attributes of the user.
    pub extra: &'a BTreeMap<String, Vec<String>>,
}

/// The error for a subresource that a strategy does not merge (a catalog mistake).
pub fn no_merge_rule(name: &str) -> StatusError {
    StatusError::internal(format!("subresource {name:?} has no merge rule"))
}

/// The rules that make one resource different from the others.
pub trait Strategy: Send + Sync {
    /// Which rule `metadata.name` must follow.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// The subresources, besides `status` and `scale`, through which a client replaces one
    /// part of the object (`namespaces/finalize`, `certificatesigningrequests/approval`); the
    /// registry serves each through [`Strategy::merge_subresource`].
    fn part_subresources(&self) -> &'static [&'static str] {
        &[]
    }

    /// The new object: `old` with the part that the subresource `name` (one of
    /// [`Strategy::part_subresources`]) carries taken from the client's `view`; `now` is the
    /// request's time (RFC 3339), for timestamps the part holds.
    fn merge_subresource(
        &self,
        name: &str,
        _old: &Value,
        _view: &Value,
        _now: &str,
    ) -> Result<Value, StatusError> {
        Err(no_merge_rule(name))
    }

    /// Fills defaults, as upstream's defaulting functions do on decode. Runs on every create
    /// and update, so it must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Fills defaults into an object read from storage (custom resources' schema defaults,
    /// which upstream applies on read too, so that objects stored before a default was added
    /// show it); answers whether anything changed.
    fn default_on_read(&self, _obj: &mut Value) -> bool {
        false
    }

    /// Adjusts a new object before validation (for example, resets `status`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Records in a new object who creates it, for the resources that keep their requester
    /// (certificate signing requests), whatever the body claims.
    fn record_requester(&self, _obj: &mut Value, _requester: &Requester<'_>) {}

    /// Adjusts an updated object before validation, knowing the stored one.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Validates a new object (metadata rules are checked by the registry).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validates an update; by default as a create, plus nothing more.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// How long a deleted object waits before it goes, given the grace period the client asked
    /// for: `None` to go at once (unless finalizers hold it), `Some(seconds)` to be marked with a
    /// `deletionTimestamp` that many seconds ahead (a pod bound to a node waits for its node).
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Why this object may never be deleted (a system namespace), if so.
    fn refuse_delete(&self, _obj: &Value) -> Option<String> {
        None
    }

    /// Adjusts an object as it is marked for deletion (a namespace becomes `Terminating`).
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Whether something besides `metadata.finalizers` still holds an object marked for
    /// deletion (a namespace's `spec.finalizers`, a pod's grace period).
    fn deletion_held(&self, _obj: &Value) -> bool {
        false
    }

    /// Whether the deleted object itself answers a delete (pods, services), rather than a
    /// `Status`.
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// Whether `metadata.generation` counts changes of everything but `metadata` and `status`.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// The warning every request of this version is answered with, when it is deprecated.
    fn deprecation_warning(&self) -> Option<&str> {
        None
    }

    /// Whether an update may leave out `metadata.resourceVersion` (upstream's
    /// `AllowUnconditionalUpdate`; custom resources require it).
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Whether an update of an object that does not exist creates it (upstream's
    /// `AllowCreateOnUpdate`, which Services allow).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether a change of `status` advances the generation too (custom resources without a
    /// `status` subresource, whose status is part of what the client writes).
    fn generation_counts_status(&self) -> bool {
        false
    }

    /// The paths of the members of `obj` that the resource's schema does not know, when the
    /// strategy has a schema of its own (custom resources); `None` leaves it to the built-in
    /// kinds' descriptors.
    fn unknown_fields(&self, _obj: &Value) -> Option<Vec<String>> {
        None
    }

    /// The structural schema (`openAPIV3Schema`) whose list and map types field ownership
    /// follows, for resources described by one (custom resources); built-in kinds answer
    /// `None` and use their merge keys.
    fn ownership_schema(&self) -> Option<&Value> {
        None
    }

    /// Whether strategic merge patches apply (upstream answers them with 415 for custom
    /// resources, which have no merge keys).
    fn strategic_merge(&self) -> bool {
        true
    }

    /// Whether a change of `metadata.annotations` advances the generation too (upstream's
    /// Deployments: the rollback and revision annotations are part of the desired state).
    fn generation_follows_annotations(&self) -> bool {
        false
    }

    /// Whether an update of the `status` subresource also takes the client's
    /// `metadata.annotations` (upstream's workload controllers write their revision
    /// annotations that way: the status strategy of Deployments, ReplicaSets, StatefulSets
    /// and DaemonSets resets only `spec` and `metadata.labels`).
    fn status_keeps_annotations(&self) -> bool {
        false
    }

    /// The selectable field the watch cache indexes, so that lists and watches selecting one
    /// value of it cost what they return (pods: `spec.nodeName`, which every node agent
    /// selects on).
    fn indexed_field(&self) -> Option<&'static str> {
        None
    }

    /// The fields this resource offers to field selectors beyond `metadata.name` and
    /// `metadata.namespace`, with their values in `obj`.
    fn selectable_fields(&self, _obj: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The members [`selectable_fields`](Self::selectable_fields) reads, as dotted paths from
    /// the object's root (beside `metadata.name` and `metadata.namespace`, which are always
    /// read), so that an index decodes those alone; `None` when it reads more than paths say,
    /// or when [`default_on_read`](Self::default_on_read) may change the object: it is then
    /// decoded whole.
    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    /// The columns of this resource's server-side table, after `Name`.
    fn columns(&self) -> &[Column] {
        &[]
    }

    /// The cells of one object's row for [`columns`](Self::columns), after the name.
    fn cells(&self, _obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        Vec::new()
    }

    /// Whether [`columns`](Self::columns) and [`cells`](Self::cells) make the whole row,
    /// `Name` included where the resource wants it, so that the registry must not put `Name`
    /// first. Upstream's event table is the one that does this: its `Name` column is the last
    /// one, shown only with `-o wide`.
    fn owns_name_column(&self) -> bool {
        false
    }
}

/// A resource with no rules of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Strategy for Plain {}

pub mod admissionregistration;
pub mod apiextensions;
pub mod apiregistration;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod certificates;
pub mod coordination;
pub mod core;
pub mod custom_resource;
pub mod discovery;
pub mod events;
pub mod flowcontrol;
pub mod networking;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod scheduling;
pub mod storage;
pub(crate) mod util;
pub(crate) mod workload;

#[cfg(test)]
mod tests;
