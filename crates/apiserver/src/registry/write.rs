//! Create, update and patch.

use chrono::Utc;
use krust_api::field_manager::{Conflict, ManagedFields, Types, Writer, conflict_message};
use krust_api::object::{meta_str, metadata_mut};
use krust_api::patch::{PatchType, apply_patch, parse_apply};
use krust_api::validation::{FieldError, bounded_quote};
use krust_api::{ResourceInfo, StatusError, Strategy};
use krust_api::{fieldcheck, typecheck};
use krust_store::StoreError;
use serde_json::Value;

use super::options::FieldValidation;
use super::storage::Reserved;
use super::subresource::Subresource;
use super::{
    Registry, attributes, encode, meta, name_of, stamped, store_error, to_served, to_stored,
};
use krust_admission::Operation;

/// How many times a write retries after losing a race it did not ask to lose.
/// How long an update without a resourceVersion precondition keeps retrying when concurrent
/// writes move the object under it (upstream's `GuaranteedUpdate` retries until the request
/// times out).
const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Check and answer, but store nothing.
    pub dry_run: bool,
    /// What unknown and duplicate fields do to the write.
    pub field_validation: FieldValidation,
    /// Problems found in the request body itself, which only the HTTP layer sees (members
    /// named twice), worded as answered; reported ahead of the unknown fields.
    pub body_problems: Vec<String>,
    /// Who asks, for the checks that depend on it (RBAC escalation); `None` for the server's
    /// own writes.
    pub user: Option<krust_auth::UserInfo>,
    /// The manager the write is recorded under in `managedFields` (`None`: the server's own
    /// writes, recorded as `krust`).
    pub field_manager: Option<String>,
    /// An apply takes fields other managers own (`force=true`).
    pub force: bool,
    /// The object comes from a server-side apply (a create through apply).
    pub apply: bool,
}

/// What a write answers: the object, and the warnings for the client (`Warning` headers).
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run), in the served version.
    pub object: Value,
    /// Field validation warnings (`fieldValidation=Warn`), then admission's (PodSecurity).
    pub warnings: Vec<String>,
    /// Whether the write created the object (a create, or an update of a resource whose
    /// strategy creates what does not exist yet).
    pub created: bool,
}

/// How one attempt of an update ended.
enum Step {
    /// Written (or refused as a no-op): the answer.
    Done(Written),
    /// Lost a race to another write, or found nothing to change in a copy that may be behind:
    /// read the store and try again.
    Retry,
}

/// Which request an update-like write answers, for the wording of field validation errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A body replaced the object: upstream's decoder names the kind.
    Update,
    /// A patch changed it: upstream names no kind.
    Patch,
}

/// The `apiVersion`, version and kind of a client's view of an object through `sub`.
fn view_kind(info: &ResourceInfo, sub: Subresource) -> (String, &'static str, &'static str) {
    match sub {
        Subresource::Scale => ("autoscaling/v1".to_string(), "v1", "Scale"),
        _ => (info.api_version(), info.version, info.kind),
    }
}

/// Field validation of `obj`, the client's view of an object (of `api_version`, `version`
/// and `kind`): the warnings to answer with (none unless `Warn`), or the error for `Strict`.
/// Fields already unknown in `old`, the stored object's view, are not reported again: they
/// were accepted once, and a client that read the object back sends them unchanged.
fn check_fields(
    opts: &WriteOptions,
    (api_version, version, kind): (&str, &str, &str),
    schema: Option<&dyn Strategy>,
    obj: &Value,
    old: Option<&Value>,
    origin: Origin,
) -> Result<Vec<String>, StatusError> {
    if opts.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut problems = opts.body_problems.clone();
    let unknown_fields = |obj: &Value| {
        fieldcheck::unknown_fields(api_version, kind, obj)
            .or_else(|| schema.and_then(|s| s.unknown_fields(obj)))
    };
    if let Some(mut unknown) = unknown_fields(obj) {
        if let Some(old) = old.filter(|_| !unknown.is_empty())
            && let Some(before) = unknown_fields(old)
        {
            unknown.retain(|path| !before.contains(path));
        }
        problems.extend(unknown.iter().map(|path| fieldcheck::unknown_field(path)));
    }
    if problems.is_empty() || opts.field_validation == FieldValidation::Warn {
        return Ok(problems);
    }
    let error = fieldcheck::strict_decoding_error(&problems);
    Err(StatusError::bad_request(match origin {
        Origin::Update => {
            format!("{kind} in version \"{version}\" cannot be handled as a {kind}: {error}")
        }
        Origin::Patch => error,
    }))
}

