"""What each write of the rollouts table measures, at fixed instants, and the EMF documents the
announce function writes for it (Powertools ``EphemeralMetrics`` on stdout, read with capsys).

The deadline cases are built from what the gate really records: its decision's reason
(``gate.decide``), with what its executor adds, moved ``by`` the gate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenlight.announce.entry import emit
from greenlight.announce.measure import NAMESPACE, Point, points
from greenlight.lifecycle import Actor, Phase

from .test_announce import ACCEPTED, GATING, RID, T0, rollout_item
from .test_gate_decide import FAIL, PASS, READY, WAITING, look, step

pytestmark = pytest.mark.filterwarnings("ignore:This metric doesn't meet the requirements")


def move(at: int, frm: Phase, to: Phase, why: str, by: Actor = Actor.GATE) -> dict[str, Any]:
    """A history entry as ``RolloutStore.move`` writes it."""
    return {"at": at, "from": frm.value, "phase": to.value, "by": by.value, "why": why}


def named(found: list[Point]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for p in found:
        out.setdefault(p.name + ("" if p.app else " (total)"), []).append(p.value)
    return out


PROMOTING = move(T0 + 60_900, Phase.GATING, Phase.PROMOTING, "3 health checks passed")
WATCHING = move(T0 + 65_000, Phase.PROMOTING, Phase.WATCHING, "live on green; fleet applied")
LIVE = move(T0 + 125_000, Phase.WATCHING, Phase.LIVE, "watch window passed")


# ------------------------------------------------------------------ rollouts
def test_an_accepted_rollout_is_one_started_rollout_of_its_app():
    (found,) = points(None, rollout_item(ACCEPTED))
    assert found == Point("RolloutsStarted", "Count", 1, T0, "shop")


def test_a_rollout_to_live_counts_each_phase_and_times_the_gate_and_the_push():
    item = rollout_item(ACCEPTED, GATING, PROMOTING, WATCHING, LIVE, sequence=T0 - 4_000)
    found = points(None, item)
    assert {p.app for p in found} == {"shop"}
    assert named(found) == {
        "RolloutsStarted": [1],
        "GateDecisionSeconds": [60.0],  # entered gating at T0 + 0.9 s, promoted at + 60.9 s
        "RolloutsPromoted": [1],
        "RolloutsLive": [1],
        "PushToLiveSeconds": [129.0],  # pushed 4 s before acceptance, live 125 s after it
    }
    live = [p for p in found if p.name == "PushToLiveSeconds"]
    assert live[0].at == LIVE["at"] and live[0].unit == "Seconds"


def test_only_the_entries_a_write_adds_are_measured():
    before = rollout_item(ACCEPTED, GATING)
    after = rollout_item(ACCEPTED, GATING, PROMOTING)
    assert named(points(before, after)) == {"GateDecisionSeconds": [60.0], "RolloutsPromoted": [1]}
    assert points(after, after | {"last_check_at": T0 + 70_000}) == []
    assert points(after, None) == []


@pytest.mark.parametrize(
    ("to", "by", "metric"),
    [
        (Phase.ROLLED_BACK, Actor.GATE, "RolloutsRolledBack"),
        (Phase.AWAITING_APPROVAL, Actor.GATE, None),
        (Phase.ABORTED, Actor.MANUAL, "RolloutsAborted"),
        (Phase.SUPERSEDED, Actor.ROLLOUT, "RolloutsSuperseded"),
        (Phase.PROMOTING, Actor.MANUAL, "RolloutsPromoted"),
    ],
)
def test_leaving_gating_is_the_gates_decision_only_when_the_gate_decides(to, by, metric):
    left = move(T0 + 30_900, Phase.GATING, to, "why", by=by)
    found = named(points(rollout_item(ACCEPTED, GATING), rollout_item(ACCEPTED, GATING, left)))
    gate_decided = by is Actor.GATE
    assert ("GateDecisionSeconds" in found) is gate_decided
    if gate_decided:
        assert found["GateDecisionSeconds"] == [30.0]
    assert found.get(metric or "", [1]) == [1]


def test_a_failed_rollout_is_counted_failed():
    failed = move(T0 + 5_000, Phase.GATING, Phase.FAILED, "the candidate crashed")
    assert named(points(None, rollout_item(ACCEPTED, GATING, failed)))["RolloutsFailed"] == [1]


# ------------------------------------------------------------------ deadlines
def _expired(phase: Phase, seconds: int, **fields: Any) -> str:
    """The reason the gate's decision gives a rollout in ``phase`` at its deadline."""
    fields = {"observation": READY, "ready_at": T0, "preview_pushed": True, "probe": FAIL} | fields
    fields |= {"watch_until": T0 + 10**9, "warm_until": T0 + 10**9}
    detail: str = step(look(phase, now=seconds, **fields)).detail
    return detail


