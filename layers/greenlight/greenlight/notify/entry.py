"""The notify function: rollout state changes (EventBridge -> SQS) in, notifications out.

Each SQS message is one EventBridge event; :mod:`.decide` says what it sends, this module sends
it and keeps the account in the rollout's notify record (``store.notify``):

- an event whose id is in ``handled`` is a repeat: nothing is sent;
- each delivery made is appended to ``sent`` at once, so a retry skips what already went out;
- GitHub statuses of a history entry older than one already applied (``applied``) are not sent:
  events can arrive out of order, a commit status never goes back;
- a rollout's GitHub deployment is made once (``deployment_id``); at ``live`` the deployments
  of the app's earlier rollouts that went live are marked ``inactive``;
- the event is marked handled only after all its deliveries were made.

A delivery that fails is recorded as ``failed`` (with the reason) and the record fails
(``batchItemFailures``): SQS delivers it again after its visibility timeout, then moves it to
the dead-letter queue. Nothing here changes a rollout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from ..aws import Clients
from ..deadline import Deadline
from ..errors import EventError, GreenlightError, PermanentError, TemporaryError
from ..redelivery import batch_problem
from ..settings import NotifySettings
from ..store.notify import (
    CODECOMMIT_COMMENT,
    GITHUB_DEPLOYMENT,
    GITHUB_STATUS,
    SLACK,
    SNS,
    NotifyRecord,
    NotifyStore,
    Sent,
)
from .auth import SecretCredentials
from .decide import (
    INACTIVATE_PREVIOUS,
    ROLLOUT_STATE_CHANGE,
    Delivery,
    Notice,
    deployment_request,
    plan,
)
from .rest import GitHub, Slack, Transport

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_codecommit import CodeCommitClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

logger = Logger(child=True)


def _secret_reader(client: SecretsManagerClient, secret_id: str) -> Callable[[], str]:
    def read() -> str:
        return str(client.get_secret_value(SecretId=secret_id)["SecretString"])

    return read


def _slack_url(read: Callable[[], str]) -> Callable[[], str]:
    """The webhook URL: the secret's text, or its JSON ``{"url": ...}``; read once."""
    cached: list[str] = []

    def url() -> str:
        if not cached:
            text = read().strip()
            if text.startswith("{"):
                text = str(json.loads(text).get("url") or "")
            if not text.startswith("https://") and not text.startswith("http://"):
                raise PermanentError("Slack secret: expected the incoming webhook's URL")
            cached.append(text)
        return cached[0]

    return url


@dataclass
class NotifyRuntime:
    store: NotifyStore
    sns: SNSClient
    codecommit: CodeCommitClient
    topic_arn: str
    environment: str = "production"
    github: GitHub | None = None
    slack: Slack | None = None
    clock: Callable[[], float] = field(default=time.time)  # epoch seconds, for ``sent``

    @classmethod
    def build(
        cls,
        settings: NotifySettings,
        clients: Clients | None = None,
        transport: Transport | None = None,
    ) -> NotifyRuntime:
        clients = clients or Clients()
        transport = transport or Transport()
        github = None
        if settings.github_secret:
            credentials = SecretCredentials(
                _secret_reader(clients.secretsmanager, settings.github_secret),
                settings.github_api_url,
                transport,
                wall=transport.wall,
            )
            github = GitHub(settings.github_api_url, credentials, transport)
        slack = None
        if settings.slack_secret:
            read = _secret_reader(clients.secretsmanager, settings.slack_secret)
            slack = Slack(_slack_url(read), transport)
        return cls(
            store=NotifyStore(clients.dynamodb, settings.table),
            sns=clients.sns,
            codecommit=clients.codecommit,
            topic_arn=settings.topic_arn,
            environment=settings.environment,
            github=github,
            slack=slack,
        )


# The fields of a state change's detail that a notification reads (events/schemas/).
DETAIL_STRINGS = ("id", "app", "rollout_id", "to", "image")
DETAIL_OPTIONAL_STRINGS = ("commit", "repository", "branch", "source", "reason", "from", "at")


