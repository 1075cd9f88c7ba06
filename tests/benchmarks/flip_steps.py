"""A flip's switch window split into its steps: where the time from the gate's promotion
decision to every instance serving green goes.

:class:`Recorder` times, on the thread that makes them, every AWS API call (botocore), every
Kubernetes request (``KubeRest.request``), every run of the haproxy function (``handle``) and
every fleet apply round (``FleetReloader.apply``: the switch, or the reload waves), once
installed (before the sandbox loads its functions). :func:`split` takes those of the thread
that ran the promotion's push and cuts the window at the push's start and its apply round:

- ``gate``: decision -> the push starts (the gate's reads of the fleet and the app's state, and
  its one write);
- ``push``: the push starts -> its apply round starts (lock, pin, apps file, states, the
  cluster, render, publish);
- ``apply``: the apply round (SSM to every instance);
- ``seen``: the round ends -> the clients have seen green on every instance (negative when they
  saw it before the round's answer came back).

Each of the first two with its round trips: how many, and how long they took together.
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

STEPS = ("gate", "push", "apply", "seen")


class Event(NamedTuple):
    thread: int
    kind: str  # "aws", "kube", "push" (a haproxy function run) or "apply" (a fleet round)
    label: str  # the AWS operation ("dynamodb.GetItem") or what else it was
    start: float  # monotonic seconds
    end: float


@dataclass
class Steps:
    """One flip's switch window, cut into :data:`STEPS` (seconds), with each step's round
    trips (count, seconds) by label."""

    seconds: dict[str, float]
    trips: dict[str, Counter[str]] = field(default_factory=dict)
    trip_seconds: dict[str, float] = field(default_factory=dict)

    def count(self, step: str) -> int:
        return sum(self.trips.get(step, Counter()).values())


def split(events: Sequence[Event], decided: float, served: float) -> Steps | None:
    """The window ``decided`` -> ``served`` cut at the promotion's push: the first apply round
    after ``decided`` and the push run that holds it, on the same thread. None when the window
    holds no apply round."""
    applies = sorted(
        (e for e in events if e.kind == "apply" and decided <= e.start <= served),
        key=lambda e: e.start,
    )
    if not applies:
        return None
    apply = applies[0]
    pushes = [
        e
        for e in events
        if e.kind == "push"
        and e.thread == apply.thread
        and e.start <= apply.start
        and e.end >= apply.end
        and e.start >= decided
    ]
    if not pushes:
        return None
    push = min(pushes, key=lambda e: e.start)
    cuts = {
        "gate": (decided, push.start),
        "push": (push.start, apply.start),
        "apply": (apply.start, apply.end),
        "seen": (apply.end, served),
    }
    steps = Steps({name: b - a for name, (a, b) in cuts.items()})
    for name in ("gate", "push"):
        a, b = cuts[name]
        trips = [
            e
            for e in events
            if e.thread == apply.thread and e.kind in ("aws", "kube") and a <= e.start < b
        ]
        steps.trips[name] = Counter(e.label for e in trips)
        steps.trip_seconds[name] = sum(min(e.end, b) - e.start for e in trips)
    return steps


def report(steps: Sequence[Steps]) -> list[str]:
    """Median seconds of each step, and the round trips of the first two (median count and
    seconds, and the labels of the flip with the median count)."""
    if not steps:
        return ["no flip with its steps"]
    lines = []
    for name in STEPS:
        median = statistics.median(s.seconds[name] for s in steps)
        line = f"  {name:6} {median:6.2f} s"
        if name in ("gate", "push"):
            count = statistics.median(s.count(name) for s in steps)
            spent = statistics.median(s.trip_seconds[name] for s in steps)
            typical = sorted(steps, key=lambda s: s.count(name))[len(steps) // 2]
            calls = ", ".join(
                f"{label} x{n}" if n > 1 else label
                for label, n in sorted(typical.trips[name].items())
            )
            line += f"  ({count:.0f} round trips, {spent:.2f} s of it: {calls})"
        lines.append(line)
    return lines


class Recorder:
    """Times the calls :func:`split` needs, on every thread, from :meth:`install` on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []

    def _timed(self, kind: str, label: Callable[..., str], fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                event = Event(
                    threading.get_ident(), kind, label(*args, **kwargs), start, self.clock()
                )
                with self._lock:
                    self.events.append(event)

        return timed

    def install(self) -> Recorder:
        """Wrap the calls (before the sandbox loads its functions: the haproxy function binds
        ``handle`` when it is loaded)."""
        import botocore.client

        from greenlight.cluster.rest import KubeRest
        from greenlight.edge import entry
        from greenlight.edge.fleet import FleetReloader
        from greenlight.gate.execute import Gate

        wrapped: list[tuple[Any, str, str, Callable[..., str]]] = [
            (
                botocore.client.BaseClient,
                "_make_api_call",
                "aws",
                lambda c, op, *_: f"{c.meta.service_model.service_name}.{op}",
            ),
            (KubeRest, "request", "kube", lambda _, method, *a, **k: f"kube.{method}"),
            (entry, "handle", "push", lambda *a, **k: "push"),
            (Gate, "_start_promotion", "decide", lambda *a, **k: "decide"),
            (FleetReloader, "apply", "apply", lambda *a, **k: "apply"),
        ]
        for owner, name, kind, label in wrapped:
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._timed(kind, label, original))
        return self

    def uninstall(self) -> None:
        """The calls as they were before :meth:`install`."""
        while self._originals:
            owner, name, original = self._originals.pop()
            setattr(owner, name, original)

    def decided(self, recorded: float) -> float | None:
        """When the gate's check decided the promotion recorded at ``recorded`` (the move's
        time in the rollout's history): the start of its step that starts the promotion, which
        reads the fleet and the app's state before the move (None if none was timed)."""
        with self._lock:
            starts = [
                e.start
                for e in self.events
                if e.kind == "decide" and recorded - 30 <= e.start <= recorded + 0.01
            ]
        return max(starts) if starts else None

    def between(self, start: float, end: float) -> list[Event]:
        with self._lock:
            return [e for e in self.events if start <= e.start <= end]

    def forget_before(self, instant: float) -> None:
        with self._lock:
            self.events = [e for e in self.events if e.start >= instant]
