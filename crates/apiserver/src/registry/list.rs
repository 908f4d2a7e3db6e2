//! List: served from the watch cache at the revision asked for, paginated with continue
//! tokens; pages older than the cache's window are read from the store.
//!
//! A list from the cache copies no object: it selects on each object's precomputed labels and
//! fields, and hands out the objects' shared encoded bytes. A page (`limit`) is gathered first,
//! since its metadata (the continue token) precedes its items; a list without a limit is a
//! [walk](ListItems) over a snapshot of the cache that the response writes as it goes, so its
//! memory does not grow with its size. A field selector on the indexed field (pods'
//! `spec.nodeName`) reads only the objects that have the value.

use std::collections::VecDeque;
use std::sync::Arc;

use krust_api::object::meta_str;
use krust_api::{ResourceInfo, StatusError};
use krust_store::{Revision, StoreError};
use serde_json::{Value, json};

use super::continue_token::ContinueToken;
use super::options::{ListOptions, RevisionMatch};
use super::{Registry, cache_error, decode, store_error, to_served, to_served_all};
use crate::watchcache::{CachedObject, IndexTerm, ListSnapshot, ResourceCache};

/// One object of a list or watch, in the version served.
#[derive(Debug, Clone)]
pub enum Served {
    /// A cached object whose stored version is the one served: its bytes are the answer.
    Cached(Arc<CachedObject>),
    /// An object decoded and converted to the version served.
    Value(Value),
}

impl Served {
    /// The object decoded.
    pub fn into_value(self) -> Value {
        match self {
            Served::Cached(object) => object.value(),
            Served::Value(value) => value,
        }
    }

    /// The object's JSON text.
    pub fn json(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Served::Cached(object) => std::borrow::Cow::Borrowed(&object.json),
            // Writing a `Value` into a Vec cannot fail.
            Served::Value(value) => serde_json::to_vec(value).unwrap_or_default().into(),
        }
    }

    /// The length of the object's JSON text.
    pub fn json_len(&self) -> usize {
        match self {
            Served::Cached(object) => object.json.len(),
            Served::Value(value) => {
                let mut counter = ByteCount(0);
                // Counting cannot fail.
                let _ = serde_json::to_writer(&mut counter, value);
                counter.0
            }
        }
    }

    /// Appends the object's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Served::Cached(object) => out.extend_from_slice(&object.json),
            Served::Value(value) => {
                // Writing a `Value` into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
    }
}

/// A writer that only counts.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The cached object as `info` serves it, if it passes the selectors of `opts`. Objects whose
/// stored version is the served one are selected on their precomputed labels and fields and
/// served as their bytes; others are converted, then selected.
pub(super) fn serve_selected(
    info: &ResourceInfo,
    opts: &ListOptions,
    object: &Arc<CachedObject>,
) -> Result<Option<Served>, StatusError> {
    if info.conversion.is_none() {
        return Ok(cached_selected(opts, object));
    }
    let served = to_served(info, object.value())?;
    Ok(selected(info, opts, &served).then_some(Served::Value(served)))
}

/// The cached object as it is stored, if it passes the selectors of `opts`.
fn cached_selected(opts: &ListOptions, object: &Arc<CachedObject>) -> Option<Served> {
    let selected = opts.labels.matches(object.labels())
        && opts.fields.matches(|field| object.field(field).map(str::to_string));
    selected.then(|| Served::Cached(Arc::clone(object)))
}

/// The objects of a list, in the served version, in key order. A clone walks them again
/// (the snapshot is shared, not copied).
#[derive(Clone)]
pub struct ListItems(Items);

#[derive(Clone)]
enum Items {
    /// Gathered already (a page, or objects decoded from the store).
    Gathered(std::vec::IntoIter<Served>),
    /// Selected while the response is written.
    Walk(Box<Walk>),
}

impl ListItems {
    /// Items gathered already.
    pub(crate) fn gathered(items: Vec<Served>) -> Self {
        Self(Items::Gathered(items.into_iter()))
    }

