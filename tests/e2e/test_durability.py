"""Acknowledged writes survive kill -9 of the server."""

import signal
import threading
import time

from kubernetes import client
from kubernetes.client.rest import ApiException

WRITERS = 4
MANY_WRITERS = 64
DELETERS = 1
RUN_SECONDS = 3.0
PRE_CREATED = 300


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.created = {}  # name -> (resourceVersion, uid)
        self.deleted = set()
        self.errors_before_kill = []


def writer(cluster, ns, tid, rec: Recorder, stop: threading.Event, killed: threading.Event):
    core = client.CoreV1Api(cluster.api_client())
    i = 0
    while not stop.is_set():
        name = f"d-{tid}-{i}"
        i += 1
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name),
                                  data={"writer": str(tid), "seq": str(i)})
        try:
            o = core.create_namespaced_config_map(ns, body, _request_timeout=10)
        except Exception as e:  # noqa: BLE001 - the kill makes requests fail, which is fine
            if not killed.is_set():
                with rec.lock:
                    rec.errors_before_kill.append(repr(e)[:300])
            if killed.is_set():
                return
            continue
        with rec.lock:
            rec.created[name] = (o.metadata.resource_version, o.metadata.uid)


def deleter(cluster, ns, names, rec: Recorder, stop: threading.Event, killed: threading.Event):
    core = client.CoreV1Api(cluster.api_client())
    for name in names:
        if stop.is_set():
            return
        try:
            core.delete_namespaced_config_map(name, ns, _request_timeout=10)
        except Exception as e:  # noqa: BLE001
            if killed.is_set():
                return
            with rec.lock:
                rec.errors_before_kill.append(repr(e)[:300])
            continue
        with rec.lock:
            rec.deleted.add(name)


def test_acknowledged_writes_survive_sigkill(cluster, ns):
    run_and_kill(cluster, ns, WRITERS)


def test_acknowledged_writes_survive_sigkill_with_large_batches(cluster, ns):
    """64 concurrent writers: the store commits batches of 8 or more writes, whose log records
    are appended by its logger thread while the batch is applied."""
    run_and_kill(cluster, ns, MANY_WRITERS)


def run_and_kill(cluster, ns, writers):
    core = client.CoreV1Api(cluster.api_client())
    victims = [f"pre-{i}" for i in range(PRE_CREATED)]
    for name in victims:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name)))

    rec, stop, killed = Recorder(), threading.Event(), threading.Event()
    threads = [threading.Thread(target=writer, args=(cluster, ns, t, rec, stop, killed),
                                daemon=True) for t in range(writers)]
    threads += [threading.Thread(target=deleter, args=(cluster, ns, victims, rec, stop, killed),
                                 daemon=True) for _ in range(DELETERS)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    killed.set()
    rc = cluster.server.stop(sig=signal.SIGKILL)  # while writes are in flight
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a writer thread hung"
    assert rc is not None and rc < 0, f"server was not killed by the signal (rc={rc})"

    with rec.lock:
        created, deleted = dict(rec.created), set(rec.deleted)
        errors = list(rec.errors_before_kill)
    assert not errors, f"writes failed before the kill: {errors[:5]}"
    assert len(created) >= 50, f"only {len(created)} creates acknowledged in {RUN_SECONDS}s"

    cluster.server.start()
    core = client.CoreV1Api(cluster.api_client())
    live = {}
    cont = None
    while True:
        page = core.list_namespaced_config_map(ns, limit=500, _continue=cont)
        for o in page.items:
            live[o.metadata.name] = (o.metadata.resource_version, o.metadata.uid)
        cont = page.metadata._continue
        if not cont:
            break

    lost = sorted(n for n in created if n not in live)
    assert not lost, f"{len(lost)} of {len(created)} acknowledged creates lost: {lost[:10]}"
    changed = sorted(n for n in created if live[n] != created[n])
    assert not changed, (f"{len(changed)} objects came back with another resourceVersion/uid: "
                         f"{[(n, created[n], live[n]) for n in changed[:5]]}")
    resurrected = sorted(n for n in deleted if n in live)
    assert not resurrected, f"acknowledged deletes undone: {resurrected[:10]}"
    # and the server takes writes again
    try:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="after-kill")))
    except ApiException as e:
        raise AssertionError(f"create after restart failed: {e.status} {e.body}") from None
