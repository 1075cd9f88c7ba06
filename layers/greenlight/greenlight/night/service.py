"""The night shrink and the morning restore of the worker Auto Scaling Group.

**Shrink**: the plan (plan.py) over the group's nodes; the group's desired capacity recorded
in its tag ``greenlight:night-capacity`` (only if not there yet: a second run keeps the first
figure); the chosen nodes labelled ``node.kubernetes.io/exclude-from-external-load-balancers``
(with our annotation, so the morning knows they were ours) and the HAProxy fleet pushed
without them; then each node in turn drained (drain.py) and its instance terminated with
``ShouldDecrementDesiredCapacity``, so the group does not replace it. If the push is not taken
(or fails outright), a drain stops, or anything else fails once nodes are marked, the nodes not
yet gone get their label and cordon back off, the fleet is pushed again (each step before
leaves that push its time; if it fails too, the edge's next push, at the latest its reconcile
schedule, takes the nodes back), and the run stops and says why. Nodes already terminated stay
terminated: their pods run elsewhere.

**Restore**: the group's desired capacity back to the recorded figure (within MinSize and
MaxSize); a wait, to the deadline, for that many worker nodes Ready in Kubernetes; every node
still marked by a shrink unmarked and uncordoned; the fleet pushed with the new nodes; the tag
removed once the nodes are all there. Safe to run twice (the second finds nothing to change and
pushes an unchanged config), and after an evening run that stopped half way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from ..cluster.names import EXCLUDE_FROM_LOAD_BALANCERS as EXCLUDE_LABEL
from ..cluster.names import NIGHT_ANNOTATION, PDBS, nodes, pods
from ..cluster.resources import is_ready
from ..cluster.rest import MERGE_PATCH, KubeRest
from ..deadline import Deadline
from ..edgepush import PUSH_BUDGET_SECONDS, EdgePush, taken
from ..errors import ConfigError
from .drain import Drained, DrainError, cordon, drain
from .plan import NightSize, NodeView, plan

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import TagTypeDef

    from ..cluster.bodies import Node

CAPACITY_TAG = "greenlight:night-capacity"


class NightStatus(StrEnum):
    """How a night run ended."""

    DRY_RUN = "dry-run"
    NOTHING_TO_DO = "nothing-to-do"
    STOPPED = "stopped"
    SHRUNK = "shrunk"
    RESTORED = "restored"
    INCOMPLETE = "incomplete"
    REFUSED = "refused"
    SKIPPED = "skipped"
    SAVED = "saved"
    REJECTED = "rejected"


@dataclass
class NightDeps:
    kube: KubeRest
    autoscaling: AutoScalingClient
    edge_push: EdgePush  # the haproxy function's push, synchronously
    group: str
    node_selector: dict[str, str] | None = None
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Group:
    name: str
    desired: int
    min_size: int
    max_size: int
    instances: list[str]
    tags: dict[str, str] = field(default_factory=dict)


def describe(deps: NightDeps) -> Group:
    found = deps.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[deps.group])
    groups = found.get("AutoScalingGroups") or []
    if not groups:
        raise ConfigError(f"no Auto Scaling Group named {deps.group!r}")
    g = groups[0]
    return Group(
        name=g["AutoScalingGroupName"],
        desired=int(g["DesiredCapacity"]),
        min_size=int(g["MinSize"]),
        max_size=int(g["MaxSize"]),
        instances=sorted(
            i["InstanceId"]
            for i in g.get("Instances") or []
            if i.get("LifecycleState") in ("InService", "Pending", "Pending:Wait")
        ),
        tags={t["Key"]: t["Value"] for t in g.get("Tags") or []},
    )


def _tag(deps: NightDeps, value: str | None) -> None:
    tag: TagTypeDef = {
        "ResourceId": deps.group,
        "ResourceType": "auto-scaling-group",
        "Key": CAPACITY_TAG,
        "PropagateAtLaunch": False,
    }
    if value is None:
        deps.autoscaling.delete_tags(Tags=[tag])
    else:
        deps.autoscaling.create_or_update_tags(Tags=[{**tag, "Value": value}])


def _mark(deps: NightDeps, node: str, *, on: bool) -> None:
    """Take ``node`` out of (or put it back into) the HAProxy backends, as ours."""
    body = {
        "metadata": {
            "labels": {EXCLUDE_LABEL: "true" if on else None},
            "annotations": {NIGHT_ANNOTATION: "shrink" if on else None},
        }
    }
    deps.kube.patch(nodes(node), body, content_type=MERGE_PATCH)


def before_push(deadline: Deadline) -> Deadline:
    """The deadline of what comes before an edge push that must still be made (the push that
    puts nodes back after a drain stops, the morning's push): it leaves the push
    ``edgepush.PUSH_BUDGET_SECONDS``, or a third of what is left if that is less."""
    left = deadline.remaining()
    return deadline.sooner(left - min(PUSH_BUDGET_SECONDS, left / 3))


def _taken(pushed: dict[str, Any]) -> bool:
    return taken(pushed)[0]


def _nodes(deps: NightDeps) -> list[Node]:
    selector = ",".join(f"{k}={v}" for k, v in (deps.node_selector or {}).items())
    query = {"labelSelector": selector} if selector else {}
    return cast("list[Node]", deps.kube.items(nodes(), **query))


def _cluster(deps: NightDeps) -> tuple[list[Any], list[Any], list[Any]]:
    return _nodes(deps), deps.kube.items(pods()), deps.kube.items(PDBS)


def shrink(
    deps: NightDeps,
    size: NightSize,
    *,
    deadline: Deadline,
    dry_run: bool = False,
    group: Group | None = None,
) -> dict[str, Any]:
    """The evening shrink (above); ``group``: the worker group as the caller described it."""
    group = group or describe(deps)
    found = _cluster(deps)
    chosen = plan(*found, size, asg_min_size=group.min_size, node_selector=deps.node_selector)
    report: dict[str, Any] = {"action": "shrink", "group": group.name, "plan": chosen.to_dict()}
    outside = [n.name for n in chosen.remove if n.instance_id not in group.instances]
    going = [n for n in chosen.remove if n.instance_id in group.instances]
    if outside:
        report["not_in_group"] = outside
    if dry_run:
        return report | {"status": NightStatus.DRY_RUN, "would_remove": [n.name for n in going]}
    if not going:
        return report | {"status": NightStatus.NOTHING_TO_DO, "removed": []}
    if CAPACITY_TAG not in group.tags:
        _tag(deps, str(group.desired))
    removed: list[str] = []
    drained: list[Drained] = []
    try:
        for node in going:
            _mark(deps, node.name, on=True)
        # Each step leaves the push that puts nodes back (if the run stops) its time.
        pushed = deps.edge_push(
            f"night: {len(going)} nodes out of the HAProxy backends",
            deadline=before_push(deadline),
        )
        failure: str | None = f"the HAProxy fleet did not take the push: {pushed}"
        if _taken(pushed):
            failure = _drain_and_terminate(deps, going, before_push(deadline), drained, removed)
    except Exception as exc:  # whatever stopped the run, the nodes that stay go back (below)
        failure = f"{type(exc).__name__}: {exc}"
    evictions = sum(len(d.evicted) for d in drained)
    if failure is not None:
        fleet = _put_back(deps, [n.name for n in going if n.name not in removed], deadline)
        stopped = {"status": NightStatus.STOPPED, "why": failure, "removed": removed}
        return report | stopped | {"evictions": evictions, "fleet": fleet}
    return report | {"status": NightStatus.SHRUNK, "removed": removed, "evictions": evictions}


def _put_back(deps: NightDeps, staying: list[str], deadline: Deadline) -> str:
    """A shrink that stopped: the nodes that stay lose their label and cordon, and the fleet
    is pushed with them; the fleet's status. A push that fails here is healed by the next one
    (the edge's reconcile schedule): the cluster no longer marks the nodes out."""
    for name in staying:
        _mark(deps, name, on=False)
        cordon(deps.kube, name, on=False)
    try:
        pushed = deps.edge_push(
            "night: nodes that stay back in the HAProxy backends", deadline=deadline
        )
    except Exception as exc:  # reported; the nodes are unmarked, the next push takes them
        return f"not pushed: {type(exc).__name__}: {exc}"
    return taken(pushed)[1]


def _drain_and_terminate(
    deps: NightDeps,
    going: list[NodeView],
    deadline: Deadline,
    drained: list[Drained],
    removed: list[str],
) -> str | None:
    """Each node in turn: drained, then its instance terminated; why it stopped (None: it did
    not). Each node's drain (its evictions, even of a drain that stopped) is added to
    ``drained``, and each node whose instance is terminated to ``removed``, as it happens."""
    for node in going:
        drained.append(Drained(node.name))
        try:
            drain(
                deps.kube,
                node.name,
                [p for p, _ in node.movable],
                deadline=deadline,
                result=drained[-1],
            )
        except DrainError as exc:
            return f"{node.name}: {exc}"
        deps.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=node.instance_id, ShouldDecrementDesiredCapacity=True
        )
        removed.append(node.name)
    return None


def restore(
    deps: NightDeps, *, deadline: Deadline, poll_seconds: float = 5.0, dry_run: bool = False
) -> dict[str, Any]:
    """The morning restore (above). A dry run reads only and says what it would do: the
    target and how many instances the group is raised by, the nodes it would unmark, and
    whether the recorded capacity tag goes."""
    group = describe(deps)
    recorded = group.tags.get(CAPACITY_TAG)
    target = group.desired
    if recorded is not None and recorded.isdigit():
        target = min(max(int(recorded), group.min_size), group.max_size)
    report: dict[str, Any] = {"action": "restore", "group": group.name, "target": target}
    report["added"] = max(0, target - group.desired)  # instances the group is raised by
    if dry_run:  # what it would do: reads only
        return report | _restore_plan(deps, group.desired, recorded)
    if group.desired < target:
        deps.autoscaling.set_desired_capacity(
            AutoScalingGroupName=group.name, DesiredCapacity=target, HonorCooldown=False
        )
    ready = _ready_nodes(deps)
    waiting = before_push(deadline)
    while len(ready) < target and waiting.remaining() > poll_seconds:
        deps.sleep(poll_seconds)
        ready = _ready_nodes(deps)
    unmarked = []
    for node in _nodes(deps):
        meta = node["metadata"]
        if NIGHT_ANNOTATION in (meta.get("annotations") or {}):
            _mark(deps, meta["name"], on=False)
            cordon(deps.kube, meta["name"], on=False)
            unmarked.append(meta["name"])
    pushed = deps.edge_push(
        "night: restore, the group's nodes back in the HAProxy backends", deadline=deadline
    )
    complete = len(ready) >= target
    if complete and recorded is not None:
        _tag(deps, None)
    return report | {
        "status": NightStatus.RESTORED if complete and _taken(pushed) else NightStatus.INCOMPLETE,
        "ready_nodes": len(ready),
        "unmarked": unmarked,
        "fleet": (pushed.get("fleet") or {}).get("status", "no-fleet"),
    }


def _restore_plan(deps: NightDeps, desired: int, recorded: str | None) -> dict[str, Any]:
    """What a restore would do, read only: the nodes it would unmark and whether the recorded
    capacity tag goes."""
    marked = [
        n["metadata"]["name"]
        for n in _nodes(deps)
        if NIGHT_ANNOTATION in (n["metadata"].get("annotations") or {})
    ]
    return {
        "status": NightStatus.DRY_RUN,
        "desired": desired,
        "recorded_capacity": recorded,
        "ready_nodes": len(_ready_nodes(deps)),
        "would_unmark": marked,
        "would_remove_tag": recorded is not None,
    }


def _ready_nodes(deps: NightDeps) -> list[str]:
    return [n["metadata"]["name"] for n in _nodes(deps) if is_ready(n)]
