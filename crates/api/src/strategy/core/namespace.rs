//! Namespaces: `SetDefaults_Namespace`, `pkg/registry/core/namespace/strategy.go`,
//! `printNamespace`.

use serde_json::{Value, json};

use crate::StatusError;
use crate::strategy::Strategy;
use crate::strategy::util::{AGE, age, col, keep_status, string_at};
use crate::table::{Column, TableContext};
use crate::validation::{FieldError, NameRule};

/// Rules of `Namespace`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceStrategy;

/// The label every namespace carries with its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

const COLUMNS: &[Column] = &[col("Status", "The status of the namespace"), AGE];

/// Namespaces that may never be deleted (upstream's NamespaceLifecycle admission).
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn part_subresources(&self) -> &'static [&'static str] {
        &["finalize"]
    }

    /// `finalize` replaces `spec.finalizers` alone (`pkg/registry/core/namespace/storage`'s
    /// `FinalizeREST`).
    fn merge_subresource(
        &self,
        name: &str,
        old: &Value,
        view: &Value,
        _now: &str,
    ) -> Result<Value, StatusError> {
        if name != "finalize" {
            return Err(crate::strategy::no_merge_rule(name));
        }
        let mut new = old.clone();
        let finalizers = crate::object::path(view, "spec.finalizers").cloned();
        crate::object::set_path(&mut new, "spec.finalizers", finalizers.unwrap_or(json!([])));
        Ok(new)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(name) = crate::object::name(obj).map(str::to_string) {
            let meta = crate::object::metadata_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(NAME_LABEL.into(), json!(name));
            }
        }
        if obj.get("status").and_then(|s| s.get("phase")).is_none_or(Value::is_null) {
            crate::object::set_path(obj, "status.phase", json!("Active"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        let finalizers = crate::object::path(obj, "spec.finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.contains(&json!("kubernetes")) {
            let mut all = finalizers;
            all.push(json!("kubernetes"));
            crate::object::set_path(obj, "spec.finalizers", Value::Array(all));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        match old.pointer("/spec/finalizers") {
            Some(f) => crate::object::set_path(new, "spec.finalizers", f.clone()),
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        crate::object::set_path(obj, "status.phase", json!("Terminating"));
    }

    fn refuse_delete(&self, obj: &Value) -> Option<String> {
        let name = crate::object::name(obj)?;
        IMMORTAL.contains(&name).then(|| "this namespace may not be deleted".to_string())
    }

    fn deletion_held(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let finalizers = crate::object::path(obj, "spec.finalizers").and_then(Value::as_array);
        for (i, f) in finalizers.into_iter().flatten().enumerate() {
            let name = f.as_str().unwrap_or_default();
            // Standard finalizer names are qualified names; `kubernetes` is the built-in one.
            if name.is_empty() || (!name.contains('/') && name != "kubernetes") {
                errors.push(FieldError::invalid(
                    format!("spec.finalizers[{i}]"),
                    f.clone(),
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        errors
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![
            ("status.phase", string_at(obj, "status.phase")),
            ("name", crate::object::name(obj).unwrap_or_default().to_string()),
        ]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["status.phase"])
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(string_at(obj, "status.phase")), age(obj, ctx)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_get_label_finalizer_and_phase() {
        let mut ns = json!({"metadata": {"name": "team-a"}});
        NamespaceStrategy.default(&mut ns);
        let once = ns.clone();
        NamespaceStrategy.default(&mut ns);
        assert_eq!(ns, once);
        NamespaceStrategy.prepare_for_create(&mut ns);
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team-a");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(NamespaceStrategy.name_rule(), NameRule::Label);
    }
}