    /// Every object, decoded (for callers in the server).
    pub fn into_values(self) -> Vec<Value> {
        self.map(Served::into_value).collect()
    }
}

impl Iterator for ListItems {
    type Item = Served;

    fn next(&mut self) -> Option<Served> {
        match &mut self.0 {
            Items::Gathered(items) => items.next(),
            Items::Walk(walk) => walk.next(),
        }
    }
}

impl std::fmt::Debug for ListItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListItems")
    }
}

/// The most objects after a page that are counted for its `remainingItemCount`.
const REMAINING_COUNT_LIMIT: usize = 10_000;

/// How many objects a walk reads from the snapshot at a time.
const WALK_BATCH: usize = 256;

/// A walk over a snapshot, selecting the objects of a list as they are asked for.
#[derive(Clone)]
pub(super) struct Walk {
    opts: ListOptions,
    snapshot: ListSnapshot,
    prefix: String,
    /// The index lookup that narrows the list, if any.
    indexed: Option<Narrow>,
    /// The last key read.
    after: Option<Arc<str>>,
    ready: VecDeque<Served>,
    done: bool,
}

impl Walk {
    /// The objects under `prefix` after `after` that `opts` selects, through the index when it
    /// narrows them. Up to `limit` (0: all) are taken, then the rest yield whether more follow.
    pub(super) fn objects<'a>(
        snapshot: &'a ListSnapshot,
        indexed: Option<&Narrow>,
        prefix: &'a str,
        after: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<CachedObject>> + 'a> {
        if let Some(narrow) = indexed
            && let Some(objects) = snapshot.lookup(narrow.term(), prefix, after)
        {
            return Box::new(objects);
        }
        Box::new(snapshot.range(prefix, after))
    }
}

impl Iterator for Walk {
    type Item = Served;

    fn next(&mut self) -> Option<Served> {
        while self.ready.is_empty() && !self.done {
            let batch: Vec<Arc<CachedObject>> = Self::objects(
                &self.snapshot,
                self.indexed.as_ref(),
                &self.prefix,
                self.after.as_deref(),
            )
            .take(WALK_BATCH)
            .cloned()
            .collect();
            self.done = batch.len() < WALK_BATCH;
            if let Some(last) = batch.last() {
                self.after = Some(Arc::clone(&last.key));
            }
            self.ready.extend(batch.iter().filter_map(|o| cached_selected(&self.opts, o)));
        }
        self.ready.pop_front()
    }
}

/// An index lookup that narrows a list to the objects it could select.
#[derive(Debug, Clone)]
pub(super) enum Narrow {
    /// The resource's indexed field has this value.
    Field(&'static str, String),
    /// The object has this label (key, value).
    Label(String, String),
}

impl Narrow {
    fn term(&self) -> IndexTerm<'_> {
        match self {
            Narrow::Field(field, value) => IndexTerm::Field(field, value),
            Narrow::Label(key, value) => IndexTerm::Label(key, value),
        }
    }
}

/// How the selectors of `opts` narrow a list of `info` through the cache's indexes, if they
/// do: an exact value of the indexed field (a node's pods), else the first label the selector
/// requires one value of. Objects served in another version than the stored one are selected
/// on their converted form, so they are not narrowed.
pub(super) fn narrowed(
    info: &ResourceInfo,
    cache: &ResourceCache,
    opts: &ListOptions,
) -> Option<Narrow> {
    if info.conversion.is_some() {
        return None;
    }
    if let Some(field) = cache.shape().indexed_field()
        && let Some(value) = opts.fields.requires_exact(field)
    {
        return Some(Narrow::Field(field, value.to_string()));
    }
    let (key, value) = opts.labels.exact().next()?;
    Some(Narrow::Label(key.to_string(), value.to_string()))
}

/// One page of a list.
#[derive(Debug)]
pub struct ListResult {
    /// The objects, in the served version.
    pub items: ListItems,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The token of the next page, if there is one.
    pub continue_token: Option<String>,
    /// How many objects follow this page, when known (no selectors).
    pub remaining: Option<usize>,
}

