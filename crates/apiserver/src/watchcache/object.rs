//! One object as the cache keeps it: the bytes a client is sent, beside a small index entry
//! (its labels and selectable fields), decoded only where logic needs the object.

use std::sync::Arc;

use bytes::Bytes;
use krust_api::ResourceInfo;
use krust_api::object::{meta_str, metadata_mut};
use krust_api::sparse::Sparse;
use krust_store::{KeyValue, Revision};
use serde_json::Value;

/// How a resource's objects are kept: the storage version's catalog entry, whose `apiVersion`
/// and `kind` the kept bytes carry and whose strategy names the selectable fields.
#[derive(Clone)]
pub struct Shape {
    /// The catalog entry of the storage version.
    pub info: ResourceInfo,
    /// What indexing an object reads (its `apiVersion`, `kind`, name, namespace, labels and
    /// resourceVersion, and the strategy's selectable paths), decoded alone; `None` when the
    /// strategy needs the whole object.
    index: Option<Arc<Sparse>>,
}

/// The members every index entry reads.
const INDEXED_MEMBERS: [&str; 6] = [
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.labels",
    "metadata.resourceVersion",
];

impl Shape {
    /// The shape of objects stored as `info` (an entry whose version is the storage version).
    pub fn new(info: ResourceInfo) -> Self {
        let index = info
            .strategy
            .selectable_paths()
            .map(|paths| Arc::new(Sparse::new(INDEXED_MEMBERS.iter().chain(paths))));
        Self { info, index }
    }

    /// One shape per storage prefix of `catalog`: the entry without a conversion (any entry
    /// of the prefix when none is).
    pub fn of_catalog(catalog: &krust_api::Catalog) -> Vec<Shape> {
        let mut by_prefix: std::collections::BTreeMap<String, ResourceInfo> = Default::default();
        for info in catalog.entries().iter() {
            let entry = by_prefix.entry(info.storage_prefix()).or_insert_with(|| info.clone());
            if entry.conversion.is_some() && info.conversion.is_none() {
                *entry = info.clone();
            }
        }
        by_prefix.into_values().map(Shape::new).collect()
    }

    /// The shapes of `catalog` whose storage prefix is one of `prefixes`.
    pub fn of_prefixes(catalog: &krust_api::Catalog, prefixes: &[&str]) -> Vec<Shape> {
        let mut shapes = Self::of_catalog(catalog);
        shapes.retain(|s| prefixes.contains(&s.info.storage_prefix().as_str()));
        shapes
    }

    /// The field the cache indexes, if any (pods: `spec.nodeName`).
    pub fn indexed_field(&self) -> Option<&'static str> {
        self.info.strategy.indexed_field()
    }

    /// Whether `value` (a stored object, or what an index read of it) is in this shape's
    /// storage version, without a resourceVersion: its stored bytes are then what a client
    /// is sent, once the resourceVersion is written into them.
    fn served_as_stored(&self, value: &Value) -> bool {
        value.get("apiVersion").and_then(Value::as_str) == Some(self.info.api_version().as_str())
            && value.get("kind").and_then(Value::as_str) == Some(self.info.kind)
            && value.pointer("/metadata/resourceVersion").is_none()
    }
}

/// One object: encoded once, shared by every reader.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: Arc<str>,
    /// The object as JSON, in its storage version, with its `apiVersion`, `kind` and
    /// `metadata.resourceVersion`: what a client of the storage version is sent.
    pub json: Bytes,
    /// The revision of its last change.
    pub mod_revision: Revision,
    /// The names of its selectable fields (`metadata.name`, `metadata.namespace` and the
    /// strategy's), one list shared by every object that has the same.
    field_names: Arc<[&'static str]>,
    /// The fields' values, as field selectors read them, then its labels in the object's
    /// order: key, value, key, value...
    texts: Texts,
    /// About how many bytes it takes in memory.
    pub size: usize,
    /// `json` is the stored value as it is, with its resourceVersion written in: what a read
    /// of the store would decode (not converted, nor defaulted on read).
    pub verbatim: bool,
}

