"""Acceptance under races: the real rollout handler, moto's DynamoDB and SQS, the Kubernetes
stand-in. What DynamoDB itself cannot be made to do on cue (a transaction conflict) is stubbed
at the client's edge, on the function's own client (botocore's ``before-call`` hook, as
botocore's Stubber does it)."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from greenlight_sandbox import resources
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.sandbox import sqs_records
from tests.conftest import load_event, table_items

SHOP_COMMIT = "3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b"  # its image is in the sandbox's ECR


def cancelled_once(client, codes):
    """The client's next TransactWriteItems is cancelled with ``codes`` (one per item, as
    DynamoDB answers); the calls after it reach moto. The calls cancelled, as a list."""
    calls = []

    def answer(params, **_):
        if calls:
            return None
        calls.append(params)
        reasons = [{"Code": code} for code in codes]
        parsed = {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": f"Transaction cancelled [{', '.join(codes)}]",
            },
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb", 400, {}, None), parsed

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", answer)
    return calls


def deliver(function, url):
    """One batch from ``url`` to the function, as the event source mapping does it: (the
    messages, the function's answer); the messages not reported failed are deleted."""
    sqs = boto3.client("sqs", region_name=resources.REGION)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    )
    result = function.handler({"Records": sqs_records(got, arn, resources.REGION)}, LambdaContext())
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    for m in got:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got, result


def test_a_push_that_loses_a_transaction_conflict_comes_back_and_is_accepted(kube, aws_env):
    function = load("rollout")
    store = function.runtime.get().deps.store
    cancelled = cancelled_once(store.client, ["TransactionConflict", "None"])
    changes = []
    function.runtime.get().redelivery.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibilityBatch",
        lambda params, **_: changes.extend(params["Entries"]),
    )
    url = aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"]
    boto3.client("sqs").send_message(
        QueueUrl=url, MessageBody=json.dumps(load_event("codecommit-push.json"))
    )

    got, result = deliver(function, url)

    assert len(cancelled) == 1
    # Not "ignored: not newer": a failure for now, back after its short delay ...
    assert result == {"batchItemFailures": [{"itemIdentifier": got[0]["MessageId"]}]}
    assert [c["VisibilityTimeout"] for c in changes] == [2]
    assert store.state("shop").rollout_id is None  # nothing accepted
    # ... and no idempotency record kept for it: the push is not answered from one.
    assert table_items(resources.IDEMPOTENCY_TABLE) == []

    boto3.client("sqs").change_message_visibility(
        QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    again, result = deliver(function, url)
    assert len(again) == 1 and result == {"batchItemFailures": []}
    state = store.state("shop")
    assert state.commit == SHOP_COMMIT and state.rollout_id is not None
    assert kube.cluster.find("deployments", "shop", "shop-green") is not None


def test_a_push_whose_state_condition_failed_is_stale_read_again(kube, aws_env):
    """The one cancellation that means "not newer": the state item's condition, with the
    state read again holding a newer push (a real condition failure in moto)."""
    function = load("rollout")
    newer = dict(load_event("codecommit-push.json"), id="newer", time="2026-11-26T10:00:00Z")
    newer["detail"] = dict(newer["detail"], commitId="b" * 40)
    resources.push_image(boto3.session.Session(), "shop-web", "b" * 12)
    assert function.handler(newer, LambdaContext())["status"] == "started"

    older = function.handler(load_event("codecommit-push.json"), LambdaContext())
    assert older["status"] == "ignored" and "not newer" in older["detail"]


def test_two_different_events_sharing_an_id_each_get_their_own_rollout(kube, aws_env):
    """The idempotency key is the delivery id with what it asks for (its commit): an event
    that reuses another's id is not answered with the other's result."""
    function = load("rollout")
    store = function.runtime.get().deps.store
    first = load_event("codecommit-push.json")
    second = dict(first, time="2026-11-26T10:00:00Z")  # the same id, another commit, later
    second["detail"] = dict(first["detail"], commitId="c" * 40, oldCommitId=SHOP_COMMIT)
    resources.push_image(boto3.session.Session(), "shop-web", "c" * 12)

    one = function.handler(first, LambdaContext())
    two = function.handler(second, LambdaContext())

    assert one["status"] == two["status"] == "started"
    assert one["rollout_id"] != two["rollout_id"]
    assert two["image"].endswith(":" + "c" * 12)
    assert store.state("shop").rollout_id == two["rollout_id"]
    assert store.rollout("shop", one["rollout_id"]).phase.value == "superseded"
    # The same event again is still answered once: from its own record.
    assert function.handler(second, LambdaContext()) == two
    assert len(table_items(resources.IDEMPOTENCY_TABLE)) == 2


def test_a_push_timed_beyond_now_plus_the_skew_is_a_dead_letter_and_never_accepted(kube, aws_env):
    from greenlight.redelivery import REASON
    from greenlight.triggers import SEQUENCE_SKEW_SECONDS

    function = load("rollout")
    store = function.runtime.get().deps.store
    url = aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]
    body = json.loads(load_event("sqs-queued-push.json")["Records"][0]["body"])
    future = int((time.time() + SEQUENCE_SKEW_SECONDS + 60) * 1000)
    sqs = boto3.client("sqs")
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(body | {"sequence": future}),
        MessageGroupId="acme/blog",
        MessageDeduplicationId="future",
    )

    got, result = deliver(function, url)

    assert len(got) == 1 and result == {"batchItemFailures": []}  # handled: not retried
    dead = sqs.receive_message(
        QueueUrl=aws_env["GREENLIGHT_ROLLOUT_DLQ_URL"], MessageAttributeNames=["All"]
    )["Messages"]
    reason = dead[0]["MessageAttributes"][REASON]["StringValue"]
    assert reason.startswith("sequence: ") and str(future) in reason
    assert store.state("blog").rollout_id is None and store.state("blog").sequence == 0
    assert kube.cluster.find("deployments", "blog", "blog-green") is None

    # A real push right after it is accepted (the far-future one left no mark).
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(body | {"sequence": int(time.time() * 1000)}),
        MessageGroupId="acme/blog",
        MessageDeduplicationId="now",
    )
    _, result = deliver(function, url)
    assert result == {"batchItemFailures": []}
    assert store.state("blog").commit == body["commit"]


def test_a_shrink_that_starts_between_the_reads_and_the_acceptance_is_not_missed(
    kube, aws_env, monkeypatch
):
    """The night interlock is a ConditionCheck in acceptance's own transaction: a drain
    marker that lands right before the write refuses it, with the drain's remaining time."""
    from greenlight.errors import TemporaryError
    from greenlight.store.night import NightState, NightStore

    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", "workers")
    function = load("rollout")
    store = function.runtime.get().deps.store
    nights = NightStore(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"], "workers")
    started = []

    def the_night_starts(**_):  # between every read of the push and its transaction
        if not started:
            nights.save(NightState(draining_until=int((time.time() + 60) * 1000)))
            started.append(1)

    store.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", the_night_starts
    )
    push = load_event("codecommit-push.json")

    with pytest.raises(TemporaryError, match="draining nodes of workers") as waited:
        function.handler(push, LambdaContext())

    assert started and 55 <= waited.value.delay <= 61  # the drain's remaining time
    assert store.state("shop").rollout_id is None  # nothing accepted
    assert kube.cluster.find("deployments", "shop", "shop-green") is None
    assert table_items(resources.IDEMPOTENCY_TABLE) == []  # and nothing remembered

    nights.save(NightState())  # the drain is over: the push, back, is accepted
    assert function.handler(push, LambdaContext())["status"] == "started"
