"""Gate function: a candidate is promoted only when proven healthy; otherwise it is rolled back.

Triggers: gate checks on the gate queue (SQS, queued by the rollout function and by the gate
itself every few seconds), a safety-net schedule that resumes anything stuck, and manual invokes
``{"action": "promote" | "abort" | "rollback", "app": "..."}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.gate.entry import GateRuntime, handle
from greenlight.handler import Lazy
from greenlight.settings import GateSettings

logger = Logger(service="greenlight-gate")
runtime = Lazy(lambda: GateRuntime.build(GateSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
