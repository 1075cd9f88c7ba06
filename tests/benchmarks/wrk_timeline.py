"""When wrk's failed answers came: the lines ``wrk_status.lua`` prints, parsed, and placed in the
flips' time windows (pure functions; bench_flips.py runs wrk and the flips).

wrk gives totals only. With ``-s wrk_status.lua`` it also prints, after its report, one line per
whole second of wall clock (``os.time()``) in which it got an answer::

    greenlight-wrk-second {"t": 1765098000, "n": 412, "status": {"503": 3}}

(``n``: every answer that second; ``status``: the answers that were not 2xx, by status), and one
line with its own error counters, which wrk 4.x offers no hook to place in time::

    greenlight-wrk-errors {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 0,
                           "requests": 51234}

A flip's windows (``time.monotonic()``, as the Python clients' failures are timed): the whole flip
(its push to the end of the scenario), its proof (Deployment available -> the gate's promotion
decision) and its switch (that decision -> every instance serving the new version). An instant
or a second is placed in the first kind of window it touches, in the order switch, proof, the
rest of a flip, else outside any flip. A wrk second ``[t, t + 1)`` that touches a switch window
by a few milliseconds counts as in it: the placement leans towards blaming the flips.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("wrk_status.lua")
SECOND = "greenlight-wrk-second "
ERRORS = "greenlight-wrk-errors "
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")

SWITCH = "switch"
PROOF = "proof"
REST = "rest of the flip"
OUTSIDE = "outside any flip"
KINDS = (SWITCH, PROOF, REST)  # in a flip, by precedence


@dataclass(frozen=True)
class WrkSecond:
    at: int  # epoch second (wall clock)
    answers: int
    status: dict[int, int]  # the answers that were not 2xx, by status


@dataclass(frozen=True)
class WrkTimeline:
    seconds: list[WrkSecond]
    errors: dict[str, int]  # wrk's own counters: connect, read, write, status, timeout
    requests: int

    def status_totals(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for s in self.seconds:
            out.update(s.status)
        return out


@dataclass(frozen=True)
class FlipWindows:
    """One flip's windows, in ``time.monotonic()`` seconds; proof and switch are None when the
    flip was not measured (its version never seen everywhere)."""

    method: str
    flip: tuple[float, float]
    proof: tuple[float, float] | None = None
    switch: tuple[float, float] | None = None

    def window(self, kind: str) -> tuple[float, float] | None:
        return {SWITCH: self.switch, PROOF: self.proof, REST: self.flip}[kind]


def _fields(line: str, prefix: str, number: int) -> dict[str, object]:
    try:
        value = json.loads(line[len(prefix) :])
    except json.JSONDecodeError as e:
        raise ValueError(f"wrk output line {number}: not JSON after {prefix.strip()!r}: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"wrk output line {number}: {prefix.strip()} is not a JSON object")
    return value


def _count(value: object, name: str, number: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"wrk output line {number}: {name} must be a count, got {value!r}")
    return value


def parse_timeline(text: str) -> WrkTimeline:
    """The per-second lines and the errors line of wrk's output; ValueError naming the line and
    the field when one is malformed, or when the errors line is missing (wrk run without
    ``-s wrk_status.lua``, or it crashed before its ``done()``)."""
    seconds: list[WrkSecond] = []
    errors: dict[str, int] | None = None
    requests = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(SECOND):
            fields = _fields(line, SECOND, number)
            status = fields.get("status")
            if not isinstance(status, dict):
                raise ValueError(f"wrk output line {number}: status must be an object")
            codes: dict[int, int] = {}
            for code, n in status.items():
                if not (code.isdigit() and 100 <= int(code) <= 999):
                    raise ValueError(f"wrk output line {number}: status {code!r} is not a status")
                codes[int(code)] = _count(n, f"status {code}", number)
            seconds.append(
                WrkSecond(
                    at=_count(fields.get("t"), "t", number),
                    answers=_count(fields.get("n"), "n", number),
                    status=codes,
                )
            )
        elif line.startswith(ERRORS):
            fields = _fields(line, ERRORS, number)
            errors = {k: _count(fields.get(k), k, number) for k in ERROR_KINDS}
            requests = _count(fields.get("requests"), "requests", number)
    if errors is None:
        raise ValueError(
            f"wrk output has no {ERRORS.strip()!r} line: was wrk run with -s {SCRIPT.name}?"
        )
    return WrkTimeline(sorted(seconds, key=lambda s: s.at), errors, requests)


def _touches(window: tuple[float, float], start: float, end: float) -> float:
    """How long ``[start, end]`` overlaps ``window`` (>= 0), or -1 when they do not meet."""
    a, b = window
    if start > b or end < a:
        return -1.0
    return min(b, end) - max(a, start)


def kind_of(start: float, end: float, flips: list[FlipWindows]) -> tuple[str, str]:
    """(method, kind) of the span ``[start, end]`` (an instant when equal): the first kind in
    KINDS whose window it touches, of the flip it overlaps most; ("", OUTSIDE) otherwise."""
    for kind in KINDS:
        best: tuple[float, str] | None = None
        for f in flips:
            window = f.window(kind)
            if window is None:
                continue
            overlap = _touches(window, start, end)
            if overlap >= 0 and (best is None or overlap > best[0]):
                best = (overlap, f.method)
        if best is not None:
            return best[1], kind
    return "", OUTSIDE


@dataclass
class Placed:
    """Failures by (method, kind), with ("", OUTSIDE) for those outside any flip."""

    timeline: WrkTimeline
    python: Counter[tuple[str, str]] = field(default_factory=Counter)
    wrk: dict[tuple[str, str], Counter[int]] = field(default_factory=dict)


def place(
    python_failures: list[float],
    timeline: WrkTimeline,
    flips: list[FlipWindows],
    wall_minus_monotonic: float,
) -> Placed:
    """The Python clients' failures (their ``time.monotonic()`` instants) and wrk's non-2xx
    answers (per wall-clock second, shifted onto the monotonic clock by
    ``wall_minus_monotonic`` = ``time.time() - time.monotonic()``) placed in the flips' windows."""
    out = Placed(timeline)
    for at in python_failures:
        out.python[kind_of(at, at, flips)] += 1
    for s in timeline.seconds:
        if not s.status:
            continue
        start = s.at - wall_minus_monotonic
        key = kind_of(start, start + 1, flips)
        out.wrk.setdefault(key, Counter()).update(s.status)
    return out


