//! Seccomp for containers: the OCI `linux.seccomp` section as the kubelet and containerd
//! make it.
//!
//! A pod or a container asks for a profile with `securityContext.seccompProfile` (the
//! container's wins; `pod::container::seccomp` reads them into a [`Choice`]): `RuntimeDefault` is containerd's default profile
//! ([`runtime_default`]), `Unconfined` is no filter at all, `Localhost` is a JSON file under
//! the agent's seccomp root (`<data-dir>/seccomp`, the kubelet's `/var/lib/kubelet/seccomp`),
//! read at the edge ([`load`]). With none asked for, the node's default applies:
//! `Unconfined`, or `RuntimeDefault` with `--seccomp-default` (the kubelet's flag).
//! Privileged containers get no filter whatever they ask (as containerd's).
//!
//! The default profile is data: a table of the calls every container may make, the calls
//! allowed only with some argument values, and the calls each capability brings, built for
//! the capabilities the container keeps in its bounding set. What it refuses fails with
//! `EPERM` (`clone3` with `ENOSYS`, so that C libraries fall back to `clone`, whose flags
//! the filter can see). Names the runtime's libseccomp does not know are skipped by runc,
//! so the table may list calls newer than the host's kernel.
//!
//! Everything here is pure but [`Host::current`] and [`load`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// `EPERM`: what a call the default profile refuses returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`.
const ENOSYS: u32 = 38;

/// The namespace flags of `clone(2)`: `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;
/// `AF_ALG`, the kernel's crypto sockets, refused by the default profile.
const AF_ALG: u64 = 38;
/// `AF_VSOCK`, sockets to the hypervisor, refused by the default profile.
const AF_VSOCK: u64 = 40;

/// The calls every container may make, whatever it keeps. Some exist on 32-bit ABIs only
/// (`*32`, `*64` on x86, `_llseek`), some only on newer kernels (noted with the first kernel
/// and libseccomp that know them).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat", // kernel 6.5, libseccomp 2.5.5
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2", // kernel 6.6, libseccomp 2.5.5
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue", // kernel 6.7, libseccomp 2.5.5
    "futex_time64",
    "futex_wait", // kernel 6.7, libseccomp 2.5.5
    "futex_waitv",
    "futex_wake", // kernel 6.7, libseccomp 2.5.5
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat", // kernel 6.13, libseccomp 2.6.0
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount", // kernel 6.8, libseccomp 2.6.0
    "listxattr",
    "listxattrat", // kernel 6.13, libseccomp 2.6.0
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lsm_get_self_attr", // kernel 6.8, libseccomp 2.6.0
    "lsm_list_modules",  // kernel 6.8, libseccomp 2.6.0
    "lsm_set_self_attr", // kernel 6.8, libseccomp 2.6.0
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack", // kernel 6.6, libseccomp 2.5.5
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal", // kernel 6.10, libseccomp 2.6.0
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat", // kernel 6.13, libseccomp 2.6.0
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat", // kernel 6.13, libseccomp 2.6.0
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount", // kernel 6.8, libseccomp 2.6.0
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe", // kernel 6.11, libseccomp 2.6.0
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The calls allowed on one architecture only (its own ABI's extras).
const ALLOWED_ON: &[(Arch, &[&str])] = &[
    (Arch::X86_64, &["arch_prctl", "modify_ldt"]),
    (
        Arch::Aarch64,
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
];

/// The calls allowed from a kernel version on: before 4.8, `ptrace` could get around a
/// seccomp filter, so the profile allows it (and its kin) only with `CAP_SYS_PTRACE` there.
const ALLOWED_SINCE: &[((u32, u32), &[&str])] =
    &[((4, 8), &["process_vm_readv", "process_vm_writev", "ptrace"])];

/// The `personality(2)` personas a container may take: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32 | UNAME26`, and `0xffffffff` (which only queries the current one).
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The calls each capability brings: a container whose bounding set keeps the capability
/// may make them (what the capability guards in the kernel).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node", // kernel 5.17, libseccomp 2.5.4
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// A CPU architecture, as far as the default profile tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `x86_64`: filters also the 32-bit x86 and x32 ABIs it runs.
    X86_64,
    /// `aarch64`: filters also the 32-bit ARM ABI it runs.
    Aarch64,
    /// Any other: the filter covers the native ABI only, with no calls of its own.
    Other,
}

impl Arch {
    /// The architecture this agent was built for (the host's).
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "x86_64" => Arch::X86_64,
            "aarch64" => Arch::Aarch64,
            _ => Arch::Other,
        }
    }

    /// The ABIs a filter covers here (libseccomp's names); a call made through an ABI not
    /// listed is refused with the default action.
    fn abis(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            Arch::Aarch64 => &["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
            Arch::Other => &[],
        }
    }
}

