"""The health gate end to end in the stand-in: the real rollout and haproxy handlers, moto, and
an HTTPS endpoint standing in for the HAProxy fleet's entry point (the network edge: which host
answers what is up to each test). The fleet's own behaviour under load is tested with the real
HAProxy in test_fleet_apply.py.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from greenlight.deadline import Deadline
from greenlight.edge.delta import structural_changes
from greenlight.edge.publish import ConfigStore
from greenlight.gate.entry import GateRuntime, handle, run_check
from greenlight.gate.execute import Check
from greenlight.lifecycle import Actor, Phase
from greenlight.rollout.entry import RolloutRuntime
from greenlight.settings import GateSettings, RolloutSettings
from greenlight.store.rollouts import RolloutStore
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.kube.kinds import kind_named
from greenlight_sandbox.render import self_signed
from tests.conftest import load_event, node_port_service, own_env, queue_messages

SHOP_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:3f9d2a41c0b7"


class EdgeEndpoint(ThreadingHTTPServer):
    """TLS on loopback; answers each host's health path with the status the test sets."""

    daemon_threads = True

    def __init__(self, certfile: Path) -> None:
        self.status: dict[str, int] = {}
        self.requests: list[str] = []

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = self.headers.get("Host", "")
                outer.requests.append(host)
                code = outer.status.get(host, 404)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def edge_endpoint(tmp_path) -> Iterator[EdgeEndpoint]:
    pem = tmp_path / "edge.pem"
    self_signed(pem, ["shop.sandbox.test", "preview.shop.sandbox.test"])
    server = EdgeEndpoint(pem)
    yield server
    server.shutdown()


