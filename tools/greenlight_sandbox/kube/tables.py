"""Server-side printing: ``meta.k8s.io/v1`` Tables, what ``kubectl get`` shows.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` whenever it prints
human-readable output (``get``, ``get -w``); without a Table it falls back to NAME and AGE. The
columns follow the apiserver's printers (K/pkg/printers/internalversion/printers.go) for the
kinds one watches most (pods, nodes, deployments, replicasets, services, namespaces); any
other kind gets the default Name / Created At table (AS/pkg/registry/rest/table.go).
``includeObject``: ``Metadata`` (default: a PartialObjectMetadata per row), ``Object``, ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .kinds import Kind

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def wants_table(accept: str | None) -> bool:
    for part in (accept or "").split(","):
        params = {
            k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])
        }
        if (
            params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") == "v1"
        ):
            return True
    return False


def _age(stamp: str | None, now: float) -> str:
    """duration.HumanDuration of the time since ``stamp`` (kubectl's AGE)."""
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "<unknown>"
    seconds = int(max(now - then, 0))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _column(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


def _pod(obj: dict[str, Any], now: float) -> list[Any]:
    """printPod: READY, STATUS (the reason kubectl shows), RESTARTS, AGE; wide: IP, NODE."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in statuses:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if reason == "Running" and statuses and ready == 0 and status.get("phase") == "Running":
        reason = "Running"
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [
        obj["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(obj["metadata"].get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _node(obj: dict[str, Any], now: float) -> list[Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    state = (
        "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    )
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    addresses = (obj.get("status") or {}).get("addresses") or []
    internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "<none>")
    return [
        obj["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        _age(obj["metadata"].get("creationTimestamp"), now),
        "v1.37.0-greenlight",
        internal,
    ]


def _deployment(obj: dict[str, Any], now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        _age(obj["metadata"].get("creationTimestamp"), now),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    ]


def _replicaset(obj: dict[str, Any], now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        int(spec.get("replicas", 1)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


def _service(obj: dict[str, Any], now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = ",".join(
        f"{p.get('port')}"
        + (f":{p['nodePort']}" if p.get("nodePort") else "")
        + f"/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    return [
        obj["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


def _namespace(obj: dict[str, Any], now: float) -> list[Any]:
    return [
        obj["metadata"]["name"],
        (obj.get("status") or {}).get("phase", "Active"),
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


def _default(obj: dict[str, Any], now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


NAME = _column("Name", fmt="name")
AGE = _column("Age")
PRINTERS: dict[str, tuple[list[dict[str, Any]], Callable[[dict[str, Any], float], list[Any]]]] = {
    "pods": (
        [
            NAME,
            _column("Ready"),
            _column("Status"),
            _column("Restarts"),
            AGE,
            _column("IP", priority=1),
            _column("Node", priority=1),
            _column("Nominated Node", priority=1),
            _column("Readiness Gates", priority=1),
        ],
        _pod,
    ),
    "nodes": (
        [
            NAME,
            _column("Status"),
            _column("Roles"),
            AGE,
            _column("Version"),
            _column("Internal-IP", priority=1),
        ],
        _node,
    ),
    "deployments": (
        [
            NAME,
            _column("Ready"),
            _column("Up-to-date", "integer"),
            _column("Available", "integer"),
            AGE,
            _column("Containers", priority=1),
            _column("Images", priority=1),
        ],
        _deployment,
    ),
    "replicasets": (
        [
            NAME,
            _column("Desired", "integer"),
            _column("Current", "integer"),
            _column("Ready", "integer"),
            AGE,
        ],
        _replicaset,
    ),
    "services": (
        [
            NAME,
            _column("Type"),
            _column("Cluster-IP"),
            _column("External-IP"),
            _column("Port(s)"),
            AGE,
        ],
        _service,
    ),
    "namespaces": ([NAME, _column("Status"), AGE], _namespace),
}
DEFAULT = ([NAME, _column("Created At", "date")], _default)


def table(
    kind: Kind,
    objects: list[dict[str, Any]],
    *,
    resource_version: str | None = None,
    include: str | None = None,
    headers: bool = True,
) -> dict[str, Any]:
    columns, printer = PRINTERS.get(kind.resource, DEFAULT)
    now = time.time()
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        if include == "Object":
            row["object"] = {"kind": kind.kind, "apiVersion": kind.api_version, **obj}
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}}
    if resource_version:
        out["metadata"]["resourceVersion"] = resource_version
    if headers:
        out["columnDefinitions"] = columns
    out["rows"] = rows
    return out
