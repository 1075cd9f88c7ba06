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
from ..errors import TemporaryError
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


def _images(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    images = raw.get("dynamodb") or {}
    old, new = images.get("OldImage"), images.get("NewImage")
    return (plain(old) if old else None, plain(new) if new else None)


def of_record(raw: dict[str, Any]) -> list[Announcement]:
    """What one DynamoDB stream record (as Lambda hands it) announces."""
    return announcements(*_images(raw))


def measured(raw: dict[str, Any]) -> list[Point]:
    """What one DynamoDB stream record (as Lambda hands it) measures."""
    return points(*_images(raw))


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


def handle(event: dict[str, Any], runtime: AnnounceRuntime, context: Any = None) -> dict[str, Any]:
    if not event.get("Records"):  # never from the event source; a hand-made empty batch
        return {"batchItemFailures": []}
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    answer = process_partial_response(
        event=event,
        record_handler=partial(_record, runtime),
        processor=processor,
        context=context,
    )
    return dict(answer)
