//! DefaultIngressClass, as upstream's `plugin/pkg/admission/defaultingressclass`: an Ingress
//! created without `spec.ingressClassName` (and without the legacy
//! `kubernetes.io/ingress.class` annotation) gets the name of the default IngressClass, the
//! one annotated `ingressclass.kubernetes.io/is-default-class: "true"`; of several, the
//! newest, then the first by name. A class name given, even `""`, is kept.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, is, typed};

/// Upstream's name.
pub const NAME: &str = "DefaultIngressClass";

/// The annotation marking the default class.
pub const DEFAULT_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The annotation that named an Ingress's class before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The plugin.
pub struct DefaultIngressClass;

impl Plugin for DefaultIngressClass {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The default class among `classes`: of those annotated, the newest, then by name.
pub fn default_class(classes: &[IngressClass]) -> Option<&IngressClass> {
    classes
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_ANNOTATION))
                .map(String::as_str)
                == Some("true")
        })
        .min_by(|a, b| {
            let created = |c: &IngressClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b).cmp(&created(a)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

impl Mutating for DefaultIngressClass {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create
            || !is(attributes, "networking.k8s.io", "ingresses")
        {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(ingress) = typed::<Ingress>(object) else { return Ok(()) };
        if ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_ref()).is_some()
            || ingress
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LEGACY_CLASS_ANNOTATION))
        {
            return Ok(());
        }
        let classes: Vec<IngressClass> = cluster
            .list("networking.k8s.io", "ingressclasses", "")
            .iter()
            .filter_map(typed)
            .collect();
        let Some(name) = default_class(&classes).and_then(|c| c.metadata.name.clone()) else {
            return Ok(());
        };
        let Some(map) = object.as_object_mut() else { return Ok(()) };
        let spec = map.entry("spec").or_insert_with(|| Value::Object(Default::default()));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("ingressClassName".into(), Value::String(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn class(
        name: &str,
        default: Option<&str>,
        created: &str,
    ) -> (&'static str, &'static str, Value) {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"controller": "example.com/ingress"}});
        if let Some(value) = default {
            c["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: value});
        }
        ("networking.k8s.io", "ingressclasses", c)
    }

    fn ingress(spec: Value, annotations: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
            "spec": spec})
    }

    #[test]
    fn new_ingresses_get_the_default_class() {
        let cluster = Objects(vec![
            class("plain", None, "2024-01-04T00:00:00Z"),
            class("false", Some("false"), "2024-01-05T00:00:00Z"),
            class("old", Some("true"), "2024-01-01T00:00:00Z"),
            class("new-b", Some("true"), "2024-01-02T00:00:00Z"),
            class("new-a", Some("true"), "2024-01-02T00:00:00Z"),
        ]);
        let cases: &[(&str, Value, Value, Value)] = &[
            (
                "no class gets the newest default, first by name",
                json!({}),
                json!({}),
                json!("new-a"),
            ),
            (
                "a named class is kept",
                json!({"ingressClassName": "plain"}),
                json!({}),
                json!("plain"),
            ),
            ("an empty class is kept", json!({"ingressClassName": ""}), json!({}), json!("")),
            (
                "the legacy annotation keeps the class unset",
                json!({}),
                json!({LEGACY_CLASS_ANNOTATION: "nginx"}),
                Value::Null,
            ),
        ];
        for (case, spec, annotations, expected) in cases {
            let mut object = ingress(spec.clone(), annotations.clone());
            DefaultIngressClass
                .admit(
                    &create("networking.k8s.io", "ingresses", "ns"),
                    Some(&mut object),
                    None,
                    &cluster,
                )
                .unwrap();
            assert_eq!(object["spec"]["ingressClassName"], *expected, "{case}");
        }
    }

    #[test]
    fn without_a_default_or_on_update_nothing_changes() {
        let cluster = Objects(vec![class("plain", None, "2024-01-04T00:00:00Z")]);
        let mut object = ingress(json!({}), json!({}));
        let attributes = create("networking.k8s.io", "ingresses", "ns");
        DefaultIngressClass.admit(&attributes, Some(&mut object), None, &cluster).unwrap();
        assert_eq!(object["spec"].get("ingressClassName"), None);
        let with_default = Objects(vec![class("d", Some("true"), "2024-01-04T00:00:00Z")]);
        let mut update = attributes.clone();
        update.operation = Operation::Update;
        DefaultIngressClass.admit(&update, Some(&mut object), None, &with_default).unwrap();
        assert_eq!(object["spec"].get("ingressClassName"), None);
    }
}
