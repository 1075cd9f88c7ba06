"""End to end in the full sandbox: a commit becomes live through the gate and a real HAProxy
fleet, under steady HTTPS load through both instances, without one failed request."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from greenlight_sandbox import resources
from greenlight_sandbox.fullstack import HTTPS_PORT, FullSandbox
from greenlight_sandbox.functions import invoke
from greenlight_sandbox.load import Load
from greenlight_sandbox.sandbox import environment
from tests.conftest import load_event

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)
V1 = "3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b"  # its image is in the sandbox's ECR
V2 = "4a0e3b52d1c8f6e7b9a0d3c4e5f6071829304b5c"


@pytest.fixture
def full() -> Iterator[FullSandbox]:
    with FullSandbox() as sandbox:
        yield sandbox


def push(sandbox: FullSandbox, commit: str, previous: str, minute: int) -> dict:
    event = load_event("codecommit-push.json")
    event["id"] = f"e2e-{commit[:8]}"
    event["time"] = f"2026-11-26T09:{minute:02d}:02Z"
    event["detail"]["commitId"], event["detail"]["oldCommitId"] = commit, previous
    with environment(sandbox.env):
        resources.push_image(sandbox.session(), "shop-web", commit[:12])
        result = invoke("rollout", event)
    assert result["status"] == "started", result
    return result


def test_a_commit_goes_live_through_the_gate_and_the_fleet_without_a_failed_request(full):
    first = push(full, V1, "0" * 40, 15)
    promoted = full.run_gate(first["rollout_id"], until=lambda r: r.status == "promoted")
    assert promoted[-1].status == "promoted", [r.to_dict() for r in promoted]

    loads = [
        Load(i.bind_address, HTTPS_PORT, "shop.sandbox.test", max_seconds=120).start()
        for i in full.instances.values()
    ]
    time.sleep(1)
    second = push(full, V2, V1, 16)
    assert second["colour"] == "blue"
    gated = full.run_gate(second["rollout_id"], until=lambda r: r.status == "promoted")
    assert gated[-1].status == "promoted", [r.to_dict() for r in gated]
    time.sleep(2)
    stats = [load.stop() for load in loads]

    for s in stats:
        assert s.failed == 0, s.to_dict()
        assert s.timeline[0][1] == V1[:12] and s.timeline[-1][1] == V2[:12], s.timeline
    for instance in full.instances.values():
        assert instance.workers()
