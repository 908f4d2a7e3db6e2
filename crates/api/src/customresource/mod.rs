//! PLACEHOLDER until the structural schema lands (branch `crd-schema`): accepts everything.

use serde_json::Value;

use crate::validation::FieldError;

/// A CRD version's structural schema.
#[derive(Debug)]
pub struct StructuralSchema;

impl StructuralSchema {
    /// Parses a schema.
    pub fn new(_schema: &Value, _path: &str) -> Result<Self, Vec<FieldError>> {
        Ok(Self)
    }
    /// Prunes unknown fields.
    pub fn prune(&self, _obj: &mut Value) -> Vec<String> {
        Vec::new()
    }
    /// Applies defaults.
    pub fn apply_defaults(&self, _obj: &mut Value) {}
    /// Validates.
    pub fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }
    /// Validates an update.
    pub fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }
}
