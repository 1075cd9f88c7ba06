"""Writing a slot's Deployment and Service to the cluster, safe to repeat; scaling a slot down.

Create when missing, replace (with the read resourceVersion, retried on 409) when present; the
Service keeps its NodePort. With ``dry_run`` nothing is written and the plan is returned.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from ..cluster.errors import Conflict, NotFound
from ..cluster.names import deployments, services
from ..cluster.rest import MERGE_PATCH, KubeRest
from ..errors import PermanentError


class Action(StrEnum):
    CREATED = "created"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    WOULD_CREATE = "would-create"
    WOULD_REPLACE = "would-replace"


class Change(NamedTuple):
    kind: str
    name: str
    action: Action

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action.value}


def _create(kube: KubeRest, path: str, body: dict[str, Any], namespace: str) -> None:
    try:
        kube.create(path, body)
    except NotFound:
        raise PermanentError(f"namespace {namespace!r} does not exist") from None


def apply_deployment(kube: KubeRest, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def attempt() -> Change:
        current = kube.read(deployments(namespace, name))
        if current is None:
            if dry_run:
                return Change("Deployment", name, Action.WOULD_CREATE)
            _create(kube, deployments(namespace), body, namespace)
            return Change("Deployment", name, Action.CREATED)
        if current["spec"]["selector"] != body["spec"]["selector"]:
            raise PermanentError(
                f"Deployment {namespace}/{name} has selector {current['spec']['selector']}, "
                f"not {body['spec']['selector']}: it was not made by Greenlight; "
                "delete it or rename the app"
            )
        if dry_run:
            return Change("Deployment", name, Action.WOULD_REPLACE)
        version = current["metadata"]["resourceVersion"]
        replacement = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
        kube.replace(deployments(namespace, name), replacement)
        return Change("Deployment", name, Action.REPLACED)

    from kubernetes.utils import DEFAULT_RETRY, on_error

    # client-go's RetryOnConflict: re-read and write again on a stale resourceVersion.
    change: Change = on_error(DEFAULT_RETRY, lambda exc: isinstance(exc, Conflict), attempt)
    return change


def apply_service(kube: KubeRest, body: dict[str, Any], *, dry_run: bool) -> Change:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    current = kube.read(services(namespace, name))
    if current is None:
        if dry_run:
            return Change("Service", name, Action.WOULD_CREATE)
        _create(kube, services(namespace), body, namespace)
        return Change("Service", name, Action.CREATED)
    wanted_ports = [(p["port"], p["targetPort"]) for p in body["spec"]["ports"]]
    have_ports = [(p["port"], p.get("targetPort")) for p in current["spec"].get("ports", [])]
    if (
        current["spec"].get("selector") == body["spec"]["selector"]
        and current["spec"].get("type") == "NodePort"
        and have_ports == wanted_ports
    ):
        return Change("Service", name, Action.UNCHANGED)
    if dry_run:
        return Change("Service", name, Action.WOULD_REPLACE)
    # A JSON merge patch replaces the whole ports list. (A strategic merge patch merges Service
    # ports by `port`: with a new service_port it would keep the old entry beside the new one,
    # two ports named "http", which the apiserver refuses with 422.) Each port keeps the
    # nodePort of the current port of its name, so HAProxy's backends stay valid.
    node_ports = {p.get("name", ""): p.get("nodePort") for p in current["spec"].get("ports", [])}
    ports = [
        {**p, "nodePort": node_ports[p.get("name", "")]}
        if "nodePort" not in p and node_ports.get(p.get("name", ""))
        else p
        for p in body["spec"]["ports"]
    ]
    patch = {"spec": {"type": "NodePort", "selector": body["spec"]["selector"], "ports": ports}}
    kube.patch(services(namespace, name), patch, content_type=MERGE_PATCH)
    return Change("Service", name, Action.REPLACED)
