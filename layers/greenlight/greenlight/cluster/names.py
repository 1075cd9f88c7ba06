"""The names Greenlight gives things in the cluster: slots, labels, annotations, API paths.

Greenlight keeps two slots per app, ``<app>-blue`` and ``<app>-green``, each a Deployment and a
NodePort Service. The candidate goes into the slot that is not live.
"""

from __future__ import annotations

from typing import Protocol

from ..colour import Colour

NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COLOUR_LABEL = "greenlight.io/colour"
MANAGED_BY = "greenlight"
COMMIT_ANNOTATION = "greenlight.io/commit"
ROLLOUT_ANNOTATION = "greenlight.io/rollout-id"
IMAGE_ANNOTATION = "greenlight.io/image"
# Labels a controller adds to pods; never copied into a template.
CONTROLLER_LABELS = ("pod-template-hash",)
# The well-known node label that takes a node out of external load balancers (the HAProxy
# backends): the night shrink sets it before a drain, and the edge leaves such nodes out.
EXCLUDE_FROM_LOAD_BALANCERS = "node.kubernetes.io/exclude-from-external-load-balancers"
NIGHT_ANNOTATION = "greenlight.io/night"  # on a node the night shrink took out
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
ZONE_LABEL = "topology.kubernetes.io/zone"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class Named(Protocol):
    @property
    def name(self) -> str: ...


def slot_name(app: Named, colour: Colour) -> str:
    return f"{app.name}-{colour.value}"


def selector(app: Named, colour: Colour) -> dict[str, str]:
    return {NAME_LABEL: app.name, COLOUR_LABEL: colour.value}


def deployments(namespace: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{base}/{name}" if name else base


def services(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/services"
    return f"{base}/{name}" if name else base


def pods(namespace: str | None = None, name: str | None = None) -> str:
    if namespace is None:
        return "/api/v1/pods"
    base = f"/api/v1/namespaces/{namespace}/pods"
    return f"{base}/{name}" if name else base


def nodes(name: str | None = None) -> str:
    return f"/api/v1/nodes/{name}" if name else "/api/v1/nodes"


PDBS = "/apis/policy/v1/poddisruptionbudgets"
