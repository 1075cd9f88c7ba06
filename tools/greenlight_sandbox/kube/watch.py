"""Watch: the store's change history and the ``?watch=true`` event stream.

The :class:`Journal` keeps a bounded ring of watch events (resourceVersion, type, resource, the
object, the object before) for the whole store, as the apiserver's watch cache does. It is
filled by comparing the store with its last snapshot (an object whose resourceVersion changed is
``MODIFIED``, a new one ``ADDED``) whenever a watcher looks, plus the exact deletions
:meth:`Cluster.remove` reports (the object as it was, at the deletion's resourceVersion). Two
writes to one object between two looks arrive as one ``MODIFIED`` with the newer state, which a
watcher cannot tell from a watch that was slow to read: the resourceVersions still only grow.

A watch (``GET <collection>?watch=true``, or ``watch=1``; one object by
``fieldSelector=metadata.name=x``) answers 200 with ``Transfer-Encoding: chunked`` and one JSON
event per line, ``{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": ...}``
(AS/pkg/endpoints/handlers/watch.go):

- ``resourceVersion`` absent or ``"0"``: a synthetic ``ADDED`` for every current object, then
  the changes; ``sendInitialEvents=true`` does the same and ends the initial events with a
  ``BOOKMARK`` annotated ``k8s.io/initial-events-end: "true"``; ``N``: the changes after N. A
  version older than the ring keeps: one ``ERROR`` event holding a 410 ``Expired`` Status
  (``too old resource version: N (M)``), then the end of the stream, as the watch cache does.
- label and field selectors filter as on a list; an object that stops (starts) matching is a
  ``DELETED`` (``ADDED``) for that watcher (the watch cache's filtering).
- ``timeoutSeconds`` ends the stream cleanly (default 300 s, at most 1800 s: the apiserver
  picks a random time between its ``--min-request-timeout`` of 1800 s and twice that);
  ``allowWatchBookmarks=true`` sends a ``BOOKMARK`` with the current resourceVersion about
  every 10 seconds and before the end.
- when the stand-in stops, every stream ends (the terminating chunk) within a poll interval.
"""

from __future__ import annotations

import collections
import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .kinds import KINDS, Kind

DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 1800.0
BOOKMARK_EVERY = 10.0
POLL_SECONDS = 0.1
RING_SIZE = 4096  # events (each holds a copy of its object)
COALESCE_SECONDS = 0.01  # a burst of writes (one controller tick) is read in one look


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None  # the object before (MODIFIED, DELETED)


def _uid(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else obj["metadata"].get("uid")


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class Journal:
    """The store's recent changes, in resourceVersion order (see the module docstring)."""

    def __init__(self, cluster: Any, size: int = RING_SIZE) -> None:
        self.cluster = cluster
        self.events: collections.deque[Event] = collections.deque(maxlen=size)
        self.cond = threading.Condition()
        self.closed = False
        self.watchers = 0  # streams open now
        # Deletions reported by Cluster.remove, not yet synced (bounded like the ring).
        self._pending: collections.deque[Event] = collections.deque()
        with cluster.lock:
            self.floor = int(cluster.rv)  # changes after this version are all in the ring
            self.synced = int(cluster.rv)
            self.snapshot: dict[tuple[str, tuple[str, str]], dict[str, Any]] = {
                (resource, key): copy.deepcopy(obj)
                for resource, objs in cluster.objects.items()
                for key, obj in objs.items()
            }

    # -------------------------------------------------------------- filled by the store
    def deleted(self, resource: str, obj: dict[str, Any], rv: int) -> None:
        """Called by ``Cluster.remove`` (under the store's lock) once ``obj`` is gone."""
        last = copy.deepcopy(obj)  # as it was last written
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._pending.append(Event(rv, "DELETED", resource, gone, last))
        if len(self._pending) > (self.events.maxlen or RING_SIZE):  # nobody looks: forget
            lost = self._pending.popleft()
            self.floor = max(self.floor, lost.rv)
        self.notify()

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def close(self) -> None:
        """The stand-in stops: every watcher ends its stream."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def sync(self) -> None:
        """Bring the ring up to the store's current resourceVersion."""
        cluster = self.cluster
        with cluster.lock:
            current = int(cluster.rv)
            if current == self.synced and not self._pending:
                return
            new: list[Event] = []
            seen: set[tuple[str, tuple[str, str]]] = set()
            for resource, objs in cluster.objects.items():
                for key, obj in objs.items():
                    where = (resource, key)
                    seen.add(where)
                    before = self.snapshot.get(where)
                    rv = obj["metadata"].get("resourceVersion")
                    if (
                        before is not None
                        and before["metadata"].get("resourceVersion") == rv
                        and _uid(before) == _uid(obj)
                    ):
                        continue
                    now = copy.deepcopy(obj)
                    if before is not None and _uid(before) == _uid(now):
                        new.append(Event(_rv(now), "MODIFIED", resource, now, before))
                    else:
                        new.append(Event(_rv(now), "ADDED", resource, now, None))
                    self.snapshot[where] = now
            live = {_uid(o) for objs in cluster.objects.values() for o in objs.values()}
            for event in self._pending:
                meta = event.obj["metadata"]
                if _uid(event.obj) in live:  # a dry-run delete (rolled back): nothing happened
                    continue
                where = (event.resource, (meta.get("namespace", ""), meta["name"]))
                before = self.snapshot.get(where)
                if before is not None and _uid(before) == _uid(event.obj):
                    del self.snapshot[where]
                    new.append(Event(event.rv, "DELETED", event.resource, event.obj, before))
                else:  # created and deleted between two looks: both, in order
                    added = event.prev or event.obj
                    new.append(Event(_rv(added), "ADDED", event.resource, added, None))
                    new.append(Event(event.rv, "DELETED", event.resource, event.obj, added))
            self._pending.clear()
            for where in [w for w in self.snapshot if w not in seen]:  # gone without a report
                before = self.snapshot.pop(where)
                gone = copy.deepcopy(before)
                gone["metadata"]["resourceVersion"] = str(current)
                new.append(Event(current, "DELETED", where[0], gone, before))
            new.sort(key=lambda e: e.rv)
            for event in new:
                if self.events.maxlen and len(self.events) == self.events.maxlen:
                    self.floor = max(self.floor, self.events[0].rv)
                self.events.append(event)
            self.synced = current

    def read(self, rv: int) -> tuple[list[Event], int]:
        """The events with a resourceVersion above ``rv``, and the version they reach."""
        with self.cluster.lock:
            self.sync()
            out: list[Event] = []
            for event in reversed(self.events):
                if event.rv <= rv:
                    break
                out.append(event)
            out.reverse()
            return out, self.synced


# ------------------------------------------------------------------ one watcher's stream
@dataclass
class WatchRequest:
    kind: Kind
    namespace: str | None  # None: every namespace
    labels: Callable[[Any], bool]
    fields: Callable[[dict[str, Any]], bool]
    resource_version: str | None
    timeout: float
    bookmarks: bool
    initial_events: bool | None  # sendInitialEvents


def parse_timeout(value: str | None) -> float:
    if value in (None, ""):
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_TIMEOUT
    return DEFAULT_TIMEOUT if seconds <= 0 else min(seconds, MAX_TIMEOUT)


def too_old(asked: int, floor: int) -> dict[str, Any]:
    """The watch cache's 410 (AS/pkg/storage/cacher/watch_cache.go, errors.NewResourceExpired)."""
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {asked} ({floor + 1})",
            "reason": "Expired",
            "code": 410,
        },
    }


