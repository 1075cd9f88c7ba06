"""The rollouts table's stream, read as Lambda's event source mapping reads it.

:class:`StreamTail` keeps one iterator per shard of moto's DynamoDB stream and hands out what
was written since the last read, shaped as the records of a Lambda DynamoDB stream event.
"""

from __future__ import annotations

import time
from typing import Any

DESCRIBE_SECONDS = 5.0


class StreamTail:
    def __init__(self, session: Any, table: str) -> None:
        self._ddb = session.client("dynamodb")
        self._streams = session.client("dynamodbstreams")
        self.arn: str = self._ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str] = {}
        self._shard_ids: list[str] = []
        self._described_at = float("-inf")

    def _shards(self) -> list[str]:
        """The stream's shards, described again at most every :data:`DESCRIBE_SECONDS` (as
        Lambda's poller does not describe the stream before every read)."""
        if time.monotonic() - self._described_at >= DESCRIBE_SECONDS:
            found = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]
            self._shard_ids = [shard["ShardId"] for shard in found["Shards"]]
            self._described_at = time.monotonic()
        return self._shard_ids

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read, oldest first."""
        records: list[dict[str, Any]] = []
        for shard in self._shards():
            iterator = (
                self._iterators.get(shard)
                or self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            for _ in range(100):  # 100 pages of 1000: more than a sandbox ever writes
                answer = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = answer["NextShardIterator"]
                records += [r | {"eventSourceARN": self.arn} for r in answer["Records"]]
                if not answer["Records"]:
                    break
            self._iterators[shard] = iterator
        return records

    def event(self) -> dict[str, Any]:
        """What was written since the last read, as one stream event for a Lambda."""
        return {"Records": self.read()}
