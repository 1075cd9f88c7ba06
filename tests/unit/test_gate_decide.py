"""The gate's decisions at fixed instants: no AWS, no cluster, no HTTP, no sleep.

Each case builds what a check has seen (a ``Look``) and asserts the one step ``decide`` takes.
Every move a step asks for is a move of the lifecycle table (``step`` checks it); the last test
checks that the gate's moves, with the rollout function's and the store's own, cover the table.
"""

from __future__ import annotations

import pytest

from greenlight.admission import ADMISSION_GRACE_SECONDS
from greenlight.colour import Colour
from greenlight.edgepush import PUSH_MAX_SECONDS
from greenlight.gate.analysis import Outcome, Thresholds
from greenlight.gate.analysis import Verdict as Analysed
from greenlight.gate.decide import (
    STUCK_AFTER_SECONDS,
    Counts,
    Kind,
    Look,
    Policy,
    Status,
    decide,
    live_switch,
    promotion,
    retirable,
    retire_push,
    stuck,
    targets,
    unpushed,
)
from greenlight.gate.observe import Observation, Verdict
from greenlight.gate.probe import ProbeResult
from greenlight.lifecycle import TRANSITIONS, Limits, Phase, allowed, taken_over
from greenlight.settings import GateSettings
from greenlight.store.rollouts import AppState, Rollout

T0 = 1_795_684_502_000  # when the rollout was accepted (ms)
S = 1000  # one second in ms
RID = "1795684502000-3f9d2a41c0b7"
POLICY = Policy(
    successes=3,
    failures=3,
    interval_seconds=2,
    ready_deadline_seconds=300,
    manual_approval=False,
    limits=Limits(deploy=2400, gating=420, approval=86400, promote=900, watch=30, warm=600),
)
READY = Observation(Verdict.READY, "2/2 ready", 2, 2)
WAITING = Observation(Verdict.WAITING, "0/2 ready", 0, 2)
PASS = ProbeResult(True, "preview.shop.example.com/healthz: HTTP 200")
FAIL = ProbeResult(False, "preview.shop.example.com/healthz: HTTP 503, want 200")


def rollout(phase: Phase, *, entered: int = T0, **fields) -> Rollout:
    base = Rollout(
        app="shop",
        rollout_id=RID,
        version="3f9d2a41c0b7",
        image="shop-web:3f9d2a41c0b7",
        colour=Colour.GREEN,
        phase=phase,
        sequence=T0,
        source="codecommit",
        created_at=T0,
        entered_at=entered,
    )
    return base._replace(**fields)


def look(phase: Phase, *, now: float = 0, state: AppState | None = None, **fields) -> Look:
    """What a check sees of a rollout in ``phase``, ``now`` seconds after T0."""
    looked = {k: fields.pop(k) for k in list(fields) if k in Look._fields}
    seen = rollout(phase, **fields)
    live = AppState(app="shop", rollout_id=RID, phase=phase, live_colour=Colour.BLUE)
    return Look(chain="", rollout=seen, state=state or live, now_ms=T0 + int(now * S), **looked)


def step(a_look: Look, policy: Policy = POLICY):
    taken = decide(a_look, policy)
    assert a_look.rollout is not None
    for to in targets(taken):
        assert allowed(a_look.rollout.phase, to), (a_look.rollout.phase, to, taken)
    return taken


# ------------------------------------------------------------------ before any phase
def test_a_check_of_another_chain_or_of_an_ended_rollout_ends():
    assert step(look(Phase.GATING)._replace(chain="old")).kind is Kind.END
    for phase in (Phase.SETTLED, Phase.FAILED, Phase.ROLLED_BACK, Phase.SUPERSEDED):
        assert decide(look(phase), POLICY).kind is Kind.END
    assert decide(look(Phase.GATING)._replace(rollout=None), POLICY).kind is Kind.END


