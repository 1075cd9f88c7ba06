"""The rollout lifecycle: its phases, the moves between them, their groups and their deadlines.

This module is the one place that says how a rollout moves. The store (``store/rollouts.py``)
derives the condition of every phase write from :data:`TRANSITIONS`; the gate's sweep enforces
the deadlines of :func:`deadline_at`; docs/architecture.md shows :func:`markdown_table`, and a
unit test keeps the two equal. Pure: no I/O, nothing imported beyond the standard library.

A rollout is *pending* until it is promoted (its candidate never took traffic), *watched* while
its promotion is proven on the live route, *warm* while it is live with the previous colour
still scaled up behind it (an instant rollback), and *ended* after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .appconfig import App


class Phase(StrEnum):
    DEPLOYING = "deploying"  # accepted; the candidate's Service and Deployment being written
    GATING = "gating"  # the gate proves the candidate healthy
    AWAITING_APPROVAL = "awaiting_approval"  # healthy; the app wants a manual promote
    PROMOTING = "promoting"  # the live colour switches and the fleet takes it
    WATCHING = "watching"  # live, inside the post-promotion watch window
    LIVE = "live"  # live; the previous colour still warm behind it
    SETTLED = "settled"  # live; the previous colour retired, or its slot taken by a newer one
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"


class Actor(StrEnum):
    """Who moved a rollout (kept in its history with the reason)."""

    ROLLOUT = "rollout-function"
    GATE = "gate"
    SWEEP = "gate-sweep"
    MANUAL = "manual"


P = Phase
TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    P.DEPLOYING: frozenset({P.GATING, P.FAILED, P.ABORTED, P.SUPERSEDED}),
    P.GATING: frozenset({P.AWAITING_APPROVAL, P.PROMOTING, P.ROLLED_BACK, P.ABORTED, P.SUPERSEDED}),
    P.AWAITING_APPROVAL: frozenset({P.PROMOTING, P.ROLLED_BACK, P.ABORTED, P.SUPERSEDED}),
    P.PROMOTING: frozenset({P.WATCHING, P.FAILED, P.SUPERSEDED}),
    P.WATCHING: frozenset({P.LIVE, P.ROLLED_BACK, P.FAILED, P.SUPERSEDED}),
    P.LIVE: frozenset({P.SETTLED, P.ROLLED_BACK}),
    P.SETTLED: frozenset(),
    P.FAILED: frozenset(),
    P.ROLLED_BACK: frozenset(),
    P.ABORTED: frozenset(),
    P.SUPERSEDED: frozenset(),
}

# Not promoted yet: a newer accepted rollout supersedes it; HAProxy checks its candidate briskly.
PENDING = frozenset({P.DEPLOYING, P.GATING, P.AWAITING_APPROVAL})
# The gate judges the candidate (readiness, then health through the preview host).
GATED = frozenset({P.GATING, P.AWAITING_APPROVAL})
# The promotion is proven: the preview host reaches the new live colour alone.
WATCHED = frozenset({P.PROMOTING, P.WATCHING})
# Live with the previous colour warm behind it.
WARM = frozenset({P.LIVE})
# Promoted and not ended: a newer rollout takes it over when it writes into the warm slot.
PROMOTED = WATCHED | WARM
# No night shrink while any rollout is in flight.
IN_FLIGHT = PENDING | WATCHED
# The gate's chain of checks (and its sweep) follows these.
MOVING = IN_FLIGHT | WARM
ENDED = frozenset(p for p, nxt in TRANSITIONS.items() if not nxt)
GROUPS: Mapping[str, frozenset[Phase]] = {
    "pending": PENDING,
    "gated": GATED,
    "watched": WATCHED,
    "warm": WARM,
    "in flight": IN_FLIGHT,
    "ended": ENDED,
}


def sources(to: Phase) -> frozenset[Phase]:
    """The phases a rollout may move to ``to`` from."""
    return frozenset(p for p, nxt in TRANSITIONS.items() if to in nxt)


def allowed(frm: Phase, to: Phase) -> bool:
    return to in TRANSITIONS[frm]


def taken_over(phase: Phase) -> Phase | None:
    """What a promoted rollout becomes when a newer rollout writes into its warm slot: a watch
    cut short is superseded; a live one is settled (nothing of it is left to retire)."""
    if phase in WATCHED:
        return P.SUPERSEDED
    if phase in WARM:
        return P.SETTLED
    return None


# ------------------------------------------------------------------ deadlines
WATCH_GRACE_SECONDS = 300  # past its window, a watch or a warm period is overdue


class Limits(NamedTuple):
    """How long a rollout may stay in each phase, in seconds from entering it."""

    deploy: int  # settings: GREENLIGHT_DEPLOY_DEADLINE_SECONDS
    gating: int  # the app's health.verdict_deadline_seconds
    approval: int  # the app's promotion.approval_deadline_seconds
    promote: int  # settings: GREENLIGHT_PROMOTE_DEADLINE_SECONDS
    watch: int  # the app's promotion.watch_seconds
    warm: int  # the app's promotion.warm_seconds

    @classmethod
    def of(cls, app: App, *, deploy: int, promote: int) -> Limits:
        return cls(
            deploy=deploy,
            gating=app.health.verdict_deadline,
            approval=app.promotion.approval_deadline_seconds,
            promote=promote,
            watch=app.promotion.watch_seconds,
            warm=app.promotion.warm_seconds,
        )


class PhaseDeadline(NamedTuple):
    """A phase's deadline: where its length comes from, and the move its expiry makes."""

    source: str
    expiry: Phase

    def seconds(self, phase: Phase, limits: Limits) -> int:
        return {
            P.DEPLOYING: limits.deploy,
            P.GATING: limits.gating,
            P.AWAITING_APPROVAL: limits.approval,
            P.PROMOTING: limits.promote,
            P.WATCHING: limits.watch + WATCH_GRACE_SECONDS,
            P.LIVE: max(0, limits.warm - limits.watch) + WATCH_GRACE_SECONDS,
        }[phase]