# What the gate's executor records for each expiry step (gate/execute.py: roll_back, revert,
# _fail_promotion, _retire), from the decision's reason.
EXPIRIES = [
    (Phase.DEPLOYING, 2400, Phase.FAILED, "{why}"),
    (Phase.GATING, 420, Phase.ROLLED_BACK, "{why}"),
    (Phase.AWAITING_APPROVAL, 86400, Phase.ROLLED_BACK, "{why}"),
    (Phase.PROMOTING, 900, Phase.FAILED, "{why}; blue stays live"),
    (Phase.WATCHING, 330, Phase.ROLLED_BACK, "{why}; blue is live again (fleet applied)"),
    (Phase.WATCHING, 330, Phase.FAILED, "{why}; nothing was live before it, so it stays live"),
    (Phase.LIVE, 870, Phase.SETTLED, "{why}"),
]


@pytest.mark.parametrize(("phase", "seconds", "to", "recorded"), EXPIRIES)
def test_a_move_a_phase_deadline_made_is_counted_per_app_and_in_total(phase, seconds, to, recorded):
    extra = {"fleet_degraded": "incomplete"} if phase is Phase.PROMOTING else {}
    why = recorded.format(why=_expired(phase, seconds, **extra))
    entry = move(T0 + seconds * 1000, phase, to, why)
    found = [p for p in points(None, rollout_item(ACCEPTED, entry)) if p.name.startswith("Phase")]
    assert [(p.name, p.value, p.app) for p in found] == [
        ("PhaseDeadlineExpired", 1, "shop"),
        ("PhaseDeadlineExpired", 1, None),
    ]


def test_a_late_watch_that_passed_and_other_moves_are_no_expiry():
    late = step(look(Phase.WATCHING, now=330, probe=PASS, watch_until=T0 + 30_000))
    went_live = move(T0 + 330_000, Phase.WATCHING, Phase.LIVE, late.detail)
    manual = move(T0 + 5_000, Phase.GATING, Phase.ROLLED_BACK, "gating for longer than its "
                  "deadline (this is what someone typed)", by=Actor.MANUAL)  # fmt: skip
    not_ready = step(look(Phase.GATING, now=301, observation=WAITING))
    for entry in (went_live, manual, move(T0, Phase.GATING, Phase.ROLLED_BACK, not_ready.detail)):
        found = points(None, rollout_item(ACCEPTED, entry))
        assert "PhaseDeadlineExpired" not in named(found), entry["why"]


# ------------------------------------------------------------------ the fleet
def reload(degraded: bool, instances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "pk": "edge#fleet",
        "sk": "reload#2026-11-26T09:15:02Z#abababababab",
        "status": "incomplete" if degraded else "applied",
        "degraded": degraded,
        "sha256": "ab" * 32,
        "version_id": "v-3",
        "why": "promote shop",
        "at": T0 // 1000,
        "instances": instances,
    }


def test_a_reload_says_whether_the_fleet_is_degraded_and_times_each_instance():
    done = {"outcome": "Success", "detail": "", "command_id": "c", "seconds": 1.25}
    instances = {
        "i-0a": done,
        "i-0b": {"outcome": "Failed", "detail": "exit 3", "command_id": "c", "seconds": 0.5},
        "i-0c": {"outcome": "NotAttempted", "detail": "the canary did not succeed"},
    }
    found = points(None, reload(True, instances))
    assert found == [
        Point("FleetDegraded", "Count", 1, T0),
        Point("FleetApplySeconds", "Seconds", 1.25, T0, None, "i-0a"),
        Point("FleetApplySeconds", "Seconds", 0.5, T0, None, "i-0b"),
    ]
    healthy = reload(False, {"i-0a": done})
    assert named(points(None, healthy)) == {
        "FleetDegraded (total)": [0],
        "FleetApplySeconds (total)": [1.25],
    }
    assert points(healthy, healthy) == []  # the same item written again: nothing new


