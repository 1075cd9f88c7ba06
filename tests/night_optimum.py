"""The brute-force optimum of a night shrink, for the plan's tests and benchmark: every subset
of candidate nodes is tried under the plan's own rules (exponential: small clusters only)."""

from __future__ import annotations

import itertools
from typing import Any

from greenlight.night.plan import NightSize, _free, _place, spread, view


def feasible(views: list[Any], removed: set[str], size: NightSize) -> bool:
    """Whether removing exactly ``removed`` leaves room for every pod that must move."""
    free = {v.name: _free(v, size.headroom) for v in views}
    staying = [v.name for v in views if v.name not in removed]
    moving = [p for v in views if v.name in removed for p in v.movable]
    return _place(moving, free, staying) is not None


def optimum(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    pdbs: list[dict[str, Any]],
    size: NightSize,
) -> int:
    """The most nodes any choice removes: night size, blockers, zone balance and capacity."""
    views, _ = view(nodes, pods, pdbs)
    keep = min(size.nodes_to_keep(len(views)), len(views))
    candidates = [v for v in views if not v.blockers]
    zones: dict[str, int] = {}
    for v in views:
        zones[v.zone] = zones.get(v.zone, 0) + 1
    allowed = max(1, spread(zones))
    for k in range(min(len(candidates), len(views) - keep), 0, -1):
        for subset in itertools.combinations(candidates, k):
            after = dict(zones)
            for v in subset:
                after[v.zone] -= 1
            if spread(after) <= allowed and feasible(views, {v.name for v in subset}, size):
                return k
    return 0
