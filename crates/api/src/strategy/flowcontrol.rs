//! API priority and fairness: flow schemas and priority level configurations
//! (`pkg/apis/flowcontrol/v1/defaults.go`, strategies and printers).

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, col, int_col, keep_status, str_at};
use crate::object::{default_path, path};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `FlowSchema`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowSchemaStrategy;

/// Rules of `PriorityLevelConfiguration`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorityLevelConfigurationStrategy;

impl Strategy for FlowSchemaStrategy {
    fn default(&self, obj: &mut Value) {
        if obj.get("spec").is_some_and(Value::is_object) {
            let zero =
                path(obj, "spec.matchingPrecedence").and_then(Value::as_i64).is_none_or(|p| p == 0);
            if zero {
                crate::object::set_path(obj, "spec.matchingPrecedence", json!(1000));
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::util::reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if str_at(obj, "spec.priorityLevelConfiguration.name").is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.priorityLevelConfiguration.name"));
        }
        if let Some(p) = path(obj, "spec.matchingPrecedence").and_then(Value::as_i64)
            && !(1..=10000).contains(&p)
        {
            errors.push(FieldError::invalid(
                "spec.matchingPrecedence",
                json!(p),
                "must be between 1 and 10000, inclusive",
            ));
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "PriorityLevel",
                "`name` is the name of the priority level configuration being referenced Required.",
            ),
            int_col(
                "MatchingPrecedence",
                "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request. The chosen FlowSchema is among those with the numerically lowest (which we take to be logically highest) MatchingPrecedence.  Each MatchingPrecedence value must be ranged in [1,10000]. Note that if the precedence is not specified, it will be set to 1000 as default.",
            ),
            col(
                "DistinguisherMethod",
                "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema. `nil` specifies that the distinguisher is disabled and thus will always be the empty string.",
            ),
            AGE,
            col(
                "MissingPL",
                "indicates whether the referenced priority level configuration object is missing",
            ),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let distinguisher = str_at(obj, "spec.distinguisherMethod.type").unwrap_or("<none>");
        let missing = array_at(obj, "status.conditions")
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Dangling"))
            .and_then(|c| c.get("status").and_then(Value::as_str))
            .unwrap_or("?");
        vec![
            json!(str_at(obj, "spec.priorityLevelConfiguration.name").unwrap_or_default()),
            json!(path(obj, "spec.matchingPrecedence").and_then(Value::as_i64).unwrap_or(0)),
            json!(distinguisher),
            age(obj, ctx),
            json!(missing),
        ]
    }
}

impl Strategy for PriorityLevelConfigurationStrategy {
    fn default(&self, obj: &mut Value) {
        if str_at(obj, "spec.type") == Some("Limited") {
            default_path(obj, "spec.limited.nominalConcurrencyShares", json!(30));
            default_path(obj, "spec.limited.lendablePercent", json!(0));
            if str_at(obj, "spec.limited.limitResponse.type") == Some("Queue") {
                default_path(obj, "spec.limited.limitResponse.queuing.queues", json!(64));
                default_path(obj, "spec.limited.limitResponse.queuing.handSize", json!(8));
                default_path(obj, "spec.limited.limitResponse.queuing.queueLengthLimit", json!(50));
            }
        }
        if str_at(obj, "spec.type") == Some("Exempt") {
            default_path(obj, "spec.exempt.nominalConcurrencyShares", json!(0));
            default_path(obj, "spec.exempt.lendablePercent", json!(0));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::util::reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match str_at(obj, "spec.type") {
            None | Some("") => errors.push(FieldError::required("spec.type")),
            Some(t) if t != "Exempt" && t != "Limited" => errors.push(FieldError::not_supported(
                "spec.type",
                json!(t),
                &["Exempt", "Limited"],
            )),
            Some("Limited") if path(obj, "spec.limited").is_none_or(Value::is_null) => {
                errors.push(FieldError::required("spec.limited"))
            }
            Some(_) => {}
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Type",
                "`type` indicates whether this priority level is subject to limitation on request execution.  A value of `\"Exempt\"` means that requests of this priority level are not subject to a limit (and thus are never queued) and do not detract from the capacity made available to other priority levels.  A value of `\"Limited\"` means that (a) requests of this priority level _are_ subject to limits and (b) some of the server's limited capacity is made available exclusively to this priority level. Required.",
            ),
            col(
                "NominalConcurrencyShares",
                "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
            ),
            col(
                "Queues",
                "`queues` is the number of queues for this priority level. The queues exist independently at each apiserver. The value must be positive.  Setting it to 1 effectively precludes shufflesharding and thus makes the distinguisher method of associated flow schemas irrelevant.  This field has a default value of 64.",
            ),
            col(
                "HandSize",
                "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.  When enqueuing a request at this priority level the request's flow identifier (a string pair) is hashed and the hash value is used to shuffle the list of queues and deal a hand of the size specified here.  The request is put into one of the shortest queues in that hand. `handSize` must be no larger than `queues`, and should be significantly smaller (so that a few heavy flows do not saturate most of the queues).  See the user-facing documentation for more extensive guidance on setting this field.  This field has a default value of 8.",
            ),
            col(
                "QueueLengthLimit",
                "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected.  This value must be positive.  If not specified, it will be defaulted to 50.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let none = json!("<none>");
        let mut ncs = none.clone();
        let (mut queues, mut hand, mut limit) = (none.clone(), none.clone(), none.clone());
        if let Some(limited) = path(obj, "spec.limited").filter(|l| l.is_object()) {
            ncs = limited.get("nominalConcurrencyShares").cloned().unwrap_or(json!(0));
            if let Some(q) = limited.pointer("/limitResponse/queuing").filter(|q| q.is_object()) {
                queues = q.get("queues").cloned().unwrap_or(json!(0));
                hand = q.get("handSize").cloned().unwrap_or(json!(0));
                limit = q.get("queueLengthLimit").cloned().unwrap_or(json!(0));
            }
        }
        vec![
            json!(str_at(obj, "spec.type").unwrap_or_default()),
            ncs,
            queues,
            hand,
            limit,
            age(obj, ctx),
        ]
    }
}
