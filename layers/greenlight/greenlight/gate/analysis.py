"""The gate's analysis: what the candidate's real traffic says, from the edge's own counters.

Pure: no I/O, no clock. The gate's executor reads HAProxy's per-server counters on every
instance through the counters port (``edgepush.EdgeCounters``: ``{"status": "counters",
"instances": {id: {"worker", "uptime_seconds", "rows": [...]}}, "errors": {id: reason}}``)
and hands the samples here; :func:`analyse` turns them into one :class:`Verdict`.

- **The candidate's traffic** is what the active (non-backup) servers of the backends
  ``<app>-<colour>`` (the preview host) and ``<app>-live-<colour>`` (the live hosts, where the
  other colour's servers are the warm ``backup`` ones) counted. Not the ``BACKEND`` rows: they
  also count the requests that found no server UP (HAProxy's own 503s while it admits the
  candidate, or while every server is down: the health checks judge that). Its figures are the
  difference between a *baseline* (:func:`baseline`, taken when the gate first sees the
  candidate ready, and again right after its promotion) and the current sample, row by row and
  instance by instance. HAProxy's counters are cumulative per worker: an instance whose worker
  changed since the baseline (a reload), or that had no baseline, counts its whole current
  figure; so does a row whose counter went down (its server was added again). An instance
  missing from the current sample counts nothing (and is named); so does an instance the
  baseline lacks (it did not answer when the baseline was taken): its rows join the baseline
  (:attr:`Verdict.baseline`, stored by the executor) and it counts from the next read. With
  no baseline at all (its read failed), the first sample read becomes it and is not judged
  (:func:`analyse`): counted from each worker's start, it could hold a previous candidate's
  errors in the same colour.
- **Errors**: HTTP 5xx, connection errors and response errors, over the requests; a candidate
  fails ``max_error_ratio`` when the ratio's lower bound at one-sided 95% confidence
  (:func:`error_ratio_at_least`) is over it, so that a stray failed request among a few dozen
  does not roll back a healthy candidate.
- **Response time**: the mean over the window of the non-backup servers, weighted by each
  server's requests in the window. HAProxy's ``rtime`` averages a server's last 1024 requests
  (all of them while it has had fewer), so it also holds requests from before the window: those
  of a previous candidate of the same colour (rolled back, its servers kept by the same worker)
  or of the version the colour ran before. The window's own mean is taken out of the baseline's
  and the current averages (:func:`window_ms`).
- **The live colour's response time**, for ``max_response_ratio``: its rows over the same
  window (the baseline holds both colours' rows), so that both are measured side by side,
  under the same load on the same instances. Only at the gate: in the watch window the previous
  colour is a backup that serves nothing, and a comparison with its figures from another
  window would judge the load that changed as much as the candidate. The ratio is judged when
  both colours have ``min_requests`` in the window; otherwise it is said not judged.

The verdict is ``pass``, ``fail`` (with the threshold and the figures), ``too-little-traffic``
(fewer than ``min_requests``: said, never taken as a pass) or ``unread`` (the counters could
not be read: said, and the health checks decide alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from ..admission import backend_name, live_backend_name
from ..colour import Colour

if TYPE_CHECKING:
    from ..appconfig import Analysis

# The counters a baseline keeps per row, in this order (all cumulative per HAProxy worker).
COUNTED = (
    "requests",
    "http_5xx",
    "http_4xx",
    "connection_errors",
    "response_errors",
    "retries",
    "redispatches",
)
BACKEND_ROW = "BACKEND"
# HAProxy's TIME_STATS_SAMPLES: a server's ``rtime`` is the plain mean of its requests while it
# has had at most this many, then a sliding mean that keeps (1 - 1/1024) of its sum per request.
RTIME_SAMPLES = 1024


class Thresholds(NamedTuple):
    """An app's ``analysis`` settings (docs/configuration.md)."""

    min_requests: int = 50
    max_error_ratio: float = 0.02
    max_response_ms: int | None = None
    max_response_ratio: float | None = 2.0

    @classmethod
    def of(cls, analysis: Analysis) -> Thresholds | None:
        """The thresholds of an app's ``analysis`` section; None when it is disabled."""
        if not analysis.enabled:
            return None
        return cls(
            min_requests=analysis.min_requests,
            max_error_ratio=analysis.max_error_ratio,
            max_response_ms=analysis.max_response_ms,
            max_response_ratio=analysis.max_response_ratio,
        )

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class Figures(NamedTuple):
    """Requests and their outcomes over a window (or since a worker started)."""

    requests: int = 0
    http_5xx: int = 0
    http_4xx: int = 0
    connection_errors: int = 0
    response_errors: int = 0
    retries: int = 0
    redispatches: int = 0
    response_ms: float | None = None  # the mean, weighted by each server's requests

    @property
    def errors(self) -> int:
        return self.http_5xx + self.connection_errors + self.response_errors

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out["response_ms"] = None if self.response_ms is None else round(self.response_ms, 1)
        out["error_ratio"] = round(self.error_ratio, 4)
        return out


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    TOO_LITTLE = "too-little-traffic"
    UNREAD = "unread"  # the counters could not be read: not judged, the health checks decide


