"""The gate's manual promote, abort and rollback take ``dry_run`` like every other action: the
same checks (reads only), an answer that says what it would do, and nothing changed: the
table, the cluster, the edge config and the gate queue are as they were. The real rollout,
gate and haproxy handlers, moto, and the Kubernetes stand-in (tests/integration/test_gate.py's
fixtures)."""

from __future__ import annotations

import boto3

from greenlight.gate.entry import handle
from tests.conftest import table_items
from tests.integration.test_gate import (  # fixtures and helpers of the gate's tests
    edge_endpoint,
    gate,
    green_ready,
    live_blue,
    newer_shop,
    rollout,
    start_shop,
    store,
)

__all__ = ["edge_endpoint", "gate", "rollout"]  # fixtures, used by name


def everything(kube, env, runtime):
    """All a manual act could change."""
    with kube.cluster.lock:
        objects = sorted(  # what a client wrote (the controllers keep moving the status)
            (
                r,
                o["metadata"]["name"],
                o["metadata"].get("generation"),
                str(o["metadata"].get("annotations")),
                str(o.get("spec")),
            )
            for r in ("deployments", "services")
            for o in kube.cluster.items(r, "shop")
        )
    versions = boto3.client("s3").list_object_versions(Bucket=env["GREENLIGHT_CONFIG_BUCKET"])
    queued = boto3.client("sqs").get_queue_attributes(
        QueueUrl=env["GREENLIGHT_GATE_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    items = sorted(str(i) for i in table_items())
    return (
        objects,
        [v["VersionId"] for v in versions.get("Versions", [])],
        queued,
        items,
        len(runtime.pushes),
    )


def test_manual_dry_runs_say_what_they_would_do_and_change_nothing(
    gate, rollout, kube, aws_env, edge_endpoint
):
    live_blue(kube)
    rid = start_shop(rollout, edge_endpoint)
    green_ready(kube)
    before = everything(kube, aws_env, gate)

    aborting = handle({"action": "abort", "app": "shop", "dry_run": True}, gate)
    assert aborting["status"] == "dry-run", aborting
    assert aborting["would"]["rollout_id"] == rid
    assert aborting["would"]["moves"] == ["gating", "aborted"]
    assert aborting["would"]["scaled_away"] == "green"
    assert aborting["would"]["live"]["colour"] == "blue"  # untouched
    assert everything(kube, aws_env, gate) == before

    promoting = handle({"action": "promote", "app": "shop", "dry_run": True}, gate)
    assert promoting["status"] == "dry-run", promoting
    assert promoting["would"]["moves"] == ["gating", "promoting", "watching"]
    assert promoting["would"]["live"]["colour"] == "green"
    assert promoting["would"]["live"]["rollout_id"] == rid
    assert promoting["would"]["backup_colour"] == "blue"
    assert everything(kube, aws_env, gate) == before
    assert store(aws_env).rollout("shop", rid).phase.value == "gating"

    # A dry run is refused for the same reasons as the real act.
    refused = handle({"action": "rollback", "app": "shop", "dry_run": True}, gate)
    assert refused["status"] == "rejected" and "nothing was promoted" in refused["error"]

    promoted = handle({"action": "promote", "app": "shop"}, gate)
    assert promoted["status"] == "promoted", promoted
    live = store(aws_env).rollout("shop", rid)
    before = everything(kube, aws_env, gate)

    back = handle({"action": "rollback", "app": "shop", "dry_run": True}, gate)
    assert back["status"] == "dry-run", back
    would = back["would"]
    assert would["rollout_id"] == rid and would["moves"] == ["watching", "rolled_back"]
    assert would["live"] == {
        "colour": "blue",
        "version": live.previous_version,
        "image": live.previous_image,
        "rollout_id": live.previous_rollout_id,
    }
    assert would["scaled_away"] == "green"
    assert would["edge"]["replaces_config_version"] == live.config_version
    assert would["edge"]["replaces_config_sha256"] == live.config_sha256
    assert everything(kube, aws_env, gate) == before
    assert store(aws_env).state("shop").live_colour.value == "green"

    rolled = handle({"action": "rollback", "app": "shop"}, gate)  # the real one still works
    assert rolled["status"] == "rolled_back"
    newer_shop(rollout)
    assert handle({"action": "abort", "app": "shop", "dry_run": True}, gate)["status"] == "dry-run"


def test_a_dry_run_flag_that_is_not_a_boolean_is_refused_naming_the_field(gate):
    refused = handle({"action": "abort", "app": "shop", "dry_run": "yes"}, gate)
    assert refused["status"] == "rejected" and refused["error"].startswith("dry_run: ")
