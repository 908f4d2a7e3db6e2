//! One container's runtime config from its pod, its image and the pod's sources: command
//! and arguments, environment (with `$(VAR)` expansion, `envFrom`, `fieldRef` and
//! `resourceFieldRef`), user and groups, capabilities, namespaces and mounts; and which
//! seccomp profile it asks for. Pure.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use krust_api::quantity::Amount;

use super::resources::{self, Qos};
use super::sources::{Kind, Sources};
use crate::image::ImageConfig;
use crate::runtime::seccomp::{Choice, Seccomp};
use crate::runtime::spec::{ContainerConfig, DEFAULT_CAPABILITIES, Mount, Namespace};

/// What the pod's environment is built from besides the pod itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The pod's address.
    pub pod_ip: Option<String>,
    /// Its IPv6 address on a dual-stack node.
    pub pod_ip6: Option<String>,
    /// The node's address.
    pub host_ip: Option<String>,
    /// Its IPv6 address on a dual-stack node.
    pub host_ip6: Option<String>,
    /// The `kubernetes` service's cluster IP, for `KUBERNETES_SERVICE_HOST`.
    pub kubernetes_service: Option<String>,
    /// The node's allocatable CPU (millicores) and memory (bytes), for limits not set.
    pub allocatable: (u64, u64),
    /// The pod's pinned namespaces.
    pub namespaces: PathBuf,
    /// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` made for the pod.
    pub etc: PathBuf,
    /// Each volume's directory on the host.
    pub volumes: HashMap<String, PathBuf>,
    /// The node's memory capacity in bytes (for OOM score adjustments).
    pub memory_capacity: u64,
    /// The PID 1 of the pod's shared PID namespace, if the pod shares one.
    pub pid_holder: Option<u32>,
    /// The container's seccomp filter, its profile read ([`seccomp`] chose it).
    pub seccomp: Seccomp,
}

/// Why a container cannot be configured (upstream's `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The files of one run of a container.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// Its root file system (mounted).
    pub rootfs: &'a Path,
    /// The file mounted at its `terminationMessagePath`.
    pub termination_log: &'a Path,
    /// The image's `/etc/passwd`, to resolve user names.
    pub passwd: &'a str,
}

