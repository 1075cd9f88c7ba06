"""Waits before an edge push leave the push its time: the rollout function's ECR wait, the night
function's drains and morning wait. At fixed instants (a clock the test holds)."""

from __future__ import annotations

import pytest

from greenlight.deadline import SAFETY_MARGIN_MS, Deadline
from greenlight.edgepush import MIN_PUSH_SECONDS, PUSH_BUDGET_SECONDS
from greenlight.night.service import before_push
from greenlight.rollout.service import AFTER_PUSH_SECONDS, ecr_wait_deadline
from greenlight_sandbox.fleet import load_template


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> Deadline:
    clock = Clock()
    return Deadline.within(seconds, clock=clock)


def rollout_timeout() -> int:
    return int(load_template()["Resources"]["RolloutFunction"]["Properties"]["Timeout"])


def test_the_ecr_wait_and_the_push_fit_the_rollout_functions_timeout():
    run = at(rollout_timeout() - SAFETY_MARGIN_MS / 1000)  # Deadline.from_context in Lambda
    for wait_seconds in (0, 30, 120, 600):  # EcrWaitSeconds: 0 to 600
        wait = ecr_wait_deadline(run, wait_seconds, push=True)
        # The wait ends with the push's budget and the writes after it still left.
        assert wait.remaining() + PUSH_BUDGET_SECONDS + AFTER_PUSH_SECONDS <= run.remaining()
        if wait_seconds:
            assert wait.remaining() <= wait_seconds
    # The default (120 s) is waited in full within the 330 s timeout.
    assert ecr_wait_deadline(run, 120, push=True).remaining() == 120
    assert PUSH_BUDGET_SECONDS >= MIN_PUSH_SECONDS


@pytest.mark.parametrize(
    ("left", "wait_seconds", "push", "expected"),
    [
        (325, 120, True, 120),
        (200, 120, True, 40),  # a retry late in the run: the push's time is kept
        (100, 120, True, 0),
        (100, 120, False, 90),  # no edge: only the writes after
        (325, 0, True, 165),  # no limit of its own: what the push leaves
    ],
)
def test_the_ecr_wait_at_fixed_instants(left, wait_seconds, push, expected):
    assert ecr_wait_deadline(at(left), wait_seconds, push=push).remaining() == expected


@pytest.mark.parametrize(
    ("left", "expected"),
    [(840, 840 - PUSH_BUDGET_SECONDS), (450, 300), (60, 40), (0, 0)],
)
def test_the_night_leaves_its_last_push_its_time(left, expected):
    assert before_push(at(left)).remaining() == pytest.approx(expected)
