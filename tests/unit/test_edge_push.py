"""The edge push, bounded by its caller's deadline: the real botocore Lambda client
(``aws.Clients.lambda_within``) against a local HTTP endpoint standing in for Lambda's Invoke
API (the network edge), which answers slowly, throttles or answers at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from greenlight.aws import Clients
from greenlight.deadline import Deadline
from greenlight.edgepush import (
    ANSWER_SECONDS,
    MIN_PUSH_SECONDS,
    LambdaEdgePush,
    PushStatus,
    taken,
    unsettled,
)


class InvokeApi(ThreadingHTTPServer):
    """Lambda's Invoke on loopback: ``delay`` seconds, then ``status`` with ``body``."""

    daemon_threads = True

    def __init__(self) -> None:
        self.delay = 0.0
        self.status = 200
        self.body: dict[str, Any] = {"status": "unchanged", "fleet": {"status": "applied"}}
        self.headers_out: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.events.append(json.loads(self.rfile.read(length) or b"{}"))
                time.sleep(outer.delay)
                data = json.dumps(outer.body).encode()
                self.send_response(outer.status)
                for name, value in outer.headers_out.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def api(monkeypatch) -> Iterator[InvokeApi]:
    server = InvokeApi()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    yield server
    server.shutdown()


def push(min_seconds: float = 0.5) -> LambdaEdgePush:
    clients = Clients(boto3.session.Session(region_name="eu-west-1"))
    return LambdaEdgePush(clients.lambda_within, "stack-haproxy", min_seconds=min_seconds)


def test_a_push_waits_no_longer_than_its_caller_has_and_is_not_retried(api):
    api.delay = 8.0  # the function is still at work when the caller must give up
    started = time.monotonic()
    answer = push()("promote shop 1", deadline=Deadline.within(2.0))
    took = time.monotonic() - started
    assert answer["status"] == PushStatus.TIMED_OUT and unsettled(answer)
    assert taken(answer) == (False, "timed-out")
    assert took < 4.0  # the read timeout was what remained (2 s), not 310 s
    assert len(api.events) == 1  # a timed-out RequestResponse invoke is not sent again


def test_the_function_is_told_when_its_caller_gives_up(api):
    before = time.time()
    answer = push()("candidate shop 1", deadline=Deadline.within(120), prospect={"a": "b"})
    assert taken(answer) == (True, "applied")
    (event,) = api.events
    assert event["action"] == "push" and event["prospect"] == {"a": "b"}
    expected = (before + 120 - ANSWER_SECONDS) * 1000
    assert expected - 1000 <= event["deadline_ms"] <= expected + 1000


def test_a_throttled_push_answers_throttled_at_once(api):
    api.status = 429
    api.body = {"Type": "User", "message": "Rate exceeded"}
    api.headers_out = {"x-amzn-ErrorType": "TooManyRequestsException"}
    answer = push()("retire shop 1", deadline=Deadline.within(30))
    assert answer["status"] == PushStatus.THROTTLED and unsettled(answer)
    assert len(api.events) == 1  # no retries, no backoff sleeps


def test_a_push_with_too_little_time_left_is_not_started(api):
    answer = push(min_seconds=MIN_PUSH_SECONDS)(
        "promote shop 1", deadline=Deadline.within(MIN_PUSH_SECONDS - 1)
    )
    assert answer["status"] == PushStatus.TOO_LATE and "not started" in answer["error"]
    assert api.events == []


def test_what_counts_as_taken():
    assert taken({"status": "published", "fleet": {"status": "applied"}}) == (True, "applied")
    assert taken({"status": "unchanged"}) == (True, "no-fleet")
    assert taken({"status": "published", "fleet": {"status": "incomplete"}})[0] is False
    for status in PushStatus:
        assert taken({"status": status.value})[0] is False, status
        settled = status in (PushStatus.REJECTED, PushStatus.PINNED)  # retrying does not help
        assert unsettled({"status": status.value}) is not settled


def test_a_promotion_push_names_the_candidate_and_a_not_up_answer_is_not_taken(api):
    from greenlight.edgepush import not_up_reason

    down = "shop-green: 1 of 2 servers not UP (shop-green/n2: DOWN, L4CON)"
    api.body = {
        "status": "not-published",
        "fleet": {
            "status": "not-up",
            "checked": {
                "up": False,
                "instances": {
                    "i-0b": {"outcome": "Success", "detail": "up"},
                    "i-0a": {"outcome": "Failed", "detail": down},
                    "i-0c": {"outcome": "Incomplete", "detail": "still running at the deadline"},
                },
            },
        },
    }
    promote = {"app": "shop", "colour": "green"}
    answer = push()("promote shop 1", deadline=Deadline.within(120), promote=promote)
    (event,) = api.events
    assert event["promote"] == promote and "prospect" not in event
    assert taken(answer) == (False, "not-up") and not unsettled(answer)
    # No ``not_up`` field (an older function): the backends read from the reasons; i-0c's
    # names none, so it was not confirmed UP for any backend (held by shop-green too).
    assert not_up_reason(answer, "shop-green") == (
        f"shop-green not UP on i-0a: {down};"
        " shop-green not UP on i-0c: still running at the deadline"
    )
    assert not_up_reason({"status": "published", "fleet": {"status": "incomplete"}}, "g") == ""


def test_a_not_up_answer_names_its_backends_and_holds_only_those():
    from greenlight.edgepush import held_by, not_up, not_up_reason

    other = "cart-blue: 2 of 2 servers not UP (cart-blue/n1: DOWN, cart-blue/n2: MAINT)"
    answer = {
        "status": "not-published",
        "fleet": {
            "status": "not-up",
            "not_up": {"i-0a": ["cart-blue"]},  # the structured field (docs/edge.md)
            "checked": {
                "backends": ["cart-blue", "shop-green"],
                "instances": {
                    "i-0a": {"outcome": "Failed", "detail": other},
                    "i-0b": {"outcome": "Success", "detail": "up"},
                },
            },
        },
    }
    assert not_up(answer) == {"i-0a": ["cart-blue"]}
    assert held_by(answer, "cart-blue") and not held_by(answer, "shop-green")
    assert not_up_reason(answer, "shop-green") == "shop-green not UP on every instance"
    assert not_up_reason(answer) == f"cart-blue not UP on i-0a: {other}"
    # Without the field, the same from the reason; a reason naming no backend: all of them.
    del answer["fleet"]["not_up"]
    assert not_up(answer) == {"i-0a": ["cart-blue"]}
    answer["fleet"]["checked"]["instances"]["i-0b"] = {"outcome": "TimedOut", "detail": "late"}
    assert not_up(answer)["i-0b"] == ["cart-blue", "shop-green"]
    assert held_by(answer, "shop-green")
    assert not_up({"status": "published", "fleet": {"status": "applied"}}) == {}
    assert not held_by({"status": "busy"}, "shop-green")


def test_a_revert_push_names_the_colour_going_back(api):
    api.body = {"status": "published", "fleet": {"status": "applied"}}
    restore = {"app": "shop", "colour": "blue"}
    push()("revert shop 1", deadline=Deadline.within(120), restore=restore)
    (event,) = api.events
    assert event["restore"] == restore and "promote" not in event
