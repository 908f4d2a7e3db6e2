"""Fixtures for krust end-to-end tests.

A `cluster` is one `krust server` process (plus, for the etcd backend, one etcd process) on a
temp data dir, bound to loopback only. It is module scoped and parametrized over the backends;
every test works in its own namespace (`ns` fixture) so tests stay independent.

Environment knobs:
  KRUST_BIN            path of the krust binary (default /var/cache/krust/target/debug/krust)
  KRUST_E2E_BACKENDS   comma list among embedded,etcd (default both)
  KRUST_E2E_KUBECTL    comma list of kubectl versions (default 1.27,1.33)
  ETCD_BIN             path of etcd (default /usr/bin/etcd)
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import ssl
import string
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

KRUST_BIN = os.environ.get("KRUST_BIN", "/var/cache/krust/target/debug/krust")
ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
KUBECTL_DIR = "/usr/lib/google-cloud-sdk/bin"
BACKENDS = [b for b in os.environ.get("KRUST_E2E_BACKENDS", "embedded,etcd").split(",") if b]
KUBECTL_VERSIONS = [v for v in os.environ.get("KRUST_E2E_KUBECTL", "1.27,1.33").split(",") if v]

READY_TIMEOUT = 60.0  # seconds for a server (re)start to answer /readyz
HTTP_TIMEOUT = 30.0  # seconds for one plain HTTP request
KUBECTL_TIMEOUT = 60.0  # seconds for one kubectl invocation

# ---------------------------------------------------------------------------------------------
# process bookkeeping: everything we start is killed at exit, even on failure or Ctrl-C


_PROCS: list[subprocess.Popen] = []
_PROCS_LOCK = threading.Lock()


def _pdeathsig():
    """preexec_fn: the child gets SIGKILL when the thread that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd, *, pdeathsig=False, **kw) -> subprocess.Popen:
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        start_new_session=True,
        preexec_fn=_pdeathsig if pdeathsig else None,
        **kw,
    )
    with _PROCS_LOCK:
        _PROCS.append(proc)
    return proc


