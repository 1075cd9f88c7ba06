import copy
import json

import pytest

from greenlight.errors import EventError
from greenlight.triggers import (
    CommitPush,
    Ignored,
    ManualRollout,
    from_codecommit,
    from_github_push,
    from_manual,
    from_queued,
)
from tests.conftest import load_event


def test_codecommit_branch_update_is_a_push():
    trigger = from_codecommit(load_event("codecommit-push.json"))
    assert isinstance(trigger, CommitPush)
    assert (trigger.provider, trigger.repository, trigger.branch) == (
        "codecommit",
        "shop-web",
        "main",
    )
    assert trigger.commit == "3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b"
    assert trigger.previous == "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e"
    assert trigger.sequence == 1795684502000
    assert trigger.dedupe_id == "eventbridge:6c1f7a52-1f6a-4c4b-8f0e-8b1c1b7f2e10"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("codecommit-tag.json", "only branch pushes deploy"),
        ("codecommit-branch-deleted.json", "deleted"),
    ],
)
def test_codecommit_tags_and_deletions_are_ignored(name, reason):
    trigger = from_codecommit(load_event(name))
    assert isinstance(trigger, Ignored) and reason in trigger.reason


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("detail", "commitId"), "xyz", "detail.commitId: expected a 40-hex-digit commit id"),
        (("time",), "yesterday", "time: expected an ISO 8601 time"),
        (("detail", "repositoryName"), "", "detail.repositoryName: expected a non-empty string"),
        (("source",), "aws.s3", "source: expected 'aws.codecommit'"),
    ],
)
def test_malformed_codecommit_events_fail_with_the_field(path, value, message):
    event = copy.deepcopy(load_event("codecommit-push.json"))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(EventError, match=message):
        from_codecommit(event)


def _github_body(name):
    return json.loads(load_event(name)["body"])


def test_github_push_uses_pushed_at_for_ordering():
    trigger = from_github_push(_github_body("github-push.json"), delivery="d-1")
    assert isinstance(trigger, CommitPush)
    assert (trigger.repository, trigger.branch, trigger.sequence) == (
        "acme/blog",
        "main",
        1795684502000,
    )
    assert trigger.dedupe_id == "github:d-1"


@pytest.mark.parametrize("name", ["github-tag-push.json", "github-branch-deleted.json"])
def test_github_tag_and_deletion_are_ignored(name):
    assert isinstance(from_github_push(_github_body(name), delivery="d"), Ignored)


def test_github_after_all_zeros_is_a_deletion_even_without_the_flag():
    body = _github_body("github-push.json") | {"after": "0" * 40, "deleted": False}
    trigger = from_github_push(body, delivery="d")
    assert isinstance(trigger, Ignored) and "deleted" in trigger.reason


def test_manual_payload_round_trip():
    trigger = from_manual(load_event("manual-rollout.json"), now_ms=5, request_id="r-1")
    assert trigger == ManualRollout(
        app="shop",
        commit="3f9d2a41c0b7e5d6a8f1c2b3d4e5f60718293a4b",
        image=None,
        sequence=5,
        dedupe_id="manual:r-1",
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"app": "shop"}, "give 'commit'"),
        ({"app": "shop", "commit": "abc"}, "payload.commit: expected a 40-hex-digit"),
        ({"app": "shop", "image": "no-tag"}, "payload.image: expected 'repository:tag'"),
        ({"app": "shop", "commit": "a" * 40, "colour": "blue"}, r"unknown field\(s\) \['colour'\]"),
        ({"action": "delete", "app": "shop"}, "action: expected 'rollout'"),
        ({"commit": "a" * 40}, "payload.app: expected a non-empty string"),
    ],
)
def test_malformed_manual_payloads(payload, message):
    with pytest.raises(EventError, match=message):
        from_manual(payload, now_ms=1, request_id="r")


def test_queued_push_round_trips_and_rejects_garbage():
    push = from_github_push(_github_body("github-push.json"), delivery="d-1")
    assert from_queued(push.to_dict()) == push
    with pytest.raises(EventError):
        from_queued({"kind": "push", "sequence": "soon"})
