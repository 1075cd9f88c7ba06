"""The pure parts of dead letters and retries (greenlight/redelivery.py), and of redrive."""

from __future__ import annotations

import json

import pytest

from greenlight.errors import ConfigError, EventError, PermanentError, TemporaryError
from greenlight.redelivery import (
    FAILED_AT,
    MESSAGE_ID,
    REASON,
    SOURCE_QUEUE,
    DeadLetter,
    RetryLater,
    classify,
    dead_letter_request,
    queue_url_of,
    retry_plan,
    visibility_seconds,
)
from greenlight.settings import GateSettings, RolloutSettings
from greenlight_sandbox.redrive import RedriveError, resend_request, summary, urls

FIFO_ARN = "arn:aws:sqs:eu-west-1:123456789012:greenlight-rollout.fifo"


def record(mid, group=None, **extra):
    attributes = {"MessageGroupId": group} if group else {}
    return {
        "messageId": mid,
        "receiptHandle": f"rh-{mid}",
        "body": '{"kind": "push"}',
        "attributes": attributes,
        "messageAttributes": {},
        "eventSourceARN": FIFO_ARN if group else "arn:aws:sqs:eu-west-1:123456789012:q",
    } | extra


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (TemporaryError("draining", delay=840), RetryLater("draining", 840)),
        (PermanentError("422 from Kubernetes"), DeadLetter("422 from Kubernetes")),
        (ConfigError("apps.shop: bad"), DeadLetter("apps.shop: bad")),
        (EventError("not an object"), DeadLetter("not an object")),
        (ConnectionError("reset"), RetryLater("ConnectionError: reset", 60.0)),
    ],
)
def test_classify(exc, verdict):
    assert classify(exc) == verdict


def test_a_body_that_is_not_json_is_a_dead_letter():
    try:
        json.loads("nope")
    except json.JSONDecodeError as exc:
        verdict = classify(exc)
    assert isinstance(verdict, DeadLetter) and verdict.reason.startswith("message body is not")


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [
        (0, 0),
        (-3, 0),
        (float("nan"), 0),
        (0.2, 1),
        (1.0, 1),
        (59.01, 60),
        (840, 840),  # a 14-minute drain
        (43200, 43200),
        (50000, 43200),
        (float("inf"), 43200),
    ],
)
def test_visibility_is_the_delay_rounded_up_within_sqs_limits(delay, seconds):
    assert visibility_seconds(delay) == seconds


def test_a_failed_record_waits_its_own_delay_and_its_group_waits_with_it():
    records = [
        record("a", "repo-1"),
        record("b", "repo-1"),  # failed only because a failed
        record("c", "repo-2"),  # handled
        record("d", "repo-3"),
        record("e"),  # failed, no delay noted (unexpected)
    ]
    plan = retry_plan(records, {"a", "b", "d", "e"}, {"a": 2.5, "d": 700})
    assert [(r.message_id, r.receipt_handle, r.seconds) for r in plan] == [
        ("a", "rh-a", 3),
        ("b", "rh-b", 3),
        ("d", "rh-d", 700),
        ("e", "rh-e", 60),
    ]
    assert plan[0].queue_arn == FIFO_ARN


def test_the_dead_letter_keeps_the_body_and_says_why_when_and_from_where():
    rec = record(
        "m-1",
        "acme/blog",
        messageAttributes={"app": {"stringValue": "shop", "dataType": "String"}},
    )
    request = dead_letter_request(rec, "bad", failed_at_ms=1_795_684_502_500, fifo=True)
    assert request["MessageBody"] == rec["body"]
    attributes = {k: v["StringValue"] for k, v in request["MessageAttributes"].items()}
    assert attributes == {
        "app": "shop",
        REASON: "bad",
        FAILED_AT: "2026-11-26T09:15:02.500+00:00",
        SOURCE_QUEUE: FIFO_ARN,
        MESSAGE_ID: "m-1",
    }
    assert request["MessageGroupId"] == "acme/blog"
    assert request["MessageDeduplicationId"] == "dead-letter:m-1"
    standard = dead_letter_request(record("m-2"), "x" * 5000, failed_at_ms=0, fifo=False)
    assert "MessageGroupId" not in standard and "MessageDeduplicationId" not in standard
    assert len(standard["MessageAttributes"][REASON]["StringValue"]) == 1000


