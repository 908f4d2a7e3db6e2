"""Registry mirrors and per-host settings from the node's `registries.yaml` (k3s' format,
`--private-registry`): an image is pulled from its registry's mirrors in order, then from the
registry itself; a mirror's credentials come from `configs`; `*` stands for every registry
without an entry of its own. The registries the images name are unreachable ports on
127.0.0.1, so a pull succeeds only through a mirror, and nothing leaves the machine.

Needs root, runc, busybox-static and docker-registry, as the other tests of the agent."""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent_node import k, ns  # noqa: F401 (fixtures, on this module's node)
from agent_node import NEEDS_AGENT, Node, apply, pod, status_of, wait_pod
from conftest import KRUST_BIN, rand_suffix, wait_for
from registry import Registry, loopback_certificate

pytestmark = NEEDS_AGENT

USER, PASSWORD = "mirror-user", "mirror:pass"
# Nothing listens on these: the registries images name, and a mirror that is down.
UPSTREAM, OTHER_UPSTREAM, DEAD_MIRROR = "127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11"
WILDCARD_UPSTREAM = "127.0.0.1:12"


@pytest.fixture(scope="module")
def registries():
    """An anonymous mirror and one with basic auth, stopped after the module."""
    open_mirror = Registry().start()
    private_mirror = Registry(users={USER: PASSWORD}).start()
    yield open_mirror, private_mirror
    for reg in (open_mirror, private_mirror):
        print(f"--- docker-registry log ({reg.host})\n{reg.log(40)}")
        reg.stop()


def registries_yaml(open_mirror: Registry, private_mirror: Registry) -> str:
    # JSON is YAML: the file as k3s users write it, but easy to build here.
    return json.dumps({
        "mirrors": {
            UPSTREAM: {"endpoint": [f"http://{open_mirror.host}"]},
            OTHER_UPSTREAM: {"endpoint": [f"http://{DEAD_MIRROR}", f"http://{private_mirror.host}"]},
            "*": {"endpoint": [f"http://{open_mirror.host}/v2"]},
        },
        "configs": {private_mirror.host: {"auth": {"username": USER, "password": PASSWORD}}},
    }, indent=2)


