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

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..edgepush import PUSH_BUDGET_SECONDS, EdgePush, LambdaEdgePush
from ..errors import ConfigError, EventError, PermanentError
from ..settings import NightFunctionSettings
from ..store.night import NightStore
from .calendar import NightCalendar, restore_this_morning, shrink_tonight
from .plan import NightSize
from .service import NightDeps, NightStatus, describe, restore, shrink

if TYPE_CHECKING:
    from ..appconfig import NightSettings

logger = Logger(child=True)
ACTIONS = ("plan", "shrink", "restore", "pause", "resume", "skip")
MARGIN_SECONDS = 30  # left to report and put things back when a drain stops
# The runs that are recorded (and so announced): those that changed the group or refused to.
RECORDED = frozenset(
    {
        NightStatus.SHRUNK,
        NightStatus.STOPPED,
        NightStatus.RESTORED,
        NightStatus.INCOMPLETE,
        NightStatus.REFUSED,
        NightStatus.NOTHING_TO_DO,
    }
)


@dataclass
class NightRuntime:
    settings: NightFunctionSettings
    apps: AppsSource
    store: NightStore
    deps: NightDeps
    now: Callable[[], datetime] | None = None  # aware; the wall clock unless a test sets it

    @classmethod
    def build(
        cls,
        settings: NightFunctionSettings,
        clients: Clients | None = None,
        edge_push: EdgePush | None = None,
    ) -> NightRuntime:
        clients = clients or Clients()
        kube = KubeRest(lambda: api_client(settings.cluster, session=clients.session))
        push = edge_push or LambdaEdgePush(clients.lambda_within, settings.edge_function)
        return cls(
            settings,
            AppsSource(
                clients.s3,
                settings.config_bucket,
                settings.config_key,
                settings.cluster.app_namespaces,
            ),
            NightStore(clients.dynamodb, settings.table, settings.group),
            NightDeps(kube, clients.autoscaling, push, settings.group),
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


def act(event: Any, runtime: NightRuntime, context: Any = None) -> dict[str, Any]:
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
    # The drains get their deadline, and the edge push after them its budget on top
    # (service.before_push), within the Lambda's own time.
    deadline = Deadline.from_context(
        context,
        cap_seconds=night.drain_deadline_seconds + PUSH_BUDGET_SECONDS,
        margin_ms=MARGIN_SECONDS * 1000,
        default_seconds=night.drain_deadline_seconds + PUSH_BUDGET_SECONDS,
    )
    if action == "plan":
        return shrink(runtime.deps, size, deadline=deadline, dry_run=True) | {"action": "plan"}
    if event.get("scheduled"):
        skipped = _calendar_says_no(runtime, calendar, action, instant)
        if skipped is not None:
            return skipped
    if action == "shrink":
        return _shrink(runtime, size, deadline, dry_run)
    return restore(runtime.deps, deadline=deadline, dry_run=dry_run)


def _shrink(
    runtime: NightRuntime, size: NightSize, deadline: Deadline, dry_run: bool
) -> dict[str, Any]:
    """No shrink while a rollout is in flight; while it drains, rollouts wait (the marker).

    The marker is set first, then the rollouts are read: a push accepted before the marker
    is in flight when they are read (a refusal), and one after it is refused by its own
    acceptance (``interlock.accept_outside_the_night``), so neither side can miss the other."""
    if dry_run:
        return shrink(runtime.deps, size, deadline=deadline, dry_run=True)
    # Imported here: only a shrink reads the rollouts (the records cost a few ms at init).
    from ..interlock import rollouts_in_flight
    from ..store.rollouts import RolloutStore

    # What can reject the run is read before the marker: a rejected shrink writes nothing.
    group = describe(runtime.deps)
    apps = [app.name for app in runtime.apps.load().apps]
    state = runtime.store.load()
    until = int(time.time() * 1000 + deadline.remaining() * 1000)
    state = state._replace(draining_until=until)
    runtime.store.save(state)
    try:
        rollouts = RolloutStore(runtime.store.client, runtime.settings.table)
        busy = rollouts_in_flight(rollouts, apps)
        if busy:
            why = f"rollouts in flight: {', '.join(busy)}"
            return {"action": "shrink", "status": NightStatus.REFUSED, "why": why}
        return shrink(runtime.deps, size, deadline=deadline, group=group)
    finally:
        state = runtime.store.load()
        state = state._replace(draining_until=0)
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
    return {"action": action, "status": NightStatus.SKIPPED, "why": decision.why}


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
            state = state._replace(paused_until=date.fromisoformat(str(raw)))
        except ValueError:
            raise EventError(f"until: expected a date YYYY-MM-DD, got {raw!r}") from None
    elif action == "resume":
        state = state._replace(paused_until=None)
    else:
        state = state._replace(skip=calendar.local_date(instant))
    if not dry_run:
        runtime.store.save(state)
    return {
        "action": action,
        "status": NightStatus.DRY_RUN if dry_run else NightStatus.SAVED,
        "paused_until": state.paused_until.isoformat() if state.paused_until else None,
        "skip": state.skip.isoformat() if state.skip else None,
    }


def handle(event: Any, runtime: NightRuntime, context: Any = None) -> dict[str, Any]:
    """:func:`act`, with bad events and bad settings answered instead of raised."""
    started = time.monotonic()
    try:
        result = act(event, runtime, context)
    except PermanentError as exc:
        logger.warning("night invoke rejected", extra={"error": str(exc)})
        return {"status": NightStatus.REJECTED, "error": str(exc)}
    result["seconds"] = round(time.monotonic() - started, 1)
    if result.get("action") in ("shrink", "restore") and result.get("status") in RECORDED:
        runtime.store.record_run(result, time.time())
    return result
