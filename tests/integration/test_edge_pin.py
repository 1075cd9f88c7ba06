"""A rollback that sticks: releases listed, a rollback to a chosen release pins the edge, every
push refused while pinned, unpin (the real haproxy handler, moto, the stand-in, the fleet)."""

from __future__ import annotations

import re

import boto3
import pytest

from greenlight.edge.publish import ConfigStore, bundle
from greenlight.store.pin import EdgePin
from tests.conftest import load_event, table_items
from tests.integration.test_haproxy_function import (  # noqa: F401 - fixtures
    BUNDLE,
    commands,
    deployed,
    edge,
    fleet,
    versions,
)


def pin_of(env):
    return EdgePin(boto3.client("dynamodb"), env["GREENLIGHT_TABLE"]).get()


@pytest.fixture
def three(edge, deployed, fleet, kube, aws_env):  # noqa: F811
    """Three releases published (and reloaded on the fleet), each with its reason: all nodes,
    then worker-1 out, then worker-2 out too (the last is live)."""
    out = [edge({"action": "push", "reason": "first"})]
    kube.cordon("worker-1")
    out.append(edge({"action": "push", "reason": "second: worker-1 cordoned"}))
    kube.cordon("worker-2")
    out.append(edge({"action": "push", "reason": "third"}))
    assert [o["status"] for o in out] == ["published"] * 3
    return out


def test_releases_newest_first_with_why_live_and_signed(edge, three, aws_env):  # noqa: F811
    listed = edge({"action": "releases"})
    assert listed["status"] == "listed" and listed["next"] is None and listed["pin"] is None
    releases = listed["releases"]
    assert [r["version_id"] for r in releases] == [o["version_id"] for o in reversed(three)]
    assert [r["sha256"] for r in releases] == [o["sha256"] for o in reversed(three)]
    assert [r["why"] for r in releases] == ["third", "second: worker-1 cordoned", "first"]
    assert [r["live"] for r in releases] == [True, False, False]
    assert all(r["signed"] for r in releases)
    assert all(r["when"].endswith("Z") and "T" in r["when"] for r in releases)
    # Paginated: one at a time, each page after the last one's version.
    page = edge({"action": "releases", "limit": 2})
    assert [r["version_id"] for r in page["releases"]] == [
        three[2]["version_id"],
        three[1]["version_id"],
    ]
    rest = edge({"action": "releases", "limit": 2, "after": page["next"]})
    assert [r["version_id"] for r in rest["releases"]] == [three[0]["version_id"]]
    assert rest["next"] is None


def test_a_version_not_signed_by_our_key_is_listed_unsigned_and_refused(edge, three, aws_env):  # noqa: F811
    s3 = boto3.client("s3")
    live = ConfigStore(s3, aws_env["GREENLIGHT_CONFIG_BUCKET"], BUNDLE).files()
    # Written without a signature and without a reason (as before ``why`` existed).
    s3.put_object(
        Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"],
        Key=BUNDLE,
        Body=bundle(live),
        Metadata={"sha256": __import__("hashlib").sha256(bundle(live)).hexdigest()},
    )
    unsigned = edge({"action": "releases"})["releases"][0]
    assert unsigned["live"] and not unsigned["signed"] and unsigned["why"] == ""
    edge({"action": "push", "reason": "signed again"})  # the same bytes, written signed
    refused = edge({"action": "rollback", "release": unsigned["version_id"]})
    assert refused["status"] == "rejected" and refused["error"].startswith("release: ")
    assert "not signed" in refused["error"] and pin_of(aws_env) is None


def test_rollback_to_a_chosen_release_by_version_pins_the_edge(edge, three, fleet, aws_env):  # noqa: F811
    before = len(versions(aws_env))
    rolled = edge({"action": "rollback", "release": three[0]["version_id"], "reason": "bad nodes"})
    assert rolled["status"] == "rolled-back" and rolled["sha256"] == three[0]["sha256"]
    assert rolled["release"] == three[0]["version_id"]
    assert rolled["fleet"]["status"] == "applied"  # reloaded as today
    assert len(versions(aws_env)) == before + 1  # a copy: the history keeps every step
    pin = pin_of(aws_env)
    assert (pin.version_id, pin.sha256, pin.why) == (
        three[0]["version_id"],
        three[0]["sha256"],
        "bad nodes",
    )
    assert pin.who and rolled["pin"]["status"] == "pinned"
    listed = edge({"action": "releases"})
    assert listed["releases"][0]["why"] == "bad nodes" and listed["releases"][0]["live"]
    assert listed["releases"][0]["origin"] == three[0]["version_id"]
    assert listed["pin"]["version_id"] == three[0]["version_id"]


def test_rollback_by_sha_prefix_and_the_default_never_flips_forward(edge, three, aws_env):  # noqa: F811
    by_prefix = edge({"action": "rollback", "release": three[1]["sha256"][:12]})
    assert by_prefix["status"] == "rolled-back" and by_prefix["release"] == three[1]["version_id"]
    assert pin_of(aws_env).sha256 == three[1]["sha256"]
    # The default goes on back from the release rolled back to (not forward to the third).
    again = edge({"action": "rollback"})
    assert again["sha256"] == three[0]["sha256"] and again["release"] == three[0]["version_id"]
    assert pin_of(aws_env).version_id == three[0]["version_id"]