def reap(proc: subprocess.Popen, sig=signal.SIGKILL, timeout=10.0):
    """Signal `proc` (only it, by pid) and wait for it; returns its exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    with _PROCS_LOCK:
        if proc in _PROCS:
            _PROCS.remove(proc)
    return proc.returncode


@atexit.register
def _kill_all():
    with _PROCS_LOCK:
        procs = list(_PROCS)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll `pred` until it returns a truthy value; returns that value or fails."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def tail(path: Path, offset=0, max_lines=200) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    lines = data.splitlines()
    if len(lines) > max_lines:
        lines = [f"... ({len(lines) - max_lines} earlier lines cut)"] + lines[-max_lines:]
    return "\n".join(lines)


def rand_suffix(n=5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


# ---------------------------------------------------------------------------------------------
# etcd


class Etcd:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data_dir = workdir / "etcd-data"
        self.log_path = workdir / "etcd.log"
        self.proc = None
        self.client_port = None
        self.extra_args: list[str] = []  # appended to etcd's command line

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, client_port: int | None = None):
        """Starts etcd, on `client_port` when given (else on a free port)."""
        if not os.path.exists(ETCD_BIN):
            pytest.fail(f"etcd not found at {ETCD_BIN}")
        last = None
        for _attempt in range(3):
            self.client_port, peer = client_port or free_port(), free_port()
            peer_url = f"http://127.0.0.1:{peer}"
            log = open(self.log_path, "ab")
            self.proc = spawn([
                ETCD_BIN, "--name", "e2e", "--data-dir", self.data_dir,
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"e2e={peer_url}", "--initial-cluster-state", "new",
                *self.extra_args,
            ], stdout=log, stderr=log, pdeathsig=True)
            log.close()
            try:
                wait_for(self._healthy, 30, interval=0.1, what="etcd health")
                return
            except AssertionError as e:
                last = e
                reap(self.proc)
                shutil.rmtree(self.data_dir, ignore_errors=True)
        pytest.fail(f"etcd did not start: {last}\n{tail(self.log_path)}")

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"etcd exited with {self.proc.returncode}")
        r = requests.get(self.endpoint + "/health", timeout=2)
        return r.status_code == 200 and r.json().get("health") == "true"

    def _v3(self, path, body):
        r = requests.post(self.endpoint + path, json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def revision(self) -> int:
        key = base64.b64encode(b"\0").decode()
        return int(self._v3("/v3/kv/range", {"key": key, "limit": 1})["header"]["revision"])

    def compact(self, revision: int | None = None):
        rev = revision if revision is not None else self.revision()
        self._v3("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def stop(self):
        if self.proc is not None:
            reap(self.proc, signal.SIGTERM)
            self.proc = None


# ---------------------------------------------------------------------------------------------
# krust server


class Creds:
    """Server URL and TLS material read from a kubeconfig, written to files."""

    def __init__(self, kubeconfig: Path, outdir: Path):
        cfg = yaml.safe_load(kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctxs = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
        ctx = ctxs[ctx_name] if ctx_name in ctxs else cfg["contexts"][0]["context"]
        clusters = {c["name"]: c["cluster"] for c in cfg["clusters"]}
        users = {u["name"]: u["user"] for u in cfg["users"]}
        cl, user = clusters[ctx["cluster"]], users[ctx["user"]]
        self.server = cl["server"].rstrip("/")
        outdir.mkdir(parents=True, exist_ok=True)
        base = kubeconfig.parent

        def material(section, key, fname):
            if section.get(key + "-data"):
                p = outdir / fname
                p.write_bytes(base64.b64decode(section[key + "-data"]))
                return str(p)
            if section.get(key):
                p = Path(section[key])
                return str(p if p.is_absolute() else base / p)
            return None

        self.ca = material(cl, "certificate-authority", "ca.crt")
        self.cert = material(user, "client-certificate", "client.crt")
        self.key = material(user, "client-key", "client.key")
        self.token = user.get("token")

    def session(self, with_client_cert=True) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE and proxies would override verify/loopback
        s.verify = self.ca if self.ca else True
        if with_client_cert and self.cert:
            s.cert = (self.cert, self.key)
        if with_client_cert and self.token:
            s.headers["Authorization"] = f"Bearer {self.token}"
        return s

    def ssl_context(self, with_client_cert=True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if with_client_cert and self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


class KrustServer:
    def __init__(self, workdir: Path, backend: str, etcd: Etcd | None):
        self.workdir = workdir
        self.backend = backend
        self.etcd = etcd
        self.data_dir = workdir / "data"
        self.log_path = workdir / "krust.log"
        self.kubeconfig = self.data_dir / "admin.kubeconfig"
        self.port = free_port()
        self.extra_args: list[str] = []  # appended to the command line on the next start
        self.agent = False  # whether the server runs its node agent (tests of pods opt in)
        self.bind_address = "127.0.0.1"  # 0.0.0.0 for tests of pods reaching the API
        self.scheduler = False  # whether the server runs its scheduler (tests of it opt in)
        self.ingress = False  # whether the server runs its Ingress controller (on ports 80, 443)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.creds: Creds | None = None
        self._http: requests.Session | None = None

    def command(self):
        cmd = [KRUST_BIN, "server", "--data-dir", self.data_dir, "--bind-address", self.bind_address,
               "--port", self.port]
        if self.etcd is not None:
            cmd += ["--datastore-endpoint", self.etcd.endpoint]
        if not self.agent:
            cmd.append("--disable-agent")
        if not self.scheduler:
            cmd.append("--disable-scheduler")
        if not self.ingress:
            cmd.append("--disable-ingress")  # (its ports 80 and 443 are the host's)
        return cmd + list(self.extra_args)

    def start(self, timeout=READY_TIMEOUT):
        if not os.path.exists(KRUST_BIN):
            pytest.fail(f"krust binary not found at {KRUST_BIN} (set KRUST_BIN)")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== e2e: start #{self.starts}: {' '.join(map(str, self.command()))}\n"
                      .encode())
            log.flush()
            env = dict(os.environ, NO_COLOR="1")
            self.proc = spawn(self.command(), stdout=log, stderr=log, pdeathsig=True, env=env)
        self.wait_ready(timeout)

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"krust server exited with {self.proc.returncode} during start\n"
                    f"{tail(self.log_path, max_lines=80)}")
            if self.kubeconfig.exists():
                try:
                    self.creds = Creds(self.kubeconfig, self.workdir / "creds")
                    self._http = self.creds.session()
                    r = self._http.get(self.creds.server + "/readyz", timeout=2)
                    if r.status_code == 200:
                        return
                    last = f"/readyz answered {r.status_code}: {r.text[:200]}"
                except Exception as e:  # noqa: BLE001
                    last = repr(e)
            time.sleep(0.1)
        raise AssertionError(f"krust server not ready after {timeout}s (last: {last})\n"
                             f"{tail(self.log_path, max_lines=80)}")

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Stops the server with `sig`; returns its exit code (negative: killed by a signal).

        A server that ignores SIGTERM for `timeout` seconds is SIGKILLed and the return code is
        None, so that callers can assert on a clean shutdown.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
        reap(proc)
        with open(self.log_path, "ab") as log:
            log.write(f"===== e2e: stopped with signal {int(sig)}, exit code {rc}\n".encode())
        return rc

    def restart(self, sig=signal.SIGTERM):
        """Stops with `sig` and starts again on the same data dir and port; returns the exit
        code of the stopped process."""
        rc = self.stop(sig)
        self.start()
        return rc

    def kill_and_restart(self):
        return self.restart(signal.SIGKILL)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """What tests get: a running server plus clients for it."""

    def __init__(self, server: KrustServer, etcd: Etcd | None):
        self.server = server
        self.etcd = etcd
        self.backend = server.backend
        self.workdir = server.workdir
        self.kubectl_cache = self.workdir / "kubectl-cache"

    # -- plumbing
    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig

    @property
    def creds(self) -> Creds:
        return self.server.creds

    @property
    def url(self) -> str:
        return self.creds.server

    @property
    def http(self) -> requests.Session:
        return self.server._http

    def restart(self, sig=signal.SIGTERM):
        return self.server.restart(sig)

    def kill_and_restart(self):
        return self.server.kill_and_restart()

    def log_offset(self) -> int:
        try:
            return self.server.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    # -- raw REST
    def request(self, method, path, *, body=None, data=None, headers=None, params=None,
                timeout=HTTP_TIMEOUT, session=None):
        s = session or self.http
        h = dict(headers or {})
        if body is not None:
            data = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        h.setdefault("Accept", "application/json")
        try:
            return s.request(method, self.url + path, data=data, headers=h, params=params,
                             timeout=timeout)
        except requests.exceptions.ConnectionError as e:
            # A pooled keep-alive connection the server closed as idle just as it was reused:
            # the request was not read (no answer came at all), so sending it again is safe,
            # as Go's and other HTTP clients do.
            if "Connection aborted" not in str(e):
                raise
            return s.request(method, self.url + path, data=data, headers=h, params=params,
                             timeout=timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, body=None, **kw):
        return self.request("DELETE", path, body=body, **kw)

    def patch(self, path, body, ptype="merge", **kw):
        ctype = {"merge": "application/merge-patch+json",
                 "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[ptype]
        headers = dict(kw.pop("headers", {}) or {})
        headers["Content-Type"] = ctype
        return self.request("PATCH", path, body=body, headers=headers, **kw)

    def ok(self, method, path, expect=(200, 201), **kw) -> dict:
        """Request and return the JSON body, failing unless the status is in `expect`."""
        r = self.request(method, path, **kw)
        assert r.status_code in expect, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        return r.json()

    def watch(self, path, params=None, timeout=120.0) -> "RestWatch":
        p = {"watch": "true"}
        p.update(params or {})
        return RestWatch(self, path, p, timeout)

    def ready(self) -> bool:
        r = self.get("/readyz", timeout=5)
        return r.status_code == 200

    # -- python client
    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # -- namespaces
    def create_namespace(self, name, labels=None):
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}}}
        created = self.ok("POST", "/api/v1/namespaces", body=body, expect=(201,))
        if "--disable-controller-manager" in self.server.extra_args:
            return created
        # As upstream, pods are refused until the namespace's default ServiceAccount exists
        # (the controllers create it right after the namespace): wait for it.
        for what in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
            wait_for(lambda: self.get(f"/api/v1/namespaces/{name}/{what}").status_code == 200,
                     10, what=f"{what} in {name}")
        return created

    def delete_namespace(self, name):
        try:
            self.request("DELETE", f"/api/v1/namespaces/{name}", timeout=10)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


class RestWatch:
    """A watch over raw HTTPS, read line by line in a thread into a queue."""

    END = object()

    def __init__(self, cluster: Cluster, path, params, timeout):
        u = urllib.parse.urlsplit(cluster.url)
        self.conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                                context=cluster.creds.ssl_context())
        target = path + "?" + urllib.parse.urlencode(params)
        self.conn.request("GET", target, headers={"Accept": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.q: queue.Queue = queue.Queue()
        self.events: list[dict] = []  # every event received so far
        self.ended = False
        if self.status != 200:
            self.body = self.resp.read().decode(errors="replace")
            self.conn.close()
            self.ended = True
            return
        self.body = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    self.q.put(json.loads(line))
                except ValueError:
                    self.q.put({"type": "_UNPARSEABLE", "raw": line.decode(errors="replace")})
        except Exception as e:  # noqa: BLE001
            self.q.put({"type": "_READ_ERROR", "error": repr(e)})
        self.q.put(self.END)

    def next(self, timeout=10.0) -> dict | None:
        """The next event, or None when the stream ended; fails after `timeout`."""
        if self.ended and self.q.empty():
            return None
        try:
            ev = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s; so far: "
                                 f"{[summarize(e) for e in self.events]}") from None
        if ev is self.END:
            self.ended = True
            return None
        self.events.append(ev)
        return ev

    def take(self, n, timeout=10.0, skip_bookmarks=True) -> list[dict]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next(timeout=max(0.01, deadline - time.monotonic()))
            assert ev is not None, f"watch ended after {[summarize(e) for e in out]}"
            if skip_bookmarks and ev.get("type") == "BOOKMARK":
                continue
            out.append(ev)
        return out

    def until(self, pred, timeout=10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(timeout=max(0.01, deadline - time.monotonic()))
            assert ev is not None, \
                f"watch ended before the awaited event; got {[summarize(e) for e in self.events]}"
            if pred(ev):
                return ev

    def wait_end(self, timeout=10.0) -> list[dict]:
        """Drains until the stream ends; returns the events read meanwhile."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(timeout=max(0.01, deadline - time.monotonic()))
            if ev is None:
                return got
            got.append(ev)

    def close(self):
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def summarize(ev) -> str:
    if not isinstance(ev, dict):
        return repr(ev)
    o = ev.get("object") or {}
    if o.get("kind") == "Status":
        return f"{ev.get('type')} Status {o.get('code')} {o.get('reason')}: {o.get('message')}"
    md = o.get("metadata") or {}
    return f"{ev.get('type')} {o.get('kind')} {md.get('name')} rv={md.get('resourceVersion')}"