/// What the default profile depends on besides the container: the host's architecture and
/// kernel version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The CPU architecture.
    pub arch: Arch,
    /// The kernel's (major, minor) version; `None` when unknown.
    pub kernel: Option<(u32, u32)>,
}

impl Host {
    /// This host: the agent's architecture and the running kernel (from
    /// `/proc/sys/kernel/osrelease`).
    pub fn current() -> Host {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Host { arch: Arch::host(), kernel: kernel_version(&release) }
    }
}

/// The (major, minor) of a kernel release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What a rule does to a call it matches (the OCI names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// The call goes through.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// The call fails with an error number.
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
}

/// How a call's argument is compared with a rule's value (the OCI names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `arg == value`.
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    /// `arg < value`.
    #[serde(rename = "SCMP_CMP_LT")]
    LessThan,
    /// `arg > value`.
    #[serde(rename = "SCMP_CMP_GT")]
    GreaterThan,
    /// `arg & value == value_two`.
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// A condition on one argument of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// The argument's position (0 is the first).
    pub index: u32,
    /// What it is compared with.
    pub value: u64,
    /// The second operand (the expected result of [`Op::MaskedEqual`]).
    pub value_two: u64,
    /// The comparison.
    pub op: Op,
}

impl Arg {
    fn new(index: u32, op: Op, value: u64) -> Arg {
        Arg { index, value, value_two: 0, op }
    }
}

/// One rule: calls by name, what happens to them, and the conditions on their arguments
/// (all must hold; several rules for one call are alternatives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The calls, by libseccomp's names.
    pub names: Vec<&'static str>,
    /// What happens to a matching call.
    pub action: Action,
    /// The error number of [`Action::Errno`] (`EPERM` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// The conditions on the arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

impl Rule {
    fn allow(names: &[&'static str]) -> Rule {
        Rule { names: names.to_vec(), action: Action::Allow, errno_ret: None, args: vec![] }
    }

    fn allow_if(name: &'static str, arg: Arg) -> Rule {
        Rule { names: vec![name], action: Action::Allow, errno_ret: None, args: vec![arg] }
    }
}

/// A seccomp profile: the OCI `linux.seccomp` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a call no rule matches.
    pub default_action: Action,
    /// The error number of a default [`Action::Errno`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The ABIs filtered (libseccomp's names).
    pub architectures: Vec<&'static str>,
    /// The rules.
    pub syscalls: Vec<Rule>,
}

impl Profile {
    /// The names of the calls allowed with no condition on their arguments.
    pub fn allowed(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.syscalls
            .iter()
            .filter(|r| r.action == Action::Allow && r.args.is_empty())
            .flat_map(|r| r.names.iter().copied())
    }