/// The value of a selectable field of `obj` (in its served version).
pub fn field_value(info: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => meta_str(obj, "name").map(str::to_string),
        "metadata.namespace" => Some(meta_str(obj, "namespace").unwrap_or_default().to_string()),
        other => info
            .strategy
            .selectable_fields(obj)
            .into_iter()
            .find(|(f, _)| *f == other)
            .map(|(_, v)| v),
    }
}

/// Refuses field selectors on fields the resource does not offer (400, as upstream).
pub fn check_fields(info: &ResourceInfo, opts: &ListOptions) -> Result<(), StatusError> {
    let offered = info.strategy.selectable_fields(&json!({}));
    opts.fields
        .check_fields(|field| {
            field == "metadata.name"
                || (field == "metadata.namespace" && info.namespaced())
                || offered.iter().any(|(f, _)| *f == field)
        })
        .map_err(StatusError::from)?;
    Ok(())
}

/// Whether a served object passes the label and field selectors.
pub fn selected(info: &ResourceInfo, opts: &ListOptions, obj: &Value) -> bool {
    opts.labels.matches(krust_api::object::labels(obj))
        && opts.fields.matches(|field| field_value(info, obj, field))
}

/// A list (or page) of objects served in another version than the stored one: they are
/// converted a batch at a time (one call of a conversion webhook per batch), then selected.
/// A page with selectors ends with a continue token while objects remain, as upstream's pages
/// over etcd do.
fn list_converted(
    info: &ResourceInfo,
    opts: &ListOptions,
    snapshot: &ListSnapshot,
    prefix: &str,
    start_after: Option<&str>,
    revision: Revision,
) -> Result<ListResult, StatusError> {
    let filtering = !opts.labels.is_empty() || !opts.fields.is_empty();
    let mut objects = snapshot.range(prefix, start_after).peekable();
    let mut items = Vec::new();
    let mut last_key: Option<Arc<str>> = None;
    let mut remaining = None;
    let mut more = false;
    while objects.peek().is_some() {
        let want = if opts.limit > 0 { opts.limit - items.len() } else { WALK_BATCH };
        let batch: Vec<&Arc<CachedObject>> = objects.by_ref().take(want.min(WALK_BATCH)).collect();
        let served = to_served_all(info, batch.iter().map(|o| o.value()).collect())?;
        for (object, value) in batch.iter().zip(served) {
            if selected(info, opts, &value) {
                items.push(Served::Value(value));
                last_key = Some(Arc::clone(&object.key));
            }
        }
        if opts.limit > 0 && items.len() >= opts.limit {
            let rest = objects.take(REMAINING_COUNT_LIMIT + 1).count();
            more = rest > 0;
            remaining = (!filtering && rest <= REMAINING_COUNT_LIMIT).then_some(rest);
            break;
        }
    }
    let continue_token = continue_after(more, last_key, prefix, revision);
    Ok(ListResult { items: ListItems::gathered(items), revision, continue_token, remaining })
}

/// Refuses a list whose items' JSON adds up to more than `max` bytes, with upstream's 413
/// shape, before its first byte is sent. A walk is walked once more to count, which copies
/// nothing.
fn check_list_size(info: &ResourceInfo, items: &ListItems, max: usize) -> Result<(), StatusError> {
    let mut total = 0usize;
    let mut fits = |item: &Served| {
        total = total.saturating_add(item.json_len() + 1);
        total <= max
    };
    let fit = match &items.0 {
        Items::Gathered(items) => items.as_slice().iter().all(&mut fits),
        Items::Walk(walk) => (**walk).clone().all(|item| fits(&item)),
    };
    if fit { Ok(()) } else { Err(list_too_large(info, max)) }
}

