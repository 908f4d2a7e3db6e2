//! The OpenAPI documents over HTTP: `/openapi/v2` and the `/openapi/v3` index and group
//! version documents, built by `krust_api::openapi` from the catalog and the
//! CustomResourceDefinitions in the watch cache.
//!
//! A document is built on its first request, encoded once, and kept with its ETag (the
//! SHA-512 of its bytes, in upper-case hex, as upstream's) until what it describes changes:
//! each request computes a cheap fingerprint of its inputs (the entries it covers and the
//! modification revisions of the definitions they come from) and rebuilds only a document
//! whose fingerprint moved. `If-None-Match` is answered `304 Not Modified`; the index names
//! each group version's document with `?hash=<etag>`, and a request with the current hash
//! may be cached for ever (`Cache-Control: public, immutable`), one with an old hash is
//! redirected to the current one (upstream's `301`).
//!
//! Clients that accept gzip get the documents gzipped, as upstream's handler sends them (each
//! compressed once, on the first such request).
//!
//! Negotiation is upstream's: JSON for `application/json` or a wildcard; `/openapi/v2` also in
//! protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, gnostic's messages,
//! what client-go asks for; encoded once per document, on the first such request), as is the
//! legacy `/swagger-2.0.0.pb-v1`; `406 Not Acceptable` for a v3 document asked for in
//! protobuf only.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use krust_api::ResourceInfo;
use krust_api::openapi::Served;
use serde_json::{Map, Value, json};

use crate::ApiServer;
use crate::http::response::Body;
use crate::watchcache::ListSnapshot;

/// Where the CustomResourceDefinitions are stored.
const DEFINITIONS: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// The media type of protobuf OpenAPI v2 documents, as upstream names its answers.
const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The media type client-go asks protobuf OpenAPI v2 documents with.
const PROTOBUF_V2_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// An encoded document, its ETag, and its gzipped and protobuf forms once a client asked for
/// them.
#[derive(Clone)]
struct Encoded {
    bytes: Bytes,
    etag: String,
    gzipped: Arc<OnceLock<Bytes>>,
    protobuf: Arc<OnceLock<Bytes>>,
}

impl Encoded {
    fn new(value: &Value) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA512, &bytes);
        let etag = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Self { bytes: Bytes::from(bytes), etag, gzipped: Arc::default(), protobuf: Arc::default() }
    }

    /// The v2 document in protobuf (gnostic's `openapi.v2.Document`).
    fn protobuf(&self) -> Bytes {
        self.protobuf
            .get_or_init(|| {
                let doc: Value = serde_json::from_slice(&self.bytes).unwrap_or_default();
                Bytes::from(krust_api::openapi::v2_protobuf::encode(&doc))
            })
            .clone()
    }

    /// The document gzipped (as upstream's handler sends it to clients that accept it).
    fn gzipped(&self) -> Bytes {
        self.gzipped
            .get_or_init(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.bytes.len() / 4),
                    flate2::Compression::fast(),
                );
                match std::io::Write::write_all(&mut encoder, &self.bytes)
                    .and_then(|()| encoder.finish())
                {
                    Ok(gzipped) => Bytes::from(gzipped),
                    Err(_) => Bytes::new(),
                }
            })
            .clone()
    }
}

/// The documents built so far, each with the fingerprint of what it was built from.
#[derive(Default)]
pub struct OpenApi {
    v2: Mutex<Option<(u64, Encoded)>>,
    v3: Mutex<HashMap<String, (u64, Encoded)>>,
    index: Mutex<Option<(u64, Encoded)>>,
}

/// What the documents are built from now: the catalog's entries and a snapshot of the
/// definitions, with their storage keys and modification revisions.
struct Inputs {
    entries: Arc<[ResourceInfo]>,
    definitions: Vec<(Arc<str>, i64)>,
    snapshot: Option<ListSnapshot>,
}

impl Inputs {
    fn of(api: &ApiServer) -> Self {
        let entries = api.registry.catalog().entries();
        let snapshot = api.registry.cache().resource(DEFINITIONS).map(|c| c.snapshot().0);
        let definitions = snapshot
            .as_ref()
            .map(|s| {
                s.range(DEFINITIONS, None).map(|o| (Arc::clone(&o.key), o.mod_revision)).collect()
            })
            .unwrap_or_default();
        Self { entries, definitions, snapshot }
    }

