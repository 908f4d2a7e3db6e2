//! The agent's contact with the kernel beyond files: namespaces pinned to files, mounts,
//! signals, process reaping and netlink. Everything here goes through `nix`'s and
//! `rtnetlink`'s safe wrappers; the rest of the crate calls these functions and no syscall
//! of its own, so that the pod logic above them is plain code.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};

/// A failed syscall, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    what: String,
    #[source]
    source: std::io::Error,
}

impl SysError {
    /// An error of doing `what`.
    pub fn new(what: impl Into<String>, source: std::io::Error) -> SysError {
        SysError { what: what.into(), source }
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SysError {
    let what = what.into();
    move |e| SysError { what, source: std::io::Error::from(e) }
}

fn io_fail(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SysError {
    let what = what.into();
    move |source| SysError { what, source }
}

/// The namespaces a pod's containers share, each kept alive by a bind mount on a file in
/// `dir` (`net`, `ipc`, `uts`), so that no process has to hold them.
pub const POD_NAMESPACES: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

/// Makes new namespaces of the `kinds` named (of [`POD_NAMESPACES`]) pinned under `dir`:
/// a new UTS namespace gets `hostname`, a new network namespace its loopback up. Runs on a
/// thread of its own: `unshare` moves only the calling thread.
pub fn pin_pod_namespaces(dir: &Path, hostname: &str, kinds: &[&str]) -> Result<(), SysError> {
    fs::create_dir_all(dir).map_err(io_fail(format!("cannot create {}", dir.display())))?;
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    let chosen: Vec<(&'static str, CloneFlags)> =
        POD_NAMESPACES.iter().copied().filter(|(name, _)| kinds.contains(name)).collect();
    std::thread::spawn(move || -> Result<(), SysError> {
        let flags = chosen.iter().fold(CloneFlags::empty(), |all, (_, f)| all | *f);
        nix::sched::unshare(flags).map_err(fail("cannot create the pod's namespaces"))?;
        if flags.contains(CloneFlags::CLONE_NEWUTS) {
            nix::unistd::sethostname(&hostname).map_err(fail("cannot set the pod's hostname"))?;
        }
        for (name, _) in &chosen {
            let target = dir.join(name);
            fs::write(&target, b"")
                .map_err(io_fail(format!("cannot create {}", target.display())))?;
            let source = PathBuf::from(format!("/proc/thread-self/ns/{name}"));
            nix::mount::mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(fail(format!("cannot pin the {name} namespace")))?;
        }
        if !flags.contains(CloneFlags::CLONE_NEWNET) {
            return Ok(());
        }
        block_on_netlink(|handle| async move { set_up(&handle, "lo").await })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(SysError {
            what: "namespace thread panicked".into(),
            source: std::io::Error::other("panic"),
        })
    })
}

/// Unmounts and removes what [`pin_pod_namespaces`] made; what is already gone is fine.
pub fn unpin_pod_namespaces(dir: &Path) -> Result<(), SysError> {
    for (name, _) in POD_NAMESPACES {
        let target = dir.join(name);
        unmount(&target)?;
        let _ = fs::remove_file(&target);
    }
    Ok(())
}

/// Detaches the mount at `target`, if any.
pub fn unmount(target: &Path) -> Result<(), SysError> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(fail(format!("cannot unmount {}", target.display()))(e)),
    }
}

/// Mounts an overlay of `lower` (topmost first) under `upper` at `target`.
pub fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), SysError> {
    let lower = lower.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let options =
        format!("lowerdir={lower},upperdir={},workdir={}", upper.display(), work.display());
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(fail(format!("cannot mount the root filesystem at {}", target.display())))
}

/// Mounts a tmpfs at `target`, of at most `size` bytes when given.
pub fn mount_tmpfs(target: &Path, size: Option<u64>) -> Result<(), SysError> {
    let options = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        options.as_deref(),
    )
    .map_err(fail(format!("cannot mount a tmpfs at {}", target.display())))
}

