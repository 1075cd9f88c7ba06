"""Nothing dropped silently: dead letters with their reason, retries after their own delay,
CodeCommit pushes through their queue (and waiting out a night drain), and `greenlight redrive`.

The real handlers, moto's SQS and DynamoDB, and the Kubernetes stand-in. The tests play the SQS
event source mapping: receive, invoke, delete what the function did not report as failed.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

from greenlight.errors import TemporaryError
from greenlight.redelivery import FAILED_AT, MESSAGE_ID, REASON, SOURCE_QUEUE
from greenlight_sandbox import resources
from greenlight_sandbox.cli import main as cli
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.redrive import RedriveError, redrive
from greenlight_sandbox.sandbox import sqs_records
from tests.conftest import load_event, own_env

GROUP = "workers"
SHOP_COMMIT = "3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b"  # its image is in the sandbox's ECR


def sqs():
    return boto3.client("sqs", region_name=resources.REGION)


def arn_of(url):
    return sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def counts(url):
    """(visible, in flight) messages of a queue."""
    a = sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def deliver(url, handler):
    """One batch from ``url`` to ``handler``, as the event source mapping does it."""
    got = (
        sqs()
        .receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=30
        )
        .get("Messages", [])
    )
    if not got:
        return got, None
    result = handler({"Records": sqs_records(got, arn_of(url), resources.REGION)})
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    for m in got:
        if m["MessageId"] not in failed:
            sqs().delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got, result


def dead_letters(url):
    """Every message of a dead-letter queue, left in place."""
    return (
        sqs()
        .receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )


def attribute(message, name):
    return message["MessageAttributes"][name]["StringValue"]


def queue_push(url, body, **fifo):
    sqs().send_message(QueueUrl=url, MessageBody=json.dumps(body), **fifo)


@pytest.fixture
def function(aws_env):
    """The rollout function's module (its handler and its warm runtime)."""
    module = load("rollout")
    module.invoke = lambda event: module.handler(event, LambdaContext())
    return module


def visibility_changes(module):
    """Every ChangeMessageVisibilityBatch entry the function's SQS client sends."""
    seen = []
    client = module.runtime.get().redelivery.sqs
    client.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibilityBatch",
        lambda params, **_: seen.extend(params["Entries"]),
    )
    return seen


def bad_apps_file(env):
    boto3.client("s3").put_object(
        Bucket=env["GREENLIGHT_CONFIG_BUCKET"],
        Key=env["GREENLIGHT_CONFIG_KEY"],
        Body=b"version: 1\napps:\n  shop:\n    replicas: lots\n",
    )


def good_apps_file(env):
    boto3.client("s3").put_object(
        Bucket=env["GREENLIGHT_CONFIG_BUCKET"],
        Key=env["GREENLIGHT_CONFIG_KEY"],
        Body=resources.APPS_FILE.read_bytes(),
    )


# ------------------------------------------------------------------ CodeCommit through its queue
def test_a_codecommit_event_from_its_queue_starts_a_rollout(function, kube, aws_env):
    url = aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"]
    queue_push(url, load_event("codecommit-push.json"))  # what the EventBridge rule sends
    got, result = deliver(url, function.invoke)
    assert len(got) == 1 and result == {"batchItemFailures": []}
    green = kube.cluster.find("deployments", "shop", "shop-green")
    assert green["metadata"]["annotations"]["greenlight.io/commit"] == SHOP_COMMIT
    assert counts(url) == (0, 0)


def test_the_sqs_codecommit_sample_drives_the_handler(function, kube):
    assert function.invoke(load_event("sqs-codecommit-push.json")) == {"batchItemFailures": []}
    assert kube.cluster.find("deployments", "shop", "shop-green") is not None


