"""What a failed SQS record gets: its dead-letter queue with the reason, or a retry after its delay.

The rollout and gate functions read SQS batches (the event source mapping deletes every record
the function does not report as failed). A record that can never succeed (a ``PermanentError``,
a body that is not JSON) is sent to the queue's dead-letter queue with its reason in message
attributes, then reported as handled. A record that may succeed later (a ``TemporaryError``, or
anything unexpected) is reported as failed, and its visibility is set to its own delay, so it
comes back then rather than after the queue's whole visibility timeout.

Pure: :func:`classify`, :func:`visibility_seconds`, :func:`retry_plan`,
:func:`dead_letter_request`, :func:`queue_url_of`. The SQS calls: :class:`Redelivery`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger

from .errors import EventError, PermanentError, TemporaryError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

logger = Logger(child=True)

MAX_VISIBILITY_SECONDS = 43200  # SQS: 12 hours
UNEXPECTED_DELAY_SECONDS = 60.0  # an error Greenlight did not classify: retried after a minute
REASON_LIMIT = 1000  # characters of the reason kept in the attribute
MAX_ATTRIBUTES = 10  # SQS: message attributes per message
ATTRIBUTE_PREFIX = "greenlight-"
REASON = "greenlight-reason"
FAILED_AT = "greenlight-failed-at"
SOURCE_QUEUE = "greenlight-source-queue"
MESSAGE_ID = "greenlight-message-id"
NO_BODY = "(the record had no body)"  # a dead letter's body when its record had none


class DeadLetter(NamedTuple):
    """Never retry: to the dead-letter queue with ``reason``."""

    reason: str


class RetryLater(NamedTuple):
    """Retry after ``delay`` seconds."""

    reason: str
    delay: float


class Retry(NamedTuple):
    """One visibility change: the record's receipt handle and its new visibility."""

    message_id: str
    queue_arn: str
    receipt_handle: str
    seconds: int


def classify(exc: BaseException) -> DeadLetter | RetryLater:
    """Permanent errors and bodies that are not JSON are dead letters; the rest is retried."""
    if isinstance(exc, TemporaryError):
        return RetryLater(str(exc), exc.delay)
    if isinstance(exc, PermanentError):
        return DeadLetter(str(exc))
    if isinstance(exc, json.JSONDecodeError):
        return DeadLetter(f"message body is not JSON: {exc}")
    return RetryLater(f"{type(exc).__name__}: {exc}", UNEXPECTED_DELAY_SECONDS)


def batch_problem(records: Any) -> str | None:
    """Why ``records`` is not an SQS batch as Lambda hands it over, or None when it is one.

    Every record must be an object with a non-empty ``messageId`` (a failure is reported by it),
    and its ``attributes`` and ``messageAttributes``, when given, objects, its
    ``eventSourceARN`` and ``receiptHandle`` strings. Such a batch cannot come from SQS, so it
    is rejected whole. A record's body is not checked here: a record without one is a dead
    letter of its own (:func:`message_body`)."""
    if not isinstance(records, list) or not records:
        return "Records: expected a non-empty list of SQS records"
    for i, record in enumerate(records):
        where = f"Records[{i}]"
        if not isinstance(record, Mapping):
            return f"{where}: expected an object"
        message_id = record.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            return f"{where}.messageId: expected a non-empty string"
        for key in ("attributes", "messageAttributes"):
            if record.get(key) is not None and not isinstance(record[key], Mapping):
                return f"{where}.{key}: expected an object"
        for key in ("eventSourceARN", "receiptHandle"):
            if record.get(key) is not None and not isinstance(record[key], str):
                return f"{where}.{key}: expected a string"
    return None


def message_body(record: Mapping[str, Any]) -> Any:
    """The JSON value a record's body holds. EventError (a dead letter) when the record has no
    body, or its body is not JSON."""
    body = record.get("body")
    if body is None:
        raise EventError("record.body: missing")
    if not isinstance(body, str):
        raise EventError(f"record.body: expected a string, got {type(body).__name__}")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise EventError(f"message body is not JSON: {str(exc)[:200]}") from None