/// Whether something is mounted at `path` (it is a mount point in this namespace).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.display().to_string();
    mounts.lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// A cgroup's CPU and memory settings, in cgroup v1's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// CPU shares.
    pub cpu_shares: u64,
    /// CFS quota per period (µs), if any.
    pub cpu_quota: Option<i64>,
    /// CFS period (µs).
    pub cpu_period: u64,
    /// Memory limit (bytes), if any.
    pub memory_limit: Option<i64>,
}

/// Makes the cgroup `path` (relative to each hierarchy's root) with `cgroup`'s settings: on
/// cgroup v1 in the `cpu` and `memory` hierarchies (`cpu.shares`, `cpu.cfs_quota_us`,
/// `memory.limit_in_bytes`), on v2 with the `cpu` and `memory` controllers enabled down to
/// it (`cpu.weight`, `cpu.max`, `memory.max`).
pub fn set_cgroup(path: &str, cgroup: &CgroupLimits) -> Result<(), SysError> {
    let relative = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let write = |file: PathBuf, value: String| {
        fs::write(&file, value).map_err(|e| SysError::new(format!("write {}", file.display()), e))
    };
    let make = |dir: &Path| {
        fs::create_dir_all(dir).map_err(|e| SysError::new(format!("mkdir {}", dir.display()), e))
    };
    if root.join("cgroup.controllers").exists() {
        // v2: each ancestor hands the controllers down.
        let mut at = root.to_path_buf();
        for part in Path::new(relative).components() {
            let _ = fs::write(at.join("cgroup.subtree_control"), "+cpu +memory");
            at = at.join(part);
            make(&at)?;
        }
        let weight = 1 + (cgroup.cpu_shares.saturating_sub(2) * 9999) / 262_142;
        write(at.join("cpu.weight"), weight.to_string())?;
        let quota = cgroup.cpu_quota.map_or("max".to_string(), |q| q.to_string());
        write(at.join("cpu.max"), format!("{quota} {}", cgroup.cpu_period))?;
        let memory = cgroup.memory_limit.map_or("max".to_string(), |m| m.to_string());
        return write(at.join("memory.max"), memory);
    }
    let hierarchy = |controller: &str| {
        fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.split(',').any(|c| c == controller))
        })
    };
    if let Some(cpu) = hierarchy("cpu") {
        let dir = cpu.join(relative);
        make(&dir)?;
        write(dir.join("cpu.shares"), cgroup.cpu_shares.to_string())?;
        write(dir.join("cpu.cfs_period_us"), cgroup.cpu_period.to_string())?;
        write(dir.join("cpu.cfs_quota_us"), cgroup.cpu_quota.unwrap_or(-1).to_string())?;
    }
    if let Some(memory) = hierarchy("memory") {
        let dir = memory.join(relative);
        make(&dir)?;
        write(dir.join("memory.limit_in_bytes"), cgroup.memory_limit.unwrap_or(-1).to_string())?;
    }
    Ok(())
}

/// Removes the cgroup `path` (relative to each hierarchy's root, v1 and v2) and the
/// cgroups under it, deepest first; the kernel refuses while a process is still in one.
pub fn remove_cgroup(path: &str) {
    let relative = path.trim_start_matches('/');
    let roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup")))
        .collect();
    for root in roots {
        let dir = root.join(relative);
        if dir.is_dir() {
            remove_cgroup_tree(&dir);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The lowest OOM score adjustment a container may be given from here: -1000 with
/// `CAP_SYS_RESOURCE`, else this process's own (lowering it needs the capability, and
/// some sandboxes withhold it even from root).
pub fn lowest_oom_score_adj() -> i32 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_RESOURCE) != 0 {
        return -1000;
    }
    fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the holder of a new PID namespace for a pod whose containers share one
/// (`shareProcessNamespace`): this process enters a new PID namespace for its children and
/// starts `exe pause`, which is PID 1 there (it reaps, and ignores signals as a namespace's
/// init does). Returns the holder's pid as the host sees it; containers join
/// `/proc/PID/ns/pid`. Call from `krust pause-holder` only: the caller's later children
/// would all land in the new namespace.
pub fn start_pid_namespace_holder(exe: &Path) -> Result<u32, SysError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(fail("cannot create a PID namespace"))?;
    let child = std::process::Command::new(exe)
        .arg("pause")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io_fail("cannot start the PID namespace's holder"))?;
    Ok(child.id())
}