@pytest.mark.parametrize("phase", [Phase.DEPLOYING, Phase.GATING, Phase.AWAITING_APPROVAL])
def test_a_pending_rollout_that_is_no_longer_the_newest_is_superseded(phase):
    newer = AppState(app="shop", rollout_id="1795684600000-4a0e3b52d1c8")
    taken = step(look(phase, state=newer, observation=READY))
    assert taken.kind is Kind.SUPERSEDE and "1795684600000" in taken.detail


def test_a_promoted_rollout_keeps_its_watch_while_a_newer_one_is_only_accepted():
    newer = AppState(app="shop", rollout_id="1795684600000-4a0e3b52d1c8", live_rollout_id=RID)
    watching = look(Phase.WATCHING, now=10, state=newer, watch_until=T0 + 30 * S)
    assert step(watching).kind is Kind.PROBE


# ------------------------------------------------------------------ deadlines
@pytest.mark.parametrize(
    ("phase", "seconds", "kind", "ends"),
    [
        (Phase.DEPLOYING, 2400, Kind.ROLL_BACK, Phase.FAILED),
        (Phase.GATING, 420, Kind.ROLL_BACK, Phase.ROLLED_BACK),
        (Phase.AWAITING_APPROVAL, 86400, Kind.ROLL_BACK, Phase.ROLLED_BACK),
        (Phase.PROMOTING, 900, Kind.FAIL_PROMOTION, Phase.FAILED),
        (Phase.WATCHING, 330, Kind.REVERT, Phase.ROLLED_BACK),
        (Phase.LIVE, 870, Kind.RETIRE, Phase.SETTLED),
    ],
)
def test_a_rollout_past_its_phase_deadline_takes_the_expiry_move(phase, seconds, kind, ends):
    fields = {"observation": READY, "ready_at": T0, "preview_pushed": True, "probe": FAIL}
    fields |= {"fleet_degraded": "incomplete"} if phase is Phase.PROMOTING else {}
    fields |= {"watch_until": T0 + 10**9, "warm_until": T0 + 10**9}  # the windows not yet over
    just_before = step(look(phase, now=seconds - 0.001, **fields))
    assert just_before.kind not in (Kind.ROLL_BACK, Kind.FAIL_PROMOTION, Kind.REVERT, Kind.RETIRE)
    at = step(look(phase, now=seconds, **fields))
    assert at.kind is kind and ends in targets(at)
    assert "deadline" in at.detail and f"{seconds} s" in at.detail


def test_a_watch_checked_late_is_decided_by_one_more_probe():
    late = dict(watch_until=T0 + 30 * S, warm_until=T0 + 600 * S)
    assert step(look(Phase.WATCHING, now=330, **late)).kind is Kind.PROBE
    passed = step(look(Phase.WATCHING, now=330, probe=PASS, **late))
    assert passed.kind is Kind.MARK_LIVE and "checked late" in passed.detail


# ------------------------------------------------------------------ deploying
def test_a_deploying_rollout_waits_for_its_hand_off_backing_off():
    first = step(look(Phase.DEPLOYING, now=5))
    later = step(look(Phase.DEPLOYING, now=60, attempt=40))
    assert first.kind is later.kind is Kind.WAIT
    assert first.next_in == 2 and later.next_in == 30


# ------------------------------------------------------------------ gating
def test_a_failed_observation_rolls_back():
    crash = Observation(Verdict.FAILED, "pod shop-green-1 container web: CrashLoopBackOff")
    taken = step(look(Phase.GATING, observation=crash))
    assert taken.kind is Kind.ROLL_BACK and taken.phase is Phase.ROLLED_BACK
    assert "CrashLoopBackOff" in taken.detail


def test_while_the_pods_start_the_preview_route_is_pushed_once_then_the_check_looks_again():
    first = step(look(Phase.GATING, now=3, observation=WAITING))
    assert first.kind is Kind.PUSH_PREVIEW
    tried = step(look(Phase.GATING, now=3, observation=WAITING, preview_tried=True))
    assert tried.kind is Kind.WAIT and tried.look_again == 0.25 and tried.next_in == 2
    lingered = step(
        look(Phase.GATING, now=3, observation=WAITING, preview_pushed=True, lingered=True)
    )
    assert lingered.next_in == 0  # it watched a while: the next check looks at once


