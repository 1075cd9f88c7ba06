"""Every event case of the rollout: the real handlers, moto, and the Kubernetes stand-in."""

from __future__ import annotations

import base64
import copy
import json

import boto3
import pytest

from greenlight.webhook import sign
from greenlight_sandbox import resources
from greenlight_sandbox.kube.kinds import kind_named
from tests.conftest import WEBHOOK_SECRET, load_event, queue_messages, table_items

SHOP_COMMIT = "3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b"
SHOP_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:3f9d2a41c0b7"
BLOG_COMMIT = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807"


def codecommit(
    commit=SHOP_COMMIT,
    *,
    previous=None,
    time="2026-11-26T09:15:02Z",
    event_id="e-1",
    branch="main",
    push_image=True,
):
    """A CodeCommit push event; its image is pushed to ECR first, as CI would."""
    if push_image:
        resources.push_image(boto3.session.Session(), "shop-web", commit[:12])
    event = copy.deepcopy(load_event("codecommit-push.json"))
    event["id"] = event_id
    event["time"] = time
    event["detail"].update(
        commitId=commit, referenceName=branch, referenceFullName=f"refs/heads/{branch}"
    )
    if previous:
        event["detail"]["oldCommitId"] = previous
    return event


def github(name="github-push.json", *, secret=WEBHOOK_SECRET, delivery=None, body=None):
    event = copy.deepcopy(load_event(name))
    if body is not None:
        event["body"] = json.dumps(body)
    if delivery:
        event["headers"]["x-github-delivery"] = delivery
    event["headers"]["x-hub-signature-256"] = sign(event["body"].encode(), secret)
    return event


def shop_pinned(tag=SHOP_COMMIT[:12]):
    """The shop's image as its Deployment runs it: pinned to the digest ECR has for ``tag``."""
    digest = boto3.client("ecr").describe_images(
        repositoryName="shop-web", imageIds=[{"imageTag": tag}]
    )["imageDetails"][0]["imageDigest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    return SHOP_IMAGE.rsplit(":", 1)[0] + "@" + digest


def deployment(kube, ns, name):
    return kube.cluster.find("deployments", ns, name)


def written(kube, ns, name):
    """What a client wrote to a Deployment (the controller keeps moving its status)."""
    found = deployment(kube, ns, name)
    return found["metadata"]["generation"], found["metadata"]["annotations"], found["spec"]


def snapshot(kube):
    """Everything the rollout could change: cluster objects, records, queued messages."""
    with kube.cluster.lock:
        objects = {
            r: sorted(
                f"{o['metadata'].get('namespace')}/{o['metadata']['name']}"
                for o in kube.cluster.items(r)
            )
            for r in ("deployments", "services")
        }
    return (
        objects,
        len(table_items()),
        len(
            queue_messages(
                boto3.client("sqs").get_queue_url(QueueName=resources.GATE_QUEUE)["QueueUrl"]
            )
        ),
    )


def gate_messages(env):
    return [json.loads(m["Body"]) for m in queue_messages(env["GREENLIGHT_GATE_QUEUE_URL"])]


def drain_rollout_queue(env, rollout):
    sqs = boto3.client("sqs")
    url = env["GREENLIGHT_ROLLOUT_QUEUE_URL"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    )
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m["Attributes"],
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "eu-west-1",
        }
        for m in got
    ]
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return records, (rollout({"Records": records}) if records else None)


