"""Image pulls from registries, as a Kubernetes user sees them on containerd-backed kubelets:
pods run images pulled by tag or digest (OCI and Docker v2 manifests, this node's entry of a
multi-platform index), a missing tag is ErrImagePull / ImagePullBackOff until it is pushed,
`imagePullPolicy` decides whether a tag is pulled again, and a private registry is reached
with the pod's (or its ServiceAccount's) imagePullSecrets.

Each test runs its own `docker-registry` (registry.py) on 127.0.0.1; needs root, runc and
busybox-static as the other tests of the agent. Repositories whose absence or content a test
relies on have a random name, as the node (and its image store) serves the whole module."""

import json
import os
import pty
import re
import subprocess

import pytest

from agent_node import k, node  # noqa: F401 (fixtures)
from agent_node import NEEDS_AGENT, apply, pod, pod_json, status_of, wait_events, wait_pod
from conftest import KRUST_BIN, rand_suffix, wait_for
from registry import Registry

pytestmark = NEEDS_AGENT

PULL_TIMEOUT = 90  # seconds for a pod to run an image it pulls (pulls retry after 10 s, 20 s, ...)
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")
USER, PASSWORD = "puller", "s3cr3t:with-colon"


def sleeper(marker: str) -> list[str]:
    """A command (or an image's Cmd) that prints `marker` and keeps running."""
    return ["sh", "-c", f"echo {marker}; sleep 3600"]


def start_registry(request, users=None) -> Registry:
    """Starts a registry that is stopped (its temp dir removed) after the test; its log is
    printed then, which pytest shows when the test failed."""
    reg = Registry(users=users).start()

    def stop():
        print(f"--- docker-registry log ({reg.host})\n{reg.log(40)}")
        reg.stop()

    request.addfinalizer(stop)
    return reg


@pytest.fixture
def registry(request):
    """An anonymous registry of this test, on 127.0.0.1."""
    return start_registry(request)


@pytest.fixture
def private_registry(request):
    """A registry of this test with htpasswd basic auth (user USER, password PASSWORD)."""
    return start_registry(request, users={USER: PASSWORD})


def _namespace(node):
    name = f"e2e-image-pull-{rand_suffix()}"
    node.cluster.create_namespace(name)
    return name


@pytest.fixture
def ns(node):
    """A namespace of this test (agent_node's would take an underscore from the module name)."""
    name = _namespace(node)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))


@pytest.fixture
def other_ns(node):
    """A second namespace of this test."""
    name = _namespace(node)
    yield name
    node.cluster.ok("DELETE", f"/api/v1/namespaces/{name}", expect=(200, 202, 404))


def run(k, ns, node, name, image, command=None, pull_secrets=None, **container):
    """Creates a pod of one container `c` running `image` (its own Cmd unless `command`)."""
    c = {"name": "c", "image": image, **container}
    if command is not None:
        c["command"] = command
    spec = {"imagePullSecrets": [{"name": s} for s in pull_secrets]} if pull_secrets else {}
    apply(k, pod(name, ns, node, [c], terminationGracePeriodSeconds=1, **spec))


def waiting_of(obj, name) -> dict:
    """The waiting state of container `c` of pod `name` in a watched object ({} otherwise)."""
    if not isinstance(obj, dict) or obj.get("metadata", {}).get("name") != name:
        return {}
    status = obj.get("status")
    statuses = status.get("containerStatuses", []) if isinstance(status, dict) else []
    return next((s.get("state", {}).get("waiting") or {} for s in statuses if s["name"] == "c"), {})


def running(k, ns, name, timeout=PULL_TIMEOUT) -> dict:
    """Waits until container `c` of pod `name` runs; returns the pod (on timeout, fails with
    the container's last state)."""
    last = {}

    def pred(p):
        last["state"] = p["status"].get("containerStatuses")
        return p["status"].get("phase") == "Running" and "running" in status_of(p, "c")["state"]

    try:
        return wait_pod(k, ns, name, pred, timeout=timeout, what="a running container")
    except AssertionError as e:
        raise AssertionError(f"{e}; container statuses: {json.dumps(last.get('state'))}") from None


def logs(k, ns, name, marker) -> str:
    """The pod's log once it shows `marker`."""
    return wait_for(lambda: (lambda out: out if marker in out else None)(k("logs", name, "-n", ns)),
                    30, interval=0.3, what=f"{marker!r} in the log of {ns}/{name}")


