import signal, time
from conftest import assert_status
def test_mechanics(cluster, kubectl, ns_name):
    assert cluster.ready()
    w = cluster.watch("/watchme")
    evs = w.take(3)
    assert [e["object"]["metadata"]["name"] for e in evs] == ["c0","c1","c2"]
    assert w.wait_end(5) == []
    anon = cluster.creds.session(with_client_cert=False)
    assert_status(anon.get(cluster.url + "/api", timeout=5), 401, "Unauthorized")
    rc = cluster.restart(signal.SIGTERM); assert rc == 0
    rc = cluster.kill_and_restart(); assert rc == -9
    out = kubectl.run("get", "ns")
    assert out.returncode != 0 and "NotFound" in out.stderr or "could not find" in out.stderr, out.stderr
    bg = kubectl.background("get", "ns", "-w")
    time.sleep(0.5); bg.stop()
def test_fails_to_show_log(cluster):
    assert False, "intentional"
