//! ServiceAccount: every pod runs as a service account (`default` unless it names one), which
//! must exist; unless automounting is off (on the pod, else on the account), every container
//! gets the account's API credentials: the projected `kube-api-access-XXXXX` volume (a bound
//! token of 3607 seconds, the cluster CA from the `kube-root-ca.crt` ConfigMap and the
//! namespace) mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount`. A pod
//! without image pull secrets gets the account's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::IgnoredAny;

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, ProjectedVolumeSource, ServiceAccount as Account,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, forbidden, is, typed};

/// Upstream's name.
pub const NAME: &str = "ServiceAccount";

/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Where the credentials are mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";

/// The ConfigMap with the cluster CA, in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The lifetime asked for the projected token (upstream's 3607 seconds: an hour and a bit, so
/// that clients refreshing hourly are told apart).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The annotation of mirror pods (static pods a node reports), which may not use accounts.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Makes the random part of a generated name (upstream: five characters of
/// `bcdfghjklmnpqrstvwxz2456789`). Injected, as this crate has no randomness of its own.
pub type NameSuffix = Arc<dyn Fn() -> String + Send + Sync>;

/// The plugin.
pub struct ServiceAccount {
    suffix: NameSuffix,
}

impl ServiceAccount {
    /// The plugin, naming volumes with `suffix`.
    pub fn new(suffix: NameSuffix) -> Self {
        Self { suffix }
    }
}

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The projected volume upstream adds.
pub fn token_volume(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: ROOT_CA_CONFIG_MAP.into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.namespace".into(),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, StatusError> {
    serde_json::to_value(t).map_err(|e| StatusError::internal(e.to_string()))
}

/// What this plugin reads of a pod (serde skips the rest without building it).
#[derive(serde::Deserialize, Default)]
struct PodAccount {
    metadata: Option<AccountMeta>,
    spec: Option<AccountSpec>,
}

