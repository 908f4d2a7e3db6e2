//! Which Ingresses this controller serves, and in which order (pure).
//!
//! An Ingress is served when its `spec.ingressClassName` (or the older
//! `kubernetes.io/ingress.class` annotation, which upstream's validation forbids beside the
//! field) names an IngressClass of this controller, or when it names none and one of this
//! controller's classes is the cluster's default (`ingressclass.kubernetes.io/is-default-class:
//! "true"`), as upstream's ingress-nginx decides. Served Ingresses are ordered oldest first
//! (then by namespace and name), so that when two claim the same host and path the older one
//! keeps it, as ingress-nginx does.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::routes::Key;

/// The annotation that makes an IngressClass the default.
pub const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation older Ingresses name their class by.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// What the controller keeps of an IngressClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassView {
    /// The class's name.
    pub name: String,
    /// `spec.controller`.
    pub controller: String,
    /// Whether it is marked as the cluster's default.
    pub default: bool,
}

impl ClassView {
    /// The view of `class`.
    pub fn of(class: &IngressClass) -> ClassView {
        ClassView {
            name: class.metadata.name.clone().unwrap_or_default(),
            controller: class.spec.as_ref().and_then(|s| s.controller.clone()).unwrap_or_default(),
            default: class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .is_some_and(|v| v == "true"),
        }
    }
}

/// What the controller keeps of an Ingress: what routes are made of, what says whose it is,
/// and the addresses its status lists.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressView {
    /// `metadata.creationTimestamp` (older Ingresses win conflicts).
    pub created: Option<Time>,
    /// The class it names, by field or by annotation.
    pub class: Option<String>,
    /// Its spec.
    pub spec: IngressSpec,
    /// The `ip` (or `hostname`) of each entry of `status.loadBalancer.ingress`.
    pub status: Vec<String>,
}

impl IngressView {
    /// The view of `ingress`.
    pub fn of(ingress: &Ingress) -> IngressView {
        let spec = ingress.spec.clone().unwrap_or_default();
        let class = spec.ingress_class_name.clone().or_else(|| {
            ingress.metadata.annotations.as_ref().and_then(|a| a.get(CLASS_ANNOTATION)).cloned()
        });
        let status = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            .collect();
        IngressView { created: ingress.metadata.creation_timestamp.clone(), class, spec, status }
    }
}

/// Whether an Ingress naming `class` (or none) is for `controller`, given the cluster's
/// IngressClasses.
pub fn ours<'a>(
    class: Option<&str>,
    classes: impl IntoIterator<Item = &'a ClassView>,
    controller: &str,
) -> bool {
    let mut mine = classes.into_iter().filter(|c| c.controller == controller);
    match class {
        Some(name) => mine.any(|c| c.name == name),
        None => mine.any(|c| c.default),
    }
}

/// The Ingresses `controller` serves, oldest first (then by namespace and name).
pub fn served<'a>(
    ingresses: impl IntoIterator<Item = (&'a Key, &'a IngressView)>,
    classes: &[&ClassView],
    controller: &str,
) -> Vec<(&'a Key, &'a IngressView)> {
    let mut served: Vec<(&Key, &IngressView)> = ingresses
        .into_iter()
        .filter(|(_, i)| ours(i.class.as_deref(), classes.iter().copied(), controller))
        .collect();
    // `None` (no timestamp, never so from an API server) sorts first; ties by key.
    served.sort_by(|(ka, a), (kb, b)| a.created.cmp(&b.created).then_with(|| ka.cmp(kb)));
    served
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const C: &str = "krust.dev/ingress";

    fn class(name: &str, controller: &str, default: bool) -> ClassView {
        ClassView { name: name.into(), controller: controller.into(), default }
    }

    fn ingress(class: Option<&str>, annotation: Option<&str>, created: &str) -> IngressView {
        IngressView::of(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "i", "creationTimestamp": created,
                    "annotations": annotation.map(|a| serde_json::json!({CLASS_ANNOTATION: a})).unwrap_or(serde_json::json!({}))},
                "spec": {"ingressClassName": class},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"hostname": "lb.test"}]}}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_ingress_is_ours_by_class_name_annotation_or_default_class() {
        let krust = class("krust", C, true);
        let other = class("nginx", "k8s.io/ingress-nginx", false);
        let classes = [&krust, &other];
        let is_ours = |i: &IngressView| ours(i.class.as_deref(), classes, C);
        let at = "2026-01-01T00:00:00Z";
        assert!(is_ours(&ingress(Some("krust"), None, at)));
        assert!(!is_ours(&ingress(Some("nginx"), None, at)));
        assert!(!is_ours(&ingress(Some("missing"), None, at)));
        assert!(is_ours(&ingress(None, None, at)));
        assert!(is_ours(&ingress(None, Some("krust"), at)));
        assert!(!is_ours(&ingress(None, Some("nginx"), at)));
        let not_default = class("krust", C, false);
        assert!(!ours(None, [&not_default], C));
        // Another controller's default class does not make class-less Ingresses ours.
        let theirs = class("nginx", "k8s.io/ingress-nginx", true);
        assert!(!ours(None, [&not_default, &theirs], C));
    }

    #[test]
    fn the_view_reads_class_and_status() {
        let i = ingress(None, Some("krust"), "2026-01-01T00:00:00Z");
        assert_eq!(i.class.as_deref(), Some("krust"));
        assert_eq!(i.status, vec!["10.0.0.1".to_string(), "lb.test".to_string()]);
    }

    #[test]
    fn served_ingresses_come_oldest_first() {
        let krust = class("krust", C, true);
        let old = ingress(None, None, "2026-01-01T00:00:00Z");
        let new = ingress(None, None, "2026-02-01T00:00:00Z");
        let theirs = ingress(Some("nginx"), None, "2025-01-01T00:00:00Z");
        let (a, b, c, d) = (
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "x".to_string()),
            ("c".to_string(), "x".to_string()),
            ("a".to_string(), "y".to_string()),
        );
        let all = [(&a, &new), (&b, &old), (&c, &theirs), (&d, &new)];
        let order: Vec<&Key> = served(all, &[&krust], C).into_iter().map(|(k, _)| k).collect();
        assert_eq!(order, vec![&b, &a, &d]);
    }
}
