"""Publishing the rendered config to a versioned bucket (moto)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from greenlight.edge.publish import ConfigStore, bundle, sha256, unbundle
from greenlight.edge.render import render
from greenlight.edge.snapshot import parse_snapshot
from greenlight.errors import PermanentError

SNAPSHOT = Path(__file__).resolve().parents[2] / "events" / "cluster-snapshot.json"


def files(live_colour="blue"):
    data = json.loads(SNAPSHOT.read_text())
    data["apps"][0]["live_colour"] = live_colour
    return render(parse_snapshot(json.dumps(data)))


@pytest.fixture
def store(aws):
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket="greenlight-edge", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    s3.put_bucket_versioning(
        Bucket="greenlight-edge", VersioningConfiguration={"Status": "Enabled"}
    )
    return ConfigStore(s3, "greenlight-edge")


def versions(store):
    return store.s3.list_object_versions(Bucket="greenlight-edge").get("Versions", [])


def test_bundle_is_reproducible_and_round_trips():
    first, second = bundle(files()), bundle(dict(reversed(list(files().items()))))
    assert first == second
    assert unbundle(first) == files()


def test_publish_then_unchanged_then_changed(store):
    first = store.publish(files(), dry_run=False)
    assert first.status == "published" and first.sha256 == sha256(bundle(files()))
    head = store.s3.head_object(Bucket="greenlight-edge", Key=first.key)
    assert head["Metadata"]["sha256"] == first.sha256
    assert head["ServerSideEncryption"] == "aws:kms"

    again = store.publish(files(), dry_run=False)
    assert again.status == "unchanged" and len(versions(store)) == 1

    time.sleep(1.1)  # distinct LastModified seconds for the version order
    changed = store.publish(files("green"), dry_run=False)
    assert changed.status == "published" and changed.version_id != first.version_id
    assert store.files() == files("green")
    assert store.files(first.version_id) == files()


def test_publish_with_the_head_read_already_reads_it_no_more(store):
    assert store.head() == (None, None, {})  # nothing published yet
    calls: list[str] = []
    store.s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    first = store.publish(files(), dry_run=False, head=store.head())
    assert calls == ["HeadObject", "PutObject"] and first.status == "published"
    head = store.head()
    assert (head.sha256, head.version_id) == (first.sha256, first.version_id)
    calls.clear()
    again = store.publish(files(), dry_run=False, head=head)
    assert again.status == "unchanged" and calls == []


def test_dry_run_shows_the_diff_and_writes_nothing(store):
    store.publish(files(), dry_run=False)
    plan = store.publish(files("green"), dry_run=True)
    assert plan.status == "would-publish"
    assert "-shop.example.com shop-blue" in plan.diff
    assert "+shop.example.com shop-green" in plan.diff
    assert len(versions(store)) == 1


def test_rollback_restores_the_previous_version(store):
    first = store.publish(files(), dry_run=False)
    time.sleep(1.1)
    store.publish(files("green"), dry_run=False)
    plan = store.rollback(dry_run=True)
    assert plan.status == "would-roll-back" and "+shop.example.com shop-blue" in plan.diff
    assert len(versions(store)) == 2
    done = store.rollback(dry_run=False)
    assert done.status == "rolled-back" and done.sha256 == first.sha256
    assert store.files() == files()
    assert len(versions(store)) == 3  # history keeps every step


def test_rollback_without_history_is_refused(store):
    store.publish(files(), dry_run=False)
    with pytest.raises(PermanentError, match="no previous version"):
        store.rollback(dry_run=False)


def test_a_tampered_bundle_is_refused(store):
    store.publish(files(), dry_run=False)
    store.s3.put_object(
        Bucket="greenlight-edge",
        Key=store.key,
        Body=b"not what was hashed",
        Metadata={"sha256": sha256(bundle(files()))},
    )
    with pytest.raises(PermanentError, match="does not match"):
        store.files()
