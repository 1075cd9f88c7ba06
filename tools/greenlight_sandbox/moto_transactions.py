"""moto's DynamoDB transactions, backed up item by item.

moto's TransactWriteItems deep-copies every table it names before it writes, to put the table
back if the transaction is cancelled. The sandbox's rollouts table and its stream grow with every
rollout, and one transaction came to take a second. :func:`install` makes a transaction keep a
copy of the items it touches and the stream's length instead, and put those back when it is
cancelled (moto's own rollback then has nothing to undo): the same outcome, at the cost of the
items touched. It is installed once, for the whole process.
"""

from __future__ import annotations

import copy
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


def _backed_up(
    backend: Any, transact_items: list[dict[str, Any]]
) -> tuple[list[Saved], dict[int, tuple[StreamShard, int]]]:
    """A copy of every item the transaction touches (None: absent), and each stream's length."""
    saved: list[Saved] = []
    streams: dict[int, tuple[StreamShard, int]] = {}
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables[op["TableName"]]
            hash_value, range_value = _key(table, op_type, op)
        except (AttributeError, KeyError, StopIteration, TypeError):
            continue  # moto answers it with its own error, having written nothing
        saved.append(
            (table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value)))
        )
        if table.stream_shard is not None:
            streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
    return saved, streams


def _put_back(saved: list[Saved], streams: dict[int, tuple[StreamShard, int]]) -> None:
    for table, hash_value, range_value, item in reversed(saved):  # an item's first copy wins
        held: dict[Any, Any] = table.items if range_value is None else table.items[hash_value]
        key = hash_value if range_value is None else range_value
        if item is None:
            held.pop(key, None)
        else:
            held[key] = item
    for shard, length in streams.values():
        del shard.items[length:]


def install() -> None:
    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "greenlight", False):
        return
    original = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved, streams = _backed_up(
            self, transact_items if isinstance(transact_items, list) else []
        )
        try:
            original(self, transact_items)
        except BaseException:
            _put_back(saved, streams)
            raise

    transact_write_items.greenlight = True  # type: ignore[attr-defined]
    models.copy = _TablesNotCopied  # type: ignore[assignment]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
