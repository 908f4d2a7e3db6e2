//! Routes one request and answers it.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use krust_api::patch::PatchType;
use krust_api::{ResourceInfo, StatusError};
use serde_json::{Value, json};

use super::body;
use super::inflight::{self, RequestKind};
use super::list;
use super::malformed;
use super::negotiate::{self, Wire};
use super::request_info::{self, ResourceRequest, Target};
use super::response::{self, Body};
use super::table::{IncludeObject, table};
use crate::ApiServer;
use crate::authn::{self, authorize, endpoints};
use crate::authz;
use crate::discovery;
use crate::health;
use crate::metrics::RequestLabels;
use crate::registry::Handler;
use crate::registry::options::{ListOptions, Query};
use crate::registry::storage::{SubresourceHandler, SubresourceRequest};
use crate::registry::{
    DeleteOptions, Deleted, FieldValidation, Subresource, WatchEvent, WriteOptions, Written,
};

/// Answers one request; `certificate_user` is whom the connection's client certificate names.
///
/// Before routing: a malformed URL is refused; the request is authenticated (certificate,
/// bearer token, else anonymous; 401 when none applies) and its impersonation headers applied;
/// `/metrics` served to those allowed; the request takes a slot among those in flight (429
/// when none is left; long-running requests take none) and is authorized (403). Every routed
/// request is counted in the metrics.
pub async fn handle(
    api: Arc<ApiServer>,
    certificate_user: Option<Arc<krust_auth::UserInfo>>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if let Err(e) = malformed::check(req.uri()) {
        return response::error(&e);
    }
    let user = authn::authenticate(&api, certificate_user.as_deref(), req.headers())
        .and_then(|user| authorize::impersonate(&api, user, req.headers()));
    let user = match user {
        Ok(user) => user,
        Err(e) => return response::error(&e),
    };
    let attributes = authorize::attributes(
        &user,
        req.method(),
        req.uri().path(),
        Query::parse(req.uri().query()).flag("watch"),
    );
    let started = std::time::Instant::now();
    if req.uri().path() == "/metrics" {
        if let Err(e) = authorize::authorize(&api, &attributes) {
            return response::error(&e);
        }
        return response::bytes_as(
            StatusCode::OK,
            api.metrics.encode().into_bytes(),
            crate::metrics::CONTENT_TYPE,
        );
    }
    let (labels, long_running) = classify(&api, &req);
    let exempt = user.in_group(krust_auth::MASTERS);
    let slot = if long_running {
        None
    } else {
        match api.inflight.acquire(RequestKind::of(req.method()), exempt).await {
            Some(slot) => Some(slot),
            None => {
                api.metrics.request(&labels, 429, started.elapsed());
                return inflight::too_many_requests();
            }
        }
    };
    // Who asks, for the checks in the write path (RBAC escalation) and the self reviews.
    req.extensions_mut().insert(user.clone());
    req.extensions_mut().insert(body::Deadline {
        at: tokio::time::Instant::now() + api.request_body_timeout,
        limit: api.request_body_timeout,
    });
    let (method, path, version) =
        (req.method().clone(), req.uri().path().to_string(), req.version());
    let has_body = hyper::body::Body::size_hint(req.body()).upper() != Some(0);
    let result = match authorize::authorize(&api, &attributes) {
        Ok(()) => route(&api, &user, req).await,
        Err(e) => Err(e),
    };
    drop(slot);
    let mut response = result.unwrap_or_else(|e| response::error(&e));
    let status = response.status();
    api.metrics.request(&labels, status.as_u16(), started.elapsed());
    if long_running && status.is_success() {
        response = response::hold(response, api.metrics.long_running(&labels));
    }
    // A refused request's body may not have been read to its end (a body over the limit, one
    // that never came, one sent to a path that takes none): on HTTP/1 the rest of it would be
    // read as the next request, so the connection is not reused, and the client is told so.
    let body_maybe_unread = has_body && (status.is_client_error() || status.is_server_error());
    if body_maybe_unread && version <= http::Version::HTTP_11 {
        response.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    tracing::debug!(%method, %path, status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

/// The metric labels of a request, and whether it is long-running.
fn classify(api: &ApiServer, req: &Request<Incoming>) -> (RequestLabels, bool) {
    let watch = Query::parse(req.uri().query()).flag("watch");
    let Target::Resource(r) = request_info::parse(req.method(), req.uri().path(), watch) else {
        return (RequestLabels::other(req.method()), false);
    };
    let long_running = inflight::is_long_running(r.verb, r.subresource.as_deref());
    let Some(info) = api.registry.catalog().lookup(&r.group, &r.version, &r.resource) else {
        return (RequestLabels::other(req.method()), long_running);
    };
    let apply = r.verb == "patch"
        && PatchType::from_content_type(&content_type(req)) == Some(PatchType::Apply);
    let labels = RequestLabels::resource(
        r.verb,
        &info,
        r.subresource.as_deref(),
        r.namespace.is_some(),
        r.name.is_some(),
        apply,
    );
    (labels, long_running)
}

fn accepts(headers: &HeaderMap) -> &str {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Which aggregated discovery version the client asks for first, if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    accept
        .split(',')
        .filter(|part| {
            part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io")
        })
        .find_map(|part| {
            if part.contains("v=v2beta1") {
                Some("v2beta1")
            } else if part.contains("v=v2") {
                Some("v2")
            } else {
                None
            }
        })
}

async fn route(
    api: &Arc<ApiServer>,
    user: &krust_auth::UserInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, StatusError> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    match path.as_str() {
        p if let Some((endpoint, only)) = health::Endpoint::parse(p) => {
            let exclude: Vec<String> =
                form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                    .filter(|(k, _)| k == "exclude")
                    .map(|(_, v)| v.into_owned())
                    .collect();
            let verbose = query.get("verbose").is_some();
            let answer = api.health.answer(endpoint, only, verbose, &exclude).await;
            let code =
                StatusCode::from_u16(answer.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(response::text(code, &answer.body));
        }
        "/version" | "/version/" => {
            return Ok(response::json(StatusCode::OK, &discovery::version(&api.build)));
        }
        p if p.starts_with("/openapi/") || p == "/swagger-2.0.0.pb-v1" => {
            let served = discovery::openapi::serve(api, p, req.uri().query(), req.headers()).await;
            return served.ok_or_else(not_found);
        }
        _ => {}
    }
    let accept = accepts(req.headers()).to_string();
    let catalog = api.registry.catalog();
    match request_info::parse(req.method(), &path, query.flag("watch")) {
        Target::DiscoveryRoot { legacy } => Ok(match aggregated_version(&accept) {
            Some(version) => response::json_as(
                StatusCode::OK,
                &discovery::aggregated(catalog, legacy, version),
                &format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                ),
            ),
            None if legacy => {
                response::json(StatusCode::OK, &discovery::api_versions(&api.advertise_address))
            }
            None => response::json(StatusCode::OK, &discovery::api_group_list(catalog)),
        }),
        Target::DiscoveryGroup(group) => discovery::api_group_doc(catalog, &group)
            .map(|d| response::json(StatusCode::OK, &d))
            .ok_or_else(not_found),
        Target::DiscoveryVersion { group, version } => {
            discovery::api_resource_list(catalog, &group, &version)
                .map(|d| response::json(StatusCode::OK, &d))
                .ok_or_else(not_found)
        }
        Target::Resource(r) if let Some(endpoint) = endpoints::Endpoint::of(&r) => {
            // Create-only virtual resources of authentication: nothing is stored.
            let body = read_object(req, &mut WriteOptions::default()).await?;
            let answer = endpoints::create(api, user, endpoint, &r, body).await?;
            Ok(response::json(StatusCode::CREATED, &answer))
        }
        Target::Resource(r) if let Some(review) = authz::review::Review::of(&r) => {
            review.check_request(&r)?;
            let requester = req.extensions().get::<krust_auth::UserInfo>().cloned();
            let content_type = content_type(&req);
            let body = body::decode(&content_type, &body::read(req).await?)?;
            let (authorizer, policy) = (api.authz.authorizer(), api.authz.policy());
            let requester = requester.unwrap_or_default();
            let answer =
                review.answer(&*authorizer, &policy, &requester, r.namespace.as_deref(), body)?;
            Ok(response::json(StatusCode::CREATED, &answer))
        }
        Target::Resource(r) => resource(api, r, req, query, &accept).await,
        Target::Other(_) => Err(not_found()),
    }
}

/// 404 for a path the server does not serve. Its details are never absent: clients read them
/// (`kubectl debug` dereferences them to tell a missing object from a missing route).
fn not_found() -> StatusError {
    not_served(json!({}))
}

/// 404 for a path the server does not serve, with what is known of the target as details.
fn not_served(details: Value) -> StatusError {
    StatusError {
        details: Some(details),
        ..StatusError::new(
            krust_api::Reason::NotFound,
            "the server could not find the requested resource",
        )
    }
}

/// 404 for a resource request the server cannot route: the details name the resource asked
/// for (an empty name: the route, not an object, is missing).
fn resource_not_served(r: &ResourceRequest) -> StatusError {
    let mut details = json!({"group": r.group, "kind": r.resource});
    if let Some(name) = &r.name {
        details["name"] = json!(name);
    }
    not_served(details)
}

fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

/// Reads and decodes an object body; with field validation on, the members it names twice
/// go into `write` as problems.
async fn read_object(
    req: Request<Incoming>,
    write: &mut WriteOptions,
) -> Result<Value, StatusError> {
    let content_type = content_type(&req);
    let bytes = body::read(req).await?;
    if bytes.is_empty() {
        return Err(StatusError::bad_request("the request body is empty"));
    }
    let object = body::decode(&content_type, &bytes)?;
    if write.field_validation != FieldValidation::Ignore {
        write.body_problems = body::duplicate_fields(&content_type, &bytes)
            .iter()
            .map(|path| krust_api::fieldcheck::duplicate_field(path))
            .collect();
    }
    Ok(object)
}

/// A write's answer: the object, with its field validation warnings as `Warning` headers.
fn written(code: StatusCode, written: &Written, wire: Wire) -> Response<Body> {
    response::with_warnings(response::object(code, &written.object, wire), &written.warnings)
}

async fn resource(
    api: &ApiServer,
    r: ResourceRequest,
    req: Request<Incoming>,
    query: Query,
    accept: &str,
) -> Result<Response<Body>, StatusError> {
    let warning = api
        .registry
        .catalog()
        .lookup(&r.group, &r.version, &r.resource)
        .and_then(|info| info.strategy.deprecation_warning().map(str::to_string));
    let answer = serve_resource(api, r, req, query, accept).await?;
    Ok(match warning {
        Some(warning) => response::with_warnings(answer, &[warning]),
        None => answer,
    })
}

async fn serve_resource(
    api: &ApiServer,
    r: ResourceRequest,
    req: Request<Incoming>,
    query: Query,
    accept: &str,
) -> Result<Response<Body>, StatusError> {
    let registry = &api.registry;
    let info = registry
        .catalog()
        .lookup(&r.group, &r.version, &r.resource)
        .ok_or_else(|| resource_not_served(&r))?;
    // A terminating definition's resource lists fewer verbs, but still takes updates (so that
    // finalizers can go); its creates are refused by the registry.
    if !info.verbs.contains(&r.verb)
        && r.subresource.is_none()
        && !registry.catalog().is_terminating(&info)
    {
        return Err(StatusError::method_not_allowed(format!(
            "{} is not supported on {}",
            r.verb,
            qualified(&info)
        )));
    }
    let namespace = match (info.namespaced(), r.namespace.as_deref()) {
        (true, None) if r.name.is_some() || matches!(r.verb, "create" | "deletecollection") => {
            return Err(resource_not_served(&r));
        }
        (false, Some(_)) => return Err(resource_not_served(&r)),
        (_, ns) => ns.map(str::to_string),
    };
    let ns = namespace.as_deref();
    let named_verb_without_name = matches!(r.verb, "update" | "patch") && r.name.is_none();
    if (r.verb == "create" && r.name.is_some() && r.subresource.is_none())
        || named_verb_without_name
    {
        return Err(StatusError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            qualified(&info)
        )));
    }
    if let Some(handler) = registry.handler(&info, r.subresource.as_deref()) {
        let name = r.name.as_deref().unwrap_or_default();
        return match handler {
            Handler::NodeLog => {
                super::pod_log::serve(api, &info, ns.unwrap_or_default(), name, req.uri().query())
                    .await
            }
            Handler::NodeConnect => {
                let sub = r.subresource.as_deref().unwrap_or_default();
                super::pod_stream::serve(api, &info, (ns.unwrap_or_default(), name), sub, req).await
            }
            Handler::Create(handler) => {
                handled(api, handler.as_ref(), &info, &r, ns, req, &query).await
            }
        };
    }
    let sub = Subresource::parse(&info, r.subresource.as_deref()).ok_or_else(|| {
        // No name in the details: the route is missing, not the object.
        StatusError {
            details: Some(json!({"group": info.group, "kind": info.plural})),
            ..StatusError::new(
                krust_api::Reason::NotFound,
                format!(
                    "the subresource {:?} of {} is not served yet",
                    r.subresource.as_deref().unwrap_or_default(),
                    qualified(&info)
                ),
            )
        }
    })?;
    let write = WriteOptions {
        dry_run: query.dry_run()?,
        user: req.extensions().get::<krust_auth::UserInfo>().cloned(),
        field_manager: field_manager(query.get("fieldManager"), &req),
        force: query.get("force") == Some("true"),
        ..WriteOptions::default()
    };
    let wire = negotiate::wire(accept);
    if wire == Wire::Protobuf
        && !info.definition.is_empty()
        && sub != Subresource::Scale
        && !negotiate::takes_json(accept)
    {
        // Custom resources have no protobuf form (upstream answers the same).
        return Err(StatusError::new(
            krust_api::Reason::NotAcceptable,
            "only the following media types are accepted: application/json, application/yaml",
        ));
    }
    let table_wanted = wire == Wire::Table;
    let include = IncludeObject::parse(query.get("includeObject"));
    let name = r.name.clone().unwrap_or_default();
    match (r.verb, sub) {
        ("get", _) => {
            query.check_resource_version()?;
            let obj = registry.get(&info, ns, &name).await?;
            let obj = sub.view(&info, obj);
            if table_wanted && sub == Subresource::Main {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
                return Ok(response::json(
                    StatusCode::OK,
                    &table(&info, &[obj], json!({"resourceVersion": rv}), include),
                ));
            }
            Ok(response::object(StatusCode::OK, &obj, wire))
        }
        ("list", Subresource::Main) => {
            let opts = ListOptions::from_query(&query, false)?;
            let listed = registry.list_response(&info, ns, &opts).await?;
            let mut meta = json!({"resourceVersion": listed.revision.to_string()});
            if let Some(token) = &listed.continue_token {
                meta["continue"] = json!(token);
            }
            if let Some(remaining) = listed.remaining.filter(|r| *r > 0) {
                meta["remainingItemCount"] = json!(remaining);
            }
            match wire {
                Wire::Table => Ok(list::table(&info, meta, listed.items, include)),
                Wire::Protobuf => match list::protobuf(&info, &meta, listed.items) {
                    Ok(response) => Ok(response),
                    Err(items) => Ok(list::list(&info, meta, items)),
                },
                Wire::Metadata => Ok(list::metadata(meta, listed.items)),
                Wire::Json => Ok(list::list(&info, meta, listed.items)),
            }
        }
        ("watch", Subresource::Main) => {
            let mut opts = ListOptions::from_query(&query, true)?;
            if let Some(name) = &r.name {
                // `/watch/.../<name>`: a watch of one object.
                opts.fields =
                    krust_api::selector::FieldSelector::parse(&format!("metadata.name={name}"))
                        .map_err(|e| StatusError::bad_request(e.to_string()))?;
            }
            let wire = match wire {
                Wire::Protobuf if !has_protobuf(&info) => Wire::Json,
                wire => wire,
            };
            let event_info = info.clone();
            let encode = Box::new(move |event| encode_event(&event_info, event, wire, include));
            let lines = registry.watch(&info, ns, opts, encode).await?;
            let content_type = match wire {
                Wire::Protobuf => krust_api::protobuf::WATCH_MEDIA_TYPE,
                Wire::Json | Wire::Table | Wire::Metadata => "application/json",
            };
            Ok(response::stream(lines, content_type))
        }
        ("create", Subresource::Main) => {
            let mut write = WriteOptions {
                field_validation: query.field_validation("CreateOptions")?,
                ..write
            };
            let obj = read_object(req, &mut write).await?;
            refuse_resource_version(&obj)?;
            let created = registry.create(&info, ns, obj, write).await?;
            Ok(written(StatusCode::CREATED, &created, wire))
        }
        ("update", _) => {
            let mut write = WriteOptions {
                field_validation: query.field_validation("UpdateOptions")?,
                ..write
            };
            let obj = read_object(req, &mut write).await?;
            let updated = registry.update(&info, ns, &name, sub, obj, write).await?;
            let code = if updated.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(written(code, &updated, wire))
        }
        ("patch", _) => {
            let content_type = content_type(&req);
            let kind = PatchType::from_content_type(&content_type)
                .ok_or_else(|| StatusError::unsupported_media_type(&content_type))?;
            let mut write =
                WriteOptions { field_validation: query.field_validation("PatchOptions")?, ..write };
            if kind == PatchType::Apply && query.get("fieldManager").is_none() {
                return Err(crate::registry::field_manager_required());
            }
            let bytes = body::read(req).await?;
            if write.field_validation != FieldValidation::Ignore {
                // Upstream words the duplicates of a JSON patch's operations apart.
                let prefix = if kind == PatchType::Json { "json patch " } else { "" };
                write.body_problems = body::duplicate_fields(&content_type, &bytes)
                    .iter()
                    .map(|path| format!("{prefix}{}", krust_api::fieldcheck::duplicate_field(path)))
                    .collect();
            }
            match registry.patch(&info, ns, &name, sub, kind, &bytes, write.clone()).await {
                Ok(patched) => Ok(written(StatusCode::OK, &patched, wire)),
                // Server-side apply creates what does not exist yet.
                Err(e)
                    if e.is_not_found() && kind == PatchType::Apply && sub == Subresource::Main =>
                {
                    let obj = body::decode(&content_type, &bytes)?;
                    if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str())
                    {
                        return Err(StatusError::bad_request(format!(
                            "the name of the object does not match the name on the URL ({name})"
                        )));
                    }
                    let write = WriteOptions { apply: true, ..write };
                    let created = registry.create(&info, ns, obj, write).await?;
                    Ok(written(StatusCode::CREATED, &created, wire))
                }
                Err(e) => Err(e),
            }
        }
        ("delete", Subresource::Main) => {
            let user = write.user.clone();
            let opts = DeleteOptions { user, ..delete_options(req, &query).await? };
            let deletion = registry.delete(&info, ns, &name, &opts).await?;
            let answer = match &deletion.outcome {
                Deleted::Pending(obj) => response::object(StatusCode::OK, obj, wire),
                Deleted::Now(obj) if info.strategy.returns_deleted_object() => {
                    response::object(StatusCode::OK, obj, wire)
                }
                Deleted::Now(obj) => response::object(StatusCode::OK, &success(&info, obj), wire),
            };
            Ok(response::with_warnings(answer, &deletion.warnings))
        }
        ("deletecollection", Subresource::Main) => {
            let list_opts = ListOptions::from_query(&query, false)?;
            let user = write.user.clone();
            let opts = DeleteOptions { user, ..delete_options(req, &query).await? };
            let deleted = registry.delete_collection(&info, ns, &list_opts, &opts).await?;
            let list = json!({
                "kind": format!("{}List", info.kind),
                "apiVersion": info.api_version(),
                "metadata": {},
                "items": deleted,
            });
            Ok(response::json(StatusCode::OK, &list))
        }
        (verb, _) => Err(StatusError::method_not_allowed(format!(
            "{verb} is not supported on {}/{}",
            qualified(&info),
            r.subresource.as_deref().unwrap_or_default()
        ))),
    }
}