impl CachedObject {
    /// Decodes a stored value once to index it; `None` (logged) when the bytes are not a JSON
    /// object. The stored bytes are kept as they are, with the resourceVersion written into
    /// their `metadata`, when they already carry the storage version's `apiVersion` and `kind`
    /// (what this server stores); then only the members the index reads are decoded, when the
    /// strategy names them. Otherwise the object is decoded whole and encoded again.
    pub fn decode(kv: KeyValue, shape: &Shape) -> Option<Self> {
        let revision = kv.mod_revision.to_string();
        let mut json = kv.value;
        if let Some(index) = &shape.index
            && let Ok(view @ Value::Object(_)) = index.decode(&json)
            && shape.served_as_stored(&view)
            && insert_resource_version(&mut json, &revision)
        {
            return Some(
                Self::indexed(kv.key.into(), &view, json, kv.mod_revision, shape).verbatim(),
            );
        }
        let mut value: Value = match serde_json::from_slice(&json) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                tracing::error!(key = %kv.key, "stored value is not a JSON object; skipped");
                return None;
            }
        };
        let defaulted = shape.info.strategy.default_on_read(&mut value);
        if !defaulted
            && shape.served_as_stored(&value)
            && insert_resource_version(&mut json, &revision)
        {
            return Some(
                Self::indexed(kv.key.into(), &value, json, kv.mod_revision, shape).verbatim(),
            );
        }
        metadata_mut(&mut value).insert("resourceVersion".into(), Value::String(revision));
        let value = match crate::registry::to_served(&shape.info, value) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e.message, "stored value not converted; skipped");
                return None;
            }
        };
        Some(Self::new(kv.key.into(), &value, kv.mod_revision, shape))
    }

    /// Indexes and encodes `value`, an object in the storage version of `shape`.
    fn new(key: Arc<str>, value: &Value, mod_revision: Revision, shape: &Shape) -> Self {
        let json = serde_json::to_vec(value).unwrap_or_default();
        Self::indexed(key, value, json, mod_revision, shape)
    }

    /// Indexes `value`, whose encoding is `json`.
    fn indexed(
        key: Arc<str>,
        value: &Value,
        mut json: Vec<u8>,
        mod_revision: Revision,
        shape: &Shape,
    ) -> Self {
        let mut fields = vec![
            ("metadata.name", meta_str(value, "name").unwrap_or_default().to_string()),
            ("metadata.namespace", meta_str(value, "namespace").unwrap_or_default().to_string()),
        ];
        fields.extend(shape.info.strategy.selectable_fields(value));
        let names: Vec<&'static str> = fields.iter().map(|(f, _)| *f).collect();
        let labels = krust_api::object::labels(value).flat_map(|(k, v)| [k, v]);
        let texts = Texts::new(fields.iter().map(|(_, v)| v.as_str()).chain(labels));
        json.shrink_to_fit();
        let size = std::mem::size_of::<Self>() + key.len() + json.len() + texts.heap_size();
        Self {
            key,
            json: Bytes::from(json),
            mod_revision,
            field_names: shared_names(names),
            texts,
            size,
            verbatim: false,
        }
    }

    /// The same, marked as the stored value as it is.
    fn verbatim(mut self) -> Self {
        self.verbatim = true;
        self
    }

    /// The object decoded (in its storage version), for logic that reads it.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The object decoded into a typed view.
    pub fn decode_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// Its labels.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        let first = self.field_names.len();
        let pairs = self.texts.len().saturating_sub(first) / 2;
        (0..pairs).map(move |i| (self.texts.get(first + 2 * i), self.texts.get(first + 2 * i + 1)))
    }

    /// The value of a selectable field (`None`: the resource has no such field).
    pub fn field(&self, field: &str) -> Option<&str> {
        let i = self.field_names.iter().position(|f| *f == field)?;
        Some(self.texts.get(i))
    }
}