# ------------------------------------------------------------------ permanent failures
def test_a_malformed_queued_push_goes_to_the_dead_letter_queue_with_its_reason(
    function, kube, aws_env
):
    url = aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]
    body = {"kind": "push", "repository": "acme/blog"}
    queue_push(url, body, MessageGroupId="acme/blog", MessageDeduplicationId="d-1")
    got, result = deliver(url, function.invoke)

    assert result == {"batchItemFailures": []}  # handled: deleted from the rollout queue
    assert counts(url) == (0, 0)
    (letter,) = dead_letters(aws_env["GREENLIGHT_ROLLOUT_DLQ_URL"])
    assert json.loads(letter["Body"]) == body  # unchanged
    assert attribute(letter, REASON) == "queued message sequence: expected an integer"
    assert attribute(letter, SOURCE_QUEUE) == arn_of(url)
    assert attribute(letter, MESSAGE_ID) == got[0]["MessageId"]
    assert attribute(letter, FAILED_AT).endswith("+00:00")
    assert letter["Attributes"]["MessageGroupId"] == "acme/blog"
    assert letter["Attributes"]["MessageDeduplicationId"] == f"dead-letter:{got[0]['MessageId']}"
    assert kube.cluster.find("deployments", "blog", "blog-green") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [("not json", "message body is not JSON"), ('["a"]', "expected a JSON object")],
)
def test_a_body_that_is_not_a_json_object_is_a_dead_letter(function, aws_env, body, reason):
    url = aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"]
    sqs().send_message(QueueUrl=url, MessageBody=body)
    assert deliver(url, function.invoke)[1] == {"batchItemFailures": []}
    (letter,) = dead_letters(aws_env["GREENLIGHT_CODECOMMIT_DLQ_URL"])
    assert letter["Body"] == body and reason in attribute(letter, REASON)
    assert counts(url) == (0, 0)


def test_without_a_dead_letter_queue_a_permanent_failure_is_logged_and_dropped(
    aws_env, monkeypatch, caplog
):
    monkeypatch.delenv("GREENLIGHT_ROLLOUT_DLQ_URL")
    module = load("rollout")
    record = load_event("sqs-queued-push.json")["Records"][0] | {"body": '{"kind": "push"}'}
    assert module.handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    assert dead_letters(aws_env["GREENLIGHT_ROLLOUT_DLQ_URL"]) == []
    assert "no dead-letter queue is configured" in caplog.text


# ------------------------------------------------------------------ temporary failures
def test_a_temporary_failure_comes_back_after_its_own_delay(function, aws_env, monkeypatch):
    import greenlight.rollout.entry as entry

    def busy(*args, **kwargs):
        raise TemporaryError("the cluster is busy", delay=1.2)

    monkeypatch.setattr(entry, "start", busy)
    changes = visibility_changes(function)
    url = aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]
    for n in (1, 2):  # two pushes of one repository: the second waits behind the first
        push = load_event("sqs-queued-push.json")["Records"][0]["body"]
        queue_push(
            url,
            json.loads(push) | {"dedupe_id": f"github:{n}"},
            MessageGroupId="acme/blog",
            MessageDeduplicationId=str(n),
        )
    got, result = deliver(url, function.invoke)

    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [
        m["MessageId"] for m in got
    ]
    assert [c["VisibilityTimeout"] for c in changes] == [2, 2]  # ceil(1.2), the group together
    assert counts(url) == (0, 2)
    assert sqs().receive_message(QueueUrl=url).get("Messages", []) == []
    time.sleep(2.2)
    assert counts(url) == (2, 0)  # both back, in their group
    assert dead_letters(aws_env["GREENLIGHT_ROLLOUT_DLQ_URL"]) == []


def test_a_failed_visibility_change_still_reports_the_failure(function, aws_env, monkeypatch):
    import greenlight.rollout.entry as entry

    def busy(*args, **kwargs):
        raise TemporaryError("busy", delay=5)

    monkeypatch.setattr(entry, "start", busy)
    # A receipt handle SQS no longer knows (the message was deleted meanwhile).
    record = load_event("sqs-codecommit-push.json")["Records"][0]
    record["eventSourceARN"] = arn_of(aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"])
    result = function.invoke({"Records": [record]})
    assert result == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}


