//! PodSecurity: upstream's Pod Security Admission. A pod created (or significantly updated) in
//! a namespace labelled `pod-security.kubernetes.io/enforce` (`privileged`, `baseline` or
//! `restricted`) is checked against that Pod Security Standard and refused, with every
//! violated check named in upstream's words and order (baseline checks, then restricted ones,
//! each sorted by check ID).
//!
//! Limits, for now: the `enforce-version` label is accepted as `latest` or any `vX.Y` and only
//! named in the message (the latest rules are always evaluated); `warn` and `audit` labels are
//! ignored; there is no exemption configuration; pod templates (workload controllers) are not
//! checked; the user-namespace and Windows relaxations are not applied.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Namespace, Pod, PodSpec, SecurityContext,
};
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Operation, Plugin, Validating, forbidden, typed};

/// Upstream's name.
pub const NAME: &str = "PodSecurity";

/// The namespace label naming the enforced level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The namespace label naming the enforced level's version.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";

/// A Pod Security Standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Unrestricted.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Hardening best practices are required.
    Restricted,
}

impl Level {
    /// Upstream's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// One failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What is wrong (`host namespaces`, `runAsNonRoot != true`, ...).
    pub reason: String,
    /// Who does it and what to do instead.
    pub detail: String,
}

/// The plugin.
pub struct PodSecurity;

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The enforced level and the version named in the message, from a namespace's labels:
/// no label is privileged; an unknown level is treated as restricted (as upstream does for
/// labels it cannot parse); an unknown version as `latest`.
pub fn enforced(labels: &BTreeMap<String, String>) -> (Level, String) {
    let level = match labels.get(ENFORCE_LABEL).map(String::as_str) {
        None | Some("privileged") => Level::Privileged,
        Some("baseline") => Level::Baseline,
        Some(_) => Level::Restricted,
    };
    let version = labels
        .get(ENFORCE_VERSION_LABEL)
        .filter(|v| is_version(v))
        .cloned()
        .unwrap_or_else(|| "latest".to_string());
    (level, version)
}

/// Whether `v` is `latest` or `vMAJOR.MINOR`.
fn is_version(v: &str) -> bool {
    if v == "latest" {
        return true;
    }
    let Some(rest) = v.strip_prefix('v') else { return false };
    let mut parts = rest.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A container of any kind, as the checks see it.
struct View<'a> {
    name: &'a str,
    security: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

impl<'a> From<&'a Container> for View<'a> {
    fn from(c: &'a Container) -> Self {
        Self {
            name: &c.name,
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        }
    }
}

impl<'a> From<&'a EphemeralContainer> for View<'a> {
    fn from(c: &'a EphemeralContainer) -> Self {
        Self {
            name: &c.name,
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        }
    }
}

/// Every container, in upstream's order: init containers, containers, ephemeral containers.
fn containers(spec: &PodSpec) -> Vec<View<'_>> {
    let mut all: Vec<View<'_>> = spec.init_containers.iter().flatten().map(View::from).collect();
    all.extend(spec.containers.iter().map(View::from));
    all.extend(spec.ephemeral_containers.iter().flatten().map(View::from));
    all
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 { singular } else { plural }
}

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items.into_iter().map(|s| format!("{:?}", s.as_ref())).collect::<Vec<_>>().join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn named_containers(names: &[&str]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation { reason: reason.into(), detail: detail.into() })
}

/// Names of the containers whose security context satisfies `bad`.
fn bad_containers<'a>(all: &[View<'a>], bad: impl Fn(&SecurityContext) -> bool) -> Vec<&'a str> {
    all.iter().filter(|c| c.security.is_some_and(&bad)).map(|c| c.name).collect()
}

