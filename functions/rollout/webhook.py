"""GitHub webhook function (Lambda Function URL): verify, answer at once, queue the push.

It answers well within GitHub's 10 s: the rollout itself runs in the rollout function, fed by
an SQS FIFO queue (one message group per repository, deduplicated by delivery id).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.github import WebhookRuntime, handle
from greenlight.handler import Lazy
from greenlight.settings import WebhookSettings

logger = Logger(service="greenlight-webhook")
runtime = Lazy(lambda: WebhookRuntime.build(WebhookSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