# ------------------------------------------------------------------ a push starts one rollout
def test_codecommit_push_creates_the_green_deployment_and_hands_off(rollout, kube, aws_env):
    result = rollout(load_event("codecommit-push.json"))

    assert result["status"] == "started", result
    assert result["colour"] == "green" and result["image"] == SHOP_IMAGE
    green = deployment(kube, "shop", "shop-green")
    assert green is not None
    # Pinned to the digest ECR answered for the tag; the tag kept for people.
    container = green["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == shop_pinned()
    assert green["metadata"]["annotations"]["greenlight.io/image"] == SHOP_IMAGE
    assert green["spec"]["template"]["metadata"]["annotations"]["greenlight.io/image"] == SHOP_IMAGE
    assert green["spec"]["template"]["metadata"]["labels"]["greenlight.io/colour"] == "green"
    assert green["metadata"]["annotations"]["greenlight.io/commit"] == SHOP_COMMIT
    service = kube.cluster.find("services", "shop", "shop-green")
    assert service["spec"]["type"] == "NodePort"
    assert 30000 <= service["spec"]["ports"][0]["nodePort"] <= 32767
    assert deployment(kube, "shop", "shop-blue") is None  # nothing touches the live slot

    records = {i["sk"]["S"]: i for i in table_items()}
    state = records["state"] if "state" in records else None
    assert state is not None and state["phase"]["S"] == "gating"
    rollout_item = records[f"rollout#{result['rollout_id']}"]
    assert rollout_item["image"]["S"] == SHOP_IMAGE
    assert [h["M"]["phase"]["S"] for h in rollout_item["history"]["L"]] == ["deploying", "gating"]
    assert gate_messages(aws_env) == [
        {
            "kind": "gate-check",
            "app": "shop",
            "rollout_id": result["rollout_id"],
            "attempt": 0,
            "successes": 0,
            "failures": 0,
        }
    ]
    # The simulated controller brings the candidate up: it is a real Deployment.
    assert kube.wait_for(
        lambda: deployment(kube, "shop", "shop-green")["status"].get("availableReplicas") == 2,
        timeout=10,
    )


def test_green_is_cloned_from_the_live_blue_template(rollout, kube, aws_env):
    blue = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-blue", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app.kubernetes.io/name": "shop", "greenlight.io/colour": "blue"}
            },
            "template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/name": "shop", "greenlight.io/colour": "blue"}
                },
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "shop-web:old",
                            "env": [{"name": "FEATURE", "value": "on"}],
                        }
                    ]
                },
            },
        },
    }
    kube.cluster.create(kind_named("deployments"), "shop", blue)
    before = copy.deepcopy(deployment(kube, "shop", "shop-blue"))

    result = rollout(load_event("codecommit-push.json"))

    assert result["status"] == "started"
    green = deployment(kube, "shop", "shop-green")
    (container,) = green["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "FEATURE", "value": "on"}]
    assert container["image"] == shop_pinned()
    assert green["spec"]["replicas"] == 3
    assert deployment(kube, "shop", "shop-blue")["spec"] == before["spec"]


# ------------------------------------------------------------------ events that change nothing
@pytest.mark.parametrize("name", ["codecommit-tag.json", "codecommit-branch-deleted.json"])
def test_codecommit_tag_and_branch_deletion_change_nothing(rollout, kube, name):
    before = snapshot(kube)
    result = rollout(load_event(name))
    assert result["status"] == "ignored"
    assert snapshot(kube) == before


def test_push_to_an_unconfigured_branch_changes_nothing(rollout, kube):
    before = snapshot(kube)
    result = rollout(codecommit(branch="feature-x"))
    assert result["status"] == "ignored" and "branch 'feature-x'" in result["detail"]
    assert snapshot(kube) == before


@pytest.mark.parametrize(
    ("name", "code", "detail"),
    [
        ("github-ping.json", 200, "pong"),
        ("github-tag-push.json", 202, "only branch pushes deploy"),
        ("github-branch-deleted.json", 202, "deleted"),
        ("github-issues.json", 202, "only push deploys"),
    ],
)
def test_github_deliveries_that_do_not_deploy_are_acknowledged(
    webhook, kube, aws_env, name, code, detail
):
    before = snapshot(kube)
    response = webhook(github(name))
    assert response["statusCode"] == code
    assert detail in json.loads(response["body"])["detail"]
    assert queue_messages(aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]) == []
    assert snapshot(kube) == before


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["headers"].pop("x-hub-signature-256"),
        lambda e: e["headers"].update({"x-hub-signature-256": "sha256=" + "0" * 64}),
        lambda e: (
            e["headers"].pop("x-hub-signature-256"),
            e["headers"].update({"x-hub-signature": "sha1=0123"}),
        ),
        lambda e: e["headers"].update({"x-hub-signature-256": sign(b"other", WEBHOOK_SECRET)}),
    ],
    ids=["missing", "wrong", "sha1-only", "other-body"],
)
def test_bad_signatures_get_401_and_change_nothing(webhook, kube, aws_env, mutate):
    event = github()
    mutate(event)
    before = snapshot(kube)
    response = webhook(event)
    assert response["statusCode"] == 401
    assert queue_messages(aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]) == []
    assert snapshot(kube) == before