def test_queue_url_of_an_arn():
    assert queue_url_of(FIFO_ARN) == (
        "https://sqs.eu-west-1.amazonaws.com/123456789012/greenlight-rollout.fifo"
    )
    assert queue_url_of("arn:aws-cn:sqs:cn-north-1:1:q") == (
        "https://sqs.cn-north-1.amazonaws.com.cn/1/q"
    )
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        queue_url_of("arn:aws:sns:eu-west-1:1:t")


def test_the_dead_letter_queues_are_settings():
    base = {
        "GREENLIGHT_TABLE": "t",
        "GREENLIGHT_IDEMPOTENCY_TABLE": "i",
        "GREENLIGHT_CONFIG_BUCKET": "b",
        "GREENLIGHT_GATE_QUEUE_URL": "g",
        "GREENLIGHT_EKS_CLUSTER": "c",
        "GREENLIGHT_APP_NAMESPACES": "shop",
    }
    assert RolloutSettings.from_env(base).dead_letter_queue_url == ""  # old deployments
    rollout = RolloutSettings.from_env(
        base | {"GREENLIGHT_ROLLOUT_DLQ_URL": " r ", "GREENLIGHT_CODECOMMIT_DLQ_URL": "c"}
    )
    assert (rollout.dead_letter_queue_url, rollout.codecommit_dead_letter_queue_url) == ("r", "c")
    gate = GateSettings.from_env(
        base
        | {
            "GREENLIGHT_EDGE_ENDPOINT": "edge:443",
            "GREENLIGHT_EDGE_FUNCTION": "f",
            "GREENLIGHT_GATE_DLQ_URL": "d",
        }
    )
    assert gate.dead_letter_queue_url == "d"


def test_a_drain_delays_a_push_by_the_drain_s_remaining_time():
    from greenlight.interlock import wait_for_the_night
    from greenlight.store.night import NightState

    class Nights:
        def load(self):
            return NightState(draining_until=1_000_000 + 14 * 60_000)

    with pytest.raises(TemporaryError) as caught:
        wait_for_the_night(Nights(), app="shop", group="workers", now_ms=1_000_000)  # type: ignore[arg-type]
    assert visibility_seconds(caught.value.delay) == 840


# ------------------------------------------------------------------ redrive's planning
def dead_letter(**attributes):
    return {
        "MessageId": "d-1",
        "ReceiptHandle": "rh",
        "Body": "x" * 150,
        "Attributes": {"SentTimestamp": "1795684502500", "MessageGroupId": "acme/blog"},
        "MessageAttributes": {
            REASON: {"DataType": "String", "StringValue": "422"},
            SOURCE_QUEUE: {"DataType": "String", "StringValue": FIFO_ARN},
        }
        | attributes,
    }


def test_the_dry_run_shows_id_reason_sent_time_and_the_body_s_start():
    assert summary(dead_letter()) == {
        "id": "d-1",
        "sent": "2026-11-26T09:15:02+00:00",
        "reason": "422",
        "body": "x" * 100,
    }
    moved_by_sqs = {"MessageId": "d-2", "Body": "{}", "Attributes": {}}
    assert summary(moved_by_sqs)["reason"] == "(none: maxReceiveCount)"


def test_a_resent_message_keeps_its_group_and_attributes_but_not_greenlight_s():
    app = {"app": {"DataType": "String", "StringValue": "shop"}}
    assert resend_request(dead_letter(**app), fifo=True) == {
        "MessageBody": "x" * 150,
        "MessageAttributes": app,
        "MessageGroupId": "acme/blog",
        "MessageDeduplicationId": "redrive:d-1",
    }
    assert resend_request(dead_letter(), fifo=False) == {"MessageBody": "x" * 150}


def test_redrive_routes():
    env = {"GREENLIGHT_GATE_DLQ_URL": "dlq", "GREENLIGHT_GATE_QUEUE_URL": "src"}
    assert urls("gate", env, dry_run=False) == ("dlq", "src")
    with pytest.raises(RedriveError, match="GREENLIGHT_GATE_QUEUE_URL is not set"):
        urls("gate", {"GREENLIGHT_GATE_DLQ_URL": "dlq"}, dry_run=False)
    assert urls("gate", {"GREENLIGHT_GATE_DLQ_URL": "dlq"}, dry_run=True) == ("dlq", None)
    with pytest.raises(RedriveError, match="unknown queue"):
        urls("nope", env, dry_run=True)
    announce = {"GREENLIGHT_ANNOUNCE_DLQ_URL": "a"}
    assert urls("announce", announce, dry_run=True) == ("a", None)
    with pytest.raises(RedriveError, match="no queue to send them back to"):
        urls("announce", announce, dry_run=False)