@pytest.mark.parametrize(
    ("release", "says"),
    [
        ("no-such-version", "no release with version id"),
        ("abc123", "at least 12 hex"),
        ("0" * 12, "no release among the newest"),
        ("", "release: expected"),
        (12, "release: expected"),
    ],
)
def test_an_unknown_release_is_rejected_by_name(edge, three, aws_env, release, says):  # noqa: F811
    before = versions(aws_env)
    refused = edge({"action": "rollback", "release": release})
    assert refused["status"] == "rejected" and says in refused["error"]
    assert refused["error"].startswith("release")
    assert versions(aws_env) == before and pin_of(aws_env) is None


@pytest.mark.parametrize(
    "event",
    [
        {"action": "push"},
        {"action": "push", "prospect": {"app": "shop", "colour": "green"}},
        load_event("schedule-reconcile.json"),
        load_event("asg-instance-launch.json"),
    ],
)
def test_pushes_are_refused_while_pinned(edge, three, kube, fleet, aws_env, event):  # noqa: F811
    edge({"action": "rollback", "release": three[0]["version_id"], "reason": "incident 42"})
    kube.cordon("worker-1", unschedulable=False)  # the cluster moves on: a push would publish
    before, sent = versions(aws_env), len(commands())
    refused = edge(event)  # asynchronous triggers answer too: no raise, no Lambda retry
    assert refused["status"] == "pinned"
    error = refused["error"]
    assert error.startswith(f"the edge is pinned to release {three[0]['version_id']}")
    assert f"({three[0]['sha256'][:12]})" in error and ": incident 42;" in error
    assert error.endswith('unpin with {"action": "unpin"} first')
    assert versions(aws_env) == before and len(commands()) == sent  # nothing rendered or sent
    assert "prospect" not in refused


def test_reload_of_the_pinned_release_is_allowed(edge, three, fleet, aws_env):  # noqa: F811
    edge({"action": "rollback", "release": three[1]["version_id"]})
    healed = edge({"action": "reload", "reason": "an instance replaced"})
    assert healed["fleet"]["status"] == "applied" and healed["sha256"] == three[1]["sha256"]
    assert healed["pin"]["version_id"] == three[1]["version_id"]


def test_unpin_then_the_push_moves_forward(edge, three, kube, fleet, aws_env):  # noqa: F811
    edge({"action": "rollback", "release": three[0]["version_id"]})
    kube.cordon("worker-2", unschedulable=False)
    unpinned = edge({"action": "unpin", "reason": "incident over"})
    assert unpinned["unpin"]["status"] == "unpinned" and pin_of(aws_env) is None
    assert unpinned["status"] == "published" and unpinned["fleet"]["status"] == "applied"
    assert unpinned["sha256"] not in (three[0]["sha256"], three[2]["sha256"])
    assert edge({"action": "push"})["status"] == "unchanged"  # pushes run again
    nothing = edge({"action": "unpin"})
    assert nothing["status"] == "not-pinned" and "nothing changed" in nothing["detail"]


def test_dry_runs_change_nothing(edge, three, kube, fleet, aws_env):  # noqa: F811
    before, items, sent = versions(aws_env), table_items(), len(commands())
    plan = edge({"action": "rollback", "release": three[0]["version_id"], "dry_run": True})
    assert plan["status"] == "would-roll-back" and plan["release"] == three[0]["version_id"]
    assert "worker-1" in plan["diff"]  # the diff against live
    assert plan["pin"] == {
        "status": "would-pin",
        "version_id": three[0]["version_id"],
        "sha256": three[0]["sha256"],
    }
    assert versions(aws_env) == before and table_items() == items and len(commands()) == sent

    edge({"action": "rollback", "release": three[0]["version_id"]})
    kube.cordon("worker-1", unschedulable=False)
    before, items, sent = versions(aws_env), table_items(), len(commands())
    would = edge({"action": "unpin", "dry_run": True})
    assert would["unpin"]["status"] == "would-unpin" and would["status"] == "would-publish"
    # What would be pushed: the cluster's render (worker-2 still cordoned) against the pinned.
    assert re.search(r"^-\s+server worker-2_", would["diff"], re.M), would["diff"]
    assert versions(aws_env) == before and table_items() == items and len(commands()) == sent
    assert pin_of(aws_env) is not None


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"action": "push", "release": "abc"}, "release"),
        ({"action": "rollback", "limit": 3}, "limit"),
        ({"action": "releases", "limit": 0}, "limit"),
        ({"action": "releases", "limit": True}, "limit"),
        ({"action": "releases", "after": 5}, "after"),
    ],
)
def test_bad_pin_fields_are_rejected_by_name(edge, deployed, aws_env, event, field):  # noqa: F811
    refused = edge(event)
    assert refused["status"] == "rejected" and refused["error"].startswith(f"{field}:")
