//! Which Ingresses this controller serves (pure): those whose `ingressClassName` (or the
//! older `kubernetes.io/ingress.class` annotation) names an IngressClass of its controller, and
//! those naming none while one of its classes is the cluster's default.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The annotation that makes an IngressClass the default.
pub const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation older Ingresses name their class by.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether `ingress` is for `controller`, given the cluster's IngressClasses.
pub fn ours(ingress: &Ingress, classes: &[&IngressClass], controller: &str) -> bool {
    let mine = |class: &&&IngressClass| {
        class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller)
    };
    let named = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.clone()).or_else(|| {
        ingress.metadata.annotations.as_ref().and_then(|a| a.get(CLASS_ANNOTATION)).cloned()
    });
    match named {
        Some(name) => {
            classes.iter().filter(mine).any(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        }
        None => classes.iter().filter(mine).any(|c| {
            c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS)).map(String::as_str)
                == Some("true")
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": if default { serde_json::json!({DEFAULT_CLASS: "true"}) } else { serde_json::json!({}) }},
            "spec": {"controller": controller}
        }))
        .unwrap()
    }

    fn ingress(class: Option<&str>, annotation: Option<&str>) -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "i", "annotations": annotation.map(|a| serde_json::json!({CLASS_ANNOTATION: a})).unwrap_or(serde_json::json!({}))},
            "spec": {"ingressClassName": class}
        }))
        .unwrap()
    }

    #[test]
    fn classes_decide() {
        let krust = class("krust", "krust.dev/ingress", true);
        let other = class("nginx", "k8s.io/ingress-nginx", false);
        let classes = [&krust, &other];
        let c = "krust.dev/ingress";
        assert!(ours(&ingress(Some("krust"), None), &classes, c));
        assert!(!ours(&ingress(Some("nginx"), None), &classes, c));
        assert!(ours(&ingress(None, None), &classes, c));
        assert!(ours(&ingress(None, Some("krust")), &classes, c));
        assert!(!ours(&ingress(None, Some("nginx")), &classes, c));
        let not_default = class("krust", "krust.dev/ingress", false);
        assert!(!ours(&ingress(None, None), &[&not_default], c));
    }
}
