"""Streams into pods, through the API server to the node agent: `kubectl exec` (with stdin,
with a terminal driven by the test), `attach`, `port-forward`, `cp`, the Python client's
WebSocket exec, the errors upstream gives, and RBAC on the subresources.

kubectl 1.27 speaks SPDY/3.1 for all of them; 1.33 speaks WebSocket (`v5.channel.k8s.io` for
exec and attach, `SPDY/3.1+portforward.k8s.io` tunnelled over WebSocket for port-forward) and
falls back to SPDY only when the upgrade is refused. Pods are bound to the test's own node
(spec.nodeName; no scheduler) and run the busybox test image; traffic stays on loopback and the
node's bridge. Needs what test_agent.py needs: root, runc and busybox-static."""

import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent_node import k, node, ns  # noqa: F401 (fixtures)
from agent_node import IMAGE, NEEDS_AGENT, Node, apply, pod, pod_json, status_of, wait_pod
from conftest import (_LOG_KEY, _PROCS, _PROCS_LOCK, KRUST_BIN, KUBECTL_TIMEOUT, KUBECTL_VERSIONS,
                      Kubectl,
                      assert_status, free_port, rand_suffix, reap, spawn, wait_for)

pytestmark = NEEDS_AGENT



@pytest.fixture(autouse=True)
def _node_log_on_failure(request):
    """As conftest does for `cluster`: a failed test's report gets the server's (and so the
    agent's) log lines written during the test."""
    if "node" in request.fixturenames:
        n = request.getfixturevalue("node")
        request.node.stash[_LOG_KEY] = (n.cluster, n.cluster.log_offset())
    yield


# ---------------------------------------------------------------------------------------------
# helpers


def latest(node):
    """kubectl of the newest version, for setup in tests that are not about kubectl."""
    return Kubectl(KUBECTL_VERSIONS[-1], node.cluster, node.workdir)


def sleeper(name="c", **extra):
    return {"name": name, "image": IMAGE, "command": ["sleep", "3600"], **extra}


def all_running(p):
    statuses = p["status"].get("containerStatuses") or []
    return p["status"].get("phase") == "Running" and statuses and \
        all("running" in s.get("state", {}) for s in statuses)


def all_ready(p):
    statuses = p["status"].get("containerStatuses") or []
    return p["status"].get("phase") == "Running" and statuses and all(s["ready"] for s in statuses)


