"""The read model of `greenlight status`, `history` and `trace`, pure, at fixed instants."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from greenlight.appconfig import parse_apps
from greenlight.colour import Colour
from greenlight.inquire import (
    Ambiguous,
    AppView,
    Candidate,
    Unknown,
    history_document,
    iso,
    match,
    night_status,
    span,
    status_document,
    trace_document,
)
from greenlight.lifecycle import Phase
from greenlight.rollout.decide import admit, resolve
from greenlight.store.fleet import FleetState
from greenlight.store.night import NightState
from greenlight.store.notify import NotifyRecord, Sent
from greenlight.store.rollouts import AppState, Rollout
from greenlight.triggers import CommitPush, Ignored, ManualRollout
from greenlight_sandbox.inquire import history_lines, status_lines, trace_lines

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_684_502_000  # 2026-11-26T09:15:02Z
NOW = T0 + 600_000
LIVE = "3f9d2a41c0b7e8d9f0a1b2c3d4e5f60718293a4b"
NEXT = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807"


def rollout(n: int, commit: str | None, phase: Phase, **fields) -> Rollout:
    return Rollout(
        app=fields.pop("app", "shop"),
        rollout_id=f"{T0 + n * 1000:013d}-{(commit or 'v')[:12]}",
        version=commit or f"v{n}",
        image=f"shop-web:{(commit or 'v')[:12]}",
        colour=fields.pop("colour", Colour.GREEN),
        phase=phase,
        sequence=T0 + n * 1000,
        source="codecommit",
        commit=commit,
        created_at=T0 + n * 1000,
        entered_at=fields.pop("entered_at", T0 + n * 1000),
        **fields,
    )


def test_times_read_at_a_glance():
    assert iso(T0) == "2026-11-26T09:15:02Z" and iso(T0 + 5) == "2026-11-26T09:15:02.005Z"
    assert iso(None) is None
    assert [span(s) for s in (0, 45, 192, 7500, 273600)] == ["0s", "45s", "3m12s", "2h05m", "3d04h"]


def test_a_live_app_with_a_rollout_in_flight():
    live = rollout(1, LIVE, Phase.SETTLED, colour=Colour.BLUE)
    flying = rollout(2, NEXT, Phase.GATING, entered_at=NOW - 192_000)
    state = AppState(
        app="shop",
        sequence=flying.sequence,
        commit=NEXT,
        rollout_id=flying.rollout_id,
        phase=Phase.GATING,
        live_colour=Colour.BLUE,
        live_version=LIVE,
        live_image=live.image,
        live_rollout_id=live.rollout_id,
        live_phase=Phase.SETTLED,
    )
    doc = status_document([AppView(state, flying, live)], [], None, NOW)
    (shop,) = doc["apps"]
    assert shop["live"] == {
        "colour": "blue",
        "version": LIVE,
        "commit": LIVE,
        "image": live.image,
        "rollout_id": live.rollout_id,
        "phase": "settled",
        "backup_colour": None,
    }
    assert shop["in_flight"] == {
        "rollout_id": flying.rollout_id,
        "commit": NEXT,
        "version": NEXT,
        "colour": "green",
        "phase": "gating",
        "since": iso(NOW - 192_000),
        "in_phase_seconds": 192,
    }
    text = "\n".join(status_lines(doc))
    assert "live blue   3f9d2a41c0b7" in text and "in flight gating for 3m12s" in text


def test_an_app_never_deployed():
    doc = status_document([AppView(AppState(app="blog"))], [], None, NOW)
    assert doc["apps"] == [
        {"app": "blog", "deployed": False, "live": None, "in_flight": None, "newest": None}
    ]
    assert doc["fleet"] is None and doc["night"] is None
    assert status_lines(doc)[0] == "blog     not deployed"


def test_the_fleet_shows_each_instances_config_version():
    at = NOW // 1000 - 30
    older = FleetState(
        status="applied",
        degraded=False,
        sha256="aa" * 32,
        version_id="v-1",
        why="first",
        at=at - 600,
        instances={
            "i-a": {"outcome": "Success", "command_id": "c-1"},
            "i-b": {"outcome": "Success"},
        },
    )
    latest = FleetState(
        status="incomplete",
        degraded=True,
        sha256="bb" * 32,
        version_id="v-2",
        why="promote shop",
        at=at,
        instances={
            "i-a": {"outcome": "Success", "command_id": "c-2"},
            "i-b": {"outcome": "TimedOut", "command_id": "c-3"},
        },
    )
    fleet = status_document([], [latest, older], None, NOW)["fleet"]
    assert (fleet["config_version"], fleet["degraded"], fleet["age_seconds"]) == ("v-2", True, 30)
    assert [(i["instance"], i["config_version"], i["current"]) for i in fleet["instances"]] == [
        ("i-a", "v-2", True),
        ("i-b", "v-1", False),
    ]


def test_the_night_state():
    night = night_status(
        "workers",
        NightState(paused_until=date(2026, 12, 1), draining_until=NOW + 60_000),
        {"action": "shrink", "status": "done", "at": NOW // 1000 - 3600},
        NOW,
    )
    assert night["draining"] and night["paused_until"] == "2026-12-01"
    assert night["last_run"]["age_seconds"] == 3600
    line = status_lines(status_document([], [], night, NOW))[-1]
    assert line.startswith("night    workers: paused until 2026-12-01, draining until")
    assert line.endswith("last run shrink done 1h00m ago")


def test_history_gives_each_rollouts_outcome_and_reason_newest_first():
    rolled = rollout(3, NEXT, Phase.ROLLED_BACK, reason="health check failed 3 times")
    doc = history_document("shop", [rollout(1, LIVE, Phase.SETTLED), rolled], NOW)
    assert [(r["commit"], r["outcome"], r["ended"]) for r in doc["rollouts"]] == [
        (NEXT, "rolled_back", True),
        (LIVE, "settled", True),
    ]
    assert doc["rollouts"][0]["reason"] == "health check failed 3 times"
    assert doc["rollouts"][0]["age_seconds"] == 597
    assert "rolled_back" in history_lines(doc)[1]
    assert history_lines(doc)[1].endswith("health check failed 3 times")


CANDIDATES = [
    Candidate("shop", "1795684502000-3f9d2a41c0b7", LIVE),
    Candidate("shop", "1795684900000-3f9d2a41c0b7", LIVE),  # the same commit, again
    Candidate("shop", "1795684600000-3f9d2a41ffff", "3f9d2a41ffff" + "0" * 28),
    Candidate("blog", "1795684700000-9e8d7c6b5a4f", NEXT),
    Candidate("shop", "1795684800000-v3", None),  # a manual image rollout
]


def test_a_commit_is_found_by_a_prefix_newest_rollout_first():
    assert [c.rollout_id for c in match(LIVE[:10], CANDIDATES)] == [
        "1795684900000-3f9d2a41c0b7",
        "1795684502000-3f9d2a41c0b7",
    ]
    assert match(NEXT[:7].upper(), CANDIDATES)[0].app == "blog"
    assert match("1795684800000-v3", CANDIDATES) == [CANDIDATES[4]]


def test_a_prefix_that_fits_two_commits_is_ambiguous():
    with pytest.raises(Ambiguous, match=r"fits 2 commits: 3f9d2a41c0b7 \(shop\), 3f9d2a41ffff"):
        match("3f9d2a41", CANDIDATES)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("3f9d2a", "at least 7 hex digits"),
        ("abcdef0", "no rollout of a commit beginning abcdef0"),
        ("1795684800000-v4", "not a commit"),
    ],
)
def test_an_unknown_commit_or_id_says_why(query, why):
    with pytest.raises(Unknown, match=why):
        match(query, CANDIDATES)


def test_the_trace_document_has_the_whole_chain():
    live = rollout(
        1,
        LIVE,
        Phase.SETTLED,
        digest="sha256:" + "d" * 64,
        delivery="github:72d3162e-cc78-11e3-81ab-4c9367dc0958",
        namespace="shop",
        config_version="v-77",
        config_sha256="ab" * 32,
        ssm_commands={"i-b": "cmd-2", "i-a": "cmd-1"},
    )
    history = [  # out of order on purpose: phases are oldest first
        {"at": T0 + 9000, "from": "gating", "phase": "promoting", "by": "gate", "why": "healthy"},
        {"at": T0 + 1000, "phase": "deploying", "by": "rollout-function", "why": "accepted"},
        {"at": T0 + 4000, "from": "deploying", "phase": "gating", "by": "rollout-function"},
    ]
    notify = NotifyRecord(
        "shop",
        live.rollout_id,
        sent=(
            Sent("github-status", "pending", T0 + 1500, "e-1"),
            Sent("github-status", "success", T0 + 9500, "e-2", "live"),
        ),
    )
    doc = trace_document(live, history, notify)
    assert list(doc)[:4] == ["commit", "rollout_id", "app", "delivery"]
    for key in ("image", "phases", "config_version", "ssm_commands", "statuses"):
        assert key in doc
    assert doc["delivery"] == "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert doc["deployment"] == {"name": "shop-green", "namespace": "shop", "colour": "green"}
    assert [p["phase"] for p in doc["phases"]] == ["deploying", "gating", "promoting"]
    assert doc["phases"][0] == {
        "phase": "deploying",
        "at": iso(T0 + 1000),
        "by": "rollout-function",
        "why": "accepted",
    }
    assert list(doc["ssm_commands"].items()) == [("i-a", "cmd-1"), ("i-b", "cmd-2")]
    assert [(s["target"], s["state"]) for s in doc["statuses"]] == [
        ("github-status", "pending"),
        ("github-status", "success"),
    ]
    text = trace_lines(doc, T0 + 20_000)
    assert text[0].startswith("commit        " + LIVE)
    assert any(line.startswith("phases        deploying") and "3s" in line for line in text)
    assert any("github-status       success" in line for line in text)


def test_a_trace_before_any_notification():
    doc = trace_document(rollout(1, LIVE, Phase.DEPLOYING), [], None)
    assert (doc["statuses"], doc["ssm_commands"], doc["config_version"]) == ([], {}, None)
    assert "statuses      none sent yet" in trace_lines(doc, NOW)


APPS = parse_apps((ROOT / "config/sandbox-apps.yaml").read_text(), origin="sandbox")


@pytest.mark.parametrize(
    ("trigger", "delivery"),
    [
        (
            CommitPush(
                provider="codecommit",
                repository="shop-web",
                branch="main",
                commit=LIVE,
                previous=None,
                sequence=T0,
                dedupe_id="eventbridge:e-1",
            ),
            "eventbridge:e-1",
        ),
        (
            ManualRollout(app="shop", commit=LIVE, image=None, sequence=T0, dedupe_id="manual:r-1"),
            "manual:r-1",
        ),
    ],
)
def test_an_admitted_rollout_carries_its_delivery_and_namespace(trigger, delivery):
    resolved = resolve(trigger, APPS)
    assert not isinstance(resolved, Ignored)
    admitted = admit(resolved, AppState(app="shop"))
    assert isinstance(admitted, Rollout)
    assert (admitted.delivery, admitted.namespace) == (delivery, "shop")