/// `krust pause`: PID 1 of a pod's shared PID namespace; reaps orphans for ever.
pub fn pause() -> ! {
    let _ = new_session();
    loop {
        if wait_any().is_none() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// Sends `signal` to `pid`; a process already gone is fine.
pub fn kill(pid: i32, signal: Signal) -> Result<(), SysError> {
    match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(fail(format!("cannot signal process {pid}"))(e)),
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Makes this process the reaper of its orphaned descendants (the shim's containers).
pub fn become_subreaper() -> Result<(), SysError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(fail("cannot become a subreaper"))
}

/// Starts a new session, detaching this process from the agent's.
pub fn new_session() -> Result<(), SysError> {
    nix::unistd::setsid().map(|_| ()).map_err(fail("cannot start a session"))
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Waits for any child; `None` when there is none left.
pub fn wait_any() -> Option<(i32, Exit)> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                return Some((pid.as_raw(), Exit::Signal(signal as i32)));
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// An inotify watch on a folder: [`FolderWatch::wait`] returns when something in it was
/// made, written, moved or removed (or the folder itself went).
#[derive(Debug)]
pub struct FolderWatch {
    fd: std::os::fd::OwnedFd,
}

impl FolderWatch {
    /// Watches `folder`.
    pub fn new(folder: &Path) -> Result<FolderWatch, SysError> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let what = format!("cannot watch {}", folder.display());
        let fd = inotify::init(CreateFlags::CLOEXEC)
            .map_err(|e| SysError::new(what.clone(), e.into()))?;
        let events = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF;
        inotify::add_watch(&fd, folder, events).map_err(|e| SysError::new(what, e.into()))?;
        Ok(FolderWatch { fd })
    }

    /// Blocks until something changed, and reads what the kernel says of it (which does not
    /// matter: the folder is read again).
    pub fn wait(&self) -> Result<(), SysError> {
        let mut buffer = [0u8; 4096];
        loop {
            match rustix::io::read(&self.fd, &mut buffer) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SysError::new("cannot read a folder's changes", e.into())),
            }
        }
    }
}

/// Sets this thread's no_new_privs bit (its execs gain no privileges).
pub fn set_no_new_privs() -> Result<(), SysError> {
    nix::sys::prctl::set_no_new_privs().map_err(fail("cannot set no_new_privs"))
}

/// Waits for child `pid`; `None` when it is not this process's child.
pub fn wait_for(pid: i32) -> Option<Exit> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(Exit::Signal(signal as i32)),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Runs `f` with a netlink handle on a fresh single-threaded runtime, in the calling
/// thread's network namespace (netlink sockets belong to the namespace they are made in).
fn block_on_netlink<F, Fut>(f: F) -> Result<(), SysError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: std::future::Future<Output = Result<(), SysError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_fail("cannot start a netlink runtime"))?;
    runtime.block_on(async move {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(io_fail("cannot open a netlink socket"))?;
        let task = tokio::spawn(connection);
        let result = f(handle).await;
        task.abort();
        result
    })
}

fn netlink_fail(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> SysError {
    let what = what.into();
    move |e| SysError { what, source: std::io::Error::other(e.to_string()) }
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, SysError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(netlink_fail(format!("cannot look up link {name}"))(e)),
    }
}

async fn set_up(handle: &rtnetlink::Handle, name: &str) -> Result<(), SysError> {
    handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_name(name).up().build())
        .execute()
        .await
        .map_err(netlink_fail(format!("cannot bring {name} up")))
}

/// A link's MAC address, from sysfs.
fn read_mac(name: &str) -> Result<Vec<u8>, SysError> {
    let path = Path::new("/sys/class/net").join(name).join("address");
    let text =
        fs::read_to_string(&path).map_err(io_fail(format!("cannot read {}", path.display())))?;
    let mac: Vec<u8> =
        text.trim().split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    if mac.len() != 6 {
        return Err(SysError {
            what: format!("{name} has no MAC address"),
            source: std::io::Error::other(text),
        });
    }
    Ok(mac)
}

