"""The notify function against moto (DynamoDB, SNS, SQS, Secrets Manager) and the GitHub API
stand-in on loopback (tools/greenlight_sandbox/github_api.py).

No test waits: the transport's sleeper and wall clock are a fake that records each wait."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from greenlight.aws import Clients
from greenlight.notify.entry import NotifyRuntime, handle
from greenlight.notify.rest import Transport
from greenlight.settings import NotifySettings
from greenlight.store.notify import NotifyStore
from greenlight_sandbox import resources
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.github_api import App, GitHubStandIn

from ..unit.test_notify_decide import detail as state_change

SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
RID = "1795684502000-v2"
OLD_RID = "1795684400000-v1"
WALL = 1_800_000_000.0
TOKEN = "github_pat_test"  # the stand-in's test token


class FakeTime:
    """The transport's sleeper and wall clock: a wait is recorded and moves the wall clock."""

    def __init__(self) -> None:
        self.now = WALL
        self.slept: list[float] = []

    def wall(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def detail(to: str, index: int, *, rid: str = RID, sha: str = SHA, **changes: Any) -> dict:
    """The state change ``to`` as the ``index``-th move of rollout ``rid`` of commit ``sha``."""
    fields = {
        "id": f"{rid}/{index}",
        "rollout_id": rid,
        "commit": sha,
        "image": f"registry.example/shop-web:sha-{sha[:7]}",
    }
    return state_change(to, **(fields | changes))


def sqs_event(*details: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": json.dumps(
                    {
                        "version": "0",
                        "id": f"e-{i}",
                        "detail-type": "Greenlight Rollout State Change",
                        "source": "greenlight",
                        "account": "123456789012",
                        "time": "2026-11-26T10:15:02Z",
                        "region": resources.REGION,
                        "resources": [],
                        "detail": d,
                    }
                ),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{resources.REGION}:123456789012:notify",
                "awsRegion": resources.REGION,
            }
            for i, d in enumerate(details)
        ]
    }


