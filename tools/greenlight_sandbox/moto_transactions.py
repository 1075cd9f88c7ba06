"""moto's DynamoDB transactions, backed up item by item.

moto's TransactWriteItems deep-copies every table it names before it writes, to put the table
back if the transaction is cancelled. The sandbox's rollouts table and its stream grow with every
rollout, and one transaction came to take a second. :func:`install` makes a transaction keep a
copy of the items it touches instead, and put those back when it is cancelled (moto's own
rollback then has nothing to undo): the same outcome, at the cost of the items touched. The
stream records a transaction writes are held back until it has written every item, and dropped
if it is cancelled: a stream reader (which does not wait for table requests) never sees a
record of a write that was undone, and the records' sequence numbers never go back. It is
installed once, for the whole process.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto.dynamodb import models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table

Saved = tuple[Table, DynamoType, DynamoType | None, Any]


class _TablesNotCopied:
    """The ``copy`` module as moto's DynamoDB models see it once installed: a table is not
    copied (its items are, by :func:`_backed_up`)."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _key(table: Table, op_type: str, op: dict[str, Any]) -> tuple[DynamoType, DynamoType | None]:
    """The item an operation of a transaction writes or checks (KeyError if it names none:
    moto refuses such a request itself)."""
    raw = op["Item"] if op_type == "Put" else op["Key"]
    range_attr = table.range_key_attr
    hash_value = DynamoType(raw[table.hash_key_attr])
    return hash_value, DynamoType(raw[range_attr]) if range_attr else None


def _backed_up(backend: Any, transact_items: list[dict[str, Any]]) -> list[Saved]:
    """A copy of every item the transaction touches (None: absent)."""
    saved: list[Saved] = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables[op["TableName"]]
            hash_value, range_value = _key(table, op_type, op)
        except (AttributeError, KeyError, StopIteration, TypeError):
            continue  # moto refuses it with its own error
        saved.append(
            (table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value)))
        )
    return saved


def _put_back(saved: list[Saved]) -> None:
    for table, hash_value, range_value, item in reversed(saved):  # an item's first copy wins
        if range_value is None:
            held: dict[Any, Any] = table.items
            key = hash_value
        else:
            held, key = table.items[hash_value], range_value
        if item is not None:
            held[key] = item
            continue
        held.pop(key, None)
        if range_value is not None and not held:
            table.items.pop(hash_value, None)  # no empty partition left behind


class _HeldBack(threading.local):
    """The stream records of the transaction under way on this thread (None: none is)."""

    records: list[tuple[StreamShard, Any, Any]] | None = None


_held = _HeldBack()


def install() -> None:
    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "greenlight", False):
        return
    original = backend.transact_write_items
    add = StreamShard.add

    def held_back(shard: StreamShard, old: Any, new: Any) -> None:
        if _held.records is None:
            add(shard, old, new)
        else:
            _held.records.append((shard, old, new))

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = _backed_up(self, transact_items if isinstance(transact_items, list) else [])
        _held.records = []
        try:
            original(self, transact_items)
        except BaseException:
            _put_back(saved)
            raise
        else:
            for shard, old, new in _held.records:
                add(shard, old, new)
        finally:
            _held.records = None

    transact_write_items.greenlight = True  # type: ignore[attr-defined]
    models.copy = _TablesNotCopied  # type: ignore[assignment]
    StreamShard.add = held_back  # type: ignore[method-assign]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