type Check = fn(&Pod, &PodSpec, &[View<'_>]) -> Option<Violation>;

/// Baseline checks, sorted by upstream's check ID.
const BASELINE: &[(&str, Check)] = &[
    ("appArmorProfile", app_armor_profile),
    ("capabilities_baseline", capabilities_baseline),
    ("hostNamespaces", host_namespaces),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("privileged", privileged),
    ("procMount", proc_mount),
    ("seLinuxOptions", se_linux_options),
    ("seccompProfile_baseline", seccomp_profile_baseline),
    ("sysctls", sysctls),
];

/// Restricted checks, sorted by upstream's check ID (`restrictedVolumes` overrides the
/// baseline `hostPathVolumes`).
const RESTRICTED: &[(&str, Check)] = &[
    ("allowPrivilegeEscalation", allow_privilege_escalation),
    ("capabilities_restricted", capabilities_restricted),
    ("restrictedVolumes", restricted_volumes),
    ("runAsNonRoot", run_as_non_root),
    ("runAsUser", run_as_user),
    ("seccompProfile_restricted", seccomp_profile_restricted),
];

/// Every violation of `level` by `pod`, in upstream's order.
pub fn evaluate(level: Level, pod: &Pod) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let all = containers(spec);
    let mut checks: Vec<(&str, Check)> = BASELINE.to_vec();
    if level == Level::Restricted {
        checks.retain(|(id, _)| *id != "hostPathVolumes");
        checks.extend_from_slice(RESTRICTED);
    }
    checks.iter().filter_map(|(_, check)| check(pod, spec, &all)).collect()
}

fn app_armor_profile(pod: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut bad = BTreeSet::new();
    let field_ok = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    if let Some(p) = spec.security_context.as_ref().and_then(|s| s.app_armor_profile.as_ref())
        && !field_ok(&p.type_)
    {
        bad.insert(p.type_.clone());
    }
    for c in all {
        if let Some(p) = c.security.and_then(|s| s.app_armor_profile.as_ref())
            && !field_ok(&p.type_)
        {
            bad.insert(p.type_.clone());
        }
    }
    for (key, value) in pod.metadata.annotations.iter().flatten() {
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/"))
        {
            bad.insert(format!("{key}={value}"));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad.len()),
        join_quote(&bad),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added(s: &SecurityContext) -> &[String] {
    s.capabilities.as_ref().and_then(|c| c.add.as_deref()).unwrap_or_default()
}

fn capabilities_baseline(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut caps = BTreeSet::new();
    let mut names = Vec::new();
    for c in all {
        let extra: Vec<&String> = c
            .security
            .map(added)
            .unwrap_or_default()
            .iter()
            .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
            .collect();
        if !extra.is_empty() {
            names.push(c.name);
            caps.extend(extra);
        }
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            named_containers(&names),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    let used: Vec<&str> = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(on, _)| *on == Some(true))
    .map(|(_, what)| what)
    .collect();
    if used.is_empty() {
        return None;
    }
    violation("host namespaces", used.join(", "))
}

fn host_path_volumes(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    let names: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)),
    )
}

fn host_ports(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut names = Vec::new();
    let mut ports = BTreeSet::new();
    for c in all {
        let used: Vec<String> = c
            .ports
            .iter()
            .filter_map(|p| p.host_port)
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            names.push(c.name);
            ports.extend(used);
        }
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            named_containers(&names),
            pluralize("uses", "use", names.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn privileged(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let names = bad_containers(all, |s| s.privileged == Some(true));
    if names.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!("{} must not set securityContext.privileged=true", named_containers(&names)),
    )
}

fn proc_mount(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let bad = |s: &SecurityContext| s.proc_mount.as_deref().is_some_and(|m| m != "Default");
    let names = bad_containers(all, bad);
    if names.is_empty() {
        return None;
    }
    let values: BTreeSet<&str> = all
        .iter()
        .filter_map(|c| c.security.and_then(|s| s.proc_mount.as_deref()))
        .filter(|m| *m != "Default")
        .collect();
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            named_containers(&names),
            join_quote(&values)
        ),
    )
}