class World:
    def __init__(self, aws: Any, api: GitHubStandIn, secret: dict[str, Any]) -> None:
        resources.create_tables(aws)
        self.aws, self.api, self.time = aws, api, FakeTime()
        self.sqs = aws.client("sqs")
        sns = aws.client("sns")
        self.topic = sns.create_topic(Name="greenlight-notify")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="heard")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
        secrets = aws.client("secretsmanager")
        self.secret = secrets.create_secret(Name="github", SecretString=json.dumps(secret))["ARN"]
        self.settings = NotifySettings(
            table=resources.TABLE,
            topic_arn=self.topic,
            github_secret=self.secret,
            github_api_url=api.url,
            environment="production",
        )
        self.runtime = self.build()
        self.store = NotifyStore(aws.client("dynamodb"), resources.TABLE)

    def build(self, **changes: Any) -> NotifyRuntime:
        settings = NotifySettings(**{**self.settings.__dict__, **changes})
        transport = Transport(sleep=self.time.sleep, wall=self.time.wall)
        return NotifyRuntime.build(settings, Clients(session=self.aws), transport)

    def run(self, *details: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        return handle(sqs_event(*details), self.runtime, LambdaContext(timeout_seconds=timeout))

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for _ in range(10):
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
            if not got.get("Messages"):
                break
            for m in got["Messages"]:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return out

    def posts(self, kind: str) -> list[Any]:
        return [r for r in self.api.requests() if r.method == "POST" and r.path.endswith(kind)]


@pytest.fixture
def api() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(tokens={TOKEN}) as standin:
        yield standin


@pytest.fixture
def world(aws: Any, api: GitHubStandIn) -> World:
    return World(aws, api, {"token": TOKEN})


def test_a_rollout_from_accepted_to_live_sets_the_commit_status_and_its_deployment(world):
    answer = world.run(
        detail("deploying", 0), detail("gating", 1), detail("promoting", 2), detail("live", 4)
    )
    assert answer == {"batchItemFailures": []}
    statuses = world.api.status_history("acme/shop", SHA)
    assert [(s["context"], s["state"]) for s in statuses] == [
        ("greenlight/shop", "pending")
    ] * 3 + [("greenlight/shop", "success")]
    assert statuses[-1]["description"] == "Live"
    [deployment] = world.api.deployments("acme/shop")
    assert deployment["environment"] == "production/shop"
    assert deployment["sha"] == SHA
    assert [s["state"] for s in deployment["statuses"]] == [
        "queued", "in_progress", "in_progress", "success",
    ]  # fmt: skip
    # the documented headers on every request
    for r in world.api.requests():
        assert r.headers["accept"] == "application/vnd.github+json"
        assert r.headers["x-github-api-version"] == "2022-11-28"
        assert r.headers["authorization"] == f"Bearer {TOKEN}"
        assert r.headers["user-agent"]
    record = world.store.load("shop", RID)
    assert record is not None
    assert record.handled == {f"{RID}/{i}" for i in (0, 1, 2, 4)}
    assert record.deployment_id == deployment["id"]
    assert record.applied == 4
    assert ("github-status", "success") in {(s.target, s.state) for s in record.sent}
    # SNS: one message per phase change, the structured event in it
    heard = world.messages()
    assert len(heard) == 4
    assert heard[-1]["Subject"] == f"Greenlight: shop {SHA[:7]} live"
    assert f'"id": "{RID}/4"' in heard[-1]["Message"]
    assert heard[-1]["MessageAttributes"]["phase"]["Value"] == "live"


def test_a_repeat_delivery_sends_nothing_twice(world):
    world.run(detail("deploying", 0), detail("gating", 1))
    before = len(world.api.requests())
    world.messages()
    assert world.run(detail("deploying", 0), detail("gating", 1)) == {"batchItemFailures": []}
    assert len(world.api.requests()) == before
    assert world.messages() == []
    assert len(world.api.deployments("acme/shop")) == 1


def test_out_of_order_events_never_take_a_status_back(world):
    world.run(detail("live", 4))
    world.run(detail("watching", 3), detail("deploying", 0))
    assert world.api.statuses("acme/shop", SHA)["greenlight/shop"]["state"] == "success"
    assert [s["state"] for s in world.api.status_history("acme/shop", SHA)] == ["success"]
    [deployment] = world.api.deployments("acme/shop")  # made once, on the first event seen
    assert [s["state"] for s in deployment["statuses"]] == ["success"]
    record = world.store.load("shop", RID)
    assert record is not None and record.handled == {f"{RID}/{i}" for i in (0, 3, 4)}
    assert len(world.messages()) == 3  # SNS still hears every change


@pytest.mark.parametrize(
    ("to", "state", "words"),
    [
        ("rolled_back", "failure", "Rolled back"),
        ("failed", "failure", "Failed"),
        ("superseded", "error", "Superseded"),
        ("aborted", "error", "Aborted"),
    ],
)
def test_a_rollout_that_ends_without_going_live_says_why(world, to, state, words):
    world.run(detail("deploying", 0), detail(to, 1, reason="readiness never reached"))
    status = world.api.statuses("acme/shop", SHA)["greenlight/shop"]
    assert (status["state"], status["description"]) == (
        state,
        f"{words}: readiness never reached",
    )
    [deployment] = world.api.deployments("acme/shop")
    assert [s["state"] for s in deployment["statuses"]] == ["queued", state]


def test_going_live_marks_the_deployment_it_replaced_inactive(world):
    world.run(
        detail("deploying", 0, rid=OLD_RID, sha=OLD_SHA),
        detail("live", 1, rid=OLD_RID, sha=OLD_SHA),
    )
    world.run(detail("deploying", 0), detail("watching", 1))
    old, new = world.api.deployments("acme/shop")
    assert [s["state"] for s in old["statuses"]] == ["queued", "success"]
    world.run(detail("live", 2))
    old, new = world.api.deployments("acme/shop")
    assert [s["state"] for s in old["statuses"]] == ["queued", "success", "inactive"]
    assert old["statuses"][-1]["description"] == f"Replaced by rollout {RID}"
    assert [s["state"] for s in new["statuses"]] == ["queued", "in_progress", "success"]
    older = world.store.load("shop", OLD_RID)
    assert older is not None
    assert ("github-deployment", "inactive") in {(s.target, s.state) for s in older.sent}
    # a later live (a repeat of another rollout going live) does not mark it twice
    world.run(detail("settled", 3))
    assert len(world.api.deployments("acme/shop")[0]["statuses"]) == 3


def test_a_rate_limit_is_waited_out_until_its_reset(world):
    world.api.rate_limit_next(1, reset_at=int(WALL) + 30)
    assert world.run(detail("deploying", 0)) == {"batchItemFailures": []}
    assert world.time.slept == [31.0]  # until the reset, and a second for the clocks
    assert world.api.statuses("acme/shop", SHA)["greenlight/shop"]["state"] == "pending"


def test_retry_after_and_server_errors_are_retried(world):
    world.api.fail_next(1, 429, {"retry-after": "7"})
    world.api.fail_next(2, 502)
    assert world.run(detail("deploying", 0)) == {"batchItemFailures": []}
    assert world.time.slept == [7.0, 2.0, 4.0]
    assert world.api.statuses("acme/shop", SHA)["greenlight/shop"]["state"] == "pending"


def test_a_delivery_past_the_deadline_fails_its_record_and_nothing_is_handled(world):
    world.api.rate_limit_next(1, reset_at=int(WALL) + 3600)
    other = detail("deploying", 0, rid=OLD_RID, sha=OLD_SHA)
    answer = world.run(detail("deploying", 0), other, timeout=20)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}  # m-1 was made
    assert world.time.slept == []  # an hour is past the deadline: not waited for
    record = world.store.load("shop", RID)
    assert record is not None
    assert record.handled == frozenset()
    failed = [s for s in record.sent if s.state == "failed"]
    assert [s.target for s in failed] == ["github-status"]
    assert "rate limit" in failed[0].detail
    # the other deliveries were made and are not made again when SQS redelivers
    assert {(s.target, s.state) for s in record.sent} >= {
        ("github-deployment", "queued"),
        ("sns", "posted"),
    }
    world.messages()
    assert world.run(detail("deploying", 0)) == {"batchItemFailures": []}
    assert world.messages() == []
    assert [r.body["ref"] for r in world.posts("/deployments")] == [SHA, OLD_SHA]
    assert world.api.statuses("acme/shop", SHA)["greenlight/shop"]["state"] == "pending"
    record = world.store.load("shop", RID)
    assert record is not None and record.handled == {f"{RID}/0"}


