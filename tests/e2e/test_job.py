"""The Job and TTL-after-finished controllers (in `krust-controllers`): completions and
parallelism, Indexed Jobs, the back-off limit, `podFailurePolicy`, `suspend`, and
`ttlSecondsAfterFinished`.

A small kubelet of the test's own (`Kubelet`) plays the node agent: it binds the namespace's
pods, reports them running, and a second later finishes them as their `outcome` label says
(`succeed`, `fail` with exit code 1, or `exit42`), through the same API a kubelet uses.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import wait_for

BATCH = "/apis/batch/v1/namespaces/{ns}/jobs"


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    def __init__(self, cluster, ns):
        self.cluster, self.ns = cluster, ns
        self.started: dict[str, float] = {}
        self.most_running: dict[str, int] = {}  # job name -> most pods running at once
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=10)

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                self._pass()
            except Exception:  # noqa: BLE001 - the next pass tries again
                pass
            time.sleep(0.2)

    def _pass(self):
        c, ns = self.cluster, self.ns
        running: dict[str, int] = {}
        for p in c.get(f"/api/v1/namespaces/{ns}/pods").json().get("items", []):
            meta, name = p["metadata"], p["metadata"]["name"]
            if "deletionTimestamp" in meta:
                c.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                          params={"gracePeriodSeconds": "0"})
                continue
            phase = p.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            job = meta.get("labels", {}).get("job-name", "")
            if not p["spec"].get("nodeName"):
                c.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "job-node"}})
            if phase != "Running":
                c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
                    "phase": "Running", "podIP": "10.42.0.9", "startTime": now(),
                    "conditions": [{"type": "Ready", "status": "True",
                                    "lastTransitionTime": now()}]}})
                self.started[name] = time.monotonic()
                running[job] = running.get(job, 0) + 1
                continue
            running[job] = running.get(job, 0) + 1
            if time.monotonic() - self.started.get(name, time.monotonic()) < 1.0:
                continue
            outcome = meta.get("labels", {}).get("outcome", "succeed")
            code = {"succeed": 0, "fail": 1, "exit42": 42}.get(outcome, 0)
            if outcome == "hang":
                continue
            c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False",
                                "lastTransitionTime": now()}],
                "containerStatuses": [{
                    "name": "c", "image": "registry.local/pause:1", "imageID": "", "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "finishedAt": now(),
                                             "reason": "Completed" if code == 0 else "Error"}}}]}})
        for job, n in running.items():
            self.most_running[job] = max(self.most_running.get(job, 0), n)


def job(name, outcome="succeed", **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {
                "metadata": {"labels": {"outcome": outcome}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "registry.local/pause:1"}]}}}}


def get_job(cluster, ns, name):
    return cluster.ok("GET", f"{BATCH.format(ns=ns)}/{name}")


def condition(j, kind):
    return next((c for c in j.get("status", {}).get("conditions", [])
                 if c["type"] == kind and c["status"] == "True"), None)


def pods_of(cluster, ns, name):
    return cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods",
                      params={"labelSelector": f"job-name={name}"})["items"]


def test_completions_with_parallelism(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns) as kubelet:
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("five", completions=5, parallelism=2)))
        kubectl("wait", "-n", ns, "--for=condition=complete", "job/five", "--timeout=90s",
                timeout=120)
    j = get_job(cluster, ns, "five")
    st = j["status"]
    assert st["succeeded"] == 5 and not st.get("failed"), st
    assert kubelet.most_running["five"] <= 2, kubelet.most_running
    assert condition(j, "SuccessCriteriaMet") and condition(j, "Complete")
    assert st["completionTime"] and st["startTime"]
    pods = pods_of(cluster, ns, "five")
    assert len(pods) == 5
    assert all("batch.kubernetes.io/job-tracking" not in p["metadata"].get("finalizers", [])
               for p in pods), "finalizers are removed once counted"
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["controller"], ref["blockOwnerDeletion"]) == ("Job", True, True)
    out = kubectl("get", "job", "five", "-n", ns)
    assert "5/5" in out and "Complete" in out, out
    described = kubectl("describe", "job", "five", "-n", ns)
    assert "SuccessfulCreate" in described and "Completed" in described, described


def test_an_indexed_job_gets_its_indexes(cluster, ns):
    with Kubelet(cluster, ns):
        cluster.ok("POST", BATCH.format(ns=ns),
                   body=job("idx", completions=3, parallelism=3, completionMode="Indexed"))
        wait_for(lambda: condition(get_job(cluster, ns, "idx"), "Complete"), 60, 0.5,
                 what="the indexed job complete")
    assert get_job(cluster, ns, "idx")["status"]["completedIndexes"] == "0-2"
    pods = pods_of(cluster, ns, "idx")
    index = "batch.kubernetes.io/job-completion-index"
    assert sorted(p["metadata"]["annotations"][index] for p in pods) == ["0", "1", "2"]
    for p in pods:
        i = p["metadata"]["annotations"][index]
        assert p["metadata"]["labels"][index] == i
        assert p["metadata"]["name"].startswith(f"idx-{i}-")
        assert p["spec"]["hostname"] == f"idx-{i}"
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            f"metadata.annotations['{index}']"


def test_a_job_over_its_backoff_limit_fails(cluster, ns):
    with Kubelet(cluster, ns):
        cluster.ok("POST", BATCH.format(ns=ns), body=job("flaky", outcome="fail", backoffLimit=1))
        wait_for(lambda: condition(get_job(cluster, ns, "flaky"), "Failed"), 90, 0.5,
                 what="the job failed")
    j = get_job(cluster, ns, "flaky")
    failed = condition(j, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded", failed
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2
    assert len(pods_of(cluster, ns, "flaky")) == 2


def test_a_pod_failure_policy_fails_the_job_at_once(cluster, ns):
    policy = {"rules": [{"action": "FailJob",
                         "onExitCodes": {"operator": "In", "values": [42]}}]}
    with Kubelet(cluster, ns):
        cluster.ok("POST", BATCH.format(ns=ns),
                   body=job("fatal", outcome="exit42", backoffLimit=6, podFailurePolicy=policy))
        wait_for(lambda: condition(get_job(cluster, ns, "fatal"), "Failed"), 60, 0.5,
                 what="the job failed by its policy")
    failed = condition(get_job(cluster, ns, "fatal"), "Failed")
    assert failed["reason"] == "PodFailurePolicy", failed
    assert "failed with exit code 42 matching FailJob rule at index 0" in failed["message"]
    assert len(pods_of(cluster, ns, "fatal")) == 1


def test_suspend_and_resume(cluster, ns):
    with Kubelet(cluster, ns):
        cluster.ok("POST", BATCH.format(ns=ns),
                   body=job("later", outcome="succeed", completions=2, suspend=True))
        wait_for(lambda: condition(get_job(cluster, ns, "later"), "Suspended"), 30, 0.5,
                 what="the Suspended condition")
        assert pods_of(cluster, ns, "later") == []
        assert "startTime" not in get_job(cluster, ns, "later")["status"]
        cluster.patch(f"{BATCH.format(ns=ns)}/later", {"spec": {"suspend": False}})
        wait_for(lambda: condition(get_job(cluster, ns, "later"), "Complete"), 60, 0.5,
                 what="the resumed job complete")
    suspended = [c for c in get_job(cluster, ns, "later")["status"]["conditions"]
                 if c["type"] == "Suspended"][0]
    assert (suspended["status"], suspended["reason"]) == ("False", "JobResumed")


def test_ttl_after_finished_deletes_the_job(cluster, ns):
    with Kubelet(cluster, ns):
        cluster.ok("POST", BATCH.format(ns=ns), body=job("brief", ttlSecondsAfterFinished=2))
        wait_for(lambda: cluster.get(f"{BATCH.format(ns=ns)}/brief").status_code == 404, 60,
                 0.5, what="the finished job deleted after its TTL")
        wait_for(lambda: pods_of(cluster, ns, "brief") == [], 30, 0.5,
                 what="its pods deleted with it")
