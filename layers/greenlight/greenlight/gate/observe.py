"""What the gate sees of a candidate: its Deployment's status and its pods, as one verdict.

Pure functions over the API's JSON. The verdict is ``failed`` as soon as anything says the
candidate cannot become healthy (fail fast), ``ready`` when every replica of the current
generation is updated, ready and available, and ``waiting`` otherwise.

Fail-fast signals:
- the Deployment's ``Progressing`` condition with reason ``ProgressDeadlineExceeded``;
- a container waiting with ``CrashLoopBackOff``, ``ImagePullBackOff``, ``ErrImagePull``,
  ``InvalidImageName``, ``CreateContainerConfigError`` or ``CreateContainerError``;
- a container whose last termination was ``OOMKilled``;
- a container restarted more than the app allows (``health.max_restarts``).
Only pods of this rollout count (the ``greenlight.io/rollout-id`` annotation Greenlight puts on
the pod template), so a pod of an earlier candidate that is still terminating does not fail a
new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..rollout.workload import ROLLOUT_ANNOTATION

FATAL_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True)
class Observation:
    verdict: str  # waiting | ready | failed
    reason: str
    ready: int = 0
    desired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "ready": self.ready,
            "desired": self.desired,
        }


def _condition(deployment: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in deployment.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def pod_problem(pod: dict[str, Any], max_restarts: int) -> str | None:
    """Why this pod shows its candidate cannot become healthy, or None."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {})
    for container in status.get("containerStatuses", []) or []:
        cname = container.get("name", "?")
        waiting = (container.get("state") or {}).get("waiting") or {}
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") in FATAL_WAITING:
            last = terminated.get("reason")
            cause = f" (last exit: {last}, code {terminated.get('exitCode')})" if last else ""
            return f"pod {name} container {cname}: {waiting['reason']}{cause}"
        if terminated.get("reason") == "OOMKilled":
            return f"pod {name} container {cname}: OOMKilled"
        restarts = int(container.get("restartCount", 0))
        if restarts > max_restarts:
            return f"pod {name} container {cname}: restarted {restarts} times"
    return None


def assess(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    rollout_id: str,
    max_restarts: int,
) -> Observation:
    if deployment is None:
        return Observation("failed", "the candidate Deployment is gone")
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Observation("failed", "progress deadline exceeded", ready, desired)
    current = [
        p
        for p in pods
        if (p.get("metadata", {}).get("annotations") or {}).get(ROLLOUT_ANNOTATION) == rollout_id
        and "deletionTimestamp" not in p.get("metadata", {})
    ]
    for pod in sorted(current, key=lambda p: p.get("metadata", {}).get("name", "")):
        problem = pod_problem(pod, max_restarts)
        if problem:
            return Observation("failed", problem, ready, desired)
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return Observation("waiting", "the controller has not seen this generation", ready, desired)
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated == ready == available == desired == total and desired > 0:
        return Observation("ready", f"{ready}/{desired} ready", ready, desired)
    return Observation(
        "waiting",
        f"{ready}/{desired} ready, {updated} updated, {available} available",
        ready,
        desired,
    )
