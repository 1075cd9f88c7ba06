"""The night function's events: its two schedules and its manual invokes.

- EventBridge Scheduler (``ScheduleV2``, in the cluster's time zone) sends
  ``{"action": "shrink" | "restore", "scheduled": true, "time": "<scheduled time>"}``; the
  calendar (calendar.py) decides on the local date whether it acts.
- Manual invokes: ``{"action": "plan"}`` (a dry run: the plan, with why each node stays),
  ``{"action": "shrink"}`` and ``{"action": "restore"}`` (now, whatever the calendar says),
  ``{"action": "pause", "until": "YYYY-MM-DD"}`` (no scheduled shrink before that date),
  ``{"action": "resume"}`` (the pause lifted), ``{"action": "skip"}`` (no scheduled shrink
  tonight). Any action takes ``"dry_run": true``.

Pause and skip are kept in the rollouts table (``pk = night#<group>``, ``sk = state``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..errors import ConfigError, EventError, PermanentError, SettingsError
from ..settings import ClusterSettings
from .calendar import NightCalendar, restore_this_morning, shrink_tonight
from .plan import NightSize
from .service import NightDeps, restore, shrink

if TYPE_CHECKING:
    from ..appconfig import NightSettings

logger = Logger(child=True)
ACTIONS = ("plan", "shrink", "restore", "pause", "resume", "skip")
MARGIN_SECONDS = 30  # left to report and put things back when a drain stops


@dataclass(frozen=True)
class NightFunctionSettings:
    table: str
    config_bucket: str
    config_key: str
    edge_function: str
    group: str
    time_zone: str
    cluster: ClusterSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NightFunctionSettings:
        env = os.environ if env is None else env
        missing = [
            name
            for name in (
                "GREENLIGHT_TABLE",
                "GREENLIGHT_CONFIG_BUCKET",
                "GREENLIGHT_EDGE_FUNCTION",
                "GREENLIGHT_NIGHT_GROUP",
                "GREENLIGHT_NIGHT_TIME_ZONE",
            )
            if not env.get(name, "").strip()
        ]
        if missing:
            raise SettingsError(f"missing settings: {', '.join(missing)}")
        return cls(
            table=env["GREENLIGHT_TABLE"],
            config_bucket=env["GREENLIGHT_CONFIG_BUCKET"],
            config_key=env.get("GREENLIGHT_CONFIG_KEY", "").strip() or "config/apps.yaml",
            edge_function=env["GREENLIGHT_EDGE_FUNCTION"],
            group=env["GREENLIGHT_NIGHT_GROUP"],
            time_zone=env["GREENLIGHT_NIGHT_TIME_ZONE"],
            cluster=ClusterSettings.from_env(env),
        )


@dataclass
class NightState:
    paused_until: date | None = None
    skip: date | None = None
    draining_until: int = 0  # ms: rollouts wait until then (read by the rollout function)


class NightStore:
    def __init__(self, client: Any, table: str, group: str) -> None:
        self.client, self.table = client, table
        self.key = {"pk": {"S": f"night#{group}"}, "sk": {"S": "state"}}

    def load(self) -> NightState:
        item = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True)
        item = item.get("Item") or {}

        def day(name: str) -> date | None:
            raw = (item.get(name) or {}).get("S")
            return date.fromisoformat(raw) if raw else None

        return NightState(
            paused_until=day("paused_until"),
            skip=day("skip"),
            draining_until=int((item.get("draining_until") or {}).get("N", 0)),
        )

    def save(self, state: NightState) -> None:
        item = dict(self.key)
        for name, value in (("paused_until", state.paused_until), ("skip", state.skip)):
            if value is not None:
                item[name] = {"S": value.isoformat()}
        if state.draining_until:
            item["draining_until"] = {"N": str(state.draining_until)}
        self.client.put_item(TableName=self.table, Item=item)


class _LazyKube(KubeRest):
    """Cluster access made on first use, not at cold start (EKS: a DescribeCluster call)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self._factory()
        return self._api


@dataclass
class NightRuntime:
    settings: NightFunctionSettings
    apps: AppsSource
    store: NightStore
    deps: NightDeps
    now: Any = None  # () -> aware datetime; the wall clock unless a test sets it

    @classmethod
    def build(cls, settings: NightFunctionSettings, edge_push: Any = None) -> NightRuntime:
        from ..edge.invoke import LambdaEdgePush

        clients = Clients()
        kube = _LazyKube(lambda: api_client(settings.cluster, session=clients.session))
        push = edge_push or LambdaEdgePush(clients.lazy("lambda"), settings.edge_function)
        return cls(
            settings,
            AppsSource(clients.lazy("s3"), settings.config_bucket, settings.config_key),
            NightStore(clients.lazy("dynamodb"), settings.table, settings.group),
            NightDeps(kube, clients.lazy("autoscaling"), push, settings.group),
        )


def _night(runtime: NightRuntime) -> NightSettings:
    night = runtime.apps.load().night
    if night is None:
        raise ConfigError("the apps file has no 'night' section (docs/night.md)")
    return night