/// Upstream's 422 for an update without a resourceVersion of a resource that allows none
/// (Go prints the missing value, an unsigned zero, as `0x0`).
fn resource_version_required(info: &ResourceInfo, name: &str) -> StatusError {
    let error = FieldError::invalid(
        "metadata.resourceVersion",
        Value::from(0),
        "must be specified for an update",
    );
    let mut status = StatusError::invalid(info.group, info.kind, name, &[error]);
    status.message = status.message.replace("Invalid value: 0:", "Invalid value: 0x0:");
    if let Some(causes) = status.details.as_mut().and_then(|d| d.get_mut("causes")) {
        for cause in causes.as_array_mut().into_iter().flatten() {
            if let Some(Value::String(text)) = cause.get_mut("message") {
                *text = text.replace("Invalid value: 0:", "Invalid value: 0x0:");
            }
        }
    }
    status
}

/// The manager a write is recorded under.
fn manager_of(opts: &WriteOptions) -> String {
    opts.field_manager.clone().unwrap_or_else(|| "krust".to_string())
}

/// Upstream's 409 for an apply that changes fields other managers own.
fn apply_conflict(conflicts: &[Conflict]) -> StatusError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            serde_json::json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager),
                "field": c.path,
            })
        })
        .collect();
    StatusError {
        details: Some(serde_json::json!({"causes": causes})),
        ..StatusError::new(krust_api::Reason::Conflict, conflict_message(conflicts))
    }
}

/// Upstream's answer to an apply without a manager.
pub fn field_manager_required() -> StatusError {
    StatusError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        &[FieldError::required("fieldManager").with_detail("is required for apply patch")],
    )
}

/// Records the write of `new` (over `old`, null for a create) in its `managedFields`: the
/// entries the client sent when they differ from the stored ones (kubectl moves a client-side
/// apply's fields to server-side apply that way), else the stored ones; then, unless an apply
/// recorded itself, the writer's update.
fn record_managers(
    info: &ResourceInfo,
    opts: &WriteOptions,
    sub: Subresource,
    sent: Option<&Value>,
    old: &Value,
    new: &mut Value,
) -> Result<(), StatusError> {
    let stored = old.pointer("/metadata/managedFields");
    let mut managed = match sent {
        Some(sent) if Some(sent) != stored => {
            ManagedFields::of(&serde_json::json!({"metadata": {"managedFields": sent}}))
                .ok_or_else(|| {
                    StatusError::bad_request(
                        "metadata.managedFields: Invalid value: the entries are not well formed",
                    )
                })?
        }
        _ => ManagedFields::of(old).unwrap_or_default(),
    };
    if !opts.apply || sent.is_none() {
        let api_version = info.api_version();
        let now = meta::timestamp(Utc::now());
        let manager = manager_of(opts);
        let subresource = match sub {
            Subresource::Main => "",
            other => other.as_str(),
        };
        let writer = Writer {
            manager: &manager,
            api_version: &api_version,
            subresource,
            now: &now,
            status_subresource: info.status,
        };
        let ty = Types::of(&api_version, info.kind, info.strategy.ownership_schema());
        managed.update(old, new, ty, &writer);
    }
    managed.write_into(new);
    Ok(())
}

/// Records a create through apply: the applier owns what its configuration sets.
fn record_apply_create(info: &ResourceInfo, opts: &WriteOptions, config: &Value, obj: &mut Value) {
    let api_version = info.api_version();
    let now = meta::timestamp(Utc::now());
    let manager = manager_of(opts);
    let writer = Writer {
        manager: &manager,
        api_version: &api_version,
        subresource: "",
        now: &now,
        status_subresource: info.status,
    };
    let mut managed = ManagedFields::default();
    let ty = Types::of(&api_version, info.kind, info.strategy.ownership_schema());
    if managed.apply(&Value::Null, config, ty, &writer, true).is_ok() {
        managed.write_into(obj);
    }
}