def pull_failure(node, ns, name, create) -> list[dict]:
    """Watches pods of `ns` while `create()` makes pod `name`, until its container waits with
    ErrImagePull or ImagePullBackOff; returns every such waiting state the watch saw."""
    w = node.cluster.watch(f"/api/v1/namespaces/{ns}/pods", timeout=PULL_TIMEOUT + 30)
    assert w.status == 200, w.body
    try:
        create()
        w.until(lambda ev: waiting_of(ev.get("object"), name).get("reason") in PULL_FAILURES,
                timeout=PULL_TIMEOUT)
    finally:
        w.close()
    states = [waiting_of(ev.get("object"), name) for ev in w.events]
    return [s for s in states if s.get("reason") in PULL_FAILURES]


def assert_pull_failure_messages(states, image, cause):
    """ErrImagePull's message gives the cause (regex `cause`, any case), ImagePullBackOff's
    names the image (`Back-off pulling image "..."`)."""
    assert states
    for s in states:
        if s["reason"] == "ErrImagePull":
            assert re.search(cause, s.get("message", ""), re.I), s
        else:
            assert image in s.get("message", ""), s


# ---------------------------------------------------------------------------------------------


def test_a_pod_runs_an_image_pulled_by_tag(node, k, registry, ns):
    digest = registry.push_image("e2e/busybox", "1")
    image = f"{registry.host}/e2e/busybox:1"
    run(k, ns, node, "tagged", image, command=sleeper("pulled-by-tag"))
    p = running(k, ns, "tagged")
    assert logs(k, ns, "tagged", "pulled-by-tag").strip() == "pulled-by-tag"
    s = status_of(p, "c")
    assert s["image"] == image
    assert s["imageID"] == f"{registry.host}/e2e/busybox@{digest}"
    # The node lists the image by its tag and its repository digest.
    wait_for(lambda: any(image in i["names"] and s["imageID"] in i["names"]
                         for i in k.json("get", "node", node.name)["status"].get("images", [])),
             60, interval=1, what="the pulled image in the node's status")
    # The kubelet's events, as `kubectl describe pod` shows them.
    events = wait_events(k, ns, "tagged", "Pulling", "Pulled", "Created", "Started")
    messages = {reason: message for reason, message, _ in events}
    assert messages["Pulling"] == f'Pulling image "{image}"'
    assert re.fullmatch(rf'Successfully pulled image "{re.escape(image)}" in \S+ \(\S+ including '
                        r'waiting\)\. Image size: \d+ bytes\.', messages["Pulled"]), messages["Pulled"]
    assert messages["Created"] == "Created container: c"
    assert messages["Started"] == "Started container c"
    assert {source for _, _, source in events} == {"kubelet"}
    described = k("describe", "pod", "tagged", "-n", ns)
    assert "Successfully pulled image" in described and "Started container c" in described


def test_pulls_by_digest_and_of_docker_v2_manifests(node, k, registry, ns):
    repo = f"e2e/kinds-{rand_suffix()}"
    oci = registry.push_image(repo, "oci", cmd=sleeper("oci-by-digest"), kind="oci")
    docker = registry.push_image(repo, "docker", cmd=sleeper("docker-by-tag"), kind="docker")
    assert oci != docker
    run(k, ns, node, "by-digest", f"{registry.host}/{repo}@{oci}")
    run(k, ns, node, "docker", f"{registry.host}/{repo}:docker")
    # The image's own Cmd runs: its config came with it.
    for name, marker, digest in [("by-digest", "oci-by-digest", oci),
                                 ("docker", "docker-by-tag", docker)]:
        p = running(k, ns, name)
        assert logs(k, ns, name, marker).strip() == marker
        assert status_of(p, "c")["imageID"] == f"{registry.host}/{repo}@{digest}"


def test_a_multi_platform_image_runs_the_nodes_platform(node, k, registry, ns):
    repo = f"e2e/multi-{rand_suffix()}"
    index, _manifests = registry.push_index(repo, "1", [("arm64", sleeper("arm64-config-ran")),
                                                       ("amd64", sleeper("amd64-config-ran"))])
    run(k, ns, node, "multi", f"{registry.host}/{repo}:1")
    p = running(k, ns, "multi")
    assert logs(k, ns, "multi", "amd64-config-ran").strip() == "amd64-config-ran"
    # As containerd's, the image's repository digest is the one its tag names: the index's.
    assert status_of(p, "c")["imageID"] == f"{registry.host}/{repo}@{index}"


def test_a_missing_tag_backs_off_until_it_is_pushed(node, k, registry, ns):
    repo = f"e2e/later-{rand_suffix()}"
    registry.push_image(repo, "other")  # the repository exists, the tag does not
    image = f"{registry.host}/{repo}:later"
    states = pull_failure(node, ns, "later", lambda: run(k, ns, node, "later", image))
    assert_pull_failure_messages(states, image, "not found")
    assert pod_json(k, ns, "later")["status"]["phase"] == "Pending"
    events = wait_events(k, ns, "later", "Pulling", "Failed")
    failed = [message for reason, message, _ in events if reason == "Failed"]
    assert any(m.startswith(f'Failed to pull image "{image}": ') and "not found" in m for m in failed), failed
    assert "Error: ErrImagePull" in failed
    # The agent retries (after a back-off) and runs the tag once it is there.
    digest = registry.push_image(repo, "later", cmd=sleeper("pushed-later"))
    p = running(k, ns, "later", timeout=PULL_TIMEOUT)
    assert logs(k, ns, "later", "pushed-later").strip() == "pushed-later"
    assert status_of(p, "c")["imageID"] == f"{registry.host}/{repo}@{digest}"