def run_bytes(k, *args, input=b"", timeout=KUBECTL_TIMEOUT):
    """Runs kubectl with binary stdin/stdout; returns the CompletedProcess (bytes)."""
    try:
        return subprocess.run(k.argv(args), input=input, capture_output=True, timeout=timeout,
                              env=k.env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kubectl {' '.join(map(str, args))} timed out after {timeout}s; "
                             f"stderr={e.stderr!r}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remote_sha256(k, ns, name, path, container=None):
    args = ["exec", name, "-n", ns] + (["-c", container] if container else []) + \
        ["--", "sha256sum", path]
    return k(*args, timeout=120).split()[0]


class Output:
    """What a process prints, gathered by a thread; `expect` waits for a pattern in what came
    after the previous match."""

    def __init__(self, read):
        self._buf = bytearray()
        self._pos = 0
        self._ended = False
        self._cv = threading.Condition()
        self._pump_thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._pump_thread.start()

    def _pump(self, read):
        while True:
            try:
                chunk = read()
            except (OSError, ValueError):  # EIO: the pty's other side is closed
                chunk = b""
            with self._cv:
                if not chunk:
                    self._ended = True
                    self._cv.notify_all()
                    return
                self._buf += chunk
                self._cv.notify_all()

    def text(self) -> str:
        with self._cv:
            return self._buf.decode(errors="replace")

    def expect(self, pattern: str, timeout=30.0):
        """Waits for `pattern` (a regex) in the output after the last match; returns the match."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                m = rx.search(self._buf, self._pos)
                if m:
                    self._pos = m.end()
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self._ended:
                    why = "the output ended" if self._ended else f"{timeout}s passed"
                    raise AssertionError(
                        f"{why} without {pattern!r}; output after the last match: "
                        f"{bytes(self._buf[self._pos:])[-3000:]!r}{self._extra()}")
                self._cv.wait(min(left, 0.5))

    def _extra(self) -> str:
        return ""

    def _join(self):
        self._pump_thread.join(timeout=5)


def _set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_terminal():
    """preexec_fn (after setsid): the pty on fd 0 becomes the child's controlling terminal, so
    that the kernel signals it on a window change, as a shell does for kubectl."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal(Output):
    """kubectl on a pseudo-terminal the test drives: it types, resizes the window and reads
    the screen."""

    def __init__(self, k, *args, rows=24, cols=80):
        master, slave = os.openpty()
        _set_winsize(slave, rows, cols)
        try:
            self.proc = subprocess.Popen(
                k.argv(args), stdin=slave, stdout=slave, stderr=slave, env=k.env(),
                start_new_session=True, preexec_fn=_take_controlling_terminal, close_fds=True)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        with _PROCS_LOCK:
            _PROCS.append(self.proc)  # killed at exit whatever happens
        os.close(slave)
        self.master = master
        self.args = args
        super().__init__(lambda: os.read(master, 65536))

    def type(self, text: str):
        os.write(self.master, text.encode())

    def ask(self, line: str, pattern: str, timeout=60.0, every=5.0):
        """Types `line` and Enter until `pattern` shows up (the first lines may reach a shell
        that is not reading yet, or come before a resize has arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            self.type(line + "\r")
            try:
                return self.expect(pattern, timeout=min(every, max(0.1, deadline - time.monotonic())))
            except AssertionError:
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    raise

    def resize(self, rows, cols):
        """Changes the window size as a terminal emulator does; the kernel sends SIGWINCH to
        kubectl (its foreground process group), and so does the test, to be sure."""
        _set_winsize(self.master, rows, cols)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGWINCH)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kubectl {' '.join(map(str, self.args))} still runs after "
                                 f"{timeout}s; screen: {self.text()[-3000:]!r}") from None

    def close(self):
        reap(self.proc, signal.SIGKILL)
        self._join()
        try:
            os.close(self.master)
        except OSError:
            pass


class Piped(Output):
    """kubectl with a pipe on its stdin (kept open until the test closes it), its stdout
    gathered and its stderr in a file."""

    def __init__(self, k, *args):
        self.stderr_path = k.workdir / f"piped-{rand_suffix(8)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.args = args
        self.proc = spawn(k.argv(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=self._stderr, env=k.env())
        super().__init__(lambda: self.proc.stdout.read1(65536))

    def send(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def _extra(self):
        return f"; stderr: {self.stderr()[-2000:]!r}"

    def close(self):
        reap(self.proc, signal.SIGKILL)
        self._join()
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(port, path="/index.html", timeout=60):
    with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        assert r.status == 200, r.status
        return r.read()


def recv_exact(sock, n) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(1 << 16, n - len(out)))
        if not chunk:
            raise AssertionError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def port_forward(k, ns, target, *mappings):
    """`kubectl port-forward` in the background, once it listens on every local port."""
    fw = k.background("port-forward", target, "-n", ns, "--address", "127.0.0.1", *mappings)
    try:
        for m in mappings:
            local, remote = m.split(":")
            fw.expect(rf"^Forwarding from 127\.0\.0\.1:{local} -> {remote}$", timeout=60)
    except BaseException:
        fw.stop()
        raise
    return fw


BIG = 20 << 20  # bytes of /www/big in web pods


def web_pod(name, ns, node, echo=False):
    """httpd on 8080 serving /www/index.html ("hello") and /www/big (20 MiB of random bytes);
    with `echo`, a second container echoing back what it gets on 9090."""
    containers = [{
        "name": "web", "image": IMAGE,
        "command": ["sh", "-c", f"echo hello > /www/index.html && head -c {BIG} /dev/urandom > /www/big "
                                "&& exec httpd -f -p 8080 -h /www"],
        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }]
    if echo:
        containers.append({
            "name": "echo", "image": IMAGE, "command": ["nc", "-ll", "-p", "9090", "-e", "cat"],
            "readinessProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 1},
        })
    return pod(name, ns, node, containers, volumes=[{"name": "www", "emptyDir": {}}])


# ---------------------------------------------------------------------------------------------
# exec


def test_exec_returns_stdout_stderr_and_the_exit_code(node, k, ns):
    apply(k, pod("box", ns, node, [sleeper()]))
    wait_pod(k, ns, "box", all_running)
    r = k.run("exec", "box", "-n", ns, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r
    assert r.stdout == "out\n", r
    assert "err" in r.stderr.splitlines(), r
    assert "command terminated with exit code 7" in r.stderr, r
    r = k.run("exec", "box", "-n", ns, "--", "true")
    assert (r.returncode, r.stdout) == (0, ""), r
    # The command is an argv, not a shell line.
    assert k("exec", "box", "-n", ns, "--", "echo", "a  b", "$HOME", "'q'") == "a  b $HOME 'q'\n"
    # A command the image lacks fails the exec, and says which.
    r = k.run("exec", "box", "-n", ns, "--", "/no/such/binary")
    assert r.returncode != 0 and "/no/such/binary" in r.stderr, r
    # The pod goes on.
    p = pod_json(k, ns, "box")
    assert all_running(p) and status_of(p, "c")["restartCount"] == 0


def test_exec_runs_in_the_container_chosen_with_c(node, k, ns):
    def container(name, workdir):
        return {"name": name, "image": IMAGE, "workingDir": workdir,
                "env": [{"name": "WHO", "value": f"env-{name}"}],
                "command": ["sh", "-c", f"echo file-{name} > /tmp/who && exec sleep 3600"]}

    apply(k, pod("pair", ns, node, [container("a", "/tmp"), container("b", "/etc")]))
    wait_pod(k, ns, "pair", all_running)
    script = "cat /tmp/who; echo $WHO; pwd; hostname"
    for name, workdir in [("a", "/tmp"), ("b", "/etc")]:
        # Each container has its own root file system, environment and working directory, and
        # shares the pod's hostname.
        wait_for(lambda: k("exec", "pair", "-c", name, "-n", ns, "--", "sh", "-c", script).splitlines()
                 == [f"file-{name}", f"env-{name}", workdir, "pair"], 30, interval=0.5,
                 what=f"exec in container {name}")
    # Without -c, kubectl picks the first container.
    assert k("exec", "pair", "-n", ns, "--", "cat", "/tmp/who") == "file-a\n"


def test_exec_passes_stdin_through(node, k, ns):
    apply(k, pod("box", ns, node, [sleeper()]))
    wait_pod(k, ns, "box", all_running)
    data = bytes(range(256)) * 64 + b"the-end"
    r = run_bytes(k, "exec", "-i", "box", "-n", ns, "--", "cat", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    big = os.urandom(1 << 20)
    r = run_bytes(k, "exec", "-i", "box", "-n", ns, "--", "sha256sum", input=big, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.sha256(big).hexdigest()
    # The end of stdin reaches the command, which then exits with its own code.
    r = run_bytes(k, "exec", "-i", "box", "-n", ns, "--", "sh", "-c", "read l; echo got-$l; cat; exit 4",
                  input=b"first\nrest\n")
    assert (r.returncode, r.stdout) == (4, b"got-first\nrest\n"), r
    # Without -i the command gets no stdin at all: cat ends at once.
    r = run_bytes(k, "exec", "box", "-n", ns, "--", "cat", input=b"not sent")
    assert (r.returncode, r.stdout) == (0, b""), r


def test_exec_with_a_terminal_follows_its_size_and_ctrl_c(node, k, ns):
    apply(k, pod("shell", ns, node, [sleeper()]))
    wait_pod(k, ns, "shell", all_running)
    term = Terminal(k, "exec", "-it", "shell", "-n", ns, "--", "sh", rows=33, cols=111)
    try:
        term.ask("echo ready-$((20+1))", r"ready-21")
        term.ask("tty", r"/dev/pts/\d+")
        term.ask("stty size", r"\b33 111\b")
        term.resize(40, 100)
        term.ask("stty size", r"\b40 100\b", timeout=30)
        # Ctrl-C reaches the remote terminal, which interrupts its foreground job; kubectl
        # itself (its terminal in raw mode) does not stop.
        term.type("sleep 100\r")
        time.sleep(2)
        started = time.monotonic()
        for attempt in range(5):
            term.type("\x03")
            time.sleep(0.5)
            term.type("echo back-$((1+1))\r")
            try:
                term.expect(r"back-2", timeout=8)
                break
            except AssertionError:
                if attempt == 4:
                    raise
        assert time.monotonic() - started < 60  # long before the sleep would have ended
        assert term.proc.poll() is None
        term.type("exit 3\r")
        assert term.wait(60) == 3
    finally:
        term.close()
    assert all_running(pod_json(k, ns, "shell"))


# ---------------------------------------------------------------------------------------------
# attach


def test_attach_with_a_terminal_and_detach(node, k, ns):
    apply(k, pod("tty", ns, node, [{"name": "c", "image": IMAGE, "command": ["sh"],
                                    "stdin": True, "tty": True}]))
    wait_pod(k, ns, "tty", all_running)
    term = Terminal(k, "attach", "-it", "tty", "-n", ns, rows=30, cols=100)
    try:
        term.ask("echo attached-$((2+3))", r"attached-5")
        term.ask("M=still-$((5+5)); echo set-$M", r"set-still-10")
    finally:
        term.close()  # kubectl dies: the session ends without an exit
    time.sleep(3)
    p = pod_json(k, ns, "tty")
    assert all_running(p) and status_of(p, "c")["restartCount"] == 0, p["status"]
    # Attaching again finds the same shell.
    term = Terminal(k, "attach", "-it", "tty", "-n", ns, rows=30, cols=100)
    try:
        term.ask("echo $M-here", r"still-10-here")
    finally:
        term.close()
    assert status_of(pod_json(k, ns, "tty"), "c")["restartCount"] == 0


def test_attach_to_stdin_without_a_terminal(node, k, ns):
    apply(k, pod("reader", ns, node, [{"name": "c", "image": IMAGE, "stdin": True,
                                       "command": ["sh", "-c", "while read l; do echo got-$l; done"]}]))
    wait_pod(k, ns, "reader", all_running)
    att = Piped(k, "attach", "-i", "reader", "-n", ns)
    try:
        att.send(b"x\n")
        att.expect(r"got-x", timeout=60)
        att.send(b"y\n")
        att.expect(r"got-y", timeout=30)
    finally:
        att.close()
    # What the container prints goes to its log too.
    wait_for(lambda: k("logs", "reader", "-n", ns).splitlines()[:2] == ["got-x", "got-y"], 20,
             interval=0.5, what="the attached output in the log")
    # The client left; the container's stdin stays open (stdinOnce is false) for the next one.
    time.sleep(2)
    p = pod_json(k, ns, "reader")
    assert all_running(p) and status_of(p, "c")["restartCount"] == 0, p["status"]
    att = Piped(k, "attach", "-i", "reader", "-n", ns)
    try:
        att.send(b"z\n")
        att.expect(r"got-z", timeout=60)
    finally:
        att.close()


# ---------------------------------------------------------------------------------------------
# port-forward


def test_port_forward_carries_parallel_and_large_transfers_on_two_ports(node, k, ns):
    apply(k, web_pod("web", ns, node, echo=True))
    wait_pod(k, ns, "web", all_ready, timeout=90, what="both servers ready")
    web, echo = free_port(), free_port()
    fw = port_forward(k, ns, "pod/web", f"{web}:8080", f"{echo}:9090")
    try:
        assert fetch(web) == b"hello\n"
        # Many connections at once through one forward, each its own pair of streams.
        with ThreadPoolExecutor(max_workers=100) as pool:
            try:
                bodies = list(pool.map(lambda _: fetch(web, timeout=120), range(100)))
            except Exception as e:
                # kubectl says why it dropped a connection (seen once under a loaded machine).
                raise AssertionError(f"{e!r}; kubectl port-forward: {fw.stderr()}") from e
        assert bodies == [b"hello\n"] * 100
        big = fetch(web, "/big", timeout=300)
        assert len(big) == BIG
        assert hashlib.sha256(big).hexdigest() == remote_sha256(k, ns, "web", "/www/big", "web")
        # The second port, both ways, with more than a window of data in flight.
        with socket.create_connection(("127.0.0.1", echo), timeout=60) as s:
            s.sendall(b"ping-9090\n")
            assert recv_exact(s, 10) == b"ping-9090\n"
            payload = os.urandom(1 << 20)
            sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
            sender.start()
            assert recv_exact(s, len(payload)) == payload
            sender.join(timeout=60)
        assert fetch(web) == b"hello\n"
        assert fw.proc.poll() is None, fw.stderr()
    finally:
        fw.stop()


def test_port_forward_to_a_service_and_a_deployment(node, k, ns):
    # No scheduler yet: the template names the node.
    template = web_pod("x", ns, node)
    template["metadata"] = {"labels": {"app": "fwd"}}
    apply(k, {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "fwd", "namespace": ns},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fwd"}},
                       "template": {"metadata": template["metadata"], "spec": template["spec"]}}})
    apply(k, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fwd", "namespace": ns},
              "spec": {"selector": {"app": "fwd"},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    wait_for(lambda: any(all_ready(p) for p in k.json("get", "pods", "-n", ns, "-l", "app=fwd")["items"]),
             120, interval=0.5, what="the deployment's pod ready")
    # kubectl finds a pod of each, and the service's port is its target port.
    for target, mapping in [("svc/fwd", "80"), ("deploy/fwd", "8080")]:
        local = free_port()
        fw = k.background("port-forward", target, "-n", ns, "--address", "127.0.0.1",
                          f"{local}:{mapping}")
        try:
            fw.expect(rf"^Forwarding from 127\.0\.0\.1:{local} -> 8080$", timeout=60)
            assert fetch(local) == b"hello\n"
        finally:
            fw.stop()


def test_port_forward_to_a_closed_port_ends_only_that_forward(node, k, ns):
    """Nothing listens on 7777: the agent reports the refused connection on the error stream,
    kubectl closes the local connection and, as upstream kubectl has done since 1.23, gives up
    that forward ("lost connection to pod"). Another forward to the same pod is not disturbed."""
    apply(k, web_pod("web", ns, node))
    wait_pod(k, ns, "web", all_ready, timeout=90, what="the server ready")
    good, closed = free_port(), free_port()
    fw = port_forward(k, ns, "pod/web", f"{good}:8080")
    try:
        bad = port_forward(k, ns, "pod/web", f"{closed}:7777")
        try:
            with socket.create_connection(("127.0.0.1", closed), timeout=60) as s:
                try:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = s.recv(1024)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
            assert data == b"", data
            assert bad.wait(60) != 0
            err = bad.stderr()
            assert re.search(r"(?i)an error occurred forwarding.*7777", err), err
            assert "lost connection to pod" in err, err
        finally:
            bad.stop()
        assert fetch(good) == b"hello\n"
        assert fw.proc.poll() is None, fw.stderr()
    finally:
        fw.stop()


# ---------------------------------------------------------------------------------------------
# cp


def test_cp_a_large_file_into_the_pod_and_back(node, k, ns, tmp_path):
    apply(k, pod("box", ns, node, [sleeper()]))
    wait_pod(k, ns, "box", all_running)
    local, back = tmp_path / "big", tmp_path / "back"
    try:
        h = hashlib.sha256()
        with open(local, "wb") as f:
            for _ in range(100):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        k("cp", str(local), f"{ns}/box:/tmp/big", timeout=300)
        assert remote_sha256(k, ns, "box", "/tmp/big") == h.hexdigest()
        k("cp", f"{ns}/box:/tmp/big", str(back), timeout=300)
        assert back.stat().st_size == 100 << 20
        assert sha256_file(back) == h.hexdigest()
    finally:
        for f in (local, back):
            f.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the Python client (WebSocket, v5.channel.k8s.io offered first, then v4)


def test_python_client_exec_output_and_exit_code(node, ns):
    from kubernetes import client
    from kubernetes.stream import stream

    k = latest(node)
    apply(k, pod("py", ns, node, [sleeper()]))
    wait_pod(k, ns, "py", all_running)
    core = client.CoreV1Api(node.cluster.api_client())
    out = stream(core.connect_get_namespaced_pod_exec, "py", ns,
                 command=["sh", "-c", "echo py-out; echo py-err >&2"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert "py-out" in out and "py-err" in out, out

    resp = stream(core.connect_get_namespaced_pod_exec, "py", ns,
                  command=["sh", "-c", "echo before; echo oops >&2; exit 5"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    try:
        resp.run_forever(timeout=60)
        assert not resp.is_open()
        assert resp.read_stdout(timeout=0) == "before\n"
        assert resp.read_stderr(timeout=0) == "oops\n"
        assert resp.returncode == 5
    finally:
        resp.close()

    resp = stream(core.connect_get_namespaced_pod_exec, "py", ns, command=["true"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    try:
        resp.run_forever(timeout=60)
        assert resp.returncode == 0
    finally:
        resp.close()


def test_python_client_port_forward_over_websocket_channels(node, ns):
    from kubernetes import client
    from kubernetes.stream import portforward

    k = latest(node)
    apply(k, web_pod("pyweb", ns, node))
    wait_pod(k, ns, "pyweb", all_ready, timeout=90, what="the server ready")
    core = client.CoreV1Api(node.cluster.api_client())
    forward = portforward(core.connect_get_namespaced_pod_portforward, "pyweb", ns, ports="8080,7777")
    try:
        sock = forward.socket(8080)
        sock.setblocking(True)
        sock.settimeout(60)
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\nhello\n"), answer[:200]
        # Nothing listens on 7777: its error channel says why.
        wait_for(lambda: forward.error(7777), 30, interval=0.2, what="the closed port's error")
        assert "error forwarding port 7777" in forward.error(7777)
        assert forward.error(8080) is None
    finally:
        forward.close()


def test_python_client_closes_stdin_over_v5(node, ns):
    from kubernetes import client
    from kubernetes.stream import stream, ws_client

    if getattr(ws_client, "V5_CHANNEL_PROTOCOL", None) is None or \
            not hasattr(ws_client.WSClient, "close_channel"):
        pytest.skip("this kubernetes client does not speak v5.channel.k8s.io")
    k = latest(node)
    apply(k, pod("py5", ns, node, [sleeper()]))
    wait_pod(k, ns, "py5", all_running)
    core = client.CoreV1Api(node.cluster.api_client())
    # v5 lets the client close stdin: cat sees the end of its input and exits.
    resp = stream(core.connect_get_namespaced_pod_exec, "py5", ns, command=["cat"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    try:
        assert resp.subprotocol == "v5.channel.k8s.io", resp.subprotocol
        resp.write_stdin("through-v5\n")
        resp.close_channel(0)
        resp.run_forever(timeout=60)
        assert not resp.is_open(), "cat did not end after stdin was closed"
        assert resp.read_stdout(timeout=0) == "through-v5\n"
        assert resp.returncode == 0
    finally:
        resp.close()


# ---------------------------------------------------------------------------------------------
# errors


def test_stream_errors_are_upstreams(node, k, ns):
    apply(k, pod("box", ns, node, [sleeper()]))
    apply(k, pod("done", ns, node, [{"name": "c", "image": IMAGE, "command": ["true"]}],
                 restartPolicy="Never"))
    unbound = pod("unbound", ns, node, [sleeper()], schedulerName="e2e-nobody")
    del unbound["spec"]["nodeName"]
    apply(k, unbound)
    wait_pod(k, ns, "box", all_running)
    wait_pod(k, ns, "done", lambda p: p["status"].get("phase") == "Succeeded")

    # From the server.
    err = k.fail("exec", "box", "-c", "nosuch", "-n", ns, "--", "true")
    assert "container nosuch is not valid for pod box" in err, err
    err = k.fail("exec", "unbound", "-n", ns, "--", "true")
    assert "pod unbound does not have a host assigned" in err, err
    err = k.fail("exec", "nosuch", "-n", ns, "--", "true")
    assert 'pods "nosuch" not found' in err, err
    err = k.fail("port-forward", "pod/nosuch", f"{free_port()}:80", "-n", ns)
    assert 'pods "nosuch" not found' in err, err
    # From kubectl, on the pod's status.
    err = k.fail("exec", "done", "-n", ns, "--", "true")
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in err, err
    err = k.fail("attach", "done", "-n", ns)
    assert "cannot attach a container in a completed pod; current phase is Succeeded" in err, err
    err = k.fail("port-forward", "pod/done", f"{free_port()}:80", "-n", ns)
    assert "unable to forward port because pod is not running. Current status=Succeeded" in err, err

    # The same answers over plain HTTPS; a request that is not an upgrade is refused once the
    # pod and container are known.
    base = f"/api/v1/namespaces/{ns}/pods"
    cases = [
        ("box/exec", {"command": "true", "stdout": "true"}, 400, "Upgrade request required"),
        ("box/attach", {"stdout": "true"}, 400, "Upgrade request required"),
        ("box/portforward", {"ports": "80"}, 400, "Upgrade request required"),
        ("box/exec", {"command": "true", "stdout": "true", "container": "nosuch"}, 400,
         "container nosuch is not valid for pod box"),
        ("unbound/exec", {"command": "true", "stdout": "true"}, 400,
         "pod unbound does not have a host assigned"),
        ("nosuch/exec", {"command": "true", "stdout": "true"}, 404, 'pods "nosuch" not found'),
    ]
    for path, params, code, message in cases:
        st = assert_status(node.cluster.post(f"{base}/{path}", params=params), code)
        assert st["message"] == message, (path, st)


# ---------------------------------------------------------------------------------------------
# RBAC


def test_exec_attach_and_port_forward_need_their_subresource(node, k, ns):
    apply(k, pod("box", ns, node, [sleeper()]))
    wait_pod(k, ns, "box", all_running)
    k("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", ns)
    k("create", "rolebinding", "viewer-reads", "--role=pod-reader", "--user=e2e-viewer", "-n", ns)
    viewer = "--as=e2e-viewer"
    wait_for(lambda: k.run(viewer, "auth", "can-i", "get", "pods", "-n", ns).stdout.strip() == "yes",
             30, interval=0.3, what="the binding to take effect")
    assert "box" in k(viewer, "get", "pod", "box", "-n", ns)

    def refused(subresource, *args):
        err = k.fail(viewer, *args)
        assert (f'pods "box" is forbidden: User "e2e-viewer" cannot create resource '
                f'"pods/{subresource}" in API group "" in the namespace "{ns}"') in err, err

    refused("exec", "exec", "box", "-n", ns, "--", "true")
    refused("attach", "attach", "box", "-n", ns)
    refused("portforward", "port-forward", "pod/box", f"{free_port()}:80", "-n", ns)

    # With `create pods/exec` the same user gets in.
    k("create", "role", "pod-exec", "--verb=create", "--resource=pods/exec", "-n", ns)
    k("create", "rolebinding", "viewer-execs", "--role=pod-exec", "--user=e2e-viewer", "-n", ns)
    wait_for(lambda: k.run(viewer, "auth", "can-i", "create", "pods", "--subresource=exec",
                           "-n", ns).stdout.strip() == "yes",
             30, interval=0.3, what="the second binding to take effect")
    assert k(viewer, "exec", "box", "-n", ns, "--", "echo", "let-in") == "let-in\n"


# ---------------------------------------------------------------------------------------------
# kube-rs (`AttachedProcess`, through `krust bench exec`) and bounded sessions


def test_kube_rs_attached_process_gets_output_and_status(node, ns):
    k = latest(node)
    apply(k, pod("rs", ns, node, [sleeper()]))
    wait_pod(k, ns, "rs", all_running)
    out = subprocess.run(
        [KRUST_BIN, "bench", "exec", "--kubeconfig", str(node.server.kubeconfig),
         "--namespace", ns, "--pod", "rs", "--runs", "2", "--",
         "sh", "-c", "echo rs-out; echo rs-err >&2; exit 3"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["stdout"], result["stderr"]) == ("rs-out\n", "rs-err\n")
    assert result["status"]["reason"] == "NonZeroExitCode"
    assert result["status"]["details"]["causes"][0] == {"reason": "ExitCode", "message": "3"}


def _rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_client_that_stops_reading_does_not_grow_the_servers_memory(node, ns):
    from kubernetes import client
    from kubernetes.stream import stream

    k = latest(node)
    apply(k, pod("flood", ns, node, [sleeper()]))
    wait_pod(k, ns, "flood", all_running)
    core = client.CoreV1Api(node.cluster.api_client())
    before = _rss_kib(node.server.proc.pid)
    # `yes` writes as fast as it can; this client never reads.
    resp = stream(core.connect_get_namespaced_pod_exec, "flood", ns, command=["yes"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    try:
        time.sleep(10)
        grown = _rss_kib(node.server.proc.pid) - before
        assert grown < 64 * 1024, f"the server grew by {grown} KiB for one stalled client"
    finally:
        resp.close()
    # With the client gone, `yes` is gone too (its output has nowhere to go).
    wait_for(lambda: "yes" not in k("exec", "flood", "-n", ns, "--", "ps", "-o", "comm"),
             30, interval=0.5, what="the flooding process to end")