# ------------------------------------------------------------------ the GitHub path end to end
def test_github_push_is_queued_then_rolled_out(webhook, rollout, kube, aws_env):
    response = webhook(github())
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["status"] == "queued"

    records, batch = drain_rollout_queue(aws_env, rollout)
    assert len(records) == 1 and batch == {"batchItemFailures": []}
    green = deployment(kube, "blog", "blog-green")
    assert (
        green["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"ghcr.io/acme/blog:sha-{BLOG_COMMIT}"
    )


def test_github_base64_body_is_accepted(webhook, aws_env):
    event = github()
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert webhook(event)["statusCode"] == 202


# ------------------------------------------------------------------ duplicates and ordering
def test_replayed_github_delivery_starts_nothing_new(webhook, rollout, kube, aws_env):
    webhook(github(delivery="same-delivery"))
    drain_rollout_queue(aws_env, rollout)
    before = written(kube, "blog", "blog-green")
    items = len(table_items())

    webhook(github(delivery="same-delivery"))  # GitHub redelivers with the same id
    drain_rollout_queue(aws_env, rollout)

    assert written(kube, "blog", "blog-green") == before
    assert len(table_items()) == items
    assert len(gate_messages(aws_env)) == 1


def test_duplicate_eventbridge_event_starts_nothing_new(rollout, kube, aws_env):
    first = rollout(load_event("codecommit-push.json"))
    before = written(kube, "shop", "shop-green")
    second = rollout(load_event("codecommit-push.json"))
    assert second == first  # the idempotency record answers
    assert written(kube, "shop", "shop-green") == before
    assert len(gate_messages(aws_env)) == 1


def test_same_push_delivered_twice_under_different_ids_is_stale(rollout, aws_env):
    rollout(codecommit(event_id="a"))
    again = rollout(codecommit(event_id="b"))
    assert again["status"] == "ignored" and "not newer" in again["detail"]
    assert len(gate_messages(aws_env)) == 1


def test_older_commit_after_a_newer_one_is_ignored(rollout, kube, aws_env):
    newer = "b" * 40
    rollout(codecommit(newer, time="2026-11-26T10:00:00Z", event_id="new"))
    result = rollout(codecommit(SHOP_COMMIT, time="2026-11-26T09:00:00Z", event_id="old"))
    assert result["status"] == "ignored"
    image = deployment(kube, "shop", "shop-green")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == shop_pinned(newer[:12])


def test_two_pushes_in_the_same_second_follow_the_parent_chain(rollout, kube):
    first, second = "c" * 40, "d" * 40
    rollout(codecommit(first, time="2026-11-26T10:00:00Z", event_id="1"))
    result = rollout(codecommit(second, previous=first, time="2026-11-26T10:00:00Z", event_id="2"))
    assert result["status"] == "started"
    stale = rollout(
        codecommit("e" * 40, previous="f" * 40, time="2026-11-26T10:00:00Z", event_id="3")
    )
    assert stale["status"] == "ignored"


def test_newer_commit_supersedes_the_one_in_flight(rollout, kube, aws_env):
    first = rollout(codecommit("1" * 40, time="2026-11-26T10:00:00Z", event_id="1"))
    second = rollout(codecommit("2" * 40, time="2026-11-26T10:01:00Z", event_id="2"))
    assert second["status"] == "started"
    rollouts = {i["sk"]["S"]: i["phase"]["S"] for i in table_items()}
    assert rollouts[f"rollout#{first['rollout_id']}"] == "superseded"
    assert rollouts[f"rollout#{second['rollout_id']}"] == "gating"
    image = deployment(kube, "shop", "shop-green")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == shop_pinned("2" * 12)


# ------------------------------------------------------------------ malformed input
@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.codecommit", "detail": "nope", "id": "x", "time": "2026-11-26T00:00:00Z"},
        {"action": "rollout", "app": "shop", "commit": "not-a-commit"},
        {"action": "rollout", "app": "nope", "commit": "a" * 40},
        ["not", "an", "object"],
    ],
)
def test_malformed_events_get_a_clear_error_and_change_nothing(rollout, kube, event):
    before = snapshot(kube)
    result = rollout(event)
    assert result["status"] == "rejected" and result["error"]
    assert snapshot(kube) == before