def test_a_push_during_a_night_drain_waits_for_the_drain_to_end(kube, aws_env, monkeypatch):
    from greenlight.store.night import NightState, NightStore

    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", GROUP)
    function = load("rollout")
    changes = visibility_changes(function)
    nights = NightStore(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"], GROUP)
    nights.save(NightState(draining_until=int((time.time() + 3) * 1000)))
    url = aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"]
    queue_push(url, load_event("codecommit-push.json"))

    def invoke(event):
        return function.handler(event, LambdaContext())

    got, result = deliver(url, invoke)
    assert result["batchItemFailures"] == [{"itemIdentifier": got[0]["MessageId"]}]
    assert [c["VisibilityTimeout"] for c in changes] == [3]  # the drain's remaining time
    assert kube.cluster.find("deployments", "shop", "shop-green") is None
    assert deliver(url, invoke) == ([], None)  # not back before the drain ends
    assert counts(url) == (0, 1)

    time.sleep(3.2)  # the drain's deadline has passed
    got, result = deliver(url, invoke)
    assert len(got) == 1 and result == {"batchItemFailures": []}
    assert kube.cluster.find("deployments", "shop", "shop-green") is not None
    assert counts(url) == (0, 0)


# ------------------------------------------------------------------ the gate's queue
@pytest.fixture
def gate(aws_env, monkeypatch):
    from greenlight.gate.entry import GateRuntime, handle
    from greenlight.settings import GateSettings

    monkeypatch.setenv("GREENLIGHT_EDGE_ENDPOINT", "127.0.0.1:1")
    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    runtime = GateRuntime.build(
        GateSettings.from_env(own_env("gate")), edge_push=lambda *a, **k: {}
    )
    return lambda event: handle(event, runtime, LambdaContext())


def test_a_malformed_gate_check_goes_to_the_gate_dead_letter_queue(gate, aws_env):
    url = aws_env["GREENLIGHT_GATE_QUEUE_URL"]
    sqs().send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "gate-check"}))
    assert deliver(url, gate)[1] == {"batchItemFailures": []}
    (letter,) = dead_letters(aws_env["GREENLIGHT_GATE_DLQ_URL"])
    assert attribute(letter, REASON) == "gate message: 'app'"
    assert counts(url) == (0, 0)


def test_a_gate_check_that_fails_for_now_comes_back_after_its_delay(gate, aws_env, monkeypatch):
    import greenlight.gate.entry as entry

    def throttled(*args, **kwargs):
        raise TemporaryError("429 from the API server", delay=1.5)

    monkeypatch.setattr(entry, "run_check", throttled)
    url = aws_env["GREENLIGHT_GATE_QUEUE_URL"]
    body = load_event("sqs-gate-check.json")["Records"][0]["body"]
    sqs().send_message(QueueUrl=url, MessageBody=body)
    got, result = deliver(url, gate)
    assert result["batchItemFailures"] == [{"itemIdentifier": got[0]["MessageId"]}]
    assert counts(url) == (0, 1)
    time.sleep(2.2)
    assert counts(url) == (1, 0)
    assert dead_letters(aws_env["GREENLIGHT_GATE_DLQ_URL"]) == []


