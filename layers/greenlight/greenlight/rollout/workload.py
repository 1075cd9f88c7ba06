"""The candidate Deployment and Service, computed purely from the app and the live template.

The candidate goes into the slot that is not live (``cluster.names``). Its pod template is
cloned from the live Deployment (so teams keep owning env, probes and resources), with the new
image and the slot's labels; an app with no live Deployment yet is bootstrapped from its config.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ..cluster.names import (
    COMMIT_ANNOTATION,
    CONTROLLER_LABELS,
    IMAGE_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLLOUT_ANNOTATION,
    selector,
    slot_name,
)
from ..colour import Colour
from ..errors import PermanentError

if TYPE_CHECKING:
    from ..appconfig import App


def bootstrap_template(app: App) -> dict[str, Any]:
    """A pod template made from the app's config, for its first deploy."""
    probe = {
        "httpGet": {"path": app.health.path, "port": app.container_port},
        "periodSeconds": app.health.interval_seconds,
        "timeoutSeconds": app.health.timeout_seconds,
        "failureThreshold": 3,
    }
    return {
        "metadata": {"labels": {}},
        "spec": {
            "containers": [
                {
                    "name": app.container,
                    "image": "",
                    "ports": [{"containerPort": app.container_port, "protocol": "TCP"}],
                    "readinessProbe": probe,
                    "resources": {
                        "requests": {"cpu": app.resources.cpu, "memory": app.resources.memory},
                        "limits": {"memory": app.resources.memory},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 30,
        },
    }


def candidate_deployment(
    app: App,
    *,
    colour: Colour,
    image: str,
    version: str,
    rollout_id: str,
    live: dict[str, Any] | None,
    tag: str | None = None,
) -> dict[str, Any]:
    """The Deployment body for the candidate slot ``colour``: its container runs ``image``
    (``repo@sha256:...`` once ECR gave the digest: ``images.pinned``); ``tag`` (default
    ``image``), the reference asked for, is kept for people in the ``greenlight.io/image``
    annotations. ``live``: the live Deployment as a dict, or None when there is none yet;
    ``version``: the commit id (or the image tag)."""
    tag = tag or image
    if live is not None:
        template = copy.deepcopy(live["spec"]["template"])
        replicas = max(int(live["spec"].get("replicas") or 0), app.replicas)
    else:
        template = bootstrap_template(app)
        replicas = app.replicas
    _label(template, app, colour, version=version, rollout_id=rollout_id, tag=tag)
    _set_image(template, app, image)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": slot_name(app, colour),
            "namespace": app.namespace,
            "labels": {**selector(app, colour), MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {
                COMMIT_ANNOTATION: version,
                ROLLOUT_ANNOTATION: rollout_id,
                IMAGE_ANNOTATION: tag,
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(app, colour)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "progressDeadlineSeconds": app.health.ready_deadline_seconds,
            "revisionHistoryLimit": 2,
            "template": template,
        },
    }


def _label(
    template: dict[str, Any], app: App, colour: Colour, *, version: str, rollout_id: str, tag: str
) -> None:
    """The slot's labels and the rollout's annotations on a pod template (controller-added
    labels dropped)."""
    meta = template.setdefault("metadata", {})
    meta.pop("creationTimestamp", None)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in CONTROLLER_LABELS}
    labels.update(selector(app, colour))
    meta["labels"] = labels
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        COMMIT_ANNOTATION: version,
        ROLLOUT_ANNOTATION: rollout_id,
        IMAGE_ANNOTATION: tag,
    }


def _set_image(template: dict[str, Any], app: App, image: str) -> None:
    containers = template.get("spec", {}).get("containers") or []
    target = [c for c in containers if c.get("name") == app.container]
    if not target:
        names = [c.get("name") for c in containers]
        raise PermanentError(
            f"app {app.name!r}: container {app.container!r} not in the live "
            f"pod template (containers: {names})"
        )
    target[0]["image"] = image


def candidate_service(app: App, *, colour: Colour) -> dict[str, Any]:
    """The NodePort Service of slot ``colour`` (HAProxy reaches the slot through it)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": slot_name(app, colour),
            "namespace": app.namespace,
            "labels": {**selector(app, colour), MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "type": "NodePort",
            "selector": selector(app, colour),
            "ports": [
                {
                    "name": "http",
                    "port": app.service_port,
                    "targetPort": app.container_port,
                    "protocol": "TCP",
                }
            ],
            "externalTrafficPolicy": "Cluster",
        },
    }