class Verdict(NamedTuple):
    outcome: Outcome
    reason: str
    figures: Figures | None = None
    instances: tuple[tuple[str, Figures], ...] = ()  # per instance, in the sample's order
    notes: tuple[str, ...] = ()  # instances counted whole, missing, or unreadable
    # The baseline this read became, when there was none, or the baseline with the rows of
    # the instances it lacked merged in (:func:`analyse`): the executor stores it on the
    # rollout (``analysis_baseline``); None: nothing to store.
    baseline: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """For the rollout record and the check's answer (ints and strings, and rounded
        figures)."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "requests": self.figures.requests if self.figures else 0,
            "errors": self.figures.errors if self.figures else 0,
            "response_ms": (
                None
                if self.figures is None or self.figures.response_ms is None
                else round(self.figures.response_ms)
            ),
        }


# ---------------------------------------------------------------------------- samples
def backends(app: str, colour: str) -> tuple[str, str]:
    """The backends whose non-backup servers carry ``colour``'s traffic: the preview host's
    and the live hosts'."""
    return backend_name(app, colour), live_backend_name(app, colour)


class _Row(NamedTuple):
    counts: list[int]  # COUNTED, cumulative
    response_ms: float | None
    total: bool  # a backend's total (its requests and errors); else a server (its rtime)


def _rows(instance: Mapping[str, Any], app: str, colour: str) -> dict[str, _Row]:
    """``colour``'s rows on one instance, keyed ``backend/server``: per backend the total of
    its active (non-backup) servers, and each of them, for their rtime. The ``BACKEND`` row is
    not judged: it also counts the requests that found no server UP (HAProxy's own 503s while
    it admits the candidate's servers, or while they are all down: the health checks' to
    judge), and the backup servers' traffic."""
    out: dict[str, _Row] = {}
    found = [row for row in instance.get("rows") or () if isinstance(row, Mapping)]
    for backend in backends(app, colour):
        rows = [row for row in found if row.get("backend") == backend]
        if not rows:
            continue
        active = [
            row
            for row in rows
            if row.get("server") != BACKEND_ROW and not int(row.get("backup") or 0)
        ]
        counts = [sum(each) for each in zip(*(_counts(r) for r in active), strict=True)]
        out[f"{backend}/{BACKEND_ROW}"] = _Row(counts or [0] * len(COUNTED), None, True)
        for row in active:
            out[f"{backend}/{row.get('server')}"] = _Row(_counts(row), _ms(row), False)
    return out


def _counts(row: Mapping[str, Any]) -> list[int]:
    return [int(row.get(name) or 0) for name in COUNTED]


