"""Mutations of a JSON-like document for the fuzz tests: every path into it, and the document
with some paths dropped or given other values."""

from __future__ import annotations

import copy
from typing import Any

Change = tuple[tuple[Any, ...], bool, Any]  # (path, drop it, else the value it gets)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``value`` (dict keys and list indexes), parents before children."""
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    found: list[tuple[Any, ...]] = []
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def mutate(document: Any, changes: list[Change]) -> Any:
    """A copy of ``document`` with each change applied; a change whose path an earlier one took
    away is skipped."""
    mutated = copy.deepcopy(document)
    for path, drop, value in changes:
        parent = mutated
        try:
            for key in path[:-1]:
                parent = parent[key]
            if drop:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return mutated