/// The strategy whose schema knows the fields of the client's view through `sub`: the
/// resource's own, except for the `Scale` view.
fn schema(info: &ResourceInfo, sub: Subresource) -> Option<&dyn Strategy> {
    (sub != Subresource::Scale).then_some(&*info.strategy)
}

/// The error upstream answers a value of the wrong type with: its decoder's error, 400
/// `{kind} in version "{version}" cannot be handled as a {kind}: ...` for a body (with the
/// offending path as the one cause), 422 on the field `patch`, the patched object as the
/// invalid value, for a patch.
fn decoding_error(
    (version, kind): (&str, &str),
    obj: &Value,
    origin: Origin,
    path: &str,
    message: &str,
) -> StatusError {
    match origin {
        Origin::Update => StatusError {
            details: Some(serde_json::json!({"causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": path},
            ]})),
            ..StatusError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {message}"
            ))
        },
        Origin::Patch => {
            let patched = serde_json::to_string(obj).unwrap_or_default();
            StatusError::invalid(
                "",
                "",
                "",
                &[FieldError::invalid("patch", Value::String(patched), message)],
            )
        }
    }
}

/// Checks the types of `obj`, the client's view of an object (of `api_version`, `version`
/// and `kind`), against its kind's upstream schema ([`typecheck`]), before anything else
/// reads it; fails as upstream's decoder does.
fn check_types(
    (api_version, version, kind): (&str, &str, &str),
    obj: &Value,
    origin: Origin,
) -> Result<(), StatusError> {
    typecheck::check(api_version, kind, obj)
        .map_err(|e| decoding_error((version, kind), obj, origin, &e.path, &e.message))
}

/// Checks that a patched object is still the one of the URL: of the same kind and version
/// (else 422 on `patch`, as a patched object that does not decode), name and namespace (else
/// 400, worded as upstream's `checkName`). Without this a patch changing them would be
/// silently undone.
fn check_patched_identity(
    (api_version, version, kind): (&str, &str, &str),
    obj: &Value,
    name: &str,
    namespace: Option<&str>,
) -> Result<(), StatusError> {
    let given_kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let given_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    // An object without type meta is read as the URL's kind, as upstream's decoder does.
    let problem = if !given_kind.is_empty() && given_kind != kind {
        Some(format!(
            "the object provided is of kind {}, but the request is for {kind}",
            bounded_quote(given_kind, false)
        ))
    } else if !given_version.is_empty() && given_version != api_version {
        Some(format!(
            "the API version in the data ({}) does not match the expected API version ({api_version})",
            bounded_quote(given_version, false)
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        let path = if given_kind.is_empty() || given_kind == kind { "apiVersion" } else { "kind" };
        return Err(decoding_error((version, kind), obj, Origin::Patch, path, &problem));
    }
    let given_name = meta_str(obj, "name").unwrap_or_default();
    if given_name != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            bounded_quote(given_name, false)
        )));
    }
    let given_namespace = meta_str(obj, "namespace").unwrap_or_default();
    if let Some(namespace) = namespace
        && !given_namespace.is_empty()
        && given_namespace != namespace
    {
        return Err(StatusError::bad_request(format!(
            "the namespace of the object ({}) does not match the namespace on the request ({namespace})",
            bounded_quote(given_namespace, false)
        )));
    }
    Ok(())
}

/// Checks that a body is of the kind and version the URL names.
pub fn check_kind(info: &ResourceInfo, obj: &Value) -> Result<(), StatusError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if !kind.is_empty() && kind != info.kind {
        let kind = bounded_quote(kind, false);
        return Err(StatusError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {}: the object provided is of kind {kind}, but the request is for {}",
            info.version, info.kind, info.kind
        )));
    }
    if !api_version.is_empty() && api_version != info.api_version() {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            bounded_quote(api_version, false),
            info.api_version()
        )));
    }
    if !obj.is_object() {
        return Err(StatusError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    }
    Ok(())
}

/// Sets the served `apiVersion` and `kind` (a client may leave them out).
fn with_type(info: &ResourceInfo, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(info.api_version()));
        map.insert("kind".into(), Value::String(info.kind.to_string()));
    }
    obj
}