# ------------------------------------------------------------------ greenlight redrive
def test_redrive_dry_run_changes_nothing_then_the_real_run_moves_the_push_back(
    function, kube, aws_env, capsys
):
    url = aws_env["GREENLIGHT_CODECOMMIT_QUEUE_URL"]
    dlq = aws_env["GREENLIGHT_CODECOMMIT_DLQ_URL"]
    bad_apps_file(aws_env)
    queue_push(url, load_event("codecommit-push.json"))
    assert deliver(url, function.invoke)[1] == {"batchItemFailures": []}
    assert counts(url) == (0, 0) and counts(dlq) == (1, 0)

    assert cli(["redrive", "codecommit", "--dry-run", "--aws"]) == 0
    listed = capsys.readouterr().out
    assert "reason: s3://" in listed and "apps.shop.replicas: got 'lots'" in listed
    assert '{"version": "0", "id": "6c1f7a52' in listed
    assert "1 dead letter(s); dry run: nothing changed" in listed
    assert counts(url) == (0, 0) and counts(dlq) == (1, 0)  # nothing moved, nothing hidden

    good_apps_file(aws_env)  # the cause fixed
    assert cli(["redrive", "codecommit", "--aws"]) == 0
    assert "codecommit: moved 1, not moved 0" in capsys.readouterr().out
    assert counts(url) == (1, 0) and counts(dlq) == (0, 0)
    (back,) = sqs().receive_message(
        QueueUrl=url, VisibilityTimeout=0, MessageAttributeNames=["All"]
    )["Messages"]
    assert "MessageAttributes" not in back  # greenlight-reason and the others are stripped

    _, result = deliver(url, function.invoke)  # the event source mapping delivers it again
    assert result == {"batchItemFailures": []}
    assert kube.cluster.find("deployments", "shop", "shop-green") is not None

    assert cli(["redrive", "codecommit", "--aws"]) == 0  # again: nothing left to move
    assert "codecommit: moved 0, not moved 0" in capsys.readouterr().out


def test_redrive_to_the_fifo_rollout_queue_keeps_the_group_with_a_new_dedup_id(aws_env):
    dlq = aws_env["GREENLIGHT_ROLLOUT_DLQ_URL"]
    body = load_event("sqs-queued-push.json")["Records"][0]["body"]
    sqs().send_message(
        QueueUrl=dlq,
        MessageBody=body,
        MessageGroupId="acme/blog",
        MessageDeduplicationId="dead-letter:m-1",
        MessageAttributes={REASON: {"DataType": "String", "StringValue": "Kubernetes said 422"}},
    )
    report = redrive(sqs(), "rollout", aws_env, dry_run=False)
    assert len(report.moved) == 1 and not report.failed
    (back,) = sqs().receive_message(
        QueueUrl=aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"],
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    assert back["Body"] == body and "MessageAttributes" not in back
    assert back["Attributes"]["MessageGroupId"] == "acme/blog"
    assert back["Attributes"]["MessageDeduplicationId"] == f"redrive:{report.moved[0]}"
    assert dead_letters(dlq) == []


def test_redrive_is_bounded_by_max(aws_env):
    dlq = aws_env["GREENLIGHT_GATE_DLQ_URL"]
    for n in range(5):
        sqs().send_message(QueueUrl=dlq, MessageBody=json.dumps({"n": n}))
    report = redrive(sqs(), "gate", aws_env, dry_run=False, limit=3)
    assert len(report.moved) == 3 and report.stopped == "--max 3"
    assert counts(dlq) == (2, 0)
    assert counts(aws_env["GREENLIGHT_GATE_QUEUE_URL"]) == (3, 0)


def test_redrive_refuses_what_it_cannot_move(aws_env, monkeypatch):
    monkeypatch.setenv("GREENLIGHT_ANNOUNCE_DLQ_URL", aws_env["GREENLIGHT_GATE_DLQ_URL"])
    with pytest.raises(RedriveError, match="stream batches"):
        redrive(sqs(), "announce", aws_env | {"GREENLIGHT_ANNOUNCE_DLQ_URL": "x"}, dry_run=False)
    with pytest.raises(RedriveError, match="GREENLIGHT_NOTIFY_DLQ_URL is not set"):
        redrive(sqs(), "notify", {}, dry_run=True)
    assert cli(["redrive", "announce", "--aws"]) == 2
    assert cli(["redrive", "announce", "--aws", "--dry-run"]) == 0  # listing is fine
