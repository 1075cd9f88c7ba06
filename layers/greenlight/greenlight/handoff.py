"""The hand-off to the health gate: an SQS message per check, delayed by a few seconds.

The rollout function queues a rollout's first check; the gate queues every later one.

SQS ``DelaySeconds`` (0-900 s per message) lets the gate look at a rollout every few seconds,
which a one-minute schedule cannot; the gate re-queues its own next look the same way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def gate_message(
    *,
    app: str,
    rollout_id: str,
    attempt: int = 0,
    successes: int = 0,
    failures: int = 0,
    chain: str = "",
) -> dict[str, Any]:
    """A gate check. ``successes``/``failures`` carry the consecutive health-check counts from
    one check to the next; a lost message only restarts the count (never skips a check).
    ``chain`` names the chain of checks the message belongs to: the gate drops a message whose
    chain is not the rollout's current one (a redelivery after its chain was taken over)."""
    message: dict[str, Any] = {
        "kind": "gate-check",
        "app": app,
        "rollout_id": rollout_id,
        "attempt": attempt,
        "successes": successes,
        "failures": failures,
    }
    if chain:
        message["chain"] = chain
    return message


def hand_off(sqs: SQSClient, *, queue_url: str, message: dict[str, Any], delay_seconds: int) -> str:
    """Queue a gate check (a ``gate_message``); returns the SQS message id."""
    response = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(message),
        DelaySeconds=max(0, min(delay_seconds, 900)),
        MessageAttributes={"app": {"DataType": "String", "StringValue": message["app"]}},
    )
    message_id: str = response["MessageId"]
    return message_id