def unread(sample: Mapping[str, Any] | None) -> str | None:
    """Why ``sample`` (the port's answer) cannot be judged, or None when it can."""
    if sample is None:
        return "no answer"
    status = sample.get("status")
    if status != "counters":
        error = sample.get("error") or sample.get("reason") or ""
        return f"{status or 'no status'}{f': {error}' if error else ''}"
    if not sample.get("instances"):
        errors = sample.get("errors") or {}
        if errors:
            shown = "; ".join(f"{iid}: {why}" for iid, why in sorted(errors.items()))
            return f"no instance answered ({shown})"
        return "no instance answered"
    return None


def baseline(sample: Mapping[str, Any], app: str, colour: str) -> dict[str, Any]:
    """What a later sample is measured from: per instance, its worker and the counters per row
    of ``colour`` and of the other colour (the live one's, measured over the same window)
    (``{id: {"worker": pid, "rows": {"backend/server": [requests, 5xx, ..., rtime]}}}``: the
    COUNTED counters, and a server's ``rtime`` last; ints only, small enough for the rollout
    record)."""
    out: dict[str, Any] = {}
    for iid, instance in (sample.get("instances") or {}).items():
        rows = _rows(instance, app, colour) | _rows(instance, app, Colour(colour).other.value)
        out[str(iid)] = {
            "worker": int(instance.get("worker") or 0),
            "rows": {key: _kept(row) for key, row in sorted(rows.items())},
        }
    return out


def _kept(row: _Row) -> list[int]:
    if row.total or row.response_ms is None:
        return row.counts
    return [*row.counts, round(row.response_ms)]


def window_ms(before: int, before_ms: float | None, now: int, now_ms: float) -> float:
    """A server's mean response time over the requests it took from ``before`` to ``now``
    (its ``req_tot``), out of its ``rtime`` then (``before_ms``; None: not known, the current
    average is taken) and now. HAProxy keeps a sum S with a weight m = min(requests, 1024):
    plain sums up to 1024 requests, then S loses S/1024 per request (``swrate``); ``rtime`` is
    S/m. What the window added is S_now - S_before * kept over m_now - m_before * kept, kept
    being what is left of the older sum. ``rtime`` is whole milliseconds: the result is within
    about (m_now + m_before) / (2 * (now - before)) ms."""
    if before <= 0 or before_ms is None or now <= before:
        return now_ms
    m_before, m_now = min(before, RTIME_SAMPLES), min(now, RTIME_SAMPLES)
    kept = (1 - 1 / RTIME_SAMPLES) ** max(0, now - max(before, RTIME_SAMPLES))
    weight = m_now - m_before * kept
    if weight <= 0:
        return now_ms
    return max(0.0, (now_ms * m_now - before_ms * m_before * kept) / weight)


def _sum(rows: list[_Row]) -> Figures:
    """Totals from the backends' rows; the mean response time from the servers', weighted by
    their requests."""
    totals = [sum(row.counts[i] for row in rows if row.total) for i in range(len(COUNTED))]
    weighted = [
        (row.counts[0], row.response_ms)
        for row in rows
        if not row.total and row.counts[0] > 0 and row.response_ms is not None
    ]
    weight = sum(requests for requests, _ in weighted)
    mean = sum(requests * ms for requests, ms in weighted) / weight if weight else None
    return Figures._make([*totals, mean])


def _ms(row: Mapping[str, Any]) -> float | None:
    found = row.get("response_ms")
    return None if found is None else float(found)


