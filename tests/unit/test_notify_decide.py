"""What each rollout state change sends (greenlight.notify.decide): pure, at fixed events."""

from __future__ import annotations

from typing import Any

import pytest

from greenlight.errors import EventError
from greenlight.lifecycle import Phase
from greenlight.notify.decide import deployment_request, plan, provider_of
from greenlight.store.notify import CODECOMMIT_COMMENT, GITHUB_DEPLOYMENT, GITHUB_STATUS, SLACK, SNS

SHA = "0123456789abcdef0123456789abcdef01234567"
RID = "1795684502000-v2"


def detail(to: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 1,
        "id": f"{RID}/3",
        "app": "shop",
        "rollout_id": RID,
        "source": "github",
        "repository": "acme/shop",
        "branch": "main",
        "commit": SHA,
        "image": "registry.example/shop-web:sha-0123456",
        "digest": None,
        "colour": "green",
        "from": None,
        "to": to,
        "ended": to in ("settled", "failed", "rolled_back", "aborted", "superseded"),
        "by": "gate",
        "reason": "",
        "at": "2026-11-26T10:15:02.000Z",
    }
    return {**base, **changes}


def github_states(to: str, **changes: Any) -> tuple[str | None, str | None]:
    found = plan(detail(to, **changes)).deliveries
    status = [d.state for d in found if d.target == GITHUB_STATUS]
    deployment = [d.state for d in found if d.target == GITHUB_DEPLOYMENT and d.state != "inactive"]
    return (status[0] if status else None, deployment[0] if deployment else None)


@pytest.mark.parametrize(
    ("to", "status", "deployment"),
    [
        ("deploying", "pending", "queued"),
        ("gating", "pending", "in_progress"),
        ("awaiting_approval", "pending", "in_progress"),
        ("promoting", "pending", "in_progress"),
        ("watching", "pending", "in_progress"),
        ("live", "success", "success"),
        ("settled", None, None),
        ("failed", "failure", "failure"),
        ("rolled_back", "failure", "failure"),
        ("aborted", "error", "error"),
        ("superseded", "error", "error"),
    ],
)
def test_every_phase_has_its_github_states(to, status, deployment):
    assert github_states(to) == (status, deployment)


def test_every_phase_is_covered():
    assert {p.value for p in Phase} == {
        "deploying", "gating", "awaiting_approval", "promoting", "watching", "live",
        "settled", "failed", "rolled_back", "aborted", "superseded",
    }  # fmt: skip


def test_the_commit_status_context_is_per_app_and_the_reason_is_its_description():
    found = plan(detail("rolled_back", reason="health check failed: 3 of 5 answers were 503"))
    status = next(d for d in found.deliveries if d.target == GITHUB_STATUS)
    assert status.context == "greenlight/shop"
    assert status.state == "failure"
    assert status.description == "Rolled back: health check failed: 3 of 5 answers were 503"


def test_a_superseded_rollout_says_so_with_the_reason():
    found = plan(detail("superseded", reason="superseded by 1795684600000-v3"))
    status = next(d for d in found.deliveries if d.target == GITHUB_STATUS)
    assert (status.state, status.description) == (
        "error",
        "Superseded: superseded by 1795684600000-v3",
    )


def test_descriptions_fit_githubs_140_characters():
    found = plan(detail("failed", reason="x" * 500))
    for d in found.deliveries:
        if d.target in (GITHUB_STATUS, GITHUB_DEPLOYMENT):
            assert len(d.description) <= 140
            assert d.description.endswith("...")


def test_going_live_also_marks_the_replaced_deployment_inactive():
    found = plan(detail("live")).deliveries
    assert [(d.target, d.state) for d in found if d.target == GITHUB_DEPLOYMENT] == [
        (GITHUB_DEPLOYMENT, "success"),
        (GITHUB_DEPLOYMENT, "inactive"),
    ]
    assert not any(d.state == "inactive" for d in plan(detail("watching")).deliveries)