#[derive(serde::Deserialize, Default)]
struct AccountMeta {
    annotations: Option<BTreeMap<String, IgnoredAny>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AccountSpec {
    service_account_name: Option<String>,
    automount_service_account_token: Option<bool>,
    image_pull_secrets: Option<Vec<IgnoredAny>>,
    volumes: Option<Vec<NamedVolume>>,
    init_containers: Option<Vec<ContainerMounts>>,
    containers: Option<Vec<ContainerMounts>>,
}

#[derive(serde::Deserialize)]
struct NamedVolume {
    name: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerMounts {
    volume_mounts: Option<Vec<MountPath>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MountPath {
    mount_path: Option<String>,
}

impl ContainerMounts {
    fn mounts_credentials(&self) -> bool {
        self.volume_mounts.iter().flatten().any(|m| m.mount_path.as_deref() == Some(MOUNT_PATH))
    }
}

impl Mutating for ServiceAccount {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create || !is(attributes, "", "pods") {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(pod) = typed::<PodAccount>(object) else { return Ok(()) };
        let spec = pod.spec.unwrap_or_default();
        let mirror = pod
            .metadata
            .and_then(|m| m.annotations)
            .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
        if mirror {
            if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(forbidden(
                    attributes,
                    Some(object),
                    "a mirror pod may not reference service accounts",
                ));
            }
            return Ok(());
        }
        let account_name = spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
        let ns = attributes.namespace;
        let Some(account) = cluster.get::<Account>("", "serviceaccounts", ns, &account_name) else {
            return Err(forbidden(
                attributes,
                Some(object),
                &format!(
                    "error looking up service account {ns}/{account_name}: serviceaccount \"{account_name}\" not found"
                ),
            ));
        };
        let Some(spec_value) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        spec_value.insert("serviceAccountName".into(), Value::String(account_name));
        let automount = spec
            .automount_service_account_token
            .or(account.automount_service_account_token)
            .unwrap_or(true);
        if automount {
            self.mount_token(&spec, spec_value)?;
        }
        if spec.image_pull_secrets.as_ref().is_none_or(Vec::is_empty)
            && let Some(secrets) = account.image_pull_secrets.filter(|s| !s.is_empty())
        {
            spec_value.insert("imagePullSecrets".into(), to_value(&secrets)?);
        }
        Ok(())
    }
}

impl ServiceAccount {
    /// Mounts the token volume into every container (init containers too) without something
    /// at the mount path already, adding the volume when one needs it.
    fn mount_token(
        &self,
        spec: &AccountSpec,
        spec_value: &mut serde_json::Map<String, Value>,
    ) -> Result<(), StatusError> {
        let existing = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.name.as_deref())
            .find(|name| name.starts_with(VOLUME_PREFIX))
            .map(str::to_string);
        let volume_name =
            existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", (self.suffix)()));
        let mount = to_value(&VolumeMount {
            name: volume_name.clone(),
            read_only: Some(true),
            mount_path: MOUNT_PATH.into(),
            ..Default::default()
        })?;
        let mut needed = false;
        for (field, containers) in [
            ("initContainers", spec.init_containers.as_ref()),
            ("containers", spec.containers.as_ref()),
        ] {
            let Some(containers) = containers else { continue };
            let Some(values) = spec_value.get_mut(field).and_then(Value::as_array_mut) else {
                continue;
            };
            for (container, value) in containers.iter().zip(values.iter_mut()) {
                if container.mounts_credentials() {
                    continue;
                }
                let Some(value) = value.as_object_mut() else { continue };
                let mounts =
                    value.entry("volumeMounts").or_insert_with(|| Value::Array(Vec::new()));
                if !mounts.is_array() {
                    *mounts = Value::Array(Vec::new());
                }
                if let Some(mounts) = mounts.as_array_mut() {
                    mounts.push(mount.clone());
                    needed = true;
                }
            }
        }
        if existing.is_none() && needed {
            let volumes = spec_value.entry("volumes").or_insert_with(|| Value::Array(Vec::new()));
            if !volumes.is_array() {
                *volumes = Value::Array(Vec::new());
            }
            if let Some(volumes) = volumes.as_array_mut() {
                volumes.push(to_value(&token_volume(&volume_name))?);
            }
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

    fn plugin() -> ServiceAccount {
        ServiceAccount::new(Arc::new(|| "abcde".to_string()))
    }

    fn cluster() -> Objects {
        Objects(vec![
            ("", "serviceaccounts", json!({"metadata": {"name": "default", "namespace": "ns"}})),
            (
                "",
                "serviceaccounts",
                json!({"metadata": {"name": "quiet", "namespace": "ns"}, "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "reg"}]}),
            ),
        ])
    }

    fn admit(pod: Value) -> Result<Value, String> {
        let mut pod = pod;
        plugin()
            .admit(&create("", "pods", "ns"), Some(&mut pod), None, &cluster())
            .map(|_| pod)
            .map_err(|e| e.message)
    }

    #[test]
    fn a_pod_gets_the_default_account_and_its_token() {
        let pod = admit(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "kube-api-access-abcde", "readOnly": true, "mountPath": MOUNT_PATH}])
        );
        let volume = &pod["spec"]["volumes"][0];
        assert_eq!(volume["name"], "kube-api-access-abcde");
        assert_eq!(volume["projected"]["defaultMode"], 420);
        assert_eq!(
            volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(volume["projected"]["sources"][1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            volume["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn pods_are_admitted_as_upstream_admits_them() {
        let cases: &[(&str, Value, Result<(bool, &str), &str>)] = &[
            (
                "a missing account is refused",
                json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c"}]}}),
                Err(
                    "pods \"p\" is forbidden: error looking up service account ns/ghost: serviceaccount \"ghost\" not found",
                ),
            ),
            (
                "the pod's automount false wins",
                json!({"metadata": {"name": "p"}, "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c"}]}}),
                Ok((false, "default")),
            ),
            (
                "the account's automount false holds",
                json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "quiet", "containers": [{"name": "c"}]}}),
                Ok((false, "quiet")),
            ),
            (
                "the pod's automount true overrides the account",
                json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "quiet", "automountServiceAccountToken": true, "containers": [{"name": "c"}]}}),
                Ok((true, "quiet")),
            ),
            (
                "a container with something at the path gets nothing",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}], "volumes": [{"name": "mine", "emptyDir": {}}]}}),
                Ok((false, "default")),
            ),
        ];
        for (case, pod, expected) in cases {
            let got = admit(pod.clone());
            match (got, expected) {
                (Ok(pod), Ok((mounted, account))) => {
                    let has = pod["spec"]["volumes"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|v| v["name"] == "kube-api-access-abcde"));
                    assert_eq!(has, *mounted, "{case}");
                    assert_eq!(pod["spec"]["serviceAccountName"], *account, "{case}");
                }
                (Err(message), Err(expected)) => assert_eq!(message, *expected, "{case}"),
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_accounts_pull_secrets_land_on_a_pod_without_any() {
        let pod = admit(json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "quiet", "containers": [{"name": "c"}]}})).unwrap();
        assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
    }

    #[test]
    fn updates_and_subresources_are_left_alone() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "ghost", "containers": []}});
        let update = Attributes { operation: Operation::Update, ..create("", "pods", "ns") };
        assert!(plugin().admit(&update, Some(&mut pod), None, &cluster()).is_ok());
        let status = Attributes { subresource: "status", ..create("", "pods", "ns") };
        assert!(plugin().admit(&status, Some(&mut pod), None, &cluster()).is_ok());
    }
}