def window(
    base: Mapping[str, Any] | None, sample: Mapping[str, Any], app: str, colour: str
) -> tuple[Figures, tuple[tuple[str, Figures], ...], tuple[str, ...]]:
    """``colour``'s figures from ``base`` to ``sample``: in total, per instance, and notes on
    instances counted whole (reloaded, no baseline), missing or unreadable."""
    base = base or {}
    every: list[_Row] = []
    per_instance: list[tuple[str, Figures]] = []
    notes: list[str] = []
    instances: Mapping[str, Any] = sample.get("instances") or {}
    for iid, instance in instances.items():
        before = base.get(iid)
        worker = int(instance.get("worker") or 0)
        earlier: Mapping[str, list[int]]
        if before is None and base:  # its rows join the baseline (analyse): counted next read
            notes.append(f"{iid}: not in the baseline, not counted (this read joins it)")
            continue
        if before is None:
            notes.append(f"{iid}: no baseline, counted since its worker started")
            earlier = {}
        elif int(before.get("worker") or 0) != worker:
            notes.append(f"{iid}: reloaded since the baseline, counted since its worker started")
            earlier = {}
        else:
            earlier = before.get("rows") or {}
        rows = []
        for key, row in _rows(instance, app, colour).items():
            kept = list(earlier.get(key) or [0] * len(COUNTED))
            then, then_ms = kept[: len(COUNTED)], kept[len(COUNTED) :]
            delta = [a - b for a, b in zip(row.counts, then, strict=False)]
            if any(d < 0 for d in delta):  # the row's counters started again
                delta, then = row.counts, [0] * len(COUNTED)
            ms = row.response_ms
            if ms is not None:
                ms = window_ms(then[0], then_ms[0] if then_ms else None, row.counts[0], ms)
            rows.append(row._replace(counts=delta, response_ms=ms))
        every.extend(rows)
        per_instance.append((str(iid), _sum(rows)))
    errors: Mapping[str, Any] = sample.get("errors") or {}
    for iid in sorted(set(base) | set(errors)):
        if iid in instances:
            continue
        why = f"not read ({errors[iid]})" if iid in errors else "missing from the sample"
        notes.append(f"{iid}: {why}, not counted")
    return _sum(every), tuple(per_instance), tuple(notes)


# ---------------------------------------------------------------------------- the verdict
def _percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def _breakdown(figures: Figures) -> str:
    kinds = (
        ("5xx", figures.http_5xx),
        ("connection", figures.connection_errors),
        ("response", figures.response_errors),
    )
    return ", ".join(f"{name} {count}" for name, count in kinds if count)


def judge(
    figures: Figures,
    live: Figures | None,
    thresholds: Thresholds,
    *,
    since: str = "since ready",
) -> tuple[Outcome, str]:
    """The outcome for ``figures`` (the candidate's window) against ``thresholds``, with
    ``live`` (the live colour's figures) for ``max_response_ratio``; and its reason."""
    if figures.requests < thresholds.min_requests:
        return Outcome.TOO_LITTLE, (
            f"analysis: {figures.requests} requests {since}, {thresholds.min_requests} needed: "
            "not judged"
        )
    problems = []
    least = error_ratio_at_least(figures.errors, figures.requests)
    if least > thresholds.max_error_ratio:
        problems.append(
            f"{_percent(figures.error_ratio)} of {figures.requests} requests failed "
            f"({_breakdown(figures)}), at least {_percent(least)} at 95% confidence, "
            f"over max_error_ratio {thresholds.max_error_ratio * 100:g}%"
        )
    mean = figures.response_ms
    ceiling = thresholds.max_response_ms
    if mean is not None and ceiling is not None and mean > ceiling:
        problems.append(
            f"mean response {mean:.0f} ms over max_response_ms {ceiling} "
            f"({figures.requests} requests)"
        )
    compared = _compared(figures, live, thresholds)
    if compared is not None and thresholds.max_response_ratio is not None:
        ratio, live_ms = compared
        if ratio > thresholds.max_response_ratio:
            problems.append(
                f"mean response {mean:.0f} ms is {ratio:.1f} times the live colour's "
                f"{live_ms:.0f} ms, over max_response_ratio {thresholds.max_response_ratio:g} "
                f"({figures.requests} requests)"
            )
    if problems:
        return Outcome.FAIL, "analysis: " + "; ".join(problems)
    said = f"{_percent(figures.error_ratio)} of {figures.requests} requests failed"
    if mean is not None:
        said += f", mean response {mean:.0f} ms"
        if compared is not None:
            said += f" ({compared[0]:.1f} times the live colour's {compared[1]:.0f} ms)"
        elif live is not None and thresholds.max_response_ratio is not None:
            said += (
                f" (max_response_ratio not judged: the live colour served {live.requests} "
                "requests in the same window)"
            )
    return Outcome.PASS, f"analysis: {said} {since}: within thresholds"