    /// A fingerprint of the entries `include` selects and of their definitions.
    fn fingerprint(&self, include: impl Fn(&ResourceInfo) -> bool) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        for e in self.entries.iter().filter(|e| include(e)) {
            (e.group, e.version, e.plural, e.kind, e.definition).hash(&mut hasher);
            if !e.definition.is_empty() {
                let key = format!("{DEFINITIONS}{}", e.definition);
                self.definitions
                    .iter()
                    .find(|(k, _)| **k == *key)
                    .map(|(_, r)| *r)
                    .hash(&mut hasher);
            }
        }
        hasher.finish()
    }

    /// The definitions the entries `include` selects come from, decoded.
    fn definitions(&self, include: impl Fn(&ResourceInfo) -> bool) -> Vec<Value> {
        let Some(snapshot) = &self.snapshot else { return Vec::new() };
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| include(e) && !e.definition.is_empty()) {
            let key = format!("{DEFINITIONS}{}", e.definition);
            if out.iter().any(|d: &Value| krust_api::object::name(d) == Some(e.definition)) {
                continue;
            }
            if let Some(object) = snapshot.range(&key, None).find(|o| *o.key == *key) {
                out.push(object.value());
            }
        }
        out
    }
}

/// The `info.version` of the documents.
fn version() -> String {
    let (major, minor) = super::KUBERNETES_VERSION;
    format!("v{major}.{minor}.0")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

impl OpenApi {
    /// The `/openapi/v2` document.
    fn v2(&self, inputs: &Inputs) -> Encoded {
        let fingerprint = inputs.fingerprint(|_| true);
        let mut cached = self.v2.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((f, doc)) = &*cached
            && *f == fingerprint
        {
            return doc.clone();
        }
        let definitions = inputs.definitions(|_| true);
        let version = version();
        let served =
            Served { entries: &inputs.entries, definitions: &definitions, version: &version };
        let started = std::time::Instant::now();
        let doc = Encoded::new(&served.v2());
        tracing::debug!(
            bytes = doc.bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built /openapi/v2"
        );
        *cached = Some((fingerprint, doc.clone()));
        doc
    }

    /// The document of one group version, if served.
    fn v3(&self, inputs: &Inputs, group: &str, version: &str) -> Option<Encoded> {
        let include = |e: &ResourceInfo| e.group == group && e.version == version;
        if !inputs.entries.iter().any(include) {
            return None;
        }
        let fingerprint = inputs.fingerprint(include);
        let path = gv_path(group, version);
        let mut cached = self.v3.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((f, doc)) = cached.get(&path)
            && *f == fingerprint
        {
            return Some(doc.clone());
        }
        let definitions = inputs.definitions(include);
        let info_version = self::version();
        let served =
            Served { entries: &inputs.entries, definitions: &definitions, version: &info_version };
        let doc = Encoded::new(&served.v3(group, version)?);
        cached.insert(path, (fingerprint, doc.clone()));
        Some(doc)
    }

    /// The `/openapi/v3` index: every group version's document, named with its hash.
    fn index(&self, inputs: &Inputs) -> Encoded {
        let fingerprint = inputs.fingerprint(|_| true);
        if let Some((f, doc)) = &*self.index.lock().unwrap_or_else(|e| e.into_inner())
            && *f == fingerprint
        {
            return doc.clone();
        }
        let started = std::time::Instant::now();
        let served = Served { entries: &inputs.entries, definitions: &[], version: "" };
        let mut paths = Map::new();
        for (group, version) in served.group_versions() {
            let Some(doc) = self.v3(inputs, group, version) else { continue };
            let path = gv_path(group, version);
            let url = format!("/openapi/v3/{path}?hash={}", doc.etag);
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
        // The documents of group versions no longer served go.
        self.v3
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|path, _| paths.contains_key(path));
        let doc = Encoded::new(&json!({"paths": paths}));
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built the /openapi/v3 documents"
        );
        *self.index.lock().unwrap_or_else(|e| e.into_inner()) = Some((fingerprint, doc.clone()));
        doc
    }
}

