"""The night-shrink plan: which worker nodes can go tonight without a pod left unschedulable.

Pure: it reads Nodes, Pods and PodDisruptionBudgets as the Kubernetes API returns them (plain
JSON) and returns a :class:`Plan`. Nothing here talks to the cluster.

How nodes are chosen:

1. **Candidates**: worker nodes that are Ready and not cordoned. A node holding a pod that
   cannot move is *blocked*, with the reason: a pod with no controller; a pod with local storage
   (``emptyDir``/``hostPath``) unless annotated
   ``cluster-autoscaler.kubernetes.io/safe-to-evict: "true"``; a pod annotated
   ``safe-to-evict: "false"``; a ``kube-system`` pod no PDB covers; a pod whose PDB can never
   allow a disruption (``maxUnavailable: 0``, or ``minAvailable`` at least the pods it covers).
   DaemonSet pods, mirror (static) pods and finished pods do not move and do not block.
2. **How many may go**: at most ``nodes - max(keep, min_nodes, asg_min_size)``, where ``keep`` is
   the night size (a count of nodes to keep, or a fraction of today's nodes).
3. **Order**: smallest nodes first (they give up the least room), and among nodes of one size
   (an Auto Scaling Group's, usually) the least loaded first (the larger of requested CPU and
   memory over allocatable); always from the zone with the most nodes left, so zones stay
   balanced (their node counts within one of each other, or as close as they were).
4. **Capacity**: a node goes only if every pod on it that must move fits on the nodes that stay,
   first fit by decreasing free room, where a node's room is its allocatable CPU, memory and pod
   slots, times ``1 - headroom``, less the requests of the pods already there (and of the pods
   the plan has moved there). Pods moved onto a node that goes later move again.

PodDisruptionBudgets are respected at eviction time by the Eviction API (one pod at a time,
waiting for its replacement to be Ready); the plan only keeps out nodes whose pods a PDB would
never let go.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cluster.names import MIRROR_ANNOTATION as MIRROR
from ..cluster.names import SAFE_TO_EVICT, ZONE_LABEL
from ..cluster.resources import Room, is_ready, pod_request
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..cluster.bodies import Node, Pod, PodDisruptionBudget


class NightSizeError(ConfigError, ValueError):
    """A night size that cannot be (the apps file's night section prevents it)."""


@dataclass(frozen=True)
class NightSize:
    """The night size: ``keep`` nodes, or ``keep_fraction`` of today's nodes (rounded up)."""

    keep: int | None = None
    keep_fraction: float | None = None
    min_nodes: int = 1
    headroom: float = 0.1  # fraction of each staying node's allocatable kept free

    def __post_init__(self) -> None:
        if (self.keep is None) == (self.keep_fraction is None):
            raise NightSizeError("night size: give exactly one of keep and keep_fraction")
        if self.keep is not None and self.keep < 0:
            raise NightSizeError(f"night size: keep must be >= 0, got {self.keep}")
        if self.keep_fraction is not None and not 0 <= self.keep_fraction <= 1:
            raise NightSizeError(
                f"night size: keep_fraction must be in [0, 1], got {self.keep_fraction}"
            )
        if not 0 <= self.headroom < 1:
            raise NightSizeError(f"night size: headroom must be in [0, 1), got {self.headroom}")

    def nodes_to_keep(self, today: int) -> int:
        if self.keep is not None:
            wanted = self.keep
        else:
            assert self.keep_fraction is not None
            wanted = -int(-today * self.keep_fraction // 1)  # ceiling
        return max(wanted, self.min_nodes)


@dataclass
class NodeView:
    name: str
    zone: str
    instance_id: str
    allocatable: Room
    requested: Room
    movable: list[tuple[str, Room]] = field(default_factory=list)  # (ns/name, request)
    blockers: list[str] = field(default_factory=list)

    @property
    def load(self) -> float:
        cpu = self.requested.cpu_m / self.allocatable.cpu_m if self.allocatable.cpu_m else 1.0
        mem = self.requested.memory / self.allocatable.memory if self.allocatable.memory else 1.0
        return max(cpu, mem)


@dataclass
class Plan:
    nodes: int  # candidates today
    keep: int  # the night size, after min_nodes and the group's MinSize
    remove: list[NodeView] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # node -> why it stays
    blocked: dict[str, list[str]] = field(default_factory=dict)  # node -> what holds it
    moves: dict[str, str] = field(default_factory=dict)  # pod -> node it lands on
    capacity: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> list[str]:
        return [n.name for n in self.remove]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "keep": self.keep,
            "remove": [
                {
                    "node": n.name,
                    "instance_id": n.instance_id,
                    "zone": n.zone,
                    "load": round(n.load, 3),
                    "pods_to_move": [p for p, _ in n.movable],
                }
                for n in self.remove
            ],
            "blocked": self.blocked,
            "kept": self.kept,
            "capacity": self.capacity,
        }


def _owner_kinds(pod: Pod) -> set[str]:
    return {o.get("kind", "") for o in (pod["metadata"].get("ownerReferences") or [])}


def _expression_holds(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    return {
        "In": labels.get(key) in values,
        "NotIn": labels.get(key) not in values,
        "Exists": key in labels,
        "DoesNotExist": key not in labels,
    }.get(str(op), False)


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if not selector:
        return False  # a null selector matches nothing
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def _pdb_never_allows(pdb: PodDisruptionBudget, covered: int) -> bool:
    spec = pdb.get("spec") or {}
    if "maxUnavailable" in spec:
        value = spec["maxUnavailable"]
        if isinstance(value, str) and value.endswith("%"):
            return int(value[:-1]) * covered < 100  # rounds down to no pod at all
        return int(value) <= 0
    value = spec.get("minAvailable", 0)
    if isinstance(value, str) and value.endswith("%"):
        needed = -(-int(value[:-1]) * covered // 100)
    else:
        needed = int(value)
    return needed >= covered


def _key(pod: Pod) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def _node_views(
    nodes: list[Node], node_selector: dict[str, str] | None
) -> tuple[dict[str, NodeView], dict[str, str]]:
    left_out: dict[str, str] = {}
    views: dict[str, NodeView] = {}
    for node in nodes:
        meta = node["metadata"]
        name, labels = meta["name"], meta.get("labels") or {}
        if node_selector and any(labels.get(k) != v for k, v in node_selector.items()):
            continue
        if (node.get("spec") or {}).get("unschedulable"):
            left_out[name] = "cordoned"
        elif not is_ready(node):
            left_out[name] = "not Ready"
        else:
            provider = (node.get("spec") or {}).get("providerID", "")
            views[name] = NodeView(
                name=name,
                zone=labels.get(ZONE_LABEL, ""),
                instance_id=provider.rsplit("/", 1)[-1] if provider else "",
                allocatable=Room.of((node.get("status") or {}).get("allocatable") or {}),
                requested=Room(0, 0, 0),
            )
    return views, left_out


@dataclass
class _Budgets:
    """Which PodDisruptionBudgets cover which pods, and how many pods each covers."""

    pdbs: list[PodDisruptionBudget]
    covered: dict[int, int] = field(default_factory=dict)
    of_pod: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, pdbs: list[PodDisruptionBudget], pods: list[Pod]) -> _Budgets:
        budgets = cls(pdbs)
        # Indexed by one of each PDB's matchLabels (namespace, key, value), so that a pod is
        # checked only against the PDBs that could select it.
        index: dict[tuple[str, str, str], list[int]] = {}
        rest: dict[str, list[int]] = {}
        for i, pdb in enumerate(pdbs):
            ns = pdb["metadata"].get("namespace", "")
            labels = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if labels:
                key, value = next(iter(sorted(labels.items())))
                index.setdefault((ns, key, value), []).append(i)
            else:
                rest.setdefault(ns, []).append(i)
        for pod in pods:
            meta = pod["metadata"]
            ns, labels = meta.get("namespace", ""), meta.get("labels") or {}
            maybe = [i for k, v in labels.items() for i in index.get((ns, k, v), [])]
            for i in sorted(set(maybe)) + rest.get(ns, []):
                if _matches((pdbs[i].get("spec") or {}).get("selector"), labels):
                    budgets.covered[i] = budgets.covered.get(i, 0) + 1
                    budgets.of_pod.setdefault(_key(pod), []).append(i)
        return budgets


def _blocker(pod: Pod, budgets: _Budgets) -> str | None:
    """Why this pod cannot be moved, or None."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    key, annotations = _key(pod), meta.get("annotations") or {}
    safe = annotations.get(SAFE_TO_EVICT)
    pdb_ids = budgets.of_pod.get(key, [])
    local = any("emptyDir" in v or "hostPath" in v for v in spec.get("volumes") or [])
    never = bool(pdb_ids) and _pdb_never_allows(
        budgets.pdbs[pdb_ids[0]], budgets.covered[pdb_ids[0]]
    )
    checks = (
        (safe == "false", f"annotated {SAFE_TO_EVICT}=false"),
        (not _owner_kinds(pod), "no controller would recreate it"),
        (local and safe != "true", "local storage (emptyDir/hostPath)"),
        (
            meta.get("namespace") == "kube-system" and not pdb_ids,
            "kube-system pod without a PodDisruptionBudget",
        ),
        (len(pdb_ids) > 1, "more than one PodDisruptionBudget (eviction refuses)"),
        (
            never,
            "PodDisruptionBudget "
            f"{budgets.pdbs[pdb_ids[0]]['metadata']['name'] if pdb_ids else ''} "
            "allows no disruption",
        ),
    )
    return next((f"{key}: {why}" for holds, why in checks if holds), None)


def view(
    nodes: list[Node],
    pods: list[Pod],
    pdbs: list[PodDisruptionBudget],
    *,
    node_selector: dict[str, str] | None = None,
) -> tuple[list[NodeView], dict[str, str]]:
    """The candidate nodes with their pods classified, and nodes left out (with why)."""
    views, left_out = _node_views(nodes, node_selector)
    budgets = _Budgets.of(pdbs, pods)
    for pod in pods:
        spec = pod.get("spec") or {}
        node = views.get(spec.get("nodeName", ""))
        if node is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        request = pod_request(spec)
        node.requested.cpu_m += request.cpu_m
        node.requested.memory += request.memory
        node.requested.pods += 1
        if "DaemonSet" in _owner_kinds(pod) or MIRROR in (pod["metadata"].get("annotations") or {}):
            continue  # stays with its node; takes its share of the node's room
        why = _blocker(pod, budgets)
        if why is not None:
            node.blockers.append(why)
        else:
            node.movable.append((_key(pod), Room(request.cpu_m, request.memory, 1)))
    return list(views.values()), left_out


def _free(node: NodeView, headroom: float) -> Room:
    a, r = node.allocatable, node.requested
    return Room(
        int(a.cpu_m * (1 - headroom)) - r.cpu_m,
        int(a.memory * (1 - headroom)) - r.memory,
        a.pods - r.pods,
    )


def _place(
    moving: list[tuple[str, Room]], free: dict[str, Room], others: list[str]
) -> dict[str, str] | None:
    """Where each pod lands (largest pods first, each on the node with the most free CPU that
    has room for it), updating ``free``; None (and ``free`` untouched) when one does not fit."""
    heap = [(-free[n].cpu_m, -free[n].memory, n) for n in others]
    heapq.heapify(heap)
    trial: dict[str, Room] = {}
    placed: dict[str, str] = {}
    for pod, need in sorted(moving, key=lambda p: (p[1].cpu_m, p[1].memory), reverse=True):
        skipped, target = [], None
        while heap:
            item = heapq.heappop(heap)
            if trial.get(item[2], free[item[2]]).fits(need):
                target = item[2]
                break
            skipped.append(item)
        for item in skipped:
            heapq.heappush(heap, item)
        if target is None:
            return None
        room = trial.setdefault(target, free[target].copy())
        room.take(need)
        heapq.heappush(heap, (-room.cpu_m, -room.memory, target))
        placed[pod] = target
    free.update(trial)
    return placed


def plan(
    nodes: list[Node],
    pods: list[Pod],
    pdbs: list[PodDisruptionBudget],
    size: NightSize,
    *,
    asg_min_size: int = 0,
    node_selector: dict[str, str] | None = None,
) -> Plan:
    views, left_out = view(nodes, pods, pdbs, node_selector=node_selector)
    keep = max(size.nodes_to_keep(len(views)), asg_min_size)
    result = Plan(nodes=len(views), keep=min(keep, len(views)), kept=dict(left_out))
    free = {node.name: _free(node, size.headroom) for node in views}
    result.blocked = {n.name: n.blockers for n in views if n.blockers}
    staying = {n.name: n for n in views}
    zones: dict[str, int] = {}
    for node in views:
        zones[node.zone] = zones.get(node.zone, 0) + 1
    on_node = {n.name: list(n.movable) for n in views}
    allowed_spread = max(1, spread(zones))
    budget = len(views) - result.keep
    remaining = sorted((n for n in views if not n.blockers), key=_order)
    while budget > 0 and remaining:
        # The zone with the most nodes left gives the next node: zones stay balanced.
        most = max(zones[n.zone] for n in remaining)
        pick = next(n for n in remaining if zones[n.zone] == most)
        remaining.remove(pick)
        if spread(zones | {pick.zone: zones[pick.zone] - 1}) > allowed_spread:
            result.kept[pick.name] = "its zone would fall out of balance with the others"
            continue
        placed = _place(on_node[pick.name], free, [n for n in staying if n != pick.name])
        if placed is None:
            result.kept[pick.name] = "its pods do not fit on the nodes that stay"
            continue
        for pod, need in on_node[pick.name]:
            on_node[placed[pod]].append((pod, need))
            result.moves[pod] = placed[pod]
        del staying[pick.name]
        zones[pick.zone] -= 1
        result.remove.append(pick)
        budget -= 1
    for node in remaining:
        result.kept.setdefault(node.name, "the night size is reached")
    result.capacity = _arithmetic(views, staying, size)
    return result


def _order(node: NodeView) -> tuple[int, int, float, str]:
    """Smallest nodes first (they give up the least room), least loaded among equals."""
    return (node.allocatable.cpu_m, node.allocatable.memory, node.load, node.name)


def spread(zones: dict[str, int]) -> int:
    """How far apart the zones' node counts are (max - min)."""
    return max(zones.values()) - min(zones.values()) if zones else 0


def _arithmetic(
    views: list[NodeView], staying: dict[str, NodeView], size: NightSize
) -> dict[str, Any]:
    def total(nodes: list[NodeView]) -> dict[str, int]:
        return {
            "cpu_m": sum(n.allocatable.cpu_m for n in nodes),
            "memory_mi": sum(n.allocatable.memory for n in nodes) // 2**20,
            "pods": sum(n.allocatable.pods for n in nodes),
        }

    requested = {
        "cpu_m": sum(n.requested.cpu_m for n in views),
        "memory_mi": sum(n.requested.memory for n in views) // 2**20,
        "pods": sum(n.requested.pods for n in views),
    }
    return {
        "allocatable_today": total(views),
        "allocatable_tonight": total(list(staying.values())),
        "requested": requested,
        "headroom": size.headroom,
    }