# One-sided 95%: the normal quantile the error ratio's lower bound is taken at.
CONFIDENCE_Z = 1.645


def error_ratio_at_least(errors: int, requests: int, z: float = CONFIDENCE_Z) -> float:
    """The lower bound of the error ratio that ``errors`` of ``requests`` show, at one-sided
    95% confidence (the Wilson score interval). A candidate fails ``max_error_ratio`` only
    when even this bound is over it: one failed request of 22 (4.5%) says little (its bound is
    1.0%), two of 22 say more (3.0%), 38 of 412 (9.2%) say it plainly (7.1%)."""
    if requests <= 0 or errors <= 0:
        return 0.0
    n, p = float(requests), min(errors, requests) / requests
    spread = z * z / n
    centre = p + spread / 2
    margin = z * math.sqrt((p * (1 - p) + spread / 4) / n)
    return max(0.0, (centre - margin) / (1 + spread))


def _compared(
    figures: Figures, live: Figures | None, thresholds: Thresholds
) -> tuple[float, float] | None:
    """(the candidate's mean response time over the live colour's, the live colour's) when
    both have ``min_requests`` and a mean; HAProxy counts whole milliseconds, so a mean under
    1 ms counts as 1 ms."""
    if live is None or live.requests < thresholds.min_requests:
        return None
    if figures.response_ms is None or live.response_ms is None:
        return None
    live_ms = max(live.response_ms, 1.0)
    return max(figures.response_ms, 1.0) / live_ms, live.response_ms


def analyse(
    base: Mapping[str, Any] | None,
    sample: Mapping[str, Any] | None,
    thresholds: Thresholds,
    *,
    app: str,
    colour: str,
    live_colour: str | None,
    since: str = "since ready",
) -> Verdict:
    """The verdict on ``colour``'s traffic from ``base`` (:func:`baseline`) to ``sample``;
    ``live_colour``'s figures over the same window for the ratio (None: not judged, as in the
    watch window).

    With no ``base`` (the read when the candidate was first seen ready, or at its promotion,
    failed), ``sample`` becomes the baseline (:attr:`Verdict.baseline`, for the executor to
    store) and is not judged: counted from each worker's start, it could hold the errors of a
    previous candidate of the same colour. Its verdict is ``too-little-traffic``, said so."""
    problem = unread(sample)
    if problem is not None or sample is None:
        return Verdict(Outcome.UNREAD, f"analysis: counters not read ({problem}): not judged")
    if base is None:
        taken = baseline(sample, app, colour)
        why = (
            f"analysis: no baseline {since} (the counters were not read then): this read "
            "becomes it, nothing to compare yet: not judged"
        )
        return Verdict(Outcome.TOO_LITTLE, why, baseline=taken)
    figures, instances, notes = window(base, sample, app, colour)
    live = window(base, sample, app, live_colour)[0] if live_colour is not None else None
    outcome, reason = judge(figures, live, thresholds, since=since)
    return Verdict(
        outcome, reason, figures, instances, notes, baseline=merged(base, sample, app, colour)
    )


def merged(
    base: Mapping[str, Any], sample: Mapping[str, Any], app: str, colour: str
) -> dict[str, Any] | None:
    """``base`` with the rows of the instances of ``sample`` it lacks (an instance that did
    not answer when the baseline was taken): they count nothing in this read, and from it in
    the next ones, never since their worker started (a previous candidate's errors). None when
    ``sample`` has no instance ``base`` lacks (nothing to store)."""
    instances: Mapping[str, Any] = sample.get("instances") or {}
    new = [str(iid) for iid in instances if str(iid) not in base]
    if not new:
        return None
    joining = {"status": "counters", "instances": {iid: instances[iid] for iid in new}}
    return {**base, **baseline(joining, app, colour)}
