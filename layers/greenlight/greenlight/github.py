"""The GitHub webhook function's logic: verify, decide, queue; never deploy inline.

Responses: 200 ``ping``; 202 for a queued push and for deliveries that change nothing (tag
pushes, branch deletions, other events); 400 for a malformed request; 401 for a missing, wrong
or SHA-1-only signature. Nothing is queued unless the signature is valid.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from .aws import Clients
from .errors import EventError, SignatureError
from .settings import WebhookSettings
from .webhook import accept

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)
SECRET_CACHE_SECONDS = 300


@dataclass
class SecretCache:
    """The webhook secret from Secrets Manager, re-read every few minutes (rotation)."""

    secretsmanager: SecretsManagerClient
    secret_id: str
    clock: Callable[[], float] = time.monotonic
    _value: str | None = field(default=None, init=False)
    _read_at: float = field(default=0.0, init=False)

    def get(self) -> str:
        if self._value is None or self.clock() - self._read_at > SECRET_CACHE_SECONDS:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id)["SecretString"]
            self._value, self._read_at = value.strip(), self.clock()
        return self._value


@dataclass
class WebhookRuntime:
    secret: SecretCache
    sqs: SQSClient
    queue_url: str

    @classmethod
    def build(cls, settings: WebhookSettings, clients: Clients | None = None) -> WebhookRuntime:
        clients = clients or Clients()
        return cls(
            SecretCache(clients.secretsmanager, settings.webhook_secret),
            clients.sqs,
            settings.rollout_queue_url,
        )


def _response(code: int, **body: Any) -> dict[str, Any]:
    return {
        "statusCode": code,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def _dedupe_id(delivery: str) -> str:
    return re.sub(r"[^A-Za-z0-9!-/:-@\[-`{-~]", "-", delivery)[:128]


def handle(event: Any, runtime: WebhookRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        return _response(400, error="event: expected a Function URL request")
    try:
        delivery = accept(event, runtime.secret.get())
    except SignatureError as exc:
        logger.warning("webhook signature refused", extra={"error": str(exc)})
        return _response(401, error=str(exc))
    except EventError as exc:
        logger.warning("webhook request rejected", extra={"error": str(exc)})
        return _response(400, error=str(exc))
    log = {
        "delivery": delivery.delivery,
        "github_event": delivery.event,
        "status": delivery.status,
        "detail": delivery.message,
    }
    if delivery.push is None:
        logger.info("webhook acknowledged", extra=log)
        return _response(
            delivery.status,
            status="ignored" if delivery.status == 202 else "ok",
            detail=delivery.message,
        )
    push = delivery.push
    sent = runtime.sqs.send_message(
        QueueUrl=runtime.queue_url,
        MessageBody=json.dumps(push.to_dict()),
        MessageGroupId=push.repository[:128],
        MessageDeduplicationId=_dedupe_id(push.dedupe_id),
    )
    logger.info(
        "push queued",
        extra={
            **log,
            "repository": push.repository,
            "branch": push.branch,
            "commit": push.commit,
            "message_id": sent["MessageId"],
        },
    )
    return _response(
        202, status="queued", repository=push.repository, branch=push.branch, commit=push.commit
    )
