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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cluster.resources import Room, is_ready, pod_request

if TYPE_CHECKING:
    from ..cluster.bodies import Deployment, Node, Pod, PodSpec


@dataclass
class NodeRoom:
    node: str
    room: Room


def _tolerated(taint_key: str | None, taint_value: str | None, spec: PodSpec) -> bool:
    return any(
        (t.get("operator") == "Exists" and t.get("key") in (None, "", taint_key))
        or (t.get("key") == taint_key and t.get("value") == taint_value)
        for t in spec.get("tolerations") or []
    )


def _schedulable(node: Node, template: PodSpec) -> bool:
    spec, meta = node.get("spec") or {}, node.get("metadata") or {}
    if spec.get("unschedulable") or not is_ready(node):
        return False
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in (template.get("nodeSelector") or {}).items()):
        return False
    return all(
        _tolerated(taint.get("key"), taint.get("value"), template)
        for taint in spec.get("taints") or []
        if taint.get("effect") in ("NoSchedule", "NoExecute")
    )


def free_rooms(
    nodes: list[Node], pods: list[Pod], template: PodSpec, *, leaving: dict[str, str]
) -> list[NodeRoom]:
    """Room left on each node the template could be scheduled on; pods whose labels include
    ``leaving`` (the slot being replaced) count as gone."""
    rooms = {
        node["metadata"]["name"]: NodeRoom(
            node["metadata"]["name"], Room.of((node.get("status") or {}).get("allocatable") or {})
        )
        for node in nodes
        if _schedulable(node, template)
    }
    for pod in pods:
        spec = pod.get("spec") or {}
        found = rooms.get(spec.get("nodeName", ""))
        if found is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if leaving and all(labels.get(k) == v for k, v in leaving.items()):
            continue
        found.room.take(pod_request(spec))
    return list(rooms.values())


def shortfall(
    nodes: list[Node], pods: list[Pod], deployment: Deployment, *, leaving: dict[str, str]
) -> str | None:
    """None when every replica of ``deployment`` fits; else why not, with the arithmetic."""
    template = deployment["spec"]["template"]["spec"]
    replicas = int(deployment["spec"].get("replicas", 1))
    need = pod_request(template)
    rooms = free_rooms(nodes, pods, template, leaving=leaving)
    free_cpu = sum(max(r.room.cpu_m, 0) for r in rooms)
    free_memory = sum(max(r.room.memory, 0) for r in rooms) // 2**20
    placed = 0
    for _ in range(replicas):
        rooms.sort(key=lambda r: (r.room.cpu_m, r.room.memory), reverse=True)
        found = next((r for r in rooms if r.room.fits(need)), None)
        if found is None:
            break
        found.room.take(need)
        placed += 1
    if placed == replicas:
        return None
    return (
        f"not enough allocatable capacity for {replicas} replicas of {need.cpu_m}m CPU and "
        f"{need.memory // 2**20}Mi memory: room for {placed} on {len(rooms)} schedulable "
        f"nodes ({free_cpu}m CPU and {free_memory}Mi memory free in all)"
    )
