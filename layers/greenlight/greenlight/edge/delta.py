"""What differs between two edge releases, and whether a runtime switch can carry it.

A release is the files of a rendered config by name (``haproxy.cfg``, ``hosts.map``,
``crt-list``, ``certificates.tsv``). When two releases differ in ``hosts.map`` alone (and in
comments or blank lines), a running HAProxy can take the new one through its runtime API
(``prepare map`` / ``add map`` / ``commit map``) without a reload; anything else is structural
and needs one. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

HOSTS_MAP = "hosts.map"


def _significant(content: bytes) -> list[bytes]:
    """The lines that matter, as they are: neither blank nor a comment (first non-blank
    character ``#``)."""
    return [
        line for line in content.splitlines() if line.strip() and not line.lstrip().startswith(b"#")
    ]


def structural_changes(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[str]:
    """The names of the files other than ``hosts.map`` that differ between ``old`` and ``new``
    once comment and blank lines are dropped, or that only one of them has; sorted. Empty:
    the two differ at most in ``hosts.map`` and comments (a map-only switch)."""
    changed = []
    for name in sorted((set(old) | set(new)) - {HOSTS_MAP}):
        missing = name not in old or name not in new
        if missing or _significant(old[name]) != _significant(new[name]):
            changed.append(name)
    return changed


def _entries(content: bytes, which: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(_significant(content), start=1):
        words = line.decode("utf-8", errors="replace").split()
        if len(words) != 2:
            raise ValueError(
                f"{which} hosts.map: line {number} has {len(words)} words; expected: key value"
            )
        key, value = words
        if key in entries:
            raise ValueError(f"{which} hosts.map: key {key!r} repeats (line {number})")
        entries[key] = value
    return entries


def map_changes(old_map: bytes, new_map: bytes) -> dict[str, dict[str, object]]:
    """What moves from ``old_map`` to ``new_map`` (``hosts.map`` contents: ``key value`` lines):
    ``added`` (key -> value), ``removed`` (key -> old value) and ``changed``
    (key -> [old value, new value]), each sorted by key. A line that is not one key and one
    value, or a key that repeats, is refused with a ValueError naming the map and the line."""
    old = _entries(old_map, "old")
    new = _entries(new_map, "new")
    return {
        "added": {k: new[k] for k in sorted(new.keys() - old.keys())},
        "removed": {k: old[k] for k in sorted(old.keys() - new.keys())},
        "changed": {
            k: [old[k], new[k]] for k in sorted(old.keys() & new.keys()) if old[k] != new[k]
        },
    }


def declared_backends(config: bytes) -> set[str]:
    """The backends a ``haproxy.cfg`` declares (its ``backend NAME`` lines)."""
    names = set()
    for line in _significant(config):
        words = line.decode("utf-8", errors="replace").split()
        if len(words) >= 2 and words[0] == "backend":
            names.add(words[1])
    return names


@dataclass(frozen=True)
class LiveMoves:
    """The backends a map change newly sends live hosts to: ``check`` (declared by the running
    config: a check round can ask each instance whether their servers are UP) and ``unknown``
    (not declared yet: their servers come with the reload; nothing can be asked before)."""

    check: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


def newly_live(
    old_map: bytes,
    new_map: bytes,
    *,
    preview_hosts: Collection[str],
    tracked: Mapping[str, str],
    running: Collection[str],
) -> LiveMoves:
    """Which backends the live hosts of ``new_map`` are sent to that no live host of
    ``old_map`` was (the keys added or changed, as in :func:`map_changes`). A host in
    ``preview_hosts`` is not live: its route may reach a candidate not UP yet. A backend in
    ``tracked`` (``<app>-live-<colour>`` -> ``<app>-<colour>``) counts as the backend its servers
    track: its own backups (the other colour) are not what the move brings live. But a live host
    that goes from ``<app>-live-<colour>`` to ``<app>-<colour>`` (the end of a warm window) loses
    those backups: were the colour's servers DOWN, the backups served it, so ``<app>-<colour>``
    is checked (normally UP: a cheap check). ``running``: the backends the served
    ``haproxy.cfg`` declares (:func:`declared_backends`). Sorted."""
    old, new = _entries(old_map, "old"), _entries(new_map, "new")
    old_live = {tracked.get(b, b) for host, b in old.items() if host not in preview_hosts}
    moved = {  # added or changed, live
        host: b for host, b in new.items() if old.get(host) != b and host not in preview_hosts
    }
    newly = {tracked.get(b, b) for b in moved.values()} - old_live
    newly |= {
        b for host, b in moved.items() if old.get(host) in tracked and tracked[old[host]] == b
    }
    return LiveMoves(tuple(sorted(newly & set(running))), tuple(sorted(newly - set(running))))
