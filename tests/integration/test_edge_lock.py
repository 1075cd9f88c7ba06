"""One push at a time, queued: the haproxy function's edge lock (store/lease.py) and its
deadline, with the real handler, moto and the stand-in; the grant it needs, from the template."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from greenlight.edge.entry import MIN_LOCKED_SECONDS
from greenlight.edge.publish import ConfigStore
from greenlight.store.lease import EdgeLock
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.fleet import load_template
from greenlight_sandbox.functions import load
from tests.conftest import node_port_service

BUNDLE = "haproxy/config.tar.gz"


@pytest.fixture
def haproxy(aws_env, kube):
    for name, port in (("shop-blue", 30080), ("shop-green", 30081)):
        node_port_service(kube, "shop", name, node_port=port)
    return load("haproxy")


def lock(env) -> EdgeLock:
    return EdgeLock(boto3.client("dynamodb"), env["GREENLIGHT_TABLE"])


def versions(env) -> list[dict]:
    return (
        boto3.client("s3")
        .list_object_versions(Bucket=env["GREENLIGHT_CONFIG_BUCKET"], Prefix=BUNDLE)
        .get("Versions", [])
    )


def held_by(env, owner: str, *, expires_in: float) -> None:
    boto3.client("dynamodb").put_item(
        TableName=env["GREENLIGHT_TABLE"],
        Item={
            "pk": {"S": "edge#lock"},
            "sk": {"S": "lock"},
            "owner": {"S": owner},
            "why": {"S": "push: another"},
            "expires_ms": {"N": str(int((time.time() + expires_in) * 1000))},
        },
    )


def in_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


def test_two_pushes_at_once_both_publish_one_after_the_other(haproxy, aws_env, monkeypatch):
    spans: list[tuple[float, float]] = []
    publish = ConfigStore.publish

    def slow_publish(self, files, *, dry_run, **kwargs):  # a push that takes a while
        start = time.monotonic()
        time.sleep(1.0)
        try:
            return publish(self, files, dry_run=dry_run, **kwargs)
        finally:
            spans.append((start, time.monotonic()))

    monkeypatch.setattr(ConfigStore, "publish", slow_publish)
    answers: dict[str, dict] = {}

    def push(owner: str) -> None:
        event = {"action": "push", "reason": owner, "deadline_ms": in_ms(200)}
        answers[owner] = haproxy.handler(event, LambdaContext(aws_request_id=owner))

    threads = [threading.Thread(target=push, args=(o,)) for o in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(a["status"] for a in answers.values())
    assert statuses == ["published", "unchanged"], answers  # both ran; neither throttled
    first, second = sorted(spans)
    assert first[1] <= second[0]  # one writer at a time
    waits = {o: a["lock"] for o, a in answers.items()}
    later = max(waits, key=lambda o: waits[o]["waited_seconds"])
    earlier = "first" if later == "second" else "second"
    assert waits[later]["waited_seconds"] >= 0.8 and waits[later]["waited_for"] == earlier
    assert waits[earlier]["waited_seconds"] < 0.5 and waits[earlier]["waited_for"] is None
    assert lock(aws_env).holder() is None  # let go by both


def test_a_push_that_cannot_get_the_lock_in_time_is_busy_and_changes_nothing(haproxy, aws_env):
    held_by(aws_env, "another", expires_in=600)
    started = time.monotonic()
    event = {"action": "push", "reason": "promote", "deadline_ms": in_ms(MIN_LOCKED_SECONDS + 2)}
    answer = haproxy.handler(event, LambdaContext())
    assert answer["status"] == "busy" and "held by another" in answer["error"]
    assert 1.0 <= time.monotonic() - started < 5  # waited what its deadline allowed, no more
    assert versions(aws_env) == []
    assert lock(aws_env).holder().owner == "another"  # not let go by a push that never held it


def test_an_instance_event_that_finds_the_lock_busy_raises_for_lambdas_retry(
    haproxy, aws_env, event
):
    # Nobody waits for an asynchronous push: an answer of "busy" would be lost, an error is
    # retried by Lambda (EventInvokeConfig) and counted by the function's error alarm.
    from greenlight.errors import TemporaryError

    held_by(aws_env, "another", expires_in=600)
    launch = event("asg-instance-launch.json")
    context = LambdaContext(timeout_seconds=MIN_LOCKED_SECONDS + 7)  # 5 s margin: 2 s to wait
    with pytest.raises(TemporaryError, match="held by another"):
        haproxy.handler(launch, context)
    assert versions(aws_env) == []


def test_an_expired_lock_is_taken_over(haproxy, aws_env):
    held_by(aws_env, "dead", expires_in=-1)
    answer = haproxy.handler({"action": "push", "reason": "reconcile"}, LambdaContext())
    assert answer["status"] == "published" and answer["lock"]["taken_over_from"] == "dead"
    assert lock(aws_env).holder() is None


def test_a_push_called_too_late_is_not_started(haproxy, aws_env):
    event = {"action": "push", "reason": "promote", "deadline_ms": in_ms(MIN_LOCKED_SECONDS - 5)}
    answer = haproxy.handler(event, LambdaContext())
    assert answer["status"] == "too-late" and "not started" in answer["error"]
    assert versions(aws_env) == [] and lock(aws_env).holder() is None


@pytest.mark.parametrize("bad", ["soon", True, -5, 1.5])
def test_a_bad_deadline_is_rejected_by_name(haproxy, aws_env, bad):
    answer = haproxy.handler({"action": "push", "deadline_ms": bad}, LambdaContext())
    assert answer["status"] == "rejected" and answer["error"].startswith("deadline_ms:")
    assert versions(aws_env) == []


def test_the_lock_is_let_go_when_a_push_fails(haproxy, aws_env, monkeypatch):
    def broken(self, files, *, dry_run, **kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")

    monkeypatch.setattr(ConfigStore, "publish", broken)
    with pytest.raises(ClientError):
        haproxy.handler({"action": "push", "reason": "x"}, LambdaContext())
    assert lock(aws_env).holder() is None


def test_the_haproxy_function_queues_on_its_lock_instead_of_a_concurrency_of_one():
    function = load_template()["Resources"]["HaproxyFunction"]["Properties"]
    assert "ReservedConcurrentExecutions" not in function  # concurrent pushes are not throttled
    statements = {
        s["Sid"]: s for p in function["Policies"] if "Statement" in p for s in p["Statement"]
    }
    grant = statements["EdgeLock"]
    assert grant["Effect"] == "Allow"
    assert sorted(grant["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ]
    assert grant["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["edge#lock"]}
    }
    # No other statement lets the function write the lock's key, or anything but its own.
    for sid, statement in statements.items():
        keys = (statement.get("Condition") or {}).get("ForAllValues:StringEquals", {})
        reads = ("dynamodb:GetItem", "dynamodb:BatchGetItem")
        if any(a.startswith("dynamodb:") and a not in reads for a in statement["Action"]):
            own = (["edge#lock"], ["edge#fleet"], ["edge#pin"])
            assert keys.get("dynamodb:LeadingKeys") in own, sid
