//! List bodies, written as their items are read: the list's head (kind, apiVersion, metadata)
//! at once, then its items in chunks of about [`CHUNK`] bytes, each appended from the item's
//! encoded bytes (or, for a Table, its row), so the memory a list adds is a chunk, not its
//! size.

use bytes::Bytes;
use chrono::Utc;
use http::{Response, StatusCode};
use krust_api::ResourceInfo;
use krust_api::protobuf::MessageEncoder;
use krust_api::table::TableContext;
use serde_json::Value;

use super::response::{self, Body};
use super::table::{self, IncludeObject};
use crate::registry::{ListItems, Served};

/// About how many bytes of items go out together.
pub const CHUNK: usize = 64 * 1024;

/// What a chunk is allocated with: room for the item that takes it past [`CHUNK`], so that
/// items up to that size are appended without moving the chunk.
const CHUNK_CAPACITY: usize = 2 * CHUNK;

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
    let mut chunk = Vec::with_capacity(CHUNK_CAPACITY.max(head.len()));
    chunk.extend_from_slice(&head);
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
        Some(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_CAPACITY))))
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

/// The most bytes of encoded items a protobuf list holds before it answers: a list up to it
/// is encoded once and sent whole; a larger one is walked twice and streamed.
pub const PROTOBUF_BUFFERED: usize = 8 << 20;

/// A list in Kubernetes protobuf, or `None` (with the items given back) when its kind has no
/// protobuf message or an item cannot be encoded. The envelope declares the list's length
/// before its first byte. A list whose items encode to at most [`PROTOBUF_BUFFERED`] bytes is
/// encoded once, into one body. A larger one is walked twice: the first walk counts each
/// item's length, the second encodes the items as the body is written (as upstream streams
/// protobuf lists). So the memory a list adds is bounded: at most that constant of encoded
/// items and the body made of them, or a chunk and a length per item.
pub fn protobuf(
    info: &ResourceInfo,
    list_meta: &Value,
    items: ListItems,
) -> Result<Response<Body>, ListItems> {
    protobuf_holding(info, list_meta, items, PROTOBUF_BUFFERED)
}

/// Items a held protobuf list takes from its walk at a time.
const PROTOBUF_BATCH: usize = 1024;

