"""What an event asks for: a commit to roll out, a manual rollout, or nothing.

Three sources reach the rollout function: CodeCommit "Repository State Change" events through an
EventBridge rule, GitHub ``push`` webhooks (verified by the webhook function, then queued), and
manual invokes. Each is normalised here into one of the frozen types below, with no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from .errors import EventError

ZERO_COMMIT = "0" * 40
# How far a push's time (its sequence) may run ahead of the function's clock: clock skew
# between GitHub, EventBridge and Lambda is seconds; a push further ahead is refused for good,
# or it would make every real push of its app "not newer" until then.
SEQUENCE_SKEW_SECONDS = 300
COMMIT = re.compile(r"^[0-9a-f]{40}$")
BRANCH_PREFIX = "refs/heads/"


@dataclass(frozen=True, kw_only=True)
class CommitPush:
    """A push of ``commit`` to ``branch`` of ``repository``.

    ``sequence`` (milliseconds since the epoch of the push) orders pushes of the same app:
    an older push arriving after a newer one is ignored. ``previous`` is the commit the branch
    pointed at before, which breaks ties between pushes within the same second.
    """

    provider: str
    repository: str
    branch: str
    commit: str
    previous: str | None
    sequence: int
    dedupe_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "push", **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class ManualRollout:
    """A rollout asked for by a person: an app and a commit, or an explicit image."""

    app: str
    commit: str | None
    image: str | None
    sequence: int
    dedupe_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "manual", **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class Ignored:
    """An event that is acknowledged and changes nothing."""

    reason: str


Trigger = CommitPush | ManualRollout | Ignored


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _commit(value: Any, where: str) -> str:
    if not isinstance(value, str) or not COMMIT.match(value):
        raise EventError(f"{where}: expected a 40-hex-digit commit id, got {value!r}")
    return value


def _millis(iso: str, where: str) -> int:
    try:
        stamp = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"{where}: expected an ISO 8601 time, got {iso!r}") from None
    if stamp.tzinfo is None:
        raise EventError(f"{where}: expected a time with a zone, got {iso!r}")
    return int(stamp.timestamp() * 1000)


def from_codecommit(event: Mapping[str, Any]) -> Trigger:
    """An EventBridge ``CodeCommit Repository State Change`` event."""
    if event.get("source") != "aws.codecommit":
        raise EventError(f"source: expected 'aws.codecommit', got {event.get('source')!r}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise EventError("detail: expected an object")
    kind = _str(detail, "event", "detail")
    if _str(detail, "referenceType", "detail") != "branch":
        return Ignored(
            reason=f"{detail['referenceType']} {detail.get('referenceName')!r}: "
            "only branch pushes deploy"
        )
    if kind == "referenceDeleted":
        return Ignored(reason=f"branch {detail.get('referenceName')!r} deleted")
    if kind not in ("referenceCreated", "referenceUpdated"):
        return Ignored(reason=f"event {kind!r} does not deploy")
    old = detail.get("oldCommitId")
    return CommitPush(
        provider="codecommit",
        repository=_str(detail, "repositoryName", "detail"),
        branch=_str(detail, "referenceName", "detail"),
        commit=_commit(detail.get("commitId"), "detail.commitId"),
        previous=_commit(old, "detail.oldCommitId") if old else None,
        sequence=_millis(_str(event, "time", "event"), "time"),
        dedupe_id="eventbridge:" + _str(event, "id", "event"),
    )


def from_github_push(payload: Mapping[str, Any], *, delivery: str) -> Trigger:
    """The JSON body of a GitHub ``push`` webhook (already verified)."""
    ref = _str(payload, "ref", "body")
    if not ref.startswith(BRANCH_PREFIX):
        return Ignored(reason=f"{ref}: only branch pushes deploy")
    branch = ref[len(BRANCH_PREFIX) :]
    after = payload.get("after")
    if payload.get("deleted") is True or after == ZERO_COMMIT:
        return Ignored(reason=f"branch {branch!r} deleted")
    repo = payload.get("repository")
    if not isinstance(repo, Mapping):
        raise EventError("body.repository: expected an object")
    pushed_at = repo.get("pushed_at")
    if isinstance(pushed_at, bool) or not isinstance(pushed_at, int | str):
        raise EventError(f"body.repository.pushed_at: expected a time, got {pushed_at!r}")
    sequence = (
        pushed_at * 1000
        if isinstance(pushed_at, int)
        else _millis(pushed_at, "body.repository.pushed_at")
    )
    before = payload.get("before")
    return CommitPush(
        provider="github",
        repository=_str(repo, "full_name", "body.repository"),
        branch=branch,
        commit=_commit(after, "body.after"),
        previous=before
        if isinstance(before, str) and COMMIT.match(before) and before != ZERO_COMMIT
        else None,
        sequence=sequence,
        dedupe_id="github:" + delivery,
    )


# A manual rollout's image: ``repository:tag`` (an ASCII tag, as Docker allows) or
# ``repository@sha256:<64 hex>``. ``\Z``, not ``$``: ``$`` also matches before a final newline.
IMAGE_REPOSITORY = re.compile(r"[a-z0-9][a-z0-9._\-/:]*[a-z0-9]\Z")
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")


def image_parts(image: Any, where: str) -> tuple[str, str]:
    """``(repository, tag)`` of ``repository:tag``, or ``(repository, "sha256:<hex>")`` of
    ``repository@sha256:<hex>``; EventError naming ``where`` for anything else."""
    expected = "'repository:tag' or 'repository@sha256:<64 hex>'"
    if not isinstance(image, str):
        raise EventError(f"{where}: expected {expected}, got {type(image).__name__}")
    if "@" in image:
        repository, _, ref = image.partition("@")  # a tag as well ("repo:tag@...") is refused
        ok = IMAGE_DIGEST.match(ref) is not None and ":" not in repository.rsplit("/", 1)[-1]
    else:
        repository, _, ref = image.rpartition(":")
        ok = IMAGE_TAG.match(ref) is not None
    if not ok or not IMAGE_REPOSITORY.match(repository):
        raise EventError(f"{where}: expected {expected}, got {image[:300]!r}")
    return repository, ref


def from_manual(payload: Mapping[str, Any], *, now_ms: int, request_id: str) -> Trigger:
    """A manual invoke: ``{"action": "rollout", "app": "shop", "commit": "<40 hex>"}``
    or ``{"action": "rollout", "app": "shop", "image": "registry/repo:tag"}`` (or
    ``registry/repo@sha256:<64 hex>``; the repository must be the app's own, which
    ``rollout.decide.resolve`` checks against the apps file)."""
    unknown = set(payload) - {"action", "app", "commit", "image", "dry_run"}
    if unknown:
        raise EventError(
            f"unknown field(s) {sorted(unknown)}; allowed: action, app, commit, image, dry_run"
        )
    if payload.get("action", "rollout") != "rollout":
        raise EventError(f"action: expected 'rollout', got {payload.get('action')!r}")
    app = _str(payload, "app", "payload")
    commit = payload.get("commit")
    image = payload.get("image")
    if commit is None and image is None:
        raise EventError("payload: give 'commit' (40 hex) or 'image' (repository:tag)")
    if commit is not None:
        commit = _commit(commit, "payload.commit")
    if image is not None:
        image_parts(image, "payload.image")
    dry_run = payload.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise EventError(f"payload.dry_run: expected true or false, got {dry_run!r}")
    return ManualRollout(
        app=app, commit=commit, image=image, sequence=now_ms, dedupe_id="manual:" + request_id
    )


class FutureSequence(EventError):
    """A push timed beyond now plus :data:`SEQUENCE_SKEW_SECONDS`."""


def not_ahead(trigger: Trigger, *, now_ms: int) -> Trigger:
    """``trigger``, if its push time (``sequence``, ms) is no later than ``now_ms`` plus
    :data:`SEQUENCE_SKEW_SECONDS`; else :class:`FutureSequence` (permanent: a dead letter)."""
    if isinstance(trigger, Ignored):
        return trigger
    limit = now_ms + SEQUENCE_SKEW_SECONDS * 1000
    if trigger.sequence > limit:
        ahead = (trigger.sequence - now_ms) // 1000
        raise FutureSequence(
            f"sequence: the push's time {trigger.sequence} (ms) is {ahead} s ahead of now "
            f"({now_ms}); at most {SEQUENCE_SKEW_SECONDS} s of clock skew is accepted"
        )
    return trigger


def from_queued(body: Mapping[str, Any]) -> Trigger:
    """A trigger the webhook function queued with :meth:`CommitPush.to_dict`."""
    if body.get("kind") != "push":
        raise EventError(f"queued message kind: expected 'push', got {body.get('kind')!r}")
    fields = {
        k: body.get(k)
        for k in ("provider", "repository", "branch", "commit", "previous", "sequence", "dedupe_id")
    }
    if not isinstance(fields["sequence"], int) or isinstance(fields["sequence"], bool):
        raise EventError("queued message sequence: expected an integer")
    for key in ("provider", "repository", "branch", "dedupe_id"):
        _str(fields, key, "message")
    _commit(fields["commit"], "message.commit")
    if fields["previous"] is not None:
        _commit(fields["previous"], "message.previous")
    return CommitPush(**fields)  # type: ignore[arg-type]
