"""A private image registry on loopback for end-to-end tests of image pulls: Debian's
`docker-registry` (distribution 2.8) on 127.0.0.1, a free port, filesystem storage in a temp
dir, optionally behind htpasswd basic auth; and functions that push the busybox test image to
it over the distribution API (blobs, then OCI or Docker v2 schema 2 manifests, and
multi-platform OCI indexes).

    with Registry(users={"alice": "s3cret"}) as reg:
        digest = reg.push_image("e2e/busybox", "1", cmd=["sh", "-c", "echo hi; sleep 3600"])
        # pods can use f"{reg.host}/e2e/busybox:1" or f"{reg.host}/e2e/busybox@{digest}"

Distribution 2.8 serves htpasswd basic auth over plain HTTP (401 with `WWW-Authenticate: Basic
realm="..."`). It stores manifests byte for byte (their digest is the sha256 of the bytes
pushed; these are indented, not canonical JSON) and serves an OCI manifest or index only to a
GET or HEAD whose Accept names its media type, even by digest; a Docker v2 manifest by tag
needs its type in Accept too (else 400 MANIFEST_INVALID: 2.8 tries to turn it into schema 1)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import shutil
import signal
import subprocess
import tempfile
import warnings
from pathlib import Path

import requests

from conftest import free_port, reap, spawn, tail, wait_for
from images import _layer

REGISTRY_BIN = "/usr/bin/docker-registry"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# What a client that understands every kind sends (containerd sends these four).
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

KINDS = {  # manifest kind -> (manifest, config, layer, index) media types
    "oci": (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_INDEX),
    "docker": (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST),
}

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def busybox_layer() -> tuple[bytes, bytes]:
    """The busybox layer of images.py: (the tar, the same gzip-compressed, reproducibly)."""
    tar = _layer()
    return tar, gzip.compress(tar, mtime=0)


def loopback_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl in
    `folder`: (certificate, key, CA certificate)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=krust-e2e-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return folder / "server.crt", folder / "server.key", folder / "ca.crt"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (the only kind distribution accepts), of the least
    cost (4): the registry checks it on every request."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11, still here; bcrypt comes from the host's libcrypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))


class Registry:
    """`docker-registry serve` on 127.0.0.1:<free port>; `users` (name -> password) turns on
    htpasswd basic auth. A context manager: stopping kills it and removes its temp dir."""

    def __init__(self, users: dict[str, str] | None = None, realm="krust-e2e",
                 tls: tuple[Path, Path, Path] | None = None):
        """`tls` (certificate, key, and the CA that signed them) serves HTTPS."""
        self.users = dict(users or {})
        self.tls = tls
        self.realm = realm
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._http: requests.Session | None = None

    # -- life cycle

    @property
    def host(self) -> str:
        """The registry part of image references: `127.0.0.1:<port>`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.dir / "registry.log"

    def start(self, timeout=30.0):
        if not Path(REGISTRY_BIN).exists():
            raise AssertionError(f"{REGISTRY_BIN} not found (Debian's docker-registry)")
        self.dir = Path(tempfile.mkdtemp(prefix="krust-e2e-registry-"))
        try:
            if self.users:
                (self.dir / "htpasswd").write_text(
                    "".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            last = None
            for _attempt in range(3):  # the free port may be taken by the time it binds
                self.port = free_port()
                config = self.dir / "config.yml"
                config.write_text(json.dumps(self._config()))  # JSON is YAML
                with open(self.log_path, "ab") as log:
                    self.proc = spawn([REGISTRY_BIN, "serve", config], stdout=log, stderr=log,
                                      pdeathsig=True, cwd=self.dir)
                try:
                    wait_for(self._answers, timeout, interval=0.1, what="the registry's /v2/")
                    return self
                except AssertionError as e:
                    last = e
                    reap(self.proc)
                    self.proc = None
            raise AssertionError(f"docker-registry did not start: {last}\n{tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise

    def _config(self) -> dict:
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "krust-e2e",
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.users:
            cfg["auth"] = {"htpasswd": {"realm": self.realm, "path": str(self.dir / "htpasswd")}}
        if self.tls:
            cert, key, _ca = self.tls
            cfg["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        return cfg

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"docker-registry exited with {self.proc.returncode}: "
                                 f"{tail(self.log_path, max_lines=20)}")
        r = self.session(auth=False).get(self.url + "/v2/", timeout=2)
        return r.status_code == (401 if self.users else 200)

    def stop(self):
        if self.proc is not None:
            reap(self.proc, signal.SIGTERM, timeout=5)
            self.proc = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log(self, max_lines=60) -> str:
        return tail(self.log_path, max_lines=max_lines) if self.dir else "(registry stopped)"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP

    def session(self, auth=True, user: str | None = None) -> requests.Session:
        """A session for the registry (no proxies from the environment); with `auth`, it
        sends the basic credentials of `user` (default: the first user)."""
        s = requests.Session()
        s.trust_env = False
        if self.tls:
            s.verify = str(self.tls[2])
        if auth and self.users:
            name = user or next(iter(self.users))
            s.auth = (name, self.users[name])
        return s

    @property
    def http(self) -> requests.Session:
        if self._http is None:
            self._http = self.session()
        return self._http

    def _check(self, r: requests.Response, *codes):
        assert r.status_code in codes, \
            f"{r.request.method} {r.url}: {r.status_code} {r.text[:500]}\n{self.log(20)}"
        return r

    # -- pushes

    def push_blob(self, repo: str, data: bytes) -> str:
        """Uploads `data` (monolithically) unless the repository has it; returns its digest."""
        digest = sha256(data)
        if self.http.head(f"{self.url}/v2/{repo}/blobs/{digest}", timeout=30).status_code == 200:
            return digest
        r = self._check(self.http.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=30), 202)
        location = requests.compat.urljoin(self.url + "/", r.headers["Location"])
        sep = "&" if "?" in location else "?"
        r = self._check(self.http.put(f"{location}{sep}digest={digest}", data=data, timeout=60,
                                      headers={"Content-Type": "application/octet-stream"}), 201)
        assert r.headers.get("Docker-Content-Digest") == digest, r.headers
        return digest

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """PUTs a manifest (or index) under a tag or digest; returns its digest."""
        digest = sha256(body)
        r = self._check(self.http.put(f"{self.url}/v2/{repo}/manifests/{reference}", data=body,
                                      headers={"Content-Type": media_type}, timeout=30), 201)
        assert r.headers.get("Docker-Content-Digest") == digest, \
            f"the registry names the manifest {r.headers.get('Docker-Content-Digest')}, not {digest}"
        return digest

    def _push_platform_image(self, repo, kind, cmd, env, entrypoint, architecture, variant):
        """Pushes the layer, a config and a manifest (by digest); returns (digest, manifest)."""
        manifest_type, config_type, layer_type, _ = KINDS[kind]
        tar, gz = busybox_layer()
        layer_digest = self.push_blob(repo, gz)
        container = {"Env": list(env) if env is not None else [PATH_ENV],
                     "Cmd": list(cmd) if cmd is not None else ["sh"]}
        if entrypoint is not None:
            container["Entrypoint"] = list(entrypoint)
        config = {"architecture": architecture, "os": "linux", "config": container,
                  "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]}}
        if variant:
            config["variant"] = variant
        config_bytes = json.dumps(config).encode()
        config_digest = self.push_blob(repo, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(gz)}],
        }
        body = json.dumps(manifest, indent=3).encode()
        return self.push_manifest(repo, sha256(body), body, manifest_type), body

    def push_image(self, repo: str, tag: str | None, *, cmd=None, env=None, entrypoint=None,
                   kind="oci", architecture="amd64") -> str:
        """Pushes the busybox image as an OCI (`kind="oci"`) or Docker v2 schema 2
        (`kind="docker"`) manifest, tagged `tag` when given; returns the manifest's digest.
        `cmd`, `env` and `entrypoint` go to the config (default Cmd ["sh"], Env PATH)."""
        digest, body = self._push_platform_image(repo, kind, cmd, env, entrypoint, architecture,
                                                 None)
        if tag is not None:
            assert self.push_manifest(repo, tag, body, KINDS[kind][0]) == digest
        return digest

    def push_index(self, repo: str, tag: str, platforms: list[tuple[str, list[str]]],
                   kind="oci") -> tuple[str, dict[str, str]]:
        """Pushes a multi-platform image: for each (architecture, cmd) in `platforms`, in this
        order, an image whose config has that architecture and Cmd; then an index (OCI, or a
        Docker manifest list with `kind="docker"`) listing them, tagged `tag`. Returns (the
        index's digest, {architecture: manifest digest})."""
        manifest_type, _, _, index_type = KINDS[kind]
        entries, digests = [], {}
        for architecture, cmd in platforms:
            variant = "v8" if architecture == "arm64" else None
            digest, body = self._push_platform_image(repo, kind, cmd, None, None, architecture,
                                                     variant)
            platform = {"architecture": architecture, "os": "linux"}
            if variant:
                platform["variant"] = variant
            entries.append({"mediaType": manifest_type, "digest": digest, "size": len(body),
                            "platform": platform})
            digests[architecture] = digest
        index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries},
                           indent=3).encode()
        return self.push_manifest(repo, tag, index, index_type), digests

    # -- reads (for checks)

    def get_manifest(self, repo: str, reference: str, accept=ACCEPT_ALL) -> requests.Response:
        return self.http.get(f"{self.url}/v2/{repo}/manifests/{reference}",
                             headers={"Accept": accept}, timeout=30)

    def get_blob(self, repo: str, digest: str) -> requests.Response:
        return self.http.get(f"{self.url}/v2/{repo}/blobs/{digest}", timeout=60)
