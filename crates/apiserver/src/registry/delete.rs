//! Delete and deletecollection, with preconditions, grace periods, finalizers and the
//! propagation policy the garbage collector reads.

use chrono::{Duration, Utc};
use krust_api::object::{meta_str, metadata_mut};
use krust_api::{ResourceInfo, StatusError};
use krust_store::StoreError;
use serde_json::{Value, json};

use super::options::ListOptions;
use super::subresource::Subresource;
use super::{Registry, attributes, encode, meta, stamped, store_error, to_served};
use krust_admission::Operation;

/// How many times a delete retries after losing a race.
const MAX_RETRIES: usize = 16;

/// What a delete asks for (meta/v1 `DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Seconds before the object goes; 0 deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the uid is this one.
    pub uid: Option<String>,
    /// Delete only if the resourceVersion is this one.
    pub resource_version: Option<String>,
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// Check and answer, but change nothing.
    pub dry_run: bool,
    /// Who asks, for admission; `None` for the server's own deletes.
    pub user: Option<krust_auth::UserInfo>,
}

impl DeleteOptions {
    /// Reads options from a `DeleteOptions` body (may be empty) and the query.
    pub fn from_parts(
        body: Option<&Value>,
        query: &super::options::Query,
    ) -> Result<Self, StatusError> {
        let body = body.cloned().unwrap_or_else(|| json!({}));
        let mut opts = Self {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            propagation_policy: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All")),
            user: None,
        };
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && opts.propagation_policy.is_none()
        {
            opts.propagation_policy = Some("Orphan".into());
        }
        if let Some(grace) = query.get("gracePeriodSeconds") {
            let grace = grace.parse().map_err(|_| {
                StatusError::bad_request(format!("invalid gracePeriodSeconds: {grace:?}"))
            })?;
            opts.grace_period_seconds = Some(grace);
        }
        if let Some(policy) = query.get("propagationPolicy") {
            opts.propagation_policy = Some(policy.to_string());
        }
        opts.dry_run |= query.dry_run()?;
        if let Some(policy) = &opts.propagation_policy
            && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(StatusError::new(
                krust_api::Reason::Invalid,
                format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            ));
        }
        if opts.grace_period_seconds.is_some_and(|g| g < 0) {
            opts.grace_period_seconds = Some(0);
        }
        Ok(opts)
    }
}

/// What a delete answers: what it did, and the warnings for the client (`Warning` headers:
/// admission's, from webhooks and policies bound with `Warn`).
#[derive(Debug)]
pub struct Deletion {
    /// What the delete did.
    pub outcome: Deleted,
    /// Admission's warnings, the mutating stage's first.
    pub warnings: Vec<String>,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; its last state.
    Now(Value),
    /// The object is marked for deletion and waits (finalizers, grace period).
    Pending(Value),
}

