"""A rollback that sticks: the releases listed, a rollback to a chosen one that pins the edge,
``unpin``, and every push refused while pinned (docs/edge.md, "Rollback and the pin").

- ``releases`` (read-only, no lock): the bundle key's S3 versions, newest first, each with its
  sha256, when, why, whether it is live and whether our key signed it.
- ``rollback`` (``release``: a version id or a sha256 prefix; default the release before the
  live one): the pin is written first (a conditional put on the pin seen), then the release is
  republished (a copy); a copy that fails puts the pin seen back. The function then reloads the
  fleet as for any rollback.
- ``unpin``: the pin removed (a conditional delete on the pin seen), then a push as usual.
- While pinned, a ``push`` (from anyone: the schedule, instance events, the rollout, gate and
  night functions, a person) answers ``pinned`` before anything is rendered; ``reload`` is
  allowed while the live bundle is the pinned release (it heals the fleet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..edgepush import PushStatus
from ..errors import EventError, PermanentError
from ..store.pin import EdgePin, Pin
from .publish import RELEASES_MAX, ConfigStore, Published, Release, diff

FIELDS = frozenset({"release", "limit", "after", "force"})  # the event fields of these actions
NOT_PUBLISHED = "not-published"  # a rollback refused by its check round: nothing changed
# What a rollback asks before it pins: given the target, (what the check said, whether to go on).
Guard = Callable[[Release], tuple[dict[str, Any], bool]]
DEFAULT_LIMIT = 20


def options_of(event: Mapping[str, Any], action: str) -> dict[str, Any]:
    """The pin actions' own fields of an invocation event, checked; EventError naming the
    field otherwise."""
    for name in ("release", "force"):
        if name in event and action != "rollback":
            raise EventError(f"{name}: only a rollback takes {name}")
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise EventError(f"force: expected true or false, got {force!r}")
    for name in ("limit", "after"):
        if name in event and action != "releases":
            raise EventError(f"{name}: only the releases action takes {name}")
    options: dict[str, Any] = {}
    release = event.get("release")
    if release is not None:
        if not isinstance(release, str) or not release.strip():
            raise EventError(
                f"release: expected a version id or a sha256 prefix (at least 12 hex"
                f" characters), got {release!r}"
            )
        options["release"] = release.strip()
    limit = event.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= RELEASES_MAX:
        raise EventError(f"limit: expected a whole number from 1 to {RELEASES_MAX}, got {limit!r}")
    after = event.get("after")
    if after is not None and (not isinstance(after, str) or not after):
        raise EventError(f"after: expected the version id a listing ended at, got {after!r}")
    return options | {"limit": limit, "after": after, "force": force}


def refusal(action: str, pin: Pin | None, live_sha: str | None) -> dict[str, Any] | None:
    """The answer to ``action`` while ``pin`` holds, when it is refused; None when it may run.
    A push is refused; a reload only when the live bundle is not the pinned release."""
    if pin is None:
        return None
    if action == "push" or (action == "reload" and live_sha != pin.sha256):
        return {"status": PushStatus.PINNED.value, "error": pin.refusal(), "pin": pin.to_dict()}
    return None


def releases(configs: ConfigStore, pins: EdgePin, options: Mapping[str, Any]) -> dict[str, Any]:
    listed, more = configs.releases(options["limit"], options["after"])
    pin = pins.get()
    return {
        "status": "listed",
        "key": configs.key,
        "releases": [r.to_dict() for r in listed],
        "next": more,
        "pin": pin.to_dict() if pin else None,
    }


def rollback(
    configs: ConfigStore,
    pins: EdgePin,
    options: Mapping[str, Any],
    *,
    why: str,
    who: str,
    dry_run: bool,
    guard: Guard | None = None,
) -> tuple[Published, dict[str, Any]]:
    """The rollback (or its dry run) and the pin it writes (or would write). ``guard``: asked
    first (the check round of the backends the release newly sends live hosts to); when it
    says no, nothing is pinned or published (``not-published``, with what it said)."""
    seen = pins.get()
    target = configs.choose(options.get("release"))
    checked: dict[str, Any] = {}  # the guard's word, in the answer
    if guard is not None:
        said, go = guard(target)
        if not go:
            live = configs.current()[1]
            held = Published(
                NOT_PUBLISHED, configs.key, target.sha256, live, release=target.version_id
            )
            return held, {"pin": {"status": "not-pinned"}, "check": said}
        checked = {"check": said}
    if dry_run:
        published = Published(
            "would-roll-back",
            configs.key,
            target.sha256,
            target.version_id,
            diff=diff(configs.files(), configs.files(target.version_id)),
            release=target.version_id,
        )
        would = {"status": "would-pin", "version_id": target.version_id, "sha256": target.sha256}
        return published, {"pin": would, "replaces": seen.to_dict() if seen else None} | checked
    pinned = pins.pin(target.version_id, target.sha256, why=why, who=who, seen=seen)
    try:
        published = configs.republish(target, why=why)
    except BaseException:
        pins.restore(pinned, seen)  # nothing half-changed: the pin seen is back
        raise
    return published, {"pin": {"status": "pinned", **pinned.to_dict()}} | checked


def unpin(pins: EdgePin, push: Callable[[], dict[str, Any]], *, dry_run: bool) -> dict[str, Any]:
    """Remove the pin, then ``push`` (the usual push: the cluster's render). A dry run removes
    nothing and answers what the push would publish."""
    seen = pins.get()
    if seen is None:
        return {"status": "not-pinned", "detail": "the edge is not pinned: nothing changed"}
    if dry_run:
        return push() | {"unpin": {"status": "would-unpin", **seen.to_dict()}}
    if not pins.unpin(seen):
        raise PermanentError("pin: changed by another writer meanwhile; nothing unpinned")
    return push() | {"unpin": {"status": "unpinned", **seen.to_dict()}}
