"""Notify function: rollout state changes, told to GitHub, CodeCommit, SNS and Slack.

Trigger: the notify queue (SQS), fed by an EventBridge rule on the ``Greenlight Rollout State
Change`` events the announce function publishes. What each phase sends is in docs/events.md
("Notifications"); a notification that cannot be made fails its record (retried, then the
notify dead-letter queue) and never touches the rollout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.handler import Lazy
from greenlight.notify.entry import NotifyRuntime, handle
from greenlight.settings import NotifySettings

logger = Logger(service="greenlight-notify")
runtime = Lazy(lambda: NotifyRuntime.build(NotifySettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