def _with_kind(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind.kind, "apiVersion": kind.api_version, **obj}


def _bookmark(kind: Kind, rv: int, *, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta},
    }


class Watcher:
    """What one watch request sends, as a sequence of event dicts (the handler writes them)."""

    def __init__(self, journal: Journal, request: WatchRequest, clock: Callable[[], float]):
        self.journal = journal
        self.req = request
        self.clock = clock

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.req.namespace is not None and meta.get("namespace", "") != self.req.namespace:
            return False
        return bool(self.req.labels(meta.get("labels") or {}) and self.req.fields(obj))

    def _visible(self, event: Event) -> dict[str, Any] | None:
        if event.resource != self.req.kind.resource:
            return None
        now, before = self._matches(event.obj), self._matches(event.prev)
        if event.type == "DELETED":
            kind = "DELETED" if (before or (event.prev is None and now)) else None
        elif now and before:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        elif before:
            kind = "DELETED"  # it left the selection
        else:
            kind = None
        if kind is None:
            return None
        return {"type": kind, "object": _with_kind(self.req.kind, event.obj)}

    def start(self) -> tuple[list[dict[str, Any]], int] | dict[str, Any]:
        """The initial events and the version to go on from, or an ERROR event (410)."""
        journal, req = self.journal, self.req
        with journal.cluster.lock:
            journal.sync()
            asked = req.resource_version
            initial = asked in (None, "", "0") or bool(req.initial_events)
            if not initial:
                try:
                    since = int(str(asked))
                except ValueError:
                    since = -1
                if since < journal.floor:
                    return too_old(since, journal.floor)
                return [], since
            first = [
                {"type": "ADDED", "object": _with_kind(req.kind, copy.deepcopy(obj))}
                for obj in journal.cluster.items(req.kind.resource, req.namespace)
                if self._matches(obj)
            ]
            if req.initial_events:
                first.append(_bookmark(req.kind, journal.synced, initial_end=True))
            return first, journal.synced

    def stream(
        self, since: int, alive: Callable[[], bool] = lambda: True
    ) -> Iterator[dict[str, Any]]:
        """The events after ``since`` until the timeout, the stand-in stops, or the client
        goes away (``alive`` false)."""
        journal = self.journal
        with journal.cond:
            journal.watchers += 1
        try:
            yield from self._stream(since, alive)
        finally:
            with journal.cond:
                journal.watchers -= 1

    def _stream(self, since: int, alive: Callable[[], bool]) -> Iterator[dict[str, Any]]:
        journal, req = self.journal, self.req
        deadline = self.clock() + req.timeout
        last_bookmark = self.clock()
        while True:
            events, reached = journal.read(since)
            for event in events:
                shown = self._visible(event)
                if shown is not None:
                    yield shown
            since = max(since, reached)
            now = self.clock()
            if not alive():
                return
            if now >= deadline or journal.closed:
                if req.bookmarks and not journal.closed:
                    yield _bookmark(req.kind, since)
                return
            if req.bookmarks and now - last_bookmark >= BOOKMARK_EVERY:
                last_bookmark = now
                yield _bookmark(req.kind, since)
            with journal.cond:
                if journal.closed:
                    continue
                woken = journal.cond.wait(min(POLL_SECONDS, max(deadline - now, 0.0)))
            if woken:
                time.sleep(COALESCE_SECONDS)


def kind_for(resource: str) -> Kind | None:
    return next((k for k in KINDS.values() if k.resource == resource), None)
