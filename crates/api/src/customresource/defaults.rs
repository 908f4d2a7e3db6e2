//! Defaulting, as upstream's `schema/defaulting`: nulls the schema does not allow and
//! has no default for are dropped, then `default`s fill missing properties (and nulls of
//! non-nullable fields), array items and additionalProperties values.

use serde_json::Value;

use super::schema::Schema;

fn non_nullable_null(x: &Value, s: Option<&Schema>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Upstream's `PruneNonNullableNullsWithoutDefaults`.
pub(crate) fn prune_nulls(x: &mut Value, s: Option<&Schema>) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let sub = s.and_then(|s| s.member(k));
                if non_nullable_null(v, sub) && sub.is_some_and(|s| s.default.is_none()) {
                    return false;
                }
                prune_nulls(v, sub);
                true
            });
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, item);
            }
        }
        _ => {}
    }
}

/// Upstream's `Default`.
pub(crate) fn default(x: &mut Value, s: &Schema) {
    if !s.has_defaults {
        return;
    }
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                match map.get_mut(k) {
                    None => {
                        map.insert(k.clone(), d.clone());
                    }
                    Some(v) if v.is_null() && !prop.nullable => *v = d.clone(),
                    Some(_) => {}
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    default(v, prop);
                } else if let Some(a) = s.additional_schema() {
                    if v.is_null()
                        && !a.nullable
                        && let Some(d) = &a.default
                    {
                        *v = d.clone();
                    }
                    default(v, a);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = s.items.as_deref() else { return };
            for v in items {
                if v.is_null()
                    && !item.nullable
                    && let Some(d) = &item.default
                {
                    *v = d.clone();
                }
                default(v, item);
            }
        }
        _ => {}
    }
}