/// The manager a write is recorded under: `fieldManager`, else the client's user agent up to
/// its first `/` (upstream's default), else `unknown`.
fn field_manager(given: Option<&str>, req: &Request<Incoming>) -> Option<String> {
    if let Some(given) = given {
        return Some(given.to_string());
    }
    let agent = req.headers().get(hyper::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let prefix = agent.and_then(|a| a.split('/').next()).filter(|p| !p.is_empty());
    Some(prefix.unwrap_or("unknown").chars().take(128).collect())
}

/// Refuses a create whose object carries a resourceVersion, as upstream's storage does
/// (`storage.ErrResourceVersionSetOnCreate`, answered as an internal error without a reason).
fn refuse_resource_version(obj: &Value) -> Result<(), StatusError> {
    let set = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse::<u64>().ok())
        .is_some_and(|rv| rv != 0);
    if set {
        return Err(StatusError::new(
            krust_api::Reason::Unknown,
            "resourceVersion should not be set on objects to be created",
        ));
    }
    Ok(())
}

/// Serves a subresource that has a handler of its own (`pods/binding`, `pods/eviction`).
async fn handled(
    api: &ApiServer,
    handler: &dyn SubresourceHandler,
    info: &ResourceInfo,
    r: &ResourceRequest,
    namespace: Option<&str>,
    req: Request<Incoming>,
    query: &Query,
) -> Result<Response<Body>, StatusError> {
    if !handler.verbs().contains(&r.verb) {
        return Err(StatusError::method_not_allowed(format!(
            "{} is not supported on {}/{}",
            r.verb,
            qualified(info),
            r.subresource.as_deref().unwrap_or_default()
        )));
    }
    let user = req.extensions().get::<krust_auth::UserInfo>().cloned();
    let dry_run = query.dry_run()?;
    let body = read_object(req, &mut WriteOptions::default()).await?;
    let request = SubresourceRequest {
        info,
        verb: r.verb,
        namespace,
        name: r.name.as_deref().unwrap_or_default(),
        body,
        dry_run,
        user: user.as_ref(),
    };
    let (code, answer) = handler.handle(&api.registry, request).await?;
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    Ok(response::json(code, &answer))
}

fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

/// The Status a delete answers with when the object is gone.
fn success(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "group": info.group,
            "kind": info.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    })
}

async fn delete_options(
    req: Request<Incoming>,
    query: &Query,
) -> Result<DeleteOptions, StatusError> {
    let content_type = content_type(&req);
    let bytes = body::read(req).await?;
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(body::decode(&content_type, &bytes)?)
    };
    DeleteOptions::from_parts(body.as_ref(), query)
}

/// Whether objects of `info` have a protobuf form.
fn has_protobuf(info: &ResourceInfo) -> bool {
    let empty = json!({});
    krust_api::protobuf::encoded_len(&info.api_version(), info.kind, &empty).is_ok()
}

fn encode_event(
    info: &ResourceInfo,
    event: WatchEvent,
    wire: Wire,
    include: IncludeObject,
) -> Bytes {
    use crate::registry::{Served, WatchKind};
    let kind = event.kind.as_str();
    if wire == Wire::Protobuf {
        match protobuf_event(info, kind, &event.object) {
            Ok(frame) => return Bytes::from(frame),
            Err(e) => tracing::warn!(error = %e, "cannot encode a watch event in protobuf"),
        }
    }
    let object = match event.kind {
        WatchKind::Added | WatchKind::Modified | WatchKind::Deleted if wire == Wire::Table => {
            Served::Value(table(info, &[event.object.into_value()], json!({}), include))
        }
        WatchKind::Added | WatchKind::Modified | WatchKind::Deleted if wire == Wire::Metadata => {
            Served::Value(response::partial_object_metadata(&event.object.into_value()))
        }
        _ => event.object,
    };
    // The object's bytes are framed as they are: encoded once, in the cache.
    let mut line = Vec::with_capacity(kind.len() + 24 + served_len(&object));
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    object.write_json(&mut line);
    line.extend_from_slice(b"}\n");
    // The watch's queue counts bytes by length: give back any spare capacity (in place).
    line.shrink_to_fit();
    Bytes::from(line)
}

/// The protobuf frame of a watch event of type `kind` about `object`. A cached object is
/// encoded from its JSON text, as the served kind of `info`.
fn protobuf_event(
    info: &ResourceInfo,
    kind: &str,
    object: &crate::registry::Served,
) -> Result<Vec<u8>, krust_api::protobuf::ProtobufError> {
    use krust_api::protobuf::{MessageEncoder, encode_envelope, encode_watch_event};
    match object {
        crate::registry::Served::Cached(cached) => {
            let api_version = info.api_version();
            let message = MessageEncoder::new(&api_version, info.kind)?.encode(&cached.json)?;
            let body = encode_envelope(&api_version, info.kind, &message)?;
            krust_api::protobuf::watch_event_frame(kind, &body)
        }
        crate::registry::Served::Value(value) => encode_watch_event(kind, value),
    }
}

/// The length of an object's JSON when it is known without encoding it.
fn served_len(object: &crate::registry::Served) -> usize {
    match object {
        crate::registry::Served::Cached(cached) => cached.json.len(),
        crate::registry::Served::Value(_) => 0,
    }
}