/// The answer to a list larger than the server sends in one response.
pub(super) fn list_too_large(info: &ResourceInfo, max: usize) -> StatusError {
    StatusError::new(
        krust_api::Reason::RequestEntityTooLarge,
        format!(
            "Request entity too large: the list of {} is larger than the server's limit of {max} \
             bytes for one response; list it in pages with limit and continue",
            info.plural
        ),
    )
}

/// `list`, unless its items are more bytes than `max_bytes`. (Lists converted or read from
/// the store are gathered whole; lists from the cache are bounded as they are read.)
fn within_list_limit(
    info: &ResourceInfo,
    list: ListResult,
    max_bytes: Option<usize>,
) -> Result<ListResult, StatusError> {
    match max_bytes {
        Some(max) => check_list_size(info, &list.items, max).map(|()| list),
        None => Ok(list),
    }
}

/// The continue token of a page whose last object is `last_key`, when more follow.
fn continue_after(
    more: bool,
    last_key: Option<Arc<str>>,
    prefix: &str,
    revision: Revision,
) -> Option<String> {
    let key = last_key.filter(|_| more)?;
    Some(ContinueToken { revision, after: key[prefix.len()..].to_string() }.encode())
}

impl Registry {
    /// The cache of a resource.
    pub(super) fn resource_cache(
        &self,
        info: &ResourceInfo,
    ) -> Result<Arc<ResourceCache>, StatusError> {
        self.cache.resource(&info.storage_prefix()).ok_or_else(|| {
            StatusError::internal(format!("no watch cache for {}", info.storage_prefix()))
        })
    }

