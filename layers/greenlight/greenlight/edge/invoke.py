"""Pushing the edge from another function: the haproxy function, invoked and waited for.

The rollout function pushes before it writes a candidate's pods (the preview route, and the
promotion staged ahead as a prospect), the gate at promotion and revert, the night function
around a drain. The haproxy function runs one at a time (reserved concurrency 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


class EdgePush(Protocol):
    def __call__(
        self, reason: str, *, prospect: dict[str, str] | None = None
    ) -> dict[str, Any]: ...


@dataclass
class LambdaEdgePush:
    """The haproxy function, invoked and waited for: a push that reports the fleet's reload."""

    client: Any
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
    fleet_status = str((pushed.get("fleet") or {}).get("status", "no-fleet"))
    ok = pushed.get("status") != "rejected" and fleet_status in ("applied", "no-fleet")
    return ok, fleet_status
