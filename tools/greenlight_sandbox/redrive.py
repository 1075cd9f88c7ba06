"""``greenlight redrive QUEUE [--dry-run] [--max N] [--aws]``: dead letters back to their queue.

A dead-letter queue holds what a function gave up on: a push or a check it rejected for good
(with ``greenlight-reason`` and the other attributes of greenlight/redelivery.py), or a message
SQS moved there after maxReceiveCount (no reason attribute). Once the cause is fixed (the apps
file, a setting, the cluster), ``redrive`` sends each message back to its source queue and then
deletes it from the dead-letter queue.

- ``--dry-run`` lists each message (id, reason, sent time, the first 100 characters of its body)
  and changes nothing: the messages it received are made visible again at once.
- The real run re-sends the body with the message's own attributes (not Greenlight's
  ``greenlight-*`` ones); to a FIFO queue in the message's group, with a deduplication id made
  from the dead letter's message id. It deletes a dead letter only after its copy is sent, so
  a crash in between sends it again on the next run, at most once more per run; the rollout
  function's idempotency (24 h, keyed on the push's delivery id) absorbs that copy, and on a
  FIFO queue SQS drops it within 5 minutes.
- At most ``--max`` messages (default 100) and :data:`DEADLINE_SECONDS` per run.

Queue URLs: the running sandbox's environment (``greenlight sandbox up``), or with ``--aws`` the
``GREENLIGHT_*`` variables of :data:`ROUTES` (the stack's outputs of the same names).
Adding a queue is one line in :data:`ROUTES`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from greenlight.redelivery import ATTRIBUTE_PREFIX, REASON

DEADLINE_SECONDS = 60.0
PREVIEW_CHARS = 100
HOLD_SECONDS = 60  # how long a received dead letter stays hidden while this run handles it


class Route(NamedTuple):
    """A dead-letter queue (the variable holding its URL) and where its messages go back to."""

    dead_letters: str
    source: str | None  # None: nothing to send them back to (see ``note``)
    note: str = ""


ROUTES: dict[str, Route] = {
    "rollout": Route("GREENLIGHT_ROLLOUT_DLQ_URL", "GREENLIGHT_ROLLOUT_QUEUE_URL"),
    "codecommit": Route("GREENLIGHT_CODECOMMIT_DLQ_URL", "GREENLIGHT_CODECOMMIT_QUEUE_URL"),
    "gate": Route("GREENLIGHT_GATE_DLQ_URL", "GREENLIGHT_GATE_QUEUE_URL"),
    "notify": Route("GREENLIGHT_NOTIFY_DLQ_URL", "GREENLIGHT_NOTIFY_QUEUE_URL"),
    "announce": Route(
        "GREENLIGHT_ANNOUNCE_DLQ_URL",
        None,
        "its messages describe table stream batches the announce function gave up on (shard "
        "and sequence numbers), not events: there is no queue to send them back to. The "
        "rollouts table holds every change they announce; --dry-run lists them.",
    ),
}


# ------------------------------------------------------------------ pure
def summary(message: Mapping[str, Any]) -> dict[str, str]:
    """What the dry run shows of a received dead letter."""
    attributes = message.get("MessageAttributes") or {}
    reason = (attributes.get(REASON) or {}).get("StringValue") or "(none: maxReceiveCount)"
    sent_ms = (message.get("Attributes") or {}).get("SentTimestamp")
    sent = (
        datetime.fromtimestamp(int(sent_ms) / 1000, tz=UTC).isoformat(timespec="seconds")
        if sent_ms
        else "?"
    )
    body = str(message.get("Body", ""))
    return {
        "id": str(message.get("MessageId", "")),
        "sent": sent,
        "reason": reason,
        "body": body[:PREVIEW_CHARS],
    }


def resend_request(message: Mapping[str, Any], *, fifo: bool) -> dict[str, Any]:
    """SendMessage's arguments (all but QueueUrl) that put ``message`` back on its queue."""
    attributes = {
        name: value
        for name, value in (message.get("MessageAttributes") or {}).items()
        if not name.startswith(ATTRIBUTE_PREFIX)
    }
    request: dict[str, Any] = {"MessageBody": str(message["Body"])}
    if attributes:
        request["MessageAttributes"] = attributes
    if fifo:
        group = (message.get("Attributes") or {}).get("MessageGroupId") or "greenlight"
        request["MessageGroupId"] = group
        request["MessageDeduplicationId"] = f"redrive:{message['MessageId']}"[:128]
    return request


