//! Server-side table output (meta/v1 `Table`), as `kubectl get` asks for it.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, such as `Ready`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub kind: &'static str,
    /// OpenAPI format (`name` for the name column, empty otherwise).
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0: shown by default; 1 and up: only with `-o wide`.
    pub priority: u8,
}

impl Column {
    /// A column shown by default.
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self { name, kind, format: "", description, priority: 0 }
    }

    /// The same column, shown only with `-o wide`.
    pub const fn wide(self) -> Self {
        Self { priority: 1, ..self }
    }
}

/// What a row may need besides the object: the time tables are made at.
#[derive(Debug, Clone, Copy)]
pub struct TableContext {
    /// Now, for ages.
    pub now: DateTime<Utc>,
}

/// Renders the time since `timestamp` (RFC 3339) the way kubectl does: `5s`, `3m2s`, `4h`,
/// `12d`, `2y3d`; `<unknown>` when absent or unreadable.
pub fn age(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(then) = timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    human_duration((now - then.with_timezone(&Utc)).num_seconds())
}

/// kubectl's `HumanDuration` for a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 60 * 2 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            rest => format!("{m}m{rest}s"),
        },
        _ if m < 60 * 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            rest => format!("{h}h{rest}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            rest => format!("{d}d{rest}h"),
        },
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => match d % 365 {
            0 => format!("{}y", d / 365),
            rest => format!("{}y{rest}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

/// The `Name` column every table starts with.
pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};

/// The `Created At` / `Age` column resources without columns of their own end with.
pub const AGE: Column = Column::new(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// Renders a list of strings as kubectl does: comma-joined, `<none>` when empty.
pub fn join_or_none(items: &[String]) -> String {
    if items.is_empty() { "<none>".into() } else { items.join(",") }
}

/// The value of `obj` at a dotted path as a string, `<none>` when absent.
pub fn path_or_none(obj: &Value, dotted: &str) -> String {
    crate::object::path_string(obj, dotted).unwrap_or_else(|| "<none>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(60 * 30), "30m");
        assert_eq!(human_duration(3600 * 5 + 60 * 7), "5h7m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86400 * 3 + 3600), "3d1h");
        assert_eq!(human_duration(86400 * 40), "40d");
    }
}
