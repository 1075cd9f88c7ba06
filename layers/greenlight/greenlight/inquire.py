"""The read model behind ``greenlight status``, ``greenlight history`` and ``greenlight trace``.

The builders (:func:`status_document`, :func:`history_document`, :func:`trace_document`,
:func:`match`) are pure: records of the store in, a JSON-ready document out, at a given ``now``.
:class:`Reader` is the thin part that reads those records from the rollouts table:

- the apps: the state items (``sk = state``, ``pk`` beginning ``app#``), by a Scan with a
  filter, paginated and bounded (:data:`MAX_PAGES`). The table, not the apps file, because it
  holds what was deployed (an app taken out of the file keeps its history), and because a
  reader with the table needs nothing else (no bucket, no apps file parsing);
- an app's state, its newest and live rollouts (GetItem), its last rollouts
  (:meth:`RolloutStore.history`);
- a rollout by commit or id: one Query per app over its ``rollout#`` items, projected to the
  id and the commit, then :func:`match`;
- the fleet's latest reloads (``edge#fleet``), the night state and its latest ``run#``, the
  notifier's record (``notify#<rollout_id>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import PermanentError
from .lifecycle import ENDED, IN_FLIGHT
from .store.fleet import FLEET_PK, FleetState
from .store.marshal import plain, value
from .store.night import NightState, NightStore
from .store.notify import NotifyRecord, NotifyStore
from .store.rollouts import AppState, Rollout, RolloutStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_PAGES = 20  # a Scan or Query of the CLI reads at most this many pages (1 MB each)
RELOADS = 20  # the fleet's reloads looked back over for each instance's config version
MIN_PREFIX = 7  # a commit is named by at least this many hex digits, as git does
SUCCESS = "Success"  # an instance's outcome when the apply document succeeded there
HEX = re.compile(r"^[0-9a-f]+$")


class InquiryError(PermanentError):
    """An app, commit or rollout the table does not have, or a name that fits several."""


class Unknown(InquiryError):
    pass


class Ambiguous(InquiryError):
    pass


# ------------------------------------------------------------------ times
def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC (``2026-11-27T10:15:02Z``)."""
    if not ms:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if ms % 1000 == 0 else f".{ms % 1000:03d}Z")


def span(seconds: float) -> str:
    """A duration as a person reads it: ``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# ------------------------------------------------------------------ status
class AppView(NamedTuple):
    """One app as the table has it: its state item, and its newest and live rollouts."""

    state: AppState
    newest: Rollout | None = None
    live: Rollout | None = None


def deployment(rollout: Rollout) -> dict[str, Any]:
    """The Kubernetes Deployment of the rollout's slot."""
    return {
        "name": f"{rollout.app}-{rollout.colour.value}",
        "namespace": rollout.namespace,
        "colour": rollout.colour.value,
    }


