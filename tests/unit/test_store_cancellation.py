"""Why DynamoDB cancelled a transaction, and what acceptance makes of it: only a failed
condition on the state item (read again: not newer) or on the rollout item (recorded already)
is stale; a cancellation with no failed condition is temporary, never "not newer"."""

from __future__ import annotations

import pytest

from greenlight.store.rollouts import Cancellation, cancellation, stale

CCF = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
FINE = {"Code": "None"}
CONFLICT = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
THROTTLED = {"Code": "ThrottlingError"}


@pytest.mark.parametrize(
    ("reasons", "count", "failed", "other"),
    [
        ([CCF, FINE, FINE], 3, (True, False, False), ()),
        ([FINE, CCF], 2, (False, True), ()),
        ([FINE, CONFLICT, FINE], 3, (False, False, False), ("TransactionConflict",)),
        ([CONFLICT, CONFLICT], 2, (False, False), ("TransactionConflict",)),
        ([THROTTLED, FINE], 2, (False, False), ("ThrottlingError",)),
        (
            [{"Code": "ProvisionedThroughputExceeded"}, CONFLICT],
            2,
            (False, False),
            ("ProvisionedThroughputExceeded", "TransactionConflict"),
        ),
        ([CCF, CONFLICT], 2, (True, False), ("TransactionConflict",)),
        ([], 2, (False, False), ("no cancellation reasons",)),
        ([CCF], 2, (True, False), ()),
        ([{}, FINE], 2, (False, False), ()),
    ],
)
def test_cancellation_reasons_are_read_item_by_item(reasons, count, failed, other):
    assert cancellation(reasons, count) == Cancellation(failed, other)


@pytest.mark.parametrize(
    ("reasons", "contended"),
    [
        ([CCF, FINE], False),
        ([FINE, FINE, CCF], False),
        ([CONFLICT, FINE], True),
        ([THROTTLED, FINE], True),
        ([], True),
    ],
)
def test_a_cancellation_without_a_failed_condition_is_contended(reasons, contended):
    assert cancellation(reasons, 3).contended is contended


@pytest.mark.parametrize(
    ("reasons", "newer", "expected"),
    [
        ([CCF, FINE, FINE], False, True),  # the state item: not newer, read again
        ([CCF, FINE, FINE], True, False),  # the state moved on underneath, still older: again
        ([FINE, CCF, FINE], True, True),  # the rollout is recorded already (the same push)
        ([CCF, CCF, FINE], True, True),
        ([FINE, FINE, CCF], False, False),  # what it supersedes moved: read again, try again
        ([CONFLICT, FINE, FINE], False, False),  # never stale: temporary
        ([FINE, THROTTLED, FINE], False, False),
        ([], False, False),
    ],
)
def test_only_the_state_or_rollout_items_condition_makes_a_push_stale(reasons, newer, expected):
    assert stale(cancellation(reasons, 3), newer=newer) is expected