class Clock:
    """Real time plus an offset the test can move (watch and warm windows, deadlines)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@pytest.fixture
def gate(aws_env, edge_endpoint, monkeypatch):
    monkeypatch.setenv("GREENLIGHT_EDGE_ENDPOINT", edge_endpoint.endpoint)
    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    monkeypatch.setenv("GREENLIGHT_EDGE_VERIFY_TLS", "false")
    haproxy = load("haproxy")
    pushes: list[dict[str, Any]] = []

    def edge_push(
        reason: str,
        *,
        deadline: Deadline,
        prospect: dict[str, str] | None = None,
        promote: dict[str, str] | None = None,
        restore: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        # The haproxy handler, within its own deadline (LambdaEdgePush passes the caller's:
        # tests/unit/test_edge_push.py; a check here has the 30 s of a call without context).
        event: dict[str, Any] = {"action": "push", "reason": reason}
        if prospect is not None:
            event["prospect"] = prospect
        if promote is not None:
            event["promote"] = promote
        if restore is not None:
            event["restore"] = restore
        result = haproxy.handler(event, LambdaContext())
        pushes.append(result)
        return result

    runtime = GateRuntime.build(GateSettings.from_env(own_env("gate")), edge_push=edge_push)
    clock = Clock()
    runtime.deps.clock_ms = clock
    runtime.pushes = pushes  # type: ignore[attr-defined]
    runtime.clock = clock  # type: ignore[attr-defined]
    return runtime


@pytest.fixture
def rollout(gate):
    """The rollout function, pushing the edge in process as the gate does."""
    module = load("rollout")
    module.runtime.supply(
        RolloutRuntime.build(
            RolloutSettings.from_env(own_env("rollout")), edge_push=gate.deps.edge_push
        )
    )
    return lambda event, context=None: module.handler(event, context or LambdaContext())


def drive(runtime, rollout_id, *, until, app="shop", steps=80, pause=0.1):
    """Follow the chain of checks (as the gate queue would) until ``until(result)``."""
    check = Check(app, rollout_id)
    results = []
    for _ in range(steps):
        result = run_check(check, runtime, None)
        results.append(result)
        if until(result) or result.next_check is None:
            return results
        check = result.next_check
        time.sleep(pause)
    raise AssertionError(f"gate did not get there: {[r.to_dict() for r in results[-5:]]}")


def store(env) -> RolloutStore:
    return RolloutStore(boto3.client("dynamodb"), env["GREENLIGHT_TABLE"])


def live_map(env) -> str:
    files = ConfigStore(boto3.client("s3"), env["GREENLIGHT_CONFIG_BUCKET"]).files()
    return files["hosts.map"].decode()


def replicas(kube, name):
    dep = kube.cluster.find("deployments", "shop", name)
    return None if dep is None else dep["spec"]["replicas"]


NEWER_COMMIT = "4a0e3b52d1c8f6e7b9a0d3c4e5f6071829304b5c"


def newer_shop(rollout):
    """A newer shop commit, its image pushed, rolled out by a manual invoke."""
    from greenlight_sandbox import resources

    resources.push_image(boto3.session.Session(), "shop-web", NEWER_COMMIT[:12])
    event = load_event("codecommit-push.json")  # the next push, a minute later
    event["id"] = "7d2e8b63-2a7b-4d5c-9f1e-9c2d2c8f3e21"
    event["time"] = "2026-11-26T09:16:02Z"
    event["detail"]["oldCommitId"] = event["detail"]["commitId"]
    event["detail"]["commitId"] = NEWER_COMMIT
    result = rollout(event)
    assert result["status"] == "started", result
    return result


def push_with_no_room(kube, rollout, tag):
    """A manual rollout of ``shop-web:<tag>`` (its image pushed) while every node is cordoned:
    it fails at the capacity check, before it writes anything."""
    from greenlight_sandbox import resources

    with kube.cluster.lock:
        for node in kube.cluster.objects["nodes"].values():
            node["spec"]["unschedulable"] = True
    resources.push_image(boto3.session.Session(), "shop-web", tag)
    event = load_event("manual-rollout.json")
    event["image"] = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:{tag}"
    event.pop("commit", None)
    return rollout(event)


def live_blue(kube):
    """What an earlier promotion leaves: a blue Deployment and its NodePort Service."""
    labels = {"app.kubernetes.io/name": "shop", "greenlight.io/colour": "blue"}
    kube.cluster.create(
        kind_named("deployments"),
        "shop",
        {
            "metadata": {"name": "shop-blue"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "shop-web:previous"}]},
                },
            },
        },
    )
    node_port_service(kube, "shop", "shop-blue", selector=labels)


def green_ready(kube):
    assert kube.wait_for(
        lambda: (
            (kube.cluster.find("deployments", "shop", "shop-green") or {})
            .get("status", {})
            .get("readyReplicas")
            == 2
        )
    )


def start_shop(rollout, edge_endpoint, *, preview=200, live=200):
    edge_endpoint.status.update({"preview.shop.sandbox.test": preview, "shop.sandbox.test": live})
    started = rollout(load_event("codecommit-push.json"))
    assert started["status"] == "started", started
    return started["rollout_id"]


def test_a_healthy_green_is_promoted_watched_and_blue_retired(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: r.status == "promoted")
    assert results[-1].status == "promoted"
    assert edge_endpoint.requests.count("preview.shop.sandbox.test") >= 3  # 3 passes first
    # Before its pods, the rollout pushed the preview route: the gate only pushed to promote.
    assert [p["why"] for p in gate.pushes] == [f"candidate shop {rid}", f"promote shop {rid}"]
    state = store(aws_env).state("shop")
    assert state.live_colour.value == "green" and state.live_image == SHOP_IMAGE
    assert "shop.sandbox.test shop-live-green\n" in live_map(aws_env)  # blue its backup
    assert gate.pushes[-1]["status"] == "published"
    gate.clock.advance(31)  # past the watch window (30 s)
    results = drive(gate, rid, until=lambda r: r.status == "live")
    assert store(aws_env).rollout("shop", rid).phase.value == "live"
    assert results[-1].delay_seconds > 60  # the next look comes with the warm window's end
    swept = handle(load_event("schedule-gate-sweep.json"), gate)
    assert swept["queued"] == [] and swept["moving"] == ["shop"]  # its chain is alive
    gate.clock.advance(601)  # past the warm window: blue goes
    retired = run_check(Check("shop", rid), gate, None)
    assert retired.status == "retired" and replicas(kube, "shop-blue") == 0
    assert store(aws_env).state("shop").backup_colour is None
    assert "shop.sandbox.test shop-green" in live_map(aws_env)  # the backup is gone
    assert replicas(kube, "shop-green") == 2
    assert run_check(Check("shop", rid), gate, None).status == "ended"


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("crashloop", "CrashLoopBackOff"), ("imagepull", "Image"), ("oom", "OOMKilled")],
)
def test_a_failing_candidate_is_rolled_back_and_blue_keeps_serving(
    gate, rollout, kube, aws_env, edge_endpoint, behaviour, reason
):
    kube.set_behaviour(SHOP_IMAGE, behaviour, ready_after=0.2)
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    assert reason in results[-1].detail
    record = store(aws_env).rollout("shop", rid)
    assert record.phase.value == "rolled_back" and reason in record.reason
    assert store(aws_env).state("shop").live_colour.value == "blue"  # untouched
    assert replicas(kube, "shop-green") == 0
    # Only the rollout's push before the pods (the preview route): nothing moved the live hosts.
    assert [p["why"] for p in gate.pushes] == [f"candidate shop {rid}"]
    assert "preview.shop.sandbox.test" not in edge_endpoint.requests  # failed before any check


def test_a_never_ready_candidate_is_rolled_back_at_its_deadline(
    gate, rollout, kube, aws_env, edge_endpoint
):
    kube.set_behaviour(SHOP_IMAGE, "never-ready")
    rid = start_shop(rollout, edge_endpoint)
    first = drive(gate, rid, until=lambda r: True)
    assert first[-1].status == "waiting"
    gate.clock.advance(21)  # ready_deadline_seconds: 20 in the sandbox apps file
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    assert "not ready within 20 s" in results[-1].detail
    assert replicas(kube, "shop-green") == 0


def test_a_failing_health_endpoint_is_rolled_back(gate, rollout, kube, aws_env, edge_endpoint):
    rid = start_shop(rollout, edge_endpoint, preview=503)
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    assert "health check failed 3 times in a row" in results[-1].detail
    assert "HTTP 503" in results[-1].detail
    assert store(aws_env).state("shop").live_colour.value == "blue"


def test_the_preview_route_is_pushed_before_the_candidate_has_pods(
    gate, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    kube.set_behaviour(SHOP_IMAGE, "ready", ready_after=2)
    pods_at_push = []

    def edge_push(reason, **kwargs):
        pods_at_push.append(replicas(kube, "shop-green"))  # None: no Deployment yet
        return gate.deps.edge_push(reason, **kwargs)

    module = load("rollout")
    module.runtime.supply(
        RolloutRuntime.build(RolloutSettings.from_env(own_env("rollout")), edge_push=edge_push)
    )
    edge_endpoint.status.update({"preview.shop.sandbox.test": 200, "shop.sandbox.test": 200})
    rid = module.handler(load_event("codecommit-push.json"), LambdaContext())["rollout_id"]
    assert pods_at_push == [None]
    assert [p["why"] for p in gate.pushes] == [f"candidate shop {rid}"]
    assert store(aws_env).rollout("shop", rid).preview_pushed
    assert "preview.shop.sandbox.test shop-green" in live_map(aws_env)
    files = ConfigStore(boto3.client("s3"), aws_env["GREENLIGHT_CONFIG_BUCKET"]).files()
    green = files["haproxy.cfg"].decode().split("backend shop-green\n", 1)[1]
    assert "downinter 250ms" in green.split("\nbackend ", 1)[0]  # brisk while gated
    drive(gate, rid, until=lambda r: r.status == "promoted", pause=0.3)
    assert len(gate.pushes) == 2  # the gate pushed only to promote
    promoted = ConfigStore(boto3.client("s3"), aws_env["GREENLIGHT_CONFIG_BUCKET"]).files()
    # Green keeps its brisk checks while it is watched: the promotion changed hosts.map only.
    assert structural_changes(files, promoted) == []
    assert promoted["haproxy.cfg"].decode().count("downinter 250ms") == 1


def test_the_gate_pushes_the_preview_route_when_the_rollout_could_not(
    gate, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    kube.set_behaviour(SHOP_IMAGE, "ready", ready_after=2)
    module = load("rollout")
    refused = {"status": "published", "fleet": {"status": "incomplete"}}
    module.runtime.supply(
        RolloutRuntime.build(
            RolloutSettings.from_env(own_env("rollout")),
            edge_push=lambda reason, **kwargs: refused,
        )
    )
    edge_endpoint.status.update({"preview.shop.sandbox.test": 200, "shop.sandbox.test": 200})
    rid = module.handler(load_event("codecommit-push.json"), LambdaContext())["rollout_id"]
    assert not store(aws_env).rollout("shop", rid).preview_pushed
    drive(gate, rid, until=lambda r: True)
    assert store(aws_env).rollout("shop", rid).preview_pushed
    # The gate's first push routes the preview host (a promotion may follow in the same check).
    assert [p["why"] for p in gate.pushes][:1] == [f"preview shop {rid}"]


def test_a_failed_probe_while_haproxy_admits_the_candidate_is_not_counted(
    gate, rollout, kube, aws_env, edge_endpoint
):
    from greenlight import admission as checks

    gate.deps.sleep = gate.clock.advance  # the gate's own waits, on the test's clock
    rid = start_shop(rollout, edge_endpoint, preview=503)
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    assert "health check failed 3 times in a row" in results[-1].detail
    assert store(aws_env).rollout("shop", rid).ready_at is not None
    # Up to one probe every FAST_CHECK_MS within the grace, not counted; then the 3 that were.
    in_grace = int(checks.ADMISSION_GRACE_SECONDS * 1000 / checks.FAST_CHECK_MS)
    assert 3 < edge_endpoint.requests.count("preview.shop.sandbox.test") <= in_grace + 3


def test_a_failure_in_the_watch_window_switches_back_to_blue(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    drive(gate, rid, until=lambda r: r.status == "promoted")
    routes = live_map(aws_env)
    # Live hosts: green, backed up by the warm blue; the preview host: green alone (watched).
    assert "shop.sandbox.test shop-live-green\n" in routes
    assert "preview.shop.sandbox.test shop-green" in routes
    assert store(aws_env).state("shop").backup_colour.value == "blue"
    edge_endpoint.status["preview.shop.sandbox.test"] = 500  # green breaks after promotion
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    assert "failed after promotion" in results[-1].detail
    assert "blue is live again" in results[-1].detail
    assert store(aws_env).state("shop").live_colour.value == "blue"
    assert "shop.sandbox.test shop-blue" in live_map(aws_env)
    assert store(aws_env).state("shop").backup_colour is None
    assert replicas(kube, "shop-green") == 0


def test_a_newer_commit_supersedes_the_rollout_mid_gate(gate, rollout, kube, edge_endpoint):
    rid = start_shop(rollout, edge_endpoint)
    drive(gate, rid, until=lambda r: True)
    result = newer_shop(rollout)
    assert result["rollout_id"] != rid
    stale = run_check(Check("shop", rid), gate, None)
    # The rollout function marked it superseded; its chain of checks stops there.
    assert stale.phase == "superseded" and stale.next_check is None
    fresh = drive(gate, result["rollout_id"], until=lambda r: r.status == "promoted")
    assert fresh[-1].status == "promoted"


def test_a_lambda_killed_between_steps_is_resumed(gate, rollout, kube, aws_env, edge_endpoint):
    rid = start_shop(rollout, edge_endpoint)
    green_ready(kube)
    # Died right after marking the rollout promoting, before anything else.

    gating = store(aws_env).rollout("shop", rid)
    assert store(aws_env).move(gating, Phase.PROMOTING, by=Actor.GATE, why="test: died here")
    swept = handle({"source": "aws.events", "detail-type": "Scheduled Event"}, gate)
    assert swept["queued"] == ["shop"]  # the safety net finds it, under a new chain of checks
    chain = store(aws_env).rollout("shop", rid).chain
    queued = [json.loads(m["Body"]) for m in queue_messages(aws_env["GREENLIGHT_GATE_QUEUE_URL"])]
    assert {"rollout_id": rid, "chain": chain}.items() <= queued[-1].items() and chain
    # The dead Lambda's message, redelivered later, belongs to the old chain: dropped.
    assert run_check(Check("shop", rid), gate, None).status == "ended"
    resumed = run_check(Check("shop", rid, chain=chain), gate, None)
    assert resumed.status == "promoted"
    assert resumed.next_check is not None and resumed.next_check.chain == chain
    assert store(aws_env).state("shop").live_colour.value == "green"


def test_no_promotion_while_the_fleet_is_degraded(gate, rollout, aws_env, edge_endpoint):
    from greenlight.edge.fleet import FleetResult
    from greenlight.store.fleet import FleetLog

    FleetLog(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"]).record(
        FleetResult("incomplete", "v1", "a" * 64), "test"
    )
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: "degraded" in r.detail)
    assert results[-1].status == "waiting"
    # The move alone: the promotion waits in promoting, the live colour not switched.
    assert store(aws_env).rollout("shop", rid).phase is Phase.PROMOTING
    assert store(aws_env).state("shop").live_colour.value == "blue"


def test_the_promotion_decision_is_one_write_and_the_push_follows_at_once(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    calls: list[str] = []
    gate.deps.store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    real_push = gate.deps.edge_push
    before_push: list[str] = []

    def push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("promote"):
            before_push.extend(calls)
        return real_push(reason, **kwargs)

    gate.deps.edge_push = push
    drive(gate, rid, until=lambda r: r.status == "promoted")
    # The move, what was live and the live colour: one transaction, then the push at once.
    assert before_push[-2:] == ["GetItem", "TransactWriteItems"], before_push
    record = store(aws_env).rollout("shop", rid)
    moves = store(aws_env).client.get_item(
        TableName=aws_env["GREENLIGHT_TABLE"],
        Key={"pk": {"S": "app#shop"}, "sk": {"S": f"rollout#{rid}"}},
    )["Item"]["history"]["L"]
    promoting = next(m["M"] for m in moves if m["M"]["phase"]["S"] == "promoting")
    assert record.previous_colour is not None and record.previous_colour.value == "blue"
    assert int(promoting["at"]["N"]) <= record.last_check_at  # written by the move, then after
    state = store(aws_env).state("shop")
    assert (state.live_colour.value, state.live_rollout_id) == ("green", rid)
    assert state.backup_colour is not None and state.backup_colour.value == "blue"


def test_manual_abort_promote_and_rollback(gate, rollout, kube, aws_env, edge_endpoint):
    live_blue(kube)
    start_shop(rollout, edge_endpoint)
    assert handle({"action": "rollback", "app": "shop"}, gate)["status"] == "rejected"
    green_ready(kube)
    promoted = handle({"action": "promote", "app": "shop", "reason": "release now"}, gate)
    assert promoted["status"] == "promoted", promoted
    assert store(aws_env).state("shop").live_colour.value == "green"
    back = handle({"action": "rollback", "app": "shop"}, gate)
    assert back["status"] == "rolled_back" and "rolled back by hand" in back["detail"]
    assert store(aws_env).state("shop").live_colour.value == "blue"
    assert "shop.sandbox.test shop-blue" in live_map(aws_env)
    again = newer_shop(rollout)
    assert handle({"action": "abort", "app": "shop"}, gate)["status"] == "aborted"
    assert store(aws_env).rollout("shop", again["rollout_id"]).phase.value == "aborted"


def test_bad_manual_invokes_get_a_clear_error(gate):
    assert "action" in handle({"action": "explode", "app": "shop"}, gate)["error"]
    assert "unknown field" in handle({"action": "abort", "app": "shop", "x": 1}, gate)["error"]
    assert "no rollout" in handle({"action": "abort", "app": "shop"}, gate)["error"]


def test_the_sample_events_drive_the_real_handler(gate, rollout, kube, aws_env, edge_endpoint):
    live_blue(kube)  # something to roll back to
    kube.set_behaviour(SHOP_IMAGE, "ready", ready_after=6)  # not ready at the first check
    rid = start_shop(rollout, edge_endpoint)
    assert rid == "1795684502000-3f9d2a41c0b7"  # the id in events/sqs-gate-check.json
    batch = handle(load_event("sqs-gate-check.json"), gate)
    assert batch == {"batchItemFailures": []}
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10  # the next check is delayed by interval_seconds (2)
    while not any(b["attempt"] == 1 for b in bodies) and time.monotonic() < deadline:
        time.sleep(0.5)
        bodies += [
            json.loads(m["Body"]) for m in queue_messages(aws_env["GREENLIGHT_GATE_QUEUE_URL"])
        ]
    assert any(b["rollout_id"] == rid and b["attempt"] == 1 for b in bodies)  # the next check
    swept = handle(load_event("schedule-gate-sweep.json"), gate)
    assert swept["action"] == "sweep" and swept["moving"] == ["shop"]  # just checked
    green_ready(kube)
    promoted = handle(load_event("gate-promote.json"), gate)
    assert promoted["status"] == "promoted", promoted
    rolled = handle(load_event("gate-rollback.json"), gate)
    assert rolled["status"] == "rolled_back" and "checkout errors" in rolled["detail"]
    assert handle(load_event("gate-abort.json"), gate)["status"] == "rejected"  # nothing gating


def test_a_malformed_gate_message_is_dropped_not_retried(gate):
    event = load_event("sqs-gate-check.json")
    event["Records"][0]["body"] = '{"kind": "gate-check"}'
    assert handle(event, gate) == {"batchItemFailures": []}


def test_a_promotion_the_fleet_does_not_take_leaves_blue_live(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    real_push = gate.deps.edge_push

    def canary_fails_on_promotion(reason: str, **kwargs: Any) -> dict[str, Any]:
        result = real_push(reason, **kwargs)  # the bundle is published either way
        if reason.startswith("promote"):
            return result | {"fleet": {"status": "canary-failed"}}
        return result

    gate.deps.edge_push = canary_fails_on_promotion
    results = drive(gate, rid, until=lambda r: r.status == "failed")
    assert "did not apply the promotion (canary-failed)" in results[-1].detail
    state = store(aws_env).state("shop")
    assert state.live_colour.value == "blue"
    assert "shop.sandbox.test shop-blue" in live_map(aws_env)  # pushed back
    assert replicas(kube, "shop-green") == 0


def test_a_promotion_push_that_raises_or_throttles_keeps_the_chain_and_its_heartbeat(
    gate, rollout, kube, aws_env, edge_endpoint
):
    """After set_live, a promotion push that raised or did not settle leaves the rollout
    promoting with its next check queued (no revert, no chain lost), and the rollout's
    last_check_at refreshed before and after the push, however long it took."""
    from botocore.exceptions import ClientError

    from greenlight.gate.decide import STUCK_AFTER_SECONDS, Policy, stuck

    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    real_push = gate.deps.edge_push
    throttle = ClientError(
        {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke"
    )
    answers: list[Any] = [throttle, {"status": "throttled", "error": "Rate exceeded"}]
    heartbeats: list[tuple[int, int]] = []  # (the clock at the push, last_check_at then)

    def flaky(reason: str, **kwargs: Any) -> dict[str, Any]:
        if not reason.startswith("promote") or not answers:
            return real_push(reason, **kwargs)
        heartbeats.append((gate.clock(), store(aws_env).rollout("shop", rid).last_check_at))
        gate.clock.advance(250)  # a long push
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gate.deps.edge_push = flaky
    for status in ("failed", "throttled"):
        results = drive(gate, rid, until=lambda r: r.phase == "promoting" and r.next_check)
        waiting = results[-1]
        assert waiting.status == "waiting", waiting
        assert f"did not settle ({status})" in waiting.detail
        assert waiting.next_check is not None and waiting.delay_seconds > 0
        record = store(aws_env).rollout("shop", rid)
        assert record.phase is Phase.PROMOTING  # not reverted, not failed
        assert store(aws_env).state("shop").live_colour.value == "green"  # set_live stands
        at, seen = heartbeats[-1]
        assert at - 2000 <= seen <= at  # refreshed right before the push
        assert record.last_check_at >= at + 250_000  # ... and after it
        policy = Policy.of(app_of(gate), deploy_deadline=2400, promote_deadline=900)
        now = gate.clock()
        assert not stuck(record, policy, now, deploy_grace_seconds=360)
        assert stuck(record, policy, now + STUCK_AFTER_SECONDS * 1000, deploy_grace_seconds=360)
    results = drive(gate, rid, until=lambda r: r.status == "promoted")  # the push settles
    assert store(aws_env).rollout("shop", rid).phase is Phase.WATCHING
    assert "shop.sandbox.test shop-green" in live_map(aws_env)


def app_of(runtime):
    return next(a for a in runtime.deps.apps.load().apps if a.name == "shop")


def test_an_apps_first_rollout_failing_after_promotion_stays_live(
    gate, rollout, kube, aws_env, edge_endpoint
):
    rid = start_shop(rollout, edge_endpoint)  # no blue: nothing was live before
    drive(gate, rid, until=lambda r: r.status == "promoted")
    refused = handle(load_event("gate-rollback.json"), gate)
    assert refused["status"] == "rejected" and "nothing to roll back to" in refused["error"]
    edge_endpoint.status["preview.shop.sandbox.test"] = 500
    results = drive(gate, rid, until=lambda r: r.status == "failed")
    assert "nothing was live before it, so it stays live" in results[-1].detail
    assert store(aws_env).state("shop").live_colour.value == "green"
    assert replicas(kube, "shop-green") == 2  # still serving: there is nothing else


def test_a_newer_rollout_that_never_wrote_its_slot_does_not_keep_the_warm_colour(
    gate, rollout, kube, aws_env, edge_endpoint
):
    first = start_shop(rollout, edge_endpoint)  # v1 on green: the app's first rollout
    drive(gate, first, until=lambda r: r.status == "promoted")
    second = newer_shop(rollout)["rollout_id"]  # v2 on blue; v1 stays warm on green
    drive(gate, second, until=lambda r: r.status == "promoted")
    gate.clock.advance(7)  # past the watch window (sandbox apps file: 6 s)
    drive(gate, second, until=lambda r: r.status == "live")
    third = push_with_no_room(kube, rollout, "v3")
    assert third["status"] == "failed" and "capacity" in third["detail"], third
    gate.clock.advance(121)  # past the watch and warm windows (sandbox apps file)
    results = drive(gate, second, until=lambda r: r.status == "retired")
    assert "scaled to zero" in results[-1].detail
    assert replicas(kube, "shop-green") == 0 and replicas(kube, "shop-blue") == 2


def test_a_rollout_whose_function_died_for_good_ends_failed_at_its_deadline(
    gate, rollout, kube, aws_env, edge_endpoint, monkeypatch
):
    import greenlight.rollout.service as service

    def died(*args, **kwargs):
        raise ConnectionError("the Lambda died and never came back")

    monkeypatch.setattr(service, "_write_candidate", died)
    with pytest.raises(ConnectionError):
        rollout(load_event("codecommit-push.json"))
    state = store(aws_env).state("shop")
    rid = state.rollout_id
    assert state.phase is Phase.DEPLOYING
    # Within the rollout function's own run the sweep leaves it to that function.
    assert handle(load_event("schedule-gate-sweep.json"), gate)["queued"] == []
    gate.clock.advance(400)
    assert handle(load_event("schedule-gate-sweep.json"), gate)["queued"] == ["shop"]
    chain = store(aws_env).rollout("shop", rid).chain
    waiting = run_check(Check("shop", rid, chain=chain), gate, None)
    assert waiting.status == "waiting" and waiting.next_check is not None
    gate.clock.advance(2400)  # GREENLIGHT_DEPLOY_DEADLINE_SECONDS (default)
    failed = run_check(waiting.next_check, gate, None)
    assert failed.status == "failed" and "deploying for longer than its deadline" in failed.detail
    record = store(aws_env).rollout("shop", rid)
    assert record.phase is Phase.FAILED and "GREENLIGHT_DEPLOY_DEADLINE_SECONDS" in record.reason
    # The move as recorded is the one the announce function counts as a deadline's.
    from greenlight.announce.measure import points
    from greenlight.store.marshal import plain

    key = {"pk": {"S": "app#shop"}, "sk": {"S": f"rollout#{rid}"}}
    raw = boto3.client("dynamodb").get_item(TableName=aws_env["GREENLIGHT_TABLE"], Key=key)
    expired = [p for p in points(None, plain(raw["Item"])) if p.name == "PhaseDeadlineExpired"]
    assert [p.app for p in expired] == ["shop", None]
    from greenlight.interlock import rollouts_in_flight

    assert rollouts_in_flight(store(aws_env), ["shop"]) == []  # the night shrink may run


def test_a_promotion_waiting_on_a_degraded_fleet_is_failed_at_its_deadline(
    gate, rollout, kube, aws_env, edge_endpoint
):
    from greenlight.edge.fleet import FleetResult
    from greenlight.store.fleet import FleetLog

    live_blue(kube)
    FleetLog(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"]).record(
        FleetResult("incomplete", "v1", "a" * 64), "test"
    )
    rid = start_shop(rollout, edge_endpoint)
    waiting = drive(gate, rid, until=lambda r: "degraded" in r.detail)[-1]
    assert store(aws_env).rollout("shop", rid).phase is Phase.PROMOTING
    gate.clock.advance(900)  # GREENLIGHT_PROMOTE_DEADLINE_SECONDS (default)
    failed = run_check(waiting.next_check, gate, None)
    assert failed.status == "failed" and "promoting for longer than its deadline" in failed.detail
    assert store(aws_env).state("shop").live_colour.value == "blue"  # never switched
    assert replicas(kube, "shop-green") == 0 and replicas(kube, "shop-blue") == 2


def test_a_newer_rollout_that_never_wrote_its_slot_leaves_the_watch_alone(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)  # v1 on green, blue its warm backup
    drive(gate, rid, until=lambda r: r.status == "promoted")
    newer = push_with_no_room(kube, rollout, "v2")
    assert newer["status"] == "failed" and "capacity" in newer["detail"], newer
    # Still watched, still backed up by blue: the newer rollout replaced nothing.
    assert store(aws_env).rollout("shop", rid).phase is Phase.WATCHING
    assert store(aws_env).state("shop").backup_colour.value == "blue"
    assert "shop.sandbox.test shop-live-green\n" in live_map(aws_env)
    gate.clock.advance(31)
    results = drive(gate, rid, until=lambda r: r.status == "live")
    assert results[-1].status == "live"
    assert store(aws_env).rollout("shop", rid).phase is Phase.LIVE


def test_a_promotion_whose_green_is_not_up_on_an_instance_fails_and_blue_keeps_serving(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    real = gate.deps.edge_push
    promotions: list[dict[str, str]] = []
    down = (
        "shop-green: 2 of 2 servers not UP (shop-green/node-1 DOWN L4CON, shop-green/node-2 DOWN)"
    )

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("promote") is None:
            return real(reason, **kwargs)
        promotions.append(kwargs["promote"])
        # The haproxy function's answer when its check round saw green DOWN on one instance
        # (tests/integration/test_fleet_e2e.py has the real one, on real HAProxy instances).
        return {
            "action": "push",
            "status": "not-published",
            "fleet": {
                "status": "not-up",
                "version_id": "",
                "checked": {
                    "up": False,
                    "backends": ["shop-green"],
                    "instances": {
                        "i-0abc": {"outcome": "Failed", "detail": down},
                        "i-0def": {"outcome": "Success", "detail": "up"},
                    },
                },
            },
        }

    gate.deps.edge_push = edge_push
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: r.status == "failed")
    assert promotions == [{"app": "shop", "colour": "green"}]
    assert results[-1].detail == (
        "the HAProxy fleet did not apply the promotion (not-up): shop-green not UP on i-0abc:"
        f" {down}; blue stays live (fleet no-fleet)"
    )
    assert store(aws_env).state("shop").live_colour.value == "blue"
    (route,) = [line for line in live_map(aws_env).splitlines() if line.startswith("shop.")]
    assert route.endswith("blue")  # the revert push: blue's route, as before the promotion