def test_every_phase_goes_to_sns_with_the_structured_event():
    for phase in Phase:
        found = plan(detail(phase.value)).deliveries
        sns = [d for d in found if d.target == SNS]
        assert len(sns) == 1
        assert '"rollout_id": "1795684502000-v2"' in sns[0].text
        assert sns[0].subject.startswith("Greenlight: shop 0123456")
        assert len(sns[0].subject) <= 100


def test_slack_only_when_configured_and_only_for_the_moves_people_act_on():
    assert not any(d.target == SLACK for d in plan(detail("live")).deliveries)
    heard = {
        p.value
        for p in Phase
        if any(d.target == SLACK for d in plan(detail(p.value), slack=True).deliveries)
    }
    assert heard == {"deploying", "live", "failed", "rolled_back", "aborted", "superseded"}
    text = next(
        d.text
        for d in plan(detail("rolled_back", reason="5xx"), slack=True).deliveries
        if d.target == SLACK
    )
    assert text == "Greenlight: shop 0123456 rolled back: 5xx (rollout 1795684502000-v2)"


def codecommit(to: str, **changes: Any) -> dict[str, Any]:
    return detail(to, source="codecommit", repository="shop-repo", **changes)


def test_codecommit_gets_a_comment_only_when_the_rollout_ends():
    commented = {
        p.value
        for p in Phase
        if any(d.target == CODECOMMIT_COMMENT for d in plan(codecommit(p.value)).deliveries)
    }
    assert commented == {"live", "failed", "rolled_back", "aborted", "superseded"}
    for phase in Phase:
        assert not any(
            d.target in (GITHUB_STATUS, GITHUB_DEPLOYMENT)
            for d in plan(codecommit(phase.value)).deliveries
        )


def test_the_codecommit_comment_carries_the_reason():
    found = plan(codecommit("rolled_back", reason="readiness never reached")).deliveries
    comment = next(d for d in found if d.target == CODECOMMIT_COMMENT)
    assert "rolled back" in comment.text
    assert "Reason: readiness never reached" in comment.text
    live = next(d for d in plan(codecommit("live")).deliveries if d.target == CODECOMMIT_COMMENT)
    assert live.text.startswith("Greenlight: shop is live with this commit.")


def test_a_manual_rollout_without_a_commit_gets_sns_and_slack_only():
    for phase in Phase:
        found = plan(
            detail(phase.value, source="manual", commit=None, repository="acme/shop"), slack=True
        )
        assert {d.target for d in found.deliveries} <= {SNS, SLACK}
        assert found.provider is None


def test_a_manual_rollout_of_a_commit_goes_where_its_repository_lives():
    assert provider_of("manual", "acme/shop", SHA) == "github"
    assert provider_of("manual", "shop-repo", SHA) == "codecommit"
    assert provider_of("manual", "acme/shop", None) is None
    found = plan(detail("live", source="manual")).deliveries
    assert any(d.target == GITHUB_STATUS for d in found)


def test_without_github_configured_no_github_delivery():
    found = plan(detail("live"), github=False).deliveries
    assert {d.target for d in found} == {SNS}


def test_the_deployment_is_for_the_apps_environment_and_bypasses_status_checks():
    notice = plan(detail("deploying", id=f"{RID}/0"), environment="prod-eu")
    assert notice.environment == "prod-eu/shop"
    assert notice.history_index == 0
    body = deployment_request(notice, detail("deploying"))
    assert body["ref"] == SHA
    assert body["environment"] == "prod-eu/shop"
    assert body["required_contexts"] == []
    assert body["auto_merge"] is False
    assert body["production_environment"] is True
    assert body["payload"]["rollout_id"] == RID


def test_a_malformed_event_is_refused():
    with pytest.raises(EventError):
        plan(detail("live", id="no-index"))
    with pytest.raises(EventError):
        plan(detail("exploded"))
