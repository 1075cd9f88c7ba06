"""The pin's pure parts: which release a rollback goes to, how a name matches one, what S3
metadata takes of a reason, what is refused while pinned, and how callers read ``pinned``."""

from __future__ import annotations

import pytest

from greenlight.edge.pinning import options_of, refusal
from greenlight.edge.publish import Release, match_release, metadata_why, previous_release
from greenlight.edgepush import PushStatus, pinned, taken, unsettled
from greenlight.errors import EventError, PermanentError
from greenlight.store.pin import Pin


def rel(version, sha, *, origin="", live=False):
    return Release(version, sha * 64 if len(sha) == 1 else sha, "t", "", live, True, origin)


def test_the_default_goes_back_from_the_release_a_copy_republished():
    # v3 live; then a rollback to v2 (its copy v2c, origin v2): the default is v1, never v3.
    plain = [rel("v3", "c", live=True), rel("v2", "b"), rel("v1", "a")]
    assert previous_release(plain).version_id == "v2"
    after = [rel("v2c", "b", origin="v2", live=True), *plain]
    assert previous_release(after).version_id == "v1"
    # The same bytes published twice in a row are one release: skipped.
    twice = [rel("v4", "c", live=True), rel("v3", "c"), rel("v2", "b")]
    assert previous_release(twice).version_id == "v2"
    assert previous_release([rel("v1", "a", live=True)]) is None
    assert previous_release([]) is None


def test_a_release_is_named_by_version_or_by_one_sha_prefix():
    a, b = "ab" * 32, "abcdef012345" + "0" * 52
    listed = [rel("v3", b), rel("v2", a), rel("v2c", a)]
    assert match_release(listed, "v2").version_id == "v2"
    assert match_release(listed, a[:12]).version_id == "v2"  # copies: one release, the newest
    with pytest.raises(PermanentError, match="at least 12 hex"):
        match_release(listed, "ab")  # short (and ambiguous): the length is said first
    with pytest.raises(PermanentError, match="ambiguous"):
        match_release([rel("x", "abcdef0123450" + "1" * 51), rel("y", b)], "abcdef012345")
    with pytest.raises(PermanentError, match="at least 12 hex"):
        match_release(listed, "abcdef")
    with pytest.raises(PermanentError, match=r"^release: no release with version id"):
        match_release(listed, "nope")


def test_why_is_what_s3_metadata_takes():
    assert metadata_why("rollback: ça\nmarche\tbien") == "rollback: a marche bien"
    long = metadata_why("x" * 1000)
    assert len(long) == 256 and long.endswith("...")
    assert metadata_why("") == ""


PIN = Pin("v1", "f" * 64, "incident 42", "req-1", 0)


def test_while_pinned_a_push_is_refused_and_a_reload_of_the_pin_is_not():
    refused = refusal("push", PIN, None)
    assert refused["status"] == "pinned"
    assert refused["error"] == (
        "the edge is pinned to release v1 (ffffffffffff) since 1970-01-01T00:00:00Z by req-1:"
        ' incident 42; unpin with {"action": "unpin"} first'
    )
    assert refusal("reload", PIN, "f" * 64) is None
    assert refusal("reload", PIN, "e" * 64)["status"] == "pinned"  # not the pinned release
    assert refusal("render", PIN, None) is None and refusal("rollback", PIN, None) is None
    assert refusal("push", None, None) is None


def test_pinned_is_settled_and_not_taken():
    answer = {"status": "pinned", "error": PIN.refusal()}
    assert pinned(answer) == PIN.refusal() and not unsettled(answer)
    assert taken(answer) == (False, PushStatus.PINNED.value)
    assert pinned({"status": "busy"}) == "" and pinned({"status": "published"}) == ""


@pytest.mark.parametrize(
    ("event", "action", "field"),
    [
        ({"release": "v1"}, "push", "release"),
        ({"release": ["v1"]}, "rollback", "release"),
        ({"limit": 101}, "releases", "limit"),
        ({"after": ""}, "releases", "after"),
        ({"after": "v1"}, "unpin", "after"),
        ({"force": True}, "push", "force"),
        ({"force": "yes"}, "rollback", "force"),
    ],
)
def test_bad_fields_are_named(event, action, field):
    with pytest.raises(EventError, match=rf"^{field}:"):
        options_of(event, action)


def test_a_rollback_takes_force_and_the_command_line_sends_it():
    import argparse

    from greenlight_sandbox.edge_cli import add_parser, event_of

    assert options_of({"force": True}, "rollback")["force"] is True
    assert options_of({}, "rollback")["force"] is False
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    forced = event_of(parser.parse_args(["edge", "rollback", "v1", "--force", "--reason", "x"]))
    assert forced == {
        "action": "rollback",
        "reason": "x",
        "dry_run": False,
        "release": "v1",
        "force": True,
    }
    plain = event_of(parser.parse_args(["edge", "rollback", "--reason", "x"]))
    assert "force" not in plain
