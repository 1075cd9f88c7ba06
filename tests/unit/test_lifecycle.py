"""The lifecycle table walked: its phases, moves, groups and deadlines, and the docs beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenlight.lifecycle import (
    DEADLINES,
    ENDED,
    GROUPS,
    IN_FLIGHT,
    MOVING,
    PENDING,
    PROMOTED,
    TRANSITIONS,
    WARM,
    WATCH_GRACE_SECONDS,
    WATCHED,
    Limits,
    Phase,
    allowed,
    deadline_at,
    markdown_table,
    overdue,
    sources,
    taken_over,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(deploy=2400, gating=420, approval=86400, promote=900, watch=30, warm=600)
T0 = 1_795_684_502_000  # a fixed instant (ms)


def reachable(start: Phase) -> set[Phase]:
    seen, todo = set(), [start]
    while todo:
        phase = todo.pop()
        if phase not in seen:
            seen.add(phase)
            todo.extend(TRANSITIONS[phase])
    return seen


def test_every_phase_has_a_row_and_every_move_stays_in_the_table():
    assert set(TRANSITIONS) == set(Phase)
    for nxt in TRANSITIONS.values():
        assert nxt <= set(Phase)


def test_only_the_ended_phases_have_no_way_out_and_every_rollout_can_end():
    assert {p for p, nxt in TRANSITIONS.items() if not nxt} == ENDED
    assert ENDED == {
        Phase.SETTLED,
        Phase.FAILED,
        Phase.ROLLED_BACK,
        Phase.ABORTED,
        Phase.SUPERSEDED,
    }
    for phase in Phase:
        assert reachable(phase) & ENDED, phase
    assert reachable(Phase.DEPLOYING) == set(Phase)  # every phase is on some path


def test_nothing_moves_back_to_deploying_and_nothing_leaves_an_ended_phase():
    assert sources(Phase.DEPLOYING) == frozenset()  # only acceptance makes a rollout
    for phase in ENDED:
        assert not any(allowed(phase, to) for to in Phase)


def test_the_groups_split_the_phases_as_their_names_say():
    assert PENDING | WATCHED | WARM | ENDED == set(Phase)
    for a, b in [(PENDING, WATCHED), (WATCHED, WARM), (WARM, ENDED), (PENDING, ENDED)]:
        assert not a & b
    assert IN_FLIGHT == PENDING | WATCHED and MOVING == IN_FLIGHT | WARM
    assert Phase.LIVE not in IN_FLIGHT  # a warm rollout does not hold off the night shrink
    assert set(GROUPS) == {"pending", "gated", "watched", "warm", "in flight", "ended"}


def test_a_takeover_ends_a_watch_or_a_warm_period_through_the_table():
    for phase in PROMOTED:
        to = taken_over(phase)
        assert to is not None and allowed(phase, to)
    assert taken_over(Phase.WATCHING) is Phase.SUPERSEDED
    assert taken_over(Phase.LIVE) is Phase.SETTLED
    for phase in PENDING | ENDED:
        assert taken_over(phase) is None


def test_every_phase_that_can_wait_has_a_deadline_whose_expiry_is_a_move_of_the_table():
    assert set(DEADLINES) == set(Phase) - ENDED
    for phase, rule in DEADLINES.items():
        assert allowed(phase, rule.expiry), (phase, rule.expiry)
        assert rule.source.startswith(("settings:", "apps file:"))


@pytest.mark.parametrize(
    ("phase", "seconds"),
    [
        (Phase.DEPLOYING, 2400),
        (Phase.GATING, 420),
        (Phase.AWAITING_APPROVAL, 86400),
        (Phase.PROMOTING, 900),
        (Phase.WATCHING, 30 + WATCH_GRACE_SECONDS),
        (Phase.LIVE, 600 - 30 + WATCH_GRACE_SECONDS),
    ],
)
def test_deadlines_count_from_entering_the_phase(phase, seconds):
    assert deadline_at(phase, T0, LIMITS) == T0 + seconds * 1000
    assert not overdue(phase, T0, LIMITS, T0 + seconds * 1000 - 1)
    assert overdue(phase, T0, LIMITS, T0 + seconds * 1000)


def test_ended_phases_are_never_overdue():
    for phase in ENDED:
        assert deadline_at(phase, T0, LIMITS) is None
        assert not overdue(phase, T0, LIMITS, T0 + 10**12)


def test_the_apps_file_defaults_give_each_phase_its_limit():
    from greenlight.appconfig import parse_apps

    text = (ROOT / "config/sandbox-apps.yaml").read_text()
    shop = parse_apps(text, origin="sandbox").app("shop")
    limits = Limits.of(shop, deploy=2400, promote=900)
    # ready 20 s + 4 x (3 successes + 3 failures) x 1 s; watch and warm from the file.
    assert (limits.gating, limits.watch, limits.warm) == (20 + 24, 6, 120)
    assert limits.approval == 86400


def test_the_architecture_doc_shows_the_table_as_the_code_has_it():
    doc = (ROOT / "docs/architecture.md").read_text()
    assert markdown_table() in doc, "regenerate the state table: python -m greenlight.lifecycle"