fn se_linux_options(_: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    const TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut check = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let mut valid = true;
        let t = o.type_.as_deref().unwrap_or_default();
        if !TYPES.contains(&t) {
            valid = false;
            types.insert(t.to_string());
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            valid = false;
            user = true;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            valid = false;
            role = true;
        }
        valid
    };
    let mut setters = Vec::new();
    if let Some(o) = spec.security_context.as_ref().and_then(|s| s.se_linux_options.as_ref())
        && !check(o)
    {
        setters.push("pod".to_string());
    }
    let names: Vec<&str> = all
        .iter()
        .filter(|c| c.security.and_then(|s| s.se_linux_options.as_ref()).is_some_and(|o| !check(o)))
        .map(|c| c.name)
        .collect();
    if !names.is_empty() {
        setters.push(named_containers(&names));
    }
    if setters.is_empty() {
        return None;
    }
    // As upstream: user and role are only named alongside a bad type.
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!("{} {}", pluralize("type", "types", types.len()), join_quote(&types)));
        if user {
            data.push("user may not be set".to_string());
        }
        if role {
            data.push("role may not be set".to_string());
        }
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn seccomp_profile_baseline(_: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut setters = Vec::new();
    if spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        setters.push("pod".to_string());
    }
    let names = bad_containers(all, |s| {
        s.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined")
    });
    if !names.is_empty() {
        setters.push(named_containers(&names));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            setters.join(" and ")
        ),
    )
}

fn sysctls(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    const SAFE: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    ];
    let bad: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !SAFE.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn allow_privilege_escalation(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let names: Vec<&str> = all
        .iter()
        .filter(|c| c.security.and_then(|s| s.allow_privilege_escalation) != Some(false))
        .map(|c| c.name)
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            named_containers(&names)
        ),
    )
}

