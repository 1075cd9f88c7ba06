"""The rollout function's logic behind its handler: which trigger, once only, then start().

Accepted events: an SQS batch of pushes, either queued by the GitHub webhook function (the
rollout queue: FIFO, one group per repository) or CodeCommit "Repository State Change" events
queued by their EventBridge rule (the CodeCommit queue); such an event invoked directly; or a
manual payload (see docs/events.md). Duplicate deliveries are dropped by Powertools Idempotency
keyed on the delivery id with its repository, branch (or app) and commit (or image); a push
timed more than ``triggers.SEQUENCE_SKEW_SECONDS`` ahead of now is refused for good; a bad
event gets ``{"status": "rejected", "error": ...}`` and changes nothing. On the SQS path a
record that can never succeed goes to its dead-letter queue with the reason, and one that fails
for now comes back after its own delay (greenlight/redelivery.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..edgepush import EdgePush, LambdaEdgePush
from ..errors import EventError, PermanentError
from ..redelivery import Redelivery, batch_problem, message_body
from ..settings import RolloutSettings
from ..store.night import NightStore
from ..store.rollouts import RolloutStore
from ..triggers import (
    CommitPush,
    Ignored,
    ManualRollout,
    Trigger,
    from_codecommit,
    from_manual,
    from_queued,
    not_ahead,
)
from .decide import RolloutResult, Status
from .service import RolloutDeps, start

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger(child=True)
IDEMPOTENCY_EXPIRY_SECONDS = 24 * 3600
# The idempotency key: the delivery id with what the delivery asks for (the repository and
# branch, or the app; the commit or image), so that two different events that share an id
# never share an answer. Not the sequence: a manual invoke's is the time it was handled.
IDEMPOTENCY_KEY = "[kind, dedupe_id, provider, repository, branch, app, commit, image]"


@dataclass
class RolloutRuntime:
    """What a warm rollout function keeps between invocations."""

    settings: RolloutSettings
    deps: RolloutDeps
    persistence: DynamoDBPersistenceLayer
    idempotency: IdempotencyConfig
    redelivery: Redelivery

    @classmethod
    def build(
        cls,
        settings: RolloutSettings,
        clients: Clients | None = None,
        edge_push: EdgePush | None = None,
    ) -> RolloutRuntime:
        clients = clients or Clients()
        if edge_push is None and settings.edge_function:
            edge_push = LambdaEdgePush(clients.lambda_within, settings.edge_function)
        group = settings.night_group
        deps = RolloutDeps(
            apps=AppsSource(
                clients.s3,
                settings.config_bucket,
                settings.config_key,
                settings.cluster.app_namespaces,
            ),
            store=RolloutStore(clients.dynamodb, settings.table),
            kube=KubeRest(lambda: api_client(settings.cluster, session=clients.session)),
            sqs=clients.sqs,
            ecr=clients.ecr,
            gate_queue_url=settings.gate_queue_url,
            gate_delay_seconds=settings.gate_delay_seconds,
            ecr_wait_seconds=settings.ecr_wait_seconds,
            nights=NightStore(clients.dynamodb, settings.table, group) if group else None,
            night_group=group,
            edge_push=edge_push,
        )
        persistence = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=clients.dynamodb
        )
        config = IdempotencyConfig(
            event_key_jmespath=IDEMPOTENCY_KEY, expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS
        )
        redelivery = Redelivery(
            clients.sqs,
            dead_letters=settings.codecommit_dead_letter_queue_url,
            fifo_dead_letters=settings.dead_letter_queue_url,
        )
        return cls(settings, deps, persistence, config, redelivery)


def _trigger_from_dict(data: Mapping[str, Any]) -> CommitPush | ManualRollout:
    if data.get("kind") == "push":
        trigger = from_queued(data)
        assert isinstance(trigger, CommitPush)
        return trigger
    fields = {k: v for k, v in data.items() if k != "kind"}
    return ManualRollout(**fields)


def _run(
    trigger: Trigger, runtime: RolloutRuntime, context: Any, *, dry_run: bool
) -> dict[str, Any]:
    deadline = Deadline.from_context(context)
    trigger = not_ahead(trigger, now_ms=int(time.time() * 1000))  # a far-future push: refused
    if isinstance(trigger, Ignored) or dry_run or runtime.settings.dry_run:
        return start(
            trigger, runtime.deps, deadline=deadline, dry_run=dry_run or runtime.settings.dry_run
        ).to_dict()
    runtime.idempotency.register_lambda_context(context)

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="data",
        persistence_store=runtime.persistence,
        config=runtime.idempotency,
    )
    def once(*, data: dict[str, Any]) -> dict[str, Any]:
        return start(_trigger_from_dict(data), runtime.deps, deadline=deadline).to_dict()

    result: dict[str, Any] = once(data=trigger.to_dict())
    return result


def _rejected(exc: PermanentError) -> dict[str, Any]:
    logger.warning("event rejected", extra={"error": str(exc)})
    return RolloutResult(Status.REJECTED, str(exc)).to_dict() | {"error": str(exc)}


def queued_trigger(body: Any) -> Trigger:
    """A queued message's trigger: a push the webhook queued, or a CodeCommit event its
    EventBridge rule queued (the event is the message's body)."""
    if not isinstance(body, dict):
        raise EventError("queued message: expected a JSON object")
    if body.get("source") == "aws.codecommit":
        return from_codecommit(body)
    return from_queued(body)


def _batch(event: dict[str, Any], runtime: RolloutRuntime, context: Any) -> dict[str, Any]:
    # Imported here: only SQS invocations need them, and they cost ~100 ms of cold start.
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        SqsFifoPartialProcessor,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

    delays: dict[str, float] = {}  # messageId -> seconds, for the records that failed for now

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        try:
            trigger = queued_trigger(message_body(record.raw_event))
            result = _run(trigger, runtime, context, dry_run=False)
        except Exception as exc:  # a dead letter, or a retry after its delay (raised again)
            return runtime.redelivery.settle(
                record.raw_event, exc, delays, now_ms=int(time.time() * 1000)
            )
        logger.info("queued push handled", extra={"result": result})
        return result

    records = event["Records"]
    processor: BatchProcessor | SqsFifoPartialProcessor
    if str(records[0].get("eventSourceARN", "")).endswith(".fifo"):
        # A failed push holds back the later pushes of its repository (its group), in order.
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    else:
        processor = BatchProcessor(event_type=EventType.SQS)
    processor.raise_on_entire_batch_failure = False  # every failure is reported, not raised
    response: PartialItemFailureResponse = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    failed = {str(item["itemIdentifier"]) for item in response["batchItemFailures"]}
    if failed:
        runtime.redelivery.retry_later(records, failed, delays)
    return dict(response)


def handle(event: Any, runtime: RolloutRuntime, context: Any = None) -> dict[str, Any]:
    """Dispatch one invocation of the rollout function."""
    if not isinstance(event, dict):
        return _rejected(PermanentError("event: expected a JSON object"))
    records = event.get("Records")
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        problem = batch_problem(records)
        if problem is not None:  # not from SQS: nothing in it is handled
            return _rejected(EventError(problem))
        return _batch(event, runtime, context)
    try:
        if event.get("source") == "aws.codecommit":
            trigger = from_codecommit(event)
            dry_run = False
        else:
            dry_run = bool(event.get("dry_run", False))
            trigger = from_manual(
                event,
                now_ms=int(time.time() * 1000),
                request_id=str(getattr(context, "aws_request_id", "local")),
            )
        return _run(trigger, runtime, context, dry_run=dry_run)
    except PermanentError as exc:
        return _rejected(exc)