def detail_of(body: Any) -> dict[str, Any] | None:
    """The rollout state change an SQS message carries; None for any other event. EventError
    (naming the field) when the record has no body, or the body or the detail is malformed."""
    if not isinstance(body, str):
        raise EventError("record.body: missing" if body is None else "record.body: not a string")
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise EventError("message body: not JSON") from None
    if not isinstance(event, dict) or event.get("detail-type") != ROLLOUT_STATE_CHANGE:
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise EventError("detail: expected an object")
    for key in DETAIL_STRINGS:
        if not isinstance(detail.get(key), str) or not detail[key]:
            raise EventError(f"detail.{key}: expected a non-empty string")
    for key in DETAIL_OPTIONAL_STRINGS:
        if detail.get(key) is not None and not isinstance(detail[key], str):
            raise EventError(f"detail.{key}: expected a string or null")
    return detail


class _Sender:
    """Sends one notice's deliveries, recording each in the store."""

    def __init__(
        self, runtime: NotifyRuntime, notice: Notice, detail: dict[str, Any], deadline: Deadline
    ) -> None:
        self.runtime, self.notice, self.detail, self.deadline = runtime, notice, detail, deadline
        self.store = runtime.store

    def _sent(self, target: str, state: str, detail: str = "", rollout_id: str = "") -> None:
        n = self.notice
        sent = Sent(target, state, int(self.runtime.clock() * 1000), n.event_id, detail[:500])
        self.store.record(n.app, rollout_id or n.rollout_id, [sent])

    def deliver(self, d: Delivery, record: NotifyRecord) -> NotifyRecord:
        n, rt = self.notice, self.runtime
        if d.target == GITHUB_STATUS:
            assert rt.github and n.repository and n.commit
            rt.github.create_status(
                n.repository,
                n.commit,
                state=d.state,
                context=d.context,
                description=d.description,
                deadline=self.deadline,
            )
            self._sent(GITHUB_STATUS, d.state, f"{d.context}: {d.description}")
        elif d.target == GITHUB_DEPLOYMENT and d.state == INACTIVATE_PREVIOUS:
            self._inactivate_previous(d)
        elif d.target == GITHUB_DEPLOYMENT:
            assert rt.github and n.repository
            record = self._deployment(record)
            assert record.deployment_id is not None
            rt.github.create_deployment_status(
                record.repository or n.repository,
                record.deployment_id,
                state=d.state,
                description=d.description,
                environment=n.environment,
                deadline=self.deadline,
            )
            self._sent(GITHUB_DEPLOYMENT, d.state, f"deployment {record.deployment_id}")
        elif d.target == CODECOMMIT_COMMENT:
            self._comment(d)
        elif d.target == SNS:
            self._publish(d)
        elif d.target == SLACK:
            assert rt.slack
            rt.slack.post(d.text, self.deadline)
            self._sent(SLACK, d.state)
        else:  # pragma: no cover - decide makes no other target
            raise PermanentError(f"unknown target {d.target}")
        return record

    def _comment(self, d: Delivery) -> None:
        n = self.notice
        assert n.repository and n.commit
        self.runtime.codecommit.post_comment_for_compared_commit(
            repositoryName=n.repository,
            afterCommitId=n.commit,
            content=d.text,
            clientRequestToken=f"greenlight-{n.event_id}".replace("/", "-")[:64],
        )
        self._sent(CODECOMMIT_COMMENT, d.state, f"{n.repository}@{n.commit[:12]}")

    def _publish(self, d: Delivery) -> None:
        n = self.notice
        answer = self.runtime.sns.publish(
            TopicArn=self.runtime.topic_arn,
            Subject=d.subject,
            Message=d.text,
            MessageAttributes={
                "app": {"DataType": "String", "StringValue": n.app},
                "phase": {"DataType": "String", "StringValue": n.phase.value},
            },
        )
        self._sent(SNS, d.state, str(answer.get("MessageId", "")))

    def attempt(self, d: Delivery, record: NotifyRecord, failed: list[str]) -> NotifyRecord:
        """Make ``d``; a failure is recorded (``failed``, in the store and in ``failed``)."""
        try:
            return self.deliver(d, record)
        except Exception as exc:  # any failure: recorded, the record retried
            reason = (
                str(exc) if isinstance(exc, GreenlightError) else f"{type(exc).__name__}: {exc}"
            )
            failed.append(f"{d.target}: {reason}")
            logger.warning(
                "not delivered",
                extra={"id": self.notice.event_id, "target": d.target, "reason": reason},
            )
            self._sent(d.target, "failed", reason)
            return record

    def _deployment(self, record: NotifyRecord) -> NotifyRecord:
        """The rollout's GitHub deployment, made on its first state change that needs it."""
        n, rt = self.notice, self.runtime
        if record.deployment_id is not None:
            return record
        assert rt.github and n.repository
        made = rt.github.create_deployment(
            n.repository, deployment_request(n, self.detail), self.deadline
        )
        self.store.set_deployment(n.app, n.rollout_id, made, n.repository)
        self._sent(GITHUB_DEPLOYMENT, "created", f"deployment {made} in {n.environment}")
        return record._replace(deployment_id=made, repository=n.repository)

    def _inactivate_previous(self, d: Delivery) -> None:
        """Mark ``inactive`` the deployment of every earlier rollout of the app that went
        live (success) and is not inactive yet: the one this rollout replaced."""
        n, rt = self.notice, self.runtime
        assert rt.github
        for older in self.store.of_app(n.app):
            if older.rollout_id >= n.rollout_id or older.deployment_id is None:
                continue
            states = {s.state for s in older.sent if s.target == GITHUB_DEPLOYMENT}
            if "success" not in states or INACTIVATE_PREVIOUS in states:
                continue
            rt.github.create_deployment_status(
                older.repository or str(n.repository),
                older.deployment_id,
                state=INACTIVATE_PREVIOUS,
                description=d.description,
                environment=n.environment,
                deadline=self.deadline,
            )
            self._sent(
                GITHUB_DEPLOYMENT,
                INACTIVATE_PREVIOUS,
                f"deployment {older.deployment_id} replaced by {n.rollout_id}",
                rollout_id=older.rollout_id,
            )


