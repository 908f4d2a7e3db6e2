"""Seccomp profiles as the kubelet and containerd apply them: `RuntimeDefault` (containerd's
default profile: the kernel reports the filter as `Seccomp: 2` in /proc/self/status, and
`unshare(CLONE_NEWUSER)`, which needs no capability, fails with EPERM without CAP_SYS_ADMIN),
`Unconfined` and no profile at all (no filter: `Seccomp: 0`, the same call succeeds), the
container's profile winning over the pod's, `Localhost` profiles read from the agent's
`<data-dir>/seccomp` (a name leaving it is a CreateContainerConfigError, a missing file a
CreateContainerError), and `--seccomp-default`, which makes RuntimeDefault what a pod that
asks for nothing gets (privileged containers run unfiltered; checked only on hosts that can
grant them every capability).

Needs what test_agent.py needs: root, runc and busybox-static."""

import json
import tempfile
from pathlib import Path

import pytest

from agent_node import k, node, ns  # noqa: F401 (fixtures)
from agent_node import IMAGE, NEEDS_AGENT, Node, apply, pod, status_of, wait_pod
from conftest import KUBECTL_VERSIONS, Kubectl

pytestmark = NEEDS_AGENT

# What each container reports: the kernel's seccomp mode, then whether a user namespace could
# be made (the default profile refuses unshare without CAP_SYS_ADMIN; nothing else does).
PROBE = ("grep Seccomp: /proc/self/status; "
         "unshare -U true 2>/dev/null; echo unshare=$?; "
         "mkdir /tmp/made 2>/dev/null; echo mkdir=$?")

RUNTIME_DEFAULT = {"type": "RuntimeDefault"}
UNCONFINED = {"type": "Unconfined"}


def probe(name, seccomp=None, **security):
    """A container that runs PROBE, with `seccomp` as its own profile when given."""
    context = dict(security)
    if seccomp is not None:
        context["seccompProfile"] = seccomp
    c = {"name": name, "image": IMAGE, "command": ["sh", "-c", PROBE]}
    if context:
        c["securityContext"] = context
    return c


def probe_pod(name, ns, node, containers, pod_seccomp=None):
    spec = {"restartPolicy": "Never"}
    if pod_seccomp is not None:
        spec["securityContext"] = {"seccompProfile": pod_seccomp}
    return pod(name, ns, node, containers, **spec)


def reports(k, ns, name):
    """What each container of pod `name` reported, by container: {"Seccomp": .., "unshare":
    .., "mkdir": ..} once the pod has ended."""
    p = wait_pod(k, ns, name, lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                 what="the probes' end")
    assert p["status"]["phase"] == "Succeeded", p["status"]
    found = {}
    for s in p["status"]["containerStatuses"]:
        log = k("logs", name, "-n", ns, "-c", s["name"])
        fields = {}
        for line in log.splitlines():
            key, sep, value = line.replace(":\t", "=").partition("=")
            if sep:
                fields[key.strip()] = value.strip()
        found[s["name"]] = fields
    return found


def waiting_reason(k, ns, name):
    def waiting(p):
        state = status_of(p, "c").get("state", {}) if p["status"].get("containerStatuses") else {}
        return "waiting" in state and state["waiting"]["reason"] != "ContainerCreating"
    p = wait_pod(k, ns, name, waiting, what="a waiting reason")
    return status_of(p, "c")["state"]["waiting"]


def test_runtime_default_filters_and_the_containers_profile_wins(node, k, ns):
    apply(k, probe_pod("mixed", ns, node, [
        probe("inherits"),                         # the pod's RuntimeDefault
        probe("unconfined", UNCONFINED),           # its own wins over the pod's
        probe("admin", capabilities={"add": ["SYS_ADMIN"]}),  # the profile follows capabilities
    ], pod_seccomp=RUNTIME_DEFAULT))
    apply(k, probe_pod("own", ns, node, [probe("c", RUNTIME_DEFAULT)], pod_seccomp=UNCONFINED))
    apply(k, probe_pod("unset", ns, node, [probe("c")]))

    mixed = reports(k, ns, "mixed")
    assert mixed["inherits"] == {"Seccomp": "2", "unshare": "1", "mkdir": "0"}
    assert mixed["unconfined"] == {"Seccomp": "0", "unshare": "0", "mkdir": "0"}
    assert mixed["admin"] == {"Seccomp": "2", "unshare": "0", "mkdir": "0"}
    assert reports(k, ns, "own")["c"] == {"Seccomp": "2", "unshare": "1", "mkdir": "0"}
    # No profile anywhere: the kubelet's default without --seccomp-default, no filter.
    assert reports(k, ns, "unset")["c"] == {"Seccomp": "0", "unshare": "0", "mkdir": "0"}


