//! ResourceQuota: upstream's quota admission (`plugin/pkg/admission/resourcequota`) and the
//! pure half of its quota controller (`pkg/controller/resourcequota`).
//!
//! A write to a namespaced resource (not a subresource) is measured by its resource's
//! [`Evaluator`]; every quota of the namespace whose `status.hard` names a measured resource
//! and whose scopes hold the object covers it. Each covering quota must know its usage
//! (`status.used`), pods must name the cpu and memory a quota limits, and the usage the write
//! adds (the object's, or on update what it adds to the old object's) must fit every covering
//! quota's `status.hard`, else the write is refused with upstream's message. What fits is
//! charged: [`ResourceQuota::check`] answers the quotas with their new `status.used`, which
//! the API server writes (guarded by each quota's resourceVersion, retrying on conflict)
//! before it stores the object; dry runs are checked but not charged.
//!
//! [`controller`] computes a quota's usage from the cluster, as upstream's controller does
//! when a quota is created or changed, when counted objects go away and on a periodic resync.
//!
//! Limits, for now: no admission configuration (`limitedResources`); the pod-level resources
//! and in-place resize features (off by default in the API version served) are not counted;
//! DRA resource claims are only counted as objects.

pub mod controller;
pub mod evaluator;
pub mod pods;
pub mod resources;
pub mod scopes;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ResourceQuota as Quota, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use krust_api::StatusError;
use serde_json::Value;

pub use evaluator::{Evaluator, Item, ObjectState};
use resources::ResourceList;

use crate::{Attributes, ClusterView, Operation, Plugin, forbidden};

/// Upstream's name.
pub const NAME: &str = "ResourceQuota";

/// Why quota could not evaluate an object (not a refusal: the object or a quota is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The object is not of its resource's kind.
    #[error("expect *v1.{expected}: {reason}")]
    Decode {
        /// The kind expected.
        expected: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// A scope selector names an unknown operator.
    #[error("{0:?} is not a valid scope selector operator")]
    Operator(String),
    /// An `In` or `NotIn` scope selector without values.
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    EmptyValues,
    /// An `Exists` or `DoesNotExist` scope selector with values.
    #[error("values set must be empty for exists and does not exist")]
    UnexpectedValues,
}

/// The plugin (validating, and last: it charges what it admits).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceQuota;

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The quotas of `namespace`, in name order.
pub fn quotas(cluster: &dyn ClusterView, namespace: &str) -> Vec<Quota> {
    let mut quotas: Vec<Quota> = cluster.list("", "resourcequotas", namespace);
    quotas.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    quotas
}

/// The names a list holds.
fn names(list: Option<&BTreeMap<String, Quantity>>) -> BTreeSet<String> {
    list.into_iter().flatten().map(|(k, _)| k.clone()).collect()
}

fn status(quota: &Quota) -> ResourceQuotaStatus {
    quota.status.clone().unwrap_or_default()
}

fn internal(error: QuotaError) -> StatusError {
    StatusError::internal(error.to_string())
}

impl ResourceQuota {
    /// The evaluator of a write quota looks at: creates and updates of a namespaced resource
    /// itself (not a subresource), except the resources quota ignores.
    fn evaluator(&self, attributes: &Attributes<'_>) -> Option<Evaluator> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update)
            || !attributes.subresource.is_empty()
            || attributes.namespace.is_empty()
        {
            return None;
        }
        Evaluator::for_resource(attributes.group, attributes.resource)
    }