# ---------------------------------------------------------------------------------------------
# kubectl


class KubectlError(AssertionError):
    def __init__(self, args, rc, stdout, stderr):
        super().__init__(f"kubectl {' '.join(args)} exited {rc}\nstdout: {stdout}\nstderr: {stderr}")
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class Kubectl:
    def __init__(self, version: str, cluster: Cluster, workdir: Path):
        self.version = version
        self.binary = os.path.join(KUBECTL_DIR, f"kubectl.{version}")
        self.cluster = cluster
        self.workdir = workdir
        self.home = workdir / f"home-{version}"
        self.home.mkdir(parents=True, exist_ok=True)

    def argv(self, args, kubeconfig=None):
        return [self.binary, "--kubeconfig", str(kubeconfig or self.cluster.kubeconfig),
                "--cache-dir", str(self.cluster.kubectl_cache / self.version), *map(str, args)]

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KUBE") and k not in ("EDITOR", "VISUAL")}
        env["HOME"] = str(self.home)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env.update(extra or {})
        return env

    def run(self, *args, input=None, timeout=KUBECTL_TIMEOUT, env=None, kubeconfig=None):
        """Runs kubectl; returns CompletedProcess (never raises on a non-zero exit)."""
        try:
            return subprocess.run(self.argv(args, kubeconfig), input=input, capture_output=True,
                                  text=True, timeout=timeout, env=self.env(env))
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} timed out after {timeout}s;"
                                 f" stdout={e.stdout!r} stderr={e.stderr!r}") from None

    def __call__(self, *args, input=None, timeout=KUBECTL_TIMEOUT, env=None, kubeconfig=None):
        """Runs kubectl and returns stdout; raises KubectlError (with stderr) on failure."""
        p = self.run(*args, input=input, timeout=timeout, env=env, kubeconfig=kubeconfig)
        if p.returncode != 0:
            raise KubectlError(list(map(str, args)), p.returncode, p.stdout, p.stderr)
        return p.stdout

    def fail(self, *args, input=None, timeout=KUBECTL_TIMEOUT, env=None) -> str:
        """Runs kubectl expecting failure; returns stderr."""
        p = self.run(*args, input=input, timeout=timeout, env=env)
        assert p.returncode != 0, (f"kubectl {' '.join(map(str, args))} should have failed but "
                                   f"printed {p.stdout!r}")
        return p.stderr

    def json(self, *args, **kw):
        return json.loads(self(*args, "-o", "json", **kw))

    def background(self, *args, env=None) -> "Background":
        return Background(self.argv(args), self.env(env), self.workdir)