@pytest.fixture(scope="module")
def node(e2e_tmp, registries, request):
    """A node whose `--private-registry` file names the module's mirrors."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{request.module.__name__}-", dir=e2e_tmp))
    config = workdir / "registries.yaml"
    config.write_text(registries_yaml(*registries))
    n = Node(workdir, extra_args=["--private-registry", str(config)])
    yield n
    n.cleanup()


def runs(k, ns, node, name, image, marker) -> dict:
    """Runs `image` (whose Cmd prints `marker`) in pod `name`; returns the running pod."""
    apply(k, pod(name, ns, node, [{"name": "c", "image": image}], terminationGracePeriodSeconds=1))
    last = {}

    def pred(p):
        last["statuses"] = p["status"].get("containerStatuses")
        return p["status"].get("phase") == "Running" and "running" in status_of(p, "c")["state"]

    try:
        p = wait_pod(k, ns, name, pred, timeout=90, what="a running container")
    except AssertionError as e:
        raise AssertionError(f"{e}; statuses: {json.dumps(last.get('statuses'))}") from None
    wait_for(lambda: marker in k("logs", name, "-n", ns), 30, interval=0.3,
             what=f"{marker!r} in the log of {name}")
    return p


def sleeper(marker):
    return ["sh", "-c", f"echo {marker}; sleep 3600"]


def test_an_image_is_pulled_through_its_registrys_mirror(node, k, registries, ns):
    open_mirror, _ = registries
    repo = f"e2e/mirrored-{rand_suffix()}"
    digest = open_mirror.push_image(repo, "1", cmd=sleeper("from-the-mirror"))
    image = f"{UPSTREAM}/{repo}:1"
    p = runs(k, ns, node, "mirrored", image, "from-the-mirror")
    s = status_of(p, "c")
    # As containerd's: the image keeps the name the pod gave it.
    assert s["image"] == image
    assert s["imageID"] == f"{UPSTREAM}/{repo}@{digest}"


def test_a_mirror_that_is_down_is_passed_over_and_configs_give_credentials(node, k, registries,
                                                                             ns):
    _, private_mirror = registries
    repo = f"e2e/private-{rand_suffix()}"
    private_mirror.push_image(repo, "1", cmd=sleeper("from-the-private-mirror"))
    # No pull secret: the credentials are the configuration's, for the mirror's host.
    runs(k, ns, node, "private", f"{OTHER_UPSTREAM}/{repo}:1", "from-the-private-mirror")


def test_the_wildcard_mirror_serves_registries_without_an_entry(node, k, registries, ns):
    open_mirror, _ = registries
    repo = f"e2e/wild-{rand_suffix()}"
    open_mirror.push_image(repo, "1", cmd=sleeper("from-the-wildcard"))
    runs(k, ns, node, "wild", f"{WILDCARD_UPSTREAM}/{repo}:1", "from-the-wildcard")


def test_when_every_endpoint_fails_the_pod_says_why(node, k, registries, ns):
    repo = f"e2e/nowhere-{rand_suffix()}"
    image = f"{OTHER_UPSTREAM}/{repo}:1"

    def pull_error(obj):
        if not isinstance(obj, dict) or obj.get("metadata", {}).get("name") != "nowhere":
            return {}
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return waiting if waiting.get("reason") == "ErrImagePull" else {}

    # ErrImagePull shows until the back-off starts: watched, not polled.
    w = node.cluster.watch(f"/api/v1/namespaces/{ns}/pods", timeout=120)
    assert w.status == 200, w.body
    try:
        apply(k, pod("nowhere", ns, node, [{"name": "c", "image": image}],
                     terminationGracePeriodSeconds=1))
        w.until(lambda ev: pull_error(ev.get("object")), timeout=90)
    finally:
        w.close()
    message = next(m for m in (pull_error(ev.get("object")).get("message") for ev in w.events) if m)
    # The last endpoint tried is the registry itself, which is down.
    assert image in message and f"dial tcp {OTHER_UPSTREAM}" in message, message


def test_krust_image_pull_reads_the_same_file(node, registries, tmp_path):
    open_mirror, private_mirror = registries
    repo = f"e2e/cli-{rand_suffix()}"
    open_mirror.push_image(repo, "1")
    config = tmp_path / "registries.yaml"
    config.write_text(registries_yaml(open_mirror, private_mirror))
    out = subprocess.run([KRUST_BIN, "image", "pull", f"{UPSTREAM}/{repo}:1", "--data-dir",
                          str(tmp_path / "agent"), "--private-registry", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"pulled {UPSTREAM}/{repo}:1" in out.stdout
    # A file that cannot be used is a clear error, not a pull from elsewhere.
    config.write_text("mirrors:\n  docker.io:\n    endpoints: [x]\n")
    bad = subprocess.run([KRUST_BIN, "image", "pull", f"{UPSTREAM}/{repo}:1", "--data-dir",
                          str(tmp_path / "agent"), "--private-registry", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "registries.yaml" in bad.stderr and "endpoints" in bad.stderr, bad.stderr


def test_an_https_mirror_is_trusted_through_its_ca_file(tmp_path):
    """`configs.<mirror>.tls.ca_file` trusts a mirror's own CA; without it the pull fails on
    the certificate; `insecure_skip_verify` skips the check."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key, ca = loopback_certificate(certs)
    with Registry(tls=(cert, key, ca)) as mirror:
        repo = f"e2e/tls-{rand_suffix()}"
        mirror.push_image(repo, "1")
        image = f"{UPSTREAM}/{repo}:1"

        def pull(tls: str):
            config = tmp_path / "registries.yaml"
            config.write_text(f"mirrors:\n  \"{UPSTREAM}\":\n    endpoint: [\"https://{mirror.host}\"]\n"
                              + (f"configs:\n  \"{mirror.host}\":\n    tls:\n{tls}" if tls else ""))
            return subprocess.run([KRUST_BIN, "image", "pull", image, "--data-dir",
                                   str(tmp_path / f"agent-{rand_suffix()}"), "--private-registry",
                                   str(config)], capture_output=True, text=True, timeout=120)

        untrusted = pull("")
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
        trusted = pull(f"      ca_file: {ca}\n")
        assert trusted.returncode == 0, trusted.stderr
        assert f"pulled {image}" in trusted.stdout
        skipped = pull("      insecure_skip_verify: true\n")
        assert skipped.returncode == 0, skipped.stderr
