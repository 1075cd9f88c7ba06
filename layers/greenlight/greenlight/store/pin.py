"""The edge pin: the release a rollback fixed the fleet to (``pk = edge#pin``, ``sk = pin``).

A ``rollback`` writes it (after choosing the release, before republishing it), ``unpin`` removes
it. While it is there, the haproxy function refuses every push before it renders anything
(``edge/pinning.py``): the reconcile schedule, instance events, the rollout and gate functions'
pushes and the night's all answer ``pinned`` with :meth:`Pin.refusal`. Both writes are
conditional on the pin seen before (none, or the exact one), so a pin is never overwritten or
removed unseen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..errors import PermanentError
from .marshal import condition_failed as _failed
from .marshal import item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PIN_PK = "edge#pin"
PIN_SK = "pin"


def iso(epoch_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


@dataclass(frozen=True)
class Pin:
    version_id: str  # the release rolled back to (the S3 version chosen)
    sha256: str
    why: str
    who: str  # the request id of the rollback, and the caller when known
    since: int  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "sha256": self.sha256,
            "why": self.why,
            "who": self.who,
            "since": iso(self.since),
        }

    def refusal(self) -> str:
        """Why a push is refused while this pin holds, and what to do."""
        return (
            f"the edge is pinned to release {self.version_id} ({self.sha256[:12]}) since"
            f" {iso(self.since)} by {self.who}: {self.why}; unpin with"
            ' {"action": "unpin"} first'
        )


@dataclass
class EdgePin:
    client: DynamoDBClient
    table: str
    clock: Callable[[], float] = time.time

    def get(self) -> Pin | None:
        found = self.client.get_item(
            TableName=self.table, Key=self._key(), ConsistentRead=True
        ).get("Item")
        if not found:
            return None
        data = plain(found)
        return Pin(
            str(data["version_id"]),
            str(data["sha256"]),
            str(data.get("why", "")),
            str(data.get("who", "")),
            int(data["since"]),
        )

    def pin(self, version_id: str, sha256: str, *, why: str, who: str, seen: Pin | None) -> Pin:
        """Pin ``version_id``, replacing ``seen`` (the pin read before; None: there was none).
        PermanentError when the pin changed meanwhile: nothing is written."""
        pinned = Pin(version_id, sha256, why[:500], who[:200], int(self.clock()))
        try:
            self.client.put_item(TableName=self.table, Item=self._body(pinned), **self._seen(seen))
        except ClientError as exc:
            if _failed(exc):
                raise PermanentError(
                    "pin: changed by another writer meanwhile; try again"
                ) from None
            raise
        return pinned

    def restore(self, pinned: Pin, seen: Pin | None) -> None:
        """Undo :meth:`pin` (its republish failed): ``seen`` back, or no pin."""
        if seen is None:
            self.unpin(pinned)
            return
        try:
            self.client.put_item(TableName=self.table, Item=self._body(seen), **self._seen(pinned))
        except ClientError as exc:
            if not _failed(exc):
                raise

    def unpin(self, seen: Pin) -> bool:
        """Remove the pin, if it is still ``seen``; whether it was removed."""
        try:
            self.client.delete_item(TableName=self.table, Key=self._key(), **self._seen(seen))
        except ClientError as exc:
            if _failed(exc):
                return False
            raise
        return True

    @staticmethod
    def _seen(seen: Pin | None) -> dict[str, Any]:
        if seen is None:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {
            "ConditionExpression": "version_id = :version AND since = :since",
            "ExpressionAttributeValues": {
                ":version": value(seen.version_id),
                ":since": value(seen.since),
            },
        }

    def _key(self) -> dict[str, Any]:
        return {"pk": value(PIN_PK), "sk": value(PIN_SK)}

    def _body(self, pin: Pin) -> dict[str, Any]:
        """The pin's item (``since`` in epoch seconds, as stored)."""
        return self._key() | item(pin.to_dict() | {"since": pin.since})