class Background:
    """A background process whose stdout lines are collected in a queue."""

    def __init__(self, argv, env, workdir: Path):
        self.stderr_path = workdir / f"bg-{rand_suffix(8)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.q: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.q.put(raw.decode(errors="replace").rstrip("\n"))
        self.q.put(None)

    def expect(self, pattern, timeout=15.0) -> str:
        """Waits for a stdout line matching the regex `pattern`; returns it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout}s; lines so far: "
                    f"{self.lines}; stderr: {self.stderr()}") from None
            if line is None:
                self.q.put(None)
                raise AssertionError(f"process exited ({self.proc.wait()}) before a line matching "
                                     f"{pattern!r}; lines: {self.lines}; stderr: {self.stderr()}")
            self.lines.append(line)
            if rx.search(line):
                return line

    def stderr(self):
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"background process still running after {timeout}s; "
                                 f"stdout lines {self.lines}; stderr {self.stderr()}") from None

    def rest_of_stdout(self, timeout=5.0) -> list[str]:
        """After the process ended: remaining stdout lines."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self.q.put(None)
                break
            self.lines.append(line)
            out.append(line)
        return out

    def stop(self):
        reap(self.proc, signal.SIGTERM, timeout=5)
        self._stderr.close()


# ---------------------------------------------------------------------------------------------
# fixtures


