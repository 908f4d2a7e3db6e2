//! Admission: what happens to a write after it is authorized and before it is stored, as
//! upstream's admission chain.
//!
//! Order, as upstream's: every [`Mutating`] plugin (in the order configured) may change the
//! object; the resource's strategy then defaults and validates it; then every [`Validating`]
//! plugin may refuse it. Dry-run writes pass through the chain too (plugins with side effects
//! skip those when [`Attributes::dry_run`] is set).
//!
//! Plugins read the cluster through a [`ClusterView`] (the API server's watch cache: never a
//! store read per request) and read built-in objects typed (`k8s-openapi`). Their refusals are
//! `StatusError`s worded as upstream's.
//!
//! *Invariant*: no network, disk, clock of its own, async or HTTP; the API server wires the
//! chain into its registry and feeds it views of its caches.

pub mod node_restriction;
pub mod policy;
pub mod webhook;

use bytes::Bytes;
use krust_api::StatusError;
use krust_auth::UserInfo;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The operation a write performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A create (POST, or an apply that creates).
    Create,
    /// An update (PUT, PATCH, apply).
    Update,
    /// A delete.
    Delete,
    /// A connect (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    /// Upstream's name (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// What a write is, as the plugins see it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The operation.
    pub operation: Operation,
    /// API group of the resource (empty for core).
    pub group: &'a str,
    /// API version the client used.
    pub version: &'a str,
    /// Kind of the object.
    pub kind: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
    /// Subresource (`status`, `binding`, ...), empty for the object itself.
    pub subresource: &'a str,
    /// Namespace, empty for cluster-scoped resources.
    pub namespace: &'a str,
    /// Object name (may be empty on create with `generateName`).
    pub name: &'a str,
    /// Who asks (`None`: the server itself).
    pub user: Option<&'a UserInfo>,
    /// Whether nothing will be stored.
    pub dry_run: bool,
}

/// Read access to the cluster's current objects (the API server's caches), as their encoded
/// JSON: a plugin decodes what it reads straight into the typed object or the small view it
/// needs (`get` and `list` on `dyn ClusterView`), never through a `Value` of the whole object.
pub trait ClusterView: Send + Sync {
    /// One object's JSON, in its storage version, if it exists.
    fn get_json(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Bytes>;
    /// The JSON of every object of a resource in `namespace` (empty: all namespaces).
    fn list_json(&self, group: &str, resource: &str, namespace: &str) -> Vec<Bytes>;
}

impl dyn ClusterView + '_ {
    /// One object decoded as `T`; `None` when it is missing or does not decode as `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<T> {
        let json = self.get_json(group, resource, namespace, name)?;
        serde_json::from_slice(&json).ok()
    }

    /// Every object of a resource in `namespace` (empty: all namespaces) that decodes as `T`.
    pub fn list<T: DeserializeOwned>(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
    ) -> Vec<T> {
        let objects = self.list_json(group, resource, namespace);
        objects.iter().filter_map(|json| serde_json::from_slice(json).ok()).collect()
    }
}

/// A named admission plugin.
pub trait Plugin: Send + Sync {
    /// Upstream's name (`NamespaceLifecycle`, `LimitRanger`, ...), used by
    /// `--enable-admission-plugins` / `--disable-admission-plugins`.
    fn name(&self) -> &'static str;
}

/// A plugin that may change the object of a write.
pub trait Mutating: Plugin {
    /// Changes `object` (the new object; for deletes and connects, there is none) or refuses.
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError>;
}

/// A plugin that may refuse a write, after the object is defaulted and validated.
pub trait Validating: Plugin {
    /// Accepts or refuses the write.
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError>;

    /// [`validate`](Self::validate), adding to `warnings` what the client should be told
    /// (upstream's admission warnings, answered as `Warning` headers); by default, nothing.
    fn validate_with_warnings(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) -> Result<(), StatusError> {
        let _ = warnings;
        self.validate(attributes, object, old, cluster)
    }
}

/// The configured plugins, in order.
#[derive(Default)]
pub struct Chain {
    /// Mutating plugins, run first, in order.
    pub mutating: Vec<Box<dyn Mutating>>,
    /// Validating plugins, run after the strategy's validation, in order.
    pub validating: Vec<Box<dyn Validating>>,
    /// ResourceQuota, when enabled: upstream runs it last of all validation (after the
    /// webhooks and policies), and what it admits must be charged to the quotas before the
    /// object is stored, so the API server calls it apart
    /// ([`resource_quota::ResourceQuota::check`]).
    pub quota: Option<resource_quota::ResourceQuota>,
}

impl Chain {
    /// Runs the mutating plugins; the first refusal ends the write.
    pub fn admit(
        &self,
        attributes: &Attributes<'_>,
        mut object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        for plugin in &self.mutating {
            plugin.admit(attributes, object.as_deref_mut(), old, cluster)?;
        }
        Ok(())
    }