fn capabilities_restricted(_: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in all {
        let Some(capabilities) = c.security.and_then(|s| s.capabilities.as_ref()) else {
            missing_drop.push(c.name);
            continue;
        };
        if !capabilities.drop.iter().flatten().any(|d| d == "ALL") {
            missing_drop.push(c.name);
        }
        let extra: Vec<&String> =
            capabilities.add.iter().flatten().filter(|a| *a != "NET_BIND_SERVICE").collect();
        if !extra.is_empty() {
            adding.push(c.name);
            caps.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            named_containers(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named_containers(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn restricted_volumes(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    let mut names = Vec::new();
    let mut kinds = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        if v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some()
        {
            continue;
        }
        names.push(v.name.as_str());
        kinds.insert(volume_kind(v));
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize("restricted volume type", "restricted volume types", kinds.len()),
            join_quote(&kinds)
        ),
    )
}

/// Upstream's name of a volume's (restricted) source.
fn volume_kind(v: &k8s_openapi::api::core::v1::Volume) -> &'static str {
    let kinds: [(bool, &'static str); 21] = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    kinds.into_iter().find(|(set, _)| *set).map_or("unknown", |(_, name)| name)
}

fn run_as_non_root(_: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut setters = Vec::new();
    let pod = spec.security_context.as_ref().and_then(|s| s.run_as_non_root);
    if pod == Some(false) {
        setters.push("pod".to_string());
    }
    let pod_ok = pod == Some(true);
    let explicit = bad_containers(all, |s| s.run_as_non_root == Some(false));
    let implicit: Vec<&str> = all
        .iter()
        .filter(|c| c.security.and_then(|s| s.run_as_non_root).is_none() && !pod_ok)
        .map(|c| c.name)
        .collect();
    if !explicit.is_empty() {
        setters.push(named_containers(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters.join(" and ")),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            named_containers(&implicit)
        ),
    )
}

fn run_as_user(_: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let mut setters = Vec::new();
    if spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0) {
        setters.push("pod".to_string());
    }
    let names = bad_containers(all, |s| s.run_as_user == Some(0));
    if !names.is_empty() {
        setters.push(named_containers(&names));
    }
    if setters.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", setters.join(" and ")))
}

fn seccomp_profile_restricted(_: &Pod, spec: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let valid = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_ok = false;
    if let Some(p) = spec.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()) {
        if valid(&p.type_) {
            pod_ok = true;
        } else {
            setters.push("pod".to_string());
            values.insert(p.type_.clone());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in all {
        match c.security.and_then(|s| s.seccomp_profile.as_ref()) {
            Some(p) if !valid(&p.type_) => {
                explicit.push(c.name);
                values.insert(p.type_.clone());
            }
            Some(_) => {}
            None if !pod_ok => implicit.push(c.name),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(named_containers(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            named_containers(&implicit)
        ),
    )
}

/// Upstream's message: `violates PodSecurity "LEVEL:VERSION": reason (detail), ...`.
pub fn message(level: Level, version: &str, violations: &[Violation]) -> String {
    let list: Vec<String> =
        violations.iter().map(|v| format!("{} ({})", v.reason, v.detail)).collect();
    format!("violates PodSecurity \"{}:{}\": {}", level.as_str(), version, list.join(", "))
}

/// Whether an update changes what the checks read, as upstream's `isSignificantPodUpdate`:
/// the spec (container images aside, which may change in place) or the AppArmor annotations.
fn significant_update(new: &Pod, old: &Pod) -> bool {
    let apparmor = |p: &Pod| -> Vec<(String, String)> {
        p.metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if apparmor(new) != apparmor(old) {
        return true;
    }
    let without_images = |p: &Pod| {
        let mut spec = p.spec.clone().unwrap_or_default();
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            c.image = None;
        }
        for c in spec.ephemeral_containers.iter_mut().flatten() {
            c.image = None;
        }
        spec
    };
    without_images(new) != without_images(old)
}

impl Validating for PodSecurity {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if !attributes.group.is_empty()
            || attributes.resource != "pods"
            || !matches!(attributes.subresource, "" | "ephemeralcontainers")
            || !matches!(attributes.operation, Operation::Create | Operation::Update)
            || attributes.namespace.is_empty()
        {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(pod) = typed::<Pod>(object) else { return Ok(()) };
        let Some(namespace) = cluster
            .get("", "namespaces", "", attributes.namespace)
            .and_then(|n| typed::<Namespace>(&n))
        else {
            return Ok(());
        };
        let labels = namespace.metadata.labels.unwrap_or_default();
        let (level, version) = enforced(&labels);
        if level == Level::Privileged {
            return Ok(());
        }
        if attributes.operation == Operation::Update
            && let Some(old) = old.and_then(typed::<Pod>)
            && !significant_update(&pod, &old)
        {
            return Ok(());
        }
        let violations = evaluate(level, &pod);
        if violations.is_empty() {
            return Ok(());
        }
        Err(forbidden(attributes, Some(object), &message(level, &version, &violations)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster(level: Option<&str>) -> Objects {
        let labels = match level {
            Some(l) => json!({ ENFORCE_LABEL: l }),
            None => json!({}),
        };
        Objects(vec![("", "namespaces", json!({"metadata": {"name": "ns", "labels": labels}}))])
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn bare() -> Value {
        pod(json!({"containers": [{"name": "c", "image": "i"}]}))
    }

    fn compliant() -> Value {
        pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
            }}],
            "volumes": [{"name": "v", "emptyDir": {}}]
        }))
    }

    fn run(level: Option<&str>, object: &Value) -> Result<(), String> {
        PodSecurity
            .validate(&create("", "pods", "ns"), Some(object), None, &cluster(level))
            .map_err(|e| e.message)
    }

    #[test]
    fn pods_are_admitted_or_refused_by_the_namespace_level() {
        let privileged = pod(json!({"containers": [
            {"name": "c", "image": "i", "securityContext": {"privileged": true}}
        ]}));
        let host_network =
            pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}));
        let cases: &[(&str, Option<&str>, Value, bool)] = &[
            ("a privileged pod passes an unlabelled namespace", None, privileged.clone(), true),
            (
                "a privileged pod passes a privileged namespace",
                Some("privileged"),
                privileged.clone(),
                true,
            ),
            (
                "a privileged pod is refused under baseline",
                Some("baseline"),
                privileged.clone(),
                false,
            ),
            ("a hostNetwork pod is refused under baseline", Some("baseline"), host_network, false),
            ("a bare pod passes baseline", Some("baseline"), bare(), true),
            ("a bare pod is refused under restricted", Some("restricted"), bare(), false),
            ("a compliant pod passes restricted", Some("restricted"), compliant(), true),
            ("an unknown level is treated as restricted", Some("nope"), bare(), false),
        ];
        for (case, level, object, ok) in cases {
            assert_eq!(run(*level, object).is_ok(), *ok, "{case}");
        }
    }

    #[test]
    fn refusals_carry_upstreams_messages() {
        let cases: &[(&str, Option<&str>, Value, &str)] = &[
            (
                "the exact restricted message for a bare pod",
                Some("restricted"),
                bare(),
                r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            ),
            (
                "baseline names privileged containers and host namespaces in check order",
                Some("baseline"),
                pod(json!({"hostNetwork": true, "hostPID": true, "initContainers": [
                    {"name": "init", "image": "i", "securityContext": {"privileged": true}}
                ], "containers": [
                    {"name": "c", "image": "i", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}
                ]})),
                r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), privileged (containers "init", "c" must not set securityContext.privileged=true)"#,
            ),
            (
                "baseline refuses hostPath volumes, hostPorts, unsafe sysctls and Unconfined seccomp",
                Some("baseline"),
                pod(json!({
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}, "sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 80}]}],
                    "volumes": [{"name": "h", "hostPath": {"path": "/"}}]
                })),
                r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "h"), hostPort (container "c" uses hostPort 80), seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined"), forbidden sysctls (kernel.msgmax)"#,
            ),
            (
                "restricted names hostPath as a restricted volume type and runAsUser=0",
                Some("restricted"),
                {
                    let mut p = compliant();
                    p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]);
                    p["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "i", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
                    p
                },
                r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": restricted volume types (volume "h" uses restricted volume type "hostPath"), runAsUser=0 (container "e" must not set runAsUser=0)"#,
            ),
        ];
        for (case, level, object, want) in cases {
            assert_eq!(run(*level, object).unwrap_err(), *want, "{case}");
        }
    }

    #[test]
    fn the_enforce_version_is_named_in_the_message() {
        let cases: &[(&str, &[(&str, &str)], Level, &str)] = &[
            ("no label is privileged", &[], Level::Privileged, "latest"),
            (
                "a version is kept",
                &[(ENFORCE_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "v1.30")],
                Level::Baseline,
                "v1.30",
            ),
            (
                "a bad version is latest",
                &[(ENFORCE_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "x")],
                Level::Restricted,
                "latest",
            ),
        ];
        for (case, labels, level, version) in cases {
            let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(enforced(&labels), (*level, version.to_string()), "{case}");
        }
    }

    #[test]
    fn updates_are_checked_only_when_the_spec_changes() {
        let mut attributes = create("", "pods", "ns");
        attributes.operation = Operation::Update;
        let old = bare();
        let mut relabelled = bare();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        let mut new_image = bare();
        new_image["spec"]["containers"][0]["image"] = json!("j");
        let mut privileged = bare();
        privileged["spec"]["hostPID"] = json!(true);
        let cases: &[(&str, Value, bool)] = &[
            ("a metadata-only update passes", relabelled, true),
            ("an image-only update passes", new_image, true),
            ("a spec change is checked", privileged, false),
        ];
        for (case, new, ok) in cases {
            let got = PodSecurity.validate(
                &attributes,
                Some(new),
                Some(&old),
                &cluster(Some("restricted")),
            );
            assert_eq!(got.is_ok(), *ok, "{case}");
        }
    }
}
