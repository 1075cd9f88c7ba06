"""The night shrink's state in the rollouts table (``pk = night#<group>``, ``sk = state``):
a pause, tonight's skip, and ``draining_until``, the marker that makes rollouts wait while the
group's nodes drain (``greenlight.interlock``); and one ``run#<time>`` item per shrink or
restore that acted, which the announce function publishes as a ``Greenlight Night`` event."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from .marshal import item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


class NightState(NamedTuple):
    paused_until: date | None = None
    skip: date | None = None
    draining_until: int = 0  # ms: rollouts wait until then


def _day(raw: Any) -> date | None:
    return date.fromisoformat(raw) if raw else None


class NightStore:
    def __init__(self, client: DynamoDBClient, table: str, group: str) -> None:
        self.client, self.table = client, table
        self.group = group
        self.key = {"pk": value(f"night#{group}"), "sk": value("state")}

    def load(self) -> NightState:
        found = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True)
        raw = plain(found.get("Item") or {})
        return NightState(
            paused_until=_day(raw.get("paused_until")),
            skip=_day(raw.get("skip")),
            draining_until=int(raw.get("draining_until") or 0),
        )

    def not_draining(self, now_ms: int) -> TransactWriteItemTypeDef:
        """A transaction's ``ConditionCheck`` on this group's night state: no drain under way
        at ``now_ms`` (``draining_until`` absent or past). Acceptance carries it, so a shrink
        that set its marker after the push was read cannot be missed."""
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": self.key,
                "ConditionExpression": "attribute_not_exists(#until) OR #until <= :now",
                "ExpressionAttributeNames": {"#until": "draining_until"},
                "ExpressionAttributeValues": {":now": value(now_ms)},
            }
        }

    def save(self, state: NightState) -> None:
        body = {
            "paused_until": state.paused_until.isoformat() if state.paused_until else None,
            "skip": state.skip.isoformat() if state.skip else None,
            "draining_until": state.draining_until or None,
        }
        self.client.put_item(TableName=self.table, Item=self.key | item(body))

    def record_run(self, report: Mapping[str, Any], at: float) -> None:
        """One shrink or restore that changed (or tried to change) the group, as
        ``run#<time>``: what it did, for the night's events and ``greenlight status``."""
        keep = (
            "action",
            "status",
            "why",
            "removed",
            "evictions",
            "target",
            "added",
            "ready_nodes",
            "unmarked",
            "fleet",
        )
        body = {k: report[k] for k in keep if report.get(k) not in (None, "")}
        seconds = report.get("seconds")
        body |= {"group": self.group, "at": int(at)}
        if seconds is not None:
            body["seconds"] = Decimal(str(seconds))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        key = {"pk": self.key["pk"], "sk": value(f"run#{stamp}")}
        self.client.put_item(TableName=self.table, Item=key | item(body))