def test_a_candidate_not_ready_past_its_ready_deadline_rolls_back():
    on_time = step(look(Phase.GATING, now=300, observation=WAITING, preview_pushed=True))
    late = step(look(Phase.GATING, now=300.5, observation=WAITING, preview_pushed=True))
    assert on_time.kind is Kind.WAIT
    assert late.kind is Kind.ROLL_BACK and "not ready within 300 s (0/2 ready)" in late.detail


def test_a_ready_candidate_gets_its_preview_route_its_ready_mark_then_a_probe():
    assert step(look(Phase.GATING, observation=READY)).kind is Kind.PUSH_PREVIEW
    refused = step(look(Phase.GATING, observation=READY, preview_tried=True))
    assert refused.kind is Kind.WAIT and "not on the fleet" in refused.detail
    routed = look(Phase.GATING, observation=READY, preview_pushed=True)
    assert step(routed).kind is Kind.MARK_READY
    assert step(routed._replace(rollout=routed.rollout._replace(ready_at=T0))).kind is Kind.PROBE


def gated(now: float, probe: ProbeResult, counts: Counts = Counts(), **fields) -> Look:
    return look(
        Phase.GATING,
        now=now,
        observation=READY,
        preview_pushed=True,
        ready_at=T0,
        probe=probe,
        counts=counts,
        **fields,
    )


def test_passes_count_up_to_the_promotion():
    one = step(gated(5, PASS))
    assert one.kind is Kind.WAIT and one.counts == Counts(1, 0) and "1/3 passes" in one.detail
    assert one.look_again == 2  # the next pass, in the same invocation if it can
    assert step(gated(7, PASS, Counts(1, 0))).counts == Counts(2, 0)
    third = step(gated(9, PASS, Counts(2, 0)))
    assert third.kind is Kind.START_PROMOTION and "3 passes in a row" in third.detail


def test_a_failure_restarts_the_passes_and_enough_failures_roll_back():
    assert step(gated(5, FAIL, Counts(2, 0))).counts == Counts(0, 1)
    assert step(gated(5, PASS, Counts(0, 2))).counts == Counts(1, 0)
    third = step(gated(5, FAIL, Counts(0, 2)))
    assert third.kind is Kind.ROLL_BACK and third.phase is Phase.ROLLED_BACK
    assert "health check failed 3 times in a row" in third.detail and "503" in third.detail


def test_a_failed_probe_while_haproxy_admits_the_candidate_is_not_counted():
    within = step(gated(ADMISSION_GRACE_SECONDS - 0.1, FAIL, Counts(2, 2)))
    assert within.kind is Kind.WAIT and within.counts == Counts(0, 2)
    assert "admitting" in within.detail and within.look_again == 0.25
    after = step(gated(ADMISSION_GRACE_SECONDS, FAIL, Counts(2, 2)))
    assert after.kind is Kind.ROLL_BACK


def test_with_manual_approval_a_healthy_candidate_waits_for_a_promote():
    manual = POLICY._replace(manual_approval=True)
    healthy = step(gated(9, PASS, Counts(2, 0)), manual)
    assert healthy.kind is Kind.AWAIT_APPROVAL
    waiting = step(look(Phase.AWAITING_APPROVAL, observation=READY, preview_pushed=True), manual)
    assert waiting.kind is Kind.WAIT and waiting.next_in == 10
    crash = Observation(Verdict.FAILED, "pod shop-green-1 container web: OOMKilled")
    assert step(look(Phase.AWAITING_APPROVAL, observation=crash), manual).kind is Kind.ROLL_BACK


# ------------------------------------------------------------------ promoting
def test_no_promotion_while_the_fleet_is_degraded():
    degraded = step(look(Phase.PROMOTING, now=60, fleet_degraded="canary-failed"))
    assert degraded.kind is Kind.WAIT and "degraded (canary-failed)" in degraded.detail
    assert step(look(Phase.PROMOTING, now=60)).kind is Kind.PROMOTE