def app_status(view: AppView, now_ms: int) -> dict[str, Any]:
    state, newest, live = view
    live_doc = None
    if state.live_rollout_id or state.live_version:
        live_doc = {
            "colour": state.live_colour.value,
            "version": state.live_version or None,
            "commit": live.commit if live is not None else None,
            "image": state.live_image or None,
            "rollout_id": state.live_rollout_id or None,
            "phase": state.live_phase.value if state.live_phase else None,
            "backup_colour": state.backup_colour.value if state.backup_colour else None,
        }
    flight = None
    if newest is not None and newest.phase in IN_FLIGHT:
        flight = {
            "rollout_id": newest.rollout_id,
            "commit": newest.commit,
            "version": newest.version,
            "colour": newest.colour.value,
            "phase": newest.phase.value,
            "since": iso(newest.entered_at),
            "in_phase_seconds": max(0, (now_ms - newest.entered_at) // 1000),
        }
    last = None
    if newest is not None and flight is None:
        last = {
            "rollout_id": newest.rollout_id,
            "commit": newest.commit,
            "phase": newest.phase.value,
            "reason": newest.reason,
            "at": iso(newest.entered_at),
        }
    return {
        "app": state.app,
        "deployed": live_doc is not None,
        "live": live_doc,
        "in_flight": flight,
        "newest": last,
    }


def instance_versions(reloads: Sequence[FleetState]) -> list[dict[str, Any]]:
    """Each instance of the latest reload, with the config version it last applied: the
    newest reload (of ``reloads``, newest first) whose apply succeeded there."""
    if not reloads:
        return []
    out = []
    for instance, outcome in sorted(reloads[0]["instances"].items()):
        applied = next(
            (r for r in reloads if r["instances"].get(instance, {}).get("outcome") == SUCCESS),
            None,
        )
        out.append(
            {
                "instance": instance,
                "config_version": applied["version_id"] if applied else None,
                "config_sha256": applied["sha256"] if applied else None,
                "current": applied is reloads[0],
                "outcome": outcome.get("outcome", ""),
                "command_id": outcome.get("command_id") or None,
                "detail": outcome.get("detail") or "",
            }
        )
    return out


def fleet_status(reloads: Sequence[FleetState], now_ms: int) -> dict[str, Any] | None:
    if not reloads:
        return None
    latest = reloads[0]
    return {
        "status": latest["status"],
        "degraded": latest["degraded"],
        "config_version": latest["version_id"],
        "config_sha256": latest["sha256"],
        "why": latest["why"],
        "at": iso(latest["at"] * 1000),
        "age_seconds": max(0, now_ms // 1000 - latest["at"]),
        "instances": instance_versions(reloads),
    }


def night_status(
    group: str, state: NightState, last_run: Mapping[str, Any] | None, now_ms: int
) -> dict[str, Any]:
    run = None
    if last_run:
        at = int(last_run.get("at") or 0)
        run = {
            "action": last_run.get("action"),
            "status": last_run.get("status"),
            "why": last_run.get("why"),
            "removed": last_run.get("removed"),
            "at": iso(at * 1000),
            "age_seconds": max(0, now_ms // 1000 - at),
        }
    return {
        "group": group,
        "paused_until": state.paused_until.isoformat() if state.paused_until else None,
        "skip": state.skip.isoformat() if state.skip else None,
        "draining": state.draining_until > now_ms,
        "draining_until": iso(state.draining_until),
        "last_run": run,
    }


def status_document(
    apps: Sequence[AppView],
    reloads: Sequence[FleetState],
    night: dict[str, Any] | None,
    now_ms: int,
) -> dict[str, Any]:
    """``greenlight status``: every app, the fleet, the night (built by :func:`night_status`)."""
    return {
        "at": iso(now_ms),
        "apps": [app_status(v, now_ms) for v in sorted(apps, key=lambda v: v.state.app)],
        "fleet": fleet_status(reloads, now_ms),
        "night": night,
    }


# ------------------------------------------------------------------ history
def history_entry(rollout: Rollout, now_ms: int) -> dict[str, Any]:
    return {
        "rollout_id": rollout.rollout_id,
        "commit": rollout.commit,
        "version": rollout.version,
        "image": rollout.image,
        "colour": rollout.colour.value,
        "source": rollout.source,
        "outcome": rollout.phase.value,
        "ended": rollout.phase in ENDED,
        "reason": rollout.reason,
        "started_at": iso(rollout.created_at),
        "entered_at": iso(rollout.entered_at),
        "age_seconds": max(0, (now_ms - rollout.created_at) // 1000),
    }


def history_document(app: str, rollouts: Sequence[Rollout], now_ms: int) -> dict[str, Any]:
    """``greenlight history APP``: the app's last rollouts, newest first."""
    ordered = sorted(rollouts, key=lambda r: r.rollout_id, reverse=True)
    return {"app": app, "at": iso(now_ms), "rollouts": [history_entry(r, now_ms) for r in ordered]}


# ------------------------------------------------------------------ trace
class Candidate(NamedTuple):
    """A rollout as the search sees it."""

    app: str
    rollout_id: str
    commit: str | None


def match(query: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The rollouts ``query`` names, the one to trace first: a rollout id (exactly), or a
    commit (a prefix of at least :data:`MIN_PREFIX` hex digits) with every rollout of it,
    newest first. :class:`Unknown` when none fits; :class:`Ambiguous` when the prefix fits
    several commits (or one commit in several apps)."""
    wanted = query.strip().lower()
    by_id = [c for c in candidates if c.rollout_id == query.strip()]
    if by_id:
        return by_id
    if not HEX.match(wanted):
        raise Unknown(f"{query!r}: no rollout has this id, and it is not a commit (hex)")
    if len(wanted) < MIN_PREFIX:
        raise Unknown(f"{query!r}: give at least {MIN_PREFIX} hex digits of the commit")
    found = [c for c in candidates if c.commit and c.commit.lower().startswith(wanted)]
    if not found:
        raise Unknown(f"no rollout of a commit beginning {wanted}")
    commits = sorted({(c.app, c.commit or "") for c in found})
    if len(commits) > 1:
        named = ", ".join(f"{commit[:12]} ({app})" for app, commit in commits)
        raise Ambiguous(f"{wanted} fits {len(commits)} commits: {named}; give more digits")
    return sorted(found, key=lambda c: c.rollout_id, reverse=True)


def phases(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A rollout's moves, oldest first (the first is ``deploying``)."""
    ordered = sorted(history, key=lambda e: int(e.get("at") or 0))
    return [
        {
            "phase": str(e.get("phase", "")),
            "at": iso(int(e.get("at") or 0)),
            "by": e.get("by"),
            "why": e.get("why"),
        }
        for e in ordered
    ]


def trace_document(
    rollout: Rollout,
    history: Sequence[Mapping[str, Any]],
    notify: NotifyRecord | None,
    *,
    others: Sequence[str] = (),
) -> dict[str, Any]:
    """``greenlight trace``: delivery -> rollout -> image and digest -> Deployment -> edge
    config version and sha256 -> SSM command per instance -> what the notifier sent."""
    return {
        "commit": rollout.commit,
        "rollout_id": rollout.rollout_id,
        "app": rollout.app,
        "delivery": rollout.delivery,
        "source": rollout.source,
        "repository": rollout.repository,
        "branch": rollout.branch,
        "version": rollout.version,
        "image": rollout.image,
        "digest": rollout.digest,
        "deployment": deployment(rollout),
        "phase": rollout.phase.value,
        "reason": rollout.reason,
        "phases": phases(history),
        "config_version": rollout.config_version,
        "config_sha256": rollout.config_sha256,
        "ssm_commands": dict(sorted((rollout.ssm_commands or {}).items())),
        "statuses": [
            {"target": s.target, "state": s.state, "at": iso(s.at), "detail": s.detail}
            for s in (notify.sent if notify is not None else ())
        ],
        "other_rollouts": list(others),
    }


# ------------------------------------------------------------------ the reader
@dataclass
class Reader:
    """Reads what the builders need from the rollouts table (and nothing else)."""

    client: DynamoDBClient
    table: str
    night_group: str = ""

    def _pages(self, operation: str, **request: Any) -> Iterator[dict[str, Any]]:
        """The items of a Scan or a Query, page after page, at most :data:`MAX_PAGES`."""
        call = self.client.scan if operation == "scan" else self.client.query
        for _ in range(MAX_PAGES):
            page = call(TableName=self.table, **request)
            for found in page.get("Items", []):
                yield plain(found)
            after = page.get("LastEvaluatedKey")
            if not after:
                return
            request["ExclusiveStartKey"] = after

    def apps(self) -> list[str]:
        """Every app the table has a state item for."""
        found = self._pages(
            "scan",
            FilterExpression="sk = :state AND begins_with(pk, :app)",
            ExpressionAttributeValues={":state": value("state"), ":app": value("app#")},
            ProjectionExpression="pk",
        )
        return sorted(str(i["pk"]).removeprefix("app#") for i in found)

    def _store(self) -> RolloutStore:
        return RolloutStore(self.client, self.table)

    def view(self, app: str) -> AppView:
        store = self._store()
        state = store.state(app)
        newest = store.rollout(app, state.rollout_id) if state.rollout_id else None
        live = None
        if state.live_rollout_id:
            same = newest is not None and newest.rollout_id == state.live_rollout_id
            live = newest if same else store.rollout(app, state.live_rollout_id)
        return AppView(state, newest, live)

    def reloads(self) -> list[FleetState]:
        """The fleet's latest reloads, newest first (the first is its ``state``)."""
        items = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": value(FLEET_PK), ":r": value("reload#")},
            ScanIndexForward=False,
            Limit=RELOADS,
        )["Items"]
        return [
            FleetState(
                status=str(r["status"]),
                degraded=bool(r["degraded"]),
                sha256=str(r["sha256"]),
                version_id=str(r["version_id"]),
                why=str(r.get("why", "")),
                at=int(r["at"]),
                instances=dict(r.get("instances") or {}),
            )
            for r in map(plain, items)
        ]

    def night(self, now_ms: int) -> dict[str, Any] | None:
        if not self.night_group:
            return None
        state = NightStore(self.client, self.table, self.night_group).load()
        runs = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={
                ":pk": value(f"night#{self.night_group}"),
                ":r": value("run#"),
            },
            ScanIndexForward=False,
            Limit=1,
        )["Items"]
        return night_status(self.night_group, state, plain(runs[0]) if runs else None, now_ms)

    # ------------------------------------------------------------------ the documents
    def status(self, now_ms: int) -> dict[str, Any]:
        views = [self.view(app) for app in self.apps()]
        return status_document(views, self.reloads(), self.night(now_ms), now_ms)

    def history(self, app: str, *, limit: int, now_ms: int) -> dict[str, Any]:
        rollouts = self._store().history(app, limit=limit)
        if not rollouts and self._store().state(app).rollout_id is None:
            known = ", ".join(self.apps()) or "none"
            raise Unknown(f"no app {app!r} in table {self.table} (apps: {known})")
        return history_document(app, rollouts, now_ms)

    def candidates(self) -> list[Candidate]:
        out = []
        for app in self.apps():
            found = self._pages(
                "query",
                KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
                ExpressionAttributeValues={":pk": value(f"app#{app}"), ":r": value("rollout#")},
                ProjectionExpression="#r, #c",
                ExpressionAttributeNames={"#r": "rollout_id", "#c": "commit"},
            )
            out += [Candidate(app, str(i["rollout_id"]), i.get("commit")) for i in found]
        return out

    def trace(self, query: str) -> dict[str, Any]:
        chosen, *others = match(query, self.candidates())
        found = self.client.get_item(
            TableName=self.table,
            Key={"pk": value(f"app#{chosen.app}"), "sk": value(f"rollout#{chosen.rollout_id}")},
            ConsistentRead=True,
        ).get("Item")
        if not found:  # gone between the search and the read
            raise Unknown(f"rollout {chosen.rollout_id} of {chosen.app} is gone")
        raw = plain(found)
        notify = NotifyStore(self.client, self.table).load(chosen.app, chosen.rollout_id)
        return trace_document(
            Rollout.from_item(raw),
            raw.get("history") or [],
            notify,
            others=[o.rollout_id for o in others],
        )