/// The runtime config of `container` (of `pod`) for one run of it.
pub fn config(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    sources: &Sources,
    context: &Context,
    instance: &Instance,
) -> Result<ContainerConfig, ConfigError> {
    let Instance { rootfs, termination_log, passwd } = *instance;
    let spec = pod.spec.clone().unwrap_or_default();
    let env = environment(pod, container, image, sources, context)?;
    let vars: HashMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
    let expand_all = |list: &[String]| list.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    let args = match (&container.command, &container.args) {
        (Some(command), Some(args)) => [expand_all(command), expand_all(args)].concat(),
        (Some(command), None) => expand_all(command),
        (None, Some(args)) => {
            [image.entrypoint.clone().unwrap_or_default(), expand_all(args)].concat()
        }
        (None, None) => {
            [image.entrypoint.clone().unwrap_or_default(), image.cmd.clone().unwrap_or_default()]
                .concat()
        }
    };
    if args.is_empty() {
        return Err(ConfigError("no command specified".into()));
    }
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let image_user = user_of(image.user.as_deref().unwrap_or(""), passwd)?;
    let uid = security.run_as_user.or(pod_security.run_as_user).map_or(image_user.0, |u| u as u32);
    let gid = security.run_as_group.or(pod_security.run_as_group).map_or(
        if security.run_as_user.or(pod_security.run_as_user).is_some() && image_user.0 != uid {
            0
        } else {
            image_user.1
        },
        |g| g as u32,
    );
    if security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true) && uid == 0 {
        return Err(ConfigError("container has runAsNonRoot and image will run as root".into()));
    }
    let mut additional_gids: Vec<u32> =
        pod_security.supplemental_groups.iter().flatten().map(|g| *g as u32).collect();
    if let Some(fs_group) = pod_security.fs_group {
        additional_gids.push(fs_group as u32);
    }
    let privileged = security.privileged.unwrap_or(false);
    let mut capabilities: Vec<String> =
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if let Some(caps) = &security.capabilities {
        let name = |c: &String| {
            if c.starts_with("CAP_") {
                c.to_uppercase()
            } else {
                format!("CAP_{}", c.to_uppercase())
            }
        };
        for add in caps.add.iter().flatten() {
            if add.eq_ignore_ascii_case("ALL") {
                capabilities =
                    crate::runtime::spec::ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
            } else if !capabilities.contains(&name(add)) {
                capabilities.push(name(add));
            }
        }
        for drop in caps.drop.iter().flatten() {
            if drop.eq_ignore_ascii_case("ALL") {
                capabilities.clear();
            } else {
                let drop = name(drop);
                capabilities.retain(|c| *c != drop);
            }
        }
    }
    let host_network = spec.host_network.unwrap_or(false);
    let join = |name: &str| Namespace::Join(context.namespaces.join(name));
    let mut mounts = vec![
        Mount {
            destination: "/etc/hosts".into(),
            source: context.etc.join("hosts"),
            read_only: false,
        },
        Mount {
            destination: "/etc/resolv.conf".into(),
            source: context.etc.join("resolv.conf"),
            read_only: false,
        },
        Mount {
            destination: container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            source: termination_log.to_path_buf(),
            read_only: false,
        },
    ];
    if !host_network {
        mounts.insert(
            1,
            Mount {
                destination: "/etc/hostname".into(),
                source: context.etc.join("hostname"),
                read_only: false,
            },
        );
    }
    for m in container.volume_mounts.iter().flatten() {
        let Some(source) = context.volumes.get(&m.name) else {
            return Err(ConfigError(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            )));
        };
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let sub = expand(sub, &vars);
                if Path::new(&sub).is_absolute() || sub.split('/').any(|p| p == "..") {
                    return Err(ConfigError(format!(
                        "invalid subPath {sub:?}: must be a relative path without '..'"
                    )));
                }
                source.join(sub)
            }
            None => source.clone(),
        };
        mounts.push(Mount {
            destination: m.mount_path.clone(),
            source,
            read_only: m.read_only.unwrap_or(false),
        });
    }
    let qos = resources::qos(pod);
    let (memory_limit, cpu_shares, cpu_quota) = resources::cgroup(container);
    let uid_str = pod.metadata.uid.clone().unwrap_or_default();
    Ok(ContainerConfig {
        args,
        env,
        cwd: container
            .working_dir
            .clone()
            .or_else(|| image.working_dir.clone())
            .unwrap_or_default(),
        uid,
        gid,
        additional_gids,
        rootfs: rootfs.to_path_buf(),
        read_only_rootfs: security.read_only_root_filesystem.unwrap_or(false),
        hostname: None,
        network: if host_network { Namespace::Host } else { join("net") },
        ipc: if spec.host_ipc.unwrap_or(false) { Namespace::Host } else { join("ipc") },
        uts: if host_network { Namespace::Host } else { join("uts") },
        pid: match (spec.host_pid.unwrap_or(false), context.pid_holder) {
            (true, _) => Namespace::Host,
            (false, Some(holder)) => {
                Namespace::Join(PathBuf::from(format!("/proc/{holder}/ns/pid")))
            }
            (false, None) => Namespace::New,
        },
        mounts,
        capabilities,
        privileged,
        no_new_privileges: security.allow_privilege_escalation == Some(false),
        seccomp: context.seccomp.clone(),
        cgroups_path: format!("{}/{}", resources::cgroup_parent(qos, &uid_str), container.name),
        memory_limit,
        cpu_shares,
        cpu_quota,
        oom_score_adj: if qos == Qos::Guaranteed {
            -997
        } else {
            resources::oom_score_adj(qos, container, context.memory_capacity)
        },
        stdio: crate::runtime::spec::Stdio {
            tty: container.tty.unwrap_or(false),
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
        },
    })
}

/// The seccomp profile `container` (of `pod`) asks for, as the kubelet reads it: the
/// container's `securityContext.seccompProfile`, else the pod's, else `default` (the node's
/// `--seccomp-default`). `Localhost` names a file under the node's seccomp root and may not
/// leave it (upstream's validation refuses absolute paths and `..`); unknown types are
/// `Unconfined`.
pub fn seccomp(pod: &Pod, container: &Container, default: Choice) -> Result<Choice, ConfigError> {
    let pod_profile = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref());
    let container_profile =
        container.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref());
    let Some(profile) = container_profile.or(pod_profile) else {
        return Ok(default);
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Choice::RuntimeDefault),
        "Localhost" => {
            let name = profile.localhost_profile.as_deref().unwrap_or("");
            if name.is_empty() {
                return Err(ConfigError(
                    "localhostProfile must be set if seccompProfile type is Localhost".into(),
                ));
            }
            if Path::new(name).is_absolute() || name.split('/').any(|p| p == "..") {
                return Err(ConfigError(format!(
                    "invalid localhostProfile {name:?}: must be a relative path without '..'"
                )));
            }
            Ok(Choice::Localhost(PathBuf::from(name)))
        }
        _ => Ok(Choice::Unconfined),
    }
}

