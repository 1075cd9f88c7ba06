"""The gate acting on the edge's answers to its revert, retirement and promotion pushes (moto,
the Kubernetes stand-in, the real haproxy handler; the edge's answer replaced where a test
needs it held ``not-up`` or unsettled): the candidate or the previous colour is scaled away
only once the edge took the push that routes away from it."""

from __future__ import annotations

from typing import Any

from greenlight.gate.entry import run_check
from greenlight.gate.execute import Check
from greenlight.lifecycle import Phase
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


def held(backend: str, instance: str = "i-0abc") -> dict[str, Any]:
    """The haproxy function's answer to a push held because ``backend`` is not UP."""
    down = f"{backend}: 2 of 2 servers not UP ({backend}/node-1 DOWN L4CON)"
    return {
        "action": "push",
        "status": "not-published",
        "fleet": {
            "status": "not-up",
            "version_id": "",
            "not_up": {instance: [backend]},
            "checked": {
                "up": False,
                "backends": [backend],
                "instances": {
                    instance: {"outcome": "Failed", "detail": down},
                    "i-0def": {"outcome": "Success", "detail": "up"},
                },
            },
        },
    }


def promoted_shop(gate, rollout, kube, edge_endpoint) -> str:  # noqa: F811
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    drive(gate, rid, until=lambda r: r.status == "promoted")
    return rid


