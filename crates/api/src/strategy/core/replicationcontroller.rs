//! Replication controllers: `SetDefaults_ReplicationController`, the strategy and
//! `printReplicationController`.

use serde_json::{Value, json};

use super::podspec::{default_template, validate_template};
use crate::strategy::Strategy;
use crate::strategy::util::{
    AGE, CONTAINERS, IMAGES, age, array_at, col, container_cells, format_labels, int_at, int_cell,
    int_col, keep_status, reset_status,
};
use crate::strategy::workload::{require_template, validate_map_selector, validate_replicas};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `ReplicationController`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicationControllerStrategy;

const COLUMNS: &[Column] = &[
    int_col("Desired", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
    int_col("Current", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
    int_col("Ready", "The number of ready replicas for this replication controller."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

impl Strategy for ReplicationControllerStrategy {
    fn default(&self, obj: &mut Value) {
        let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
        if let Some(labels) =
            template_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            let selector_empty = obj
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_none_or(serde_json::Map::is_empty);
            if selector_empty {
                crate::object::set_path(obj, "spec.selector", labels.clone());
            }
            let meta = crate::object::metadata_mut(obj);
            if meta.get("labels").and_then(Value::as_object).is_none_or(serde_json::Map::is_empty) {
                meta.insert("labels".into(), labels);
            }
        }
        if obj.get("spec").is_some_and(Value::is_object) {
            crate::object::default_path(obj, "spec.replicas", json!(1));
        }
        default_template(obj, "spec.template");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_replicas(obj, &mut errors);
        validate_map_selector(obj, &mut errors);
        if require_template(obj, "spec.template", &mut errors) {
            validate_template(obj, "spec.template", &["Always"], &mut errors);
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("status.replicas", int_at(obj, "status.replicas").unwrap_or(0).to_string())]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["status.replicas"])
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let (names, images) = container_cells(array_at(obj, "spec.template.spec.containers"));
        vec![
            int_cell(obj, "spec.replicas"),
            int_cell(obj, "status.replicas"),
            int_cell(obj, "status.readyReplicas"),
            age(obj, ctx),
            names,
            images,
            json!(format_labels(obj.pointer("/spec/selector"))),
        ]
    }
}
