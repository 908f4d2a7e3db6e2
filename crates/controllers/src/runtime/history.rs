//! A DaemonSet's or StatefulSet's revision history in ControllerRevisions, as upstream
//! keeps it (and as `kubectl rollout history|undo` reads it): one revision per distinct
//! template, named `<set>-<hash>`, whose data is the patch that restores the template; the
//! revision in use gets the highest number; old ones beyond `revisionHistoryLimit` that no pod
//! uses go.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use crate::runtime::owner::controller_ref;

/// The label a revision carries with its hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The set a history belongs to.
pub struct Owner<'a> {
    /// Its metadata (name, namespace, uid).
    pub meta: &'a ObjectMeta,
    /// Its kind (`DaemonSet`, `StatefulSet`; all `apps/v1`).
    pub kind: &'static str,
    /// Its pod template.
    pub template: &'a PodTemplateSpec,
    /// Its `revisionHistoryLimit`.
    pub limit: Option<i32>,
}

/// The revision data of a template: the strategic merge patch that restores it.
pub fn data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(object) = template.as_object_mut() {
        object.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision's data restores, compared as JSON.
fn template_of(data: &Value) -> Option<Value> {
    let mut template = data.get("spec")?.get("template")?.clone();
    if let Some(object) = template.as_object_mut() {
        object.remove("$patch");
    }
    Some(template)
}

/// What to do with the history.
#[derive(Debug, Default)]
pub struct Changes {
    /// A revision to create for the current template.
    pub create: Option<ControllerRevision>,
    /// An existing revision of the current template to renumber (it becomes the newest).
    pub renumber: Option<ControllerRevision>,
    /// Revisions to delete.
    pub delete: Vec<ControllerRevision>,
}

/// The revision of `owner`'s template among its `revisions`, if there is one.
pub fn current<'a>(
    owner: &Owner<'_>,
    revisions: &[&'a ControllerRevision],
) -> Option<&'a ControllerRevision> {
    let template = template_of(&data(owner.template));
    revisions.iter().copied().find(|r| r.data.as_ref().and_then(|d| template_of(&d.0)) == template)
}

/// The history changes for `owner` whose template hashes to `hash`, given its `revisions`
/// and the hashes (or revision names) its live pods carry.
pub fn changes(
    owner: &Owner<'_>,
    hash: &str,
    revisions: &[&ControllerRevision],
    used: &[&str],
) -> Changes {
    let mut changes = Changes::default();
    let wanted = data(owner.template);
    let template = template_of(&wanted);
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let current =
        revisions.iter().find(|r| r.data.as_ref().and_then(|d| template_of(&d.0)) == template);
    match current {
        Some(r) if r.revision < newest => {
            let mut renumbered = (*r).clone();
            renumbered.revision = newest + 1;
            changes.renumber = Some(renumbered);
        }
        Some(_) => {}
        None => {
            let name = owner.meta.name.clone().unwrap_or_default();
            let mut labels: BTreeMap<String, String> =
                owner.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.to_string(), hash.to_string());
            changes.create = Some(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{hash}")),
                    namespace: owner.meta.namespace.clone(),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref("apps/v1", owner.kind, owner.meta)]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(wanted)),
                revision: newest + 1,
            });
        }
    }
    let limit = usize::try_from(owner.limit.unwrap_or(10)).unwrap_or(0);
    let current_name = current.and_then(|r| r.metadata.name.clone());
    let mut old: Vec<&&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.metadata.name != current_name)
        .filter(|r| {
            let hash = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            !hash.is_some_and(|h| used.contains(&h.as_str()))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit);
    changes.delete = old.into_iter().take(excess).map(|r| (*r).clone()).collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn ds(image: &str) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                uid: Some("uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                revision_history_limit: Some(1),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some(image.into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn owner(ds: &DaemonSet) -> Owner<'_> {
        let spec = ds.spec.as_ref().expect("a spec");
        Owner {
            meta: &ds.metadata,
            kind: "DaemonSet",
            template: &spec.template,
            limit: spec.revision_history_limit,
        }
    }

    fn made(ds: &DaemonSet, hash: &str, revisions: &[&ControllerRevision]) -> ControllerRevision {
        changes(&owner(ds), hash, revisions, &[]).create.expect("a new revision")
    }

    #[test]
    fn revisions_follow_the_template() {
        let v1 = made(&ds("a:1"), "h1", &[]);
        assert_eq!((v1.revision, v1.metadata.name.as_deref()), (1, Some("agent-h1")));
        assert_eq!(
            v1.data.as_ref().map(|d| d.0["spec"]["template"]["$patch"].clone()),
            Some(json!("replace"))
        );
        assert!(changes(&owner(&ds("a:1")), "h1", &[&v1], &[]).create.is_none());
        let v2 = made(&ds("a:2"), "h2", &[&v1]);
        assert_eq!(v2.revision, 2);
        // Back to the first template (an undo): it is renumbered, nothing is created; the
        // limit of one old revision keeps v2.
        let back = changes(&owner(&ds("a:1")), "h1", &[&v1, &v2], &[]);
        assert!(back.create.is_none());
        assert_eq!(back.renumber.map(|r| r.revision), Some(3));
        assert!(back.delete.is_empty());
        // A third template: with a limit of one, the oldest unused goes.
        let v3 = made(&ds("a:3"), "h3", &[&v1, &v2]);
        let next = changes(&owner(&ds("a:3")), "h3", &[&v1, &v2, &v3], &[]);
        assert_eq!(
            next.delete.iter().filter_map(|r| r.metadata.name.as_deref()).collect::<Vec<_>>(),
            ["agent-h1"]
        );
        // A revision a pod still runs is kept, and not counted against the limit.
        let used = changes(&owner(&ds("a:3")), "h3", &[&v1, &v2, &v3], &["h1"]);
        assert!(used.delete.is_empty());
    }
}