/// `uid[:gid]` or `name[:group]` resolved against the image's `/etc/passwd`; root when
/// empty.
fn user_of(user: &str, passwd: &str) -> Result<(u32, u32), ConfigError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == name || f[2] == name));
    let uid = match name.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry.as_ref().and_then(|f| f[2].parse().ok()).ok_or_else(|| {
            ConfigError(format!("unable to find user {name}: no matching entries in passwd file"))
        })?,
    };
    let gid = match group {
        Some(g) => g.parse().map_err(|_| ConfigError(format!("unable to find group {g}")))?,
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    Ok((uid, gid))
}

/// `$(VAR)` references replaced by their values (`$$(VAR)` escapes to `$(VAR)`; unknown
/// references stay as written), as upstream's `expansion.Expand`.
pub fn expand(input: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's `NAME=value` environment, in upstream's order: the image's, the
/// service variables, `envFrom`, then `env` (later definitions win).
pub fn environment(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    sources: &Sources,
    context: &Context,
) -> Result<Vec<String>, ConfigError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        if let Some(existing) = env.iter_mut().find(|(n, _)| *n == name) {
            existing.1 = value;
        } else {
            env.push((name, value));
        }
    };
    for pair in image.env.iter().flatten() {
        if let Some((n, v)) = pair.split_once('=') {
            set(&mut env, n.to_string(), v.to_string());
        }
    }
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    set(&mut env, "HOSTNAME".into(), hostname);
    if let Some(ip) = &context.kubernetes_service {
        for (n, v) in [
            ("KUBERNETES_SERVICE_HOST", ip.clone()),
            ("KUBERNETES_SERVICE_PORT", "443".into()),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
            ("KUBERNETES_PORT", format!("tcp://{ip}:443")),
            ("KUBERNETES_PORT_443_TCP", format!("tcp://{ip}:443")),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".into()),
            ("KUBERNETES_PORT_443_TCP_PORT", "443".into()),
            ("KUBERNETES_PORT_443_TCP_ADDR", ip.clone()),
        ] {
            set(&mut env, n.into(), v);
        }
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (Kind::ConfigMap, r.name.clone(), r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_ref {
            (Kind::Secret, r.name.clone(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match sources.get(kind, &name) {
            Some(data) => {
                for (key, value) in data {
                    set(
                        &mut env,
                        format!("{prefix}{key}"),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(ConfigError(format!("{} \"{name}\" not found", kind_name(kind)))),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(pod, container, var, sources, context, &env)? {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env.into_iter().map(|(n, v)| format!("{n}={v}")).collect())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ConfigMap => "configmap",
        Kind::Secret => "secret",
    }
}

fn value_of(
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    sources: &Sources,
    context: &Context,
    so_far: &[(String, String)],
) -> Result<Option<String>, ConfigError> {
    let Some(from) = &var.value_from else {
        let vars: HashMap<&str, &str> =
            so_far.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), &vars)));
    };
    let keyed = |kind: Kind,
                 name: &str,
                 key: &str,
                 optional: bool|
     -> Result<Option<String>, ConfigError> {
        match sources.get(kind, name) {
            Some(data) => match data.get(key) {
                Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {key} in {} {}/{name}",
                    kind_name(kind).replace("configmap", "ConfigMap").replace("secret", "Secret"),
                    pod.metadata.namespace.as_deref().unwrap_or("default")
                ))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError(format!("{} \"{name}\" not found", kind_name(kind)))),
        }
    };
    if let Some(r) = &from.config_map_key_ref {
        return keyed(Kind::ConfigMap, &r.name, &r.key, r.optional.unwrap_or(false));
    }
    if let Some(r) = &from.secret_key_ref {
        return keyed(Kind::Secret, &r.name, &r.key, r.optional.unwrap_or(false));
    }
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path, context).map(Some);
    }
    if let Some(resource) = &from.resource_field_ref {
        let target = match resource.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => named(pod, name)
                .ok_or_else(|| ConfigError(format!("container {name} not found")))?,
            None => container,
        };
        return resource_value(target, &resource.resource, resource.divisor.as_ref(), context)
            .map(Some);
    }
    Ok(None)
}