def statuses(counts: Counter[int] | None) -> str:
    """``503 x12, 502 x1`` (by status), or ``none``."""
    if not counts or not sum(counts.values()):
        return "none"
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items()) if n)


def report(placed: Placed, methods: tuple[str, ...]) -> list[str]:
    """One line per method (its windows, by kind) and one for outside any flip: the Python
    clients' failed requests and wrk's non-2xx answers by status; then wrk's own error
    counters, totals."""
    lines = []
    for method in methods:
        cells = [
            f"{kind}: Python clients {placed.python[(method, kind)]}, wrk non-2xx "
            f"{statuses(placed.wrk.get((method, kind)))}"
            for kind in KINDS
        ]
        lines.append(f"{method}, failures by window: " + "; ".join(cells))
    key = ("", OUTSIDE)
    lines.append(
        f"{OUTSIDE}: Python clients {placed.python[key]}, wrk non-2xx "
        f"{statuses(placed.wrk.get(key))}"
    )
    timeline = placed.timeline
    errors = ", ".join(f"{k} {n}" for k, n in timeline.errors.items() if k != "status" and n)
    lines.append(
        f"wrk's own errors (totals: wrk has no hook to time them): {errors or 'none'}; "
        f"{timeline.requests} requests, {sum(s.answers for s in timeline.seconds)} answers"
    )
    return lines
