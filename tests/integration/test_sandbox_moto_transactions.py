"""The sandbox's moto transactions (moto_transactions.py): backed up item by item, with the
outcome moto's whole-table copy gives, written and cancelled, on the rollouts table and its
stream."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends

from greenlight_sandbox import resources
from greenlight_sandbox.moto_transactions import install


@pytest.fixture
def ddb(aws):
    install()
    resources.create_tables(aws)
    return boto3.client("dynamodb")


def key(sk: str) -> dict:
    return {"pk": {"S": "app#shop"}, "sk": {"S": sk}}


def table():
    return dynamodb_backends[resources.ACCOUNT][resources.REGION].tables[resources.TABLE]


def stream(ddb) -> list[tuple[str, str]]:
    streams = boto3.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=resources.TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return [(r["eventName"], r["dynamodb"]["Keys"]["sk"]["S"]) for r in records]


def writes(phase: str) -> list[dict]:
    return [
        {"Put": {"TableName": resources.TABLE, "Item": key("rollout#2") | {"n": {"N": "2"}}}},
        {
            "Update": {
                "TableName": resources.TABLE,
                "Key": key("state"),
                "UpdateExpression": "SET phase = :p",
                "ExpressionAttributeValues": {":p": {"S": phase}},
            }
        },
    ]


def test_a_cancelled_transaction_leaves_every_item_and_the_stream_as_they_were(ddb):
    ddb.put_item(TableName=resources.TABLE, Item=key("state") | {"phase": {"S": "gating"}})
    held = table()
    check = {
        "ConditionCheck": {
            "TableName": resources.TABLE,
            "Key": key("rollout#1"),
            "ConditionExpression": "attribute_exists(pk)",  # absent: the transaction fails
        }
    }
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=[*writes("promoting"), check])
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert "Item" not in ddb.get_item(TableName=resources.TABLE, Key=key("rollout#2"))
    state = ddb.get_item(TableName=resources.TABLE, Key=key("state"))["Item"]
    assert state["phase"] == {"S": "gating"}
    assert stream(ddb) == [("INSERT", "state")]  # the put before it, nothing of the transaction
    assert table() is held  # put back item by item: the table itself was never copied


def test_a_transaction_that_holds_writes_every_item_and_its_records(ddb):
    ddb.put_item(TableName=resources.TABLE, Item=key("state") | {"phase": {"S": "gating"}})
    ddb.transact_write_items(TransactItems=writes("promoting"))
    assert ddb.get_item(TableName=resources.TABLE, Key=key("rollout#2"))["Item"]["n"] == {"N": "2"}
    state = ddb.get_item(TableName=resources.TABLE, Key=key("state"))["Item"]
    assert state["phase"] == {"S": "promoting"}
    assert stream(ddb) == [("INSERT", "state"), ("INSERT", "rollout#2"), ("MODIFY", "state")]


def test_a_transaction_moto_refuses_whole_changes_nothing(ddb):
    # The same item twice: moto writes the first, then refuses the transaction whole.
    twice = [writes("a")[1], writes("b")[1]]
    with pytest.raises(ClientError, match=r"ValidationException|multiple operations"):
        ddb.transact_write_items(TransactItems=twice)
    assert "Item" not in ddb.get_item(TableName=resources.TABLE, Key=key("state"))
    assert stream(ddb) == []


def test_a_stream_reader_never_sees_a_record_of_a_transaction_under_way(ddb):
    ddb.put_item(TableName=resources.TABLE, Item=key("state") | {"phase": {"S": "gating"}})
    backend = dynamodb_backends[resources.ACCOUNT][resources.REGION]
    shard = table().stream_shard
    seen_during: list[int] = []
    update = backend.update_item

    def watched(*args, **kwargs):  # the transaction's second item, its first written already
        seen_during.append(len(shard.items))
        return update(*args, **kwargs)

    backend.update_item = watched
    try:
        ddb.transact_write_items(TransactItems=writes("promoting"))
    finally:
        del backend.update_item  # moto's own again
    assert seen_during == [1]  # the put before it only: the transaction's own put held back
    assert stream(ddb) == [("INSERT", "state"), ("INSERT", "rollout#2"), ("MODIFY", "state")]
    sequence = [int(r.record["dynamodb"]["SequenceNumber"]) for r in shard.items]
    assert sequence == sorted(set(sequence))