impl Registry {
    /// Deletes one object.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deletion, StatusError> {
        let key = info.storage_key(namespace, name);
        for _ in 0..MAX_RETRIES {
            let Some((old, kv)) = self.current(&key).await? else {
                return Err(StatusError::not_found(info.group, info.plural, name));
            };
            check_preconditions(info, &old, opts)?;
            // Admission sees no new object, and the current one as the old.
            let warnings = {
                let view = self.admission_view().await;
                let admit = attributes(
                    info,
                    Operation::Delete,
                    Subresource::Main,
                    namespace,
                    name,
                    opts.user.as_ref(),
                    opts.dry_run,
                );
                let current = to_served(info, old.clone())?;
                let mut warnings =
                    self.admission.mutate(&admit, None, Some(&current), &view).await?;
                warnings
                    .extend(self.admission.validate(&admit, None, Some(&current), &view).await?);
                warnings
            };
            let answer = |outcome| Ok(Deletion { outcome, warnings: warnings.clone() });
            let mut new = old.clone();
            let finalizers_changed = apply_policy(&mut new, opts.propagation_policy.as_deref());
            let marked = old.pointer("/metadata/deletionTimestamp").is_some();
            let grace = info.strategy.deletion_grace(&old, opts.grace_period_seconds);
            let has_finalizers = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            // Something besides finalizers may hold the object once marked (a namespace's
            // spec.finalizers); look at it as it would be marked.
            let mut probe = new.clone();
            metadata_mut(&mut probe)
                .insert("deletionGracePeriodSeconds".into(), Value::from(grace.unwrap_or(0)));
            let held = has_finalizers || grace.is_some() || info.strategy.deletion_held(&probe);
            if let Some(refusal) = info.strategy.refuse_delete(&old) {
                return Err(StatusError::forbidden(format!(
                    "{} \"{name}\" is forbidden: {refusal}",
                    info.plural
                )));
            }
            if held {
                if marked && !finalizers_changed {
                    return answer(Deleted::Pending(to_served(info, old)?));
                }
                if !marked {
                    let seconds = grace.unwrap_or(0);
                    let meta = metadata_mut(&mut new);
                    meta.insert(
                        "deletionTimestamp".into(),
                        Value::String(meta::timestamp(Utc::now() + Duration::seconds(seconds))),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), Value::from(seconds));
                    info.strategy.prepare_for_delete(&mut new);
                }
                if opts.dry_run {
                    return answer(Deleted::Pending(to_served(info, new)?));
                }
                match self.store.update(&key, encode(&mut new)?, kv.mod_revision).await {
                    Ok(kv) => {
                        self.note_written(kv.mod_revision);
                        return answer(Deleted::Pending(to_served(
                            info,
                            stamped(new, kv.mod_revision),
                        )?));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => {
                        return Err(StatusError::not_found(info.group, info.plural, name));
                    }
                    Err(e) => return Err(store_error(e)),
                }
            }
            if opts.dry_run {
                return answer(Deleted::Now(to_served(info, old)?));
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(kv) => {
                    self.note_written(kv.mod_revision);
                    if let Some(hooks) = self.hooks(info) {
                        hooks.after_delete(self.store.as_ref(), &old).await;
                    }
                    return answer(Deleted::Now(to_served(info, stamped(old, kv.mod_revision))?));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(StatusError::not_found(info.group, info.plural, name));
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(StatusError::conflict(
            info.group,
            info.plural,
            name,
            "too many concurrent writes; try again",
        ))
    }

    /// Deletes every object a list with `list_opts` would return; answers the deleted objects.
    pub async fn delete_collection(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, StatusError> {
        let listed = self.list(info, namespace, list_opts).await?;
        let mut deleted = Vec::new();
        for obj in listed.items.into_values() {
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            let ns = meta_str(&obj, "namespace").map(str::to_string);
            match self.delete(info, ns.as_deref().or(namespace), &name, opts).await {
                Ok(Deletion { outcome: Deleted::Now(obj) | Deleted::Pending(obj), .. }) => {
                    deleted.push(obj);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

/// The delete's preconditions against the stored object, refused as upstream's
/// `rest.BeforeDelete` refuses them (a Conflict on the object's kind).
fn check_preconditions(
    info: &ResourceInfo,
    obj: &Value,
    opts: &DeleteOptions,
) -> Result<(), StatusError> {
    let name = meta_str(obj, "name").unwrap_or_default();
    if let Some(uid) = &opts.uid {
        let actual = meta_str(obj, "uid").unwrap_or_default();
        if uid != actual {
            let why = format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
            );
            return Err(StatusError::conflict(info.group, info.kind, name, &why));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let actual = meta_str(obj, "resourceVersion").unwrap_or_default();
        if rv != actual {
            let why = format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({actual}). The object might have been modified"
            );
            return Err(StatusError::conflict(info.group, info.kind, name, &why));
        }
    }
    Ok(())
}

/// Adds the finalizer the garbage collector reads for `Orphan` and `Foreground` deletion (and
/// removes the other one); answers whether the finalizers changed.
fn apply_policy(obj: &mut Value, policy: Option<&str>) -> bool {
    let (add, remove) = match policy {
        Some("Orphan") => ("orphan", "foregroundDeletion"),
        Some("Foreground") => ("foregroundDeletion", "orphan"),
        Some("Background") => return remove_finalizers(obj, &["orphan", "foregroundDeletion"]),
        _ => return false,
    };
    let mut changed = remove_finalizers(obj, &[remove]);
    let meta = metadata_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == add)
    {
        list.push(Value::from(add));
        changed = true;
    }
    changed
}

fn remove_finalizers(obj: &mut Value, names: &[&str]) -> bool {
    let Some(list) = obj.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) else {
        return false;
    };
    let before = list.len();
    list.retain(|f| !names.iter().any(|n| f == n));
    before != list.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_deletion_adds_its_finalizer_once() {
        let mut obj = json!({"metadata": {"finalizers": ["orphan"]}});
        assert!(apply_policy(&mut obj, Some("Foreground")));
        assert_eq!(obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert!(!apply_policy(&mut obj, Some("Foreground")));
    }

    #[test]
    fn a_stale_uid_precondition_is_a_conflict() {
        let catalog = krust_api::Catalog::builtin();
        let info = catalog.lookup("", "v1", "configmaps").expect("configmaps");
        let obj = json!({"metadata": {"name": "x", "uid": "a"}});
        let opts = DeleteOptions { uid: Some("b".into()), ..Default::default() };
        let e = check_preconditions(&info, &obj, &opts).expect_err("a conflict");
        assert_eq!((e.code(), e.reason), (409, krust_api::Reason::Conflict));
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on ConfigMap \"x\": the UID in the precondition (b) does not match the UID in record (a). The object might have been deleted and then recreated"
        );
    }
}