def pytest_addoption(parser):
    parser.addoption("--keep-tmp", action="store_true", help="keep the e2e temp dirs")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "host: the test changes state of the whole host (containers, cgroups, links, "
        "nf_tables, ports 80 and 443); such tests run one at a time, the others beside them")


@pytest.fixture(scope="session")
def e2e_tmp(request):
    d = Path(tempfile.mkdtemp(prefix="krust-e2e-"))
    yield d
    if not request.config.getoption("--keep-tmp"):
        shutil.rmtree(d, ignore_errors=True)


def _start_cluster(workdir: Path, backend: str, extra_args=()) -> Cluster:
    workdir.mkdir(parents=True, exist_ok=True)
    etcd = None
    if backend == "etcd":
        etcd = Etcd(workdir)
        etcd.start()
    server = KrustServer(workdir, backend, etcd)
    server.extra_args = list(extra_args)
    try:
        server.start()
    except BaseException:
        server.stop(signal.SIGKILL)
        if etcd:
            etcd.stop()
        raise
    return Cluster(server, etcd)


def _stop_cluster(c: Cluster):
    c.server.stop(signal.SIGTERM, timeout=15)
    if c.etcd is not None:
        c.etcd.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request, e2e_tmp):
    """A running krust server (module scoped), parametrized over the storage backend."""
    mod = request.module.__name__.rsplit(".", 1)[-1]
    workdir = Path(tempfile.mkdtemp(prefix=f"{mod}-{request.param}-", dir=e2e_tmp))
    c = _start_cluster(workdir, request.param)
    yield c
    _stop_cluster(c)


