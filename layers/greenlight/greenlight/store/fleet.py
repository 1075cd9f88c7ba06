"""The HAProxy fleet's reloads in the rollouts table (``pk = edge#fleet``).

One ``reload#<time>#<sha>`` item per run, ``state`` (the latest, which says whether the fleet is
degraded: the gate does not promote onto a degraded fleet) and ``prospect`` (the release a
prospect staged, and on which instances). A promotion whose check round did not see its
candidate UP (``not-up``) changed nothing: it is kept as a ``check#<time>#<sha>`` item only, and
``state`` still describes the fleet as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from .marshal import item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    class Reload(Protocol):
        """What a fleet reload reports (``edge.fleet.FleetResult``)."""

        @property
        def status(self) -> str: ...

        @property
        def version_id(self) -> str: ...

        @property
        def sha256(self) -> str: ...

        @property
        def degraded(self) -> bool: ...

        def to_dict(self) -> dict[str, Any]: ...


FLEET_PK = "edge#fleet"
NOT_UP = "not-up"  # edgepush.FleetStatus.NOT_UP (the store imports nothing of the edge)


class FleetState(TypedDict):
    """The latest reload."""

    status: str
    degraded: bool
    sha256: str
    version_id: str
    why: str
    at: int
    instances: dict[str, dict[str, Any]]  # outcome, detail, command_id; seconds if sent


def _decimals(instances: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each instance's outcome with its ``seconds`` as DynamoDB takes a number (no floats)."""
    return {
        i: {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in o.items()}
        for i, o in instances.items()
    }


@dataclass
class FleetLog:
    client: DynamoDBClient
    table: str
    clock: Callable[[], float] = time.time

    def record(self, result: Reload, why: str) -> None:
        now = self.clock()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        body = item(
            {
                "status": str(result.status),
                "degraded": result.degraded,
                "sha256": result.sha256,
                "version_id": result.version_id,
                "why": why,
                "at": int(now),
                "instances": _decimals(result.to_dict()["instances"]),
            }
        )
        if str(result.status) == NOT_UP:  # nothing changed on the fleet: state stays
            keys = [f"check#{stamp}#{result.sha256[:12]}"]
        else:
            keys = [f"reload#{stamp}#{result.sha256[:12]}", "state"]
        for sk in keys:
            self.client.put_item(TableName=self.table, Item=self._key(sk) | body)

    def record_prospect(self, sha256: str, instances: list[str]) -> None:
        body = {"sha256": sha256, "instances": sorted(instances), "at": int(self.clock())}
        self.client.put_item(TableName=self.table, Item=self._key("prospect") | item(body))

    def staged(self, sha256: str) -> list[str]:
        """The instances the last prospect staged ``sha256`` on (none if it staged another)."""
        found = self._get("prospect")
        if not found or found["sha256"] != sha256:
            return []
        return [str(i) for i in found.get("instances") or []]

    def state(self) -> FleetState | None:
        """The latest reload, or None before the first."""
        found = self._get("state")
        if not found:
            return None
        return FleetState(
            status=found["status"],
            degraded=bool(found["degraded"]),
            sha256=found["sha256"],
            version_id=found["version_id"],
            why=found["why"],
            at=int(found["at"]),
            instances=dict(found.get("instances") or {}),
        )

    def _key(self, sk: str) -> dict[str, Any]:
        return {"pk": value(FLEET_PK), "sk": value(sk)}

    def _get(self, sk: str) -> Mapping[str, Any] | None:
        found = self.client.get_item(
            TableName=self.table, Key=self._key(sk), ConsistentRead=True
        ).get("Item")
        return plain(found) if found else None