    /// Lists objects of a resource (in one namespace, or all), for callers in the server:
    /// however many bytes it is.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, StatusError> {
        self.list_within(info, namespace, opts, None).await
    }

    /// Lists objects of a resource for a client's request: within the server's limit of bytes
    /// per response, if it has one (a larger list without `limit` is refused, a larger page
    /// ends early with a continue token).
    pub async fn list_response(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, StatusError> {
        self.list_within(info, namespace, opts, self.list_limit).await
    }

    /// A list whose items add up to at most `max_bytes` of JSON, if given.
    async fn list_within(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
        max_bytes: Option<usize>,
    ) -> Result<ListResult, StatusError> {
        check_fields(info, opts)?;
        let cache = self.resource_cache(info)?;
        let prefix = info.storage_prefix_in(namespace);
        let token = opts.continue_token.as_deref().map(ContinueToken::decode).transpose()?;
        // `resourceVersion=0` goes with a continue token, as upstream's storage allows it.
        if token.is_some() && !matches!(opts.revision, RevisionMatch::Latest | RevisionMatch::Any) {
            return Err(StatusError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let start_after = token.as_ref().map(|t| format!("{prefix}{}", t.after));
        let wanted = match (&token, opts.revision) {
            (Some(t), _) if t.revision > 0 => Some(t.revision),
            (_, RevisionMatch::Exact(rv)) => Some(rv),
            _ => None,
        };
        let (snapshot, revision) = match wanted {
            Some(rv) => {
                self.cache.wait_for(rv).await.map_err(cache_error)?;
                match cache.snapshot_at(rv) {
                    Some(snapshot) => (snapshot, rv),
                    None => {
                        let list = self
                            .list_from_store(info, &prefix, start_after, rv, opts, token.is_some())
                            .await?;
                        return within_list_limit(info, list, max_bytes);
                    }
                }
            }
            None => {
                match opts.revision {
                    RevisionMatch::Latest => {
                        self.cache.wait_consistent().await.map_err(cache_error)?;
                    }
                    RevisionMatch::NotOlderThan(rv) => {
                        self.cache.wait_for(rv).await.map_err(cache_error)?
                    }
                    RevisionMatch::Any | RevisionMatch::Exact(_) => {}
                }
                let reached = self.cache.revision();
                let (snapshot, resource_revision) = cache.snapshot();
                (snapshot, reached.max(resource_revision))
            }
        };
        if info.conversion.is_some() {
            let list =
                list_converted(info, opts, &snapshot, &prefix, start_after.as_deref(), revision)?;
            return within_list_limit(info, list, max_bytes);
        }
        let indexed = narrowed(info, &cache, opts);
        if opts.limit == 0 {
            // No page: the response walks the snapshot as it writes.
            let walk = Walk {
                opts: opts.clone(),
                snapshot,
                after: start_after.map(Into::into),
                prefix,
                indexed,
                ready: VecDeque::new(),
                done: false,
            };
            let items = ListItems(Items::Walk(Box::new(walk)));
            if let Some(max) = max_bytes {
                check_list_size(info, &items, max)?;
            }
            return Ok(ListResult { items, revision, continue_token: None, remaining: None });
        }
        let filtering = !opts.labels.is_empty() || !opts.fields.is_empty();
        let max_bytes = max_bytes.unwrap_or(usize::MAX);
        let (mut items, mut bytes) = (Vec::new(), 0usize);
        let mut last_key: Option<Arc<str>> = None;
        // Whether the page ended at the size bound, before an object it selected.
        let mut cut = false;
        let mut objects =
            Walk::objects(&snapshot, indexed.as_ref(), &prefix, start_after.as_deref());
        for object in objects.by_ref() {
            let Some(served) = cached_selected(opts, object) else { continue };
            bytes = bytes.saturating_add(object.json.len() + 1);
            if bytes > max_bytes && !items.is_empty() {
                cut = true;
                break;
            }
            items.push(served);
            last_key = Some(Arc::clone(&object.key));
            if items.len() == opts.limit {
                break;
            }
        }
        let full = cut || items.len() == opts.limit;
        let (mut more, mut remaining) = (cut, None);
        if full {
            let cut_object = usize::from(cut);
            if filtering {
                more = cut || objects.any(|o| cached_selected(opts, o).is_some());
            } else {
                // Counted up to a bound, so that paging through a large resource stays linear;
                // past it the count is left out, as upstream may leave it out.
                let rest = cut_object + objects.take(REMAINING_COUNT_LIMIT + 1).count();
                more = rest > 0;
                remaining = (rest <= REMAINING_COUNT_LIMIT).then_some(rest);
            }
        }
        let continue_token = continue_after(more, last_key, &prefix, revision);
        Ok(ListResult { items: ListItems::gathered(items), revision, continue_token, remaining })
    }

    /// Reads a page at a revision older than the cache keeps, from the store.
    async fn list_from_store(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        mut start_after: Option<String>,
        revision: Revision,
        opts: &ListOptions,
        continuing: bool,
    ) -> Result<ListResult, StatusError> {
        let mut items = Vec::new();
        loop {
            let want = if opts.limit > 0 { opts.limit - items.len() } else { 0 };
            let page = match self
                .store
                .list(prefix, start_after.as_deref(), want, Some(revision))
                .await
            {
                Ok(page) => page,
                Err(StoreError::Compacted { .. }) if continuing => {
                    let after = start_after
                        .as_deref()
                        .map(|k| k[prefix.len()..].to_string())
                        .unwrap_or_default();
                    let token = ContinueToken { revision: -1, after }.encode();
                    return Err(StatusError {
                        continue_token: Some(token),
                        ..StatusError::gone(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                        )
                    });
                }
                Err(e) => return Err(store_error(e)),
            };
            for kv in &page.items {
                start_after = Some(kv.key.clone());
                let served = to_served(info, decode(kv)?)?;
                if selected(info, opts, &served) {
                    items.push(Served::Value(served));
                }
            }
            let full = opts.limit > 0 && items.len() >= opts.limit;
            if !page.more || full {
                let continue_token = (page.more && full).then(|| {
                    let after = start_after
                        .as_deref()
                        .map(|k| k[prefix.len()..].to_string())
                        .unwrap_or_default();
                    ContinueToken { revision, after }.encode()
                });
                let items = ListItems::gathered(items);
                return Ok(ListResult { items, revision, continue_token, remaining: None });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use krust_api::{Catalog, Reason};
    use krust_store::Store;
    use krust_store::embedded::EmbeddedStore;
    use serde_json::json;

    use crate::registry::options::{ListOptions, Query};
    use crate::registry::{Registry, ServiceRanges, WriteOptions};

    /// A registry whose responses carry at most `max` bytes of items, holding ten ConfigMaps
    /// of about 1 KB in `default`, two of them labelled `pick=yes`.
    async fn bounded_registry(dir: &tempfile::TempDir, max: usize) -> Registry {
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path()).expect("the store opens"));
        let registry = Registry::new(store, Arc::new(Catalog::builtin()), ServiceRanges::default())
            .await
            .expect("the registry starts")
            .with_list_limit(Some(max));
        let namespaces = registry.catalog().lookup("", "v1", "namespaces").expect("namespaces");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        registry.create(&namespaces, None, ns, WriteOptions::default()).await.expect("namespace");
        let info = registry.catalog().lookup("", "v1", "configmaps").expect("configmaps");
        for i in 0..10 {
            let pick = if i < 2 { "yes" } else { "no" };
            let cm = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "labels": {"pick": pick}},
                "data": {"blob": "x".repeat(1000)},
            });
            registry.create(&info, Some("default"), cm, WriteOptions::default()).await.expect("cm");
        }
        registry
    }

    fn options(query: &str) -> ListOptions {
        ListOptions::from_query(&Query::parse(Some(query)), false).expect("valid options")
    }

    fn names(items: super::ListItems) -> Vec<String> {
        items
            .map(|item| item.into_value()["metadata"]["name"].as_str().expect("name").to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_list_larger_than_a_response_may_be_is_refused_with_413() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = bounded_registry(&dir, 4500).await;
        let info = registry.catalog().lookup("", "v1", "configmaps").expect("configmaps");
        let refused = registry
            .list_response(&info, Some("default"), &options(""))
            .await
            .expect_err("ten 1 KB objects are over 4,500 bytes");
        assert_eq!(refused.reason, Reason::RequestEntityTooLarge);
        assert!(refused.message.contains("list it in pages"), "{}", refused.message);
        // A selection that fits is served; so is everything to the server's own callers.
        let picked = registry
            .list_response(&info, Some("default"), &options("labelSelector=pick%3Dyes"))
            .await
            .expect("two objects fit");
        assert_eq!(names(picked.items), ["cm-0", "cm-1"]);
        let all = registry.list(&info, Some("default"), &options("")).await.expect("unbounded");
        assert_eq!(all.items.count(), 10);
    }

    #[tokio::test]
    async fn a_page_ends_early_at_the_bound_and_paging_still_returns_every_object_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = bounded_registry(&dir, 4500).await;
        let info = registry.catalog().lookup("", "v1", "configmaps").expect("configmaps");
        let first = registry
            .list_response(&info, Some("default"), &options("limit=100"))
            .await
            .expect("a page");
        let mut token = first.continue_token.clone();
        let remaining = first.remaining;
        let mut seen = names(first.items);
        // About 1.1 KB each: three or four fit in 4,500 bytes.
        assert!((3..=4).contains(&seen.len()), "a page holds what fits: {seen:?}");
        assert_eq!(remaining, Some(10 - seen.len()));
        while let Some(t) = token {
            let page = registry
                .list_response(&info, Some("default"), &options(&format!("limit=100&continue={t}")))
                .await
                .expect("the next page");
            token = page.continue_token.clone();
            let got = names(page.items);
            assert!(!got.is_empty() && got.len() <= 4, "{got:?}");
            seen.extend(got);
        }
        let expected: Vec<String> = (0..10).map(|i| format!("cm-{i}")).collect();
        assert_eq!(seen, expected);
        // A page always holds one object, however large.
        let small_dir = tempfile::tempdir().expect("temp dir");
        let small = bounded_registry(&small_dir, 10).await;
        let one = small
            .list_response(&info, Some("default"), &options("limit=5"))
            .await
            .expect("a page of one");
        assert!(one.continue_token.is_some());
        assert_eq!(one.items.count(), 1);
    }
}
