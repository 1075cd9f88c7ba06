"""Writing the candidate Deployment and Service to the cluster, safe to repeat.

Create when missing, replace (with the read resourceVersion, retried on 409) when present; the
Service keeps its NodePort. With ``dry_run`` nothing is written and the plan is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..cluster.kube import Conflict, NotFound, call
from ..errors import PermanentError

if TYPE_CHECKING:
    from kubernetes import client as k8s

logger = Logger(child=True)


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # created | replaced | unchanged | would-create | would-replace

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action}


def read_deployment(apps: k8s.AppsV1Api, *, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = call(apps.read_namespaced_deployment, name, namespace)
    except NotFound:
        return None
    result: dict[str, Any] = apps.api_client.sanitize_for_serialization(found)
    return result


def apply_deployment(apps: k8s.AppsV1Api, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def attempt() -> Change:
        current = read_deployment(apps, namespace=namespace, name=name)
        if current is None:
            if dry_run:
                return Change("Deployment", name, "would-create")
            try:
                call(apps.create_namespaced_deployment, namespace, body)
            except NotFound:
                raise PermanentError(f"namespace {namespace!r} does not exist") from None
            return Change("Deployment", name, "created")
        if current["spec"]["selector"] != body["spec"]["selector"]:
            raise PermanentError(
                f"Deployment {namespace}/{name} has selector {current['spec']['selector']}, "
                f"not {body['spec']['selector']}: it was not made by Greenlight; "
                "delete it or rename the app"
            )
        if dry_run:
            return Change("Deployment", name, "would-replace")
        replacement = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": current["metadata"]["resourceVersion"],
            },
        }
        call(apps.replace_namespaced_deployment, name, namespace, replacement)
        return Change("Deployment", name, "replaced")

    from kubernetes.utils import DEFAULT_RETRY, on_error

    # client-go's RetryOnConflict: re-read and write again on a stale resourceVersion.
    change: Change = on_error(DEFAULT_RETRY, lambda exc: isinstance(exc, Conflict), attempt)
    return change


def apply_service(core: k8s.CoreV1Api, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        found = call(core.read_namespaced_service, name, namespace)
    except NotFound:
        if dry_run:
            return Change("Service", name, "would-create")
        try:
            call(core.create_namespaced_service, namespace, body)
        except NotFound:
            raise PermanentError(f"namespace {namespace!r} does not exist") from None
        return Change("Service", name, "created")
    current = core.api_client.sanitize_for_serialization(found)
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
    call(core.patch_namespaced_service, name, namespace, patch)
    return Change("Service", name, "replaced")
