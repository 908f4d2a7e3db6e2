"""The Job controller (in `krust-controllers`) and the TTL-after-finished controller.

There are no containers here: each test runs a small simulated kubelet (`Kubelet`) that does
what a kubelet reports and nothing more, through the API: it binds the namespace's pods to
itself, reports them Running and Ready, then finishes each with the exit code its pod
template asks for in the annotation `e2e.krust.dev/exit` ("hold" keeps it running; "0=1,1=0"
chooses by completion index), and
confirms the termination of pods being deleted (a deleted pod that had not finished is
reported Failed with exit code 137 first, as a kubelet does).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import wait_for

EXIT = "e2e.krust.dev/exit"
TRACKING = "batch.kubernetes.io/job-tracking"
INDEX = "batch.kubernetes.io/job-completion-index"


def now_str():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminated(phase, code):
    now = now_str()
    return {"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{
            "name": "main", "image": "registry.local/task:1", "imageID": "", "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                     else "Error", "startedAt": now, "finishedAt": now}}}]}}


class Kubelet:
    def __init__(self, cluster, ns, name="sim-node"):
        self.cluster, self.ns, self.name = cluster, ns, name
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
        for p in c.get(f"/api/v1/namespaces/{ns}/pods").json().get("items", []):
            name = p["metadata"]["name"]
            base = f"/api/v1/namespaces/{ns}/pods/{name}"
            phase = p.get("status", {}).get("phase")
            if "deletionTimestamp" in p["metadata"]:
                if phase not in ("Succeeded", "Failed"):
                    c.patch(f"{base}/status", terminated("Failed", 137))
                c.request("DELETE", base, params={"gracePeriodSeconds": "0"})
                continue
            if phase in ("Succeeded", "Failed"):
                continue
            if not p["spec"].get("nodeName"):
                c.request("POST", f"{base}/binding", body={
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}})
            if phase != "Running":
                now = now_str()
                c.patch(f"{base}/status", {"status": {
                    "phase": "Running", "startTime": now,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                                   {"type": "ContainersReady", "status": "True",
                                    "lastTransitionTime": now}],
                    "containerStatuses": [{
                        "name": "main", "image": "registry.local/task:1", "imageID": "",
                        "ready": True, "restartCount": 0, "started": True,
                        "state": {"running": {"startedAt": now}}}]}})
                continue
            wanted = p["metadata"].get("annotations", {}).get(EXIT, "0")
            if "=" in wanted:  # per index: "0=1,1=0"
                index = p["metadata"].get("annotations", {}).get(INDEX)
                wanted = dict(part.split("=") for part in wanted.split(",")).get(index, "0")
            if wanted == "hold":
                continue
            code = int(wanted)
            c.patch(f"{base}/status", terminated("Succeeded" if code == 0 else "Failed", code))


def job(name, completions=1, parallelism=1, exit_code="0", **spec):
    body = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "completions": completions, "parallelism": parallelism,
            "template": {
                "metadata": {"annotations": {EXIT: str(exit_code)}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "registry.local/task:1"}]}},
        },
    }
    body["spec"].update(spec)
    return body


def get_job(cluster, ns, name):
    return cluster.ok("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")


def pods_of(cluster, ns, name):
    return cluster.ok("GET", f"/api/v1/namespaces/{ns}/pods",
                      params={"labelSelector": f"job-name={name}"})["items"]


def active(pods):
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def conditions(j):
    return {c["type"]: c for c in j.get("status", {}).get("conditions", [])}


def no_finalizers(cluster, ns, name):
    return all(TRACKING not in p["metadata"].get("finalizers", [])
               for p in pods_of(cluster, ns, name))


def test_completions_with_parallelism(kubectl, cluster, ns):
    with Kubelet(cluster, ns):
        most = [0]
        stop = threading.Event()

        def watch_active():
            while not stop.is_set():
                try:
                    most[0] = max(most[0], len(active(pods_of(cluster, ns, "pi"))))
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.05)
        watcher = threading.Thread(target=watch_active, daemon=True)
        watcher.start()
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job("pi", 5, 2)))
        kubectl("wait", "--for=condition=complete", "job/pi", "-n", ns, "--timeout=90s",
                timeout=120)
        stop.set()
        watcher.join(timeout=5)
        assert most[0] <= 2, most
        j = get_job(cluster, ns, "pi")
        st = j["status"]
        assert st["succeeded"] == 5 and st.get("failed", 0) == 0, st
        assert st.get("active", 0) == 0 and "completionTime" in st and "startTime" in st, st
        cond = conditions(j)
        assert cond["SuccessCriteriaMet"]["status"] == "True", cond
        assert cond["Complete"]["reason"] == "CompletionsReached", cond
        assert st.get("uncountedTerminatedPods", {}) == {}, st
        pods = pods_of(cluster, ns, "pi")
        assert len(pods) == 5, [p["metadata"]["name"] for p in pods]
        uid = j["metadata"]["uid"]
        for p in pods:
            md = p["metadata"]
            assert md["name"].startswith("pi-") and md["generateName"] == "pi-", md
            assert md["labels"]["batch.kubernetes.io/controller-uid"] == uid, md
            assert md["labels"]["controller-uid"] == uid, md
            assert md["labels"]["batch.kubernetes.io/job-name"] == "pi", md
            owner = md["ownerReferences"][0]
            assert (owner["kind"], owner["uid"], owner["controller"],
                    owner["blockOwnerDeletion"]) == ("Job", uid, True, True), owner
        # Counted pods lose the tracking finalizer.
        wait_for(lambda: no_finalizers(cluster, ns, "pi"), 30, what="finalizers removed")
        wait_for(lambda: "Job completed" in kubectl("describe", "job", "pi", "-n", ns), 30,
                 what="the Completed event")
        described = kubectl("describe", "job", "pi", "-n", ns)
        assert "SuccessfulCreate" in described and "Created pod: pi-" in described, described


def test_indexed_job_gets_every_index(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("idx", 4, 2, completionMode="Indexed")))
        kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=90s",
                timeout=120)
        st = get_job(cluster, ns, "idx")["status"]
        assert st["completedIndexes"] == "0-3" and st["succeeded"] == 4, st
        pods = pods_of(cluster, ns, "idx")
        seen = set()
        for p in pods:
            md, spec = p["metadata"], p["spec"]
            index = md["annotations"][INDEX]
            seen.add(int(index))
            assert md["labels"][INDEX] == index, md
            assert md["generateName"] == f"idx-{index}-", md
            assert spec["hostname"] == f"idx-{index}", spec
            env = {e["name"]: e for e in spec["containers"][0].get("env", [])}
            assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
                f"metadata.labels['{INDEX}']", env
        assert seen == {0, 1, 2, 3}, seen
        wait_for(lambda: no_finalizers(cluster, ns, "idx"), 30, what="finalizers removed")


def test_backoff_limit_per_index_fails_an_index(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job(
            "per", 3, 3, exit_code="1=3", completionMode="Indexed", backoffLimitPerIndex=0)))
        kubectl("wait", "--for=condition=failed", "job/per", "-n", ns, "--timeout=60s",
                timeout=90)
        j = get_job(cluster, ns, "per")
        st = j["status"]
        assert st["failedIndexes"] == "1" and st["completedIndexes"] == "0,2", st
        assert st["failed"] == 1 and st["succeeded"] == 2, st
        cond = conditions(j)
        assert cond["Failed"]["reason"] == "FailedIndexes", cond
        assert cond["Failed"]["message"] == "Job has failed indexes", cond
        assert len(pods_of(cluster, ns, "per")) == 3, "the failed index is not retried"


def test_backoff_limit_fails_the_job(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns):
        # Two failures exceed a limit of 1; the replacement waits out the 10 s back-off.
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("flaky", 1, 1, exit_code=1, backoffLimit=1)))
        kubectl("wait", "--for=condition=failed", "job/flaky", "-n", ns, "--timeout=90s",
                timeout=120)
        j = get_job(cluster, ns, "flaky")
        cond = conditions(j)
        assert cond["Failed"]["reason"] == "BackoffLimitExceeded", cond
        assert cond["Failed"]["message"] == "Job has reached the specified backoff limit", cond
        assert cond["FailureTarget"]["reason"] == "BackoffLimitExceeded", cond
        assert j["status"]["failed"] == 2 and "completionTime" not in j["status"], j["status"]
        assert len(pods_of(cluster, ns, "flaky")) == 2
        wait_for(lambda: "BackoffLimitExceeded" in kubectl("describe", "job", "flaky", "-n", ns),
                 30, what="the BackoffLimitExceeded event")
        wait_for(lambda: no_finalizers(cluster, ns, "flaky"), 30, what="finalizers removed")


def test_pod_failure_policy_fails_the_job(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                        {"action": "FailJob",
                         "onExitCodes": {"containerName": "main", "operator": "In",
                                         "values": [42]}}]}
    with Kubelet(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("bad", 3, 1, exit_code=42, podFailurePolicy=policy)))
        kubectl("wait", "--for=condition=failed", "job/bad", "-n", ns, "--timeout=60s",
                timeout=90)
        cond = conditions(get_job(cluster, ns, "bad"))
        assert cond["Failed"]["reason"] == "PodFailurePolicy", cond
        assert "failed with exit code 42 matching FailJob rule at index 1" in \
            cond["Failed"]["message"], cond
        assert len(pods_of(cluster, ns, "bad")) == 1, "the job is not retried"


def test_suspend_and_resume(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("long", 2, 2, exit_code="hold")))
        wait_for(lambda: get_job(cluster, ns, "long").get("status", {}).get("ready") == 2, 60,
                 what="two ready pods")
        kubectl("patch", "job", "long", "-n", ns, "--type=merge", "-p",
                '{"spec":{"suspend":true}}')
        wait_for(lambda: pods_of(cluster, ns, "long") == [], 60, what="the pods deleted")
        wait_for(lambda: conditions(get_job(cluster, ns, "long")).get("Suspended", {})
                 .get("status") == "True", 30, what="the Suspended condition")
        j = get_job(cluster, ns, "long")
        assert conditions(j)["Suspended"]["reason"] == "JobSuspended", j["status"]
        assert j["status"].get("active", 0) == 0 and j["status"].get("failed", 0) == 0, \
            j["status"]
        kubectl("patch", "job", "long", "-n", ns, "--type=merge", "-p",
                '{"spec":{"suspend":false}}')
        wait_for(lambda: len(active(pods_of(cluster, ns, "long"))) == 2, 60,
                 what="the pods back")
        wait_for(lambda: conditions(get_job(cluster, ns, "long")).get("Suspended", {})
                 .get("reason") == "JobResumed", 30, what="the resumed condition")
        described = kubectl("describe", "job", "long", "-n", ns)
        assert "Job suspended" in described and "Job resumed" in described, described

        # Deleting a running job lets its pods go: the finalizers are removed.
        kubectl("delete", "job", "long", "-n", ns, "--wait=false")
        wait_for(lambda: pods_of(cluster, ns, "long") == [], 60, what="the pods gone")


def test_ttl_after_finished_deletes_the_job(kubectl, cluster, ns):
    if kubectl.version != "1.33":
        pytest.skip("checked with kubectl 1.33")
    with Kubelet(cluster, ns):
        kubectl("apply", "-n", ns, "-f", "-",
                input=json.dumps(job("brief", 1, 1, ttlSecondsAfterFinished=2)))
        kubectl("wait", "--for=condition=complete", "job/brief", "-n", ns, "--timeout=60s",
                timeout=90)
        wait_for(lambda: cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs/brief")
                 .status_code == 404, 60, what="the job deleted")
        wait_for(lambda: pods_of(cluster, ns, "brief") == [], 60, what="its pods deleted")