    /// The OCI JSON of the profile.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// containerd's default profile (`RuntimeDefault`) for a container that keeps
/// `capabilities` (its bounding set) on `host`: calls not listed fail with `EPERM`.
///
/// Besides [`ALLOWED`], a container may make: `socket` for every address family but
/// `AF_ALG` and `AF_VSOCK`; `personality` with the [`PERSONALITIES`] only; its
/// architecture's own calls; the calls its capabilities bring ([`BY_CAPABILITY`]); and,
/// without `CAP_SYS_ADMIN`, `clone` without namespace flags, while `clone3` (whose flags
/// are behind a pointer the filter cannot read) fails with `ENOSYS`.
pub fn runtime_default<S: AsRef<str>>(host: &Host, capabilities: &[S]) -> Profile {
    let keeps = |cap: &str| capabilities.iter().any(|c| c.as_ref() == cap);
    let mut syscalls = vec![Rule::allow(ALLOWED)];
    // Three single-condition rules: runc would turn two conditions on one argument into
    // alternatives, so "neither AF_ALG nor AF_VSOCK" is written as the ranges around them.
    syscalls.extend([
        Rule::allow_if("socket", Arg::new(0, Op::LessThan, AF_ALG)),
        Rule::allow_if("socket", Arg::new(0, Op::Equal, AF_ALG + 1)),
        Rule::allow_if("socket", Arg::new(0, Op::GreaterThan, AF_VSOCK)),
    ]);
    syscalls.extend(
        PERSONALITIES.iter().map(|p| Rule::allow_if("personality", Arg::new(0, Op::Equal, *p))),
    );
    for (since, names) in ALLOWED_SINCE {
        if host.kernel.is_some_and(|k| k >= *since) {
            syscalls.push(Rule::allow(names));
        }
    }
    for (arch, names) in ALLOWED_ON {
        if *arch == host.arch {
            syscalls.push(Rule::allow(names));
        }
    }
    for (cap, names) in BY_CAPABILITY {
        if keeps(cap) {
            syscalls.push(Rule::allow(names));
        }
    }
    if !keeps("CAP_SYS_ADMIN") {
        let no_namespaces =
            Arg { index: 0, value: CLONE_NAMESPACE_FLAGS, value_two: 0, op: Op::MaskedEqual };
        syscalls.push(Rule::allow_if("clone", no_namespaces));
        syscalls.push(Rule {
            names: vec!["clone3"],
            action: Action::Errno,
            errno_ret: Some(ENOSYS),
            args: vec![],
        });
    }
    Profile {
        default_action: Action::Errno,
        default_errno_ret: Some(EPERM),
        architectures: host.arch.abis().to_vec(),
        syscalls,
    }
}

/// The profile a container runs under, as the pod asks for it
/// (`securityContext.seccompProfile`, chosen in `pod::container::seccomp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// No filter.
    Unconfined,
    /// containerd's default profile.
    RuntimeDefault,
    /// A file under the node's seccomp root: a relative path that stays inside it.
    Localhost(PathBuf),
}

/// The filter the runtime config gets: a [`Choice`] with its file read.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// No `linux.seccomp` section.
    #[default]
    Unconfined,
    /// containerd's default profile on this host, made for the capabilities the container
    /// ends up with ([`runtime_default`]).
    RuntimeDefault(Host),
    /// A profile file's OCI section ([`load`]).
    Localhost(Value),
}

/// Why a `Localhost` profile cannot be used: upstream's `CreateContainerError`, where
/// containerd fails to load the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot load seccomp profile {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a seccomp profile's JSON.
    #[error("decoding seccomp profile failed {path:?}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The fields of an OCI `linux.seccomp` section; a profile file's other fields (a Docker
/// profile's `archMap`, comments) are dropped, as containerd's typed decoding does.
const OCI_FIELDS: [&str; 7] = [
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
];

