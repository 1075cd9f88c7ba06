"""What the notifier told the world about a rollout (``pk = app#<name>``,
``sk = notify#<rollout_id>``): one item per rollout, written only by the notifier.

- ``sent``: every delivery, in the order made: ``{target, state, at, event_id, detail}``, where
  ``target`` is one of :data:`TARGETS` and ``state`` what was said (a commit status's state, a
  deployment status, ``posted`` for a comment or a message), or ``failed`` with the reason in
  ``detail`` when the notifier gave up on it;
- ``deployment_id``: the GitHub deployment made for the rollout, once made;
- ``handled``: the ids of the events already handled (an event delivered twice is sent once);
- ``applied``: the highest history index whose GitHub statuses were sent (events arrive out of
  order: an older phase is never sent after a newer one);
- ``repository``: the GitHub repository (``owner/name``) of ``deployment_id``.

``greenlight trace`` and ``greenlight status`` read it; the announce function's stream ignores
it (it is not a rollout item).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from .marshal import Update, condition_failed, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

GITHUB_STATUS = "github-status"
GITHUB_DEPLOYMENT = "github-deployment"
CODECOMMIT_COMMENT = "codecommit-comment"
SNS = "sns"
SLACK = "slack"
TARGETS = (GITHUB_STATUS, GITHUB_DEPLOYMENT, CODECOMMIT_COMMENT, SNS, SLACK)


class Sent(NamedTuple):
    target: str
    state: str
    at: int  # ms
    event_id: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class NotifyRecord(NamedTuple):
    app: str
    rollout_id: str
    sent: tuple[Sent, ...] = ()
    deployment_id: int | None = None
    handled: frozenset[str] = frozenset()
    applied: int = -1
    repository: str = ""

    @classmethod
    def from_item(cls, raw: Mapping[str, Any]) -> NotifyRecord:
        return cls(
            app=str(raw["pk"]).removeprefix("app#"),
            rollout_id=str(raw["sk"]).removeprefix("notify#"),
            sent=tuple(
                Sent(
                    target=str(s.get("target", "")),
                    state=str(s.get("state", "")),
                    at=int(s.get("at") or 0),
                    event_id=str(s.get("event_id", "")),
                    detail=str(s.get("detail", "")),
                )
                for s in raw.get("sent") or []
            ),
            deployment_id=int(raw["deployment_id"]) if raw.get("deployment_id") else None,
            handled=frozenset(str(h) for h in raw.get("handled") or []),
            applied=int(raw["applied"]) if raw.get("applied") is not None else -1,
            repository=str(raw.get("repository") or ""),
        )


def _key(app: str, rollout_id: str) -> dict[str, Any]:
    return {"pk": value(f"app#{app}"), "sk": value(f"notify#{rollout_id}")}


@dataclass
class NotifyStore:
    client: DynamoDBClient
    table: str
    clock: Callable[[], float] = time.time

    def load(self, app: str, rollout_id: str) -> NotifyRecord | None:
        found = self.client.get_item(
            TableName=self.table, Key=_key(app, rollout_id), ConsistentRead=True
        ).get("Item")
        return NotifyRecord.from_item(plain(found)) if found else None

    def record(self, app: str, rollout_id: str, sent: list[Sent]) -> None:
        """Append ``sent`` to the rollout's deliveries."""
        if not sent:
            return
        update = Update(appends={"sent": [s.to_dict() for s in sent]})
        self.client.update_item(
            TableName=self.table,
            Key=_key(app, rollout_id),
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names(),
            ExpressionAttributeValues=update.values(),
        )

    def mark_handled(self, app: str, rollout_id: str, event_id: str) -> bool:
        """Record ``event_id`` as handled; False when it already was (a repeat delivery)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(app, rollout_id),
                UpdateExpression="ADD #handled :id",
                ConditionExpression=(
                    "attribute_not_exists(#handled) OR NOT contains(#handled, :one)"
                ),
                ExpressionAttributeNames={"#handled": "handled"},
                ExpressionAttributeValues={":id": {"SS": [event_id]}, ":one": value(event_id)},
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def set_deployment(
        self, app: str, rollout_id: str, deployment_id: int, repository: str = ""
    ) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=_key(app, rollout_id),
            UpdateExpression="SET #d = :d, #r = :r",
            ExpressionAttributeNames={"#d": "deployment_id", "#r": "repository"},
            ExpressionAttributeValues={":d": value(deployment_id), ":r": value(repository)},
        )

    def advance(self, app: str, rollout_id: str, index: int) -> bool:
        """Record that the GitHub statuses of history entry ``index`` were sent; False when a
        newer (or the same) entry's already were."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(app, rollout_id),
                UpdateExpression="SET #a = :i",
                ConditionExpression="attribute_not_exists(#a) OR #a < :i",
                ExpressionAttributeNames={"#a": "applied"},
                ExpressionAttributeValues={":i": value(index)},
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def of_app(self, app: str) -> list[NotifyRecord]:
        """Every rollout of ``app`` the notifier has a record of, oldest first."""
        found: list[NotifyRecord] = []
        start: dict[str, Any] | None = None
        for _ in range(1000):  # pages of up to 1 MB: far more than any app's history
            page = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
                ExpressionAttributeValues={":pk": value(f"app#{app}"), ":sk": value("notify#")},
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),  # type: ignore[arg-type]
            )
            found.extend(NotifyRecord.from_item(plain(i)) for i in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return found
