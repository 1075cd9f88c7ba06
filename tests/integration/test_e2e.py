"""End to end in the full sandbox (greenlight_sandbox.scenarios): every scenario of the gate
under steady HTTPS load through two real HAProxy instances, reloaded only through the SSM
document, with not one failed request.

One sandbox serves the module: v1 goes live first, then load runs through both instances while
each test drives one scenario with the events an AWS account would send.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from greenlight_sandbox import scenarios
from greenlight_sandbox.fullstack import FullSandbox

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)


@pytest.fixture(scope="module")
def stage() -> Iterator[scenarios.Stage]:
    with FullSandbox() as sandbox:
        stage = scenarios.Stage(sandbox)
        first = stage.deploy_first("v1")
        assert stage.live_version() == first.version
        stage.start_load()
        time.sleep(1)
        yield stage
        stats = stage.stop_load()
        assert sum(s.failed for s in stats) == 0, [s.to_dict() for s in stats]


def run(stage: scenarios.Stage, name: str) -> scenarios.ScenarioResult:
    failed_before = stage.failed_requests()
    requests_before = sum(load.stats.requests for load in stage.loads)
    followed = len(stage.journal)
    result = scenarios.SCENARIOS[name](stage)
    time.sleep(0.5)
    # Shown when the test fails (pytest shortens assertion messages): the phases the scenario
    # followed and the live load's failures, on the same clock.
    print("followed:", *stage.journal[followed:], sep="\n  ")
    print("live failures:", *sorted(f for load in stage.loads for f in load.stats.failures))
    assert result.ok, (result.unmet, stage.journal[followed:])
    assert stage.failed_requests() == failed_before, [load.stats.to_dict() for load in stage.loads]
    assert sum(load.stats.requests for load in stage.loads) > requests_before + 50  # load ran
    assert not stage.sandbox.pump_errors
    return result


def test_a_healthy_commit_goes_live_on_every_instance(stage):
    result = run(stage, "healthy")
    assert result.promoted == 1 and len(result.flips) == 1
    (version,) = [p.version for p in stage.pushes if p.label == "v2"]
    for load in stage.loads:  # every instance switched to it, and serves it now
        assert load.stats.timeline[-1][1] == version, load.stats.timeline[-3:]


def never_served(stage: scenarios.Stage, label: str) -> bool:
    (version,) = [p.version for p in stage.pushes if p.label == label]
    return all(version not in load.stats.versions for load in stage.loads)


def test_a_crash_looping_commit_is_rolled_back_and_never_served(stage):
    assert run(stage, "crashloop").rolled_back == 1
    assert never_served(stage, "v3")


def test_a_commit_never_ready_is_rolled_back_at_its_deadline(stage):
    assert run(stage, "never-ready").rolled_back == 1


def test_a_commit_whose_health_fails_through_the_edge_is_rolled_back(stage):
    assert run(stage, "failing-health").rolled_back == 1
    assert never_served(stage, "failing-health")


def test_a_failure_after_promotion_reverts_without_a_failed_request(stage):
    result = run(stage, "watch-revert")
    assert result.promoted == 1 and result.rolled_back == 1


def test_a_newer_commit_supersedes_one_at_the_gate(stage):
    assert run(stage, "supersede").promoted == 1


def test_manual_approval_promote_rollback_and_abort(stage):
    result = run(stage, "manual")
    assert result.promoted == 1 and result.rolled_back == 1


def test_a_gate_lambda_killed_between_steps_is_resumed(stage):
    assert run(stage, "resume").promoted == 1


def test_a_commit_pushed_to_github_goes_live_and_github_is_told(stage):
    assert run(stage, "github").promoted == 1
    (push,) = [p for p in stage.pushes if p.label == "blog-v1"]
    statuses = stage.sandbox.github.status_history("acme/blog", push.commit)
    states = [s["state"] for s in statuses if s["context"] == "greenlight/blog"]
    assert states[0] == "pending" and states[-1] == "success", states
    told = {(s.target, s.state) for s in stage.told(push)}
    assert ("sns", "posted") in told and ("slack", "posted") in told, told


def test_a_rolled_back_commit_is_told_why(stage):
    (push,) = [p for p in stage.pushes if p.label == "v3"]  # the crash-looping one
    sent = stage.told(push)
    comments = stage.sandbox.receivers.of("codecommit-comment")
    mine = [c.body for c in comments if c.body["afterCommitId"] == push.commit]
    assert len(mine) == 1 and "CrashLoopBackOff" in mine[0]["content"], mine
    assert any(s.target == "codecommit-comment" and s.state == "posted" for s in sent)


def test_the_night_shrinks_and_restores_the_workers_without_a_failed_request(stage):
    figures = run(stage, "night").figures
    assert figures["nodes_removed"] >= 1 and figures["pending_pods"] == 0
    assert figures["nodes_restored"] == figures["nodes_removed"]


def test_each_function_talked_to_the_cluster_under_its_own_identity(stage):
    # Last in the module: by now the rollout, gate, haproxy and night functions have all worked.
    from greenlight_sandbox.sandbox import CLUSTER_FUNCTIONS, function_user

    requests = stage.sandbox.kube.auth.requests_by_user
    for function in CLUSTER_FUNCTIONS:
        assert requests[function_user(function)] > 0, (function, dict(requests))
    # No shared identity is left: every function's kubeconfig secret holds its own token.
    assert len(set(stage.sandbox.function_secrets.values())) == len(CLUSTER_FUNCTIONS)