/// Gives the bridge its own MAC address for good (its current one, set explicitly). A bridge
/// whose address the kernel chose takes the lowest of its ports' addresses, so a pod that
/// leaves could change the gateway's address under every other pod, whose ARP entries then
/// point nowhere for up to a minute.
async fn pin_bridge_address(
    handle: &rtnetlink::Handle,
    name: &str,
    index: u32,
) -> Result<(), SysError> {
    const NET_ADDR_SET: &str = "3";
    let sysfs = Path::new("/sys/class/net").join(name);
    let assigned = fs::read_to_string(sysfs.join("addr_assign_type")).unwrap_or_default();
    if assigned.trim() == NET_ADDR_SET {
        return Ok(());
    }
    let address = read_mac(name)?;
    handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(index).address(address).build())
        .execute()
        .await
        .map_err(netlink_fail(format!("cannot pin {name}'s MAC address")))
}

/// How a pod is attached to the node's bridge.
#[derive(Debug, Clone)]
pub struct PodLink {
    /// The bridge (made with `gateway/prefix` on first use).
    pub bridge: String,
    /// The bridge's address, the pod's default gateway.
    pub gateway: Ipv4Addr,
    /// The prefix length of the pod network.
    pub prefix: u8,
    /// The host end of the pod's veth pair.
    pub host_veth: String,
    /// The pod's address.
    pub address: Ipv4Addr,
    /// Its IPv6 side on a dual-stack node.
    pub v6: Option<PodLink6>,
}

/// The IPv6 side of a pod's link.
#[derive(Debug, Clone, Copy)]
pub struct PodLink6 {
    /// The bridge's IPv6 address, the pod's IPv6 default gateway.
    pub gateway: Ipv6Addr,
    /// The prefix length of the IPv6 pod network.
    pub prefix: u8,
    /// The pod's IPv6 address.
    pub address: Ipv6Addr,
}

/// Writes `value` into the IPv6 setting `name` of `device` (`/proc/sys/net/ipv6/conf`), in
/// the network namespace of the calling thread.
fn ipv6_setting(device: &str, name: &str, value: &str) -> Result<(), SysError> {
    let path = format!("/proc/sys/net/ipv6/conf/{device}/{name}");
    fs::write(&path, value).map_err(io_fail(format!("cannot write {path}")))
}

/// Gives `index` (named `device`) the IPv6 address `address/prefix`. The caller turns
/// duplicate address detection off on the device first (`accept_dad`), which would hold the
/// address back for a second or more: the addresses come from the node's own allocation.
async fn add_ipv6(
    handle: &rtnetlink::Handle,
    device: &str,
    index: u32,
    address: Ipv6Addr,
    prefix: u8,
) -> Result<(), SysError> {
    handle
        .address()
        .add(index, address.into(), prefix)
        .replace()
        .execute()
        .await
        .map_err(netlink_fail(format!("cannot give {device} the address {address}/{prefix}")))
}

/// Adds (or replaces) the route `route`, for `what` to say when it cannot.
async fn replace_route(
    handle: &rtnetlink::Handle,
    route: rtnetlink::packet_route::route::RouteMessage,
    what: &'static str,
) -> Result<(), SysError> {
    handle.route().add(route).replace().execute().await.map_err(netlink_fail(what))
}

/// Lets the node route IPv6 packets that arrive on the bridge (pods' traffic to Services on
/// other pods, DNAT-ed back out of it): the bridge's own `force_forwarding` where the kernel
/// has it (6.17 and later), else forwarding on every interface, as IPv4 has it.
fn forward_ipv6(bridge: &str) -> Result<(), SysError> {
    if ipv6_setting(bridge, "force_forwarding", "1").is_ok() {
        return Ok(());
    }
    ipv6_setting("all", "forwarding", "1")
}