BLUE_LIVE = AppState(
    app="shop",
    rollout_id=RID,
    live_colour=Colour.BLUE,
    live_version="0a1b2c3d4e5f",
    live_image="shop-web:0a1b2c3d4e5f",
    live_rollout_id="1795684400000-0a1b2c3d4e5f",
)


def test_a_promotion_records_what_was_live_once_and_keeps_it_warm_behind():
    live = BLUE_LIVE
    first = promotion(rollout(Phase.PROMOTING), live)
    assert first.switch and first.backup is Colour.BLUE
    assert first.previous == {
        "previous_colour": "blue",
        "previous_version": "0a1b2c3d4e5f",
        "previous_image": "shop-web:0a1b2c3d4e5f",
        "previous_rollout_id": "1795684400000-0a1b2c3d4e5f",
    }
    # Resumed after the switch (a Lambda died before the fleet had it): nothing recorded again.
    switched = live._replace(live_colour=Colour.GREEN)
    again = promotion(rollout(Phase.PROMOTING, previous_colour=Colour.BLUE), switched)
    assert not again.switch and again.previous is None and again.backup is Colour.BLUE


def test_the_one_write_promotion_records_what_was_live_and_keeps_it_warm():
    live = BLUE_LIVE
    switch = live_switch(rollout(Phase.GATING), live)
    assert switch.backup is Colour.BLUE
    assert switch.previous == promotion(rollout(Phase.GATING), live).previous
    assert switch.previous["previous_rollout_id"] == "1795684400000-0a1b2c3d4e5f"
    # A rollout with what was live recorded already: nothing recorded again, its backup kept.
    recorded = rollout(Phase.GATING, previous_colour=Colour.BLUE)
    assert live_switch(recorded, live) == (({}), Colour.BLUE)


# ------------------------------------------------------------------ watching and live
def watched(now: float, probe: ProbeResult | None, counts: Counts = Counts()) -> Look:
    return look(
        Phase.WATCHING,
        now=now,
        probe=probe,
        counts=counts,
        watch_until=T0 + 30 * S,
        warm_until=T0 + 600 * S,
    )


def test_the_watch_probes_and_ends_live_at_the_first_pass_after_its_window():
    assert step(watched(10, None)).kind is Kind.PROBE
    during = step(watched(10, PASS))
    assert during.kind is Kind.WAIT and during.status is Status.WATCHING
    assert step(watched(30, FAIL)).kind is Kind.WAIT  # past the window, but not a pass
    assert step(watched(30, PASS)).kind is Kind.MARK_LIVE


def test_failures_in_the_watch_revert():
    assert step(watched(10, FAIL, Counts(0, 1))).counts == Counts(0, 2)
    reverted = step(watched(10, FAIL, Counts(0, 2)))
    assert reverted.kind is Kind.REVERT and "failed after promotion" in reverted.detail


def test_a_live_rollout_waits_out_its_warm_window_then_retires():
    warm = step(look(Phase.LIVE, now=100, warm_until=T0 + 600 * S))
    assert warm.kind is Kind.WAIT and warm.status is Status.LIVE and warm.next_in == 500
    far = step(look(Phase.LIVE, now=0, warm_until=T0 + 5000 * S, entered=T0))
    assert far.next_in == 900  # never further off than the sweep's patience
    assert step(look(Phase.LIVE, now=600, warm_until=T0 + 600 * S)).kind is Kind.RETIRE


