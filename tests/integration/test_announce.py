"""The announce function against moto: the rollouts table's stream in, EventBridge out.

Every committed phase change, fleet reload and night run reaches an SQS queue subscribed to
the bus as one event that matches its schema in events/schemas/; a record EventBridge does not
take is reported for retry and published when retried, nothing lost."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from greenlight.announce.entry import AnnounceRuntime, handle
from greenlight.colour import Colour
from greenlight.lifecycle import Actor, Phase
from greenlight.store.fleet import FleetLog
from greenlight.store.night import NightStore
from greenlight.store.rollouts import Rollout, RolloutStore
from greenlight_sandbox import resources
from greenlight_sandbox.streams import StreamTail

from ..unit.test_announce import validate

T0 = 1_795_684_502_000
SHA = "ab" * 32


@pytest.fixture
def world(aws) -> dict[str, Any]:
    resources.create_tables(aws)
    sqs, events = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName="heard")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["greenlight"]}))
    events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": arn}])
    ticks = iter(range(T0, T0 + 10**9, 1000))
    return {
        "sqs": sqs,
        "url": url,
        "tail": StreamTail(aws, resources.TABLE),
        "store": RolloutStore(aws.client("dynamodb"), resources.TABLE, clock=lambda: next(ticks)),
        "runtime": AnnounceRuntime(events=aws.client("events"), bus="default"),
    }


def heard(world: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(20):
        got = world["sqs"].receive_message(QueueUrl=world["url"], MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return out
        out += [json.loads(m["Body"]) for m in got["Messages"]]
        for m in got["Messages"]:
            world["sqs"].delete_message(QueueUrl=world["url"], ReceiptHandle=m["ReceiptHandle"])
    return out


def candidate(n: int) -> Rollout:
    return Rollout(
        app="shop",
        rollout_id=f"{T0 + n:013d}-v{n}",
        version="a" * 40,
        image=f"registry.example/shop-web:v{n}",
        colour=Colour.GREEN,
        phase=Phase.DEPLOYING,
        sequence=T0 + n,
        source="github",
        repository="acme/shop",
        branch="main",
        commit="a" * 40,
    )


def test_every_phase_change_is_published_once_with_the_rollout_and_its_config(world):
    store: RolloutStore = world["store"]
    rollout = store.accept(candidate(1), commit="a" * 40, previous=None)
    rollout = store.update(rollout, {"digest": "sha256:" + "c" * 64, "preview_pushed": True})
    for phase in (Phase.GATING, Phase.PROMOTING):
        rollout = store.move(rollout, phase, by=Actor.GATE, why=f"to {phase}")
    sets = {"config_version": "v-77", "config_sha256": SHA, "ssm_commands": {"i-0a": "cmd-1"}}
    for phase in (Phase.WATCHING, Phase.LIVE, Phase.SETTLED):
        rollout = store.move(rollout, phase, by=Actor.GATE, why=f"to {phase}", sets=sets)
        sets = {}
    answer = handle(world["tail"].event(), world["runtime"])
    assert answer == {"batchItemFailures": []}
    events = heard(world)
    for event in events:
        validate(event)
    details = sorted((e["detail"] for e in events), key=lambda d: d["id"])
    assert [(d["from"], d["to"]) for d in details] == [
        (None, "deploying"),
        ("deploying", "gating"),
        ("gating", "promoting"),
        ("promoting", "watching"),
        ("watching", "live"),
        ("live", "settled"),
    ]
    assert {d["repository"] for d in details} == {"acme/shop"}
    assert details[1]["digest"] == "sha256:" + "c" * 64
    assert [d.get("config_version") for d in details] == [None, None, None, "v-77", "v-77", "v-77"]
    assert len({d["id"] for d in details}) == 6
    # Read again: nothing new was written, nothing is published again.
    assert handle(world["tail"].event(), world["runtime"]) == {"batchItemFailures": []}
    assert heard(world) == []


def test_a_superseded_rollout_and_its_successor_are_both_heard(world):
    store: RolloutStore = world["store"]
    store.accept(candidate(1), commit="a" * 40, previous=None)
    store.accept(candidate(2), commit="b" * 40, previous=None)
    handle(world["tail"].event(), world["runtime"])
    moves = {(e["detail"]["rollout_id"], e["detail"]["to"]) for e in heard(world)}
    assert moves == {
        (candidate(1).rollout_id, "deploying"),
        (candidate(1).rollout_id, "superseded"),
        (candidate(2).rollout_id, "deploying"),
    }


class _Reload:
    status = "incomplete"
    version_id = "v-9"
    sha256 = SHA
    degraded = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": {
                "i-0a": {"outcome": "Success", "detail": "", "command_id": "c1"},
                "i-0b": {"outcome": "TimedOut", "detail": "no answer", "command_id": "c2"},
            }
        }


def test_fleet_reloads_and_night_runs_are_published(world, aws):
    ddb = aws.client("dynamodb")
    FleetLog(ddb, resources.TABLE, clock=lambda: T0 / 1000).record(_Reload(), "promote shop")
    night = NightStore(ddb, resources.TABLE, "workers")
    report = {"action": "shrink", "status": "shrunk", "removed": ["n2"], "plan": {"big": 1}}
    night.record_run(report | {"seconds": 41.5}, T0 / 1000)
    night.save(night.load()._replace(draining_until=T0))  # the state item: no event
    assert handle(world["tail"].event(), world["runtime"]) == {"batchItemFailures": []}
    events = {e["detail-type"]: e for e in heard(world)}
    assert set(events) == {"Greenlight Edge Push", "Greenlight Night"}
    for event in events.values():
        validate(event)
    edge = events["Greenlight Edge Push"]["detail"]
    assert (edge["degraded"], edge["config_version"]) == (True, "v-9")
    assert [i["outcome"] for i in edge["instances"]] == ["Success", "TimedOut"]
    assert events["Greenlight Night"]["detail"]["removed"] == ["n2"]


def test_a_record_eventbridge_does_not_take_is_retried_and_then_published(world, aws):
    store: RolloutStore = world["store"]
    store.accept(candidate(1), commit="a" * 40, previous=None)
    event = world["tail"].event()
    missing = AnnounceRuntime(events=aws.client("events"), bus="greenlight-missing")
    answer = handle(event, missing)
    announcing = [
        r["dynamodb"]["SequenceNumber"]
        for r in event["Records"]
        if r["dynamodb"]["Keys"]["sk"]["S"].startswith("rollout#")
    ]
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == announcing
    assert heard(world) == []
    # The event source hands the same records again: now they are published.
    assert handle(event, world["runtime"]) == {"batchItemFailures": []}
    assert [e["detail"]["to"] for e in heard(world)] == ["deploying"]


def test_entries_eventbridge_refuses_fail_the_record(world):
    store: RolloutStore = world["store"]
    store.accept(candidate(1), commit="a" * 40, previous=None)
    client = boto3.client("events")
    stubber = Stubber(client)
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}]}
    stubber.add_response("put_events", refused)
    with stubber:
        answer = handle(world["tail"].event(), AnnounceRuntime(events=client, bus="default"))
    assert len(answer["batchItemFailures"]) == 1
    stubber.assert_no_pending_responses()


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"CloudWatchMetrics"' in line]


@pytest.mark.filterwarnings("ignore:This metric doesn't meet the requirements")
def test_metrics_are_written_as_emf_once_the_events_are_on_the_bus(world, aws, capsys):
    store: RolloutStore = world["store"]
    store.accept(candidate(1), commit="a" * 40, previous=None)
    event = world["tail"].event()
    missing = AnnounceRuntime(events=aws.client("events"), bus="greenlight-missing")
    assert handle(event, missing)["batchItemFailures"]
    assert _emf(capsys.readouterr().out) == []  # not announced: not counted either
    runtime = AnnounceRuntime(events=aws.client("events"), bus="default", service="stack-a")
    assert handle(event, runtime) == {"batchItemFailures": []}
    (doc,) = _emf(capsys.readouterr().out)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Greenlight"
    assert (doc["app"], doc["service"], doc["RolloutsStarted"]) == ("shop", "stack-a", [1])
    assert doc["_aws"]["Timestamp"] == T0
