//! Label and field selectors, in upstream's string syntax and (for labels) as meta/v1
//! `LabelSelector` objects.
//!
//! - [`LabelSelector`] (`k8s.io/apimachinery/pkg/labels`): `a=b`, `a==b`, `a!=b`,
//!   `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma-separated and ANDed.
//! - [`FieldSelector`] (`k8s.io/apimachinery/pkg/fields`): `a=b`, `a==b`, `a!=b`,
//!   comma-separated, with `\,`, `\=` and `\\` escapes in values.
//!
//! Both print back in the same syntax through `Display`.

mod field;
mod label;

pub use field::{FieldOperator, FieldRequirement, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement, key_problem, label_value_problems};

use crate::status::StatusError;

/// Why a selector was refused. Messages follow upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse or holds invalid keys or values
    /// (`unable to parse requirement: ...`, `found ',', expected: ...`).
    #[error("{0}")]
    Label(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    BadOperator(String),
    /// A label selector object of the wrong shape (a non-string label value, ...).
    #[error("invalid label selector: {0}")]
    Shape(String),
    /// A field selector string that does not parse.
    #[error("{0}")]
    Field(String),
    /// A field selector naming a field the resource does not support.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
}

impl From<SelectorError> for StatusError {
    /// Every selector error is a 400 BadRequest, as upstream answers list and watch calls.
    fn from(err: SelectorError) -> Self {
        StatusError::bad_request(err.to_string())
    }
}