def test_a_pinned_edge_keeps_the_previous_colour_until_the_live_phases_deadline():
    # LIVE's deadline here: warm 600 - watch 30 + 300 s from entering it (at T0): T0 + 870 s.
    pin = "the edge is pinned to release v7 (abc) since ... by ops: incident 7"
    pinned = step(look(Phase.LIVE, now=600, warm_until=T0 + 600 * S, pinned=pin))
    assert pinned.kind is Kind.WAIT and pinned.status is Status.LIVE
    assert pinned.next_in == 60  # PIN_LOOK_SECONDS: an unpin is seen within a minute
    assert pinned.detail == (
        "the warm window is over; blue is not scaled down while the edge is pinned (looked at "
        f"again until the live phase's deadline, in 270 s): {pin}"
    )
    near = step(look(Phase.LIVE, now=850, warm_until=T0 + 600 * S, pinned=pin))
    assert near.kind is Kind.WAIT and near.next_in == 20  # never past the deadline
    # At the deadline the expiry move retires it (the executor leaves blue running, pinned).
    due = step(look(Phase.LIVE, now=870, warm_until=T0 + 600 * S, pinned=pin))
    assert due.kind is Kind.RETIRE and due.detail.startswith("live for longer than its deadline")
    # A warm window that is not over waits for it, pinned or not.
    warm = step(look(Phase.LIVE, now=100, warm_until=T0 + 600 * S, pinned=pin))
    assert warm.detail == "the previous colour is kept warm" and warm.next_in == 500


PREV = "1795684400000-0a1b2c3d4e5f"  # the rollout that was live before (blue)
REVERTED = AppState(
    app="shop", rollout_id=RID, phase=Phase.WATCHING, live_colour=Colour.BLUE,
    live_rollout_id=PREV,
)  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "kind"),
    [
        (Phase.WATCHING, Kind.REVERT),
        (Phase.LIVE, Kind.REVERT),
        (Phase.PROMOTING, Kind.FAIL_PROMOTION),
    ],
)
def test_a_revert_the_edge_did_not_take_is_pushed_again_even_past_the_phases_deadline(phase, kind):
    why = "failed after promotion: HTTP 503"
    fields = {"reverting": why, "previous_colour": Colour.BLUE, "previous_rollout_id": PREV}
    # (decide, not step: a manual rollback of a live rollout is the one revert from live.)
    again = decide(look(phase, state=REVERTED, **fields), POLICY)
    assert (again.kind, again.detail) == (kind, why)  # not a probe, not a promotion
    late = decide(look(phase, now=5000, state=REVERTED, **fields), POLICY)  # past every deadline
    assert (late.kind, late.detail) == (kind, why)  # one last push; the executor ends it
    # Without the mark, the same look takes the phase's own step.
    assert decide(look(phase, state=REVERTED), POLICY).kind is not kind


def test_a_revert_overtaken_by_a_newer_live_rollout_ends_without_a_push():
    newer = REVERTED._replace(
        live_colour=Colour.GREEN, live_rollout_id="1795684600000-4a0e3b52d1c8"
    )
    fields = {"reverting": "failed", "previous_colour": Colour.BLUE, "previous_rollout_id": PREV}
    ended = step(look(Phase.WATCHING, state=newer, **fields))
    assert ended.kind is Kind.ROLL_BACK and ended.phase is Phase.ROLLED_BACK
    assert ended.detail == "failed; overtaken: rollout 1795684600000-4a0e3b52d1c8 is live now"
    assert step(look(Phase.PROMOTING, state=newer, **fields)).phase is Phase.FAILED


def test_a_push_the_edge_did_not_take_waits_within_the_phases_deadline_then_ends():
    # WATCHING's deadline here: watch 30 + 300 s from entering it (at T0): T0 + 330 s.
    watching = rollout(Phase.WATCHING)
    kw = {"what": "revert to blue", "fleet_status": "not-up", "left": "green left running"}
    wait = unpushed(watching, POLICY, T0 + 100 * S, every=2, **kw)
    assert wait.kind is Kind.WAIT and wait.next_in == 2 and wait.status is Status.WAITING
    assert wait.detail == (
        "the edge did not take the revert to blue (not-up); pushed again at a later check"
        " (until the watching phase's deadline, in 230 s)"
    )
    near = unpushed(watching, POLICY, T0 + 329_500, every=60, **kw)
    assert near.kind is Kind.WAIT and near.next_in == 1  # never past the deadline
    over = unpushed(watching, POLICY, T0 + 330 * S, every=2, **kw)
    assert over.kind is Kind.END
    assert over.detail == (
        "the edge did not take the revert to blue (not-up) by the watching phase's deadline;"
        " green left running"
    )
    live = unpushed(rollout(Phase.LIVE), POLICY, T0, every=60, **kw)
    assert live.status is Status.LIVE and live.next_in == 60


