"""A push's sequence (its time) is capped at now plus SEQUENCE_SKEW_SECONDS: a far-future push
would make every real push of its app "not newer" until then."""

from __future__ import annotations

import pytest

from greenlight.errors import PermanentError
from greenlight.triggers import (
    SEQUENCE_SKEW_SECONDS,
    CommitPush,
    FutureSequence,
    Ignored,
    ManualRollout,
    from_queued,
    not_ahead,
)

NOW = 1_795_684_502_000  # ms
SKEW_MS = SEQUENCE_SKEW_SECONDS * 1000


def push(sequence: int) -> CommitPush:
    return CommitPush(
        provider="github",
        repository="acme/blog",
        branch="main",
        commit="9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807",
        previous=None,
        sequence=sequence,
        dedupe_id="github:d-1",
    )


@pytest.mark.parametrize("sequence", [0, NOW - 86_400_000, NOW, NOW + 1, NOW + SKEW_MS])
def test_a_push_up_to_now_plus_the_skew_passes_unchanged(sequence):
    trigger = push(sequence)
    assert not_ahead(trigger, now_ms=NOW) is trigger


@pytest.mark.parametrize("sequence", [NOW + SKEW_MS + 1, NOW + 3_600_000, 2**62])
def test_a_push_beyond_now_plus_the_skew_is_refused_for_good_naming_the_field(sequence):
    with pytest.raises(FutureSequence) as refused:
        not_ahead(push(sequence), now_ms=NOW)
    assert isinstance(refused.value, PermanentError)  # a dead letter, never retried
    message = str(refused.value)
    assert message.startswith("sequence: ") and str(sequence) in message
    assert f"{SEQUENCE_SKEW_SECONDS} s" in message


def test_a_manual_rollout_is_capped_too_and_an_ignored_event_has_no_sequence():
    manual = ManualRollout(
        app="shop", commit=None, image="r/shop:v1", sequence=NOW + SKEW_MS + 1, dedupe_id="m"
    )
    with pytest.raises(FutureSequence):
        not_ahead(manual, now_ms=NOW)
    ignored = Ignored(reason="a tag")
    assert not_ahead(ignored, now_ms=NOW) is ignored


def test_a_queued_sequence_must_be_an_integer_not_a_boolean():
    body = push(NOW).to_dict()
    assert from_queued(body) == push(NOW)
    with pytest.raises(PermanentError, match="sequence"):
        from_queued(body | {"sequence": True})
