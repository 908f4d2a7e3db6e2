//! List bodies, written as their items are read: the list's head (kind, apiVersion, metadata)
//! at once, then its items in chunks of about [`CHUNK`] bytes, each appended from the item's
//! encoded bytes (or, for a Table, its row), so the memory a list adds is a chunk, not its
//! size.

use bytes::Bytes;
use chrono::Utc;
use http::{Response, StatusCode};
use krust_api::ResourceInfo;
use krust_api::table::TableContext;
use serde_json::Value;

use super::response::{self, Body};
use super::table::{self, IncludeObject};
use crate::registry::{ListItems, Served};

/// About how many bytes of items go out together.
pub const CHUNK: usize = 64 * 1024;

/// How an item is written into the body.
enum Form {
    /// The object's JSON.
    Object,
    /// Its Table row.
    Row(Box<(ResourceInfo, IncludeObject, TableContext)>),
    /// Its metadata alone, as a `PartialObjectMetadata`.
    Metadata,
}

/// A list's JSON body: `head` (a list object whose `items` are empty) with `items` written
/// into the array the head names last (`items`, or a Table's `rows`).
fn body(head: &Value, items: ListItems, form: Form) -> Response<Body> {
    let mut head = serde_json::to_vec(head).unwrap_or_default();
    // `...,"items":[]}`: the items go before the closing `]}`.
    let opened = head.len().saturating_sub(2);
    let tail = Bytes::copy_from_slice(&head[opened..]);
    head.truncate(opened);
    let mut items = items.peekable();
    let mut first = true;
    let mut chunk = head;
    let mut ended = false;
    let chunks = std::iter::from_fn(move || {
        if ended {
            return None;
        }
        while chunk.len() < CHUNK {
            let Some(item) = items.next() else { break };
            if !std::mem::take(&mut first) {
                chunk.push(b',');
            }
            write(&form, item, &mut chunk);
        }
        if items.peek().is_none() {
            ended = true;
            chunk.extend_from_slice(&tail);
            chunk.push(b'\n');
        }
        Some(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK + 4096))))
    });
    response::streamed(StatusCode::OK, futures::stream::iter(chunks), "application/json")
}

fn write(form: &Form, item: Served, out: &mut Vec<u8>) {
    match form {
        Form::Object => item.write_json(out),
        Form::Row(row) => {
            let (info, include, ctx) = &**row;
            let row = table::row(info, &item.into_value(), *include, ctx);
            let _ = serde_json::to_writer(&mut *out, &row);
        }
        Form::Metadata => {
            let partial = response::partial_object_metadata(&item.into_value());
            let _ = serde_json::to_writer(&mut *out, &partial);
        }
    }
}

/// A `PartialObjectMetadataList` of `items`, with `list_meta`.
pub fn metadata(list_meta: Value, items: ListItems) -> Response<Body> {
    let head = serde_json::json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": [],
    });
    body(&head, items, Form::Metadata)
}

/// A list (`<Kind>List`) with `list_meta` and `items`.
pub fn list(info: &ResourceInfo, list_meta: Value, items: ListItems) -> Response<Body> {
    let head = serde_json::json!({
        "kind": format!("{}List", info.kind),
        "apiVersion": info.api_version(),
        "metadata": list_meta,
        "items": [],
    });
    body(&head, items, Form::Object)
}

/// A Table of `items`, with `list_meta`.
pub fn table(
    info: &ResourceInfo,
    list_meta: Value,
    items: ListItems,
    include: IncludeObject,
) -> Response<Body> {
    let head = table::head(info, list_meta);
    let row = (info.clone(), include, TableContext { now: Utc::now() });
    body(&head, items, Form::Row(Box::new(row)))
}

/// A list in Kubernetes protobuf, or `None` (with the items given back) when its kind has no
/// protobuf message or an item cannot be encoded. The envelope declares the list's length
/// before its first byte, so a first walk counts each item's length; the second encodes the
/// items as the body is written (as upstream streams protobuf lists), so the memory a list adds
/// is a chunk and a length per item.
pub fn protobuf(
    info: &ResourceInfo,
    list_meta: &Value,
    items: ListItems,
) -> Result<Response<Body>, ListItems> {
    use krust_api::protobuf::{ListEncoder, encode_message, encoded_len};
    let api_version = info.api_version();
    let kind = info.kind;
    let lengths: Result<Vec<usize>, _> =
        items.clone().map(|item| encoded_len(&api_version, kind, &item.into_value())).collect();
    let encoder = lengths.and_then(|lengths| {
        ListEncoder::new(&api_version, &format!("{kind}List"), list_meta, lengths)
    });
    let encoder = match encoder {
        Ok(encoder) => encoder,
        Err(e) => {
            if !e.is_unsupported_kind() {
                tracing::warn!(error = %e, "cannot encode a list in protobuf; sent as JSON");
            }
            return Err(items);
        }
    };
    let length = encoder.encoded_len();
    let mut chunk = encoder.head().to_vec();
    let mut items = items.peekable();
    let mut encoder = Some(encoder);
    let chunks = std::iter::from_fn(move || {
        let current = encoder.as_mut()?;
        while chunk.len() < CHUNK {
            let Some(item) = items.next() else { break };
            let message = encode_message(&api_version, kind, &item.into_value());
            let written = message.and_then(|message| {
                chunk.extend_from_slice(&current.item_header(message.len())?);
                chunk.extend_from_slice(&message);
                Ok(())
            });
            if let Err(e) = written {
                // The snapshot does not change between the walks: this is a bug. The body
                // ends short, and the client sees a truncated answer rather than a wrong one.
                tracing::error!(error = %e, "a protobuf list item changed between its walks");
                encoder = None;
                return Some(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        if items.peek().is_none() {
            match encoder.take().map(ListEncoder::finish) {
                Some(Ok(tail)) => chunk.extend_from_slice(&tail),
                Some(Err(e)) => tracing::error!(error = %e, "cannot end a protobuf list"),
                None => {}
            }
        }
        Some(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK + 4096))))
    });
    let mut response = response::streamed(
        StatusCode::OK,
        futures::stream::iter(chunks),
        krust_api::protobuf::MEDIA_TYPE,
    );
    response.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
    Ok(response)
}