/// Attaches the network namespace pinned at `netns` to the bridge: a veth pair whose pod
/// end is `eth0` with the pod's address and a default route through the bridge. Makes the
/// bridge first if it is missing. Sends nothing off the node: no forwarding or NAT is set.
pub fn attach_pod(netns: &Path, link: &PodLink) -> Result<(), SysError> {
    let ns_file =
        fs::File::open(netns).map_err(io_fail(format!("cannot open {}", netns.display())))?;
    let host = link.clone();
    block_on_netlink(|handle| async move {
        let bridge = match link_index(&handle, &host.bridge).await? {
            Some(index) => index,
            None => {
                handle
                    .link()
                    .add(rtnetlink::LinkBridge::new(&host.bridge).build())
                    .execute()
                    .await
                    .or_else(|e| match &e {
                        rtnetlink::Error::NetlinkError(m) if m.raw_code() == -nix::libc::EEXIST => {
                            Ok(())
                        }
                        _ => Err(e),
                    })
                    .map_err(netlink_fail(format!("cannot create bridge {}", host.bridge)))?;
                let index = link_index(&handle, &host.bridge).await?.ok_or_else(|| SysError {
                    what: format!("bridge {} vanished", host.bridge),
                    source: std::io::Error::other("gone"),
                })?;
                handle
                    .address()
                    .add(index, host.gateway.into(), host.prefix)
                    .replace()
                    .execute()
                    .await
                    .map_err(netlink_fail("cannot address the bridge"))?;
                if let Some(v6) = host.v6 {
                    ipv6_setting(&host.bridge, "accept_dad", "0")?;
                    add_ipv6(&handle, &host.bridge, index, v6.gateway, v6.prefix).await?;
                    forward_ipv6(&host.bridge)?;
                }
                index
            }
        };
        pin_bridge_address(&handle, &host.bridge, bridge).await?;
        set_up(&handle, &host.bridge).await?;
        if let Some(stale) = link_index(&handle, &host.host_veth).await? {
            let _ = handle.link().del(stale).execute().await;
        }
        // The pair is made with its pod end already in the pod's namespace and named eth0:
        // moving a device between namespaces afterwards waits for RCU grace periods in the
        // kernel, 15 to 25 ms, most of a pod's sandbox.
        let mac = pod_mac(host.address);
        let pod_end = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkUnspec>::default()
            .name("eth0".into())
            .address(mac.to_vec())
            .setns_by_fd(ns_file.as_raw_fd())
            .build();
        let pair = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(
            InfoKind::Veth,
        )
        .name(host.host_veth.clone())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(pod_end)))
        .controller(bridge)
        .up()
        .build();
        handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(netlink_fail("cannot create the pod's veth pair"))?;
        // The node's neighbour entry for the address names the new pod's MAC at once (as the
        // gratuitous ARP of CNI's bridge plugin does): an address that an ended pod had still
        // pointed at that pod's MAC, and what the node forwarded to it (Service traffic) was
        // lost until the entry expired, up to half a minute.
        let addresses = std::iter::once(std::net::IpAddr::V4(host.address))
            .chain(host.v6.map(|v6| std::net::IpAddr::V6(v6.address)));
        for address in addresses {
            handle
                .neighbours()
                .add(bridge, address)
                .link_layer_address(&mac)
                .state(rtnetlink::packet_route::neighbour::NeighbourState::Stale)
                .replace()
                .execute()
                .await
                .map_err(netlink_fail(format!(
                    "cannot set the node's neighbour entry for {address}"
                )))?;
        }
        // Hairpin: a pod reaching its own Service gets its packets back through its own
        // bridge port (upstream kubelet's `hairpin-veth` mode), which a bridge refuses
        // unless the port allows it.
        let hairpin = format!("/sys/class/net/{}/brport/hairpin_mode", host.host_veth);
        fs::write(&hairpin, "1").map_err(io_fail(format!("cannot write {hairpin}")))?;
        Ok(())
    })?;
    // The pod's side, from inside its namespace.
    let netns = netns.to_path_buf();
    let pod = link.clone();
    std::thread::spawn(move || -> Result<(), SysError> {
        let file =
            fs::File::open(&netns).map_err(io_fail(format!("cannot open {}", netns.display())))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(fail("cannot enter the pod's network"))?;
        block_on_netlink(|handle| async move {
            let index = link_index(&handle, "eth0").await?.ok_or_else(|| SysError {
                what: "the pod's eth0 is not in its namespace".into(),
                source: std::io::Error::other("gone"),
            })?;
            handle
                .address()
                .add(index, pod.address.into(), pod.prefix)
                .replace()
                .execute()
                .await
                .map_err(netlink_fail("cannot address the pod"))?;
            if pod.v6.is_some() {
                // Before the link is up, so that its link-local address skips detection too.
                ipv6_setting("eth0", "accept_dad", "0")?;
            }
            set_up(&handle, "eth0").await?;
            let route =
                rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().gateway(pod.gateway).build();
            replace_route(&handle, route, "cannot route the pod through the bridge").await?;
            if let Some(v6) = pod.v6 {
                add_ipv6(&handle, "eth0", index, v6.address, v6.prefix).await?;
                let route =
                    rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().gateway(v6.gateway).build();
                replace_route(&handle, route, "cannot route the pod's IPv6 through the bridge")
                    .await?;
            }
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(SysError {
            what: "network thread panicked".into(),
            source: std::io::Error::other("panic"),
        })
    })
}

/// The MAC of a pod's eth0, made from its address as OVN makes its pods' (Docker likewise,
/// under `02:42`): locally administered (`0a:58`), and the same for the same address, so
/// that a neighbour entry left by an ended pod with this address is right for the new one.
fn pod_mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x0a, 0x58, a, b, c, d]
}

