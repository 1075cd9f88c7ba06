"""Rollout records in DynamoDB: the one source of truth for what is live and what is in flight.

One table, two item kinds per app (``pk = app#<name>``):

- ``sk = state``: the app's latest accepted push (``sequence``, ``commit``, ``rollout_id``), its
  ``phase``, what is live (``live_colour``, ``live_version``, ``live_image``) and, from a
  promotion until the previous colour is retired or its slot is taken by a newer rollout,
  ``backup_colour``: the previous live colour, kept warm, that backs up the live route.
- ``sk = rollout#<rollout_id>``: one rollout with its image, slot, phase, reason and history.

Acceptance is one transaction whose condition makes rollouts forward-only per app: a push is
accepted only when its sequence is newer than the stored one (or equal, when it continues the
stored commit: two pushes within one second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from ..colour import Colour


class Phase(StrEnum):
    DEPLOYING = "deploying"  # accepted; the candidate Deployment is being written
    GATING = "gating"  # handed to the health gate
    AWAITING_APPROVAL = "awaiting_approval"  # healthy; the app wants a manual promote
    PROMOTING = "promoting"
    WATCHING = "watching"  # live, inside the post-promotion watch window
    LIVE = "live"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"


IN_FLIGHT = (
    Phase.DEPLOYING,
    Phase.GATING,
    Phase.AWAITING_APPROVAL,
    Phase.PROMOTING,
    Phase.WATCHING,
)


@dataclass(frozen=True, kw_only=True)
class AppState:
    app: str
    sequence: int = 0
    commit: str | None = None
    rollout_id: str | None = None
    phase: str | None = None
    live_colour: Colour = Colour.BLUE
    live_version: str | None = None
    live_image: str | None = None
    backup_colour: Colour | None = None

    @classmethod
    def from_item(cls, app: str, item: dict[str, Any] | None) -> AppState:
        if not item:
            return cls(app=app)
        return cls(
            app=app,
            sequence=int(item.get("sequence", 0)),
            commit=item.get("commit"),
            rollout_id=item.get("rollout_id"),
            phase=item.get("phase"),
            live_colour=Colour(item.get("live_colour", Colour.BLUE.value)),
            live_version=item.get("live_version"),
            live_image=item.get("live_image"),
            backup_colour=Colour(item["backup_colour"]) if item.get("backup_colour") else None,
        )


@dataclass(frozen=True, kw_only=True)
class Rollout:
    app: str
    rollout_id: str
    version: str
    image: str
    colour: Colour
    phase: Phase
    sequence: int
    source: str
    reason: str | None = None
    created_at: int = 0  # ms
    # Set by the gate at promotion: what was live before, and the windows that follow.
    previous_colour: Colour | None = None
    previous_version: str | None = None
    previous_image: str | None = None
    watch_until: int | None = None  # ms
    warm_until: int | None = None  # ms
    retired: bool = False  # the previous colour has been scaled down
    preview_pushed: bool = False  # the fleet routes the preview host to this candidate
    ready_at: int | None = None  # ms; when the gate first saw the candidate ready
    last_check_at: int = 0  # ms; the gate's sweep leaves recently checked rollouts alone
    chain: str = ""  # the gate's current chain of checks ("": the one the rollout started)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Rollout:
        previous = item.get("previous_colour")
        return cls(
            created_at=int(item.get("created_at", 0)),
            previous_colour=Colour(previous) if previous else None,
            previous_version=item.get("previous_version"),
            previous_image=item.get("previous_image"),
            watch_until=item.get("watch_until"),
            warm_until=item.get("warm_until"),
            retired=bool(item.get("retired", False)),
            preview_pushed=bool(item.get("preview_pushed", False)),
            ready_at=int(item["ready_at"]) if item.get("ready_at") is not None else None,
            last_check_at=int(item.get("last_check_at", 0)),
            chain=str(item.get("chain", "")),
            app=item["app"],
            rollout_id=item["rollout_id"],
            version=item["version"],
            image=item["image"],
            colour=Colour(item["colour"]),
            phase=Phase(item["phase"]),
            sequence=int(item["sequence"]),
            source=item["source"],
            reason=item.get("reason"),
        )


def rollout_id_for(sequence: int, version: str) -> str:
    """Sortable by time: ``<13-digit ms>-<first 12 of the version>``."""
    short = "".join(c if c.isalnum() else "-" for c in version)[:12]
    return f"{sequence:013d}-{short}"


class Stale(Exception):
    """The push is older than (or the same as) what the app already accepted."""

    def __init__(self, state: AppState) -> None:
        super().__init__(
            f"app {state.app}: stored sequence {state.sequence} "
            f"(commit {state.commit}) is not older"
        )
        self.state = state


def _pk(app: str) -> str:
    return f"app#{app}"


def _now() -> int:
    return int(time.time() * 1000)


@dataclass
class RolloutStore:
    """DynamoDB access for rollouts. ``client`` is a boto3 DynamoDB client."""

    client: Any
    table: str
    clock: Callable[[], int] = _now

    def state(self, app: str) -> AppState:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": _pk(app)}, "sk": {"S": "state"}},
            ConsistentRead=True,
        ).get("Item")
        return AppState.from_item(app, _plain(item) if item else None)

    def rollout(self, app: str, rollout_id: str) -> Rollout | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": _pk(app)}, "sk": {"S": f"rollout#{rollout_id}"}},
        ).get("Item")
        return Rollout.from_item(_plain(item)) if item else None

    def history(self, app: str, *, limit: int = 20) -> list[Rollout]:
        items = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": _pk(app)}, ":r": {"S": "rollout#"}},
            ScanIndexForward=False,
            Limit=limit,
        )["Items"]
        return [Rollout.from_item(_plain(item)) for item in items]

    def accept(self, rollout: Rollout, *, commit: str | None, previous: str | None) -> AppState:
        """Record ``rollout`` as the app's newest; return the state it replaced.

        Raises :class:`Stale` when the app already holds a newer (or the same) push.
        """
        before = self.state(rollout.app)
        now = self.clock()
        condition = "attribute_not_exists(pk) OR #seq < :seq"
        values: dict[str, Any] = {
            ":seq": {"N": str(rollout.sequence)},
            ":rid": {"S": rollout.rollout_id},
            ":phase": {"S": rollout.phase.value},
            ":now": {"N": str(now)},
            ":commit": {"S": commit or ""},
        }
        if previous:
            condition += " OR (#seq = :seq AND #commit = :prev)"
            values[":prev"] = {"S": previous}
        item = {
            "pk": {"S": _pk(rollout.app)},
            "sk": {"S": f"rollout#{rollout.rollout_id}"},
            "app": {"S": rollout.app},
            "rollout_id": {"S": rollout.rollout_id},
            "version": {"S": rollout.version},
            "image": {"S": rollout.image},
            "colour": {"S": rollout.colour.value},
            "phase": {"S": rollout.phase.value},
            "sequence": {"N": str(rollout.sequence)},
            "source": {"S": rollout.source},
            "created_at": {"N": str(now)},
            "updated_at": {"N": str(now)},
            "history": {"L": [_event(now, rollout.phase, "accepted")]},
        }
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": _pk(rollout.app)}, "sk": {"S": "state"}},
                            # The new rollout takes the slot of the warm colour: it no
                            # longer backs up the live route.
                            "UpdateExpression": "SET #seq = :seq, #commit = :commit, "
                            "rollout_id = :rid, phase = :phase, updated_at = :now "
                            "REMOVE backup_colour",
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#seq": "sequence", "#commit": "commit"},
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise Stale(self.state(rollout.app)) from None
            raise
        return before

    def set_phase(
        self,
        app: str,
        rollout_id: str,
        phase: Phase,
        *,
        note: str,
        expect: tuple[Phase, ...] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Move a rollout to ``phase`` (only from ``expect`` when given). False if it was not."""
        now = self.clock()
        names = {"#phase": "phase"}
        values: dict[str, Any] = {
            ":phase": {"S": phase.value},
            ":now": {"N": str(now)},
            ":ev": {"L": [_event(now, phase, note)]},
        }
        update = "SET #phase = :phase, updated_at = :now, history = list_append(history, :ev)"
        if reason is not None:
            update += ", reason = :reason"
            values[":reason"] = {"S": reason}
        condition = "attribute_exists(pk)"
        if expect:
            keys = []
            for i, allowed in enumerate(expect):
                values[f":e{i}"] = {"S": allowed.value}
                keys.append(f":e{i}")
            condition += f" AND #phase IN ({', '.join(keys)})"
        if not self._conditional_update(
            Key={"pk": {"S": _pk(app)}, "sk": {"S": f"rollout#{rollout_id}"}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ):
            return False
        self._mirror_phase(app, rollout_id, phase, now)
        return True

    def update(self, app: str, rollout_id: str, fields: dict[str, str | int | bool]) -> None:
        """Set plain fields on a rollout record (the gate's promotion bookkeeping)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        for i, (key, value) in enumerate(sorted(fields.items())):
            names[f"#f{i}"] = key
            if isinstance(value, bool):
                values[f":v{i}"] = {"BOOL": value}
            elif isinstance(value, int):
                values[f":v{i}"] = {"N": str(value)}
            else:
                values[f":v{i}"] = {"S": value}
            sets.append(f"#f{i} = :v{i}")
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": _pk(app)}, "sk": {"S": f"rollout#{rollout_id}"}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def set_live(
        self,
        app: str,
        *,
        colour: Colour,
        version: str,
        image: str,
        rollout_id: str | None,
        backup: Colour | None = None,
    ) -> bool:
        """Make ``colour`` live, with ``backup`` (the warm previous colour) behind it or none.
        With ``rollout_id``, only while that rollout is the newest (a promotion); without,
        unconditionally (a revert to what was live). False if not."""
        values: dict[str, Any] = {
            ":c": {"S": colour.value},
            ":v": {"S": version},
            ":i": {"S": image},
            ":now": {"N": str(self.clock())},
        }
        update = "SET live_colour = :c, live_version = :v, live_image = :i, updated_at = :now"
        if backup is None:
            update += " REMOVE backup_colour"
        else:
            update += ", backup_colour = :b"
            values[":b"] = {"S": backup.value}
        condition = "attribute_exists(pk)"
        if rollout_id is not None:
            condition += " AND rollout_id = :rid"
            values[":rid"] = {"S": rollout_id}
        return self._conditional_update(
            Key={"pk": {"S": _pk(app)}, "sk": {"S": "state"}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def take_over_chain(self, app: str, rollout_id: str, chain: str, *, seen: int | None) -> bool:
        """Make ``chain`` the rollout's chain of checks. With ``seen`` (the ``last_check_at`` the
        caller read), only if no check has run since: the sweep never races a live chain."""
        values: dict[str, Any] = {":chain": {"S": chain}}
        condition = "attribute_exists(pk)"
        if seen is not None:
            condition += " AND (attribute_not_exists(last_check_at) OR last_check_at = :seen)"
            values[":seen"] = {"N": str(seen)}
        return self._conditional_update(
            Key={"pk": {"S": _pk(app)}, "sk": {"S": f"rollout#{rollout_id}"}},
            UpdateExpression="SET chain = :chain",
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def drop_backup(self, app: str, rollout_id: str) -> bool:
        """The warm colour is retired: it no longer backs up the live route (only while
        ``rollout_id`` is the newest; a newer rollout has dropped it already)."""
        return self._conditional_update(
            Key={"pk": {"S": _pk(app)}, "sk": {"S": "state"}},
            UpdateExpression="SET updated_at = :now REMOVE backup_colour",
            ConditionExpression="rollout_id = :rid",
            ExpressionAttributeValues={":now": {"N": str(self.clock())}, ":rid": {"S": rollout_id}},
        )

    def draining_until(self, group: str) -> int:
        """Until when (ms) the night shrink drains ``group``'s nodes; 0 when it does not."""
        item = (
            self.client.get_item(
                TableName=self.table,
                Key={"pk": {"S": f"night#{group}"}, "sk": {"S": "state"}},
                ConsistentRead=True,
            ).get("Item")
            or {}
        )
        return int((item.get("draining_until") or {}).get("N", 0))

    def _mirror_phase(self, app: str, rollout_id: str, phase: Phase, now: int) -> None:
        """Keep the state item's phase in step while ``rollout_id`` is still the newest."""
        self._conditional_update(
            Key={"pk": {"S": _pk(app)}, "sk": {"S": "state"}},
            UpdateExpression="SET phase = :phase, updated_at = :now",
            ConditionExpression="rollout_id = :rid",
            ExpressionAttributeValues={
                ":phase": {"S": phase.value},
                ":now": {"N": str(now)},
                ":rid": {"S": rollout_id},
            },
        )

    def _conditional_update(self, **request: Any) -> bool:
        """One UpdateItem on the table; False when its condition did not hold."""
        try:
            self.client.update_item(TableName=self.table, **request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _event(now: int, phase: Phase, note: str) -> dict[str, Any]:
    return {"M": {"at": {"N": str(now)}, "phase": {"S": phase.value}, "note": {"S": note[:500]}}}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values (S, N, L, M, BOOL, NULL)."""
    return {key: _value(value) for key, value in item.items()}


def _value(value: dict[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    if kind == "L":
        return [_value(v) for v in raw]
    if kind == "M":
        return _plain(raw)
    if kind == "BOOL":
        return bool(raw)
    return None
