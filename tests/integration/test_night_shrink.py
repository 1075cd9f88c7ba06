"""The night shrink and morning restore: moto's Auto Scaling Group, the stand-in's nodes and
pods, and the real haproxy function for the pushes (its published config shows which nodes
serve). The cloud's part is played by the sandbox's ``Cloud``: an instance the group launches
registers as a Ready node, and a terminated one's node goes away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from greenlight.cluster.rest import KubeRest
from greenlight.deadline import Deadline
from greenlight.edge.publish import ConfigStore
from greenlight.night.plan import NightSize
from greenlight.night.service import CAPACITY_TAG, NightDeps, describe, restore, shrink
from greenlight_sandbox.cloud import Cloud
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.kube.cluster import pod_ready
from greenlight_sandbox.kube.kinds import kind_named
from tests.conftest import load_event, own_env

GROUP = "workers"


@pytest.fixture
def night(aws_env, kube, function_api) -> Iterator[tuple[NightDeps, list[dict[str, Any]]]]:
    with kube.cluster.lock:  # the group's nodes only
        kube.cluster.objects["nodes"].clear()
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    asg = boto3.client("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="workers", ImageId=image, InstanceType="m6g.large"
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchConfigurationName="workers",
        MinSize=1,
        MaxSize=5,
        DesiredCapacity=3,
        AvailabilityZones=["eu-west-1a"],
    )
    haproxy = load("haproxy")
    pushes: list[dict[str, Any]] = []

    def edge_push(reason: str, *, deadline: Deadline) -> dict[str, Any]:
        result: dict[str, Any] = haproxy.handler(
            {"action": "push", "reason": reason}, LambdaContext()
        )
        pushes.append(result)
        return result

    deps = NightDeps(KubeRest(function_api("night")), asg, edge_push, GROUP)  # its identity
    cloud = Cloud(kube, asg, GROUP, subnet=3, interval=0.1).start()
    yield deps, pushes
    cloud.stop()


def shop(kube, behaviour: str = "ready") -> None:
    image = "shop-web:v1"
    kube.set_behaviour(image, behaviour, ready_after=0.1)
    labels = {"app": "web"}
    kube.cluster.create(
        kind_named("deployments"),
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": image,
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            }
                        ]
                    },
                },
            },
        },
    )
    kube.cluster.create(
        kind_named("services"),
        "shop",
        {
            "metadata": {"name": "shop-blue"},
            "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 80}]},
        },
    )


def serving_nodes(aws_env) -> set[str]:
    files = ConfigStore(boto3.client("s3"), aws_env["GREENLIGHT_CONFIG_BUCKET"]).files()
    config = files["haproxy.cfg"].decode()
    return {line.split()[1] for line in config.splitlines() if line.strip().startswith("server ")}


def test_shrink_then_restore_twice(night, kube, aws_env):
    deps, pushes = night
    shop(kube)
    assert kube.wait_for(lambda: sum(pod_ready(p) for p in kube.cluster.items("pods", "shop")) == 2)
    planned = shrink(deps, NightSize(keep=1), deadline=Deadline.within(60), dry_run=True)
    assert planned["status"] == "dry-run" and len(planned["would_remove"]) == 2
    assert pushes == [] and describe(deps).desired == 3  # a dry run changes nothing

    shrunk = shrink(deps, NightSize(keep=1), deadline=Deadline.within(60))
    assert shrunk["status"] == "shrunk" and len(shrunk["removed"]) == 2, shrunk
    movable = sum(len(n["pods_to_move"]) for n in planned["plan"]["remove"])
    assert shrunk["evictions"] == movable  # every pod the plan moved, evicted once
    group = describe(deps)
    assert group.desired == 1 and len(group.instances) == 1
    assert group.tags[CAPACITY_TAG] == "3"  # where the morning finds it
    assert kube.wait_for(lambda: len(kube.cluster.items("nodes")) == 1)
    pods = kube.cluster.items("pods", "shop")
    assert len(pods) == 2 and all(pod_ready(p) for p in pods)  # no pod lost
    # The first push took the chosen nodes out before they were drained.
    assert pushes[0]["serving_nodes"] == 1

    restored = restore(deps, deadline=Deadline.within(60), poll_seconds=0.2)
    assert restored["status"] == "restored" and restored["ready_nodes"] == 3, restored
    assert restored["added"] == 2  # the group raised by the two nodes the night removed
    group = describe(deps)
    assert group.desired == 3 and CAPACITY_TAG not in group.tags
    assert len(serving_nodes(aws_env)) == 3

    again = restore(deps, deadline=Deadline.within(30), poll_seconds=0.2)
    assert again["status"] == "restored" and describe(deps).desired == 3  # safe twice


def test_a_drain_that_cannot_finish_puts_everything_back(night, kube, aws_env):
    deps, pushes = night
    shop(kube, behaviour="never-ready")  # its PDB never has a disruption to spare
    kube.cluster.create(
        kind_named("poddisruptionbudgets"),
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    assert kube.wait_for(lambda: len(kube.cluster.items("pods", "shop")) == 2)
    result = shrink(deps, NightSize(keep=1), deadline=Deadline.within(4))
    assert result["status"] == "stopped" and "still refused at the deadline" in result["why"]
    assert result["evictions"] == 0  # the PDB refused every one
    group = describe(deps)
    terminated = len(result["removed"])
    assert group.desired == 3 - terminated and len(group.instances) == 3 - terminated
    with kube.cluster.lock:
        nodes = list(kube.cluster.objects["nodes"].values())
    for node in nodes:  # uncordoned and back in the load balancers
        assert not node["spec"].get("unschedulable")
        assert "node.kubernetes.io/exclude-from-external-load-balancers" not in (
            node["metadata"].get("labels") or {}
        )
    assert pushes[-1]["serving_nodes"] == len(nodes)
    # The morning run finds the recorded capacity and brings the group back.
    restored = restore(deps, deadline=Deadline.within(60), poll_seconds=0.2)
    assert restored["status"] == "restored" and describe(deps).desired == 3


@pytest.fixture
def night_function(night, monkeypatch):
    """The night function's handler, wired to the test's cluster, group and in-process push."""
    from greenlight.night.entry import NightRuntime
    from greenlight.settings import NightFunctionSettings

    deps, _ = night
    monkeypatch.setenv("GREENLIGHT_EDGE_FUNCTION", "greenlight-haproxy")
    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", GROUP)
    monkeypatch.setenv("GREENLIGHT_NIGHT_TIME_ZONE", "Europe/Amsterdam")
    module = load("night")
    runtime = NightRuntime.build(
        NightFunctionSettings.from_env(own_env("night")), edge_push=deps.edge_push
    )
    runtime.deps = deps
    module.runtime.supply(runtime)
    return lambda event: module.handler(event, LambdaContext(timeout_seconds=900)), deps


def test_the_night_function_plans_pauses_skips_and_follows_its_calendar(night_function, kube):
    invoke, deps = night_function
    shop(kube)
    assert kube.wait_for(lambda: sum(pod_ready(p) for p in kube.cluster.items("pods", "shop")) == 2)
    planned = invoke(load_event("night-plan.json"))
    assert planned["status"] == "dry-run" and len(planned["would_remove"]) == 2
    assert planned["plan"]["keep"] == 1  # the apps file's night size
    # Thursday 20:00 in Amsterdam, but paused until December: nothing happens.
    assert invoke(load_event("night-pause.json"))["paused_until"] == "2026-12-01"
    paused = invoke(load_event("schedule-night-shrink.json"))
    assert (paused["status"], paused["why"]) == ("skipped", "paused until 2026-12-01")
    assert invoke({"action": "resume"})["paused_until"] is None
    # The 27th is a no-shrink date in the apps file; its morning restore does run.
    friday = invoke({"action": "shrink", "scheduled": True, "time": "2026-11-27T19:00:00Z"})
    assert friday["why"] == "2026-11-27 is a no-shrink date"
    shrunk = invoke(load_event("schedule-night-shrink.json"))
    assert shrunk["status"] == "shrunk" and describe(deps).desired == 1, shrunk
    saturday = invoke({"action": "restore", "scheduled": True, "time": "2026-11-28T06:00:00Z"})
    assert saturday["status"] == "skipped" and describe(deps).desired == 1  # weekend: small
    restored = invoke(load_event("schedule-night-restore.json"))
    assert restored["status"] == "restored" and describe(deps).desired == 3, restored


def test_the_night_function_rejects_bad_invokes(night_function):
    invoke, _ = night_function
    assert invoke({"action": "nap"})["status"] == "rejected"
    assert "until" in invoke({"action": "pause", "until": "soon"})["error"]
    assert "unknown field" in invoke({"action": "plan", "nodes": 3})["error"]


def test_no_shrink_while_a_rollout_is_in_flight_and_no_rollout_while_nodes_drain(
    night_function, kube, aws_env, monkeypatch
):
    from greenlight.errors import TemporaryError
    from greenlight.store.night import NightState, NightStore

    invoke, deps = night_function
    ddb = boto3.client("dynamodb")
    table = aws_env["GREENLIGHT_TABLE"]
    state = {"pk": {"S": "app#shop"}, "sk": {"S": "state"}}
    ddb.put_item(
        TableName=table,
        Item=state | {"rollout_id": {"S": "r-1"}, "phase": {"S": "gating"}, "sequence": {"N": "1"}},
    )
    refused = invoke({"action": "shrink"})
    assert refused["status"] == "refused" and "shop r-1 (gating)" in refused["why"]
    assert describe(deps).desired == 3
    ddb.delete_item(TableName=table, Key=state)

    # While a shrink drains (its marker in the table), a push waits: a temporary error that the
    # invocation's retries bring back; nothing is recorded or written meanwhile.
    store = NightStore(ddb, table, GROUP)
    store.save(NightState(draining_until=int((time.time() + 60) * 1000)))
    monkeypatch.setenv("GREENLIGHT_NIGHT_GROUP", GROUP)
    rollout = load("rollout")
    push = load_event("codecommit-push.json")
    with pytest.raises(TemporaryError, match="the night shrink is draining nodes of workers"):
        rollout.handler(push, LambdaContext())
    assert kube.cluster.find("deployments", "shop", "shop-green") is None
    store.save(NightState())
    from greenlight_sandbox import resources

    resources.push_image(boto3.session.Session(), "shop-web", push["detail"]["commitId"][:12])
    assert rollout.handler(push, LambdaContext())["status"] == "started"


def test_a_shrink_leaves_no_drain_marker_behind(night_function, kube, aws_env):
    from greenlight.store.night import NightStore

    invoke, _ = night_function
    shop(kube)
    assert invoke({"action": "shrink"})["status"] == "shrunk"
    store = NightStore(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"], GROUP)
    assert store.load().draining_until == 0
