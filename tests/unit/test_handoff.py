"""The hand-off to the gate: a delayed SQS message per rollout."""

import json
import time

import boto3
from moto import mock_aws

from greenlight.handoff import gate_message, hand_off


def test_gate_message_is_delayed_and_carries_the_rollout(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="gate")["QueueUrl"]
        message = gate_message(app="shop", rollout_id="r-1")
        hand_off(sqs, queue_url=url, message=message, delay_seconds=1)
        assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
        time.sleep(1.2)
        (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"]) == {
            "kind": "gate-check",
            "app": "shop",
            "rollout_id": "r-1",
            "attempt": 0,
            "successes": 0,
            "failures": 0,
        }


def test_a_chain_is_named_only_when_there_is_one():
    assert "chain" not in gate_message(app="shop", rollout_id="r-1")
    assert gate_message(app="shop", rollout_id="r-1", chain="c1")["chain"] == "c1"
