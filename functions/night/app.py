"""Night function: part of the worker Auto Scaling Group sleeps at night, back in the morning.

Triggers: two EventBridge Scheduler schedules in the cluster's time zone (the evening shrink and
the morning restore) and manual invokes ``{"action": "plan" | "shrink" | "restore" | "pause" |
"resume" | "skip"}`` (docs/night.md).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.handler import Lazy
from greenlight.night.entry import NightRuntime, handle
from greenlight.settings import NightFunctionSettings

logger = Logger(service="greenlight-night")
runtime = Lazy(lambda: NightRuntime.build(NightFunctionSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = handle(event, runtime.get(), context)
    logger.info("night", extra={"result": result})
    return result
