"""Events of a shape their source never sends get a clear rejection that names the field."""

from __future__ import annotations

import json
import re

import pytest

from greenlight.announce.entry import batch_problem as stream_batch_problem
from greenlight.announce.entry import of_record
from greenlight.errors import EventError
from greenlight.notify.entry import detail_of
from greenlight.redelivery import (
    NO_BODY,
    DeadLetter,
    batch_problem,
    classify,
    dead_letter_request,
    message_body,
)
from greenlight.triggers import from_manual, from_queued
from greenlight.webhook import accept, method_of, sign

SECRET = "s3cret"
COMMIT = "3f9d2a41c0b7e8d9f0a1b2c3d4e5f60718293a4b"


def url_event(**changes):
    body = json.dumps({"zen": "hi"})
    event = {
        "headers": {
            "x-github-event": "ping",
            "x-github-delivery": "d-1",
            "x-hub-signature-256": sign(body.encode(), SECRET),
        },
        "body": body,
        "requestContext": {"http": {"method": "POST"}},
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ("GET", "requestContext"),
        (["http"], "requestContext"),
        ({"http": "POST"}, r"requestContext\.http"),
        ({"http": ["POST"]}, r"requestContext\.http"),
        ({"http": {"method": 7}}, r"requestContext\.http\.method"),
    ],
)
def test_a_function_url_event_whose_request_context_is_not_an_object_is_refused(context, field):
    with pytest.raises(EventError, match=f"^{field}: expected"):
        accept(url_event(requestContext=context), SECRET)


def test_a_missing_request_context_means_post_and_another_method_is_refused():
    assert method_of({}) == "POST"
    assert method_of({"requestContext": {}}) == "POST"
    assert accept(url_event(requestContext=None), SECRET).status == 200
    with pytest.raises(EventError, match="only POST"):
        accept(url_event(requestContext={"http": {"method": "GET"}}), SECRET)


def record(**changes):
    raw = {
        "messageId": "m-1",
        "receiptHandle": "h",
        "body": "{}",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q",
        "attributes": {},
        "messageAttributes": {},
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not Ellipsis}


def test_an_sqs_record_without_a_body_is_a_dead_letter_that_says_so():
    for raw, why in (
        (record(body=...), "record.body: missing"),
        (record(body=None), "record.body: missing"),
        (record(body={"kind": "push"}), "record.body: expected a string, got dict"),
        (record(body="{"), "message body is not JSON"),
        (record(body="[" * 100_000), "message body is not JSON"),
    ):
        with pytest.raises(EventError, match="^" + why.replace(".", r"\.")) as exc:
            message_body(raw)
        assert isinstance(classify(exc.value), DeadLetter)
    request = dead_letter_request(
        record(body=...), "record.body: missing", failed_at_ms=0, fifo=False
    )
    assert request["MessageBody"] == NO_BODY  # SQS refuses an empty body
    assert message_body(record(body='{"a": 1}')) == {"a": 1}


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([], "Records: expected a non-empty list"),
        ("x", "Records: expected a non-empty list"),
        ([5], r"Records\[0\]: expected an object"),
        ([record(), record(messageId=...)], r"Records\[1\]\.messageId: expected"),
        ([record(messageId="")], r"Records\[0\]\.messageId: expected"),
        ([record(messageId=7)], r"Records\[0\]\.messageId: expected"),
        ([record(attributes=[1])], r"Records\[0\]\.attributes: expected an object"),
        ([record(messageAttributes="a")], r"Records\[0\]\.messageAttributes: expected"),
        ([record(eventSourceARN=1)], r"Records\[0\]\.eventSourceARN: expected a string"),
        ([record(receiptHandle={})], r"Records\[0\]\.receiptHandle: expected a string"),
    ],
)
def test_a_batch_sqs_never_sends_is_refused_whole_naming_the_record(records, why):
    problem = batch_problem(records)
    assert problem is not None and re.match(why, problem), problem


def test_a_real_batch_shape_passes_even_with_a_record_without_body():
    assert batch_problem([record(), record(messageId="m-2", body=..., attributes=None)]) is None


def test_a_queued_push_with_a_malformed_previous_commit_is_refused():
    body = {
        "kind": "push",
        "provider": "github",
        "repository": "acme/blog",
        "branch": "main",
        "commit": COMMIT,
        "previous": {"sha": COMMIT},
        "sequence": 1,
        "dedupe_id": "github:d",
    }
    with pytest.raises(EventError, match=r"^message\.previous: expected a 40-hex"):
        from_queued(body)
    assert from_queued(body | {"previous": None}).previous is None  # type: ignore[union-attr]


@pytest.mark.parametrize("dry_run", ["false", 0, None, [True]])
def test_a_manual_dry_run_that_is_not_a_boolean_is_refused(dry_run):
    payload = {"app": "shop", "commit": COMMIT, "dry_run": dry_run}
    with pytest.raises(EventError, match=r"^payload\.dry_run: expected true or false"):
        from_manual(payload, now_ms=0, request_id="r")


def state_change(**detail):
    base = {
        "id": "1795684502000-abc/0",
        "app": "shop",
        "rollout_id": "1795684502000-abc",
        "to": "deploying",
        "image": "shop:v1",
        "commit": COMMIT,
    }
    base.update(detail)
    base = {k: v for k, v in base.items() if v is not Ellipsis}
    return json.dumps({"detail-type": "Greenlight Rollout State Change", "detail": base})


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (None, r"record\.body: missing"),
        (5, r"record\.body: not a string"),
        ("{", "message body: not JSON"),
        (state_change(image=...), r"detail\.image: expected a non-empty string"),
        (state_change(app=5), r"detail\.app: expected a non-empty string"),
        (state_change(commit=["x"]), r"detail\.commit: expected a string or null"),
        (state_change(repository={}), r"detail\.repository: expected a string or null"),
    ],
)
def test_a_notify_record_of_the_wrong_shape_is_refused_naming_the_field(body, why):
    with pytest.raises(EventError, match=f"^{why}"):
        detail_of(body)
    assert detail_of(state_change())["app"] == "shop"  # type: ignore[index]


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([{"dynamodb": {}}], r"Records\[0\]\.dynamodb\.SequenceNumber: expected"),
        (["x"], r"Records\[0\]\.dynamodb: expected an object"),
        ([{"dynamodb": []}], r"Records\[0\]\.dynamodb: expected an object"),
    ],
)
def test_a_stream_batch_the_stream_never_sends_is_refused(records, why):
    problem = stream_batch_problem(records)
    assert problem is not None and re.match(why, problem), problem


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"NewImage": ["x"]}, r"dynamodb\.NewImage: expected an object"),
        ({"NewImage": {"pk": {"Q": "x"}}}, r"dynamodb\.NewImage: not a DynamoDB item"),
        (
            {
                "NewImage": {
                    "pk": {"S": "app#shop"},
                    "sk": {"S": "rollout#1"},
                    "history": {"L": [{"M": {"phase": {"S": "nowhere"}}}]},
                }
            },
            "stream record 7: not the shape of a Greenlight item",
        ),
    ],
)
def test_a_malformed_stream_record_raises_a_clear_error(change, why):
    with pytest.raises(EventError, match=f"^{why}"):
        of_record({"dynamodb": {"SequenceNumber": "7", **change}})