def test_a_retirement_pushes_again_while_its_dropped_backup_may_still_be_routed():
    live = rollout(Phase.LIVE, previous_colour=Colour.BLUE)
    state = AppState(app="shop", rollout_id=RID, live_colour=Colour.GREEN, live_rollout_id=RID)
    assert retire_push(live, state._replace(backup_colour=Colour.BLUE))
    assert retire_push(live, state)  # dropped by a retirement whose push was not taken
    assert not retire_push(live._replace(previous_colour=None), state)  # never had a backup
    assert not retire_push(live, state._replace(live_rollout_id=PREV))  # not the live one


def test_a_retirement_scales_away_only_an_older_rollouts_pods():
    live = rollout(Phase.LIVE)
    assert retirable(None, live)  # a Deployment Greenlight did not annotate
    assert retirable("1795684400000-0a1b2c3d4e5f", live)  # what was live before
    assert not retirable("1795684600000-4a0e3b52d1c8", live)  # a newer candidate's


# ------------------------------------------------------------------ analysis (edge counters)
JUDGED = POLICY._replace(analysis=Thresholds())
FAILED = Analysed(
    Outcome.FAIL,
    "analysis: 9.8% of 412 requests failed (5xx 38, connection 2) over max_error_ratio 2%",
)
LITTLE = Analysed(Outcome.TOO_LITTLE, "analysis: 12 requests since ready, 50 needed: not judged")
UNREAD = Analysed(Outcome.UNREAD, "analysis: counters not read (busy): not judged")
FINE = Analysed(
    Outcome.PASS, "analysis: 0.0% of 400 requests failed since ready: within thresholds"
)


def test_each_counted_pass_reads_the_counters_then_counts():
    asked = step(gated(5, PASS), JUDGED)
    assert asked.kind is Kind.ANALYSE and asked.counts == Counts()
    counted = step(gated(5, PASS, analysis=FINE), JUDGED)
    assert counted.kind is Kind.WAIT and counted.counts == Counts(1, 0)
    assert "(1/3 passes); analysis: 0.0% of 400 requests" in counted.detail
    # A failed probe is counted too, and the counters still read; within the admission grace
    # nothing is counted and nothing read.
    assert step(gated(5, FAIL), JUDGED).kind is Kind.ANALYSE
    assert step(gated(ADMISSION_GRACE_SECONDS - 0.1, FAIL), JUDGED).kind is Kind.WAIT
    assert step(gated(5, PASS), POLICY).kind is Kind.WAIT  # the app's analysis off


def test_a_fail_verdict_rolls_back_before_promotion_with_its_figures():
    for counts in (Counts(), Counts(2, 0)):  # at any pass, the last one included
        taken = step(gated(9, PASS, counts, analysis=FAILED), JUDGED)
        assert taken.kind is Kind.ROLL_BACK and taken.phase is Phase.ROLLED_BACK
        assert taken.detail == FAILED.reason


def test_health_failures_roll_back_before_the_counters_are_read():
    third = step(gated(5, FAIL, Counts(0, 2)), JUDGED)
    assert third.kind is Kind.ROLL_BACK and "health check failed 3 times" in third.detail


@pytest.mark.parametrize("verdict", [LITTLE, UNREAD, FINE])
def test_promotion_goes_on_without_a_fail_and_says_the_analysis(verdict):
    taken = step(gated(9, PASS, Counts(2, 0), analysis=verdict), JUDGED)
    assert taken.kind is Kind.START_PROMOTION
    assert taken.detail == f"healthy: 3 passes in a row; {verdict.reason}"
    manual = step(
        gated(9, PASS, Counts(2, 0), analysis=verdict), JUDGED._replace(manual_approval=True)
    )
    assert manual.kind is Kind.AWAIT_APPROVAL and verdict.reason in manual.detail


