"""What a change to the rollouts table announces: pure, one stream record in, events out.

The table is the outbox. Every phase change is a transaction that appends an entry to the
rollout's history (``store.rollouts``), every fleet reload writes a ``reload#`` item
(``store.fleet``), every night run that acted a ``run#`` item (``store.night``). The table's
stream carries each write to the announce function, which publishes what this module makes of
it. So an event is published for every change that was committed and for none that was not,
even when the function that made the change dies right after it.

Delivery is at least once (a batch retried after a failure publishes some events again); each
event carries an ``id`` that is the same every time it is published, for consumers to drop
repeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ..lifecycle import ENDED, Phase

SOURCE = "greenlight"
ROLLOUT_STATE_CHANGE = "Greenlight Rollout State Change"
EDGE_PUSH = "Greenlight Edge Push"
NIGHT = "Greenlight Night"
DETAIL_TYPES = (ROLLOUT_STATE_CHANGE, EDGE_PUSH, NIGHT)
VERSION = 1  # of the details' schemas (events/schemas/)


class Announcement(NamedTuple):
    detail_type: str
    detail: dict[str, Any]
    at: datetime


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _iso(ms: int) -> str:
    return _instant(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def announcements(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[Announcement]:
    """The events one write of the table makes (``old``/``new``: the item before and after,
    as plain values; None where it did not exist)."""
    if new is None:
        return []
    pk, sk = str(new.get("pk", "")), str(new.get("sk", ""))
    if pk.startswith("app#") and sk.startswith("rollout#"):
        return rollout_changes(old, new)
    if pk == "edge#fleet" and sk.startswith("reload#") and new != old:
        return [edge_push(new)]
    if pk.startswith("night#") and sk.startswith("run#") and old is None:
        return [night_run(new)]
    return []


def rollout_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Announcement]:
    """One event per history entry the write added: each is one phase change."""
    before = len((old or {}).get("history") or [])
    history = list(new.get("history") or [])
    return [
        _rollout_event(new, entry, index) for index, entry in enumerate(history) if index >= before
    ]


def _rollout_event(
    rollout: Mapping[str, Any], entry: Mapping[str, Any], index: int
) -> Announcement:
    at = int(entry.get("at") or 0)
    phase = Phase(entry["phase"])
    detail: dict[str, Any] = {
        "version": VERSION,
        "id": f"{rollout['rollout_id']}/{index}",
        "app": rollout["app"],
        "rollout_id": rollout["rollout_id"],
        "source": rollout.get("source"),
        "repository": rollout.get("repository"),
        "branch": rollout.get("branch"),
        "commit": rollout.get("commit"),
        "image": rollout["image"],
        "digest": rollout.get("digest"),
        "colour": rollout.get("colour"),
        "from": entry.get("from"),
        "to": phase.value,
        "ended": phase in ENDED,
        "by": entry.get("by"),
        "reason": entry.get("why") or "",
        "at": _iso(at),
    }
    if rollout.get("config_version"):
        detail["config_version"] = rollout["config_version"]
        detail["config_sha256"] = rollout.get("config_sha256") or ""
    return Announcement(ROLLOUT_STATE_CHANGE, detail, _instant(at))


def edge_push(reload: Mapping[str, Any]) -> Announcement:
    at = int(reload.get("at") or 0) * 1000
    instances = reload.get("instances") or {}
    detail = {
        "version": VERSION,
        "id": f"edge/{reload['sk'].removeprefix('reload#')}",
        "status": reload["status"],
        "degraded": bool(reload.get("degraded")),
        "config_version": reload.get("version_id") or "",
        "config_sha256": reload.get("sha256") or "",
        "reason": reload.get("why") or "",
        "at": _iso(at),
        "instances": [
            {
                "instance_id": instance,
                "outcome": str(outcome.get("outcome", "")),
                "detail": str(outcome.get("detail", "")),
                "command_id": str(outcome.get("command_id", "")),
            }
            for instance, outcome in sorted(instances.items())
        ],
    }
    return Announcement(EDGE_PUSH, detail, _instant(at))


def night_run(run: Mapping[str, Any]) -> Announcement:
    at = int(run.get("at") or 0) * 1000
    detail: dict[str, Any] = {
        "version": VERSION,
        "id": f"{run['pk']}/{run['sk']}",
        "group": run.get("group") or str(run["pk"]).removeprefix("night#"),
        "action": run["action"],
        "status": run["status"],
        "reason": run.get("why") or "",
        "at": _iso(at),
    }
    for key in ("removed", "unmarked"):
        if key in run:
            detail[key] = [str(n) for n in run[key]]
    for key in ("target", "ready_nodes"):
        if key in run:
            detail[key] = int(run[key])
    if "fleet" in run:
        detail["fleet"] = str(run["fleet"])
    return Announcement(NIGHT, detail, _instant(at))