def notify(runtime: NotifyRuntime, detail: dict[str, Any], deadline: Deadline) -> list[str]:
    """Send what ``detail`` calls for; the deliveries made (``target:state``). Raises when
    one could not be made (after recording it as failed)."""
    notice = plan(
        detail,
        environment=runtime.environment,
        github=runtime.github is not None,
        slack=runtime.slack is not None,
    )
    store = runtime.store
    record = store.load(notice.app, notice.rollout_id) or NotifyRecord(
        notice.app, notice.rollout_id
    )
    if notice.event_id in record.handled:
        logger.info("repeat", extra={"id": notice.event_id})
        return []
    done = {
        (s.target, s.state)
        for s in record.sent
        if s.event_id == notice.event_id and s.state != "failed"
    }
    stale = notice.history_index <= record.applied
    sender = _Sender(runtime, notice, detail, deadline)
    made: list[str] = []
    failed: list[str] = []
    github_sent = False
    for d in notice.deliveries:
        is_github = d.target in (GITHUB_STATUS, GITHUB_DEPLOYMENT)
        if is_github and stale:
            logger.info(
                "stale",
                extra={"id": notice.event_id, "applied": record.applied, "target": d.target},
            )
            continue
        github_sent = github_sent or is_github
        if (d.target, d.state) in done:
            continue
        before = len(failed)
        record = sender.attempt(d, record, failed)
        if len(failed) > before:
            continue
        made.append(f"{d.target}:{d.state}")
    if failed:
        raise TemporaryError(f"{notice.event_id}: " + "; ".join(failed))
    if github_sent:
        store.advance(notice.app, notice.rollout_id, notice.history_index)
    store.mark_handled(notice.app, notice.rollout_id, notice.event_id)
    logger.info("notified", extra={"id": notice.event_id, "sent": made})
    return made


def _record(runtime: NotifyRuntime, context: Any, record: SQSRecord) -> list[str]:
    detail = detail_of(record.raw_event.get("body"))
    if detail is None:
        return []
    return notify(runtime, detail, Deadline.from_context(context))


def handle(event: Any, runtime: NotifyRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"status": "rejected", "error": "event: expected an SQS batch"}
    if not event.get("Records"):  # never from the event source; a hand-made empty batch
        return {"batchItemFailures": []}
    problem = batch_problem(event["Records"])
    if problem is not None:  # not from SQS: nothing in it is handled
        logger.warning("notify invoke rejected", extra={"error": problem})
        return {"status": "rejected", "error": problem}
    # A batch whose every record fails is answered like any other (every record reported), not
    # raised: SQS retries the same records, and no unhandled error.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    answer = process_partial_response(
        event=event,
        record_handler=partial(_record, runtime, context),
        processor=processor,
        context=context,
    )
    return dict(answer)