@dataclass
class Report:
    queue: str
    dry_run: bool
    listed: list[dict[str, str]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stopped: str = ""  # why the run ended before the queue was empty ("": it was empty)

    def lines(self) -> list[str]:
        out = [
            f"{m['id']}  sent {m['sent']}  reason: {m['reason']}\n    {m['body']}"
            for m in self.listed
        ]
        out += [f"moved {mid}" for mid in self.moved]
        out += [f"not moved {mid}: {why}" for mid, why in self.failed.items()]
        if self.dry_run:
            out.append(f"{self.queue}: {len(self.listed)} dead letter(s); dry run: nothing changed")
        else:
            out.append(
                f"{self.queue}: moved {len(self.moved)}, not moved {len(self.failed)}"
                + (f" (stopped: {self.stopped})" if self.stopped else "")
            )
        return out


class RedriveError(Exception):
    """The queue cannot be redriven (unknown, not configured, nowhere to send)."""


def urls(queue: str, env: Mapping[str, str], *, dry_run: bool) -> tuple[str, str | None]:
    """The dead-letter queue's URL and its source queue's (None for a dry run with no source)."""
    route = ROUTES.get(queue)
    if route is None:
        raise RedriveError(f"unknown queue {queue!r}; one of {', '.join(sorted(ROUTES))}")
    dead_letters = env.get(route.dead_letters, "").strip()
    if not dead_letters:
        raise RedriveError(f"{queue}: {route.dead_letters} is not set in this environment")
    if route.source is None:
        if not dry_run:
            raise RedriveError(f"{queue}: {route.note}")
        return dead_letters, None
    source = env.get(route.source, "").strip()
    if not source and not dry_run:
        raise RedriveError(f"{queue}: {route.source} is not set in this environment")
    return dead_letters, source or None


# ------------------------------------------------------------------ the SQS calls
def redrive(
    sqs: Any,
    queue: str,
    env: Mapping[str, str],
    *,
    dry_run: bool,
    limit: int = 100,
    deadline_seconds: float = DEADLINE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Move (or, ``dry_run``, list) at most ``limit`` dead letters of ``queue``."""
    dead_letters, source = urls(queue, env, dry_run=dry_run)
    fifo = bool(source and source.endswith(".fifo"))
    report = Report(queue, dry_run)
    deadline = clock() + deadline_seconds
    seen: set[str] = set()
    held: list[str] = []  # receipt handles to make visible again at the end
    while True:
        if len(seen) >= limit:
            report.stopped = f"--max {limit}"
            break
        if clock() >= deadline:
            report.stopped = f"deadline of {deadline_seconds:.0f} s"
            break
        messages = sqs.receive_message(
            QueueUrl=dead_letters,
            MaxNumberOfMessages=max(1, min(10, limit - len(seen))),
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen][: limit - len(seen)]
        held += [m["ReceiptHandle"] for m in messages if m not in fresh]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            if dry_run or source is None:
                report.listed.append(summary(message))
                held.append(message["ReceiptHandle"])
                continue
            try:
                sqs.send_message(QueueUrl=source, **resend_request(message, fifo=fifo))
            except Exception as exc:  # left in the dead-letter queue
                report.failed[message["MessageId"]] = f"{type(exc).__name__}: {exc}"
                held.append(message["ReceiptHandle"])
                continue
            sqs.delete_message(QueueUrl=dead_letters, ReceiptHandle=message["ReceiptHandle"])
            report.moved.append(message["MessageId"])
    _release(sqs, dead_letters, held)
    return report


def _release(sqs: Any, url: str, handles: list[str]) -> None:
    """Make the dead letters this run received and kept visible again."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


# ------------------------------------------------------------------ the command
def cmd_redrive(args: argparse.Namespace) -> int:
    if args.aws:
        import os

        import boto3

        env: Mapping[str, str] = os.environ
        sqs = boto3.client("sqs")
    else:
        from . import sandbox as sb

        state = sb.read_state()
        if state is None:
            print(
                "greenlight redrive: the sandbox is not running; start it with "
                "`greenlight sandbox up`, or pass --aws to use real AWS",
                file=sys.stderr,
            )
            return 2
        env = state["env"]
        sqs = sb.client(state["env"], "sqs")
    try:
        report = redrive(sqs, args.queue, env, dry_run=args.dry_run, limit=args.max)
    except RedriveError as exc:
        print(f"greenlight redrive: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 1 if report.failed else 0


def add_parser(sub: Any) -> None:
    """The ``redrive`` subcommand, on the CLI's subparsers."""
    parser = sub.add_parser("redrive", help="move a dead-letter queue's messages back")
    parser.add_argument("queue", choices=sorted(ROUTES))
    parser.add_argument(
        "--dry-run", action="store_true", help="list the dead letters, change nothing"
    )
    parser.add_argument("--max", type=int, default=100, help="at most N messages (default 100)")
    parser.add_argument(
        "--aws", action="store_true", help="real AWS: queue URLs from the GREENLIGHT_* variables"
    )
    parser.set_defaults(fn=cmd_redrive)