def test_malformed_queued_message_is_dropped_not_retried(rollout, kube):
    record = load_event("sqs-queued-push.json")["Records"][0] | {"body": '{"kind": "push"}'}
    before = snapshot(kube)
    assert rollout({"Records": [record]}) == {"batchItemFailures": []}
    assert snapshot(kube) == before


def test_malformed_webhook_body_gets_400(webhook, aws_env):
    event = github()
    event["body"] = "not json"
    event["headers"]["x-hub-signature-256"] = sign(b"not json", WEBHOOK_SECRET)
    response = webhook(event)
    assert response["statusCode"] == 400
    assert "not JSON" in json.loads(response["body"])["error"]
    assert queue_messages(aws_env["GREENLIGHT_ROLLOUT_QUEUE_URL"]) == []


def test_bad_apps_file_fails_clearly_and_changes_nothing(rollout, kube, aws_env):
    boto3.client("s3").put_object(
        Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"],
        Key=aws_env["GREENLIGHT_CONFIG_KEY"],
        Body=b"version: 1\napps:\n  shop:\n    replicas: lots\n",
    )
    before = snapshot(kube)
    result = rollout(load_event("codecommit-push.json"))
    assert result["status"] == "rejected"
    assert "apps.shop.replicas: got 'lots'" in result["error"]
    assert snapshot(kube) == before