/// The container (app or init) of `pod` named `name`.
pub fn named<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// A `fieldRef` value (upstream's supported paths).
pub fn field_value(pod: &Pod, path: &str, context: &Context) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let subscript = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['").and_then(|r| r.strip_suffix("']")).unwrap_or(rest);
        map.as_ref().and_then(|m| m.get(key).cloned()).unwrap_or_default()
    };
    let pairs = |map: &Option<BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => pairs(&meta.labels),
        "metadata.annotations" => pairs(&meta.annotations),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.hostIP" => context.host_ip.clone().unwrap_or_default(),
        "status.hostIPs" => {
            context.host_ip.iter().chain(&context.host_ip6).cloned().collect::<Vec<_>>().join(",")
        }
        "status.podIP" => context.pod_ip.clone().unwrap_or_default(),
        // Upstream's downward API joins the list with commas.
        "status.podIPs" => {
            context.pod_ip.iter().chain(&context.pod_ip6).cloned().collect::<Vec<_>>().join(",")
        }
        other => {
            if let Some(rest) = other.strip_prefix("metadata.labels") {
                subscript(&meta.labels, rest)
            } else if let Some(rest) = other.strip_prefix("metadata.annotations") {
                subscript(&meta.annotations, rest)
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {other}")));
            }
        }
    })
}