def test_the_watch_reads_the_counters_after_each_probe_and_a_fail_reverts():
    assert step(watched(10, PASS), JUDGED).kind is Kind.ANALYSE
    assert step(watched(10, FAIL), JUDGED).kind is Kind.ANALYSE
    reverted = step(watched(10, PASS)._replace(analysis=FAILED), JUDGED)
    assert (
        reverted.kind is Kind.REVERT
        and reverted.detail == f"failed after promotion: {FAILED.reason}"
    )
    during = step(watched(10, PASS)._replace(analysis=FINE), JUDGED)
    assert during.kind is Kind.WAIT and during.status is Status.WATCHING
    assert FINE.reason in during.detail
    # Enough failed probes revert on their own.
    assert step(watched(10, FAIL, Counts(0, 2)), JUDGED).kind is Kind.REVERT


def test_too_little_traffic_at_the_end_of_the_watch_is_said_in_the_move_to_live():
    little = LITTLE._replace(reason="analysis: 3 requests since promotion, 50 needed: not judged")
    live = step(watched(30, PASS)._replace(analysis=little), JUDGED)
    assert live.kind is Kind.MARK_LIVE
    assert live.detail == f"watch window passed; {little.reason}"


def test_a_watch_checked_late_is_judged_on_its_counters_too():
    late = look(Phase.WATCHING, now=330, probe=PASS, watch_until=T0 + 30 * S)
    assert step(late, JUDGED).kind is Kind.ANALYSE
    reverted = step(late._replace(analysis=FAILED), JUDGED)
    assert reverted.kind is Kind.REVERT and FAILED.reason in reverted.detail
    passed = step(late._replace(analysis=FINE), JUDGED)
    assert passed.kind is Kind.MARK_LIVE and "checked late" in passed.detail


# ------------------------------------------------------------------ the sweep
def test_the_sweep_starts_a_chain_only_for_a_rollout_no_check_has_looked_at():
    checked = rollout(Phase.GATING, last_check_at=T0)
    # 3 intervals (6 s) are shorter than an edge push: the sweep waits longer than the longest.
    assert not stuck(checked, POLICY, T0 + (STUCK_AFTER_SECONDS - 1) * S, deploy_grace_seconds=360)
    assert stuck(checked, POLICY, T0 + STUCK_AFTER_SECONDS * S, deploy_grace_seconds=360)
    slow = POLICY._replace(interval_seconds=200)  # 3 intervals, longer than the longest push
    assert not stuck(checked, slow, T0 + 599 * S, deploy_grace_seconds=360)
    assert stuck(checked, slow, T0 + 600 * S, deploy_grace_seconds=360)
    live = rollout(Phase.LIVE, last_check_at=T0)
    assert not stuck(live, POLICY, T0 + 900 * S, deploy_grace_seconds=360)
    assert stuck(live, POLICY, T0 + 960 * S, deploy_grace_seconds=360)
    young = rollout(Phase.DEPLOYING)
    assert not stuck(young, POLICY, T0 + 359 * S, deploy_grace_seconds=360)
    assert stuck(young, POLICY, T0 + 360 * S, deploy_grace_seconds=360)