/// Reads the `Localhost` profile `name` under `root` (a name checked not to leave it).
/// Its rules are the runtime's to check.
pub fn load(root: &Path, name: &Path) -> Result<Value, Error> {
    let path = root.join(name);
    let raw = std::fs::read(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
    decode(&raw).map_err(|message| Error::Decode { path, message })
}

/// A profile file's OCI section.
fn decode(raw: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    let Value::Object(fields) = value else {
        return Err("a profile is a JSON object".into());
    };
    let kept: Map<String, Value> =
        fields.into_iter().filter(|(k, _)| OCI_FIELDS.contains(&k.as_str())).collect();
    Ok(Value::Object(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};

    const X86: Host = Host { arch: Arch::X86_64, kernel: Some((6, 1)) };

    fn allowed(profile: &Profile, name: &str) -> bool {
        profile.allowed().any(|n| n == name)
    }

    #[test]
    fn the_default_profile_refuses_with_eperm_on_the_hosts_abis() {
        let json = runtime_default(&X86, &DEFAULT_CAPABILITIES).to_json();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let arm = Host { arch: Arch::Aarch64, ..X86 };
        let json = runtime_default(&arm, &DEFAULT_CAPABILITIES).to_json();
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"])
        );
        assert!(json["syscalls"].as_array().is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r["names"].as_array().is_some_and(|n| n.contains(&"set_tls".into())))
        }));
    }

    #[test]
    fn the_default_profile_allows_what_every_program_needs() {
        let p = runtime_default(&X86, &DEFAULT_CAPABILITIES);
        for name in ["read", "write", "openat", "execve", "mmap", "futex", "arch_prctl", "ptrace"] {
            assert!(allowed(&p, name), "{name} is allowed");
        }
        for name in ["mount", "unshare", "setns", "reboot", "bpf", "kexec_load", "socket", "clone"]
        {
            assert!(!allowed(&p, name), "{name} is not allowed unconditionally");
        }
        let json = p.to_json();
        let rules = json["syscalls"].as_array().cloned().unwrap_or_default();
        let rules_of = |name: &str| -> Vec<Value> {
            rules.iter().filter(|r| r["names"] == serde_json::json!([name])).cloned().collect()
        };
        let args = |name: &str| -> Vec<Value> {
            rules_of(name).iter().map(|r| r["args"][0].clone()).collect()
        };
        assert_eq!(
            args("socket"),
            [
                serde_json::json!({"index": 0, "value": 38, "valueTwo": 0, "op": "SCMP_CMP_LT"}),
                serde_json::json!({"index": 0, "value": 39, "valueTwo": 0, "op": "SCMP_CMP_EQ"}),
                serde_json::json!({"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_GT"}),
            ]
        );
        let personas: Vec<Value> = args("personality").iter().map(|a| a["value"].clone()).collect();
        assert_eq!(
            personas,
            serde_json::json!([0, 8, 131072, 131080, 4294967295u64])
                .as_array()
                .cloned()
                .unwrap_or_default()
        );
        assert_eq!(
            args("clone"),
            [
                serde_json::json!({"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})
            ]
        );
        let clone3 = rules_of("clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
    }

    #[test]
    fn capabilities_bring_their_calls_only_when_kept() {
        let without = runtime_default(&X86, &DEFAULT_CAPABILITIES);
        for (cap, name) in [
            ("CAP_SYS_ADMIN", "mount"),
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_MODULE", "init_module"),
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_TIME", "settimeofday"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYS_RAWIO", "iopl"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ] {
            assert!(!allowed(&without, name), "{name} without {cap}");
            let caps: Vec<String> =
                DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).chain([cap.into()]).collect();
            assert!(allowed(&runtime_default(&X86, &caps), name), "{name} with {cap}");
        }
        // The default set keeps CAP_SYS_CHROOT; dropping it takes chroot away.
        assert!(allowed(&without, "chroot"));
        assert!(!allowed(&runtime_default(&X86, &["CAP_KILL"]), "chroot"));
    }

    #[test]
    fn sys_admin_frees_clone_and_clone3_of_their_conditions() {
        let admin = runtime_default(&X86, &ALL_CAPABILITIES);
        assert!(
            allowed(&admin, "clone") && allowed(&admin, "clone3") && allowed(&admin, "unshare")
        );
        assert!(admin.syscalls.iter().all(|r| r.action == Action::Allow));
        assert!(!admin.syscalls.iter().any(|r| r.names == ["clone"] && !r.args.is_empty()));
    }

    #[test]
    fn ptrace_needs_its_capability_on_kernels_before_4_8() {
        let old = Host { kernel: Some((4, 4)), ..X86 };
        assert!(!allowed(&runtime_default(&old, &DEFAULT_CAPABILITIES), "ptrace"));
        assert!(allowed(&runtime_default(&old, &["CAP_SYS_PTRACE"]), "ptrace"));
        assert_eq!(kernel_version("6.18.44-fc-v1252\n"), Some((6, 18)));
        assert_eq!(kernel_version("4.8.0"), Some((4, 8)));
        assert_eq!(kernel_version("junk"), None);
    }

    #[test]
    fn localhost_profiles_are_read_and_keep_the_oci_fields() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("team")).expect("mkdir");
        let file = root.path().join("team/deny-mkdir.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [], "comment": "x",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .expect("write");
        let loaded = load(root.path(), Path::new("team/deny-mkdir.json")).expect("profile");
        assert_eq!(
            loaded,
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
        );
        assert!(matches!(load(root.path(), Path::new("absent.json")), Err(Error::Read { .. })));
        std::fs::write(root.path().join("bad.json"), "[1]").expect("write");
        assert!(matches!(load(root.path(), Path::new("bad.json")), Err(Error::Decode { .. })));
    }
}