/// Removes a pod's host veth (which removes its pair); gone already is fine.
pub fn detach_pod(host_veth: &str) -> Result<(), SysError> {
    let name = host_veth.to_string();
    block_on_netlink(|handle| async move {
        if let Some(index) = link_index(&handle, &name).await? {
            handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(netlink_fail(format!("cannot delete {name}")))?;
        }
        Ok(())
    })
}

/// Connects to `port` on the loopback of the network namespace pinned at `netns` (the
/// node's own when `None`), IPv4 first, then IPv6, as upstream's port-forward does. The
/// connection keeps its namespace; the thread that entered the namespace ends with the call.
pub fn connect_in_network(netns: Option<&Path>, port: u16) -> Result<std::net::TcpStream, String> {
    let dial = move || -> Result<std::net::TcpStream, String> {
        let v4 = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        v4.or_else(|e4| {
            std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).map_err(|e6| {
                format!(
                    "IPv4: dial tcp4 127.0.0.1:{port}: {e4}, IPv6: dial tcp6 [::1]:{port}: {e6}"
                )
            })
        })
    };
    let Some(netns) = netns else { return dial() };
    let file =
        fs::File::open(netns).map_err(|e| format!("cannot open {}: {e}", netns.display()))?;
    let place = netns.display().to_string();
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot enter the network namespace {place}: {e}"))?;
        dial().map_err(|e| {
            format!("failed to connect to localhost:{port} inside namespace {place}: {e}")
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the dialing thread panicked".into()))
}

/// Receives the file descriptor a peer sends over a Unix socket (`SCM_RIGHTS`), as the OCI
/// runtime sends a terminal's master end to its `--console-socket`. `WouldBlock` until the
/// message is there.
pub fn receive_fd(socket: impl std::os::fd::AsFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    rustix::net::recvmsg(
        &socket,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut ancillary,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                received.get_or_insert(fd);
            }
        }
    }
    received.ok_or_else(|| std::io::Error::other("no file descriptor was sent"))
}

/// Sets the size of the terminal whose master end is `fd` (its processes get `SIGWINCH`).
pub fn set_terminal_size(
    fd: impl std::os::fd::AsFd,
    rows: u16,
    columns: u16,
) -> std::io::Result<()> {
    let size =
        rustix::termios::Winsize { ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(fd, size).map_err(std::io::Error::from)
}

/// A new pseudo-terminal of `rows` by `columns`: its master end and its slave end.
pub fn open_terminal(
    rows: u16,
    columns: u16,
) -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    // Close-on-exec: only the process it is handed to (as its stdio) may hold it, or the
    // master never reads the end.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    if rows > 0 && columns > 0 {
        set_terminal_size(&master, rows, columns)?;
    }
    Ok((master, slave))
}
