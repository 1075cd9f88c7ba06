"""The one shape of a function's handler: a runtime built on the first invoke, kept warm.

Each ``functions/*/app.py`` holds one :class:`Lazy` built from its runtime's ``build`` and calls
``handle(event, runtime.get(), context)``. Nothing is built at import (no client, no settings
read), and the sandbox and tests hand a function the runtime they made with
:meth:`Lazy.supply`, never by assigning a module's private global.

Before the first build, everything imported so far is frozen out of the garbage collector's
reach (``gc.freeze``): those objects live as long as the process, and without this every
collection during the build (boto3 makes thousands of objects for one client) walks them again.
It takes a few milliseconds off every cold start (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Generic, TypeVar

R = TypeVar("R")


class Lazy(Generic[R]):
    """A value made on first use by ``build``, then kept (a warm container's runtime)."""

    def __init__(self, build: Callable[[], R]) -> None:
        self._build = build
        self._value: R | None = None

    def get(self) -> R:
        if self._value is None:
            gc.freeze()  # what the imports made stays: no collection walks it again
            self._value = self._build()
        return self._value

    def supply(self, value: R) -> None:
        """Use ``value`` from now on (the sandbox's or a test's own runtime)."""
        self._value = value
