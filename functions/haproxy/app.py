"""HAProxy edge function: render the fleet's config from the cluster and publish it to S3.

Triggers: worker Auto Scaling Group instance launch/terminate events, a reconcile schedule, and
manual invokes ``{"action": "render" | "push" | "rollback", "dry_run": false}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.edge.entry import EdgeRuntime, handle
from greenlight.handler import Lazy
from greenlight.settings import EdgeFunctionSettings

logger = Logger(service="greenlight-haproxy")
runtime = Lazy(lambda: EdgeRuntime.build(EdgeFunctionSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