def test_a_process_exec_d_into_a_container_gets_its_filter(node, k, ns):
    """As runc's `exec`: the container's filter holds for processes started in it later."""
    sleeper = {"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}
    apply(k, pod("filtered", ns, node, [dict(sleeper, securityContext={"seccompProfile": RUNTIME_DEFAULT})]))
    apply(k, pod("open", ns, node, [sleeper]))
    for name in ("filtered", "open"):
        wait_pod(k, ns, name, lambda p: p["status"].get("phase") == "Running")

    def exec_report(name):
        out = k("exec", name, "-n", ns, "--", "sh", "-c", PROBE)
        return dict(line.replace(":\t", "=").split("=", 1) for line in out.splitlines())
    assert exec_report("filtered") == {"Seccomp": "2", "unshare": "1", "mkdir": "0"}
    assert exec_report("open") == {"Seccomp": "0", "unshare": "0", "mkdir": "0"}


def test_localhost_profiles_come_from_the_agents_seccomp_root(node, k, ns):
    root = node.agent_dir / "seccomp"
    (root / "team").mkdir(parents=True, exist_ok=True)
    (root / "team" / "no-mkdir.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    local = {"type": "Localhost", "localhostProfile": "team/no-mkdir.json"}
    apply(k, probe_pod("local", ns, node, [probe("c", local)]))
    assert reports(k, ns, "local")["c"] == {"Seccomp": "2", "unshare": "0", "mkdir": "1"}

    escape = {"type": "Localhost", "localhostProfile": "../../../../etc/passwd"}
    absolute = {"type": "Localhost", "localhostProfile": str(root / "team" / "no-mkdir.json")}
    missing = {"type": "Localhost", "localhostProfile": "team/absent.json"}
    apply(k, probe_pod("escape", ns, node, [probe("c", escape)]))
    apply(k, probe_pod("absolute", ns, node, [probe("c")], pod_seccomp=absolute))
    apply(k, probe_pod("missing", ns, node, [probe("c", missing)]))
    for name in ("escape", "absolute"):
        waiting = waiting_reason(k, ns, name)
        assert waiting["reason"] == "CreateContainerConfigError", waiting
        assert "must be a relative path without '..'" in waiting["message"], waiting
    waiting = waiting_reason(k, ns, "missing")
    assert waiting["reason"] == "CreateContainerError", waiting
    assert "cannot load seccomp profile" in waiting["message"]
    assert "team/absent.json" in waiting["message"]


@pytest.fixture(scope="module")
def strict_node(e2e_tmp):
    """A second node, whose agent runs with --seccomp-default."""
    workdir = Path(tempfile.mkdtemp(prefix="test_seccomp-strict-", dir=e2e_tmp))
    n = Node(workdir, ["--seccomp-default"])
    yield n
    n.cleanup()


def strict_namespace(node, name):
    """kubectl against `node` and a fresh namespace `name` on it."""
    k = Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)
    node.cluster.create_namespace(name)
    return k


def test_seccomp_default_makes_runtime_default_what_pods_get_unasked(strict_node):
    k = strict_namespace(strict_node, "seccomp-default")
    apply(k, probe_pod("strict", "seccomp-default", strict_node, [
        probe("unset"),
        probe("unconfined", UNCONFINED),
    ]))
    found = reports(k, "seccomp-default", "strict")
    assert found["unset"] == {"Seccomp": "2", "unshare": "1", "mkdir": "0"}
    assert found["unconfined"] == {"Seccomp": "0", "unshare": "0", "mkdir": "0"}


def _host_grants_every_capability():
    """Whether runc can give a privileged container every capability (a host that is itself
    a container may lack some in its bounding set)."""
    with open("/proc/self/status") as f:
        bounding = next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd:"))
    every = (1 << 41) - 1  # CAP_CHOWN .. CAP_CHECKPOINT_RESTORE, as the agent grants them
    return bounding & every == every


@pytest.mark.skipif(not _host_grants_every_capability(),
                    reason="this host cannot grant a privileged container every capability")
def test_privileged_containers_run_unfiltered_under_seccomp_default(strict_node):
    k = strict_namespace(strict_node, "seccomp-privileged")
    apply(k, probe_pod("privileged", "seccomp-privileged", strict_node, [
        probe("c", RUNTIME_DEFAULT, privileged=True),
    ]))
    # As containerd's: no filter for a privileged container, whatever it asks for.
    assert reports(k, "seccomp-privileged", "privileged")["c"] == {
        "Seccomp": "0", "unshare": "0", "mkdir": "0"}
