"""The night shrink against the rollouts, and a shrink whose first edge push fails: moto's Auto
Scaling Group and DynamoDB, the stand-in's nodes, the real haproxy function for the pushes.

- The night sets its drain marker before it looks for rollouts in flight; a push accepted just
  before the marker lands is seen (the shrink is refused), and one after it is refused by its
  own acceptance (tests/integration/test_accept_races.py).
- A first push that fails outright (the invoke raised) must not leave the chosen nodes out of
  HAProxy until the morning: they are unmarked and the fleet is pushed again."""

from __future__ import annotations

import boto3
from botocore.exceptions import EndpointConnectionError

from greenlight.cluster.names import EXCLUDE_FROM_LOAD_BALANCERS
from greenlight.deadline import Deadline
from greenlight.edgepush import taken
from greenlight.night.plan import NightSize
from greenlight.night.service import NightDeps, describe, shrink
from greenlight.store.night import NightStore
from greenlight_sandbox.kube.cluster import pod_ready
from tests.integration.test_night_shrink import (  # the night's fixtures and helpers
    GROUP,
    night,
    serving_nodes,
    shop,
)

__all__ = ["night"]  # a fixture, used by name


def node_marks(kube) -> dict[str, tuple[bool, bool]]:
    """Per node: (out of the load balancers, cordoned)."""
    with kube.cluster.lock:
        found = list(kube.cluster.objects["nodes"].values())
    return {
        n["metadata"]["name"]: (
            EXCLUDE_FROM_LOAD_BALANCERS in (n["metadata"].get("labels") or {}),
            bool(n["spec"].get("unschedulable")),
        )
        for n in found
    }


def test_a_first_edge_push_that_fails_outright_puts_the_nodes_back(night, kube, aws_env):
    deps, pushes = night
    shop(kube)
    assert kube.wait_for(lambda: sum(pod_ready(p) for p in kube.cluster.items("pods", "shop")) == 2)
    calls: list[str] = []

    def first_push_fails(reason, **kwargs):
        calls.append(reason)
        if len(calls) == 1:  # the push that takes the chosen nodes out
            raise EndpointConnectionError(endpoint_url="https://lambda.eu-west-1.amazonaws.com")
        return deps.edge_push(reason, **kwargs)

    failing = NightDeps(deps.kube, deps.autoscaling, first_push_fails, GROUP)

    result = shrink(failing, NightSize(keep=1), deadline=Deadline.within(60))

    assert result["status"] == "stopped" and result["removed"] == []
    assert "EndpointConnectionError" in result["why"]
    assert len(calls) == 2 and "stay back" in calls[1]  # the compensating push
    assert result["fleet"] == taken(pushes[-1])[1]  # what the compensating push answered
    marks = node_marks(kube)
    assert marks and all(m == (False, False) for m in marks.values()), marks
    assert pushes[-1]["serving_nodes"] == len(marks)  # every node serves again
    assert len(serving_nodes(aws_env)) == len(marks)  # in the published config
    assert describe(deps).desired == 3


def test_a_compensating_push_that_fails_too_still_leaves_no_node_marked(night, kube, aws_env):
    deps, _ = night

    def never(reason, **_):
        raise EndpointConnectionError(endpoint_url="https://lambda.eu-west-1.amazonaws.com")

    result = shrink(
        NightDeps(deps.kube, deps.autoscaling, never, GROUP),
        NightSize(keep=1),
        deadline=Deadline.within(60),
    )
    assert result["status"] == "stopped" and result["fleet"].startswith("not pushed: ")
    assert all(m == (False, False) for m in node_marks(kube).values())


def night_handler(deps, monkeypatch):
    """The night function's handler and its runtime, on the test's group, cluster and push."""
    from greenlight.night.entry import NightRuntime
    from greenlight.settings import NightFunctionSettings
    from greenlight_sandbox.context import LambdaContext
    from greenlight_sandbox.functions import load
    from tests.conftest import own_env

    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", GROUP)
    monkeypatch.setenv("GREENLIGHT_NIGHT_TIME_ZONE", "Europe/Amsterdam")
    module = load("night")
    settings = NightFunctionSettings.from_env(own_env("night"))
    runtime = NightRuntime.build(settings, edge_push=deps.edge_push)
    runtime.deps = deps
    module.runtime.supply(runtime)
    return lambda event: module.handler(event, LambdaContext(timeout_seconds=900)), runtime


def test_a_push_accepted_just_before_the_drain_marker_lands_refuses_the_shrink(
    night, kube, aws_env, monkeypatch
):
    deps, _ = night
    invoke, runtime = night_handler(deps, monkeypatch)
    table = aws_env["GREENLIGHT_TABLE"]
    other = boto3.client("dynamodb")
    accepted = []

    def a_push_lands_first(params, **_):  # the marker's write: a rollout is accepted just before
        if not accepted and "draining_until" in params["Item"]:
            other.put_item(
                TableName=table,
                Item={
                    "pk": {"S": "app#shop"},
                    "sk": {"S": "state"},
                    "rollout_id": {"S": "r-1"},
                    "phase": {"S": "deploying"},
                    "sequence": {"N": "1"},
                },
            )
            accepted.append(1)

    runtime.store.client.meta.events.register(
        "provide-client-params.dynamodb.PutItem", a_push_lands_first
    )

    refused = invoke({"action": "shrink"})

    assert accepted
    assert refused["status"] == "refused" and "shop r-1 (deploying)" in refused["why"]
    assert describe(deps).desired == 3
    assert all(m == (False, False) for m in node_marks(kube).values())
    assert NightStore(other, table, GROUP).load().draining_until == 0  # the marker is gone


def test_a_restore_dry_run_says_what_it_would_do_and_changes_nothing(
    night, kube, aws_env, monkeypatch
):
    from greenlight.cluster.names import NIGHT_ANNOTATION
    from greenlight.night.service import CAPACITY_TAG

    deps, pushes = night
    invoke, _ = night_handler(deps, monkeypatch)
    asg = deps.autoscaling
    asg.create_or_update_tags(  # what an evening run left: the recorded capacity, one node out
        Tags=[
            {
                "ResourceId": GROUP,
                "ResourceType": "auto-scaling-group",
                "Key": CAPACITY_TAG,
                "Value": "4",
                "PropagateAtLaunch": False,
            }
        ]
    )
    out = sorted(node_marks(kube))[0]
    with kube.cluster.lock:
        node = kube.cluster.objects["nodes"][("", out)]
        node["metadata"].setdefault("labels", {})[EXCLUDE_FROM_LOAD_BALANCERS] = "true"
        node["metadata"].setdefault("annotations", {})[NIGHT_ANNOTATION] = "shrink"
    before = (describe(deps), node_marks(kube), len(pushes))

    planned = invoke({"action": "restore", "dry_run": True})

    assert planned["status"] == "dry-run", planned
    assert (planned["target"], planned["added"], planned["desired"]) == (4, 1, 3)
    assert planned["recorded_capacity"] == "4" and planned["would_remove_tag"] is True
    assert planned["would_unmark"] == [out]
    assert (describe(deps), node_marks(kube), len(pushes)) == before  # nothing changed
