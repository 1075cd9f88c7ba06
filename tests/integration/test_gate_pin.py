"""The gate and the rollout function while the edge is pinned to a release (a rollback): a
promotion is refused and fails clearly, a rollout is not deployed; nothing is scaled away."""

from __future__ import annotations

from typing import Any

import boto3

from greenlight.gate.entry import run_check
from greenlight.gate.execute import Check
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from tests.conftest import load_event
from tests.integration.test_gate import (  # noqa: F401 - fixtures
    drive,
    edge_endpoint,
    gate,
    live_blue,
    live_map,
    replicas,
    rollout,
    start_shop,
    store,
)


def pin_the_live_release() -> dict[str, Any]:
    """``rollback`` to the release that is live: the bytes stay, the edge is pinned."""
    haproxy = load("haproxy")
    live = haproxy.handler({"action": "releases", "limit": 1}, LambdaContext())["releases"][0]
    pinned = haproxy.handler(
        {"action": "rollback", "release": live["version_id"], "reason": "incident 7"},
        LambdaContext(),
    )
    assert pinned["status"] == "rolled-back" and pinned["pin"]["status"] == "pinned", pinned
    return pinned


def test_a_promotion_refused_as_pinned_fails_clearly_and_pushes_nothing_back(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    real_push = gate.deps.edge_push

    def pinned_before_promotion(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("promote"):
            pin_the_live_release()  # someone rolls the edge back while the candidate is gated
        return real_push(reason, **kwargs)

    gate.deps.edge_push = pinned_before_promotion
    results = drive(gate, rid, until=lambda r: r.status == "failed")
    detail = results[-1].detail
    assert detail.startswith("the promotion was refused: the edge is pinned to release")
    assert "incident 7" in detail and '{"action": "unpin"}' in detail
    record = store(aws_env).rollout("shop", rid)
    assert record.phase.value == "failed" and "pinned" in record.reason
    assert store(aws_env).state("shop").live_colour.value == "blue"  # put back in the table
    assert gate.pushes[-1]["status"] == "pinned"  # the promotion's, and no revert push after
    assert [p["why"] for p in gate.pushes if p.get("why", "").startswith("revert")] == []
    assert "shop.sandbox.test shop-blue" in live_map(aws_env)  # the pinned release serves
    assert replicas(kube, "shop-green") == 2  # nothing scaled away while pinned


def test_a_rollout_is_not_deployed_while_the_edge_is_pinned(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    load("haproxy").handler({"action": "push", "reason": "blue"}, LambdaContext())
    pin_the_live_release()
    versions = boto3.client("s3").list_object_versions(Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"])[
        "Versions"
    ]
    failed = rollout(load_event("codecommit-push.json"))
    assert failed["status"] == "failed", failed
    assert "not deployed: the edge is pinned to release" in failed["detail"]
    assert store(aws_env).rollout("shop", failed["rollout_id"]).phase.value == "failed"
    assert kube.cluster.find("deployments", "shop", "shop-green") is None  # no candidate
    assert replicas(kube, "shop-blue") == 2
    assert gate.pushes[-1]["status"] == "pinned"
    after = boto3.client("s3").list_object_versions(Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"])
    assert after["Versions"] == versions  # nothing published


def test_the_previous_colour_is_kept_while_the_edge_is_pinned_until_the_live_deadline(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    """The pinned release routes the live hosts to green with blue warm behind it: blue is not
    scaled down, even with no push in the check to be refused; the check waits (and says so)
    until the live phase's deadline, then settles with blue left running."""
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    drive(gate, rid, until=lambda r: r.status == "promoted")
    gate.clock.advance(31)  # past the watch window (30 s)
    drive(gate, rid, until=lambda r: r.status == "live")
    pin_the_live_release()
    pushes = len(gate.pushes)
    # The sandbox's shop: watch 6 s, warm 120 s; the live phase's deadline 120 - 6 + 300 s.
    gate.clock.advance(120)  # past the warm window, well within the live phase's deadline
    waiting = run_check(Check("shop", rid), gate, None)
    assert waiting.status == "live", waiting.detail
    assert waiting.detail.startswith(
        "the warm window is over; blue is not scaled down while the edge is pinned"
    )
    assert "incident 7" in waiting.detail and waiting.delay_seconds == 60
    assert replicas(kube, "shop-blue") == 2
    assert store(aws_env).rollout("shop", rid).phase.value == "live"
    assert store(aws_env).state("shop").backup_colour.value == "blue"  # nothing changed
    assert len(gate.pushes) == pushes  # and nothing pushed
    gate.clock.advance(300)  # past the live phase's deadline
    settled = run_check(Check("shop", rid), gate, None)
    assert settled.status == "retired" and settled.phase == "settled", settled.detail
    assert settled.detail.startswith("blue left running: the edge is pinned to release")
    assert replicas(kube, "shop-blue") == 2 and replicas(kube, "shop-green") == 2


def test_after_an_unpin_the_previous_colour_is_retired(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    drive(gate, rid, until=lambda r: r.status == "promoted")
    gate.clock.advance(31)
    drive(gate, rid, until=lambda r: r.status == "live")
    pin_the_live_release()
    gate.clock.advance(120)  # past the warm window
    assert run_check(Check("shop", rid), gate, None).status == "live"
    unpinned = load("haproxy").handler({"action": "unpin"}, LambdaContext())
    assert unpinned["status"] in ("unpinned", "published"), unpinned
    retired = run_check(Check("shop", rid), gate, None)
    assert retired.status == "retired" and replicas(kube, "shop-blue") == 0, retired.detail


def test_a_candidate_rolled_back_while_the_edge_is_pinned_is_left_running(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    """Pinned to the release with the preview route to green: a candidate that fails its
    health checks is rolled back (no push in that check), and left running."""
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint, preview=503)
    pin_the_live_release()
    pushes = len(gate.pushes)
    results = drive(gate, rid, until=lambda r: r.status == "rolled_back")
    detail = results[-1].detail
    assert detail.startswith("health check failed 3 times in a row"), detail
    assert "; green left running: the edge is pinned to release" in detail
    assert "incident 7" in store(aws_env).rollout("shop", rid).reason
    assert len(gate.pushes) == pushes  # the gate pushed nothing
    assert replicas(kube, "shop-green") == 2  # the pinned release routes the preview host to it
