"""What a change to the rollouts table measures: pure, one stream record in, data points out.

The metrics come from the same outbox as the events (``decide.py``): the announce function
turns every committed write into the data points below, and publishes them as CloudWatch
embedded metric format (``entry.py``). So no other function pays anything for metrics, and a
metric is counted for every change that was committed and for none that was not. Delivery is
at least once: a stream batch retried after a failure may count some changes twice.

Rollouts (``app#<name>``, ``rollout#...``), for each history entry the write added, per app:
``RolloutsStarted`` (the first entry: deploying), ``RolloutsPromoted`` (entered promoting),
``RolloutsLive``, ``RolloutsRolledBack``, ``RolloutsFailed``, ``RolloutsAborted``,
``RolloutsSuperseded``; ``PushToLiveSeconds`` (the push's time, its ``sequence``, to entering
live); ``GateDecisionSeconds`` (entering gating to the gate's verdict: awaiting approval,
promoting or rolled back, not a person's nor a newer push's); ``PhaseDeadlineExpired`` (a move a
phase's deadline made: ``lifecycle.expiry_move``), per app and in total.

Fleet reloads (``reload#`` items): ``FleetDegraded`` (1 or 0 per reload) and
``FleetApplySeconds`` (one point per instance the apply document ran on).

Night runs (``run#`` items): ``NodesRemoved`` and ``Evictions`` per shrink, ``NodesRestored``
and ``NightRestoreIncomplete`` (1 when the restore did not end ``restored``) per restore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..lifecycle import Actor, Phase, expiry_move

NAMESPACE = "Greenlight"
COUNT, SECONDS = "Count", "Seconds"

# The phase a history entry enters -> the count it adds to.
ENTERED = {
    Phase.PROMOTING: "RolloutsPromoted",
    Phase.LIVE: "RolloutsLive",
    Phase.ROLLED_BACK: "RolloutsRolledBack",
    Phase.FAILED: "RolloutsFailed",
    Phase.ABORTED: "RolloutsAborted",
    Phase.SUPERSEDED: "RolloutsSuperseded",
}
# Leaving gating for one of these, by the gate, is the gate's decision.
VERDICTS = frozenset({Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLED_BACK})
RESTORED = "restored"  # the night's status of a restore that finished (NightStatus.RESTORED)


class Point(NamedTuple):
    """One data point: ``app`` is its one dimension besides the service (None: service only);
    ``instance`` is kept beside it in the log (searchable), not a dimension."""

    name: str
    unit: str
    value: float
    at: int  # ms
    app: str | None = None
    instance: str | None = None


def points(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Point]:
    """The data points one write of the table makes (``old``/``new``: the item before and
    after, as plain values; None where it did not exist)."""
    if new is None:
        return []
    pk, sk = str(new.get("pk", "")), str(new.get("sk", ""))
    if pk.startswith("app#") and sk.startswith("rollout#"):
        return rollout_points(old, new)
    if pk == "edge#fleet" and sk.startswith("reload#") and new != old:
        return reload_points(new)
    if pk.startswith("night#") and sk.startswith("run#") and old is None:
        return night_points(new)
    return []


def rollout_points(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Point]:
    before = len((old or {}).get("history") or [])
    history = list(new.get("history") or [])
    out: list[Point] = []
    for index in range(before, len(history)):
        out += _entry_points(new, history, index)
    return out


def _entry_points(
    rollout: Mapping[str, Any], history: list[Mapping[str, Any]], index: int
) -> list[Point]:
    entry = history[index]
    app = str(rollout.get("app") or str(rollout["pk"]).removeprefix("app#"))
    at = int(entry.get("at") or 0)
    phase = Phase(entry["phase"])
    frm = entry.get("from")
    out: list[Point] = []
    if index == 0 and phase is Phase.DEPLOYING:
        out.append(Point("RolloutsStarted", COUNT, 1, at, app))
    if phase in ENTERED:
        out.append(Point(ENTERED[phase], COUNT, 1, at, app))
    if phase is Phase.LIVE:
        pushed = int(rollout.get("sequence") or rollout.get("created_at") or 0)
        if pushed:
            out.append(Point("PushToLiveSeconds", SECONDS, _seconds(at - pushed), at, app))
    if frm == Phase.GATING.value and phase in VERDICTS and entry.get("by") != Actor.MANUAL:
        gated = _entered(history, index, Phase.GATING)
        if gated is not None:
            out.append(Point("GateDecisionSeconds", SECONDS, _seconds(at - gated), at, app))
    if frm and expiry_move(str(frm), str(entry.get("by") or ""), str(entry.get("why") or "")):
        out += [
            Point("PhaseDeadlineExpired", COUNT, 1, at, app),
            Point("PhaseDeadlineExpired", COUNT, 1, at),  # the total, for the alarm
        ]
    return out


def _entered(history: list[Mapping[str, Any]], index: int, phase: Phase) -> int | None:
    """When (ms) the rollout last entered ``phase`` before ``history[index]``."""
    for entry in reversed(history[:index]):
        if entry.get("phase") == phase.value:
            return int(entry.get("at") or 0)
    return None


def _seconds(ms: int) -> float:
    return round(max(0, ms) / 1000, 3)


def reload_points(reload: Mapping[str, Any]) -> list[Point]:
    at = int(reload.get("at") or 0) * 1000
    out = [Point("FleetDegraded", COUNT, 1 if reload.get("degraded") else 0, at)]
    for instance, outcome in sorted((reload.get("instances") or {}).items()):
        seconds = outcome.get("seconds")
        if seconds is not None:
            out.append(Point("FleetApplySeconds", SECONDS, float(seconds), at, None, instance))
    return out


def night_points(run: Mapping[str, Any]) -> list[Point]:
    at = int(run.get("at") or 0) * 1000
    if run.get("action") == "shrink":
        out = [Point("NodesRemoved", COUNT, len(run.get("removed") or []), at)]
        if "evictions" in run:
            out.append(Point("Evictions", COUNT, int(run["evictions"]), at))
        return out
    if run.get("action") == "restore":
        restored = int(run.get("added") or 0) + len(run.get("unmarked") or [])
        incomplete = 0 if run.get("status") == RESTORED else 1
        return [
            Point("NodesRestored", COUNT, restored, at),
            Point("NightRestoreIncomplete", COUNT, incomplete, at),
        ]
    return []
