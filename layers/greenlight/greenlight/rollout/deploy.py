"""Writing the candidate Deployment and Service to the cluster, safe to repeat.

Create when missing, replace (with the read resourceVersion, retried on 409) when present; the
Service keeps its NodePort. With ``dry_run`` nothing is written and the plan is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from ..cluster.kube import Conflict, NotFound, call
from ..cluster.rest import KubeRest, deployments, services
from ..errors import PermanentError

logger = Logger(child=True)


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # created | replaced | unchanged | would-create | would-replace

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action}


def read(kube: KubeRest, path: str) -> dict[str, Any] | None:
    try:
        return call(kube.get, path)
    except NotFound:
        return None


def _create(kube: KubeRest, path: str, body: dict[str, Any], namespace: str) -> None:
    try:
        call(kube.create, path, body)
    except NotFound:
        raise PermanentError(f"namespace {namespace!r} does not exist") from None


def apply_deployment(kube: KubeRest, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def attempt() -> Change:
        current = read(kube, deployments(namespace, name))
        if current is None:
            if dry_run:
                return Change("Deployment", name, "would-create")
            _create(kube, deployments(namespace), body, namespace)
            return Change("Deployment", name, "created")
        if current["spec"]["selector"] != body["spec"]["selector"]:
            raise PermanentError(
                f"Deployment {namespace}/{name} has selector {current['spec']['selector']}, "
                f"not {body['spec']['selector']}: it was not made by Greenlight; "
                "delete it or rename the app"
            )
        if dry_run:
            return Change("Deployment", name, "would-replace")
        version = current["metadata"]["resourceVersion"]
        replacement = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
        call(kube.replace, deployments(namespace, name), replacement)
        return Change("Deployment", name, "replaced")

    from kubernetes.utils import DEFAULT_RETRY, on_error

    # client-go's RetryOnConflict: re-read and write again on a stale resourceVersion.
    change: Change = on_error(DEFAULT_RETRY, lambda exc: isinstance(exc, Conflict), attempt)
    return change


def apply_service(kube: KubeRest, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    current = read(kube, services(namespace, name))
    if current is None:
        if dry_run:
            return Change("Service", name, "would-create")
        _create(kube, services(namespace), body, namespace)
        return Change("Service", name, "created")
    wanted_ports = [(p["port"], p["targetPort"]) for p in body["spec"]["ports"]]
    have_ports = [(p["port"], p.get("targetPort")) for p in current["spec"].get("ports", [])]
    if (
        current["spec"].get("selector") == body["spec"]["selector"]
        and current["spec"].get("type") == "NodePort"
        and have_ports == wanted_ports
    ):
        return Change("Service", name, "unchanged")
    if dry_run:
        return Change("Service", name, "would-replace")
    # A strategic merge patch keyed by port keeps the allocated nodePort.
    patch = {
        "spec": {
            "type": "NodePort",
            "selector": body["spec"]["selector"],
            "ports": body["spec"]["ports"],
        }
    }
    call(kube.patch, services(namespace, name), patch)
    return Change("Service", name, "replaced")
