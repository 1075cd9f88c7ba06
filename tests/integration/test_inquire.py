"""`greenlight status`, `history` and `trace --aws` end to end over moto's DynamoDB: records
written by the real RolloutStore, FleetLog, NightStore and NotifyStore (and by the rollout
function itself), read back through the CLI."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import boto3
import pytest

from greenlight.colour import Colour
from greenlight.lifecycle import Actor, Phase
from greenlight.store.fleet import FleetLog
from greenlight.store.night import NightState, NightStore
from greenlight.store.notify import NotifyStore, Sent
from greenlight.store.rollouts import Rollout, RolloutStore
from greenlight_sandbox import resources
from greenlight_sandbox.cli import main
from tests.conftest import load_event

T0 = 1_795_684_502_000
V1 = "3f9d2a41c0b7e8d9f0a1b2c3d4e5f60718293a4b"
V2 = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807"
GROUP = "greenlight-sandbox-workers"


class Reload(NamedTuple):
    """What the haproxy function's fleet reload reports (edge.fleet.FleetResult)."""

    status: str
    version_id: str
    sha256: str
    degraded: bool
    instances: dict[str, dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {"instances": self.instances}


def candidate(n: int, commit: str, delivery: str) -> Rollout:
    return Rollout(
        app="shop",
        rollout_id=f"{T0 + n:013d}-{commit[:12]}",
        version=commit,
        image=f"shop-web:{commit[:12]}",
        colour=Colour.GREEN,
        phase=Phase.DEPLOYING,
        sequence=T0 + n,
        source="codecommit",
        repository="shop-web",
        branch="main",
        commit=commit,
        delivery=delivery,
        namespace="shop",
    )


def walk(store: RolloutStore, rollout: Rollout, *phases: Phase, **sets: Any) -> Rollout:
    for phase in phases:
        moved = store.move(rollout, phase, by=Actor.GATE, why=f"to {phase.value}", sets=sets)
        assert moved is not None, phase
        rollout = moved
    return rollout


@pytest.fixture
def table(aws, monkeypatch) -> dict[str, Any]:
    """One app with v1 live (promoted, its config and SSM commands recorded, its statuses
    sent) and v2 rolled back; the fleet's reloads; the night state."""
    resources.create_tables(aws)
    client = boto3.client("dynamodb")
    ticks = iter(range(T0, T0 + 10**9, 1000))
    store = RolloutStore(client, resources.TABLE, clock=lambda: next(ticks))
    v1 = store.accept(candidate(1, V1, "eventbridge:e-1"), commit=V1, previous=None)
    v1 = walk(store, v1, Phase.GATING, Phase.PROMOTING)
    assert store.set_live(v1, backup=Colour.BLUE)
    published = {
        "config_version": "v-77",
        "config_sha256": "ab" * 32,
        "ssm_commands": {"i-0a": "cmd-1", "i-0b": "cmd-2"},
    }
    v1 = walk(store, v1, Phase.WATCHING, **published)
    v1 = walk(store, v1, Phase.LIVE)
    v2 = store.accept(candidate(2, V2, "eventbridge:e-2"), commit=V2, previous=V1)
    v2 = walk(store, v2, Phase.GATING)
    store.move(v2, Phase.ROLLED_BACK, by=Actor.GATE, why="health check failed 3 times")

    instances = {
        "i-0a": {"outcome": "Success", "detail": "", "command_id": "cmd-1"},
        "i-0b": {"outcome": "Success", "detail": "", "command_id": "cmd-2"},
    }
    FleetLog(client, resources.TABLE, clock=lambda: T0 / 1000 + 60).record(
        Reload("applied", "v-77", "ab" * 32, False, instances), "promote shop"
    )
    nights = NightStore(client, resources.TABLE, GROUP)
    nights.save(NightState(draining_until=0))
    nights.record_run({"action": "restore", "status": "done", "why": "morning"}, T0 / 1000 - 600)
    NotifyStore(client, resources.TABLE).record(
        "shop",
        v1.rollout_id,
        [
            Sent("github-status", "pending", T0 + 2000, "ev-1"),
            Sent("codecommit-comment", "posted", T0 + 2000, "ev-1"),
            Sent("github-status", "success", T0 + 9000, "ev-5", "live on green"),
        ],
    )
    monkeypatch.setenv("GREENLIGHT_TABLE", resources.TABLE)
    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", GROUP)
    return {"v1": v1, "v2": v2}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_shows_what_is_live_the_fleet_and_the_night(table, capsys):
    code, out, _ = cli(capsys, "status", "--aws", "--json")
    assert code == 0
    doc = json.loads(out)
    (shop,) = doc["apps"]
    assert shop["live"]["commit"] == V1 and shop["live"]["phase"] == "live"
    assert shop["live"]["colour"] == "green" and shop["live"]["backup_colour"] == "blue"
    assert shop["in_flight"] is None
    assert (shop["newest"]["phase"], shop["newest"]["reason"]) == (
        "rolled_back",
        "health check failed 3 times",
    )
    assert [(i["instance"], i["config_version"]) for i in doc["fleet"]["instances"]] == [
        ("i-0a", "v-77"),
        ("i-0b", "v-77"),
    ]
    assert doc["night"]["group"] == GROUP and doc["night"]["last_run"]["action"] == "restore"

    code, out, _ = cli(capsys, "status", "--aws")
    assert code == 0
    assert out.startswith("shop     live green  3f9d2a41c0b7")
    assert "rolled_back: health check failed 3 times" in out
    assert "edge     applied: config v-77" in out and "i-0b" in out


def test_history_gives_outcomes_and_reasons(table, capsys):
    code, out, _ = cli(capsys, "history", "shop", "--aws", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [(r["commit"], r["outcome"], r["reason"]) for r in doc["rollouts"]] == [
        (V2, "rolled_back", "health check failed 3 times"),
        (V1, "live", None),
    ]
    assert (
        len(
            json.loads(cli(capsys, "history", "shop", "--limit", "1", "--aws", "--json")[1])[
                "rollouts"
            ]
        )
        == 1
    )


def test_trace_by_commit_prefix_is_the_whole_chain(table, capsys):
    code, out, _ = cli(capsys, "trace", V1[:7], "--aws", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["commit"], doc["rollout_id"]) == (V1, table["v1"].rollout_id)
    assert doc["delivery"] == "eventbridge:e-1"
    assert doc["image"] == f"shop-web:{V1[:12]}"
    assert doc["deployment"] == {"name": "shop-green", "namespace": "shop", "colour": "green"}
    assert [p["phase"] for p in doc["phases"]] == [
        "deploying",
        "gating",
        "promoting",
        "watching",
        "live",
    ]
    assert (doc["config_version"], doc["config_sha256"]) == ("v-77", "ab" * 32)
    assert doc["ssm_commands"] == {"i-0a": "cmd-1", "i-0b": "cmd-2"}
    assert {"target": "github-status", "state": "success"}.items() <= doc["statuses"][-1].items()

    code, out, _ = cli(capsys, "trace", table["v2"].rollout_id, "--aws")
    assert code == 0
    assert "reason        health check failed 3 times" in out
    assert "statuses      none sent yet" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("history", "nope"), "no app 'nope' in table greenlight-rollouts (apps: shop)"),
        (("trace", "abcdef012"), "no rollout of a commit beginning abcdef012"),
        (("trace", "3f9d"), "at least 7 hex digits"),
    ],
)
def test_unknown_names_exit_1_with_why(table, capsys, args, message):
    code, out, err = cli(capsys, *args, "--aws")
    assert (code, out) == (1, "")
    assert message in err