def test_a_revert_the_edge_does_not_take_keeps_green_running_and_is_pushed_again(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    rid = promoted_shop(gate, rollout, kube, edge_endpoint)
    real = gate.deps.edge_push
    reverts: list[dict[str, Any]] = []
    answers = [held("cart-blue"), {"status": "busy", "error": "the edge lock is held"}]

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("revert"):
            reverts.append(kwargs.get("restore") or {})
            if answers:
                return answers.pop(0)
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    edge_endpoint.status["preview.shop.sandbox.test"] = 503  # green fails in the watch
    first = drive(gate, rid, until=lambda r: "did not take the revert" in r.detail)[-1]
    assert first.status == "waiting" and first.next_check is not None
    assert "the edge did not take the revert to blue (not-up: cart-blue not UP on i-0abc" in (
        first.detail
    )
    record = store(aws_env).rollout("shop", rid)
    assert record.phase is Phase.WATCHING and record.reverting  # not ended
    assert store(aws_env).state("shop").live_colour.value == "blue"  # back in the table
    assert replicas(kube, "shop-green") == 2  # not scaled away while the edge routes to it
    second = run_check(first.next_check, gate, None)  # pushed again: busy
    assert second.status == "waiting" and "(busy)" in second.detail
    assert replicas(kube, "shop-green") == 2
    done = run_check(second.next_check, gate, None)  # taken at last
    assert done.status == "rolled_back", done
    assert "blue is live again (fleet " in done.detail
    assert reverts == [{"app": "shop", "colour": "blue"}] * 3  # every revert push restores
    assert replicas(kube, "shop-green") == 0
    (route,) = [line for line in live_map(aws_env).splitlines() if line.startswith("shop.")]
    assert route.endswith("blue")


def test_a_revert_never_taken_ends_at_the_watch_deadline_with_green_left_running(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    rid = promoted_shop(gate, rollout, kube, edge_endpoint)
    real = gate.deps.edge_push

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("revert"):
            return held("cart-blue")
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    edge_endpoint.status["preview.shop.sandbox.test"] = 503
    waiting = drive(gate, rid, until=lambda r: "did not take the revert" in r.detail)[-1]
    gate.clock.advance(331)  # past the watching phase's deadline (watch 30 s + 300 s)
    ended = run_check(waiting.next_check, gate, None)
    assert ended.status == "rolled_back" and ended.next_check is None
    assert "by the watching phase's deadline; green left running" in ended.detail
    assert replicas(kube, "shop-green") == 2  # left running: the edge may still route to it
    assert store(aws_env).rollout("shop", rid).phase is Phase.ROLLED_BACK


def test_a_retirement_push_not_taken_keeps_blue_until_it_is_taken(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    rid = promoted_shop(gate, rollout, kube, edge_endpoint)
    gate.clock.advance(31)
    drive(gate, rid, until=lambda r: r.status == "live")
    real = gate.deps.edge_push
    answers = [{"status": "timed-out", "error": "no answer"}]

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("retire") and answers:
            return answers.pop(0)
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    gate.clock.advance(100)  # past the warm window (120 s), within the live deadline (390 s)
    waiting = run_check(Check("shop", rid), gate, None)
    assert waiting.status == "live" and waiting.next_check is not None, waiting
    assert "did not take the retirement push" in waiting.detail
    assert replicas(kube, "shop-blue") == 2  # the backup may still be on the live route
    assert store(aws_env).state("shop").backup_colour is None  # dropped in the table
    retired = run_check(waiting.next_check, gate, None)  # pushed again, taken
    assert retired.status == "retired" and replicas(kube, "shop-blue") == 0
    assert "shop.sandbox.test shop-green\n" in live_map(aws_env)


def test_a_retirement_push_never_taken_settles_at_the_live_deadline_leaving_blue(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    rid = promoted_shop(gate, rollout, kube, edge_endpoint)
    gate.clock.advance(31)
    drive(gate, rid, until=lambda r: r.status == "live")
    real = gate.deps.edge_push

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("retire"):
            return {"status": "busy", "error": "the edge lock is held"}
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    gate.clock.advance(100)  # past the warm window (120 s from the promotion)
    waiting = run_check(Check("shop", rid), gate, None)
    assert waiting.status == "live" and replicas(kube, "shop-blue") == 2
    gate.clock.advance(300)  # past the live phase's deadline (390 s from entering it)
    settled = run_check(waiting.next_check, gate, None)
    assert settled.status == "retired" and settled.next_check is None
    assert "by the live phase's deadline; blue left running" in settled.detail
    assert replicas(kube, "shop-blue") == 2
    assert store(aws_env).rollout("shop", rid).phase is Phase.SETTLED


def test_a_promotion_held_only_by_another_apps_backend_waits_and_then_goes_live(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    real = gate.deps.edge_push
    answers = [held("cart-green")]

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("promote") is not None and answers:
            return answers.pop(0)
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: r.phase == "promoting" and r.next_check)
    waiting = results[-1]
    assert waiting.status == "waiting", waiting
    assert "held by another backend, not shop-green: cart-green not UP on i-0abc" in (
        waiting.detail
    )
    assert "green not UP" not in waiting.detail.split("held by")[0]  # not this candidate's
    assert store(aws_env).rollout("shop", rid).phase is Phase.PROMOTING
    assert replicas(kube, "shop-green") == 2
    promoted = drive(gate, rid, until=lambda r: r.status == "promoted")[-1]
    assert promoted.status == "promoted"
    assert "shop.sandbox.test shop-live-green\n" in live_map(aws_env)


def test_a_promotion_held_by_its_own_candidate_fails_with_that_backends_reason(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    real = gate.deps.edge_push

    def edge_push(reason: str, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("promote") is not None:
            answer = held("cart-green")
            answer["fleet"]["not_up"] = {"i-0abc": ["cart-green", "shop-green"]}
            return answer
        return real(reason, **kwargs)

    gate.deps.edge_push = edge_push
    rid = start_shop(rollout, edge_endpoint)
    failed = drive(gate, rid, until=lambda r: r.status == "failed")[-1]
    assert failed.detail.startswith(
        "the HAProxy fleet did not apply the promotion (not-up): shop-green not UP on i-0abc:"
    )
    assert store(aws_env).rollout("shop", rid).phase is Phase.FAILED
    assert store(aws_env).state("shop").live_colour.value == "blue"
