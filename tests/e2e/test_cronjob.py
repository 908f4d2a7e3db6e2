"""The CronJob controller (in `krust-controllers`): a Job each scheduled minute, named and
annotated as upstream names them, the active list and the last schedule and success times,
the history limits, `concurrencyPolicy: Forbid` and `suspend`.

One test covers them side by side, since each step waits for the clock's next minute. The test
finishes Jobs itself by reporting their Complete condition, as the Job controller would.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Kubectl, wait_for

BATCH = "/apis/batch/v1/namespaces/{ns}"


def stamp(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def jobs_of(cluster, ns, uid):
    items = cluster.ok("GET", f"{BATCH.format(ns=ns)}/jobs")["items"]
    return sorted((j for j in items
                   if any(o["uid"] == uid and o.get("controller")
                          for o in j["metadata"].get("ownerReferences", []))),
                  key=lambda j: j["metadata"]["name"])


def complete(cluster, ns, name, when):
    cluster.patch(f"{BATCH.format(ns=ns)}/jobs/{name}/status", {"status": {
        "startTime": stamp(when), "completionTime": stamp(when), "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": stamp(when)},
            {"type": "Complete", "status": "True", "lastTransitionTime": stamp(when)}]}})


def cronjob(cluster, ns, name):
    return cluster.ok("GET", f"{BATCH.format(ns=ns)}/cronjobs/{name}")


def reasons(cluster, ns, name):
    events = cluster.ok("GET", f"/api/v1/namespaces/{ns}/events",
                        params={"fieldSelector": f"involvedObject.name={name}"})["items"]
    return [e["reason"] for e in events]


def test_cronjobs_run_each_minute_with_history_and_policies(cluster, ns):
    if cluster.etcd is not None:
        pytest.skip("waits for the clock's minutes: the controller is checked once, on embedded")
    k = Kubectl("1.33", cluster, cluster.workdir)
    k("create", "cronjob", "tick", "-n", ns, "--image=registry.local/pause:1",
      "--schedule=* * * * *")
    k("patch", "cronjob", "tick", "-n", ns, "--type=merge",
      "-p", json.dumps({"spec": {"successfulJobsHistoryLimit": 1}}))
    for name, extra in (("solo", {"concurrencyPolicy": "Forbid"}), ("paused", {"suspend": True})):
        cluster.ok("POST", f"{BATCH.format(ns=ns)}/cronjobs", body={
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", **extra, "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "registry.local/pause:1"}]}}}}}})
    tick = cronjob(cluster, ns, "tick")
    uid = tick["metadata"]["uid"]

    # Finished Jobs of its own beyond the history limit go, oldest first.
    old = datetime.now(timezone.utc) - timedelta(hours=1)
    for i in range(3):
        cluster.ok("POST", f"{BATCH.format(ns=ns)}/jobs", body={
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"tick-old-{i}", "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": uid,
                "controller": True, "blockOwnerDeletion": True}]},
            "spec": tick["spec"]["jobTemplate"]["spec"]})
        complete(cluster, ns, f"tick-old-{i}", old + timedelta(minutes=i))
    wait_for(lambda: [j["metadata"]["name"] for j in jobs_of(cluster, ns, uid)
                      if j["metadata"]["name"].startswith("tick-old")] == ["tick-old-2"],
             60, 0.5, what="the two oldest finished jobs deleted")

    # A Job for the next minute, named for it, listed as active.
    def scheduled():
        return [j for j in jobs_of(cluster, ns, uid) if not j["metadata"]["name"].startswith("tick-old")]

    wait_for(lambda: len(scheduled()) == 1, 75, 0.5, what="the first scheduled job")
    (first,) = scheduled()
    at = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert when.second == 0
    assert first["metadata"]["name"] == f"tick-{int(when.timestamp()) // 60}"
    wait_for(lambda: [r["name"] for r in cronjob(cluster, ns, "tick")["status"].get("active", [])]
             == [first["metadata"]["name"]], 30, 0.5, what="the job in the active list")
    assert cronjob(cluster, ns, "tick")["status"]["lastScheduleTime"] == at
    assert "SuccessfulCreate" in reasons(cluster, ns, "tick")
    out = k("get", "cronjob", "tick", "-n", ns)
    assert "* * * * *" in out and "False" in out, out

    # It completes: off the active list, its time is the last success, and the history keeps
    # only it.
    complete(cluster, ns, first["metadata"]["name"], when + timedelta(seconds=5))
    wait_for(lambda: not cronjob(cluster, ns, "tick")["status"].get("active"), 30, 0.5,
             what="the completed job off the active list")
    status = cronjob(cluster, ns, "tick")["status"]
    assert status["lastSuccessfulTime"] == stamp(when + timedelta(seconds=5))
    wait_for(lambda: "SawCompletedJob" in reasons(cluster, ns, "tick"), 30, 0.5,
             what="a SawCompletedJob event")
    wait_for(lambda: [j["metadata"]["name"] for j in jobs_of(cluster, ns, uid)]
             == [first["metadata"]["name"]], 30, 0.5, what="history trimmed to the newest")

    # The next minute brings the next Job.
    wait_for(lambda: len(scheduled()) == 2, 75, 0.5, what="the second scheduled job")

    # Forbid: its first Job never finishes, so no second one starts.
    solo = cronjob(cluster, ns, "solo")
    assert len(jobs_of(cluster, ns, solo["metadata"]["uid"])) == 1
    wait_for(lambda: "JobAlreadyActive" in reasons(cluster, ns, "solo"), 30, 0.5,
             what="a JobAlreadyActive event")
    # Suspended: nothing runs.
    paused = cronjob(cluster, ns, "paused")
    assert jobs_of(cluster, ns, paused["metadata"]["uid"]) == []
    assert "lastScheduleTime" not in paused.get("status", {})
