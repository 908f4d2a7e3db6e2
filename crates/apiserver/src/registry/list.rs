//! List: served from the watch cache at the revision asked for, paginated with continue
//! tokens; pages older than the cache's window are read from the store.

use std::sync::Arc;

use krust_api::object::meta_str;
use krust_api::{ResourceInfo, StatusError};
use krust_store::{Revision, StoreError};
use serde_json::{Value, json};

use super::continue_token::ContinueToken;
use super::options::{ListOptions, RevisionMatch};
use super::{Registry, cache_error, decode, store_error, to_served};
use crate::watchcache::ResourceCache;

/// One page of a list.
#[derive(Debug)]
pub struct ListResult {
    /// The objects, in the served version.
    pub items: Vec<Value>,
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
            matches!(field, "metadata.name" | "metadata.namespace")
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

impl Registry {
    /// The cache of a resource.
    pub(super) fn resource_cache(
        &self,
        info: &ResourceInfo,
    ) -> Result<&Arc<ResourceCache>, StatusError> {
        self.cache.resource(&info.storage_prefix()).ok_or_else(|| {
            StatusError::internal(format!("no watch cache for {}", info.storage_prefix()))
        })
    }

    /// Lists objects of a resource (in one namespace, or all).
    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, StatusError> {
        check_fields(info, opts)?;
        let cache = self.resource_cache(info)?;
        let prefix = info.storage_prefix_in(namespace);
        let token = opts.continue_token.as_deref().map(ContinueToken::decode).transpose()?;
        if token.is_some() && !matches!(opts.revision, RevisionMatch::Latest) {
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
                        return self
                            .list_from_store(info, &prefix, start_after, rv, opts, token.is_some())
                            .await;
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
        let filtering = !opts.labels.is_empty() || !opts.fields.is_empty();
        let mut items = Vec::new();
        let mut last_key = None;
        let mut objects = snapshot.range(&prefix, start_after.as_deref());
        for object in objects.by_ref() {
            let served = to_served(info, object.value.clone());
            if !selected(info, opts, &served) {
                continue;
            }
            items.push(served);
            if opts.limit > 0 && items.len() == opts.limit {
                last_key = Some(object.key.clone());
                break;
            }
        }
        let (mut more, mut remaining) = (false, None);
        if last_key.is_some() {
            if filtering {
                more = objects.any(|o| selected(info, opts, &to_served(info, o.value.clone())));
            } else {
                let rest = objects.count();
                more = rest > 0;
                remaining = Some(rest);
            }
        }
        let continue_token = match (more, last_key) {
            (true, Some(key)) => {
                Some(ContinueToken { revision, after: key[prefix.len()..].to_string() }.encode())
            }
            _ => None,
        };
        Ok(ListResult { items, revision, continue_token, remaining })
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
                let served = to_served(info, decode(kv)?);
                if selected(info, opts, &served) {
                    items.push(served);
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
                return Ok(ListResult { items, revision, continue_token, remaining: None });
            }
        }
    }
}