/// The messages of `batch`, in order, encoded on as many threads as the machine has cores
/// (up to four) when the batch is large enough to be worth it: encoding each cached object's
/// JSON text is what a protobuf list costs.
fn encode_batch(
    encoder: &MessageEncoder,
    batch: Vec<Served>,
) -> Result<Vec<Vec<u8>>, krust_api::protobuf::ProtobufError> {
    let encode = |items: &[Served]| {
        items.iter().map(|item| encoder.encode(&item.json())).collect::<Result<Vec<_>, _>>()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads == 1 || batch.len() < 64 {
        return encode(&batch);
    }
    let per_thread = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let running: Vec<_> =
            batch.chunks(per_thread).map(|part| scope.spawn(move || encode(part))).collect();
        let mut messages = Vec::with_capacity(batch.len());
        for part in running {
            match part.join() {
                Ok(encoded) => messages.extend(encoded?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(messages)
    })
}

/// [`protobuf`], holding at most `buffered` bytes of encoded items.
fn protobuf_holding(
    info: &ResourceInfo,
    list_meta: &Value,
    items: ListItems,
    buffered: usize,
) -> Result<Response<Body>, ListItems> {
    use krust_api::protobuf::{ListEncoder, encode_list};
    let api_version = info.api_version();
    let list_kind = format!("{}List", info.kind);
    let fallback = |e: krust_api::protobuf::ProtobufError| {
        if !e.is_unsupported_kind() {
            tracing::warn!(error = %e, "cannot encode a list in protobuf; sent as JSON");
        }
    };
    let encoder = match MessageEncoder::new(&api_version, info.kind) {
        Ok(encoder) => encoder,
        Err(e) => {
            fallback(e);
            return Err(items);
        }
    };
    let mut encoded = Vec::new();
    let mut size = 0;
    let mut walk = items.clone();
    loop {
        let batch: Vec<Served> = walk.by_ref().take(PROTOBUF_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        match encode_batch(&encoder, batch) {
            Ok(messages) => {
                size += messages.iter().map(Vec::len).sum::<usize>();
                encoded.extend(messages);
            }
            Err(e) => {
                fallback(e);
                return Err(items);
            }
        }
        if size > buffered {
            break;
        }
    }
    if size <= buffered {
        return match encode_list(&api_version, &list_kind, list_meta, &encoded) {
            Ok(body) => {
                Ok(response::bytes_as(StatusCode::OK, body, krust_api::protobuf::MEDIA_TYPE))
            }
            Err(e) => {
                fallback(e);
                Err(items)
            }
        };
    }
    // Too large to hold: the lengths of the items encoded so far, then of the rest.
    let counted = encoded.len();
    let mut lengths: Vec<usize> = encoded.iter().map(Vec::len).collect();
    drop(encoded);
    let rest: Result<Vec<usize>, _> = items
        .clone()
        .skip(counted)
        .map(|item| encoder.encode(&item.json()).map(|message| message.len()))
        .collect();
    let lengths: Result<Vec<usize>, _> = rest.map(|rest| {
        lengths.extend(rest);
        lengths
    });
    let list =
        lengths.and_then(|lengths| ListEncoder::new(&api_version, &list_kind, list_meta, lengths));
    let list = match list {
        Ok(list) => list,
        Err(e) => {
            fallback(e);
            return Err(items);
        }
    };
    let length = list.encoded_len();
    let mut chunk = Vec::with_capacity(CHUNK_CAPACITY);
    chunk.extend_from_slice(list.head());
    let mut items = items.peekable();
    let mut list = Some(list);
    let chunks = std::iter::from_fn(move || {
        let current = list.as_mut()?;
        while chunk.len() < CHUNK {
            let Some(item) = items.next() else { break };
            let message = encoder.encode(&item.json());
            let written = message.and_then(|message| {
                chunk.extend_from_slice(&current.item_header(message.len())?);
                chunk.extend_from_slice(&message);
                Ok(())
            });
            if let Err(e) = written {
                // The snapshot does not change between the walks: this is a bug. The body
                // ends short, and the client sees a truncated answer rather than a wrong one.
                tracing::error!(error = %e, "a protobuf list item changed between its walks");
                list = None;
                return Some(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        if items.peek().is_none() {
            match list.take().map(ListEncoder::finish) {
                Some(Ok(tail)) => chunk.extend_from_slice(&tail),
                Some(Err(e)) => tracing::error!(error = %e, "cannot end a protobuf list"),
                None => {}
            }
        }
        Some(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_CAPACITY))))
    });
    let mut response = response::streamed(
        StatusCode::OK,
        futures::stream::iter(chunks),
        krust_api::protobuf::MEDIA_TYPE,
    );
    response.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use krust_api::Catalog;
    use serde_json::json;

    use super::*;
    use crate::registry::Served;

    #[tokio::test]
    async fn a_protobuf_list_is_the_same_held_whole_or_streamed() {
        let catalog = Catalog::builtin();
        let info = catalog.lookup("", "v1", "configmaps").expect("configmaps");
        let items = || {
            let served = (0..300)
                .map(|i| {
                    Served::Value(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i}"), "namespace": "ns",
                                     "resourceVersion": "7"},
                        "data": {"key": "x".repeat(i * 10)},
                    }))
                })
                .collect();
            ListItems::gathered(served)
        };
        let meta = json!({"resourceVersion": "9"});
        let body = |response: Response<Body>| async move {
            response.into_body().collect().await.expect("a body").to_bytes()
        };
        let Ok(whole) = protobuf_holding(&info, &meta, items(), PROTOBUF_BUFFERED) else {
            panic!("encoded")
        };
        let Ok(streamed) = protobuf_holding(&info, &meta, items(), 100) else { panic!("encoded") };
        let (whole, streamed) = (body(whole).await, body(streamed).await);
        assert_eq!(whole, streamed);
        let list = krust_api::protobuf::decode(&whole).expect("decodes");
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(300));
        assert_eq!(list["items"][299]["data"]["key"], "x".repeat(2990));
    }
}
