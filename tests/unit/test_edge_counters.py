"""The counters action's pure parts (the request, the backends, one instance's output) and the
gate's port to it (``edgepush.LambdaEdgeCounters``, against a local Invoke API)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from greenlight.colour import Colour
from greenlight.deadline import Deadline
from greenlight.edge.counters import CountersRequest, check_fields, parse
from greenlight.edge.entry import action_of
from greenlight.edgepush import (
    ANSWER_SECONDS,
    MIN_COUNTERS_SECONDS,
    LambdaEdgeCounters,
    PushStatus,
)
from greenlight.errors import EventError
from tests.unit.test_edge_push import api  # noqa: F401 - the fixture

APPS = {"shop", "blog"}


def request(**event: Any) -> CountersRequest:
    return CountersRequest.of({"action": "counters"} | event, APPS)


def test_a_request_names_each_colour_s_own_backend_and_its_live_route():
    asked = request(app="shop", colours=["green", "blue"])
    assert asked == CountersRequest("shop", (Colour.GREEN, Colour.BLUE))
    assert asked.backends() == ["shop-green", "shop-live-green", "shop-blue", "shop-live-blue"]


@pytest.mark.parametrize(
    ("event", "why"),
    [
        ({"colours": ["green"]}, "app: expected the name of an app, got None"),
        ({"app": 7, "colours": ["green"]}, "app: expected the name of an app, got 7"),
        ({"app": "cart", "colours": ["green"]}, "app: no app named 'cart' in the apps file"),
        ({"app": "shop"}, 'colours: expected a list of "blue" and/or "green", got None'),
        ({"app": "shop", "colours": []}, "colours: expected a list"),
        ({"app": "shop", "colours": "green"}, "colours: expected a list"),
        ({"app": "shop", "colours": ["red"]}, "colours: expected blue or green, got 'red'"),
        ({"app": "shop", "colours": [["green"]]}, "colours: expected blue or green, got"),
        ({"app": "shop", "colours": ["green", "green"]}, "colours: green is named twice"),
    ],
)
def test_a_bad_request_is_refused_naming_its_field(event, why):
    with pytest.raises(EventError) as refused:
        request(**event)
    assert str(refused.value).startswith(why)


def test_the_counters_fields_belong_to_the_counters_action_only():
    assert action_of({"action": "counters", "app": "shop", "colours": ["blue"]}) == (
        "counters",
        True,  # read-only: as a dry run, it takes no lock
        "manual",
    )
    with pytest.raises(EventError, match=r"^app: only the counters action takes app"):
        action_of({"action": "push", "app": "shop"})
    with pytest.raises(EventError, match=r"^colours: only the counters action takes colours"):
        check_fields({"action": "render", "colours": ["blue"]})


def test_an_instance_s_counters_are_its_last_json_line():
    row = {"backend": "shop-green", "server": "BACKEND", "requests": 3}
    out = {"status": "ok", "worker": 41, "uptime_seconds": 9, "rows": [row], "missing": []}
    assert parse(f"noise\n{json.dumps(out)}\n") == {
        "worker": 41,
        "uptime_seconds": 9,
        "rows": [row],
        "missing": [],
    }
    failed = {"status": "failed", "reason": "no admin socket at /run/haproxy/admin.sock"}
    with pytest.raises(ValueError, match=r"^no counters: no admin socket at /run/haproxy"):
        parse(json.dumps(failed))
    with pytest.raises(ValueError, match=r"^no counters in the output"):
        parse('{"status": "ok", "worker": 1, "rows": [')  # cut short
    with pytest.raises(ValueError, match=r"^no output$"):
        parse("")


def counters(min_seconds: float = 0.5) -> LambdaEdgeCounters:
    import boto3

    from greenlight.aws import Clients

    clients = Clients(boto3.session.Session(region_name="eu-west-1"))
    return LambdaEdgeCounters(clients.lambda_within, "stack-haproxy", min_seconds=min_seconds)


def test_the_gate_reads_counters_through_the_function_within_its_deadline(api):  # noqa: F811
    api.body = {"status": "counters", "instances": {}, "errors": {}}
    before = time.time()
    answer = counters()("shop", ["green", "blue"], deadline=Deadline.within(30))
    assert answer == api.body
    (event,) = api.events
    assert {k: v for k, v in event.items() if k != "deadline_ms"} == {
        "action": "counters",
        "app": "shop",
        "colours": ["green", "blue"],
    }
    expected = (before + 30 - ANSWER_SECONDS) * 1000
    assert expected - 1000 <= event["deadline_ms"] <= expected + 1000


def test_counters_with_too_little_time_left_are_not_read(api):  # noqa: F811
    answer = counters(MIN_COUNTERS_SECONDS)(
        "shop", ["green"], deadline=Deadline.within(MIN_COUNTERS_SECONDS - 1)
    )
    assert answer["status"] == PushStatus.TOO_LATE
    assert answer["error"].endswith("the counters action needs 10 s: not started")
    assert api.events == []


def test_counters_the_function_gave_no_answer_to_time_out(api):  # noqa: F811
    api.delay = 5.0
    answer = counters()("shop", ["green"], deadline=Deadline.within(1.5))
    assert answer["status"] == PushStatus.TIMED_OUT
    assert len(api.events) == 1  # not sent again


# ------------------------------------------------------------------ an unreachable instance
class _Ssm:
    """SSM at the edge: the stats document answers at once on ``answering``; on any other
    instance it stays in progress (an unreachable instance, a stopped agent)."""

    def __init__(self, answering: set[str]) -> None:
        self.answering = answering
        self.sent: list[dict[str, Any]] = []

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"Command": {"CommandId": "11111111-1111-4111-8111-111111111111"}}

    def get_command_invocation(self, *, CommandId: str, InstanceId: str) -> dict[str, Any]:
        if InstanceId not in self.answering:
            return {"Status": "InProgress", "StatusDetails": "InProgress"}
        out = {"status": "ok", "worker": 7, "uptime_seconds": 5, "rows": [], "missing": []}
        return {
            "Status": "Success",
            "StatusDetails": "Success",
            "ResponseCode": 0,
            "StandardOutputContent": json.dumps(out) + "\n",
        }


class _Ec2:
    def __init__(self, instances: list[str]) -> None:
        self.instances = instances

    def get_paginator(self, name: str) -> Any:
        assert name == "describe_instances"
        found = {"Reservations": [{"Instances": [{"InstanceId": i} for i in self.instances]}]}
        return type("P", (), {"paginate": lambda _self, **kw: [found]})()


def test_an_instance_that_does_not_answer_is_named_and_not_waited_for():
    from greenlight.edge.counters import INSTANCE_WAIT_SECONDS, read_counters
    from greenlight.edge.fleet import FleetReloader
    from tests.unit.test_edge_fleet import SETTINGS, Clock

    clock = Clock()
    ssm = _Ssm({"i-1"})
    reloader = FleetReloader(
        ssm,
        _Ec2(["i-1", "i-2"]),
        SETTINGS,
        sleep=clock.sleep,
        clock=clock,  # type: ignore[arg-type]
    )
    answer = read_counters(
        reloader, "stack-Stats", ["shop-green"], Deadline.within(60, clock=clock)
    )
    assert answer["errors"] == {"i-2": "no answer within 8 s"}
    assert answer["instances"] == {
        "i-1": {"worker": 7, "uptime_seconds": 5, "rows": [], "missing": []}
    }
    assert clock.now <= INSTANCE_WAIT_SECONDS  # not the caller's 60 s
    (sent,) = ssm.sent
    assert sent["InstanceIds"] == ["i-1", "i-2"]
    # A caller with less time left than that: its own deadline, less the answer's margin.
    clock.now = 0.0
    short = read_counters(reloader, "stack-Stats", ["shop-green"], Deadline.within(4, clock=clock))
    assert short["errors"] == {"i-2": "no answer within 3 s"} and clock.now <= 3.0
    assert INSTANCE_WAIT_SECONDS == 8.0
