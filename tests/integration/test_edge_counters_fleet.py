"""The haproxy function's counters action through LocalSsm, on two real HAProxy instances."""

from __future__ import annotations

import shutil
import time

import pytest

from greenlight.deadline import Deadline
from greenlight.store.lease import Held
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.fleet import LocalSsm
from greenlight_sandbox.functions import load
from tests.conftest import own_env
from tests.integration import edge_fleet
from tests.integration.test_fleet_e2e import deployed, get

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)


sandbox, fleet = edge_fleet.sandbox, edge_fleet.fleet  # its fixtures


@pytest.fixture
def invoke(sandbox, fleet):
    from greenlight.edge.entry import EdgeRuntime
    from greenlight.settings import EdgeFunctionSettings

    module = load("haproxy")
    runtime = EdgeRuntime.build(EdgeFunctionSettings.from_env(own_env("haproxy")))
    runtime.fleet_ssm = LocalSsm(fleet, sandbox.env)
    module.runtime.supply(runtime)
    invoke = lambda event: module.handler(event, LambdaContext(timeout_seconds=300))  # noqa: E731
    invoke.runtime = runtime  # type: ignore[attr-defined]
    return invoke


def test_counters_come_from_every_instance_read_only(sandbox, fleet, invoke):
    deployed(sandbox.kube)
    pushed = invoke({"action": "push", "reason": "test"})
    assert pushed["fleet"]["status"] == "applied", pushed
    first, second = sorted(fleet)
    releases = {i: instance.current_release() for i, instance in fleet.items()}
    for _ in range(3):  # through the first instance only
        get(fleet[first].bind_address, "shop.sandbox.test")
    # Read-only: another holder of the edge lock does not keep it waiting.
    runtime = invoke.runtime
    held = runtime.edge_lock().acquire(
        "someone", "push: test", wait=Deadline.within(0), hold=Deadline.within(60)
    )
    assert isinstance(held, Held)
    deadline_ms = int((time.time() + 30) * 1000)

    answer = invoke(
        {"action": "counters", "app": "shop", "colours": ["blue"], "deadline_ms": deadline_ms}
    )

    assert answer["status"] == "counters" and answer["errors"] == {}, answer
    assert answer["backends"] == ["shop-blue", "shop-live-blue"]
    (sent,) = [c for c in runtime.fleet_ssm.sent if c["DocumentName"] == "greenlight-stats"]
    assert sent["InstanceIds"] == [first, second]
    assert sent["Parameters"] == {"Backends": ["shop-blue,shop-live-blue"]}
    seen = answer["instances"]
    assert set(seen) == {first, second}
    for instance_id, counted in seen.items():
        assert counted["worker"] in fleet[instance_id].workers()
        assert counted["missing"] == ["shop-live-blue"]  # no warm colour behind blue
    backend = {
        i: next(r for r in counted["rows"] if r["server"] == "BACKEND")
        for i, counted in seen.items()
    }
    # The shop's pods are not running: HAProxy answers 503 itself, no server being UP.
    assert (backend[first]["requests"], backend[first]["http_5xx"]) == (3, 3)
    assert (backend[second]["requests"], backend[second]["http_5xx"]) == (0, 0)
    servers = {r["server"] for r in seen[first]["rows"]} - {"BACKEND"}
    assert {s.split("_")[0] for s in servers} == {"worker-1", "worker-2"}  # <node>_<port>_<hash>
    assert {i: instance.current_release() for i, instance in fleet.items()} == releases

    # One instance down: its reason, the other's counters all the same.
    fleet[second].stop()
    answer = invoke({"action": "counters", "app": "shop", "colours": ["blue"], "dry_run": True})
    assert set(answer["instances"]) == {first}
    # (its admin socket is still there: nothing answers on it)
    assert answer["errors"][second].startswith("Failed: exit 3: HAProxy does not answer on ")


def test_a_bad_counters_request_is_refused_naming_its_field(sandbox, fleet, invoke):
    for event, why in (
        ({"app": "cart", "colours": ["green"]}, "app: no app named 'cart' in the apps file"),
        ({"app": "shop", "colours": ["teal"]}, "colours: expected blue or green, got 'teal'"),
    ):
        answer = invoke({"action": "counters"} | event)
        assert answer == {"status": "rejected", "error": why}
    assert invoke.runtime.fleet_ssm.sent == []  # nothing was sent
