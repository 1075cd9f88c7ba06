"""The announce function: the rollouts table's stream in, EventBridge events and metrics out.

Each stream record is one committed write; :mod:`.decide` says what it announces, this module
publishes it. A record whose events EventBridge does not take fails alone (the batch reports it
with ``batchItemFailures``): Lambda retries from it, to the event source's retry limit, then
hands the batch's description to the announce DLQ. Nothing here changes a rollout.

Once a record's events are on the bus, what :mod:`.measure` makes of it is written to stdout in
CloudWatch embedded metric format (Powertools ``EphemeralMetrics``): one document per dimension
set, instance and instant, so records of different apps never share a document. Powertools'
package imports its metrics module with the Logger already, so this adds nothing to the cold
start; a metric that cannot be written is logged and never fails the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from ..aws import Clients
from ..errors import EventError, TemporaryError
from ..settings import AnnounceSettings
from ..store.marshal import plain
from .decide import SOURCE, Announcement, announcements
from .measure import NAMESPACE, Point, points

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
        DynamoDBRecord,
    )
    from mypy_boto3_events import EventBridgeClient

logger = Logger(child=True)


@dataclass
class AnnounceRuntime:
    events: EventBridgeClient
    bus: str
    service: str = "greenlight"  # the metrics' service dimension

    @classmethod
    def build(cls, settings: AnnounceSettings, clients: Clients | None = None) -> AnnounceRuntime:
        return cls((clients or Clients()).events, settings.event_bus, settings.metrics_service)


def entries(found: list[Announcement], bus: str) -> list[dict[str, Any]]:
    """``PutEvents`` entries for ``found``."""
    return [
        {
            "Source": SOURCE,
            "DetailType": a.detail_type,
            "Detail": json.dumps(a.detail, separators=(",", ":"), sort_keys=True),
            "Time": a.at,
            "EventBusName": bus,
        }
        for a in found
    ]


def batch_problem(records: Any) -> str | None:
    """Why ``records`` is not a DynamoDB stream batch as Lambda hands it over (every record an
    object whose ``dynamodb`` object has a ``SequenceNumber``: a failure is reported by it), or
    None when it is one."""
    if not isinstance(records, list) or not records:
        return "Records: expected a non-empty list of stream records"
    for i, record in enumerate(records):
        change = record.get("dynamodb") if isinstance(record, dict) else None
        if not isinstance(change, dict):
            return f"Records[{i}].dynamodb: expected an object"
        sequence = change.get("SequenceNumber")
        if not isinstance(sequence, str) or not sequence:
            return f"Records[{i}].dynamodb.SequenceNumber: expected a non-empty string"
    return None


def _images(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    images = raw.get("dynamodb") or {}
    found: list[dict[str, Any] | None] = []
    for key in ("OldImage", "NewImage"):
        image = images.get(key)
        if not image:
            found.append(None)
            continue
        if not isinstance(image, dict):
            raise EventError(f"dynamodb.{key}: expected an object")
        try:
            found.append(plain(image))
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise EventError(f"dynamodb.{key}: not a DynamoDB item ({exc})") from None
    return found[0], found[1]


def of_record(raw: dict[str, Any]) -> list[Announcement]:
    """What one DynamoDB stream record (as Lambda hands it) announces. An item that is not the
    shape of a Greenlight item (written by hand) raises an EventError that says so."""
    images = _images(raw)
    try:
        return announcements(*images)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise _not_ours(raw, exc) from None


def measured(raw: dict[str, Any]) -> list[Point]:
    """What one DynamoDB stream record (as Lambda hands it) measures (EventError as above)."""
    images = _images(raw)
    try:
        return points(*images)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise _not_ours(raw, exc) from None


def _not_ours(raw: dict[str, Any], exc: Exception) -> EventError:
    sequence = (raw.get("dynamodb") or {}).get("SequenceNumber")
    return EventError(
        f"stream record {sequence}: not the shape of a Greenlight item "
        f"({type(exc).__name__}: {exc})"
    )


def emit(found: list[Point], service: str) -> None:
    """``found`` as EMF documents on stdout: one per (app, instance, instant), each with the
    one dimension set ``service`` (+ ``app``); an instance is metadata, not a dimension."""
    groups: dict[tuple[str | None, str | None, int], list[Point]] = {}
    for point in found:
        groups.setdefault((point.app, point.instance, point.at), []).append(point)
    for (app, instance, at), group in groups.items():
        metrics = EphemeralMetrics(namespace=NAMESPACE, service=service)
        if app is not None:
            metrics.add_dimension(name="app", value=app)
        if instance is not None:
            metrics.add_metadata(key="instance_id", value=instance)
        if at > 0:
            metrics.set_timestamp(at)
        for point in group:
            metrics.add_metric(name=point.name, unit=point.unit, value=point.value)
        metrics.flush_metrics()


def publish(runtime: AnnounceRuntime, found: list[Announcement]) -> int:
    """Put ``found`` on the bus (10 to a call, EventBridge's limit); the count published.
    Entries EventBridge refuses raise a TemporaryError: the record is retried."""
    batch = entries(found, runtime.bus)
    for start in range(0, len(batch), 10):
        answer = runtime.events.put_events(Entries=batch[start : start + 10])  # type: ignore[arg-type]
        if answer.get("FailedEntryCount"):
            codes = sorted(
                {str(e.get("ErrorCode")) for e in answer["Entries"] if e.get("ErrorCode")}
            )
            raise TemporaryError(f"EventBridge refused events: {', '.join(codes)}", delay=5)
    return len(batch)


def _record(runtime: AnnounceRuntime, record: DynamoDBRecord) -> int:
    found = of_record(record.raw_event)
    published = publish(runtime, found)
    for a in found:
        logger.info(
            "announced",
            extra={"detail_type": a.detail_type, "id": a.detail.get("id")},
        )
    try:
        emit(measured(record.raw_event), runtime.service)
    except Exception:  # a metric lost is logged; failing the record would announce it again
        sequence = (record.raw_event.get("dynamodb") or {}).get("SequenceNumber")
        logger.exception("metrics not written", extra={"sequence": sequence})
    return published


def handle(event: Any, runtime: AnnounceRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"status": "rejected", "error": "event: expected a DynamoDB stream batch"}
    if not event.get("Records"):  # never from the event source; a hand-made empty batch
        return {"batchItemFailures": []}
    problem = batch_problem(event["Records"])
    if problem is not None:  # not from the stream: nothing in it is handled
        logger.warning("announce invoke rejected", extra={"error": problem})
        return {"status": "rejected", "error": problem}
    # A batch whose every record fails is answered like any other (every record reported), not
    # raised: the same retry, and no unhandled error.
    processor = BatchProcessor(
        event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
    )
    answer = process_partial_response(
        event=event,
        record_handler=partial(_record, runtime),
        processor=processor,
        context=context,
    )
    return dict(answer)