/// Answers `path` if it is an OpenAPI document's; `None` otherwise.
pub async fn serve(
    api: &Arc<ApiServer>,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let target = match path {
        "/openapi/v2" if wants_protobuf_v2(accept) => Target::V2Protobuf,
        "/openapi/v2" => Target::V2,
        // The legacy protobuf path older clients fall back to.
        "/swagger-2.0.0.pb-v1" => Target::V2Protobuf,
        "/openapi/v3" | "/openapi/v3/" => Target::Index,
        p => {
            let gv = p.strip_prefix("/openapi/v3/")?;
            match gv.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
                ["api", version] => Target::GroupVersion(String::new(), version.to_string()),
                ["apis", group, version] => {
                    Target::GroupVersion(group.to_string(), version.to_string())
                }
                _ => Target::GroupVersion(String::new(), String::new()),
            }
        }
    };
    if !matches!(target, Target::Index | Target::V2Protobuf) && !accepts_json(accept) {
        return Some(bytes(StatusCode::NOT_ACCEPTABLE, Bytes::new(), "text/plain"));
    }
    let gzip = accepts_gzip(headers);
    let api = Arc::clone(api);
    let built = tokio::task::spawn_blocking(move || {
        let inputs = Inputs::of(&api);
        let doc = match &target {
            Target::V2 | Target::V2Protobuf => Some(api.openapi.v2(&inputs)),
            Target::Index => Some(api.openapi.index(&inputs)),
            Target::GroupVersion(group, version) => api.openapi.v3(&inputs, group, version),
        }?;
        // The body in another form than the JSON, when one was asked for.
        let form = match target {
            Target::V2Protobuf => Some(doc.protobuf()),
            _ => gzip.then(|| doc.gzipped()).filter(|g| !g.is_empty()),
        };
        Some((doc, form, target))
    })
    .await
    .ok()?;
    let Some((doc, form, target)) = built else {
        return Some(bytes(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"404 page not found\n"),
            "text/plain; charset=utf-8",
        ));
    };
    let mut immutable = false;
    if let Target::GroupVersion(..) = target
        && let Some(hash) = query_param(query, "hash")
    {
        if hash != doc.etag {
            let location = format!("{path}?hash={}", doc.etag);
            let mut response =
                bytes(StatusCode::MOVED_PERMANENTLY, Bytes::new(), "text/html; charset=utf-8");
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return Some(response);
        }
        immutable = true;
    }
    let etag = format!("\"{}\"", doc.etag);
    let mut response = if none_match(headers, &doc.etag) {
        bytes(StatusCode::NOT_MODIFIED, Bytes::new(), "")
    } else if let (Target::V2Protobuf, Some(protobuf)) = (&target, &form) {
        bytes(StatusCode::OK, protobuf.clone(), PROTOBUF_V2)
    } else if let Some(gzipped) = form {
        let mut response = bytes(StatusCode::OK, gzipped, "application/json");
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        bytes(StatusCode::OK, doc.bytes, "application/json")
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if immutable {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
        let expires = chrono::Utc::now() + chrono::Duration::days(365);
        if let Ok(value) =
            HeaderValue::from_str(&expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        {
            h.insert(header::EXPIRES, value);
        }
    }
    Some(response)
}

enum Target {
    V2,
    V2Protobuf,
    Index,
    GroupVersion(String, String),
}

/// Whether `Accept` admits JSON (an empty header admits anything).
fn accepts_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|clause| {
            let media = clause.split(';').next().unwrap_or_default().trim();
            matches!(media, "application/json" | "application/*" | "*/*" | "*")
        })
}

/// Whether `Accept` asks for the protobuf v2 document before JSON.
fn wants_protobuf_v2(accept: &str) -> bool {
    for clause in accept.split(',') {
        let media = clause.split(';').next().unwrap_or_default().trim();
        if media == PROTOBUF_V2_ACCEPT || media == PROTOBUF_V2 {
            return true;
        }
        if matches!(media, "application/json" | "application/*" | "*/*" | "*") {
            return false;
        }
    }
    false
}

/// Whether `Accept-Encoding` admits gzip.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == etag)
    })
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn bytes(code: StatusCode, body: Bytes, content_type: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = code;
    if !content_type.is_empty()
        && let Ok(value) = HeaderValue::from_str(content_type)
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_accepted_by_json_and_wildcards_only() {
        assert!(accepts_json(""));
        assert!(accepts_json("application/json, */*"));
        assert!(accepts_json("application/json;q=0.9"));
        assert!(!accepts_json("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"));
        assert!(!accepts_json("application/com.github.proto-openapi.spec.v3@v1.0+protobuf"));
    }

    #[test]
    fn protobuf_is_sent_when_asked_for_first() {
        assert!(wants_protobuf_v2(PROTOBUF_V2_ACCEPT));
        assert!(wants_protobuf_v2(&format!("{PROTOBUF_V2_ACCEPT}, application/json")));
        assert!(!wants_protobuf_v2(&format!("application/json, {PROTOBUF_V2_ACCEPT}")));
        assert!(!wants_protobuf_v2(""));
    }

    #[test]
    fn gzip_is_sent_to_clients_that_accept_it() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip"));
        assert!(with("deflate, gzip;q=0.5"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_quoted_and_weak_tags() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"AB\", W/\"CD\""));
        assert!(none_match(&headers, "AB"));
        assert!(none_match(&headers, "CD"));
        assert!(!none_match(&headers, "EF"));
    }
}
