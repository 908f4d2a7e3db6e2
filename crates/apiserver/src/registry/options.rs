//! Request options read from the query string, as typed values.

use krust_api::StatusError;
use krust_api::selector::{FieldSelector, LabelSelector};
use krust_api::validation::{FieldError, bounded_quote};
use krust_store::Revision;

/// Query parameters of a request, by name.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    /// Whether `dryRun=All` was asked (any other value is refused).
    pub fn dry_run(&self) -> Result<bool, StatusError> {
        let values: Vec<&str> =
            self.0.iter().filter(|(k, _)| k == "dryRun").map(|(_, v)| v.as_str()).collect();
        match values.as_slice() {
            [] => Ok(false),
            values if values.iter().all(|v| *v == "All") => Ok(true),
            values => Err(StatusError::new(
                krust_api::Reason::Invalid,
                format!("dryRun: Unsupported value: {values:?}: supported values: \"All\""),
            )),
        }
    }
}

/// What a write does with fields its kind does not have and fields its body names twice
/// (the `fieldValidation` parameter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Nothing is checked (the registry's own writes).
    #[default]
    Ignore,
    /// Each problem is answered as a `Warning` header; the write goes on (upstream's default).
    Warn,
    /// A problem fails the write with 400.
    Strict,
}

impl Query {
    /// The `fieldValidation` of a write whose options are `options_kind` (`CreateOptions`,
    /// `UpdateOptions`, `PatchOptions`): `Warn` when absent or empty, as upstream; any other
    /// value than the three is refused as upstream refuses it (422).
    pub fn field_validation(&self, options_kind: &str) -> Result<FieldValidation, StatusError> {
        match self.get("fieldValidation").unwrap_or_default() {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(StatusError::invalid(
                "meta.k8s.io",
                options_kind,
                "",
                &[FieldError::not_supported(
                    "fieldValidation",
                    serde_json::Value::from(other),
                    &["", "Ignore", "Strict", "Warn"],
                )],
            )),
        }
    }
}

/// How a list or watch picks its starting revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionMatch {
    /// `resourceVersion` unset: the most recent state (a consistent read).
    Latest,
    /// `resourceVersion=0`: any state the cache has.
    Any,
    /// At least this fresh.
    NotOlderThan(Revision),
    /// Exactly this revision.
    Exact(Revision),
}

/// Options of a list or watch.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// The label selector.
    pub labels: LabelSelector,
    /// The field selector.
    pub fields: FieldSelector,
    /// Page size; 0 for no limit.
    pub limit: usize,
    /// The continue token of the previous page.
    pub continue_token: Option<String>,
    /// Which revision to read.
    pub revision: RevisionMatch,
    /// Watch: send bookmarks.
    pub bookmarks: bool,
    /// Watch: start with ADDED events for the current objects, then an end-of-initial-events
    /// bookmark.
    pub send_initial_events: Option<bool>,
    /// Watch: close after this many seconds.
    pub timeout_seconds: Option<u64>,
}

/// Reads a `resourceVersion` parameter: a decimal revision. Anything else is refused with
/// upstream's message (`resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing
/// "abc": invalid syntax`), as 400: upstream answers 500 there, a bug it means to fix (a client
/// must not retry a request that cannot succeed).
fn parse_revision(raw: &str) -> Result<Revision, StatusError> {
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<Revision>() {
        Ok(revision) if digits => Ok(revision),
        _ => {
            let why = if digits { "value out of range" } else { "invalid syntax" };
            let quoted = bounded_quote(raw, true);
            Err(StatusError::bad_request(format!(
                "resourceVersion: Invalid value: {quoted}: strconv.ParseUint: parsing {quoted}: {why}"
            )))
        }
    }
}

impl Query {
    /// Checks the `resourceVersion` of a get: empty, or a revision (a get reads the latest
    /// state whatever it says, but a malformed one is refused as upstream refuses it).
    pub fn check_resource_version(&self) -> Result<(), StatusError> {
        match self.get("resourceVersion").filter(|s| !s.is_empty()) {
            Some(raw) => parse_revision(raw).map(drop),
            None => Ok(()),
        }
    }
}

