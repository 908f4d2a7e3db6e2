//! The descriptions and markers of upstream's types, from the comments of their protobuf
//! schemas (written compactly and deflated by `build.rs`; inflated and indexed on first use,
//! then kept for the life of the process).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The encoded comments (see `build_docs.rs`), deflated.
static DEFLATED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes-docs.deflate"));

/// The comment of a message or field: its description and markers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Doc {
    /// The description, as upstream's OpenAPI documents word it.
    pub description: &'static str,
    /// `;`-separated markers without their `+` (`listType=map;listMapKey=name`).
    markers: &'static str,
}

impl Doc {
    /// The value of marker `name` (`+listType=map` → `map`), the first if repeated; `Some("")`
    /// for a marker without a value (`+optional`).
    pub fn marker(&self, name: &str) -> Option<&'static str> {
        self.markers_named(name).next()
    }

    /// Every value of marker `name`, in order (`+listMapKey` may be repeated).
    pub fn markers_named<'a>(&self, name: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        marker_values(self.markers, name)
    }
}

/// Every value of marker `name` in `markers` (`;`-separated, without their `+`), in order.
pub fn marker_values<'a>(markers: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    markers.split(';').filter_map(move |m| match m.split_once('=') {
        Some((n, value)) if n == name => Some(value),
        None if m == name => Some(""),
        _ => None,
    })
}

/// The comments of one message: its own and its fields' by protobuf field name.
#[derive(Debug, Default)]
struct MessageDocs {
    own: Doc,
    fields: Vec<(&'static str, Doc)>,
}

static INDEX: LazyLock<HashMap<&'static str, MessageDocs>> = LazyLock::new(|| {
    // Kept for the life of the process: the index borrows from it.
    let encoded: &'static str = Box::leak(inflate().into_boxed_str());
    let (texts, _) = encoded.split_once('\x1d').unwrap_or(("", ""));
    let texts: Vec<&'static str> = texts.split('\x1e').collect();
    let mut index: HashMap<&'static str, MessageDocs> = HashMap::new();
    for (message, field, markers, at) in records(encoded) {
        let description = at.parse::<usize>().ok().and_then(|i| texts.get(i)).copied();
        let doc = Doc { description: description.unwrap_or_default(), markers };
        let entry = index.entry(message).or_default();
        if field.is_empty() {
            entry.own = doc;
        } else {
            entry.fields.push((field, doc));
        }
    }
    index
});

/// The encoded comments, inflated.
fn inflate() -> String {
    let mut encoded = String::new();
    let mut inflater = flate2::read::DeflateDecoder::new(DEFLATED);
    if std::io::Read::read_to_string(&mut inflater, &mut encoded).is_err() {
        // Only a broken build gets here (the unit tests catch it): no descriptions then.
        encoded.clear();
    }
    encoded
}

/// The records of `encoded`: (message, field or empty, markers, index of the description).
fn records(encoded: &str) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    let (_, records) = encoded.split_once('\x1d').unwrap_or(("", ""));
    records.split('\x1e').filter_map(|record| {
        let mut units = record.split('\x1f');
        Some((units.next()?, units.next()?, units.next()?, units.next()?))
    })
}

/// Calls `each(message, field, markers)` for every comment (`field` empty for a message's
/// own), without keeping the comments: for the few that need only markers, at a fraction of
/// the index's memory.
pub fn for_each_comment(mut each: impl FnMut(&str, &str, &str)) {
    let encoded = inflate();
    for (message, field, markers, _) in records(&encoded) {
        each(message, field, markers);
    }
}

/// The comment of message `message` (its full protobuf name, `api.apps.v1.Deployment`).
pub fn message(message: &str) -> Doc {
    INDEX.get(message).map(|m| m.own).unwrap_or_default()
}

/// The comment of field `field` (its protobuf name) of message `message`.
pub fn field(message: &str, field: &str) -> Doc {
    INDEX
        .get(message)
        .and_then(|m| m.fields.iter().find(|(f, _)| *f == field))
        .map(|(_, d)| *d)
        .unwrap_or_default()
}
