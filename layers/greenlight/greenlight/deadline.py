"""Every wait has a deadline, derived from the Lambda context's remaining time.

:meth:`Deadline.from_context` is the one place a function's deadline comes from: the time its
invocation has left, less a margin to answer in. Called without a context (a test, a local
invoke) it gives ``default_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

SAFETY_MARGIN_MS = 5_000
DEFAULT_SECONDS = 60.0  # without a Lambda context


class HasRemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() value
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def within(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def from_context(
        cls,
        context: HasRemainingTime | Any,
        *,
        cap_seconds: float | None = None,
        margin_ms: int = SAFETY_MARGIN_MS,
        default_seconds: float = DEFAULT_SECONDS,
    ) -> Deadline:
        if context is None or not hasattr(context, "get_remaining_time_in_millis"):
            remaining = default_seconds
        else:
            remaining = (context.get_remaining_time_in_millis() - margin_ms) / 1000
        if cap_seconds is not None:
            remaining = min(remaining, cap_seconds)
        return cls.within(max(remaining, 0.0))

    def remaining(self) -> float:
        return max(self.at - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.remaining() <= 0

    def sooner(self, seconds: float) -> Deadline:
        return Deadline(min(self.at, self.clock() + seconds), self.clock)

    def epoch_ms(self, *, less_seconds: float = 0.0, wall: Callable[[], float] = time.time) -> int:
        """This deadline, ``less_seconds`` earlier, as a wall-clock instant (epoch
        milliseconds): how another process (the haproxy function) is told when we give up."""
        return int((wall() + max(self.remaining() - less_seconds, 0.0)) * 1000)

    def until_epoch_ms(self, epoch_ms: int, *, wall: Callable[[], float] = time.time) -> Deadline:
        """This deadline, or the wall-clock instant ``epoch_ms`` if that comes sooner."""
        return self.sooner(max(epoch_ms / 1000 - wall(), 0.0))
