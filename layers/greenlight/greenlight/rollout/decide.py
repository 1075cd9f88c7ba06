"""The rollout function's decisions, apart from its effects (``service.py`` carries them out).

Pure: which app and image a trigger means, whether it starts a rollout, resumes one or is
ignored, and whether a candidate must wait for its image in ECR. Unit tests drive them at fixed
instants with no AWS and no cluster.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import EventError
from ..lifecycle import Phase
from ..store.rollouts import AppState, Rollout, rollout_id_for
from ..triggers import CommitPush, Ignored, ManualRollout, image_parts

if TYPE_CHECKING:
    from ..appconfig import App, AppsFile
    from .deploy import Change


class Status(StrEnum):
    STARTED = "started"
    RESUMED = "resumed"
    IGNORED = "ignored"
    FAILED = "failed"
    DRY_RUN = "dry-run"
    REJECTED = "rejected"


class RolloutResult(NamedTuple):
    status: Status
    detail: str
    app: str | None = None
    rollout_id: str | None = None
    image: str | None = None
    colour: str | None = None
    changes: tuple[Change, ...] = ()

    @classmethod
    def of(
        cls, status: Status, detail: str, rollout: Rollout, changes: tuple[Change, ...] = ()
    ) -> RolloutResult:
        return cls(
            status,
            detail,
            app=rollout.app,
            rollout_id=rollout.rollout_id,
            image=rollout.image,
            colour=rollout.colour.value,
            changes=changes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "detail": self.detail,
            "app": self.app,
            "rollout_id": self.rollout_id,
            "image": self.image,
            "colour": self.colour,
            "changes": [c.to_dict() for c in self.changes],
        }


class Resolved(NamedTuple):
    """What a trigger asks for, against the apps file."""

    app: App
    version: str
    image: str
    commit: str | None
    previous: str | None
    sequence: int
    source: str
    repository: str | None = None
    branch: str | None = None
    delivery: str | None = None  # the trigger's dedupe id (kept on the rollout record)


def resolve(trigger: CommitPush | ManualRollout, apps: AppsFile) -> Resolved | Ignored:
    if isinstance(trigger, CommitPush):
        app = apps.app_for(
            provider=trigger.provider, repository=trigger.repository, branch=trigger.branch
        )
        if app is None:
            return Ignored(
                reason=f"no app deploys {trigger.provider} {trigger.repository} "
                f"branch {trigger.branch!r}"
            )
        image = app.image.reference(commit=trigger.commit, branch=trigger.branch)
        return Resolved(
            app,
            trigger.commit,
            image,
            trigger.commit,
            trigger.previous,
            trigger.sequence,
            trigger.provider,
            trigger.repository,
            trigger.branch,
            trigger.dedupe_id,
        )
    app = apps.app(trigger.app)
    if trigger.image is not None:
        image = trigger.image
        repository, ref = image_parts(image, "payload.image")
        if repository != app.image.repository:
            raise EventError(
                f"payload.image: app {app.name!r} deploys images of {app.image.repository!r} "
                f"only (the apps file's image.repository), got {repository[:200]!r}"
            )
        version = trigger.commit or ref.removeprefix("sha256:")
    else:
        assert trigger.commit is not None
        image = app.image.reference(commit=trigger.commit, branch=app.source.branch)
        version = trigger.commit
    return Resolved(
        app,
        version,
        image,
        trigger.commit,
        None,
        trigger.sequence,
        "manual",
        app.source.repository,
        app.source.branch,
        trigger.dedupe_id,
    )


def admit(resolved: Resolved, state: AppState) -> Rollout | RolloutResult:
    """The rollout a resolved trigger starts (into the slot that is not live), or why none."""
    if state.live_image == resolved.image:
        return RolloutResult(
            Status.IGNORED,
            f"{resolved.image} is already live",
            app=resolved.app.name,
            image=resolved.image,
            colour=state.live_colour.value,
        )
    return Rollout(
        app=resolved.app.name,
        rollout_id=rollout_id_for(resolved.sequence, resolved.version),
        version=resolved.version,
        image=resolved.image,
        colour=state.live_colour.other,
        phase=Phase.DEPLOYING,
        sequence=resolved.sequence,
        source=resolved.source,
        repository=resolved.repository,
        branch=resolved.branch,
        commit=resolved.commit,
        delivery=resolved.delivery,
        namespace=resolved.app.namespace,
    )


def resumes(rollout: Rollout, current: AppState) -> RolloutResult | None:
    """A push the store refused as not newer: None when it is the same rollout, still
    deploying (a retry of a run that died: it resumes); else why it is ignored."""
    if current.rollout_id == rollout.rollout_id and current.phase is Phase.DEPLOYING:
        return None
    return RolloutResult(
        Status.IGNORED,
        f"not newer than rollout {current.rollout_id} ({current.phase})",
        app=rollout.app,
        image=rollout.image,
    )


def ecr_tag(app: App, image: str) -> tuple[str, str] | None:
    """(repository, tag or ``sha256:`` digest) to wait for in ECR before the candidate is
    written, or None (the image is not the app's ECR repository, or no wait is asked for)."""
    repository = app.image.ecr_repository_name
    if not (app.image.wait_for_ecr and repository):
        return None
    try:
        own, ref = image_parts(image, "image")
    except EventError:  # accepted under an older rule: not a reference ECR could hold
        return None
    return (repository, ref) if own == app.image.repository else None
