"""Scaling a slot down, only if it still holds what the caller means to scale down.

A slot's Deployment carries the rollout it was written for (``greenlight.io/rollout-id``). A
slot is scaled to zero only when ``holds`` accepts that rollout, and the write is a JSON patch
that tests it again on the server, so a rollout never scales away pods that a newer rollout
has just written into the same slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from .errors import Conflict, Invalid, NotFound
from .names import ROLLOUT_ANNOTATION, deployments
from .rest import JSON_PATCH, KubeRest

logger = Logger(child=True)
SCALE_TRIES = 3


def owner(deployment: dict[str, Any] | None) -> str | None:
    """The rollout whose candidate a slot's Deployment holds (None: none, or not Greenlight's)."""
    if deployment is None:
        return None
    return (deployment["metadata"].get("annotations") or {}).get(ROLLOUT_ANNOTATION)


def scale_down(
    kube: KubeRest, namespace: str, name: str, *, holds: Callable[[str | None], bool]
) -> bool:
    """Scale the Deployment ``name`` to zero if ``holds(its rollout)``; whether it was.

    The write is a JSON patch whose first operation tests what was read: the rollout
    annotation (a status update in between changes nothing), or for a Deployment without one,
    its resourceVersion (read again, a few times, when only its status moved on). A slot that
    a newer candidate was written into meanwhile is left as it is."""
    for _ in range(SCALE_TRIES):
        current = kube.read(deployments(namespace, name))
        if current is None or not holds(owner(current)):
            return False
        patch = [_precondition(current), {"op": "replace", "path": "/spec/replicas", "value": 0}]
        try:
            kube.patch(deployments(namespace, name), patch, content_type=JSON_PATCH)
        except (Conflict, Invalid) as exc:
            logger.info("slot changed meanwhile", extra={"slot": name, "why": str(exc)})
            continue
        except NotFound:
            return False
        return True
    return False


def _precondition(current: dict[str, Any]) -> dict[str, Any]:
    rollout = owner(current)
    if rollout is not None:
        path = "/metadata/annotations/" + ROLLOUT_ANNOTATION.replace("~", "~0").replace("/", "~1")
        return {"op": "test", "path": path, "value": rollout}
    version = current["metadata"]["resourceVersion"]
    return {"op": "test", "path": "/metadata/resourceVersion", "value": version}