def _instant(event: Mapping[str, Any], runtime: NightRuntime) -> datetime:
    raw = event.get("time")
    if isinstance(raw, str) and raw:
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"time: expected an ISO 8601 instant, got {raw!r}") from None
    return runtime.now() if runtime.now else datetime.now(UTC)


def handle(event: Any, runtime: NightRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise EventError("event: expected a JSON object")
    unknown = set(event) - {"action", "scheduled", "time", "until", "dry_run", "reason"}
    if unknown:
        raise EventError(f"unknown field(s) {sorted(unknown)}")
    action = event.get("action")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    night = _night(runtime)
    calendar = NightCalendar(
        runtime.settings.time_zone,
        weekends_small=night.weekends_small,
        small_dates=frozenset(night.small_dates),
        no_shrink_dates=frozenset(night.no_shrink_dates),
    )
    instant = _instant(event, runtime)
    dry_run = bool(event.get("dry_run"))
    runtime.deps.node_selector = night.node_selector or None
    if action in ("pause", "resume", "skip"):
        return _remember(event, runtime, calendar, instant, dry_run)
    size = NightSize(
        keep=night.keep,
        keep_fraction=night.keep_fraction,
        min_nodes=night.min_nodes,
        headroom=night.headroom,
    )
    remaining = _remaining_seconds(context)
    deadline = Deadline.within(
        max(1.0, min(night.drain_deadline_seconds, remaining - MARGIN_SECONDS))
    )
    if action == "plan":
        return shrink(runtime.deps, size, deadline=deadline, dry_run=True) | {"action": "plan"}
    if event.get("scheduled"):
        skipped = _calendar_says_no(runtime, calendar, action, instant)
        if skipped is not None:
            return skipped
    if action == "shrink":
        return _shrink(runtime, size, deadline, dry_run)
    if dry_run:
        return {"action": "restore", "status": "dry-run"}
    return restore(runtime.deps, deadline=deadline)


def _shrink(
    runtime: NightRuntime, size: NightSize, deadline: Deadline, dry_run: bool
) -> dict[str, Any]:
    """No shrink while a rollout is in flight; while it drains, rollouts wait (the marker)."""
    if dry_run:
        return shrink(runtime.deps, size, deadline=deadline, dry_run=True)
    busy = _rollouts_in_flight(runtime)
    if busy:
        return {"action": "shrink", "status": "refused", "why": f"rollouts in flight: {busy}"}
    state = runtime.store.load()
    state.draining_until = int(time.time() * 1000 + deadline.remaining() * 1000)
    runtime.store.save(state)
    try:
        return shrink(runtime.deps, size, deadline=deadline)
    finally:
        state = runtime.store.load()
        state.draining_until = 0
        runtime.store.save(state)


def _calendar_says_no(
    runtime: NightRuntime, calendar: NightCalendar, action: str, instant: datetime
) -> dict[str, Any] | None:
    state = runtime.store.load()
    decision = (
        shrink_tonight(calendar, instant, pause_until=state.paused_until, skip=state.skip)
        if action == "shrink"
        else restore_this_morning(calendar, instant)
    )
    if decision.act:
        return None
    logger.info("night: nothing to do", extra={"action": action, "why": decision.why})
    return {"action": action, "status": "skipped", "why": decision.why}


def _rollouts_in_flight(runtime: NightRuntime) -> str:
    """The apps with a rollout in flight (``app rollout (phase)``), or ""; no shrink then."""
    from ..rollout.records import IN_FLIGHT, RolloutStore

    store = RolloutStore(runtime.store.client, runtime.settings.table)
    busy = []
    for app in runtime.apps.load().apps:
        state = store.state(app.name)
        if state.rollout_id and state.phase in {p.value for p in IN_FLIGHT}:
            busy.append(f"{app.name} {state.rollout_id} ({state.phase})")
    return ", ".join(busy)


def _remember(
    event: Mapping[str, Any],
    runtime: NightRuntime,
    calendar: NightCalendar,
    instant: datetime,
    dry_run: bool,
) -> dict[str, Any]:
    state = runtime.store.load()
    action = event["action"]
    if action == "pause":
        raw = event.get("until")
        try:
            state.paused_until = date.fromisoformat(str(raw))
        except ValueError:
            raise EventError(f"until: expected a date YYYY-MM-DD, got {raw!r}") from None
    elif action == "resume":
        state.paused_until = None
    else:
        state.skip = calendar.local_date(instant)
    if not dry_run:
        runtime.store.save(state)
    return {
        "action": action,
        "status": "dry-run" if dry_run else "saved",
        "paused_until": state.paused_until.isoformat() if state.paused_until else None,
        "skip": state.skip.isoformat() if state.skip else None,
    }


def _remaining_seconds(context: Any) -> float:
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return 900.0
    return float(context.get_remaining_time_in_millis()) / 1000


def safe_handle(event: Any, runtime: NightRuntime, context: Any = None) -> dict[str, Any]:
    """``handle``, with bad events and bad settings answered instead of raised."""
    started = time.monotonic()
    try:
        result = handle(event, runtime, context)
    except (EventError, ConfigError, PermanentError, ValueError) as exc:
        logger.warning("night invoke rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    result["seconds"] = round(time.monotonic() - started, 1)
    return result