def test_the_sweep_never_takes_a_chain_whose_check_is_pushing_the_edge():
    """A check refreshes last_check_at right before a push, and a push lasts at most
    PUSH_MAX_SECONDS (the haproxy function's timeout): no moving phase is stuck meanwhile,
    whatever the app's interval."""
    from greenlight_sandbox.fleet import load_template

    function = load_template()["Resources"]["HaproxyFunction"]["Properties"]
    assert function["Timeout"] == PUSH_MAX_SECONDS
    assert STUCK_AFTER_SECONDS > PUSH_MAX_SECONDS
    default = GateSettings.__dataclass_fields__["edge_push_max_seconds"].default
    assert default == PUSH_MAX_SECONDS  # what the gate function passes, unless told otherwise
    # A stack (the sandbox) whose pushes are known to be shorter says so; the rule is the same.
    quick = rollout(Phase.GATING, last_check_at=T0)
    assert not stuck(quick, POLICY, T0 + 29 * S, deploy_grace_seconds=360, push_max_seconds=15)
    assert stuck(quick, POLICY, T0 + 30 * S, deploy_grace_seconds=360, push_max_seconds=15)
    for phase in (Phase.GATING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.WATCHING):
        for interval in (1, 2, 10, 60):
            policy = POLICY._replace(interval_seconds=interval)
            pushing = rollout(phase, last_check_at=T0)
            end_of_push = T0 + PUSH_MAX_SECONDS * S
            assert not stuck(pushing, policy, end_of_push, deploy_grace_seconds=360), phase
            later = T0 + max(STUCK_AFTER_SECONDS, 8 * interval) * S
            assert stuck(pushing, policy, later, deploy_grace_seconds=360), phase


# ------------------------------------------------------------------ the whole table
# Moves made outside the gate's decisions: the rollout function's (it writes the candidate or
# fails before), acceptance (a newer push supersedes a pending rollout), and a newer rollout
# taking the warm slot (``RolloutStore.take_slot``).
ROLLOUT_FUNCTION = {(Phase.DEPLOYING, Phase.GATING), (Phase.DEPLOYING, Phase.FAILED)}
ACCEPTANCE = {
    (p, Phase.SUPERSEDED) for p in (Phase.DEPLOYING, Phase.GATING, Phase.AWAITING_APPROVAL)
}
TAKE_SLOT = {
    (p, to)
    for p in (Phase.PROMOTING, Phase.WATCHING, Phase.LIVE)
    if (to := taken_over(p)) is not None
}
MANUAL = {
    (Phase.DEPLOYING, Phase.ABORTED),
    (Phase.GATING, Phase.ABORTED),
    (Phase.AWAITING_APPROVAL, Phase.ABORTED),
    (Phase.AWAITING_APPROVAL, Phase.PROMOTING),
    (Phase.LIVE, Phase.ROLLED_BACK),
}


def gate_moves() -> set[tuple[Phase, Phase]]:
    """The moves the gate's decisions make, one example look for each way a phase ends."""
    newer = AppState(app="shop", rollout_id="1795684600000-4a0e3b52d1c8")
    crash = Observation(Verdict.FAILED, "CrashLoopBackOff")
    looks = [
        (look(Phase.DEPLOYING, now=2400), POLICY),
        (look(Phase.GATING, state=newer, observation=READY), POLICY),
        (look(Phase.GATING, observation=crash), POLICY),
        (gated(9, PASS, Counts(2, 0)), POLICY),
        (gated(9, PASS, Counts(2, 0)), POLICY._replace(manual_approval=True)),
        (look(Phase.AWAITING_APPROVAL, now=86400, observation=READY), POLICY),
        (look(Phase.PROMOTING, now=60), POLICY),
        (look(Phase.PROMOTING, now=900, fleet_degraded="incomplete"), POLICY),
        (watched(30, PASS), POLICY),
        (watched(10, FAIL, Counts(0, 2)), POLICY),
        (look(Phase.LIVE, now=600, warm_until=T0 + 600 * S), POLICY),
    ]
    moves = set()
    for a_look, policy in looks:
        assert a_look.rollout is not None
        moves |= {(a_look.rollout.phase, to) for to in targets(step(a_look, policy))}
    return moves


def test_the_gates_moves_with_the_others_cover_the_lifecycle_table():
    table = {(p, to) for p, nxt in TRANSITIONS.items() for to in nxt}
    made = gate_moves() | ROLLOUT_FUNCTION | ACCEPTANCE | TAKE_SLOT | MANUAL
    assert made <= table
    assert table - made == set()