DEADLINES: Mapping[Phase, PhaseDeadline] = {
    P.DEPLOYING: PhaseDeadline("settings: GREENLIGHT_DEPLOY_DEADLINE_SECONDS", P.FAILED),
    P.GATING: PhaseDeadline("apps file: health.verdict_deadline_seconds", P.ROLLED_BACK),
    P.AWAITING_APPROVAL: PhaseDeadline(
        "apps file: promotion.approval_deadline_seconds", P.ROLLED_BACK
    ),
    P.PROMOTING: PhaseDeadline("settings: GREENLIGHT_PROMOTE_DEADLINE_SECONDS", P.FAILED),
    P.WATCHING: PhaseDeadline(
        f"apps file: promotion.watch_seconds + {WATCH_GRACE_SECONDS} s", P.ROLLED_BACK
    ),
    P.LIVE: PhaseDeadline(
        f"apps file: promotion.warm_seconds - watch_seconds + {WATCH_GRACE_SECONDS} s", P.SETTLED
    ),
}


def deadline_at(phase: Phase, entered_at_ms: int, limits: Limits) -> int | None:
    """When (ms) a rollout that entered ``phase`` at ``entered_at_ms`` is overdue; None when
    the phase has ended."""
    rule = DEADLINES.get(phase)
    if rule is None:
        return None
    return entered_at_ms + rule.seconds(phase, limits) * 1000


def overdue(phase: Phase, entered_at_ms: int, limits: Limits, now_ms: int) -> bool:
    at = deadline_at(phase, entered_at_ms, limits)
    return at is not None and now_ms >= at


_EXPIRED = " for longer than its deadline"


def expiry_why(phase: Phase, limits: Limits) -> str:
    """The reason of a move a phase's deadline makes: the gate's expiry steps start theirs with
    it (and may add what followed), and :func:`expiry_move` knows it again."""
    rule = DEADLINES[phase]
    return f"{phase.value}{_EXPIRED} ({rule.seconds(phase, limits)} s; {rule.source})"


def expiry_move(frm: str, by: str, why: str) -> bool:
    """Whether a history entry (a move from ``frm``, by ``by``, for ``why``) is a move a
    phase's deadline made. A late watch that passed its last probe goes live: not one."""
    return by in (Actor.GATE, Actor.SWEEP) and why.startswith(f"{frm}{_EXPIRED} (")


# ------------------------------------------------------------------ the table, for the docs
def markdown_table() -> str:
    """The lifecycle as docs/architecture.md shows it (a test keeps the two equal)."""
    groups = {p: [g for g, members in GROUPS.items() if p in members] for p in Phase}
    lines = [
        "| phase | groups | may move to | deadline (from entering the phase) | on expiry |",
        "|---|---|---|---|---|",
    ]
    for phase in Phase:
        nxt = ", ".join(f"`{p.value}`" for p in Phase if p in TRANSITIONS[phase]) or "-"
        rule = DEADLINES.get(phase)
        lines.append(
            f"| `{phase.value}` | {', '.join(groups[phase])} | {nxt} | "
            f"{rule.source if rule else '-'} | "
            f"{'`' + rule.expiry.value + '`' if rule else '-'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the table for docs/architecture.md
    print(markdown_table(), end="")
