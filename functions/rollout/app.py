"""Rollout function: a commit becomes the candidate ("green") Deployment beside the live one.

Triggers: CodeCommit pushes (EventBridge rule, then the CodeCommit queue), GitHub pushes
queued by the webhook function (SQS FIFO), and manual invokes
``{"action": "rollout", "app": "...", "commit": "..."}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.handler import Lazy
from greenlight.rollout.entry import RolloutRuntime, handle
from greenlight.settings import RolloutSettings

logger = Logger(service="greenlight-rollout")
runtime = Lazy(lambda: RolloutRuntime.build(RolloutSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
