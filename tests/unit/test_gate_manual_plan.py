"""What a manual promote, abort or rollback would do (a dry run's answer), at fixed inputs."""

from __future__ import annotations

from greenlight.colour import Colour
from greenlight.gate.analysis import Thresholds
from greenlight.gate.decide import manual_plan
from greenlight.lifecycle import Phase
from greenlight.store.rollouts import AppState, Rollout

T0 = 1_795_684_502_000
RID = "1795684502000-3f9d2a41c0b7"
BLUE_LIVE = AppState(
    app="shop",
    sequence=T0,
    rollout_id=RID,
    phase=Phase.GATING,
    live_colour=Colour.BLUE,
    live_version="v0",
    live_image="shop-web:v0",
    live_rollout_id="1795684400000-v0",
    live_phase=Phase.SETTLED,
)


def candidate(phase: Phase, **fields) -> Rollout:
    return Rollout(
        app="shop",
        rollout_id=RID,
        version="3f9d2a41c0b7",
        image="shop-web:3f9d2a41c0b7",
        colour=Colour.GREEN,
        phase=phase,
        sequence=T0,
        source="codecommit",
        **fields,
    )


def test_a_promote_would_make_the_candidate_live_with_what_was_live_warm_behind_it():
    plan = manual_plan("promote", candidate(Phase.GATING), BLUE_LIVE)
    assert plan == {
        "rollout_id": RID,
        "image": "shop-web:3f9d2a41c0b7",
        "moves": ["gating", "promoting", "watching"],
        "live": {
            "colour": "green",
            "version": "3f9d2a41c0b7",
            "image": "shop-web:3f9d2a41c0b7",
            "rollout_id": RID,
        },
        "backup_colour": "blue",
        "edge": "pushed: the live route to green, blue warm behind it",
        "analysis": "off",
    }


def test_a_promotes_dry_run_reports_the_analysis_thresholds_of_its_watch():
    thresholds = Thresholds(min_requests=20, max_response_ms=300)
    plan = manual_plan("promote", candidate(Phase.GATING), BLUE_LIVE, analysis=thresholds)
    assert plan["analysis"] == {
        "min_requests": 20,
        "max_error_ratio": 0.02,
        "max_response_ms": 300,
        "max_response_ratio": 2.0,
    }


def test_an_abort_would_scale_the_candidate_away_and_leave_live_as_it_is():
    plan = manual_plan("abort", candidate(Phase.AWAITING_APPROVAL), BLUE_LIVE)
    assert plan["moves"] == ["awaiting_approval", "aborted"]
    assert plan["scaled_away"] == "green" and plan["edge"] is None
    assert plan["live"] == {
        "colour": "blue",
        "version": "v0",
        "image": "shop-web:v0",
        "rollout_id": "1795684400000-v0",
    }


def test_a_rollback_would_make_what_was_live_before_live_again_replacing_its_config():
    live = candidate(
        Phase.WATCHING,
        previous_colour=Colour.BLUE,
        previous_version="v0",
        previous_image="shop-web:v0",
        previous_rollout_id="1795684400000-v0",
        config_version="s3-version-7",
        config_sha256="ab" * 32,
    )
    state = BLUE_LIVE._replace(live_colour=Colour.GREEN, live_rollout_id=RID)
    plan = manual_plan("rollback", live, state)
    assert plan["moves"] == ["watching", "rolled_back"]
    assert plan["live"] == {
        "colour": "blue",
        "version": "v0",
        "image": "shop-web:v0",
        "rollout_id": "1795684400000-v0",
    }
    assert plan["scaled_away"] == "green" and plan["backup_colour"] is None
    assert plan["edge"] == {
        "push": "the live route back to blue",
        "replaces_config_version": "s3-version-7",
        "replaces_config_sha256": "ab" * 32,
    }


def test_a_rollback_of_a_record_without_its_previous_colour_goes_to_the_other_one():
    plan = manual_plan(
        "rollback", candidate(Phase.LIVE), BLUE_LIVE._replace(live_colour=Colour.GREEN)
    )
    assert plan["live"]["colour"] == "blue" and plan["live"]["rollout_id"] is None