# ------------------------------------------------------------------ manual invokes
def test_manual_rollout_with_an_explicit_image(rollout, kube):
    result = rollout(load_event("manual-rollout-image.json"))
    assert result["status"] == "started"
    assert (
        deployment(kube, "blog", "blog-green")["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"ghcr.io/acme/blog:sha-{BLOG_COMMIT}"
    )


def test_manual_dry_run_changes_nothing(rollout, kube):
    before = snapshot(kube)
    result = rollout(load_event("manual-rollout.json") | {"dry_run": True})
    assert result["status"] == "dry-run"
    assert [c["action"] for c in result["changes"]] == ["would-create", "would-create"]
    assert snapshot(kube) == before


# ------------------------------------------------------------------ ECR wait and resumption
def test_missing_ecr_image_fails_the_rollout_after_the_wait(rollout, kube):
    result = rollout(codecommit("a" * 40, push_image=False))
    assert result["status"] == "failed" and "not found in ECR" in result["detail"]
    phases = {i["sk"]["S"]: i["phase"]["S"] for i in table_items()}
    assert phases[f"rollout#{result['rollout_id']}"] == "failed"
    assert deployment(kube, "shop", "shop-green") is None


def test_a_cluster_without_room_fails_the_rollout_and_writes_nothing(rollout, kube):
    with kube.cluster.lock:
        for node in kube.cluster.objects["nodes"].values():
            node["spec"]["unschedulable"] = True  # every worker cordoned (a drain)
    before = snapshot(kube)[0]
    result = rollout(codecommit())
    assert result["status"] == "failed"
    assert "not enough allocatable capacity for 2 replicas of 100m CPU" in result["detail"]
    assert "room for 0 on 0 schedulable nodes" in result["detail"]
    phases = {i["sk"]["S"]: i["phase"]["S"] for i in table_items()}
    assert phases[f"rollout#{result['rollout_id']}"] == "failed"
    assert snapshot(kube)[0] == before  # no Deployment, no Service


def test_image_pushed_during_the_wait_is_picked_up(rollout, kube, aws_env, monkeypatch):
    import threading

    import greenlight.rollout.images as images

    monkeypatch.setattr(images, "POLL_SECONDS", 0.1)
    # A wait long enough for a busy machine; it ends as soon as the image is there.
    monkeypatch.setenv("GREENLIGHT_ECR_WAIT_SECONDS", "20")
    ci = threading.Timer(
        0.5, resources.push_image, args=(boto3.session.Session(), "shop-web", "a" * 12)
    )
    ci.start()
    result = rollout(codecommit("a" * 40, push_image=False))
    ci.join()
    assert result["status"] == "started", result
    assert deployment(kube, "shop", "shop-green") is not None


def test_a_rollout_interrupted_after_acceptance_is_resumed(rollout, kube, aws_env, monkeypatch):
    import greenlight.rollout.service as service

    real = service._write_candidate
    calls = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("Lambda died here")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "_write_candidate", crash_once)
    event = load_event("codecommit-push.json")
    with pytest.raises(ConnectionError):
        rollout(event)
    phases = {i["sk"]["S"]: i["phase"]["S"] for i in table_items()}
    assert "deploying" in phases.values()
    assert deployment(kube, "shop", "shop-green") is None

    result = rollout(event)  # Lambda's retry of the same event
    assert result["status"] == "resumed"
    assert deployment(kube, "shop", "shop-green") is not None
    assert len(gate_messages(aws_env)) == 1


def test_a_namespace_outside_the_stack_list_is_rejected_and_changes_nothing(rollout, kube, aws_env):
    for namespace in ("kube-system", "elsewhere"):
        apps = resources.APPS_FILE.read_text().replace("namespace: shop", f"namespace: {namespace}")
        boto3.client("s3").put_object(
            Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"],
            Key=aws_env["GREENLIGHT_CONFIG_KEY"],
            Body=apps.encode(),
        )
        before = snapshot(kube)
        result = rollout(load_event("codecommit-push.json"))
        assert result["status"] == "rejected"
        assert f"apps.shop.namespace: got '{namespace}'" in result["error"]
        assert snapshot(kube) == before
    assert gate_messages(aws_env) == []


def test_missing_namespace_fails_the_rollout_clearly(rollout, kube, aws_env, monkeypatch):
    # Listed in AppNamespaces, but neither created nor given the function's Role: the stand-in
    # answers 403 (no Role there) where a cluster without RBAC would answer 404.
    monkeypatch.setenv("GREENLIGHT_APP_NAMESPACES", "shop,blog,nowhere")
    apps = resources.APPS_FILE.read_text().replace("namespace: shop", "namespace: nowhere")
    boto3.client("s3").put_object(
        Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"],
        Key=aws_env["GREENLIGHT_CONFIG_KEY"],
        Body=apps.encode(),
    )
    result = rollout(load_event("codecommit-push.json"))
    assert result["status"] == "failed"
    assert 'the namespace "nowhere"' in result["detail"]
    phases = {i["sk"]["S"]: i for i in table_items()}
    record = phases[f"rollout#{result['rollout_id']}"]
    assert record["phase"]["S"] == "failed" and record["reason"]["S"] == result["detail"]
    assert gate_messages(aws_env) == []


def test_a_deployment_not_made_by_greenlight_is_not_overwritten(rollout, kube):
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-green", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "legacy"}},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "web", "image": "x:1"}]},
            },
        },
    }
    kube.cluster.create(kind_named("deployments"), "shop", foreign)
    result = rollout(load_event("codecommit-push.json"))
    assert result["status"] == "failed" and "not made by Greenlight" in result["detail"]
    image = deployment(kube, "shop", "shop-green")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "x:1"
