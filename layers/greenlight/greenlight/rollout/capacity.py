"""Capacity interlock: a candidate is written only if the cluster has room for every replica.

Before the rollout function writes a candidate Deployment it places the candidate's replicas,
first fit by decreasing free room, on the nodes where the scheduler could put them:

- nodes that are Ready, not cordoned, match the template's ``nodeSelector``, and carry no
  ``NoSchedule``/``NoExecute`` taint the template does not tolerate;
- each node's room is its allocatable CPU, memory and pod slots, less the requests of the pods
  bound to it that have not finished, except the pods of the slot being replaced (they go as
  the candidate comes);
- a replica needs the sum of its containers' requests (and one pod slot).

When not every replica fits, the rollout fails with the arithmetic, before anything is written.
What this leaves out (init containers' requests, pod affinity and topology spread, the extra
replica a rolling update surges) is documented in docs/gate.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def quantity(value: Any, *, milli: bool = False) -> int:
    """A Kubernetes quantity as an integer: CPU in millicores (``milli``), memory in bytes."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a quantity this check understands: {text!r}")
    number, suffix = float(match.group(1)), match.group(2) or ""
    scaled = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    return round(scaled * 1000) if milli else int(scaled)


@dataclass
class Room:
    node: str
    cpu_m: int
    memory: int
    pods: int

    def fits(self, need: Room) -> bool:
        return self.cpu_m >= need.cpu_m and self.memory >= need.memory and self.pods >= 1

    def take(self, need: Room) -> None:
        self.cpu_m -= need.cpu_m
        self.memory -= need.memory
        self.pods -= 1


def is_ready(obj: dict[str, Any]) -> bool:
    """A Node's or Pod's ``Ready`` condition is ``True``."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_request(spec: dict[str, Any]) -> Room:
    cpu = memory = 0
    for container in spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu", 0), milli=True)
        memory += quantity(requests.get("memory", 0))
    return Room("", cpu, memory, 1)


def _schedulable(node: dict[str, Any], template: dict[str, Any]) -> bool:
    spec, meta = node.get("spec") or {}, node.get("metadata") or {}
    if spec.get("unschedulable"):
        return False
    if not is_ready(node):
        return False
    labels = meta.get("labels") or {}
    selector = template.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    tolerations = template.get("tolerations") or []
    for taint in spec.get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(
            (t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")))
            or (t.get("key") == taint.get("key") and t.get("value") == taint.get("value"))
            for t in tolerations
        ):
            return False
    return True


def free_rooms(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    template: dict[str, Any],
    *,
    leaving: dict[str, str],
) -> list[Room]:
    """Room left on each node the template could be scheduled on; pods whose labels include
    ``leaving`` (the slot being replaced) count as gone."""
    rooms = {}
    for node in nodes:
        if not _schedulable(node, template):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        name = node["metadata"]["name"]
        rooms[name] = Room(
            name,
            quantity(allocatable.get("cpu", 0), milli=True),
            quantity(allocatable.get("memory", 0)),
            int(allocatable.get("pods", 110)),
        )
    for pod in pods:
        room = rooms.get((pod.get("spec") or {}).get("nodeName", ""))
        if room is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if leaving and all(labels.get(k) == v for k, v in leaving.items()):
            continue
        room.take(pod_request(pod.get("spec") or {}))
    return list(rooms.values())


def shortfall(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    deployment: dict[str, Any],
    *,
    leaving: dict[str, str],
) -> str | None:
    """None when every replica of ``deployment`` fits; else why not, with the arithmetic."""
    template = deployment["spec"]["template"]["spec"]
    replicas = int(deployment["spec"].get("replicas", 1))
    need = pod_request(template)
    rooms = free_rooms(nodes, pods, template, leaving=leaving)
    free_cpu = sum(max(r.cpu_m, 0) for r in rooms)
    free_memory = sum(max(r.memory, 0) for r in rooms) // 2**20
    placed = 0
    for _ in range(replicas):
        rooms.sort(key=lambda r: (r.cpu_m, r.memory), reverse=True)
        room = next((r for r in rooms if r.fits(need)), None)
        if room is None:
            break
        room.take(need)
        placed += 1
    if placed == replicas:
        return None
    return (
        f"not enough allocatable capacity for {replicas} replicas of {need.cpu_m}m CPU and "
        f"{need.memory // 2**20}Mi memory: room for {placed} on {len(rooms)} schedulable "
        f"nodes ({free_cpu}m CPU and {free_memory}Mi memory free in all)"
    )