def test_image_pull_policy_decides_whether_a_tag_is_pulled_again(node, k, registry, ns):
    repo = f"e2e/policy-{rand_suffix()}"
    image = f"{registry.host}/{repo}:2"
    one = registry.push_image(repo, "2", cmd=sleeper("one"))
    run(k, ns, node, "first", image, imagePullPolicy="IfNotPresent")
    assert status_of(running(k, ns, "first"), "c")["imageID"] == f"{registry.host}/{repo}@{one}"
    assert logs(k, ns, "first", "one").strip() == "one"

    two = registry.push_image(repo, "2", cmd=sleeper("two"))
    assert two != one
    # IfNotPresent: the node's copy of the tag, though the registry's has moved on.
    run(k, ns, node, "cached", image, imagePullPolicy="IfNotPresent")
    assert status_of(running(k, ns, "cached"), "c")["imageID"] == f"{registry.host}/{repo}@{one}"
    assert logs(k, ns, "cached", "one").strip() == "one"
    # Always: the registry's tag, pulled again.
    run(k, ns, node, "fresh", image, imagePullPolicy="Always")
    assert status_of(running(k, ns, "fresh"), "c")["imageID"] == f"{registry.host}/{repo}@{two}"
    assert logs(k, ns, "fresh", "two").strip() == "two"


def test_a_private_registry_needs_the_pods_or_its_accounts_pull_secret(node, k, private_registry,
                                                                        ns, other_ns):
    reg = private_registry
    repo = f"e2e/private-{rand_suffix()}"
    reg.push_image(repo, "1", cmd=sleeper("with-pod-secret"))
    reg.push_image(repo, "sa", cmd=sleeper("with-account-secret"))
    image = f"{reg.host}/{repo}:1"
    # Without credentials the registry refuses the pull.
    states = pull_failure(node, ns, "anonymous", lambda: run(k, ns, node, "anonymous", image))
    assert_pull_failure_messages(states, image, r"unauthorized|401")
    k("delete", "pod", "anonymous", "-n", ns, "--wait=false")  # before the node has the image

    def pull_secret(namespace):
        k("create", "secret", "docker-registry", "reg", "-n", namespace, f"--docker-server={reg.host}",
          f"--docker-username={USER}", f"--docker-password={PASSWORD}")

    # The pod's imagePullSecrets.
    pull_secret(ns)
    run(k, ns, node, "with-secret", image, pull_secrets=["reg"])
    running(k, ns, "with-secret")
    assert logs(k, ns, "with-secret", "with-pod-secret").strip() == "with-pod-secret"

    # The default ServiceAccount's imagePullSecrets, which admission copies to the pod (an
    # image of its own: the node has the other one now).
    pull_secret(other_ns)
    k("patch", "serviceaccount", "default", "-n", other_ns, "-p",
      json.dumps({"imagePullSecrets": [{"name": "reg"}]}))
    run(k, other_ns, node, "from-account", f"{reg.host}/{repo}:sa")
    assert pod_json(k, other_ns, "from-account")["spec"]["imagePullSecrets"] == [{"name": "reg"}]
    running(k, other_ns, "from-account")
    assert logs(k, other_ns, "from-account", "with-account-secret").strip() == "with-account-secret"


def test_krust_image_pull_draws_its_progress_on_a_terminal(registry, tmp_path):
    """On a terminal, `krust image pull` shows a progress bar (on standard error) that ends
    full; elsewhere it prints only what it pulled."""
    repo = f"e2e/progress-{rand_suffix()}"
    registry.push_image(repo, "1")
    image = f"{registry.host}/{repo}:1"
    master, terminal = pty.openpty()
    proc = subprocess.Popen([KRUST_BIN, "image", "pull", image, "--data-dir", str(tmp_path / "a")],
                            stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, drawn
    assert f"pulled {image}" in proc.stdout.read().decode()
    last = drawn.decode().replace("\r\n", "\n").split("\r")[-1]
    assert re.search(rf"{re.escape(image)} \[=+\] 100% [\d.]+/[\d.]+ MB", last), drawn
    plain = subprocess.run([KRUST_BIN, "image", "pull", image, "--data-dir", str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "%" not in plain.stderr, plain.stderr
