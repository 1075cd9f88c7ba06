"""Rollout records in DynamoDB: the one source of truth for what is live and what is in flight.

One table, two item kinds per app (``pk = app#<name>``):

- ``sk = state``: the app's newest accepted push (``sequence``, ``commit``, ``rollout_id``) and
  its ``phase``; what is live (``live_colour``, ``live_version``, ``live_image``), the rollout
  that made it live (``live_rollout_id``) and that rollout's phase (``live_phase``); and, from a
  promotion until the previous colour is retired or its slot taken by a newer rollout,
  ``backup_colour``: the previous live colour, kept warm, that backs up the live route.
- ``sk = rollout#<rollout_id>``: one rollout with its image, slot, phase (and when it entered
  it), reason and history (every move: when, from, to, by whom, why).

Every phase change goes through :meth:`RolloutStore.move` (or :meth:`RolloutStore.accept` and
:meth:`RolloutStore.take_slot`, which make theirs the same way): the condition comes from
``lifecycle.TRANSITIONS``, and the rollout item and the state item's mirrored phases are written
in one transaction, so the two never disagree.

Acceptance is one transaction whose condition makes rollouts forward-only per app: a push is
accepted only when its sequence is newer than the stored one (or equal, when it continues the
stored commit: two pushes within one second). It supersedes the app's newest rollout if that one
was still pending; a promoted rollout keeps its watch and its warm colour until the newer
rollout takes its slot (:meth:`RolloutStore.take_slot`), right before writing its candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from ..colour import Colour
from ..errors import PermanentError, TemporaryError
from ..lifecycle import ENDED, PENDING, PROMOTED, Actor, Phase, allowed, taken_over
from .marshal import Item, Update, item, plain, value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

BATCH_KEYS = 100  # BatchGetItem's most keys per request
BATCH_ROUNDS = 3  # a batch's unprocessed keys asked again at most this often
RACE_RETRIES = 3  # a transaction whose state item changed underneath is read and tried again
CONDITION_FAILED = "ConditionalCheckFailed"  # a cancellation reason: the item's condition
NO_REASON = "None"  # a cancellation reason: this item was fine (another one cancelled it)
CONTENDED_DELAY_SECONDS = 2.0  # a transaction cancelled for a reason other than its conditions


class Cancellation(NamedTuple):
    """Why DynamoDB cancelled a transaction, item by item (its ``CancellationReasons``)."""

    failed: tuple[bool, ...]  # per item, in order: its condition did not hold
    other: tuple[str, ...]  # every other reason's code (TransactionConflict, ThrottlingError...)

    @property
    def contended(self) -> bool:
        """Cancelled with no condition that failed: a conflict, a throttle, a fault. Nothing
        is known about the conditions; the same transaction may succeed later."""
        return not any(self.failed)


def cancellation(reasons: Iterable[Mapping[str, Any]], count: int) -> Cancellation:
    """A ``TransactionCanceledException``'s ``CancellationReasons`` for a transaction of
    ``count`` items, classified. Reasons missing (an answer without them) count as unknown,
    never as a failed condition."""
    codes = [str(reason.get("Code") or NO_REASON) for reason in reasons][:count]
    failed = tuple(code == CONDITION_FAILED for code in codes) + (False,) * (count - len(codes))
    other = [code for code in codes if code not in (CONDITION_FAILED, NO_REASON)]
    if len(codes) < count and not any(failed):
        other.append("no cancellation reasons")
    return Cancellation(failed, tuple(dict.fromkeys(other)))


class Contended(TemporaryError):
    """A transaction DynamoDB cancelled for a reason other than its conditions (a conflict
    with another write, throttling, an internal fault): the same request may succeed later."""

    def __init__(self, app: str, cancelled: Cancellation) -> None:
        super().__init__(
            f"app {app}: the write was cancelled ({', '.join(cancelled.other)}); try again",
            delay=CONTENDED_DELAY_SECONDS,
        )
        self.cancelled = cancelled


def _colour(raw: Any) -> Colour | None:
    return Colour(raw) if raw else None


def _phase(raw: Any) -> Phase | None:
    return Phase(raw) if raw else None


class AppState(NamedTuple):
    app: str
    sequence: int = 0
    commit: str | None = None
    rollout_id: str | None = None  # the newest accepted rollout
    phase: Phase | None = None  # ... and its phase
    live_colour: Colour = Colour.BLUE
    live_version: str | None = None
    live_image: str | None = None
    live_rollout_id: str | None = None  # the rollout whose candidate is live
    live_phase: Phase | None = None  # ... and its phase
    backup_colour: Colour | None = None

    @classmethod
    def from_item(cls, app: str, raw: Mapping[str, Any] | None) -> AppState:
        if not raw:
            return cls(app=app)
        raw = _written_before_the_lifecycle(raw)
        return cls(
            app=app,
            sequence=int(raw.get("sequence", 0)),
            commit=raw.get("commit") or None,
            rollout_id=raw.get("rollout_id"),
            phase=_phase(raw.get("phase")),
            live_colour=Colour(raw.get("live_colour", Colour.BLUE.value)),
            live_version=raw.get("live_version"),
            live_image=raw.get("live_image"),
            live_rollout_id=raw.get("live_rollout_id") or None,
            live_phase=_phase(raw.get("live_phase")),
            backup_colour=_colour(raw.get("backup_colour")),
        )


class Rollout(NamedTuple):
    app: str
    rollout_id: str
    version: str
    image: str
    colour: Colour
    phase: Phase
    sequence: int
    source: str
    repository: str | None = None  # where the push came from (manual: the app's source)
    branch: str | None = None
    commit: str | None = None  # None: a manual rollout of an explicit image
    digest: str | None = None  # the image's digest, once ECR has it
    reason: str | None = None
    created_at: int = 0  # ms
    entered_at: int = 0  # ms; when it entered its phase (its deadline counts from there)
    # Set by the gate at promotion: what was live before, and the windows that follow.
    previous_colour: Colour | None = None
    previous_version: str | None = None
    previous_image: str | None = None
    previous_rollout_id: str | None = None
    promoted_at: int | None = None  # ms
    watch_until: int | None = None  # ms
    warm_until: int | None = None  # ms
    preview_pushed: bool = False  # the fleet routes the preview host to this candidate
    ready_at: int | None = None  # ms; when the gate first saw the candidate ready
    last_check_at: int = 0  # ms; the gate's sweep leaves recently checked rollouts alone
    chain: str = ""  # the gate's current chain of checks ("": the one the rollout started)
    # Set at promotion: the edge config that made it live, and the SSM command per instance.
    config_version: str | None = None
    config_sha256: str | None = None
    ssm_commands: dict[str, str] | None = None
    # Set at acceptance: the delivery that caused it (the trigger's dedupe id:
    # ``github:<delivery>``, ``eventbridge:<event id>``, ``manual:<request id>``) and the
    # namespace of its slot's Deployment (``<app>-<colour>``).
    delivery: str | None = None
    namespace: str | None = None
    # The gate's analysis of the edge's counters (gate/analysis.py): the candidate's counters
    # per instance when it was first seen ready, replaced at promotion (what the verdicts are
    # measured from), and the verdicts at the promotion decision and at the end of the watch.
    analysis_baseline: dict[str, Any] | None = None
    gating_analysis: dict[str, Any] | None = None
    watch_analysis: dict[str, Any] | None = None
    # Set by the gate when it put the previous colour back live (a revert, or a promotion that
    # failed) and the edge did not take the push yet: the revert's reason. The gate pushes
    # again on its next check, within the phase's deadline (gate/decide.py ``unpushed``).
    reverting: str | None = None

    @classmethod
    def from_item(cls, raw: Mapping[str, Any]) -> Rollout:
        raw = _rollout_before_the_lifecycle(raw)
        known = set(cls._fields)
        values = {k: v for k, v in raw.items() if k in known}
        values["colour"] = Colour(values["colour"])
        values["phase"] = Phase(values["phase"])
        values["previous_colour"] = _colour(values.get("previous_colour"))
        return cls(**values)

    def to_item(self) -> dict[str, Any]:
        return self._asdict()


def _written_before_the_lifecycle(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """A state item from before ``live_rollout_id`` (something was promoted, and no
    ``live_rollout_id`` was ever written): the newest rollout, once promoted, was the live
    one."""
    old = "live_version" in raw and "live_rollout_id" not in raw
    if not old or raw.get("phase") not in PROMOTED:
        return raw
    return {**raw, "live_rollout_id": raw.get("rollout_id"), "live_phase": raw.get("phase")}


def _rollout_before_the_lifecycle(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """A rollout item from before ``entered_at`` and ``settled``: its deadline counts from its
    last write; a live one whose previous colour was retired has settled."""
    if "entered_at" in raw:
        return raw
    moved = {**raw, "entered_at": raw.get("updated_at") or raw.get("created_at") or 0}
    if raw.get("phase") == Phase.LIVE.value and raw.get("retired"):
        moved["phase"] = Phase.SETTLED.value
    return moved


def rollout_id_for(sequence: int, version: str) -> str:
    """Sortable by time: ``<13-digit ms>-<first 12 of the version>``."""
    short = "".join(c if c.isalnum() else "-" for c in version)[:12]
    return f"{sequence:013d}-{short}"


class CheckFailed(TemporaryError):
    """A check the caller added to acceptance (the night interlock's ``ConditionCheck``) did
    not hold: nothing was written."""

    def __init__(self, app: str) -> None:
        super().__init__(f"app {app}: a check of its acceptance did not hold; try again", delay=1)


class Stale(PermanentError):
    """The push is older than (or the same as) what the app already accepted."""

    def __init__(self, state: AppState) -> None:
        super().__init__(
            f"app {state.app}: stored sequence {state.sequence} "
            f"(commit {state.commit}) is not older"
        )
        self.state = state


class LifecycleError(PermanentError):
    """A move the lifecycle does not have (a bug, never bad input)."""


def _pk(app: str) -> str:
    return f"app#{app}"


def _live_update(rollout: Rollout, backup: Colour | None, at: int) -> Update:
    """The state item's live fields once ``rollout`` is promoted, with ``backup`` behind it."""
    update = Update(
        sets={
            "live_colour": rollout.colour.value,
            "live_version": rollout.version,
            "live_image": rollout.image,
            "live_rollout_id": rollout.rollout_id,
            "live_phase": rollout.phase.value,
            "updated_at": at,
        }
    )
    if backup is None:
        update.removes.append("backup_colour")
    else:
        update.sets["backup_colour"] = backup.value
    return update


def _live_as_read(state: AppState, update: Update) -> str:
    """The condition that the state item still has ``state``'s newest rollout and what it
    read as live (its colour, and its live rollout when it named one); its values go into
    ``update``."""
    update.condition_values |= {"rid": state.rollout_id, "live": state.live_colour.value}
    condition = (
        "#rollout_id = :rid AND (attribute_not_exists(#live_colour) OR #live_colour = :live)"
    )
    if state.live_rollout_id:
        update.condition_values["lrid"] = state.live_rollout_id
        condition += " AND #live_rollout_id = :lrid"
    return condition


def _key(app: str, sk: str) -> Item:
    return {"pk": value(_pk(app)), "sk": value(sk)}


def _now() -> int:
    return int(time.time() * 1000)


def _in(field: str, phases: Iterable[Phase], update: Update) -> str:
    """``#field IN (...)`` over ``phases``, its values added to ``update``."""
    keys = []
    for i, phase in enumerate(sorted(phases)):
        update.condition_values[f"{field}{i}"] = phase.value
        keys.append(f":{field}{i}")
    return f"#{field} IN ({', '.join(keys)})"


class _Move(NamedTuple):
    """One rollout's phase change inside a transaction."""

    app: str
    rollout_id: str
    frm: Phase
    to: Phase
    by: Actor
    why: str
    at: int
    sets: Mapping[str, Any]


class LiveSwitch(NamedTuple):
    """What a promotion writes beside its move (:meth:`RolloutStore.promote`), as the gate
    decides it from the state read (``gate.decide.promotion``): the rollout's ``previous_*``
    fields (what was live before it; empty when recorded already) and the warm backup behind
    the new live colour."""

    previous: Mapping[str, Any]
    backup: Colour | None


@dataclass
class RolloutStore:
    """DynamoDB access for rollouts and app state."""

    client: DynamoDBClient
    table: str
    clock: Callable[[], int] = _now

    # ------------------------------------------------------------------ reads
    def state(self, app: str) -> AppState:
        found = self.client.get_item(
            TableName=self.table, Key=_key(app, "state"), ConsistentRead=True
        ).get("Item")
        return AppState.from_item(app, plain(found) if found else None)

    def states(self, apps: Sequence[str]) -> dict[str, AppState]:
        """Every app's state item in one round trip per :data:`BATCH_KEYS` apps (consistent
        reads, BatchGetItem); an app with none: its default state, as :meth:`state` gives it.
        Keys DynamoDB leaves unprocessed are asked again after a growing pause (50 ms, then
        100 ms), :data:`BATCH_ROUNDS` times at most; then a TemporaryError."""
        found: dict[str, AppState] = {}
        wanted = list(dict.fromkeys(apps))
        for start in range(0, len(wanted), BATCH_KEYS):
            keys = [_key(app, "state") for app in wanted[start : start + BATCH_KEYS]]
            for round_ in range(BATCH_ROUNDS):
                if round_:
                    time.sleep(0.05 * 2 ** (round_ - 1))
                answer = self.client.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                for raw in answer.get("Responses", {}).get(self.table, []):
                    got = plain(raw)
                    name = str(got["pk"]).removeprefix("app#")
                    found[name] = AppState.from_item(name, got)
                left = answer.get("UnprocessedKeys") or {}
                keys = list(left[self.table]["Keys"]) if self.table in left else []
                if not keys:
                    break
            else:
                raise TemporaryError("the apps' states: DynamoDB left keys unprocessed", delay=1)
        return {
            app: found[app] if app in found else AppState.from_item(app, None) for app in wanted
        }

    def rollout(self, app: str, rollout_id: str) -> Rollout | None:
        found = self.client.get_item(
            TableName=self.table, Key=_key(app, f"rollout#{rollout_id}"), ConsistentRead=True
        ).get("Item")
        return Rollout.from_item(plain(found)) if found else None

    def history(self, app: str, *, limit: int = 20) -> list[Rollout]:
        items = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": value(_pk(app)), ":r": value("rollout#")},
            ScanIndexForward=False,
            Limit=limit,
        )["Items"]
        return [Rollout.from_item(plain(found)) for found in items]

    # ------------------------------------------------------------------ the lifecycle
    def accept(
        self,
        rollout: Rollout,
        *,
        commit: str | None,
        previous: str | None,
        checks: Sequence[TransactWriteItemTypeDef] = (),
    ) -> Rollout:
        """Record ``rollout`` (``deploying``, into the slot that is not live) as the app's
        newest, superseding the app's newest rollout if it was still pending; the rollout as
        recorded. The state it read is the transaction's condition: a promotion or a move in
        between is read again, never overwritten.

        ``checks`` (``ConditionCheck`` items on other items: the night interlock) go into the
        same transaction; :class:`CheckFailed` when one does not hold.

        Raises :class:`Stale` when the app already holds a newer (or the same) push, and
        :class:`Contended` (temporary) when DynamoDB cancelled the write for another reason
        than its conditions (:func:`stale`).
        """
        for _ in range(RACE_RETRIES):
            before = self.state(rollout.app)
            now = self.clock()
            born = rollout._replace(
                colour=before.live_colour.other,
                phase=Phase.DEPLOYING,
                created_at=now,
                entered_at=now,
            )
            items = [self._forward(born, before, commit, previous, now), self._put(born, now)]
            items.extend(self._supersede(rollout, before, now))
            guarded = len(items)
            items.extend(checks)
            failed = self._transact(items)
            if failed is None:
                return born
            if any(failed.failed[guarded:]):
                raise CheckFailed(rollout.app)
            if failed.contended:  # never "not newer": nothing is known about the conditions
                raise Contended(rollout.app, failed)
            current = self.state(rollout.app)
            if stale(failed, newer=_newer(rollout, current, previous)):
                raise Stale(current)
        raise TemporaryError(f"app {rollout.app}: its state kept changing; try again", delay=1)

    def _supersede(
        self, rollout: Rollout, before: AppState, now: int
    ) -> list[TransactWriteItemTypeDef]:
        """The app's newest rollout moved to ``superseded``, if it was still pending."""
        if before.rollout_id in (None, rollout.rollout_id) or before.phase not in PENDING:
            return []
        why = f"superseded by {rollout.rollout_id}"
        moved = _Move(
            rollout.app,
            str(before.rollout_id),
            before.phase,
            Phase.SUPERSEDED,
            Actor.ROLLOUT,
            why,
            now,
            {},
        )
        return [self._move_item(moved)]

    def move(
        self,
        rollout: Rollout,
        to: Phase,
        *,
        by: Actor,
        why: str,
        sets: Mapping[str, Any] | None = None,
    ) -> Rollout | None:
        """Move ``rollout`` from the phase it has to ``to`` (a move of the lifecycle table),
        setting ``sets`` on it too, and the state item's mirrored phases in the same
        transaction. The rollout as moved, or None when its phase is no longer the one the
        caller saw (someone else moved it first)."""
        if not allowed(rollout.phase, to):
            raise LifecycleError(f"no move from {rollout.phase.value} to {to.value}")
        for _ in range(RACE_RETRIES):
            state = self.state(rollout.app)
            move = _Move(
                rollout.app,
                rollout.rollout_id,
                rollout.phase,
                to,
                by,
                why,
                self.clock(),
                sets or {},
            )
            mirror = self._mirror(state, rollout.rollout_id, to)
            failed = self._transact([self._move_item(move), mirror])
            if failed is None:
                moved = rollout.to_item() | dict(move.sets) | {"phase": to, "entered_at": move.at}
                return Rollout.from_item(moved)
            if failed.failed[0]:
                return None
        raise TemporaryError(f"app {rollout.app}: its state kept changing; try again", delay=1)

    def promote(
        self,
        rollout: Rollout,
        *,
        by: Actor,
        why: str,
        switch: Callable[[AppState], LiveSwitch],
        sets: Mapping[str, Any] | None = None,
    ) -> tuple[Rollout, AppState] | None:
        """The move to ``promoting`` and the live colour switched to ``rollout``'s in one
        transaction: what :meth:`move` then :meth:`set_live` write, decided (``switch``) on the
        state as read in the same step. The rollout as moved and the state as written; None
        (nothing written) when ``rollout`` is no longer the app's newest, or no longer in the
        phase the caller saw. What is live changing underneath is read again."""
        if not allowed(rollout.phase, Phase.PROMOTING):
            raise LifecycleError(f"no move from {rollout.phase.value} to promoting")
        for _ in range(RACE_RETRIES):
            state = self.state(rollout.app)
            if state.rollout_id != rollout.rollout_id:
                return None
            live = switch(state)
            at = self.clock()
            move = _Move(
                rollout.app,
                rollout.rollout_id,
                rollout.phase,
                Phase.PROMOTING,
                by,
                why,
                at,
                {**(sets or {}), **live.previous},
            )
            moved = Rollout.from_item(
                rollout.to_item() | dict(move.sets) | {"phase": Phase.PROMOTING, "entered_at": at}
            )
            item = self._live_item(state, moved, live.backup, at)
            failed = self._transact([self._move_item(move), item])
            if failed is None:
                return moved, state._replace(
                    phase=Phase.PROMOTING,
                    live_colour=moved.colour,
                    live_version=moved.version,
                    live_image=moved.image,
                    live_rollout_id=moved.rollout_id,
                    live_phase=Phase.PROMOTING,
                    backup_colour=live.backup,
                )
            if failed.failed[0]:
                return None
        raise TemporaryError(f"app {rollout.app}: its state kept changing; try again", delay=1)

    def _live_item(
        self, state: AppState, moved: Rollout, backup: Colour | None, at: int
    ) -> TransactWriteItemTypeDef:
        """The state item's side of :meth:`promote`: the phase and what :meth:`set_live` writes,
        on the condition that the rollout is still the newest and what is live is still as read
        (no live rollout: still none)."""
        update = _live_update(moved, backup, at)
        update.sets["phase"] = Phase.PROMOTING.value
        condition = _live_as_read(state, update)
        if not state.live_rollout_id:
            update.condition_values["none"] = ""
            condition += " AND (attribute_not_exists(#live_rollout_id) OR #live_rollout_id = :none)"
        return {"Update": self._request(state.app, "state", update, condition)}

    def take_slot(self, rollout: Rollout) -> Rollout | None:
        """The newest rollout, still deploying, takes the slot that is not live, right before
        it writes its candidate there: the live route loses its backup, and the promoted
        rollout that kept it ends its watch (``superseded``) or its warm period (``settled``).
        The rollout as it goes on (its colour: the one not live now, should a revert have
        switched it since acceptance), or None when it is no longer the newest or deploying."""
        for _ in range(RACE_RETRIES):
            state = self.state(rollout.app)
            if state.rollout_id != rollout.rollout_id:
                return None
            mine = rollout._replace(colour=state.live_colour.other)
            live = self._live_rollout(state, rollout)
            to = taken_over(live.phase) if live is not None else None
            items = [self._slot_item(state, to), self._recolour_item(mine)]
            if live is not None and to is not None:
                why = f"its warm slot was taken by {rollout.rollout_id}"
                taken = _Move(
                    rollout.app,
                    live.rollout_id,
                    live.phase,
                    to,
                    Actor.ROLLOUT,
                    why,
                    self.clock(),
                    {},
                )
                items.append(self._move_item(taken))
            failed = self._transact(items)
            if failed is None:
                return mine
            if failed.failed[1]:
                return None
        raise TemporaryError(f"app {rollout.app}: its state kept changing; try again", delay=1)

    def _live_rollout(self, state: AppState, newest: Rollout) -> Rollout | None:
        if state.live_rollout_id in (None, newest.rollout_id):
            return None
        return self.rollout(state.app, state.live_rollout_id or "")

    # ------------------------------------------------------------------ what is live
    def set_live(self, rollout: Rollout, *, backup: Colour | None) -> bool:
        """Promotion: ``rollout``'s colour is live, with ``backup`` (the warm previous colour)
        behind it, only while it is the app's newest. False if not."""
        update = _live_update(rollout, backup, self.clock())
        update.condition_values["rid"] = rollout.rollout_id
        return self._update(rollout.app, "state", update, "#rollout_id = :rid")

    def restore_live(self, rollout: Rollout) -> Colour | None:
        """Revert: what was live before ``rollout``'s promotion is live again, with no backup;
        the colour now live. None (nothing written) unless ``rollout`` is still the live one
        (its colour live, itself the live rollout) and still promoted: a newer rollout that took
        its warm slot (which moved the live phase on) may be writing its candidate there. A
        state item from before ``live_rollout_id``: only while ``rollout`` is still the newest
        and promoted (a newer push accepted since refuses the revert)."""
        previous = rollout.previous_colour or rollout.colour.other
        update = Update(
            sets={
                "live_colour": previous.value,
                "live_version": rollout.previous_version or "",
                "live_image": rollout.previous_image or "",
                "updated_at": self.clock(),
            },
            removes=["backup_colour", "live_phase"],
            condition_values={"rid": rollout.rollout_id, "mine": rollout.colour.value},
        )
        # "" when what was live came from no rollout Greenlight knows (the app's first).
        update.sets["live_rollout_id"] = rollout.previous_rollout_id or ""
        live = f"#live_rollout_id = :rid AND {_in('live_phase', PROMOTED, update)}"
        newest = _in("phase", PROMOTED, update)
        legacy = f"attribute_not_exists(#live_rollout_id) AND #rollout_id = :rid AND {newest}"
        condition = f"#live_colour = :mine AND (({live}) OR ({legacy}))"
        return previous if self._update(rollout.app, "state", update, condition) else None

    def drop_backup(self, rollout: Rollout) -> bool:
        """The warm colour is retired: it no longer backs up the live route (only while
        ``rollout`` is the live one; a newer rollout that took the slot dropped it already)."""
        update = Update(
            sets={"updated_at": self.clock()},
            removes=["backup_colour"],
            condition_values={"rid": rollout.rollout_id},
        )
        return self._update(rollout.app, "state", update, "#live_rollout_id = :rid")

    # ------------------------------------------------------------------ bookkeeping
    def update(self, rollout: Rollout, sets: Mapping[str, Any]) -> Rollout:
        """Plain fields on a rollout record (never its phase: that is :meth:`move`'s)."""
        if "phase" in sets or "entered_at" in sets:
            raise LifecycleError("a phase changes only through RolloutStore.move")
        self._update(
            rollout.app,
            f"rollout#{rollout.rollout_id}",
            Update(sets=dict(sets)),
            "attribute_exists(pk)",
        )
        return Rollout.from_item(rollout.to_item() | dict(sets))

    def touch(self, app: str, rollout_id: str, at: int) -> None:
        """A check looked at the rollout at ``at`` (ms): the sweep leaves it alone a while."""
        update = Update(sets={"last_check_at": at})
        self._update(app, f"rollout#{rollout_id}", update, "attribute_exists(pk)")

    def take_over_chain(self, rollout: Rollout, chain: str, *, seen: int | None) -> bool:
        """Make ``chain`` the rollout's chain of checks. With ``seen`` (the ``last_check_at`` the
        caller read), only if no check has run since: the sweep never races a live chain."""
        update = Update(sets={"chain": chain})
        condition = "attribute_exists(pk)"
        if seen is not None:
            update.condition_values["seen"] = seen
            condition += " AND (attribute_not_exists(#last_check_at) OR #last_check_at = :seen)"
        return self._update(rollout.app, f"rollout#{rollout.rollout_id}", update, condition)

    # ------------------------------------------------------------------ items
    def _forward(
        self, rollout: Rollout, before: AppState, commit: str | None, previous: str | None, now: int
    ) -> TransactWriteItemTypeDef:
        update = Update(
            sets={
                "sequence": rollout.sequence,
                "commit": commit or "",
                "rollout_id": rollout.rollout_id,
                "phase": Phase.DEPLOYING.value,
                "updated_at": now,
            },
            condition_values={"seq": rollout.sequence, "live": before.live_colour.value},
        )
        newer = "#sequence < :seq"
        if previous:
            update.condition_values["prev"] = previous
            newer += " OR (#sequence = :seq AND #commit = :prev)"
        # ... and the state as read: the same newest rollout, the same live colour.
        same = "(attribute_not_exists(#live_colour) OR #live_colour = :live)"
        if before.rollout_id is None:
            same += " AND attribute_not_exists(#rollout_id)"
        else:
            update.condition_values["before"] = before.rollout_id
            same += " AND #rollout_id = :before"
        condition = f"attribute_not_exists(pk) OR (({newer}) AND {same})"
        return {"Update": self._request(rollout.app, "state", update, condition)}

    def _put(self, rollout: Rollout, now: int) -> TransactWriteItemTypeDef:
        entry = {
            "at": now,
            "phase": Phase.DEPLOYING.value,
            "by": Actor.ROLLOUT.value,
            "why": "accepted",
        }
        body = rollout.to_item() | {"updated_at": now, "history": [entry]}
        return {
            "Put": {
                "TableName": self.table,
                "Item": _key(rollout.app, f"rollout#{rollout.rollout_id}") | item(body),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _move_item(self, move: _Move) -> TransactWriteItemTypeDef:
        entry = {
            "at": move.at,
            "from": move.frm.value,
            "phase": move.to.value,
            "by": move.by.value,
            "why": move.why[:500],
        }
        update = Update(
            sets={
                "phase": move.to.value,
                "entered_at": move.at,
                "updated_at": move.at,
                **move.sets,
            },
            appends={"history": [entry]},
        )
        if move.to in ENDED:
            update.sets["reason"] = move.why[:1000]
        update.condition_values["frm"] = move.frm.value
        condition = "#phase = :frm"
        return {"Update": self._request(move.app, f"rollout#{move.rollout_id}", update, condition)}

    def _mirror(self, state: AppState, rollout_id: str, to: Phase) -> TransactWriteItemTypeDef:
        """The state item's side of a move: its mirrored phases set where ``rollout_id`` is the
        newest or the live rollout, on the condition that this is still so."""
        update = Update(condition_values={"rid": rollout_id})
        conditions = []
        for field, phase_field in (("rollout_id", "phase"), ("live_rollout_id", "live_phase")):
            if getattr(state, field) == rollout_id:
                update.sets[phase_field] = to.value
                conditions.append(f"#{field} = :rid")
            else:
                conditions.append(f"(attribute_not_exists(#{field}) OR #{field} <> :rid)")
        condition = " AND ".join(conditions)
        request = self._request(state.app, "state", update, condition)
        if not update.sets:
            request.pop("UpdateExpression")
            return {"ConditionCheck": request}
        return {"Update": request}

    def _slot_item(self, state: AppState, to: Phase | None) -> TransactWriteItemTypeDef:
        """The state item's side of a take-over: no backup any more, the live rollout's
        mirrored phase, on the condition that the state is still as read."""
        update = Update(sets={"updated_at": self.clock()}, removes=["backup_colour"])
        condition = _live_as_read(state, update)  # take_slot: the taking rollout is the newest
        if to is not None:
            update.sets["live_phase"] = to.value
        return {"Update": self._request(state.app, "state", update, condition)}

    def _recolour_item(self, rollout: Rollout) -> TransactWriteItemTypeDef:
        """The taking rollout's side: its slot, on the condition that it is still deploying."""
        update = Update(
            sets={"colour": rollout.colour.value, "updated_at": self.clock()},
            condition_values={"deploying": Phase.DEPLOYING.value},
        )
        key = f"rollout#{rollout.rollout_id}"
        return {"Update": self._request(rollout.app, key, update, "#phase = :deploying")}

    def _request(self, app: str, sk: str, update: Update, condition: str) -> Any:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(app, sk),
            "UpdateExpression": update.expression(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": update.names(*_placeholders(condition)),
        }
        values = update.values()
        if values:
            request["ExpressionAttributeValues"] = values
        return request

    def _update(self, app: str, sk: str, update: Update, condition: str) -> bool:
        """One conditional UpdateItem; False when its condition did not hold. A transaction
        under way on the item is waited out (a few tries)."""
        for attempt in range(RACE_RETRIES):
            try:
                self.client.update_item(**self._request(app, sk, update, condition))
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException":
                    return False
                if code != "TransactionConflictException" or attempt == RACE_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            else:
                return True
        return False

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> Cancellation | None:
        """One transaction; None when it was written, else why it was cancelled."""
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            return cancellation(reasons, len(items))
        return None


def stale(cancelled: Cancellation, *, newer: bool) -> bool:
    """Whether acceptance's cancelled transaction (the state item, the rollout item, then the
    rollout it supersedes) means the push is not newer than what the app holds: the state
    item's condition failed and, read again, the state is not older (``newer`` is False); or
    the rollout item's did (the same push, recorded already). Any other cancellation is not:
    a condition failed elsewhere (the state moved on underneath: read again and try again), or
    none failed (:attr:`Cancellation.contended`: a temporary error)."""
    state, recorded = (*cancelled.failed, False, False)[:2]
    return recorded or (state and not newer)


def _newer(rollout: Rollout, state: AppState, previous: str | None) -> bool:
    """Whether ``rollout`` is newer than what ``state`` holds (the forward-only rule)."""
    if state.rollout_id is None:
        return True
    if rollout.sequence > state.sequence:
        return True
    return rollout.sequence == state.sequence and previous is not None and state.commit == previous


def _placeholders(condition: str) -> list[str]:
    """The ``#name`` placeholders a condition uses."""
    return [w[1:].rstrip(")") for w in condition.replace("(", " ").split() if w.startswith("#")]