impl ListOptions {
    /// Reads list options from a query.
    pub fn from_query(q: &Query, watch: bool) -> Result<Self, StatusError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())
            .map_err(StatusError::from)?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())
            .map_err(StatusError::from)?;
        let limit = match q.get("limit") {
            None | Some("") => 0,
            Some(raw) => raw
                .parse::<i64>()
                .map_err(|_| StatusError::bad_request(format!("invalid limit: {raw:?}")))?
                .max(0) as usize,
        };
        let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
        let revision = match (rv, q.get("resourceVersionMatch").filter(|s| !s.is_empty())) {
            (None, None) => RevisionMatch::Latest,
            (None, Some("NotOlderThan")) if watch && q.get("sendInitialEvents").is_some() => {
                RevisionMatch::Latest
            }
            (None, Some(m)) => {
                return Err(StatusError::invalid_options(format!(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided (got {m:?})"
                )));
            }
            (Some("0"), None | Some("NotOlderThan")) => RevisionMatch::Any,
            (Some("0"), Some("Exact")) => {
                return Err(StatusError::invalid_options(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
            (Some(raw), Some("Exact")) => RevisionMatch::Exact(parse_revision(raw)?),
            (Some(raw), Some("NotOlderThan")) => RevisionMatch::NotOlderThan(parse_revision(raw)?),
            // Legacy: a paged list at a given resourceVersion reads exactly there.
            (Some(raw), None) if limit > 0 && !watch => RevisionMatch::Exact(parse_revision(raw)?),
            (Some(raw), None) => RevisionMatch::NotOlderThan(parse_revision(raw)?),
            (Some(_), Some(other)) => {
                return Err(StatusError::invalid_options(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        };
        let send_initial_events = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
        Ok(Self {
            labels,
            fields,
            limit,
            continue_token: q.get("continue").filter(|s| !s.is_empty()).map(str::to_string),
            revision,
            bookmarks: q.flag("allowWatchBookmarks"),
            send_initial_events,
            timeout_seconds: match q.get("timeoutSeconds") {
                None | Some("") => None,
                Some(raw) => Some(raw.parse().map_err(|_| {
                    StatusError::bad_request(format!("invalid timeoutSeconds: {raw:?}"))
                })?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_validation_defaults_to_warn_and_refuses_unknown_values() {
        let parse = |raw| Query::parse(Some(raw)).field_validation("PatchOptions");
        assert_eq!(parse("").ok(), Some(FieldValidation::Warn));
        assert_eq!(parse("fieldValidation=").ok(), Some(FieldValidation::Warn));
        assert_eq!(parse("fieldValidation=Strict").ok(), Some(FieldValidation::Strict));
        assert_eq!(parse("fieldValidation=Ignore").ok(), Some(FieldValidation::Ignore));
        let error = parse("fieldValidation=strict").err().map(|e| (e.code(), e.message));
        assert_eq!(
            error,
            Some((
                422,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"".to_string()
            ))
        );
    }

    #[test]
    fn a_malformed_resource_version_is_a_bad_request_worded_as_upstream() {
        let list = |raw: &str| {
            ListOptions::from_query(&Query::parse(Some(raw)), false)
                .err()
                .map(|e| (e.code(), e.reason.as_str(), e.message))
        };
        let bad = |code, message: &str| Some((code, "BadRequest", message.to_string()));
        let cases = [
            ("resourceVersion=", None),
            ("resourceVersion=0", None),
            ("resourceVersion=12", None),
            (
                "resourceVersion=abc",
                bad(
                    400,
                    "resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax",
                ),
            ),
            (
                "resourceVersion=-1",
                bad(
                    400,
                    "resourceVersion: Invalid value: \"-1\": strconv.ParseUint: parsing \"-1\": invalid syntax",
                ),
            ),
            (
                "resourceVersion=99999999999999999999",
                bad(
                    400,
                    "resourceVersion: Invalid value: \"99999999999999999999\": strconv.ParseUint: parsing \"99999999999999999999\": value out of range",
                ),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(list(query), expected, "{query}");
        }
        let get = |raw| Query::parse(Some(raw)).check_resource_version().err().map(|e| e.code());
        assert_eq!(get("resourceVersion=7"), None);
        assert_eq!(get("resourceVersion=x"), Some(400));
        let huge = format!("resourceVersion={}", "x".repeat(100_000));
        let message = list(&huge).map(|(_, _, m)| m).unwrap_or_default();
        assert!(message.len() < 1024, "{} bytes", message.len());
    }
}
