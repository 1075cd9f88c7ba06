"""Announce function: every committed change of the rollouts table, published to EventBridge.

Trigger: the rollouts table's DynamoDB stream (new and old images). Each phase change of a
rollout becomes a ``Greenlight Rollout State Change`` event, each fleet reload a ``Greenlight
Edge Push``, each night run that acted a ``Greenlight Night`` (source ``greenlight``; the
schemas are in events/schemas/, described in docs/events.md).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from greenlight.announce.entry import AnnounceRuntime, handle
from greenlight.handler import Lazy
from greenlight.settings import AnnounceSettings

logger = Logger(service="greenlight-announce")
runtime = Lazy(lambda: AnnounceRuntime.build(AnnounceSettings.from_env()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.get(), context)