/// A `resourceFieldRef` value: the container's request or limit (a limit not set is the
/// node's allocatable), divided by `divisor` and rounded up, as upstream's.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    context: &Context,
) -> Result<String, ConfigError> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported resource {resource}")))?;
    let resources = container.resources.clone().unwrap_or_default();
    let map = match kind {
        "limits" => resources.limits,
        "requests" => resources.requests,
        _ => return Err(ConfigError(format!("unsupported resource {resource}"))),
    };
    let set = map.as_ref().and_then(|m| m.get(name)).and_then(|q| Amount::of(q).ok());
    let nanos: i128 = match (set, kind, name) {
        (Some(a), _, _) => a.nanos(),
        (None, "limits", "cpu") => i128::from(context.allocatable.0) * 1_000_000,
        (None, "limits", "memory") => i128::from(context.allocatable.1) * 1_000_000_000,
        (None, _, _) => 0,
    };
    let divisor = divisor
        .and_then(|d| Amount::of(d).ok())
        .map(|d| d.nanos())
        .filter(|d| *d > 0)
        .unwrap_or(1_000_000_000);
    let value = (nanos + divisor - 1) / divisor;
    Ok(value.max(if name == "cpu" && nanos > 0 { 1 } else { 0 }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "i",
                "command": ["sh", "-c"], "args": ["echo $(GREETING) $$(HOME)"],
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
                "env": [
                    {"name": "GREETING", "value": "hi $(POD)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
                ],
                "envFrom": [{"prefix": "S_", "secretRef": {"name": "s"}}],
            }]},
        }))
        .expect("pod")
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.insert(Kind::ConfigMap, "cm", Some(BTreeMap::from([("color".into(), b"blue".to_vec())])));
        s.insert(Kind::Secret, "s", Some(BTreeMap::from([("token".into(), b"t0k".to_vec())])));
        s
    }

    #[test]
    fn environment_in_upstreams_order_and_forms() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let image = ImageConfig { env: Some(vec!["PATH=/bin".into()]), ..ImageConfig::default() };
        let env = environment(&p, c, &image, &sources(), &Context::default()).expect("env");
        let get =
            |n: &str| env.iter().find_map(|e| e.strip_prefix(&format!("{n}="))).map(str::to_string);
        assert_eq!(get("PATH").as_deref(), Some("/bin"));
        // POD is defined after GREETING, so the reference stays as written (upstream's rule).
        assert_eq!(get("GREETING").as_deref(), Some("hi $(POD)"));
        assert_eq!(get("POD").as_deref(), Some("web"));
        assert_eq!(get("APP").as_deref(), Some("x"));
        assert_eq!(get("MEM").as_deref(), Some("64"));
        assert_eq!(get("CPU").as_deref(), Some("250"));
        assert_eq!(get("COLOR").as_deref(), Some("blue"));
        assert_eq!(get("S_token").as_deref(), Some("t0k"));
    }

    #[test]
    fn missing_sources_are_config_errors() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let err =
            environment(&p, c, &ImageConfig::default(), &Sources::default(), &Context::default());
        assert_eq!(err, Err(ConfigError("secret \"s\" not found".into())));
    }

    #[test]
    fn expansion_rules() {
        let vars = HashMap::from([("A", "1")]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$-$", &vars), "1-$(B)-$(A)-$-$");
    }

    fn seccomp_pod(pod_profile: Option<Value>, container_profile: Option<Value>) -> Pod {
        let mut container = serde_json::json!({"name": "c", "image": "i"});
        if let Some(p) = container_profile {
            container["securityContext"] = serde_json::json!({"seccompProfile": p});
        }
        let mut spec = serde_json::json!({"containers": [container]});
        if let Some(p) = pod_profile {
            spec["securityContext"] = serde_json::json!({"seccompProfile": p});
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("pod")
    }

    fn seccomp_of(pod: &Pod, default: Choice) -> Result<Choice, ConfigError> {
        seccomp(pod, &pod.spec.as_ref().expect("spec").containers[0], default)
    }

    #[test]
    fn seccomp_profile_of_the_container_wins_over_the_pods() {
        let runtime_default = serde_json::json!({"type": "RuntimeDefault"});
        let unconfined = serde_json::json!({"type": "Unconfined"});
        let local = serde_json::json!({"type": "Localhost", "localhostProfile": "team/audit.json"});
        let cases = [
            ("neither sets one: the node's default", None, None, Choice::Unconfined),
            ("the pod's applies", Some(&runtime_default), None, Choice::RuntimeDefault),
            ("the container's wins", Some(&runtime_default), Some(&unconfined), Choice::Unconfined),
            (
                "the container's wins",
                Some(&unconfined),
                Some(&runtime_default),
                Choice::RuntimeDefault,
            ),
            (
                "a local profile",
                Some(&unconfined),
                Some(&local),
                Choice::Localhost("team/audit.json".into()),
            ),
        ];
        for (case, pod_profile, container_profile, expected) in cases {
            let pod = seccomp_pod(pod_profile.cloned(), container_profile.cloned());
            assert_eq!(seccomp_of(&pod, Choice::Unconfined), Ok(expected), "{case}");
        }
        // --seccomp-default: what neither sets, never what one sets.
        assert_eq!(
            seccomp_of(&seccomp_pod(None, None), Choice::RuntimeDefault),
            Ok(Choice::RuntimeDefault)
        );
        assert_eq!(
            seccomp_of(&seccomp_pod(Some(unconfined), None), Choice::RuntimeDefault),
            Ok(Choice::Unconfined)
        );
    }

    #[test]
    fn seccomp_localhost_profiles_may_not_leave_the_seccomp_root() {
        for name in ["../escape.json", "/etc/profile.json", "a/../../b.json", "x/.."] {
            let local = serde_json::json!({"type": "Localhost", "localhostProfile": name});
            let refused = seccomp_of(&seccomp_pod(Some(local), None), Choice::Unconfined);
            assert_eq!(
                refused,
                Err(ConfigError(format!(
                    "invalid localhostProfile {name:?}: must be a relative path without '..'"
                ))),
                "{name}"
            );
        }
        let unnamed = serde_json::json!({"type": "Localhost"});
        assert_eq!(
            seccomp_of(&seccomp_pod(None, Some(unnamed)), Choice::Unconfined),
            Err(ConfigError(
                "localhostProfile must be set if seccompProfile type is Localhost".into()
            ))
        );
    }

    #[test]
    fn users_from_numbers_and_passwd() {
        let passwd = "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n";
        assert_eq!(user_of("", passwd), Ok((0, 0)));
        assert_eq!(user_of("1000", passwd), Ok((1000, 0)));
        assert_eq!(user_of("www", passwd), Ok((33, 34)));
        assert_eq!(user_of("33:5", passwd), Ok((33, 5)));
        assert!(user_of("nobody", passwd).is_err());
    }
}