# ------------------------------------------------------------------ the night
def run(**fields: Any) -> dict[str, Any]:
    return {"pk": "night#workers", "sk": "run#2026-11-26T09:15:02Z", "at": T0 // 1000} | fields


def test_a_shrink_counts_the_nodes_removed_and_the_evictions():
    shrunk = run(action="shrink", status="shrunk", removed=["n2", "n3"], evictions=7)
    assert named(points(None, shrunk)) == {"NodesRemoved (total)": [2], "Evictions (total)": [7]}
    stopped = run(action="shrink", status="stopped", removed=[], evictions=1)
    assert named(points(None, stopped)) == {"NodesRemoved (total)": [0], "Evictions (total)": [1]}
    assert points(shrunk, shrunk) == []


@pytest.mark.parametrize(
    ("status", "incomplete"), [("restored", 0), ("incomplete", 1), ("refused", 1)]
)
def test_a_restore_counts_the_nodes_brought_back_and_whether_it_finished(status, incomplete):
    restore = run(action="restore", status=status, target=5, added=2, unmarked=["n4"])
    assert named(points(None, restore)) == {
        "NodesRestored (total)": [3],  # the group raised by 2, one node put back
        "NightRestoreIncomplete (total)": [incomplete],
    }


def test_state_items_measure_nothing():
    assert points(None, {"pk": "app#shop", "sk": "state", "phase": "gating"}) == []
    assert points(None, {"pk": "night#workers", "sk": "state", "draining_until": T0}) == []


# ------------------------------------------------------------------ EMF
def documents(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_each_app_and_instant_is_one_emf_document_with_one_dimension_set(capsys):
    emit(
        [
            Point("RolloutsStarted", "Count", 1, T0, "shop"),
            Point("RolloutsStarted", "Count", 1, T0, "cart"),
            Point("RolloutsPromoted", "Count", 1, T0, "shop"),
            Point("PhaseDeadlineExpired", "Count", 1, T0 + 1000, "shop"),
            Point("PhaseDeadlineExpired", "Count", 1, T0 + 1000),
            Point("FleetApplySeconds", "Seconds", 1.25, T0, None, "i-0a"),
        ],
        "prod-greenlight",
    )
    found = documents(capsys)
    assert len(found) == 5
    for doc in found:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE == "Greenlight"
        assert len(directive["Dimensions"]) == 1  # one dimension set per document
        assert doc["service"] == "prod-greenlight"
    by_app = {(d.get("app"), d["_aws"]["Timestamp"]): d for d in found if "instance_id" not in d}
    shop = by_app[("shop", T0)]
    assert sorted(shop["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["app", "service"]
    assert (shop["RolloutsStarted"], shop["RolloutsPromoted"]) == ([1], [1])  # EMF value arrays
    assert {m["Name"]: m["Unit"] for m in shop["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "RolloutsStarted": "Count",
        "RolloutsPromoted": "Count",
    }
    assert by_app[("cart", T0)]["RolloutsStarted"] == [1]
    total = by_app[(None, T0 + 1000)]
    assert total["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert total["PhaseDeadlineExpired"] == [1]
    (apply,) = [d for d in found if "instance_id" in d]
    assert apply["instance_id"] == "i-0a" and apply["FleetApplySeconds"] == [1.25]
    assert apply["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_a_rollout_to_live_as_emf(capsys):
    item = rollout_item(ACCEPTED, GATING, PROMOTING, WATCHING, LIVE, sequence=T0 - 4_000)
    emit(points(None, item), "greenlight")
    values = {
        name: doc[name]
        for doc in documents(capsys)
        for name in doc
        if name.startswith(("Rollouts", "PushToLive", "GateDecision"))
    }
    assert values == {
        "RolloutsStarted": [1],
        "GateDecisionSeconds": [60.0],
        "RolloutsPromoted": [1],
        "RolloutsLive": [1],
        "PushToLiveSeconds": [129.0],
    }
    assert RID.startswith(str(T0))
