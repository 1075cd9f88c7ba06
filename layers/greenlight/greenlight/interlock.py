"""The night shrink and the rollouts keep out of each other's way.

- No shrink while a rollout is in flight (``lifecycle.IN_FLIGHT``: its candidate needs room and
  its promotion needs the fleet as it is): :func:`rollouts_in_flight`.
- No rollout starts while the shrink drains nodes: the night function sets ``draining_until``
  for the drain's deadline (before it looks for rollouts in flight); acceptance carries a
  ``ConditionCheck`` that no drain is under way, in its own transaction
  (:func:`accept_outside_the_night`), so a shrink that starts between the push's reads and its
  acceptance cannot be missed. A push that arrives meanwhile fails with a temporary error whose
  delay is the drain's remaining time, and its queue brings it back then (its visibility is set
  to that delay: greenlight/redelivery.py): :func:`wait_for_the_night`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import TemporaryError
from .lifecycle import IN_FLIGHT
from .store.night import NightStore
from .store.rollouts import CheckFailed, Rollout, RolloutStore


def rollouts_in_flight(store: RolloutStore, apps: Iterable[str]) -> list[str]:
    """``app rollout (phase)`` for every app whose newest or live rollout is in flight."""
    busy = []
    for app in apps:
        state = store.state(app)
        for rollout_id, phase in (
            (state.rollout_id, state.phase),
            (state.live_rollout_id, state.live_phase),
        ):
            if rollout_id and phase in IN_FLIGHT:
                busy.append(f"{app} {rollout_id} ({phase})")
                break
    return busy


def wait_for_the_night(nights: NightStore, *, app: str, group: str, now_ms: int) -> None:
    """Raise a TemporaryError while the night shrink drains ``group``'s nodes; its delay is
    the time left until the drain's deadline."""
    until = nights.load().draining_until
    if until > now_ms:
        raise TemporaryError(
            f"{app}: the night shrink is draining nodes of {group} for up to "
            f"{(until - now_ms) // 1000} s more; the rollout waits for it",
            delay=(until - now_ms) / 1000,
        )


def accept_outside_the_night(
    store: RolloutStore,
    rollout: Rollout,
    *,
    commit: str | None,
    previous: str | None,
    nights: NightStore | None,
    group: str,
    now_ms: int,
) -> Rollout:
    """:meth:`RolloutStore.accept`, in one transaction with the check that the night shrink
    is not draining ``group`` at ``now_ms``. While it drains: a TemporaryError whose delay is
    the time left (:func:`wait_for_the_night`); nothing is written."""
    if nights is None:
        return store.accept(rollout, commit=commit, previous=previous)
    try:
        return store.accept(
            rollout, commit=commit, previous=previous, checks=[nights.not_draining(now_ms)]
        )
    except CheckFailed:
        wait_for_the_night(nights, app=rollout.app, group=group, now_ms=now_ms)
        raise  # the drain ended in between: a temporary error all the same, tried again soon
