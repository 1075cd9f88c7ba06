"""The hand-off to the health gate: an SQS message per rollout, delayed by a few seconds.

SQS ``DelaySeconds`` (0-900 s per message) lets the gate look at a rollout every few seconds,
which a one-minute schedule cannot; the gate re-queues its own next look the same way.
"""

from __future__ import annotations

import json
from typing import Any


def gate_message(
    *, app: str, rollout_id: str, attempt: int = 0, successes: int = 0, failures: int = 0
) -> dict[str, Any]:
    """A gate check. ``successes``/``failures`` carry the consecutive health-check counts from
    one check to the next; a lost message only restarts the count (never skips a check)."""
    return {
        "kind": "gate-check",
        "app": app,
        "rollout_id": rollout_id,
        "attempt": attempt,
        "successes": successes,
        "failures": failures,
    }


def hand_off(
    sqs: Any,
    *,
    queue_url: str,
    app: str,
    rollout_id: str,
    delay_seconds: int,
    attempt: int = 0,
    successes: int = 0,
    failures: int = 0,
) -> str:
    """Queue a gate check for ``rollout_id``; returns the SQS message id."""
    message = gate_message(
        app=app, rollout_id=rollout_id, attempt=attempt, successes=successes, failures=failures
    )
    response = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(message),
        DelaySeconds=max(0, min(delay_seconds, 900)),
        MessageAttributes={"app": {"DataType": "String", "StringValue": app}},
    )
    message_id: str = response["MessageId"]
    return message_id