def test_aws_without_the_table_names_the_variable(aws, capsys, monkeypatch):
    monkeypatch.delenv("GREENLIGHT_TABLE", raising=False)
    code, _, err = cli(capsys, "status", "--aws")
    assert code == 2 and "GREENLIGHT_TABLE" in err


def test_the_rollout_function_records_the_delivery_the_trace_shows(rollout, kube, capsys):
    event = load_event("codecommit-push.json")
    started = rollout(event)
    assert started["status"] == "started", started
    store = RolloutStore(boto3.client("dynamodb"), resources.TABLE)
    record = store.rollout("shop", started["rollout_id"])
    assert (record.delivery, record.namespace) == (f"eventbridge:{event['id']}", "shop")

    code, out, _ = cli(capsys, "trace", started["rollout_id"], "--aws", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["delivery"] == f"eventbridge:{event['id']}"
    assert doc["deployment"] == {"name": "shop-green", "namespace": "shop", "colour": "green"}
    assert [p["phase"] for p in doc["phases"]] == ["deploying", "gating"]
    assert doc["commit"] == event["detail"]["commitId"]


def test_without_aws_it_reads_the_running_sandboxs_table(monkeypatch, capsys):
    """The sandbox's moto (a server, as `greenlight sandbox up` runs it), found through the
    sandbox's state file; the rollout written there by the real store."""
    from moto.server import ThreadedMotoServer

    from greenlight_sandbox import sandbox as sb

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_DEFAULT_REGION": resources.REGION,
            "GREENLIGHT_TABLE": resources.TABLE,
            "GREENLIGHT_NIGHT_GROUP": GROUP,
        }
        for key in ("AWS_ENDPOINT_URL", "GREENLIGHT_TABLE", "GREENLIGHT_NIGHT_GROUP"):
            monkeypatch.delenv(key, raising=False)
        client = sb.client(env, "dynamodb")

        class Session:
            def client(self, service, **_):
                return client

        resources.create_tables(Session())
        store = RolloutStore(client, resources.TABLE)
        store.accept(candidate(1, V1, "github:d-1"), commit=V1, previous=None)
        state = {"pid": 1, "invoke_url": "http://127.0.0.1:1", "env": env}
        monkeypatch.setattr(sb, "read_state", lambda: state)

        code, out, _ = cli(capsys, "trace", V1[:12], "--json")
        assert code == 0
        doc = json.loads(out)
        assert (doc["delivery"], doc["phase"]) == ("github:d-1", "deploying")
        code, out, _ = cli(capsys, "status")
        assert code == 0 and "in flight deploying for" in out
        assert "night    greenlight-sandbox-workers: on schedule; no run yet" in out

        monkeypatch.setattr(sb, "read_state", lambda: None)
        code, _, err = cli(capsys, "history", "shop")
        assert code == 2 and "greenlight sandbox up" in err
    finally:
        server.stop()