def visibility_seconds(delay: float) -> int:
    """A delay as an SQS visibility timeout: whole seconds, rounded up, within 0..43200."""
    if math.isnan(delay) or delay <= 0:
        return 0
    if delay >= MAX_VISIBILITY_SECONDS:
        return MAX_VISIBILITY_SECONDS
    return math.ceil(delay)


def _group(record: Mapping[str, Any]) -> str | None:
    group = (record.get("attributes") or {}).get("MessageGroupId")
    return str(group) if group else None


def retry_plan(
    records: Sequence[Mapping[str, Any]],
    failed: Collection[str],
    delays: Mapping[str, float],
    *,
    default: float = UNEXPECTED_DELAY_SECONDS,
) -> list[Retry]:
    """The new visibility of every failed record (by ``messageId``).

    A record that failed on its own waits its own delay (``delays``). A record of a FIFO group
    that was failed only because an earlier record of its group failed waits that record's
    delay: the group comes back together, in its order. Any other failed record waits
    ``default``."""
    group_delay: dict[str, float] = {}
    plan = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        if message_id not in failed:
            continue
        group = _group(record)
        if message_id in delays:
            delay = delays[message_id]
            if group is not None:
                group_delay.setdefault(group, delay)
        elif group is not None and group in group_delay:
            delay = group_delay[group]
        else:
            delay = default
        plan.append(
            Retry(
                message_id=message_id,
                queue_arn=str(record.get("eventSourceARN", "")),
                receipt_handle=str(record.get("receiptHandle", "")),
                seconds=visibility_seconds(delay),
            )
        )
    return plan