    /// Runs the validating plugins; the first refusal ends the write. Answers the warnings
    /// for the client, in the plugins' order.
    pub fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        let mut warnings = Vec::new();
        for plugin in &self.validating {
            plugin.validate_with_warnings(attributes, object, old, cluster, &mut warnings)?;
        }
        Ok(warnings)
    }
}

pub mod certificate_approval;
pub mod certificate_signing;
pub mod certificate_subject_restriction;
pub mod cluster_trust_bundle_attest;
pub mod config;
pub mod default_ingress_class;
pub mod default_storage_class;
pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod persistent_volume_claim_resize;
pub mod pod_security;
pub mod pod_topology_labels;
pub mod priority;
pub use krust_api::quantity;
pub mod resource_quota;
pub mod runtime_class;
pub mod service_account;
pub mod signer_authorization;
pub mod storage_object_in_use_protection;
pub mod taint_nodes_by_condition;

mod plugins;

pub use config::PluginConfigs;
pub use plugins::{ALL_UPSTREAM, DEFAULT_ENABLED, IMPLEMENTED, Selection, SelectionError, build};

/// Upstream's `admission.NewForbidden`: 403 `{resource} "{name}" is forbidden: {why}`, naming
/// the object (or its `generateName` before a name is generated; `Unknown` without either).
pub fn forbidden(attributes: &Attributes<'_>, object: Option<&Value>, why: &str) -> StatusError {
    let meta = |field: &str| {
        object
            .and_then(|o| o.pointer(&format!("/metadata/{field}")))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = meta("name")
        .or_else(|| meta("generateName"))
        .or_else(|| (!attributes.name.is_empty()).then(|| attributes.name.to_string()))
        .unwrap_or_else(|| "Unknown".to_string());
    let qualified = if attributes.group.is_empty() {
        attributes.resource.to_string()
    } else {
        format!("{}.{}", attributes.resource, attributes.group)
    };
    StatusError {
        details: Some(serde_json::json!({
            "name": name, "group": attributes.group, "kind": attributes.resource,
        })),
        ..StatusError::forbidden(format!("{qualified} \"{name}\" is forbidden: {why}"))
    }
}

/// Reads a built-in object typed; `None` when it does not decode (the registry type-checked
/// it already, so that is an object of another kind).
pub fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// Whether a write is to `group`/`resource` itself (not a subresource).
pub fn is(attributes: &Attributes<'_>, group: &str, resource: &str) -> bool {
    attributes.group == group
        && attributes.resource == resource
        && attributes.subresource.is_empty()
}

#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    //! A cluster view over a list of objects, and attributes for tests.

    use super::*;

    /// Objects by (group, resource).
    #[derive(Default)]
    pub struct Objects(pub Vec<(&'static str, &'static str, Value)>);

    impl Objects {
        fn matching(&self, group: &str, resource: &str, namespace: &str) -> Vec<&Value> {
            self.0
                .iter()
                .filter(|(g, r, o)| {
                    *g == group
                        && *r == resource
                        && (namespace.is_empty()
                            || o.pointer("/metadata/namespace").and_then(Value::as_str)
                                == Some(namespace))
                })
                .map(|(_, _, o)| o)
                .collect()
        }
    }

    impl ClusterView for Objects {
        fn get_json(
            &self,
            group: &str,
            resource: &str,
            namespace: &str,
            name: &str,
        ) -> Option<Bytes> {
            self.matching(group, resource, namespace)
                .into_iter()
                .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
                .map(json)
        }

        fn list_json(&self, group: &str, resource: &str, namespace: &str) -> Vec<Bytes> {
            self.matching(group, resource, namespace).into_iter().map(json).collect()
        }
    }

    /// An object's JSON, as a cluster view answers it.
    pub fn json(object: &Value) -> Bytes {
        Bytes::from(serde_json::to_vec(object).unwrap())
    }

    /// An authorizer allowing each (user, verb, name) on the `signers` of
    /// `certificates.k8s.io`, and nothing else.
    pub struct Grants(pub Vec<(String, String, String)>);

    impl Grants {
        /// The grants of `list`.
        pub fn new(list: &[(&str, &str, &str)]) -> Self {
            Self(
                list.iter()
                    .map(|(u, v, n)| (u.to_string(), v.to_string(), n.to_string()))
                    .collect(),
            )
        }
    }

    impl krust_auth::Authorizer for Grants {
        fn authorize(&self, a: &krust_auth::Attributes) -> krust_auth::Decision {
            let granted = a.api_group == "certificates.k8s.io"
                && a.resource == "signers"
                && self.0.iter().any(|(u, v, n)| *u == a.user.name && *v == a.verb && *n == a.name);
            if granted {
                krust_auth::Decision::Allow(String::new())
            } else {
                krust_auth::Decision::NoOpinion(String::new())
            }
        }
    }

    /// A create of `group`/`resource` in `namespace`.
    pub fn create<'a>(group: &'a str, resource: &'a str, namespace: &'a str) -> Attributes<'a> {
        Attributes {
            operation: Operation::Create,
            group,
            version: "v1",
            kind: "",
            resource,
            subresource: "",
            namespace,
            name: "",
            user: None,
            dry_run: false,
        }
    }
}
