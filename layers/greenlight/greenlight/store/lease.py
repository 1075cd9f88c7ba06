"""The edge lock: one push writes the HAProxy config at a time (``pk = edge#lock``, ``sk = lock``).

The haproxy function takes the lock before it publishes or reloads anything and lets it go in
a ``finally``. A push that finds it held waits for it, polling (backing off to
``poll_seconds``), within its deadline: pushes queue one behind another instead of being
throttled. The item names its holder (``owner``: the invocation's request id), why it pushes,
and when the lock expires: the holder's own deadline plus :data:`EXPIRY_MARGIN_SECONDS` (a
holder never works past its deadline). A lock whose holder died is taken over once it has
expired, by a conditional write on the exact holder and expiry that was seen, so two waiters
never both take it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from .marshal import condition_failed as _failed
from .marshal import item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from ..deadline import Deadline

LOCK_PK = "edge#lock"
LOCK_SK = "lock"
EXPIRY_MARGIN_SECONDS = 10
MAX_IMMEDIATE_RETRIES = 5  # a lock let go between the put and the read: tried again at once


class Holder(NamedTuple):
    owner: str
    why: str
    expires_ms: int


class Held(NamedTuple):
    """The lock, taken: how long it was waited for, who held it when the wait began, and the
    expired holder it was taken over from (if any)."""

    owner: str
    waited_seconds: float
    waited_for: str | None = None
    taken_over_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "waited_seconds": round(self.waited_seconds, 3),
            "waited_for": self.waited_for,
            "taken_over_from": self.taken_over_from,
        }


@dataclass
class EdgeLock:
    client: DynamoDBClient
    table: str
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    first_poll_seconds: float = 0.2
    poll_seconds: float = 1.0

    def acquire(self, owner: str, why: str, *, wait: Deadline, hold: Deadline) -> Held | Holder:
        """Take the lock for ``owner`` until ``hold`` (its deadline) ends, waiting for it until
        ``wait``. The lock (:class:`Held`), or who still holds it when the wait ends."""
        started = wait.clock()
        pause = self.first_poll_seconds
        first: Holder | None = None
        got: str | Holder | None = Holder("", "", 0)
        tries = 0
        # Each round sleeps (at least first_poll_seconds) or ends; a lock let go between two
        # reads is tried again at once, a bounded number of times.
        while isinstance(got, Holder) and (tries == 0 or wait.remaining() >= pause):
            if tries and got.owner:
                self.sleep(pause)
                pause = min(pause * 1.5, self.poll_seconds)
            tries += 1
            expires_ms = int((self.wall() + hold.remaining() + EXPIRY_MARGIN_SECONDS) * 1000)
            got = self._try(owner, why, expires_ms)
            if isinstance(got, Holder) and got.owner:
                first = first or got
            elif isinstance(got, Holder) and tries >= MAX_IMMEDIATE_RETRIES:
                break
        if isinstance(got, Holder):
            return got
        return Held(owner, wait.clock() - started, first.owner if first else None, got)

    def release(self, owner: str) -> bool:
        """Let the lock go, if ``owner`` still holds it."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._key(),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": value(owner)},
            )
        except ClientError as exc:
            if _failed(exc):
                return False
            raise
        return True

    def holder(self) -> Holder | None:
        found = self.client.get_item(
            TableName=self.table, Key=self._key(), ConsistentRead=True
        ).get("Item")
        if not found:
            return None
        data = plain(found)
        return Holder(str(data["owner"]), str(data.get("why", "")), int(data["expires_ms"]))

    def _try(self, owner: str, why: str, expires_ms: int) -> str | Holder | None:
        """One attempt: None (taken, free), the expired holder's id (taken over from it), or
        the holder that keeps it."""
        body = self._key() | item({"owner": owner, "why": why[:200], "expires_ms": expires_ms})
        try:
            self.client.put_item(
                TableName=self.table,
                Item=body,
                ConditionExpression="attribute_not_exists(pk)",
            )
            return None
        except ClientError as exc:
            if not _failed(exc):
                raise
        holder = self.holder()
        if holder is None:  # let go meanwhile: the next attempt takes it
            return Holder("", "", 0)
        if holder.expires_ms > int(self.wall() * 1000):
            return holder
        try:  # expired: taken over, only from the very holder seen
            self.client.put_item(
                TableName=self.table,
                Item=body,
                ConditionExpression="#owner = :seen AND expires_ms = :expires",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":seen": value(holder.owner),
                    ":expires": value(holder.expires_ms),
                },
            )
        except ClientError as exc:
            if not _failed(exc):
                raise
            return holder
        return holder.owner

    def _key(self) -> dict[str, Any]:
        return {"pk": value(LOCK_PK), "sk": value(LOCK_SK)}
