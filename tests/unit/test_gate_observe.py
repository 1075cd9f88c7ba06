"""The gate's verdict on a candidate from its Deployment and pods (pure)."""

from __future__ import annotations

from greenlight.gate.observe import assess

RID = "1795684502000-3f9d2a41c0b7"


def deployment(**status):
    return {
        "metadata": {"name": "shop-green", "generation": status.pop("generation", 2)},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2} | status,
    }


def pod(name, rollout=RID, *, waiting=None, last=None, restarts=0, deleting=False):
    meta = {"name": name, "annotations": {"greenlight.io/rollout-id": rollout}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T09:00:00Z"
    container = {"name": "web", "restartCount": restarts, "state": {}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting}}
    if last:
        container["lastState"] = {"terminated": {"reason": last, "exitCode": 137}}
    return {"metadata": meta, "status": {"containerStatuses": [container]}}


READY = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


def test_every_replica_updated_ready_and_available_is_ready():
    seen = assess(deployment(**READY), [pod("a"), pod("b")], rollout_id=RID, max_restarts=2)
    assert (seen.verdict, seen.ready, seen.desired) == ("ready", 2, 2)


def test_a_generation_the_controller_has_not_seen_is_waiting():
    seen = assess(deployment(generation=3, **READY), [], rollout_id=RID, max_restarts=2)
    assert seen.verdict == "waiting" and "generation" in seen.reason


def test_an_old_pod_still_counted_in_status_is_not_ready_yet():
    status = READY | {"replicas": 3}  # an old pod is terminating
    assert assess(deployment(**status), [], rollout_id=RID, max_restarts=2).verdict == "waiting"


def test_progress_deadline_exceeded_fails():
    status = {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}
    seen = assess(deployment(**status), [], rollout_id=RID, max_restarts=2)
    assert seen.verdict == "failed" and "progress deadline" in seen.reason


def test_crash_loop_names_the_pod_and_the_last_exit():
    pods = [pod("a"), pod("b", waiting="CrashLoopBackOff", last="OOMKilled")]
    seen = assess(deployment(), pods, rollout_id=RID, max_restarts=2)
    assert seen.verdict == "failed"
    assert seen.reason == "pod b container web: CrashLoopBackOff (last exit: OOMKilled, code 137)"


def test_too_many_restarts_fail_and_a_few_do_not():
    assert assess(deployment(), [pod("a", restarts=2)], rollout_id=RID, max_restarts=2).verdict == (
        "waiting"
    )
    seen = assess(deployment(), [pod("a", restarts=3)], rollout_id=RID, max_restarts=2)
    assert seen.verdict == "failed" and "restarted 3 times" in seen.reason


def test_pods_of_another_rollout_or_terminating_do_not_count():
    pods = [
        pod("old", rollout="1795684400000-aaaaaaaaaaaa", waiting="CrashLoopBackOff"),
        pod("going", waiting="ImagePullBackOff", deleting=True),
    ]
    assert assess(deployment(**READY), pods, rollout_id=RID, max_restarts=2).verdict == "ready"


def test_no_deployment_fails():
    assert assess(None, [], rollout_id=RID, max_restarts=2).verdict == "failed"