/// The list `names`, shared with every object whose selectable fields are the same (one list
/// per resource, in practice).
fn shared_names(names: Vec<&'static str>) -> Arc<[&'static str]> {
    static LISTS: std::sync::Mutex<Vec<Arc<[&'static str]>>> = std::sync::Mutex::new(Vec::new());
    let mut lists = LISTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(list) = lists.iter().find(|l| l.as_ref() == names.as_slice()) {
        return Arc::clone(list);
    }
    let list: Arc<[&'static str]> = names.into();
    // Strategies name their fields from a fixed set, so the lists are few; a strategy that
    // varied them would only stop sharing.
    if lists.len() < 1024 {
        lists.push(Arc::clone(&list));
    }
    list
}

/// A few short strings in one allocation: their bytes end to end, and where each ends.
#[derive(Debug)]
struct Texts {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl Texts {
    fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for t in texts {
            text.push_str(t);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The `i`th string (empty past the end).
    fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).and_then(|j| self.ends.get(j)).map_or(0, |e| *e as usize);
        let end = self.ends.get(i).map_or(start, |e| *e as usize);
        self.text.get(start..end).unwrap_or_default()
    }

    fn heap_size(&self) -> usize {
        self.text.len() + self.ends.len() * std::mem::size_of::<u32>()
    }
}

/// Writes `"resourceVersion":"<revision>"` at the end of the top-level `metadata` object of
/// `json` (an object), in the same buffer (grown by exactly that much, so that the cache keeps
/// the store's allocation rather than a copy of it); `false` (and `json` unchanged) when it
/// has no such object.
fn insert_resource_version(json: &mut Vec<u8>, revision: &str) -> bool {
    let Some((open, close)) = top_level_object(json, b"metadata") else { return false };
    let empty = json[open + 1..close].iter().all(u8::is_ascii_whitespace);
    let mut member = Vec::with_capacity(revision.len() + 22);
    if !empty {
        member.push(b',');
    }
    member.extend_from_slice(b"\"resourceVersion\":\"");
    member.extend_from_slice(revision.as_bytes());
    member.push(b'"');
    json.reserve_exact(member.len());
    json.splice(close..close, member);
    true
}

/// Where the object value of the top-level member `name` of the JSON object `json` starts
/// (its `{`) and ends (its `}`), by one scan that skips strings and counts nesting.
fn top_level_object(json: &[u8], name: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut i = 0;
    // The start of the member value being looked for, once found.
    let mut open = None;
    // At depth 1, the key just read, until its value starts.
    let mut key: Option<(usize, usize)> = None;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                i = string_end(json, start);
                if depth == 1 && open.is_none() {
                    key = Some((start, i));
                }
            }
            b':' => {}
            b'{' | b'[' => {
                if depth == 1
                    && json[i] == b'{'
                    && open.is_none()
                    && key.is_some_and(|(s, e)| json.get(s..e) == Some(name))
                {
                    open = Some((i, depth + 1));
                }
                depth += 1;
                key = None;
            }
            b'}' | b']' => {
                if let Some((start, inner)) = open
                    && depth == inner
                {
                    return Some((start, i));
                }
                depth = depth.checked_sub(1)?;
            }
            b',' => key = None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the string whose text starts at `start` ends (its closing `"`, or the end of `json`).
/// The text is scanned eight bytes at a time, since most of an object's bytes are in strings.
fn string_end(json: &[u8], start: usize) -> usize {
    let mut i = start;
    loop {
        i = quote_or_backslash(json, i);
        match json.get(i) {
            Some(b'\\') => i += 2,
            _ => return i.min(json.len()),
        }
    }
}

/// The first `"` or `\` in `bytes` at or after `from` (`bytes.len()` when there is none).
fn quote_or_backslash(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// Flags the bytes of `word` that are zero (the lowest flag is exact; it is the one read).
    fn zeros(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let mut i = from;
    while let Some(eight) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        let word = u64::from_le_bytes(word);
        let found =
            zeros(word ^ (ONES * u64::from(b'"'))) | zeros(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or_default();
    rest.iter().position(|c| matches!(c, b'"' | b'\\')).map_or(bytes.len(), |p| i + p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_resource_version(mut json: Vec<u8>, revision: &str) -> Option<Vec<u8>> {
        insert_resource_version(&mut json, revision).then_some(json)
    }

    #[test]
    fn strings_end_at_their_first_unescaped_quote() {
        let text = br#"abcdefghij\"klmnop\\" tail"#;
        assert_eq!(string_end(text, 0), text.len() - 6);
        for n in 0..20 {
            let mut s = vec![b'x'; n];
            s.extend_from_slice(br#"\""#);
            s.extend(std::iter::repeat_n(b'y', n));
            s.push(b'"');
            assert_eq!(string_end(&s, 0), s.len() - 1, "{n}");
            assert_eq!(quote_or_backslash(&s, 0), n);
        }
        assert_eq!(string_end(b"unterminated\\", 0), 13);
        assert_eq!(string_end(b"ends with a backslash\\", 3), 22);
    }

    fn pod_shape() -> Shape {
        let catalog = krust_api::Catalog::builtin();
        Shape::new(catalog.lookup("", "v1", "pods").unwrap())
    }

    #[test]
    fn the_resource_version_is_written_at_the_end_of_the_top_level_metadata() {
        let json = br#"{"kind":"Pod","spec":{"metadata":{"x":"}"}},"metadata":{"name":"a\"}b","labels":{"k":"v"}},"z":1}"#;
        let out = with_resource_version(json.to_vec(), "42").unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["metadata"]["resourceVersion"], "42");
        assert_eq!(value["spec"]["metadata"], serde_json::json!({"x": "}"}));
        assert!(out.ends_with(br#""labels":{"k":"v"},"resourceVersion":"42"},"z":1}"#));
        let empty = with_resource_version(br#"{"metadata":{}}"#.to_vec(), "7").unwrap();
        assert_eq!(empty, br#"{"metadata":{"resourceVersion":"7"}}"#);
        let spaced =
            with_resource_version(br#"{ "metadata" : { "name" : "a" } }"#.to_vec(), "7").unwrap();
        let value: Value = serde_json::from_slice(&spaced).unwrap();
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        assert!(with_resource_version(br#"{"spec":{"metadata":{}}}"#.to_vec(), "7").is_none());
    }

    #[test]
    fn an_object_is_kept_as_the_bytes_a_client_gets_beside_its_labels_and_fields() {
        let kv = KeyValue {
            key: "/registry/core/pods/a/web".into(),
            value: br#"{"metadata":{"name":"web","namespace":"a","labels":{"app":"web"}},"spec":{"nodeName":"n1"}}"#.to_vec(),
            create_revision: 4,
            mod_revision: 7,
        };
        let object = CachedObject::decode(kv, &pod_shape()).unwrap();
        let value = object.value();
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Pod");
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        assert_eq!(object.labels().collect::<Vec<_>>(), [("app", "web")]);
        assert_eq!(object.field("spec.nodeName"), Some("n1"));
        assert_eq!(object.field("metadata.namespace"), Some("a"));
        assert_eq!(object.field("spec.nope"), None);
        assert!(object.size >= object.json.len() && object.size < 2 * object.json.len() + 600);
    }
}
