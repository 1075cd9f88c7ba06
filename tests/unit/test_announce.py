"""What each write of the rollouts table announces, at fixed instants, checked against the
events' JSON schemas (events/schemas/)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from greenlight.announce.decide import (
    DETAIL_TYPES,
    EDGE_PUSH,
    NIGHT,
    ROLLOUT_STATE_CHANGE,
    announcements,
)
from greenlight.announce.entry import entries
from greenlight.edge.fleet import Outcome
from greenlight.lifecycle import ENDED, Actor, Phase
from greenlight.night.entry import RECORDED

SCHEMAS = Path(__file__).resolve().parents[2] / "events" / "schemas"
FILES = {
    ROLLOUT_STATE_CHANGE: "rollout-state-change.json",
    EDGE_PUSH: "edge-push.json",
    NIGHT: "night.json",
}
T0 = 1_795_684_502_000  # 2026-11-26T09:15:02Z
RID = f"{T0:013d}-aaaaaaaaaaaa"


@cache
def schema(detail_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / FILES[detail_type]).read_text())


def validate(event: dict[str, Any]) -> None:
    """``event`` (as EventBridge delivers it) matches its detail type's schema."""
    found = schema(event["detail-type"])
    Draft202012Validator(found, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(event)


def delivered(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"source": "greenlight", "detail-type": detail_type, "detail": detail}


def rollout_item(*history: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "pk": "app#shop",
        "sk": f"rollout#{RID}",
        "app": "shop",
        "rollout_id": RID,
        "version": "a" * 40,
        "image": "registry.example/shop-web:" + "a" * 12,
        "colour": "green",
        "phase": history[-1]["phase"],
        "sequence": T0,
        "source": "codecommit",
        "repository": "shop",
        "branch": "main",
        "commit": "a" * 40,
        "history": list(history),
        **more,
    }


ACCEPTED = {"at": T0, "phase": "deploying", "by": "rollout-function", "why": "accepted"}
GATING = {"at": T0 + 900, "from": "deploying", "phase": "gating", "by": "rollout-function",
          "why": "candidate written"}  # fmt: skip
FAILED = {"at": T0 + 5000, "from": "gating", "phase": "failed", "by": "gate-sweep",
          "why": "deploying past its deadline"}  # fmt: skip


def test_schemas_are_valid_and_name_what_the_code_has():
    for detail_type in DETAIL_TYPES:
        Draft202012Validator.check_schema(schema(detail_type))
        assert schema(detail_type)["properties"]["detail-type"]["const"] == detail_type
    props = schema(ROLLOUT_STATE_CHANGE)["properties"]["detail"]["properties"]
    assert set(props["to"]["enum"]) == {p.value for p in Phase}
    assert set(props["by"]["enum"]) == {a.value for a in Actor}
    edge = schema(EDGE_PUSH)["properties"]["detail"]["properties"]
    assert set(edge["instances"]["items"]["properties"]["outcome"]["enum"]) == {
        o.value for o in Outcome
    }
    night = schema(NIGHT)["properties"]["detail"]["properties"]
    assert set(night["status"]["enum"]) == {s.value for s in RECORDED}


def test_an_accepted_rollout_is_one_event_from_nothing_to_deploying():
    (found,) = announcements(None, rollout_item(ACCEPTED))
    assert found.detail_type == ROLLOUT_STATE_CHANGE
    assert found.at == datetime(2026, 11, 26, 9, 15, 2, tzinfo=UTC)
    detail = found.detail
    assert (detail["from"], detail["to"], detail["ended"]) == (None, "deploying", False)
    assert detail["at"] == "2026-11-26T09:15:02.000Z"
    assert detail["id"] == f"{RID}/0"
    assert "config_version" not in detail
    validate(delivered(found.detail_type, detail))


def test_each_history_entry_a_write_adds_is_one_event_and_older_ones_none():
    before = rollout_item(ACCEPTED)
    after = rollout_item(ACCEPTED, GATING, FAILED)
    found = announcements(before, after)
    assert [(a.detail["from"], a.detail["to"]) for a in found] == [
        ("deploying", "gating"),
        ("gating", "failed"),
    ]
    assert [a.detail["ended"] for a in found] == [False, Phase.FAILED in ENDED]
    assert found[1].detail["reason"] == "deploying past its deadline"
    assert [a.detail["id"] for a in found] == [f"{RID}/1", f"{RID}/2"]


def test_a_write_with_no_new_history_announces_nothing():
    item = rollout_item(ACCEPTED, GATING)
    assert announcements(item, item | {"last_check_at": T0 + 7000}) == []
    assert announcements(item, None) == []


def test_the_config_version_is_announced_once_the_rollout_has_one():
    watching = {"at": T0 + 9000, "from": "promoting", "phase": "watching", "by": "gate",
                "why": "live on green"}  # fmt: skip
    item = rollout_item(ACCEPTED, watching, config_version="v-1", config_sha256="ab" * 32)
    (found,) = announcements(rollout_item(ACCEPTED), item)
    assert (found.detail["config_version"], found.detail["config_sha256"]) == ("v-1", "ab" * 32)
    validate(delivered(found.detail_type, found.detail))


def test_a_manual_rollout_of_an_image_has_no_commit_and_still_matches():
    item = rollout_item(ACCEPTED, source="manual", commit=None, repository=None, branch=None)
    (found,) = announcements(None, item)
    assert found.detail["commit"] is None
    validate(delivered(found.detail_type, found.detail))


@pytest.mark.parametrize("sk", ["state", "prospect"], ids=["the app or fleet state", "a prospect"])
def test_state_items_announce_nothing(sk):
    assert announcements(None, {"pk": "app#shop", "sk": sk, "phase": "gating"}) == []
    assert announcements(None, {"pk": "edge#fleet", "sk": sk, "sha256": "x"}) == []


def test_a_fleet_reload_is_an_edge_push_with_each_instance():
    reload = {
        "pk": "edge#fleet",
        "sk": "reload#2026-11-26T09:15:02Z#abababababab",
        "status": "canary-failed",
        "degraded": True,
        "sha256": "ab" * 32,
        "version_id": "v-3",
        "why": "promote shop",
        "at": T0 // 1000,
        "instances": {"i-0b": {"outcome": "Failed", "detail": "haproxy -c", "command_id": "c"}},
    }
    (found,) = announcements(None, reload)
    assert found.detail["instances"][0]["instance_id"] == "i-0b"
    validate(delivered(EDGE_PUSH, found.detail))
    assert announcements(reload, reload) == []  # the same item written again: nothing new


def test_a_night_run_is_announced_once():
    run = {
        "pk": "night#workers",
        "sk": "run#2026-11-26T09:15:02Z",
        "group": "workers",
        "action": "restore",
        "status": "incomplete",
        "target": 3,
        "ready_nodes": 2,
        "fleet": "applied",
        "at": T0 // 1000,
    }
    (found,) = announcements(None, run)
    assert (found.detail["target"], found.detail["ready_nodes"]) == (3, 2)
    validate(delivered(NIGHT, found.detail))
    bad = found.detail | {"status": "dry-run"}
    with pytest.raises(Exception, match="dry-run"):
        validate(delivered(NIGHT, bad))


def test_entries_carry_source_detail_type_time_and_bus():
    (found,) = announcements(None, rollout_item(ACCEPTED))
    (entry,) = entries([found], "greenlight-bus")
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "greenlight",
        ROLLOUT_STATE_CHANGE,
        "greenlight-bus",
    )
    assert json.loads(entry["Detail"]) == found.detail
    assert entry["Time"] == found.at


def test_a_push_the_fleet_took_gives_the_rollout_its_config_and_commands():
    from greenlight.edgepush import published

    answer = {
        "status": "published",
        "fleet": {
            "status": "applied",
            "version_id": "v-5",
            "sha256": "cd" * 32,
            "instances": {
                "i-0a": {"outcome": "Success", "command_id": "c-1"},
                "i-0b": {"outcome": "NotAttempted", "command_id": ""},
            },
        },
    }
    assert published(answer) == {
        "config_version": "v-5",
        "config_sha256": "cd" * 32,
        "ssm_commands": {"i-0a": "c-1"},
    }
    assert published({"status": "unchanged"}) == {}
