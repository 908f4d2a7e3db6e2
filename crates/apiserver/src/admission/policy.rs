//! ValidatingAdmissionPolicies, the last step of the validating stage: the policies and
//! bindings are read from the watch cache (through the [`ClusterView`] the stage is given;
//! each is compiled or decoded once per resourceVersion), the params of a binding
//! (`paramKind` + `paramRef`, by name or by selector) and the namespace object are read from
//! the same cache, and the pure evaluation of `krust_admission::policy` decides.
//!
//! Params are looked up among the built-in resources (the catalog's kinds); custom resources
//! as params come with custom resources.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use krust_admission::policy::{self, Binding, Policy};
use krust_admission::webhook::Request;
use krust_admission::webhook::matching::{self, labels_of};
use krust_admission::{Attributes, ClusterView};
use krust_api::{Catalog, StatusError};
use krust_auth::rbac::aggregation::selector_matches;
use serde::de::DeserializeOwned;
use serde_json::Value;

const GROUP: &str = "admissionregistration.k8s.io";
const POLICIES: &str = "validatingadmissionpolicies";
const BINDINGS: &str = "validatingadmissionpolicybindings";

type Memo<T> = Mutex<HashMap<String, (String, Arc<T>)>>;

/// The policy stage: compiled policies and decoded bindings.
#[derive(Default)]
pub struct Policies {
    policies: Memo<Policy>,
    bindings: Memo<Binding>,
}

/// Every object of `resource` in the cache, in name order, converted once per resourceVersion.
fn load<T: DeserializeOwned, U>(
    cluster: &dyn ClusterView,
    resource: &str,
    memo: &Memo<U>,
    convert: fn(&T) -> U,
) -> Vec<Arc<U>> {
    let mut objects = cluster.list(GROUP, resource, "");
    if objects.is_empty() {
        return Vec::new();
    }
    let meta = |v: &Value, k: &str| {
        v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_string()
    };
    objects.sort_by_key(|o| meta(o, "name"));
    let mut memo = memo.lock().unwrap_or_else(PoisonError::into_inner);
    let mut next = HashMap::with_capacity(objects.len());
    let mut out = Vec::with_capacity(objects.len());
    for object in objects {
        let (name, rv) = (meta(&object, "name"), meta(&object, "resourceVersion"));
        let converted = match memo.remove(&name) {
            Some((seen, converted)) if seen == rv => converted,
            _ => match T::deserialize(&object) {
                Ok(typed) => Arc::new(convert(&typed)),
                Err(e) => {
                    tracing::warn!(%name, %resource, error = %e, "does not decode; ignored");
                    continue;
                }
            },
        };
        out.push(Arc::clone(&converted));
        next.insert(name, (rv, converted));
    }
    *memo = next;
    out
}

/// The built-in catalog, for the resource of a `paramKind`.
fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::builtin)
}

/// The params a binding gives a policy: `None` when the policy takes none, else the objects
/// found (possibly none).
fn params(
    policy: &Policy,
    binding: &Binding,
    attributes: &Attributes<'_>,
    cluster: &dyn ClusterView,
) -> Option<Vec<Value>> {
    let (api_version, kind) = policy.param_kind.as_ref()?;
    let Some(param_ref) = &binding.param_ref else { return Some(Vec::new()) };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let Some(info) = catalog().by_kind(group, version, kind) else { return Some(Vec::new()) };
    let namespace = if info.namespaced() {
        param_ref.namespace.clone().unwrap_or_else(|| attributes.namespace.to_string())
    } else {
        String::new()
    };
    if let Some(name) = &param_ref.name {
        return Some(cluster.get(info.group, info.plural, &namespace, name).into_iter().collect());
    }
    let selector = param_ref.selector.clone().unwrap_or_default();
    Some(
        cluster
            .list(info.group, info.plural, &namespace)
            .into_iter()
            .filter(|p| selector_matches(&selector, &labels_of(p)))
            .collect(),
    )
}

impl Policies {
    /// Evaluates every binding of every policy that applies to the write; the first refusal
    /// of a binding with `Deny` ends the write. Answers the failures of `Warn` bindings, as
    /// upstream words them, for the client.
    pub fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        let mut warnings = Vec::new();
        let bindings = load::<ValidatingAdmissionPolicyBinding, _>(
            cluster,
            BINDINGS,
            &self.bindings,
            Binding::new,
        );
        if bindings.is_empty() {
            return Ok(warnings);
        }
        let policies =
            load::<ValidatingAdmissionPolicy, _>(cluster, POLICIES, &self.policies, Policy::new);
        let request = Request { attributes, object, old };
        let name = match attributes.name {
            "" => object
                .or(old)
                .and_then(|o| o.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .unwrap_or_default(),
            name => name,
        };
        let mut namespace: Option<Option<Value>> = None;
        for policy in &policies {
            if !policy.applies(&request, cluster)? {
                continue;
            }
            for binding in bindings.iter().filter(|b| b.policy_name == policy.name) {
                if !(binding.deny || binding.warn) || !binding.applies(&request, cluster)? {
                    continue;
                }
                let ns = namespace.get_or_insert_with(|| {
                    matching::namespace_object(attributes, object, old, cluster).ok().flatten()
                });
                let failures = match params(policy, binding, attributes, cluster) {
                    None => policy::evaluate(policy, &request, None, ns.as_ref()),
                    Some(found) if found.is_empty() => {
                        if binding.denies_without_params() && binding.deny {
                            return Err(policy::missing_params(
                                attributes,
                                name,
                                &policy.name,
                                &binding.name,
                            ));
                        }
                        Vec::new()
                    }
                    Some(found) => found
                        .iter()
                        .flat_map(|p| policy::evaluate(policy, &request, Some(p), ns.as_ref()))
                        .collect(),
                };
                let Some(first) = failures.first() else { continue };
                if binding.deny {
                    return Err(policy::refusal(
                        attributes,
                        name,
                        &policy.name,
                        &binding.name,
                        first,
                    ));
                }
                for failure in &failures {
                    warnings.push(policy::warning(&policy.name, &binding.name, failure));
                }
            }
        }
        Ok(warnings)
    }
}
