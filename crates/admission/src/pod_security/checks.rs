//! The checks of the Pod Security Standards, as upstream's `pod-security-admission/policy`:
//! each by its upstream ID, in its versions (the rules a namespace pinned to `v1.N` gets), with
//! upstream's reasons and details.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Pod, PodSpec, SecurityContext,
};

use super::policy::{Level, LevelVersion, Version};

/// One failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What is wrong (`host namespaces`, `runAsNonRoot != true`, ...).
    pub reason: String,
    /// Who does it and what to do instead.
    pub detail: String,
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

/// One version of a check: from which Kubernetes minor version on it applies, and which
/// baseline checks it replaces at the restricted level.
struct Versioned {
    since: u32,
    check: Check,
    overrides: &'static [&'static str],
}

/// A check by upstream's ID, with its versions in increasing order.
type CheckDef = (&'static str, &'static [Versioned]);

const fn since(since: u32, check: Check) -> Versioned {
    Versioned { since, check, overrides: &[] }
}

/// Baseline checks, sorted by upstream's check ID.
const BASELINE: &[CheckDef] = &[
    ("appArmorProfile", &[since(0, app_armor_profile)]),
    ("capabilities_baseline", &[since(0, capabilities_baseline)]),
    ("hostNamespaces", &[since(0, host_namespaces)]),
    ("hostPathVolumes", &[since(0, host_path_volumes)]),
    ("hostPorts", &[since(0, host_ports)]),
    ("privileged", &[since(0, privileged)]),
    ("procMount", &[since(0, proc_mount)]),
    ("seLinuxOptions", &[since(0, se_linux_options)]),
    (
        "seccompProfile_baseline",
        &[since(0, seccomp_annotations_baseline), since(19, seccomp_profile_baseline)],
    ),
    (
        "sysctls",
        &[
            since(0, sysctls_1_0),
            since(27, sysctls_1_27),
            since(29, sysctls_1_29),
            since(32, sysctls_1_32),
        ],
    ),
];

/// Restricted checks, sorted by upstream's check ID, with the baseline checks they replace.
const RESTRICTED: &[CheckDef] = &[
    ("allowPrivilegeEscalation", &[since(8, allow_privilege_escalation)]),
    (
        "capabilities_restricted",
        &[Versioned {
            since: 22,
            check: capabilities_restricted,
            overrides: &["capabilities_baseline"],
        }],
    ),
    (
        "restrictedVolumes",
        &[Versioned { since: 0, check: restricted_volumes, overrides: &["hostPathVolumes"] }],
    ),
    ("runAsNonRoot", &[since(0, run_as_non_root)]),
    ("runAsUser", &[since(23, run_as_user)]),
    (
        "seccompProfile_restricted",
        &[Versioned {
            since: 19,
            check: seccomp_profile_restricted,
            overrides: &["seccompProfile_baseline"],
        }],
    ),
];

/// The version of a check that applies at `version` (the newest not newer), if any.
fn at(versions: &'static [Versioned], version: Version) -> Option<&'static Versioned> {
    versions.iter().rev().find(|v| version.at_least(v.since))
}

/// Every violation of `standard` by a pod (its metadata and spec), in upstream's order:
/// baseline checks, then restricted ones, each by check ID; at the restricted level, the
/// baseline checks a restricted one replaces are skipped. Each check is taken in its version
/// for `standard.version` (a version newer than the newest rules is the newest rules).
pub fn evaluate(standard: LevelVersion, pod: &Pod) -> Vec<Violation> {
    if standard.level == Level::Privileged {
        return Vec::new();
    }
    let version = standard.version;
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let all = containers(spec);
    let restricted: Vec<&Versioned> = if standard.level == Level::Restricted {
        RESTRICTED.iter().filter_map(|(_, versions)| at(versions, version)).collect()
    } else {
        Vec::new()
    };
    let overridden = |id: &str| restricted.iter().any(|r| r.overrides.contains(&id));
    BASELINE
        .iter()
        .filter(|(id, _)| !overridden(id))
        .filter_map(|(_, versions)| at(versions, version))
        .chain(restricted.iter().copied())
        .filter_map(|v| (v.check)(pod, spec, &all))
        .collect()
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

/// Before 1.19, the seccomp profiles of the alpha annotations: only `runtime/default`,
/// `docker/default` and `localhost/*`.
fn seccomp_annotations_baseline(pod: &Pod, _: &PodSpec, all: &[View<'_>]) -> Option<Violation> {
    let annotations = pod.metadata.annotations.as_ref()?;
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut keys = vec!["seccomp.security.alpha.kubernetes.io/pod".to_string()];
    keys.extend(
        all.iter().map(|c| format!("container.seccomp.security.alpha.kubernetes.io/{}", c.name)),
    );
    let bad: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| annotations.get(k).filter(|v| !valid(v)).map(|v| format!("{k}={v:?}")))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", bad.len()),
            bad.into_iter().collect::<Vec<_>>().join(", ")
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

/// The sysctls the baseline allows, in the order they were allowed: the first 5 since 1.0,
/// then one more since 1.27, four since 1.29 and two since 1.32.
const SAFE_SYSCTLS: &[&str] = &[
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

/// The sysctls outside the first `allowed` of [`SAFE_SYSCTLS`].
fn sysctls(spec: &PodSpec, allowed: usize) -> Option<Violation> {
    let safe = &SAFE_SYSCTLS[..allowed.min(SAFE_SYSCTLS.len())];
    let bad: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !safe.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn sysctls_1_0(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    sysctls(spec, 5)
}

fn sysctls_1_27(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    sysctls(spec, 6)
}

fn sysctls_1_29(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    sysctls(spec, 10)
}

fn sysctls_1_32(_: &Pod, spec: &PodSpec, _: &[View<'_>]) -> Option<Violation> {
    sysctls(spec, 12)
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