/// Puts the URL's namespace on an object, refusing a different one.
fn set_namespace(
    info: &ResourceInfo,
    obj: &mut Value,
    namespace: Option<&str>,
) -> Result<(), StatusError> {
    let meta = metadata_mut(obj);
    match (info.namespaced(), namespace) {
        (true, Some(ns)) => {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(StatusError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        }
        (true, None) => {
            return Err(StatusError::bad_request(
                "a namespace is required for a namespaced resource",
            ));
        }
        (false, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

impl Registry {
    /// Creates an object; answers it as stored (or as it would be, for a dry run).
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        check_kind(info, &obj)?;
        let applied = opts.apply.then(|| obj.clone());
        if self.catalog().is_terminating(info) {
            return Err(StatusError::method_not_allowed(
                "create not allowed while custom resource definition is terminating",
            ));
        }
        let (api_version, version, kind) = view_kind(info, Subresource::Main);
        check_types((&api_version, version, kind), &obj, Origin::Update)?;
        let mut warnings = check_fields(
            &opts,
            (&api_version, version, kind),
            schema(info, Subresource::Main),
            &obj,
            None,
            Origin::Update,
        )?;
        set_namespace(info, &mut obj, namespace)?;
        // The strategy sees the version the client sent; the store gets the storage version.
        let mut obj = with_type(info, obj);
        // Defaults as upstream's decoder applies them, then mutating admission (before a
        // name is generated), then the strategy; validating admission sees the final object.
        info.strategy.default(&mut obj);
        let view = self.admission_view().await;
        let given_name = name_of(&obj).to_string();
        let user = opts.user.as_ref();
        let admit = |name| {
            attributes(
                info,
                Operation::Create,
                Subresource::Main,
                namespace,
                name,
                user,
                opts.dry_run,
            )
        };
        warnings
            .extend(self.admission.mutate(&admit(&given_name), Some(&mut obj), None, &view).await?);
        meta::prepare_create(info, &mut obj, Utc::now());
        info.strategy.default(&mut obj);
        info.strategy.prepare_for_create(&mut obj);
        if let Some(user) = &opts.user {
            let requester = krust_api::strategy::Requester {
                name: &user.name,
                uid: &user.uid,
                groups: &user.groups,
                extra: &user.extra,
            };
            info.strategy.record_requester(&mut obj, &requester);
        }
        let mut errors = meta::validate(info, &obj);
        errors.extend(info.strategy.validate(&obj));
        if !errors.is_empty() {
            return Err(StatusError::invalid(info.group, info.kind, name_of(&obj), &errors));
        }
        match &applied {
            Some(config) => record_apply_create(info, &opts, config, &mut obj),
            None => record_managers(info, &opts, Subresource::Main, None, &Value::Null, &mut obj)?,
        }
        self.check_write(info, &opts, &obj, None)?;
        let name = name_of(&obj).to_string();
        // What the resource's hooks reserve (a Service's cluster IPs and node ports) is in the
        // object before validating admission sees it, as upstream allocates in `BeginCreate`;
        // a create that fails after it gives it back.
        let hooks = self.hooks(info);
        let mut reserved = None;
        if let Some(hooks) = hooks {
            hooks.before_create(self.store.as_ref(), &mut obj, opts.dry_run).await?;
            reserved = (!opts.dry_run).then(|| obj.clone());
        }
        let created = async {
            warnings.extend(self.admission.validate(&admit(&name), Some(&obj), None, &view).await?);
            // Last, ResourceQuota charges the object to its namespace's quotas.
            self.admission.charge_quota(self, &admit(&name), Some(&obj), None).await?;
            let key = info.storage_key(namespace, &name);
            let mut obj = to_stored(info, obj)?;
            if opts.dry_run {
                if self.store.get(&key).await.map_err(store_error)?.is_some() {
                    return Err(StatusError::already_exists(info.group, info.plural, &name));
                }
                return Ok(obj);
            }
            let bytes = encode(&mut obj)?;
            let kv = self.store.create(&key, bytes).await.map_err(|e| match e {
                StoreError::AlreadyExists { .. } => {
                    StatusError::already_exists(info.group, info.plural, &name)
                }
                e => store_error(e),
            })?;
            self.note_written(kv.mod_revision);
            Ok(stamped(obj, kv.mod_revision))
        }
        .await;
        if created.is_err()
            && let (Some(hooks), Some(reserved)) = (hooks, &reserved)
        {
            hooks.create_failed(self.store.as_ref(), reserved).await;
        }
        Ok(Written { object: to_served(info, created?)?, warnings, created: true })
    }

    /// Replaces an object (or one of its subresources) with `body`.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        sub: Subresource,
        body: Value,
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        if sub != Subresource::Scale {
            check_kind(info, &body)?;
        }
        if let Some(given) = meta_str(&body, "name")
            && given != name
        {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                bounded_quote(given, false)
            )));
        }
        let unconditional = meta_str(&body, "resourceVersion").is_none_or(str::is_empty);
        if unconditional && sub != Subresource::Scale && !info.strategy.allow_unconditional_update()
        {
            return Err(resource_version_required(info, name));
        }
        let create_if_missing = sub == Subresource::Main && info.strategy.allow_create_on_update();
        let creating = create_if_missing.then(|| (body.clone(), opts.clone()));
        let updated = self
            .write_with(info, namespace, name, opts, |_| Ok(body.clone()), sub, Origin::Update)
            .await;
        match (updated, creating) {
            // Upstream's `AllowCreateOnUpdate`: a PUT of a missing object creates it.
            (Err(e), Some((body, opts))) if e.is_not_found() => {
                self.create(info, namespace, body, opts).await
            }
            (updated, _) => updated,
        }
    }

    /// Applies a patch to an object (or one of its subresources).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        sub: Subresource,
        kind: PatchType,
        patch: &[u8],
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        if kind == PatchType::StrategicMerge
            && sub != Subresource::Scale
            && !info.strategy.strategic_merge()
        {
            return Err(StatusError::new(
                krust_api::Reason::UnsupportedMediaType,
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let opts = WriteOptions { apply: kind == PatchType::Apply, ..opts };
        let writer_manager = manager_of(&opts);
        let (force, status_subresource) = (opts.force, info.status);
        let apply_fn = |current_view: &Value| -> Result<Value, StatusError> {
            let api_version =
                current_view.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            let kind_name = current_view.get("kind").and_then(Value::as_str).unwrap_or_default();
            let config = parse_apply(patch, api_version, kind_name).map_err(StatusError::from)?;
            let mut managed = ManagedFields::of(current_view).unwrap_or_default();
            let now = meta::timestamp(Utc::now());
            let writer = Writer {
                manager: &writer_manager,
                api_version,
                subresource: sub.as_str(),
                now: &now,
                status_subresource,
            };
            let ty = Types::of(api_version, kind_name, info.strategy.ownership_schema());
            let mut merged = managed
                .apply(current_view, &config, ty, &writer, force)
                .map_err(|conflicts| apply_conflict(&conflicts))?;
            managed.write_into(&mut merged);
            Ok(merged)
        };
        if kind == PatchType::Apply {
            return self
                .write_with(info, namespace, name, opts, apply_fn, sub, Origin::Patch)
                .await;
        }
        let patch_fn = |current_view: &Value| -> Result<Value, StatusError> {
            let (api_version, kind_name) = (
                current_view
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                current_view.get("kind").and_then(Value::as_str).unwrap_or_default().to_string(),
            );
            apply_patch(kind, current_view, patch, &api_version, &kind_name)
                .map_err(StatusError::from)
        };
        self.write_with(info, namespace, name, opts, patch_fn, sub, Origin::Patch).await
    }

    /// The read-modify-write loop shared by update and patch: takes the current object (the
    /// watch cache's copy, else the store's: [`Registry::current_for_update`]), asks
    /// `change` for the client's view of the new one (in the served version, for `sub`),
    /// applies the resource's rules and writes it guarded by the revision read. The client's
    /// view is type-checked and field-validated before anything else looks at it; a patched
    /// view must still name the URL's object.
    #[allow(clippy::too_many_arguments)]
    async fn write_with(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: WriteOptions,
        change: impl Fn(&Value) -> Result<Value, StatusError>,
        sub: Subresource,
        origin: Origin,
    ) -> Result<Written, StatusError> {
        let key = info.storage_key(namespace, name);
        let (api_version, version, kind) = view_kind(info, sub);
        let deadline = tokio::time::Instant::now() + RETRY_WINDOW;
        // A dry run answers from what the store holds now; a write starts from the cache's copy.
        // An error found on the cache's copy, and that copy's revision.
        let mut refused = None;
        let mut fresh = opts.dry_run;
        while tokio::time::Instant::now() < deadline {
            // Admission reads the cache once it holds this server's writes; so does the copy
            // the update starts from.
            let view = self.admission_view().await;
            let Some(current) = self.current_for_update(info, &key, fresh).await? else {
                return Err(StatusError::not_found(info.group, info.plural, name));
            };
            // The copy was current after all: its error stands.
            if let Some((at, error)) = refused.take()
                && at == current.revision
            {
                return Err(error);
            }
            let (old, revision, from_store) = (current.object, current.revision, current.fresh);
            // Whether the attempt got as far as writing: what fails from there is answered as
            // it is, never tried again.
            let mut wrote = false;
            let attempt = async {
                let old_served = to_served(info, old.clone())?;
                let old_view = sub.view(info, old_served.clone());
                let new_view = change(&old_view)?;
                let sent_managed = new_view.pointer("/metadata/managedFields").cloned();
                check_types((&api_version, version, kind), &new_view, origin)?;
                if origin == Origin::Patch {
                    check_patched_identity(
                        (&api_version, version, kind),
                        &new_view,
                        name,
                        namespace.filter(|_| info.namespaced()),
                    )?;
                }
                let mut warnings = check_fields(
                    &opts,
                    (&api_version, version, kind),
                    schema(info, sub),
                    &new_view,
                    Some(&old_view),
                    origin,
                )?;
                // A resourceVersion in the client's object is a precondition. A patch carries the
                // current object's along: only one the patch itself changed is the client's (if it
                // names the current one, a concurrent write shows up on the next attempt as a
                // mismatch).
                let precondition = meta_str(&new_view, "resourceVersion")
                    .filter(|rv| !rv.is_empty())
                    .filter(|rv| {
                        origin != Origin::Patch
                            || Some(*rv) != meta_str(&old_view, "resourceVersion")
                    })
                    .map(str::to_string);
                if let Some(rv) = &precondition
                    && *rv != revision.to_string()
                {
                    return Err(StatusError::conflict(
                        info.group,
                        info.plural,
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                // Mutating admission sees the client's view (a Scale for `scale`, else the whole
                // object), defaulted as upstream's decoder defaults it.
                let admit = attributes(
                    info,
                    Operation::Update,
                    sub,
                    namespace,
                    name,
                    opts.user.as_ref(),
                    opts.dry_run,
                );
                let mut new_view = new_view;
                if sub == Subresource::Scale {
                    warnings.extend(
                        self.admission
                            .mutate(&admit, Some(&mut new_view), Some(&old_view), &view)
                            .await?,
                    );
                }
                // The strategy sees the served version; the store gets the storage version.
                let mut new = with_type(info, sub.merge(info, &old_served, new_view)?);
                set_namespace(info, &mut new, namespace)?;
                if sub != Subresource::Scale {
                    info.strategy.default(&mut new);
                    warnings.extend(
                        self.admission
                            .mutate(&admit, Some(&mut new), Some(&old_served), &view)
                            .await?,
                    );
                }
                meta::prepare_update(info, &mut new, &old_served, sub != Subresource::Status);
                info.strategy.default(&mut new);
                if sub == Subresource::Main {
                    info.strategy.prepare_for_update(&mut new, &old_served);
                }
                let mut errors = meta::validate(info, &new);
                errors.extend(meta::validate_update(&new, &old_served));
                errors.extend(info.strategy.validate_update(&new, &old_served));
                if !errors.is_empty() {
                    return Err(StatusError::invalid(info.group, info.kind, name, &errors));
                }
                if sub == Subresource::Main {
                    self.check_write(info, &opts, &new, Some(&old_served))?;
                }
                record_managers(info, &opts, sub, sent_managed.as_ref(), &old_served, &mut new)?;
                // What the resource's hooks reserve beyond the old object (a Service's new
                // cluster IPs and node ports) is in the object before validating admission sees
                // it (upstream's `BeginUpdate` also runs before it); an attempt that stores
                // nothing gives it back. (Resources with hooks store the version they serve.)
                let hooks = self.hooks(info);
                let mut reservation = Reserved::default();
                if let Some(hooks) = hooks {
                    reservation = hooks
                        .before_update(self.store.as_ref(), &mut new, &old, opts.dry_run)
                        .await?;
                }
                let admitted = async {
                    if sub == Subresource::Scale {
                        let scale = sub.view(info, new.clone());
                        self.admission.validate(&admit, Some(&scale), Some(&old_view), &view).await
                    } else {
                        let warnings = self
                            .admission
                            .validate(&admit, Some(&new), Some(&old_served), &view)
                            .await?;
                        self.admission
                            .charge_quota(self, &admit, Some(&new), Some(&old_served))
                            .await?;
                        Ok(warnings)
                    }
                }
                .await;
                match admitted {
                    Ok(more) => warnings.extend(more),
                    Err(e) => {
                        if let Some(hooks) = hooks {
                            hooks.update_failed(self.store.as_ref(), &reservation).await;
                        }
                        return Err(e);
                    }
                }
                let written =
                    |object| Written { object, warnings: warnings.clone(), created: false };
                metadata_mut(&mut new)
                    .insert("resourceVersion".into(), Value::String(revision.to_string()));
                if new == old_served {
                    // Nothing to write, unless the copy was behind.
                    if !from_store {
                        return Ok(Step::Retry);
                    }
                    return Ok(Step::Done(written(sub.view(info, old_served))));
                }
                // An object being deleted goes once its last finalizer is removed.
                let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
                    && new
                        .pointer("/metadata/finalizers")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
                    && !info.strategy.deletion_held(&new);
                let mut new = match to_stored(info, new) {
                    Ok(new) => new,
                    Err(e) => {
                        if let Some(hooks) = hooks {
                            hooks.update_failed(self.store.as_ref(), &reservation).await;
                        }
                        return Err(e);
                    }
                };
                if opts.dry_run {
                    return Ok(Step::Done(written(sub.view(info, to_served(info, new)?))));
                }
                let result = if finalized {
                    wrote = true;
                    match self.store.delete(&key, Some(revision)).await {
                        Ok(deleted) => {
                            self.note_written(deleted.mod_revision);
                            // Answer with the final state, at the delete's revision.
                            metadata_mut(&mut new).insert(
                                "resourceVersion".into(),
                                Value::String(deleted.mod_revision.to_string()),
                            );
                            Ok(new)
                        }
                        Err(e) => {
                            if let Some(hooks) = hooks {
                                hooks.update_failed(self.store.as_ref(), &reservation).await;
                            }
                            Err(e)
                        }
                    }
                } else {
                    let encoded = match encode(&mut new) {
                        Ok(encoded) => encoded,
                        Err(e) => {
                            if let Some(hooks) = hooks {
                                hooks.update_failed(self.store.as_ref(), &reservation).await;
                            }
                            return Err(e);
                        }
                    };
                    wrote = true;
                    match self.store.update(&key, encoded, revision).await {
                        Ok(kv) => {
                            self.note_written(kv.mod_revision);
                            Ok(stamped(new, kv.mod_revision))
                        }
                        Err(e) => {
                            if let Some(hooks) = hooks {
                                hooks.update_failed(self.store.as_ref(), &reservation).await;
                            }
                            Err(e)
                        }
                    }
                };
                match result {
                    Ok(stored) => {
                        if let Some(hooks) = hooks {
                            if finalized {
                                // What the old object held, and what this write reserved.
                                hooks.after_delete(self.store.as_ref(), &old).await;
                                hooks.update_failed(self.store.as_ref(), &reservation).await;
                            } else {
                                hooks.after_update(self.store.as_ref(), &stored, &old).await;
                            }
                        }
                        Ok(Step::Done(written(sub.view(info, to_served(info, stored)?))))
                    }
                    Err(StoreError::Conflict { .. }) if precondition.is_none() => Ok(Step::Retry),
                    Err(StoreError::Conflict { .. }) => Err(StatusError::conflict(
                        info.group,
                        info.plural,
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    )),
                    Err(StoreError::NotFound { .. }) => {
                        Err(StatusError::not_found(info.group, info.plural, name))
                    }
                    Err(e) => Err(store_error(e)),
                }
            };
            match attempt.await {
                Ok(Step::Done(written)) => return Ok(written),
                // Lost a race, or refused a copy that may be behind: again from the store.
                Ok(Step::Retry) => fresh = true,
                Err(error) if !from_store && !wrote => {
                    refused = Some((revision, error));
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StatusError::conflict(
            info.group,
            info.plural,
            name,
            "too many concurrent writes; try again",
        ))
    }
}