@pytest.fixture(scope="module", params=BACKENDS)
def quiet_cluster(request, e2e_tmp):
    """A running krust server without controllers (module scoped, parametrized over the
    backend), for tests of the API's own semantics on objects that controllers would change
    meanwhile (a Deployment's status, its scale). Its namespaces get no default account."""
    mod = request.module.__name__.rsplit(".", 1)[-1]
    workdir = Path(tempfile.mkdtemp(prefix=f"{mod}-quiet-{request.param}-", dir=e2e_tmp))
    c = _start_cluster(workdir, request.param, ["--disable-controller-manager"])
    yield c
    _stop_cluster(c)


@pytest.fixture(params=KUBECTL_VERSIONS, ids=lambda v: f"kubectl{v}")
def kubectl(request, cluster):
    """kubectl of one version (parametrized) talking to `cluster`."""
    k = Kubectl(request.param, cluster, cluster.workdir)
    if not os.path.exists(k.binary):
        pytest.fail(f"missing {k.binary}")
    return k


def _slug(s: str, n: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:n].strip("-")


@pytest.fixture
def ns_name(request, cluster):
    """A fresh namespace name (not created); whatever has that name is deleted afterwards."""
    name = f"e2e-{_slug(request.node.originalname.removeprefix('test_'), 40)}-{rand_suffix()}"
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def ns(ns_name, cluster):
    """A fresh namespace, created through the REST API."""
    cluster.create_namespace(ns_name)
    return ns_name


@pytest.fixture
def core(cluster):
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def apps(cluster):
    from kubernetes import client

    return client.AppsV1Api(cluster.api_client())


# ---------------------------------------------------------------------------------------------
# server log on failure


@pytest.fixture(autouse=True)
def _server_log_marker(request):
    if "cluster" in request.fixturenames:
        c = request.getfixturevalue("cluster")
        request.node.stash[_LOG_KEY] = (c, c.log_offset())
    yield


_LOG_KEY = pytest.StashKey[tuple]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call", "teardown"):
        marker = item.stash.get(_LOG_KEY, None)
        if marker is not None:
            c, offset = marker
            rep.sections.append(("krust server log (during this test)",
                                 tail(c.server.log_path, offset, max_lines=150)))
            if c.etcd is not None:
                rep.sections.append(("etcd log (tail)", tail(c.etcd.log_path, max_lines=20)))


# ---------------------------------------------------------------------------------------------
# small shared helpers for tests


def status_of(resp) -> dict:
    """The Status body of an error response (fails if it is not a Status)."""
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"{resp.status_code} response is not JSON: {resp.text[:500]!r}")
    assert body.get("kind") == "Status", f"expected a Status, got {json.dumps(body)[:800]}"
    assert body.get("apiVersion") == "v1", body
    return body


def assert_status(resp, code, reason=None) -> dict:
    assert resp.status_code == code, \
        f"expected HTTP {code}, got {resp.status_code}: {resp.text[:1500]}"
    st = status_of(resp)
    assert st.get("status") == "Failure", st
    assert st.get("code") == code, st
    if reason is not None:
        assert st.get("reason") == reason, st
    return st


def configmap(name, data=None, labels=None, **meta) -> dict:
    md = {"name": name}
    if labels:
        md["labels"] = labels
    md.update(meta)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {}}


def deployment(name, image="nginx:1.25", labels=None, env=None, replicas=None) -> dict:
    labels = labels or {"app": name}
    container = {"name": name, "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    spec = {"selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels}, "spec": spec}


def pod(name, image="busybox:1.36", labels=None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": image,
                                     "command": ["sleep", "3600"]}]}}


def parse_table(text):
    """Parses kubectl's column-aligned table output into a list of dicts (by header names)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "empty table"
    header = lines[0]
    cols = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for ln in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(cols):
            end = cols[i + 1][0] if i + 1 < len(cols) else None
            row[name] = ln[start:end].strip() if end else ln[start:].strip()
        rows.append(row)
    return [c for _, c in cols], rows


def rv_int(rv: str) -> int:
    assert rv and rv.isdigit(), f"resourceVersion {rv!r} is not a decimal integer"
    return int(rv)
