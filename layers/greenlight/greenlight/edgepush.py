"""The edge push port: how the rollout, gate and night functions push the HAProxy edge.

A push is the haproxy function, invoked and waited for (it runs one at a time: reserved
concurrency 1). The rollout function pushes before it writes a candidate's pods (the preview
route, and the promotion staged ahead as a prospect), the gate at promotion, revert and
retirement, the night function around a drain. This module is the only thing the four jobs
share of one another (the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient


class EdgePush(Protocol):
    def __call__(
        self, reason: str, *, prospect: dict[str, str] | None = None
    ) -> dict[str, Any]: ...


class FleetStatus(StrEnum):
    """How a push's fleet reload ended (``edge.fleet``); ``no-fleet``: none is configured."""

    APPLIED = "applied"
    CANARY_FAILED = "canary-failed"
    INCOMPLETE = "incomplete"
    NO_INSTANCES = "no-instances"
    NO_FLEET = "no-fleet"


TAKEN = frozenset({FleetStatus.APPLIED, FleetStatus.NO_FLEET})


@dataclass
class LambdaEdgePush:
    """The haproxy function, invoked and waited for: a push that reports the fleet's reload."""

    client: LambdaClient
    function: str

    def __call__(self, reason: str, *, prospect: dict[str, str] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"action": "push", "reason": reason}
        if prospect is not None:
            event["prospect"] = prospect
        reply = self.client.invoke(
            FunctionName=self.function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        payload = json.loads(reply["Payload"].read() or b"{}")
        if reply.get("FunctionError"):
            return {"status": "rejected", "error": str(payload)[:500]}
        result: dict[str, Any] = payload
        return result


def taken(pushed: dict[str, Any]) -> tuple[bool, str]:
    """Whether the fleet took a push's config, and the fleet's status."""
    fleet_status = str((pushed.get("fleet") or {}).get("status", FleetStatus.NO_FLEET))
    ok = pushed.get("status") != "rejected" and fleet_status in TAKEN
    return ok, fleet_status


def published(pushed: dict[str, Any]) -> dict[str, Any]:
    """What a push that the fleet took made live, for the rollout record: the config's S3
    version and sha256, and the SSM command that applied it on each instance."""
    fleet: dict[str, Any] = pushed.get("fleet") or {}
    if not fleet.get("version_id"):
        return {}
    commands = {
        instance: str(outcome.get("command_id") or "")
        for instance, outcome in (fleet.get("instances") or {}).items()
    }
    return {
        "config_version": str(fleet["version_id"]),
        "config_sha256": str(fleet.get("sha256") or ""),
        "ssm_commands": {i: c for i, c in commands.items() if c},
    }