    /// Whether the write may change what quotas count (before any quota is read).
    pub fn handles(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> bool {
        let (Some(evaluator), Some(object)) = (self.evaluator(attributes), object) else {
            return false;
        };
        let Ok(item) = evaluator.item(object) else { return true };
        let old = old.and_then(|o| evaluator.item(o).ok());
        evaluator.handles(attributes.operation, &item, old.as_ref())
    }

    /// Checks a write against the namespace's `quotas` (upstream's `CheckRequest`): the
    /// quotas whose `status.used` the write changes, with their new usage (and the
    /// resourceVersion they were read at, for a guarded write), or the refusal. `now` tells
    /// whether a deleted pod's grace period has run out.
    pub fn check(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        quotas: &[Quota],
        now: Timestamp,
    ) -> Result<Vec<Quota>, StatusError> {
        let (Some(evaluator), Some(object)) = (self.evaluator(attributes), object) else {
            return Ok(Vec::new());
        };
        if quotas.is_empty() {
            return Ok(Vec::new());
        }
        let item = evaluator.item(object).map_err(internal)?;
        let old_item = old.map(|o| evaluator.item(o)).transpose().map_err(internal)?;
        if !evaluator.handles(attributes.operation, &item, old_item.as_ref()) {
            return Ok(Vec::new());
        }
        let refuse = |why: String| forbidden(attributes, Some(object), &why);
        // The quotas that cover the object; each must be satisfiable and know its usage.
        let mut covering = Vec::new();
        for (index, quota) in quotas.iter().enumerate() {
            let name = quota.metadata.name.clone().unwrap_or_default();
            let matched = evaluator.matches(quota, &item).map_err(|e| {
                StatusError::internal(format!("error matching scopes of quota {name}, err: {e}"))
            })?;
            if !matched {
                continue;
            }
            let status = status(quota);
            let restricted = evaluator.matching_resources(&names(status.hard.as_ref()));
            if let Err(why) = evaluator.constraints(&restricted, &item) {
                return Err(refuse(format!("failed quota: {name}: {why}")));
            }
            let used = names(status.used.as_ref());
            if !restricted.iter().all(|r| used.contains(r)) {
                let restricted: Vec<String> = restricted.into_iter().collect();
                return Err(refuse(format!(
                    "status unknown for quota: {name}, resources: {}",
                    restricted.join(",")
                )));
            }
            covering.push(index);
        }
        let usage = evaluator.usage(&item, now);
        let negative = resources::negative(&usage);
        if !negative.is_empty() {
            return Err(refuse(format!(
                "quota usage is negative for resource(s): {}",
                negative.join(",")
            )));
        }
        // What the write adds, per covering quota: on update, what it adds to the old
        // object's usage when the quota covered that too.
        let mut deltas: BTreeMap<usize, ResourceList> =
            covering.iter().map(|i| (*i, usage.clone())).collect();
        if attributes.operation == Operation::Update {
            let Some(old_item) = &old_item else {
                return Err(refuse(
                    "unable to get previous usage since prior version of object was not found"
                        .into(),
                ));
            };
            let stored = old
                .and_then(|o| o.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .is_some_and(|rv| !rv.is_empty());
            if stored {
                let delta =
                    resources::subtract_non_negative(&usage, &evaluator.usage(old_item, now));
                for index in &covering {
                    if evaluator.matches(&quotas[*index], old_item).map_err(internal)? {
                        deltas.insert(*index, delta.clone());
                    }
                }
            }
        }
        let mut charged = Vec::new();
        for index in covering {
            let Some(delta) = deltas.get(&index).map(resources::remove_zeros) else { continue };
            if delta.is_empty() {
                continue;
            }
            let quota = &quotas[index];
            let status = status(quota);
            let hard = resources::parse(status.hard.as_ref());
            let used = resources::parse(status.used.as_ref());
            let requested = resources::mask(&delta, hard.keys());
            let new_used = resources::add(&used, &requested);
            let exceeded =
                resources::exceeded(&resources::mask(&new_used, requested.keys()), &hard);
            if !exceeded.is_empty() {
                return Err(refuse(format!(
                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                    quota.metadata.name.as_deref().unwrap_or_default(),
                    resources::pretty(&resources::mask(&requested, &exceeded)),
                    resources::pretty(&resources::mask(&used, &exceeded)),
                    resources::pretty(&resources::mask(&hard, &exceeded)),
                )));
            }
            if !resources::equals(&new_used, &used) {
                let mut quota = quota.clone();
                quota.status = Some(ResourceQuotaStatus {
                    used: Some(resources::to_quantities(&new_used)),
                    ..status
                });
                charged.push(quota);
            }
        }
        Ok(charged)
    }
}

#[cfg(test)]
mod tests;