def queue_url_of(arn: str) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` -> the queue's URL."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    _, partition, _, region, account, name = parts
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def _attributes(record: Mapping[str, Any]) -> dict[str, MessageAttributeValueTypeDef]:
    """The record's own message attributes (Lambda's lower-case shape) in SendMessage's shape;
    Greenlight's own are left out (they are added again)."""
    carried: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in (record.get("messageAttributes") or {}).items():
        if name.startswith(ATTRIBUTE_PREFIX) or not isinstance(value, Mapping):
            continue
        data_type = value.get("dataType") or value.get("DataType")
        string = value.get("stringValue", value.get("StringValue"))
        binary = value.get("binaryValue", value.get("BinaryValue"))
        if data_type and string is not None:
            carried[name] = {"DataType": str(data_type), "StringValue": str(string)}
        elif data_type and binary is not None:
            carried[name] = {"DataType": str(data_type), "BinaryValue": binary}
    return carried


def dead_letter_request(
    record: Mapping[str, Any], reason: str, *, failed_at_ms: int, fifo: bool
) -> dict[str, Any]:
    """SendMessage's arguments (all but QueueUrl) for ``record``'s dead letter: the body
    unchanged, the record's attributes, and why, when and from where. On a FIFO dead-letter
    queue: the record's group, and a deduplication id derived from its message id (a second
    send of the same record within 5 minutes is dropped by SQS)."""
    message_id = str(record.get("messageId", ""))
    ours = {
        REASON: reason[:REASON_LIMIT] or "no reason given",
        FAILED_AT: datetime.fromtimestamp(failed_at_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        ),
        SOURCE_QUEUE: str(record.get("eventSourceARN", "")),
        MESSAGE_ID: message_id,
    }
    attributes = dict(list(_attributes(record).items())[: MAX_ATTRIBUTES - len(ours)])
    attributes.update({k: {"DataType": "String", "StringValue": v} for k, v in ours.items() if v})
    body = record.get("body")
    request: dict[str, Any] = {
        "MessageBody": NO_BODY if body is None or body == "" else str(body),
        "MessageAttributes": attributes,
    }
    if fifo:
        request["MessageGroupId"] = _group(record) or "greenlight"
        request["MessageDeduplicationId"] = f"dead-letter:{message_id}"[:128]
    return request


class Redelivery:
    """The SQS calls: dead letters and visibility changes.

    ``fifo_dead_letters`` takes the records of a FIFO source queue, ``dead_letters`` the rest
    (""; none: the record is dropped with an ERROR log, as before dead-letter queues)."""

    def __init__(self, sqs: SQSClient, *, dead_letters: str = "", fifo_dead_letters: str = ""):
        self.sqs = sqs
        self.dead_letters = dead_letters
        self.fifo_dead_letters = fifo_dead_letters

    def queue_for(self, record: Mapping[str, Any]) -> str:
        fifo = str(record.get("eventSourceARN", "")).endswith(".fifo")
        return self.fifo_dead_letters if fifo else self.dead_letters

    def settle(
        self,
        record: Mapping[str, Any],
        exc: Exception,
        delays: MutableMapping[str, float],
        *,
        now_ms: int,
    ) -> dict[str, Any]:
        """What a record whose handling raised ``exc`` gets. A dead letter is sent (then the
        record counts as handled: the answer is returned); a retry notes its delay in
        ``delays`` and raises ``exc`` again, so the batch reports the record as failed."""
        verdict = classify(exc)
        message_id = str(record.get("messageId", ""))
        if isinstance(verdict, RetryLater):
            delays[message_id] = verdict.delay
            logger.warning(
                "record retried later",
                extra={"message_id": message_id, "error": verdict.reason, "delay": verdict.delay},
                exc_info=not isinstance(exc, TemporaryError),
            )
            raise exc
        queue = self.queue_for(record)
        answer = {"status": "rejected", "error": verdict.reason}
        if not queue:
            logger.error(
                "record dropped: no dead-letter queue is configured",
                extra={"message_id": message_id, "error": verdict.reason},
            )
            return answer
        request = dead_letter_request(
            record, verdict.reason, failed_at_ms=now_ms, fifo=queue.endswith(".fifo")
        )
        try:
            self.sqs.send_message(QueueUrl=queue, **request)
        except Exception:
            # Not sent: the record fails and comes back; the queue's own redrive policy is the
            # last resort.
            delays[message_id] = UNEXPECTED_DELAY_SECONDS
            logger.exception("dead letter not sent", extra={"message_id": message_id})
            raise exc from None
        logger.warning(
            "record sent to the dead-letter queue",
            extra={"message_id": message_id, "error": verdict.reason, "queue": queue},
        )
        return answer | {"dead_letter": queue}

    def retry_later(
        self,
        records: Sequence[Mapping[str, Any]],
        failed: Collection[str],
        delays: Mapping[str, float],
    ) -> list[Retry]:
        """Set each failed record's visibility (:func:`retry_plan`). A change that fails is
        logged: the record is still reported failed, and comes back after whatever visibility
        it has (the queue's timeout, counted from its receipt)."""
        plan = retry_plan(records, failed, delays)
        by_queue: dict[str, list[Retry]] = {}
        for retry in plan:
            by_queue.setdefault(retry.queue_arn, []).append(retry)
        for arn, retries in by_queue.items():
            for start in range(0, len(retries), 10):
                chunk = retries[start : start + 10]
                try:
                    answer = self.sqs.change_message_visibility_batch(
                        QueueUrl=queue_url_of(arn),
                        Entries=[
                            {
                                "Id": str(i),
                                "ReceiptHandle": r.receipt_handle,
                                "VisibilityTimeout": r.seconds,
                            }
                            for i, r in enumerate(chunk)
                        ],
                    )
                except Exception:
                    logger.exception("visibility not changed", extra={"queue": arn})
                    continue
                for failure in answer.get("Failed", []):
                    retry = chunk[int(failure["Id"])]
                    logger.error(
                        "visibility not changed",
                        extra={
                            "message_id": retry.message_id,
                            "code": failure.get("Code"),
                            "error": failure.get("Message"),
                        },
                    )
        return plan
