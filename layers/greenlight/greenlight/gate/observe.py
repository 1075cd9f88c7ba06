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

from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..cluster.names import NAME_LABEL, ROLLOUT_ANNOTATION, deployments, pods, slot_name
from ..cluster.rest import KubeRest

if TYPE_CHECKING:
    from ..appconfig import App
    from ..cluster.bodies import Condition, Deployment, Pod
    from ..store.rollouts import Rollout

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


class Verdict(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    FAILED = "failed"


class Observation(NamedTuple):
    verdict: Verdict
    reason: str
    ready: int = 0
    desired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "ready": self.ready,
            "desired": self.desired,
        }


def _condition(deployment: Deployment, kind: str) -> Condition | None:
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def pod_problem(pod: Pod, max_restarts: int) -> str | None:
    """Why this pod shows its candidate cannot become healthy, or None."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
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
    deployment: Deployment | None,
    pods: list[Pod],
    *,
    rollout_id: str,
    max_restarts: int,
) -> Observation:
    if deployment is None:
        return Observation(Verdict.FAILED, "the candidate Deployment is gone")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Observation(Verdict.FAILED, "progress deadline exceeded", ready, desired)
    current = [p for p in pods if _of_rollout(p, rollout_id)]
    for pod in sorted(current, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        problem = pod_problem(pod, max_restarts)
        if problem:
            return Observation(Verdict.FAILED, problem, ready, desired)
    generation = int((deployment.get("metadata") or {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        why = "the controller has not seen this generation"
        return Observation(Verdict.WAITING, why, ready, desired)
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated == ready == available == desired == total and desired > 0:
        return Observation(Verdict.READY, f"{ready}/{desired} ready", ready, desired)
    return Observation(
        Verdict.WAITING,
        f"{ready}/{desired} ready, {updated} updated, {available} available",
        ready,
        desired,
    )


def _of_rollout(pod: Pod, rollout_id: str) -> bool:
    meta = pod.get("metadata") or {}
    owned = (meta.get("annotations") or {}).get(ROLLOUT_ANNOTATION) == rollout_id
    return owned and "deletionTimestamp" not in meta


def observe(kube: KubeRest, app: App, rollout: Rollout) -> Observation:
    """The candidate's Deployment and this rollout's pods, read and assessed."""
    found = kube.read(deployments(app.namespace, slot_name(app, rollout.colour)))
    deployment = cast("Deployment | None", found)
    if deployment is not None:
        owner = (deployment["metadata"].get("annotations") or {}).get(ROLLOUT_ANNOTATION)
        if owner != rollout.rollout_id:
            return Observation(Verdict.FAILED, f"the slot now holds rollout {owner}")
    listed = kube.items(pods(app.namespace), labelSelector=f"{NAME_LABEL}={app.name}")
    return assess(
        deployment,
        [p for p in cast("list[Pod]", listed) if _of_rollout(p, rollout.rollout_id)],
        rollout_id=rollout.rollout_id,
        max_restarts=app.health.max_restarts,
    )
