"""The night shrink's state in the rollouts table (``pk = night#<group>``, ``sk = state``):
a pause, tonight's skip, and ``draining_until``, the marker that makes rollouts wait while the
group's nodes drain (``greenlight.interlock``)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, NamedTuple

from .marshal import item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class NightState(NamedTuple):
    paused_until: date | None = None
    skip: date | None = None
    draining_until: int = 0  # ms: rollouts wait until then


def _day(raw: Any) -> date | None:
    return date.fromisoformat(raw) if raw else None


class NightStore:
    def __init__(self, client: DynamoDBClient, table: str, group: str) -> None:
        self.client, self.table = client, table
        self.key = {"pk": value(f"night#{group}"), "sk": value("state")}

    def load(self) -> NightState:
        found = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True)
        raw = plain(found.get("Item") or {})
        return NightState(
            paused_until=_day(raw.get("paused_until")),
            skip=_day(raw.get("skip")),
            draining_until=int(raw.get("draining_until") or 0),
        )

    def save(self, state: NightState) -> None:
        body = {
            "paused_until": state.paused_until.isoformat() if state.paused_until else None,
            "skip": state.skip.isoformat() if state.skip else None,
            "draining_until": state.draining_until or None,
        }
        self.client.put_item(TableName=self.table, Item=self.key | item(body))
