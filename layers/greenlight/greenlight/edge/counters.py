"""HAProxy's own counters, read from every instance of the fleet (docs/edge.md, "Counters").

The haproxy function's read-only ``counters`` action: ``{"action": "counters", "app": NAME,
"colours": ["green"]}``. For each colour named, two backends: ``<app>-<colour>`` (the colour's
own, which the preview host and the gate's checks reach) and ``<app>-live-<colour>`` (the live
route while the other colour is warm behind it). The stats document (``EdgeStatsDocument``)
runs on every instance at once and prints HAProxy's ``show stat`` figures for them: one JSON
line per instance, parsed here. Nothing is written and no lock is taken: a dry run reads too.

The answer: ``{"instances": {id: {"worker", "uptime_seconds", "rows", "missing"}}, "errors":
{id: reason}}``. Each row is one backend's ``BACKEND`` line or one of its servers:
``backend``, ``server``, ``backup``, ``status``, ``requests``, ``http_5xx``, ``http_4xx``,
``connection_errors``, ``response_errors``, ``retries``, ``redispatches``, ``response_ms`` and
``total_ms`` (HAProxy's averages over its last 1024 requests). Counters are the running
worker's, since it started (``worker``, ``uptime_seconds``): a reload starts them at zero.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..colour import Colour
from ..deadline import Deadline
from ..errors import EventError, PermanentError
from ..settings import ENV_EDGE_DOCUMENT, ENV_EDGE_STATS_DOCUMENT, FleetSettings
from .fleet import INCOMPLETE, SUCCESS, FleetReloader
from .render import backend_name, live_backend_name

ACTION = "counters"
FIELDS = frozenset({"app", "colours"})  # the event fields of the counters action
# Time kept back from the caller's deadline to build and return the answer.
ANSWER_MARGIN_SECONDS = 1.0
# How long the instances are waited for: the stats document answers within a second or two; an
# instance that has not answered by then (unreachable, its agent stopped) is named in
# ``errors`` and the others' counters are returned, not held until the caller's deadline.
INSTANCE_WAIT_SECONDS = 8.0


def check_fields(event: Mapping[str, Any]) -> None:
    """EventError when another action's event carries the counters action's fields."""
    for name in sorted(FIELDS & set(event)):
        if event.get("action") != ACTION:
            raise EventError(f"{name}: only the counters action takes {name}")


def options_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """The counters action's own fields of an event (checked by :meth:`CountersRequest.of`)."""
    return {name: event[name] for name in sorted(FIELDS) if name in event}


@dataclass(frozen=True)
class CountersRequest:
    """Which app's counters, for which colours."""

    app: str
    colours: tuple[Colour, ...]

    @classmethod
    def of(cls, event: Mapping[str, Any], apps: Collection[str]) -> CountersRequest:
        """The request in a ``counters`` event; EventError naming the field when it is not
        one (``apps``: the names in the apps file)."""
        app = event.get("app")
        if not isinstance(app, str) or not app:
            raise EventError(f"app: expected the name of an app, got {app!r}")
        if app not in apps:
            raise EventError(f"app: no app named {app!r} in the apps file")
        raw = event.get("colours")
        if not isinstance(raw, list) or not raw:
            raise EventError(f'colours: expected a list of "blue" and/or "green", got {raw!r}')
        colours: list[Colour] = []
        for value in raw:
            if value not in (Colour.BLUE.value, Colour.GREEN.value):
                raise EventError(f"colours: expected blue or green, got {value!r}")
            if Colour(value) in colours:
                raise EventError(f"colours: {value} is named twice")
            colours.append(Colour(value))
        return cls(app, tuple(colours))

    def backends(self) -> list[str]:
        """The backends whose counters are read: each colour's own and its live route."""
        out: list[str] = []
        for colour in self.colours:
            out += [backend_name(self.app, colour), live_backend_name(self.app, colour)]
        return out


def parse(output: str) -> dict[str, Any]:
    """One instance's counters from the stats document's output (its last JSON line);
    ValueError with the reason when there are none."""
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            break
        if data.get("status") != "ok" or not isinstance(data.get("rows"), list):
            raise ValueError(f"no counters: {str(data.get('reason') or data)[:300]}")
        return {k: v for k, v in data.items() if k != "status"}
    tail = output.strip()[-200:]
    raise ValueError(f"no counters in the output ({tail!r})" if tail else "no output")


def read_counters(
    reloader: FleetReloader, document: str, backends: list[str], deadline: Deadline
) -> dict[str, Any]:
    """The stats document on every instance of the fleet at once, waited for at most
    :data:`INSTANCE_WAIT_SECONDS` and until shortly before ``deadline``: each instance's
    counters, or why there are none (``no answer within 8 s``)."""
    instances = reloader.instances()
    if not instances:
        return {"instances": {}, "errors": {}}
    wait = max(0.0, min(INSTANCE_WAIT_SECONDS, deadline.remaining() - ANSWER_MARGIN_SECONDS))
    outcomes, outputs = reloader.run_document(
        document, {"Backends": ",".join(backends)}, instances, deadline.sooner(wait)
    )
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for instance, outcome in sorted(outcomes.items()):
        if outcome.outcome == INCOMPLETE:  # still running when the wait ended
            errors[instance] = f"no answer within {round(wait, 1):g} s"
            continue
        if outcome.outcome != SUCCESS:
            errors[instance] = f"{outcome.outcome}: {outcome.detail}".rstrip(": ")
            continue
        try:
            found[instance] = parse(outputs.get(instance, ""))
        except ValueError as exc:
            errors[instance] = str(exc)
    return {"instances": found, "errors": errors}


def answer(
    event: Mapping[str, Any],
    apps: Collection[str],
    fleet: FleetSettings | None,
    reloader: FleetReloader | None,
    deadline: Deadline,
) -> dict[str, Any]:
    """The ``counters`` action's answer (``apps``: the names in the apps file); a
    PermanentError naming the field or the setting when it cannot be given."""
    request = CountersRequest.of(event, apps)
    if fleet is None or reloader is None:
        raise PermanentError(f"{ENV_EDGE_DOCUMENT}: not set: no fleet to read counters from")
    if not fleet.stats_document:
        raise PermanentError(f"{ENV_EDGE_STATS_DOCUMENT}: not set: no document reads counters")
    backends = request.backends()
    read = read_counters(reloader, fleet.stats_document, backends, deadline)
    return {
        "status": "counters",
        "app": request.app,
        "colours": [c.value for c in request.colours],
        "backends": backends,
        **read,
    }