def test_a_refusal_fails_the_record_without_retrying(world):
    world.api.fail_next(1, 404)
    answer = world.run(detail("deploying", 0), detail("deploying", 0, rid=OLD_RID, sha=OLD_SHA))
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert world.time.slept == []
    # a batch whose every record fails reports every record (not raised): SQS retries it all
    world.api.fail_next(1, 404)
    assert world.run(detail("gating", 1)) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}


def test_a_manual_rollout_of_an_image_reaches_sns_only(world):
    assert world.run(detail("live", 1, source="manual", commit=None)) == {"batchItemFailures": []}
    assert world.api.requests() == []
    assert len(world.messages()) == 1


def test_without_a_github_secret_nothing_goes_to_github(world):
    world.runtime = world.build(github_secret="")
    world.run(detail("live", 1))
    assert world.api.requests() == []


def test_app_auth_exchanges_a_jwt_for_an_installation_token_and_keeps_it(aws):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = App(app_id="12345", installation_id=678, public_key=public)
    with GitHubStandIn(tokens=set(), app=app) as api:
        world = World(aws, api, {"app_id": 12345, "installation_id": 678, "private_key": private})
        api.clock = world.time.wall  # the stand-in checks iat and exp on the same clock
        assert world.run(detail("deploying", 0), detail("gating", 1)) == {"batchItemFailures": []}
        exchanges = world.posts("/access_tokens")
        assert [r.path for r in exchanges] == ["/app/installations/678/access_tokens"]
        token = exchanges[0]
        assert token.headers["authorization"].startswith("Bearer ey")
        used = {r.headers["authorization"] for r in api.requests() if r.path.startswith("/repos/")}
        assert len(used) == 1 and next(iter(used)).startswith("Bearer ghs_")
        assert api.statuses("acme/shop", SHA)["greenlight/shop"]["state"] == "pending"
        # 59 minutes on, the token is a minute from its expiry: a new one is made
        world.time.now += 59 * 60 + 1
        assert world.run(detail("promoting", 2)) == {"batchItemFailures": []}
        assert len(world.posts("/access_tokens")) == 2
        import jwt as pyjwt

        claims = pyjwt.decode(
            token.headers["authorization"].split()[1], public, algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False},
        )  # fmt: skip
        assert claims["exp"] - claims["iat"] <= 600
        assert claims["iss"] == "12345"


def test_a_codecommit_rollout_gets_a_comment_when_it_ends(world):
    # moto 5 does not implement PostCommentForComparedCommit: botocore's Stubber stands in and
    # checks the request against the CodeCommit service model (names, types, required ones).
    client = boto3.client("codecommit", region_name=resources.REGION)
    world.runtime.codecommit = client
    with Stubber(client) as stub:
        stub.add_response(
            "post_comment_for_compared_commit",
            {"repositoryName": "shop-repo", "afterCommitId": SHA},
            {
                "repositoryName": "shop-repo",
                "afterCommitId": SHA,
                "content": ANY,
                "clientRequestToken": ANY,
            },
        )
        cc = {"source": "codecommit", "repository": "shop-repo"}
        answer = world.run(
            detail("deploying", 0, **cc),
            detail("gating", 1, **cc),
            detail("rolled_back", 2, reason="health check failed", **cc),
        )
        stub.assert_no_pending_responses()
    assert answer == {"batchItemFailures": []}
    assert world.api.requests() == []
    record = world.store.load("shop", RID)
    assert record is not None
    assert [s.target for s in record.sent if s.target == "codecommit-comment"] == [
        "codecommit-comment"
    ]


class _SlackHook(BaseHTTPRequestHandler):
    heard: list[Any] = []

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).heard.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_slack_hears_the_moves_people_act_on(world):
    _SlackHook.heard = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackHook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        slack = world.aws.client("secretsmanager").create_secret(
            Name="slack", SecretString=f"http://{host!s}:{port}/services/T0/B0/x"
        )["ARN"]
        world.runtime = world.build(slack_secret=slack)
        world.run(detail("deploying", 0), detail("gating", 1), detail("live", 2))
    finally:
        server.shutdown()
        server.server_close()
    assert [m["text"] for m in _SlackHook.heard] == [
        f"Greenlight: shop {SHA[:7]} accepted, deploying (rollout {RID})",
        f"Greenlight: shop {SHA[:7]} live (rollout {RID})",
    ]
