"""The gate's decisions: one pure function from what a check has seen to the step it takes.

:func:`decide` reads a :class:`Look` (the rollout, the app's state, the time, the counts its
chain of checks carries, and, when its phase needs them, the candidate's observation, the
latest probe and the fleet's state) and the app's :class:`Policy`, and returns one
:class:`Step`. The executor (``execute.py``) does the step's I/O and, for the steps that only
gather more (a probe, the preview route, the ready mark, the move to ``promoting``) or that
may look again within the invocation, asks again. No I/O, no clock, no sleep here: unit tests
drive every transition at fixed instants.

By phase:

- ``deploying``: wait for the rollout function's hand-off.
- ``gating``: a failed observation rolls back; not ready past ``health.ready_deadline_seconds``
  (from the rollout's creation) rolls back; ready, the health passes through the preview host:
  ``health.successes`` in a row promote (or wait for a manual promote when the app has
  ``manual_approval``), ``health.failures`` in a row roll back. A failed probe within
  ``ADMISSION_GRACE_SECONDS`` of first seeing the candidate ready is not counted. After each
  counted probe (with the app's ``analysis`` on) the edge's counters are read: a ``fail``
  verdict rolls back; ``too-little-traffic`` (or counters that could not be read) is said in
  the promotion's reason and does not stop it (``analysis.py``).
- ``awaiting_approval``: keep observing (a crash still rolls back) until promoted or aborted.
- ``promoting``: wait while the fleet is degraded; else promote.
- ``watching``: ``health.failures`` failed probes in a row revert, and so does a ``fail``
  verdict of the counters read after each probe; the first pass after ``watch_until`` makes it
  live, with the analysis said in the move (``too-little-traffic`` is not a pass).
- ``live``: at ``warm_until`` the previous colour is retired; while the edge is pinned to a
  release (which may route to it) it is kept, looked at again every ``PIN_LOOK_SECONDS``, until
  the live phase's deadline settles the rollout with the previous colour left running.

Before all that: a check of another chain, or of an ended rollout, ends; a pending rollout that
is no longer the app's newest is superseded; a rollout past its phase's deadline
(``lifecycle.DEADLINES``) takes the expiry move.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from ..admission import ADMISSION_GRACE_SECONDS, FAST_CHECK_MS
from ..colour import Colour
from ..edgepush import PUSH_MAX_SECONDS
from ..lifecycle import (
    DEADLINES,
    ENDED,
    PENDING,
    Limits,
    Phase,
    deadline_at,
    expiry_why,
    overdue,
)
from ..store.rollouts import AppState, LiveSwitch, Rollout
from .analysis import Outcome, Thresholds
from .analysis import Verdict as Analysed
from .observe import Observation, Verdict
from .probe import ProbeResult

if TYPE_CHECKING:
    from ..appconfig import App

# How often a check looks at a candidate that is not ready yet, within its invocation.
WATCH_STEP_SECONDS = 0.25
WARM_LOOK_SECONDS = 900  # a live rollout's chain looks again at most this far apart
DEPLOY_LOOK_SECONDS = 30  # ... and a deploying one's, backing off to this
PIN_LOOK_SECONDS = 60  # ... and a live one whose retirement waits for the edge's unpin
# A check refreshes its rollout's last_check_at before and after each edge push, and a push
# lasts at most PUSH_MAX_SECONDS: the sweep takes a chain for stuck only after longer than that.
STUCK_SLACK_SECONDS = 15
STUCK_AFTER_SECONDS = PUSH_MAX_SECONDS + STUCK_SLACK_SECONDS


class Kind(StrEnum):
    END = "end"  # nothing to do: the chain stops
    WAIT = "wait"  # look again: within this invocation if it can, else a queued check
    PROBE = "probe"  # an HTTPS check through the preview host, then decide again
    ANALYSE = "analyse"  # read the edge's counters for the candidate, then decide again
    PUSH_PREVIEW = "push-preview"  # route the preview host to the candidate, then again
    MARK_READY = "mark-ready"  # record when the candidate was first seen ready, then again
    START_PROMOTION = "start-promotion"  # gated -> promoting, then decide again
    AWAIT_APPROVAL = "await-approval"  # gating -> awaiting_approval
    PROMOTE = "promote"  # live colour := candidate, the fleet pushed; -> watching
    ROLL_BACK = "roll-back"  # the candidate never served: scaled away (``phase`` says how)
    REVERT = "revert"  # after promotion: the previous colour live again
    FAIL_PROMOTION = "fail-promotion"  # promoting past its deadline: reverted, failed
    MARK_LIVE = "mark-live"  # watching -> live
    RETIRE = "retire"  # live -> settled, the previous colour scaled to zero
    SUPERSEDE = "supersede"  # a newer rollout is the app's newest


class Status(StrEnum):
    """What a check reports (``GateResult.status``)."""

    WAITING = "waiting"
    WATCHING = "watching"
    PROMOTED = "promoted"
    LIVE = "live"
    RETIRED = "retired"
    ENDED = "ended"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"
    DRY_RUN = "dry-run"  # a manual act's dry run: what it would do, nothing changed


# The phases each step may move its rollout to (for the executor's steps with more than one
# outcome, which one depends on what the fleet or the cluster answers).
TARGETS: dict[Kind, frozenset[Phase]] = {
    Kind.SUPERSEDE: frozenset({Phase.SUPERSEDED}),
    Kind.START_PROMOTION: frozenset({Phase.PROMOTING}),
    Kind.AWAIT_APPROVAL: frozenset({Phase.AWAITING_APPROVAL}),
    Kind.PROMOTE: frozenset({Phase.WATCHING, Phase.FAILED, Phase.SUPERSEDED}),
    Kind.REVERT: frozenset({Phase.ROLLED_BACK, Phase.FAILED}),
    Kind.FAIL_PROMOTION: frozenset({Phase.FAILED}),
    Kind.MARK_LIVE: frozenset({Phase.LIVE}),
    Kind.RETIRE: frozenset({Phase.SETTLED}),
}


class Counts(NamedTuple):
    """Consecutive health-check passes and failures, carried from check to check."""

    successes: int = 0
    failures: int = 0


class Step(NamedTuple):
    kind: Kind
    detail: str
    phase: Phase | None = None  # the phase a ROLL_BACK ends in
    counts: Counts = Counts()
    look_again: float | None = None  # WAIT: may look again within the invocation, this soon
    next_in: float = 0.0  # WAIT: else the next check is queued this far ahead
    status: Status = Status.WAITING  # WAIT: what the check reports


class Policy(NamedTuple):
    """The app's gate settings, and its phases' limits."""

    successes: int
    failures: int
    interval_seconds: int
    ready_deadline_seconds: int
    manual_approval: bool
    limits: Limits
    analysis: Thresholds | None = None  # None: the app's analysis is off

    @classmethod
    def of(cls, app: App, *, deploy_deadline: int, promote_deadline: int) -> Policy:
        return cls(
            successes=app.health.successes,
            failures=app.health.failures,
            interval_seconds=app.health.interval_seconds,
            ready_deadline_seconds=app.health.ready_deadline_seconds,
            manual_approval=app.manual_approval,
            limits=Limits.of(app, deploy=deploy_deadline, promote=promote_deadline),
            analysis=Thresholds.of(app.analysis),
        )


class Look(NamedTuple):
    """What a check has seen so far."""

    chain: str  # the chain of checks the check belongs to
    rollout: Rollout | None
    state: AppState
    now_ms: int
    counts: Counts = Counts()
    attempt: int = 0  # checks in this chain before this one
    observation: Observation | None = None  # gated phases
    probe: ProbeResult | None = None  # the latest probe of this look
    analysis: Analysed | None = None  # the edge's counters, read after this look's probe
    fleet_degraded: str | None = None  # promoting: the fleet's status while it is degraded
    preview_tried: bool = False  # this invocation pushed the preview route, and it was not taken
    lingered: bool = False  # this invocation has looked again already
    # live: why the previous colour may not be scaled down now (the edge is pinned to a
    # release, which may route to it; or the pin could not be read); None: it may.
    pinned: str | None = None


def decide(look: Look, policy: Policy) -> Step:
    rollout = look.rollout
    if rollout is None:
        return Step(Kind.END, "no such rollout")
    if look.chain != rollout.chain:
        # A redelivered or duplicate message: another chain of checks has taken over.
        return Step(Kind.END, f"chain {look.chain or '-'} was taken over")
    if rollout.phase in ENDED:
        return Step(Kind.END, f"rollout is {rollout.phase.value}")
    if rollout.phase in PENDING and look.state.rollout_id != rollout.rollout_id:
        return Step(Kind.SUPERSEDE, f"superseded by {look.state.rollout_id}")
    return _going_on(look, rollout, policy)


def _going_on(look: Look, rollout: Rollout, policy: Policy) -> Step:
    """A rollout that goes on: a revert waiting for the edge first (pushed again, even past
    the phase's deadline: one last try), then the phase's deadline, then the phase."""
    if rollout.reverting is not None and rollout.phase in REVERTIBLE:
        return _reverting(look, rollout, rollout.reverting)
    if overdue(rollout.phase, rollout.entered_at, policy.limits, look.now_ms):
        return expired(look, rollout, policy)
    return _BY_PHASE[rollout.phase](look, rollout, policy)


# The phases whose revert (the previous colour back in the table) may wait for the edge.
REVERTIBLE = frozenset({Phase.PROMOTING, Phase.WATCHING, Phase.LIVE})


def _reverting(look: Look, rollout: Rollout, why: str) -> Step:
    """A revert the edge has not taken yet (the previous colour is back in the table): push it
    again (the executor ends the rollout past its phase's deadline: :func:`unpushed`). Taken
    over since (a newer rollout made live): it ends without a push, nothing scaled away that the
    newer rollout holds."""
    kind = Kind.FAIL_PROMOTION if rollout.phase is Phase.PROMOTING else Kind.REVERT
    back = rollout.previous_rollout_id or None
    if look.state.live_rollout_id != back:
        ended = Phase.FAILED if rollout.phase is Phase.PROMOTING else Phase.ROLLED_BACK
        now = look.state.live_rollout_id or "none"
        return Step(Kind.ROLL_BACK, f"{why}; overtaken: rollout {now} is live now", ended)
    return Step(kind, why)


def unpushed(
    rollout: Rollout,
    policy: Policy,
    now_ms: int,
    *,
    what: str,
    fleet_status: str,
    left: str,
    every: float,
) -> Step:
    """A push the edge did not take (``what``: the revert, the retirement; ``fleet_status``:
    its answer): within the rollout's phase deadline, WAIT and push again at a later check (at
    most ``every`` seconds later, never past the deadline); past it, END, saying that the edge
    did not take it and what was ``left`` as it is (nothing is scaled away)."""
    at = deadline_at(rollout.phase, rollout.entered_at, policy.limits)
    if at is not None and now_ms < at:
        seconds = max(1, (at - now_ms) // 1000)
        why = (
            f"the edge did not take the {what} ({fleet_status}); pushed again at a later check"
            f" (until the {rollout.phase.value} phase's deadline, in {seconds} s)"
        )
        status = Status.LIVE if rollout.phase is Phase.LIVE else Status.WAITING
        return Step(Kind.WAIT, why, next_in=min(every, seconds), status=status)
    why = (
        f"the edge did not take the {what} ({fleet_status}) by the {rollout.phase.value}"
        f" phase's deadline; {left}"
    )
    return Step(Kind.END, why)


def targets(step: Step) -> frozenset[Phase]:
    """The phases ``step`` may move its rollout to (none for a step that only looks)."""
    if step.kind is Kind.ROLL_BACK and step.phase is not None:
        return frozenset({step.phase})
    return TARGETS.get(step.kind, frozenset())


def expired(look: Look, rollout: Rollout, policy: Policy) -> Step:
    """The move a phase's deadline makes (``lifecycle.DEADLINES``). A watch past its
    deadline (its checks came late) is decided by one more probe: live on a pass."""
    rule = DEADLINES[rollout.phase]
    why = expiry_why(rollout.phase, policy.limits)
    if rollout.phase is Phase.PROMOTING:
        return Step(Kind.FAIL_PROMOTION, why)
    if rollout.phase is Phase.WATCHING:
        return _late_watch(look, why, policy)
    if rollout.phase is Phase.LIVE:
        return Step(Kind.RETIRE, why)
    return Step(Kind.ROLL_BACK, why, phase=rule.expiry)


def _late_watch(look: Look, why: str, policy: Policy) -> Step:
    """A watch past its deadline: one more probe (and its counters) decides."""
    if look.probe is None:
        return Step(Kind.PROBE, "a last watch pass, past the deadline", counts=look.counts)
    if not look.probe.ok:
        return Step(Kind.REVERT, f"{why}: {look.probe.detail}")
    judged = _analysed(look, policy)
    if isinstance(judged, Step):
        return judged
    if judged is not None and judged.outcome is Outcome.FAIL:
        return Step(Kind.REVERT, f"{why}: {judged.reason}")
    return Step(Kind.MARK_LIVE, f"watch window passed (checked late: {why}){_said(judged)}")


def _deploying(look: Look, rollout: Rollout, policy: Policy) -> Step:
    # Backing off: the rollout function hands the rollout on itself, under its own chain.
    delay = min(DEPLOY_LOOK_SECONDS, policy.interval_seconds * (look.attempt + 1))
    why = "the rollout function has not handed this on yet"
    return Step(Kind.WAIT, why, counts=look.counts, next_in=delay)


def _gated(look: Look, rollout: Rollout, policy: Policy) -> Step:
    seen = look.observation
    if seen is None or seen.verdict is Verdict.FAILED:
        return Step(Kind.ROLL_BACK, seen.reason if seen else "not observed", Phase.ROLLED_BACK)
    if seen.verdict is Verdict.WAITING:
        return _not_ready(look, rollout, seen, policy)
    if rollout.phase is Phase.AWAITING_APPROVAL:
        return awaiting(policy)
    return _ready(look, rollout, policy)


def _not_ready(look: Look, rollout: Rollout, seen: Observation, policy: Policy) -> Step:
    if not rollout.preview_pushed and not look.preview_tried:
        return Step(Kind.PUSH_PREVIEW, "the preview route, while the pods start")
    age = (look.now_ms - rollout.created_at) / 1000
    if age > policy.ready_deadline_seconds:
        why = f"not ready within {policy.ready_deadline_seconds} s ({seen.reason})"
        return Step(Kind.ROLL_BACK, why, Phase.ROLLED_BACK)
    # Watched here for a while already: the next check looks again at once.
    later = 0 if look.lingered else policy.interval_seconds
    return Step(
        Kind.WAIT, seen.reason, counts=look.counts, look_again=WATCH_STEP_SECONDS, next_in=later
    )


def _ready(look: Look, rollout: Rollout, policy: Policy) -> Step:
    """A ready candidate: its preview route, its ready mark, then the health passes."""
    if not rollout.preview_pushed:
        if look.preview_tried:
            why = "preview route not on the fleet yet"
            return Step(Kind.WAIT, why, counts=look.counts, next_in=policy.interval_seconds)
        return Step(Kind.PUSH_PREVIEW, "the preview route, to check the candidate through")
    if rollout.ready_at is None:
        return Step(Kind.MARK_READY, "the candidate is ready")
    if look.probe is None:
        return Step(Kind.PROBE, "a health pass through the preview host", counts=look.counts)
    return _count(look, rollout, look.probe, policy)


def awaiting(policy: Policy) -> Step:
    """The wait of a healthy candidate for a manual promote."""
    return Step(
        Kind.WAIT, "healthy; waiting for a manual promote", next_in=policy.interval_seconds * 5
    )


def _count(look: Look, rollout: Rollout, probe: ProbeResult, policy: Policy) -> Step:
    counts = look.counts
    grace_until = (rollout.ready_at or 0) + ADMISSION_GRACE_SECONDS * 1000
    if not probe.ok and look.now_ms < grace_until:
        # HAProxy may not have admitted the candidate's servers yet: not a failure.
        return Step(
            Kind.WAIT,
            f"{probe.detail} (admitting the candidate)",
            counts=Counts(0, counts.failures),
            look_again=FAST_CHECK_MS / 1000,
            next_in=policy.interval_seconds,
        )
    successes = counts.successes + 1 if probe.ok else 0
    failures = 0 if probe.ok else counts.failures + 1
    if failures >= policy.failures:
        why = f"health check failed {failures} times in a row: {probe.detail}"
        return Step(Kind.ROLL_BACK, why, Phase.ROLLED_BACK)
    judged = _analysed(look, policy)
    if isinstance(judged, Step):
        return judged
    if judged is not None and judged.outcome is Outcome.FAIL:
        return Step(Kind.ROLL_BACK, judged.reason, Phase.ROLLED_BACK)
    return _counted(probe, Counts(successes, failures), policy, _said(judged))


def _counted(probe: ProbeResult, counts: Counts, policy: Policy, said: str) -> Step:
    """A counted pass or failure that decides nothing alone: promote, or wait for more."""
    successes, failures = counts
    if successes >= policy.successes:
        if policy.manual_approval:
            why = f"healthy ({successes} passes); waiting for a manual promote{said}"
            return Step(Kind.AWAIT_APPROVAL, why)
        return Step(Kind.START_PROMOTION, f"healthy: {successes} passes in a row{said}")
    return Step(
        Kind.WAIT,
        f"{probe.detail} ({successes}/{policy.successes} passes){said}",
        counts=Counts(successes, failures),
        look_again=policy.interval_seconds,
        next_in=policy.interval_seconds,
    )


def _analysed(look: Look, policy: Policy) -> Analysed | Step | None:
    """The analysis of this look's counters; the step that reads them when it has not yet;
    None when the app's analysis is off."""
    if policy.analysis is None:
        return None
    if look.analysis is None:
        return Step(
            Kind.ANALYSE, "the candidate's traffic, from the edge's counters", counts=look.counts
        )
    return look.analysis


def _said(judged: Analysed | None) -> str:
    """The analysis, as said after a step's reason (a verdict that is not ``fail``)."""
    return f"; {judged.reason}" if judged is not None else ""


def _promoting(look: Look, rollout: Rollout, policy: Policy) -> Step:
    if look.fleet_degraded is not None:
        why = f"the HAProxy fleet is degraded ({look.fleet_degraded}); not promoting"
        return Step(Kind.WAIT, why, counts=look.counts, next_in=policy.interval_seconds)
    return Step(Kind.PROMOTE, "promote")


def _watching(look: Look, rollout: Rollout, policy: Policy) -> Step:
    probe = look.probe
    if probe is None:
        return Step(Kind.PROBE, "a watch pass through the preview host", counts=look.counts)
    failures = 0 if probe.ok else look.counts.failures + 1
    if failures >= policy.failures:
        return Step(Kind.REVERT, f"failed after promotion: {probe.detail}")
    judged = _analysed(look, policy)
    if isinstance(judged, Step):
        return judged
    if judged is not None and judged.outcome is Outcome.FAIL:
        return Step(Kind.REVERT, f"failed after promotion: {judged.reason}")
    if rollout.watch_until is not None and look.now_ms >= rollout.watch_until and probe.ok:
        return Step(Kind.MARK_LIVE, f"watch window passed{_said(judged)}")
    return Step(
        Kind.WAIT,
        f"{probe.detail}{_said(judged)}",
        counts=Counts(0, failures),
        next_in=policy.interval_seconds,
        status=Status.WATCHING,
    )


def _live(look: Look, rollout: Rollout, policy: Policy) -> Step:
    if rollout.warm_until is not None and look.now_ms < rollout.warm_until:
        return Step(
            Kind.WAIT,
            "the previous colour is kept warm",
            next_in=warm_left(rollout, look.now_ms),
            status=Status.LIVE,
        )
    if look.pinned:
        # Past the phase's deadline, decide() took the expiry move (RETIRE) before this.
        at = deadline_at(Phase.LIVE, rollout.entered_at, policy.limits) or look.now_ms
        left = max(1, (at - look.now_ms) // 1000)
        previous = (rollout.previous_colour or rollout.colour.other).value
        why = (
            f"the warm window is over; {previous} is not scaled down while the edge is pinned "
            f"(looked at again until the live phase's deadline, in {left} s): {look.pinned}"
        )
        return Step(Kind.WAIT, why, next_in=min(PIN_LOOK_SECONDS, left), status=Status.LIVE)
    return Step(Kind.RETIRE, "warm window over")


def warm_left(rollout: Rollout, now_ms: int) -> int:
    """Seconds until the next look at a live rollout: its warm window's end, or sooner."""
    return int(min(WARM_LOOK_SECONDS, max(0, (rollout.warm_until or 0) - now_ms) // 1000))


_BY_PHASE: dict[Phase, Callable[[Look, Rollout, Policy], Step]] = {
    Phase.DEPLOYING: _deploying,
    Phase.GATING: _gated,
    Phase.AWAITING_APPROVAL: _gated,
    Phase.PROMOTING: _promoting,
    Phase.WATCHING: _watching,
    Phase.LIVE: _live,
}


# ------------------------------------------------------------------ promotion and retirement
class Promotion(NamedTuple):
    """What a promotion writes: what was live (recorded once, for a revert), whether the live
    colour switches, and the colour that backs up the live route."""

    previous: dict[str, str | None] | None
    switch: bool
    backup: Colour | None


def promotion(rollout: Rollout, state: AppState) -> Promotion:
    switch = state.live_colour is not rollout.colour
    previous = None
    if rollout.previous_colour is None and switch:
        previous = {
            "previous_colour": state.live_colour.value,
            "previous_version": state.live_version or "",
            "previous_image": state.live_image or "",
            "previous_rollout_id": state.live_rollout_id,
        }
    # What was live stays warm behind the new colour: HAProxy sends live traffic to it while
    # every server of the new colour is down, before the gate has even seen the failure.
    backup = state.live_colour if previous is not None else rollout.previous_colour
    return Promotion(previous, switch, backup)


def live_switch(rollout: Rollout, state: AppState) -> LiveSwitch:
    """What a promotion that switches the live colour writes beside its move to ``promoting``
    (``RolloutStore.promote``), from the state as read in the same step: :func:`promotion`'s
    record of what was live, and its backup."""
    plan = promotion(rollout, state)
    return LiveSwitch(plan.previous or {}, plan.backup)


def watch_windows(now_ms: int, policy: Policy) -> dict[str, int]:
    """The fields a promotion the fleet took sets: its watch and warm windows."""
    return {
        "promoted_at": now_ms,
        "watch_until": now_ms + policy.limits.watch * 1000,
        "warm_until": now_ms + policy.limits.warm * 1000,
    }


def retire_push(rollout: Rollout, state: AppState) -> bool:
    """Whether a retirement pushes the edge (the warm backup off the live route): the state
    still has a backup, or ``rollout`` is still the live one and had a backup (a previous
    colour) that an earlier retirement dropped, whose push the edge did not take."""
    if state.backup_colour is not None:
        return True
    return state.live_rollout_id == rollout.rollout_id and rollout.previous_colour is not None


def retirable(owner: str | None, rollout: Rollout) -> bool:
    """Whether the slot behind ``rollout`` holds something it may scale away: an older
    rollout's pods, or a Deployment Greenlight did not annotate; never a newer candidate's."""
    return owner is None or owner < rollout.rollout_id


def stuck(
    rollout: Rollout,
    policy: Policy,
    now_ms: int,
    *,
    deploy_grace_seconds: int,
    push_max_seconds: int = PUSH_MAX_SECONDS,
) -> bool:
    """Whether the sweep should start a new chain of checks for ``rollout``: no check for
    three intervals, and never sooner than ``push_max_seconds`` (the longest edge push, during
    which a check refreshes nothing) plus :data:`STUCK_SLACK_SECONDS`; a live one: for longer
    than its chain's longest wait. A rollout still within its rollout function's run is left to
    that function's own hand-off."""
    if (
        rollout.phase is Phase.DEPLOYING
        and now_ms - rollout.entered_at < deploy_grace_seconds * 1000
    ):
        return False
    if rollout.phase is Phase.LIVE:
        limit = (WARM_LOOK_SECONDS + 60) * 1000
    elif rollout.phase is Phase.AWAITING_APPROVAL:  # its chain looks every 5 intervals
        limit = 8 * policy.interval_seconds * 1000
    else:
        limit = 3 * policy.interval_seconds * 1000
    after_push = (push_max_seconds + STUCK_SLACK_SECONDS) * 1000
    return now_ms - rollout.last_check_at >= max(limit, after_push)


def _live_of(
    colour: Colour, version: str | None, image: str | None, rollout_id: str | None
) -> dict[str, Any]:
    return {"colour": colour.value, "version": version, "image": image, "rollout_id": rollout_id}


def manual_plan(
    action: str, rollout: Rollout, state: AppState, *, analysis: Thresholds | None = None
) -> dict[str, Any]:
    """What a manual ``promote``, ``abort`` or ``rollback`` of ``rollout`` would do, with the
    app's ``state`` as read (a dry run's answer): the rollout's moves, what is live after it
    (colour, version, image, rollout), the warm backup, which colour is scaled away, and the
    edge push (for a rollback: the edge config that made the rollout live, which it replaces).
    """
    live_now = _live_of(
        state.live_colour, state.live_version, state.live_image, state.live_rollout_id
    )
    plan: dict[str, Any] = {"rollout_id": rollout.rollout_id, "image": rollout.image}
    if action == "promote":
        promoted = promotion(rollout, state)
        moves = [rollout.phase.value, Phase.PROMOTING.value, Phase.WATCHING.value]
        live = _live_of(rollout.colour, rollout.version, rollout.image, rollout.rollout_id)
        backup = promoted.backup.value if promoted.backup else None
        edge = f"pushed: the live route to {rollout.colour.value}"
        edge += f", {backup} warm behind it" if backup else ""
        judged = analysis.to_dict() if analysis is not None else "off"  # the watch's thresholds
        return plan | {
            "moves": moves,
            "live": live,
            "backup_colour": backup,
            "edge": edge,
            "analysis": judged,
        }
    if action == "abort":
        return plan | {
            "moves": [rollout.phase.value, Phase.ABORTED.value],
            "live": live_now,  # untouched
            "scaled_away": rollout.colour.value,
            "edge": None,
        }
    previous = rollout.previous_colour or rollout.colour.other
    live = _live_of(
        previous, rollout.previous_version, rollout.previous_image, rollout.previous_rollout_id
    )
    return plan | {
        "moves": [rollout.phase.value, Phase.ROLLED_BACK.value],
        "live": live,
        "backup_colour": None,
        "scaled_away": rollout.colour.value,
        "edge": {
            "push": f"the live route back to {previous.value}",
            "replaces_config_version": rollout.config_version,
            "replaces_config_sha256": rollout.config_sha256,
        },
    }
