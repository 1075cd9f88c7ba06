"""Fuzzing every handler's event: any shape gets a clear answer, never an unhandled exception.

Each function's real handler (functions/*/app.py, loaded fresh) runs in-process against moto
and the Kubernetes stand-in, with events drawn from two strategies: arbitrary JSON-like values,
and mutations of the sample events in events/ (keys dropped, values replaced by values of other
types, also inside a record's JSON body). The property: the handler returns, or raises only the
project's own errors (``GreenlightError``), never a KeyError, TypeError, AttributeError...; and
an event it rejects writes nothing (table, queues, cluster objects, bucket).

Bounded by the ``ci`` profile (tests/conftest.py: derandomized, no example database) and each
test's ``max_examples``: the module runs in well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlight.errors import GreenlightError
from greenlight.webhook import sign
from greenlight_sandbox import resources
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from tests.conftest import WEBHOOK_SECRET, load_event, own_env
from tests.mutations import mutate, paths

# Each example of a handler costs tens of milliseconds of moto and stand-in calls (more when a
# mutated event is valid and does its work): few examples per handler, many for pure readers.
FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------ strategies
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "push", "aws:sqs", "aws.codecommit", "shop", "rollout", "{", "1e999"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
NOTIFY_QUEUE_ARN = f"arn:aws:sqs:{resources.REGION}:{resources.ACCOUNT}:greenlight-notify"
BODY = "__body__"  # a record's JSON body, parsed so that mutations reach inside it


def _open(value: Any) -> Any:
    """``value`` with every string holding a JSON object or list parsed into ``{BODY: ...}``."""
    if isinstance(value, dict):
        return {k: _open(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_open(v) for v in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return {BODY: _open(json.loads(value))}
        except ValueError:
            return value
    return value


def _close(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {BODY}:
            return json.dumps(_close(value[BODY]))
        return {k: _close(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_close(v) for v in value]
    return value


def mutations(*samples: Any) -> st.SearchStrategy[Any]:
    """The samples with one to three keys dropped or values replaced (by any JSON value)."""

    def of(sample: Any) -> st.SearchStrategy[Any]:
        opened = _open(sample)
        where = sorted(set(paths(opened)), key=repr)
        change = st.tuples(st.sampled_from(where), st.booleans(), JSON)
        return st.lists(change, min_size=1, max_size=3).map(
            lambda changes: _close(mutate(opened, changes))
        )

    return st.one_of(*(of(s) for s in samples))


def events(*names: str, extra: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    samples = [load_event(n) for n in names] + list(extra)
    return st.one_of(
        JSON, st.dictionaries(st.text(max_size=8), JSON, max_size=5), mutations(*samples)
    )


# ------------------------------------------------- what a rejection must leave as it was
def _written(kube: Any, env: dict[str, str]) -> Any:
    ddb = boto3.client("dynamodb", region_name=resources.REGION)
    sqs = boto3.client("sqs", region_name=resources.REGION)
    s3 = boto3.client("s3", region_name=resources.REGION)
    table = sorted(
        json.dumps(i, sort_keys=True) for i in ddb.scan(TableName=resources.TABLE)["Items"]
    )
    idempotency = ddb.scan(TableName=resources.IDEMPOTENCY_TABLE)["Count"]
    queues = {
        key: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        for key, url in env.items()
        if key.endswith("_QUEUE_URL") and "DLQ" not in key
    }
    objects = s3.list_object_versions(Bucket=resources.BUCKET).get("Versions", [])
    with kube.cluster.lock:  # what clients wrote (the controllers keep moving the status)
        cluster = {
            r: sorted(
                json.dumps([o["metadata"].get("namespace"), o["metadata"]["name"], o.get("spec")])
                for o in kube.cluster.items(r)
            )
            for r in ("deployments", "services", "nodes")
        }
    return table, idempotency, queues, len(objects), cluster


def rejected(result: Any) -> bool:
    """An answer that says the event was refused (nothing of it done)."""
    if not isinstance(result, dict):
        return False
    if result.get("status") == "rejected":
        return True
    return isinstance(result.get("statusCode"), int) and 400 <= result["statusCode"] < 500


def check(handler: Callable[[Any], Any], event: Any, kube: Any, env: dict[str, str]) -> Any:
    before = _written(kube, env)
    try:
        result = handler(event)
    except GreenlightError:
        result = {"status": "rejected"}  # raised, not returned: still the project's own
    assert isinstance(result, dict), result
    if rejected(result):
        assert _written(kube, env) == before, result
    return result


def batch_answer(result: dict[str, Any]) -> None:
    """A batch handler's answer: a rejection, or Lambda's partial batch response."""
    if result.get("status") == "rejected":
        assert isinstance(result.get("error"), str) and result["error"]
        return
    assert set(result) == {"batchItemFailures"}, result
    for failure in result["batchItemFailures"]:
        assert isinstance(failure["itemIdentifier"], str) and failure["itemIdentifier"]


def context() -> LambdaContext:
    return LambdaContext(timeout_seconds=20)


# ------------------------------------------------------------------ the handlers
@FUZZ
@given(
    event=events(
        "codecommit-push.json",
        "codecommit-tag.json",
        "manual-rollout.json",
        "manual-rollout-image.json",
        "sqs-codecommit-push.json",
        "sqs-queued-push.json",
    )
)
def test_the_rollout_handler_answers_any_event(rollout_fn, kube, aws_env, event):
    result = check(rollout_fn, event, kube, aws_env)
    if "batchItemFailures" in result:
        batch_answer(result)
    else:
        assert isinstance(result.get("status"), str), result
    if result.get("status") == "rejected":
        assert result["error"], result


def _signed(event: Any) -> Any:
    """A Function URL event whose (string) body is signed with the right secret: the fuzz
    reaches past the signature check."""
    if isinstance(event, dict) and isinstance(event.get("body"), str):
        headers = event.get("headers")
        if isinstance(headers, dict):
            headers["x-hub-signature-256"] = sign(event["body"].encode(), WEBHOOK_SECRET)
    return event


@FUZZ
@given(event=events("github-push.json", "github-ping.json", "github-tag-push.json").map(_signed))
def test_the_webhook_answers_any_request_with_an_http_response(webhook_fn, kube, aws_env, event):
    result = check(webhook_fn, event, kube, aws_env)
    assert set(result) == {"statusCode", "headers", "body"}, result
    body = json.loads(result["body"])
    if result["statusCode"] >= 400:
        assert result["statusCode"] in (400, 401) and body["error"], body


@pytest.fixture
def rollout_fn(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    monkeypatch.setenv("GREENLIGHT_ECR_WAIT_SECONDS", "1")  # a mutated commit's image never comes
    module = load("rollout")
    return lambda event: module.handler(event, context())


@pytest.fixture
def webhook_fn(aws_env: dict[str, str]) -> Callable[[Any], Any]:
    module = load("github-webhook")
    return lambda event: module.handler(event, context())


@pytest.fixture
def gate_fn(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    from greenlight.gate.entry import GateRuntime
    from greenlight.settings import GateSettings

    monkeypatch.setenv("GREENLIGHT_EDGE_ENDPOINT", "127.0.0.1:1")
    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    module = load("gate")
    module.runtime.supply(
        GateRuntime.build(GateSettings.from_env(own_env("gate")), edge_push=lambda *a, **k: {})
    )
    return lambda event: module.handler(event, context())


@FUZZ
@given(
    event=events(
        "gate-abort.json",
        "gate-promote.json",
        "gate-rollback.json",
        "sqs-gate-check.json",
        "schedule-gate-sweep.json",
    )
)
def test_the_gate_handler_answers_any_event(gate_fn, kube, aws_env, event):
    result = check(gate_fn, event, kube, aws_env)
    if "batchItemFailures" in result:
        batch_answer(result)
    if result.get("status") == "rejected":
        assert result["error"], result


@pytest.fixture
def haproxy_fn(aws_env: dict[str, str]) -> Callable[[Any], Any]:
    module = load("haproxy")
    return lambda event: module.handler(event, context())


@FUZZ
@given(
    event=events(
        "haproxy-render.json",
        "haproxy-rollback.json",
        "haproxy-releases.json",
        "haproxy-unpin.json",
        "asg-instance-launch.json",
        "schedule-reconcile.json",
    )
)
def test_the_haproxy_handler_answers_any_event(haproxy_fn, kube, aws_env, event):
    result = check(haproxy_fn, event, kube, aws_env)
    assert isinstance(result.get("status"), str), result


@pytest.fixture
def night_fn(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    from greenlight.night.entry import NightRuntime
    from greenlight.settings import NightFunctionSettings

    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", resources.WORKER_GROUP)
    monkeypatch.setenv("GREENLIGHT_NIGHT_TIME_ZONE", resources.NIGHT_TIME_ZONE)
    module = load("night")
    pushes: list[str] = []
    module.runtime.supply(
        NightRuntime.build(
            NightFunctionSettings.from_env(own_env("night")),
            edge_push=lambda reason, **_: pushes.append(reason) or {"status": "unchanged"},
        )
    )
    return lambda event: module.handler(event, context())


@FUZZ
@given(
    event=events(
        "night-plan.json",
        "night-pause.json",
        "night-skip.json",
        "schedule-night-shrink.json",
        "schedule-night-restore.json",
    )
)
def test_the_night_handler_answers_any_event(night_fn, kube, aws_env, event):
    result = check(night_fn, event, kube, aws_env)
    assert isinstance(result.get("status"), str), result


def stream_event() -> dict[str, Any]:
    """A stream record of a rollout's first phase change, as Lambda hands it over."""
    from greenlight.store.marshal import item

    new = item(
        {
            "pk": "app#shop",
            "sk": "rollout#1795684502000-3f9d2a41c0b7",
            "app": "shop",
            "rollout_id": "1795684502000-3f9d2a41c0b7",
            "image": "shop:v1",
            "colour": "green",
            "phase": "deploying",
            "history": [
                {
                    "at": 1795684502000,
                    "phase": "deploying",
                    "by": "rollout-function",
                    "why": "accepted",
                }
            ],
        }
    )
    return {
        "Records": [
            {
                "eventID": "1",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "SequenceNumber": "100",
                    "NewImage": new,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        ]
    }


@pytest.fixture
def announce_fn(aws: Any) -> Callable[[Any], Any]:
    from greenlight.announce.entry import AnnounceRuntime

    module = load("announce")
    module.runtime.supply(AnnounceRuntime(events=aws.client("events"), bus="default"))
    return lambda event: module.handler(event, context())


@FUZZ
@given(event=st.one_of(JSON, mutations(stream_event())))
def test_the_announce_handler_answers_any_event(announce_fn, event, capsys):
    result = announce_fn(event)
    capsys.readouterr()  # the metrics it wrote
    batch_answer(result)


def notify_event() -> dict[str, Any]:
    detail = {
        "version": 1,
        "id": "1795684502000-3f9d2a41c0b7/0",
        "app": "shop",
        "rollout_id": "1795684502000-3f9d2a41c0b7",
        "source": "manual",
        "repository": None,
        "branch": None,
        "commit": None,
        "image": "shop:v1",
        "digest": None,
        "colour": "green",
        "from": None,
        "to": "deploying",
        "ended": False,
        "by": "rollout-function",
        "reason": "accepted",
        "at": "2026-11-26T09:15:02.000Z",
    }
    body = {
        "source": "greenlight",
        "detail-type": "Greenlight Rollout State Change",
        "detail": detail,
    }
    return {
        "Records": [
            {
                "messageId": "n-1",
                "receiptHandle": "h",
                "body": json.dumps(body),
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": NOTIFY_QUEUE_ARN,
            }
        ]
    }


@pytest.fixture
def notify_fn(aws: Any) -> Callable[[Any], Any]:
    from greenlight.aws import Clients
    from greenlight.notify.entry import NotifyRuntime
    from greenlight.settings import NotifySettings

    resources.create_tables(aws)
    topic = aws.client("sns").create_topic(Name="greenlight-notify")["TopicArn"]
    module = load("notify")
    module.runtime.supply(
        NotifyRuntime.build(
            NotifySettings(table=resources.TABLE, topic_arn=topic), Clients(session=aws)
        )
    )
    return lambda event: module.handler(event, context())


@FUZZ
@given(event=st.one_of(JSON, mutations(notify_event())))
def test_the_notify_handler_answers_any_event(notify_fn, event):
    batch_answer(notify_fn(event))


# ------------------------------------------------------------------ a record's own errors are clear
PURE = settings(FUZZ, max_examples=100)


@PURE
@given(raw=mutations(stream_event()["Records"][0]))
def test_a_stream_record_of_any_shape_raises_only_a_clear_error(raw):
    from greenlight.announce.entry import measured, of_record

    if not isinstance(raw, dict) or not isinstance(raw.get("dynamodb", {}), dict):
        return  # the batch check refuses these before any record is read
    for read in (of_record, measured):
        try:
            read(raw)
        except GreenlightError:
            pass


@PURE
@given(raw=mutations(notify_event()["Records"][0]))
def test_a_notify_record_of_any_shape_raises_only_a_clear_error(raw):
    from greenlight.notify.decide import plan
    from greenlight.notify.entry import detail_of

    if not isinstance(raw, dict):
        return
    try:
        detail = detail_of(raw.get("body"))
        if detail is not None:
            plan(detail, github=True, slack=True)
    except GreenlightError:
        pass
