"""Starting a rollout: resolve the app and image, record it, write the candidate, hand it on.

Order of steps, each safe to repeat:
1. resolve the app (unknown repository/branch: ignored) and the image reference;
2. record the rollout (forward-only per app; a newer push supersedes one in flight);
3. optionally wait, within the deadline, for the image to exist in ECR;
4. create or replace the candidate Deployment and its NodePort Service (the slot not live);
5. mark the rollout ``gating`` and queue the first gate check.
A Lambda that dies between steps leaves the rollout ``deploying``; the same trigger run again
(a retry, or the gate's safety-net sweep) resumes it from step 3.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from ..cluster.rest import KubeRest, deployments
from ..deadline import Deadline
from ..edge.invoke import EdgePush, taken
from ..errors import PermanentError, TemporaryError
from ..triggers import CommitPush, Ignored, ManualRollout, Trigger
from .capacity import shortfall
from .deploy import Change, apply_deployment, apply_service, read
from .handoff import gate_message, hand_off
from .images import wait_for_image
from .records import IN_FLIGHT, Phase, Rollout, RolloutStore, Stale, rollout_id_for
from .workload import candidate_deployment, candidate_service, selector, slot_name

if TYPE_CHECKING:
    from kubernetes import client as k8s

    from ..appconfig import App, AppsFile

logger = Logger(child=True)


class AppsLoader(Protocol):
    def load(self) -> AppsFile: ...


@dataclass(frozen=True)
class RolloutResult:
    status: str  # started | resumed | ignored | failed | dry-run
    detail: str
    app: str | None = None
    rollout_id: str | None = None
    image: str | None = None
    colour: str | None = None
    changes: tuple[Change, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "app": self.app,
            "rollout_id": self.rollout_id,
            "image": self.image,
            "colour": self.colour,
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclass
class RolloutDeps:
    apps: AppsLoader
    store: RolloutStore
    kube: Callable[[], k8s.ApiClient]
    sqs: Any
    ecr: Any
    gate_queue_url: str
    gate_delay_seconds: int = 5
    ecr_wait_seconds: int = 0
    night_group: str = ""
    edge_push: EdgePush | None = None  # the haproxy function, waited for; None: no edge
    _api: k8s.ApiClient | None = field(default=None, init=False)

    def api(self) -> k8s.ApiClient:
        if self._api is None:
            self._api = self.kube()
        return self._api


@dataclass(frozen=True)
class _Resolved:
    app: App
    version: str
    image: str
    commit: str | None
    previous: str | None
    sequence: int
    source: str


def _resolve(trigger: CommitPush | ManualRollout, apps: AppsFile) -> _Resolved | Ignored:
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
        return _Resolved(
            app,
            trigger.commit,
            image,
            trigger.commit,
            trigger.previous,
            trigger.sequence,
            trigger.provider,
        )
    app = apps.app(trigger.app)
    if trigger.image is not None:
        image = trigger.image
        version = trigger.commit or image.rsplit(":", 1)[1]
    else:
        assert trigger.commit is not None
        image = app.image.reference(commit=trigger.commit, branch=app.source.branch)
        version = trigger.commit
    return _Resolved(app, version, image, trigger.commit, None, trigger.sequence, "manual")


def _result(
    status: str, detail: str, rollout: Rollout, changes: tuple[Change, ...] = ()
) -> RolloutResult:
    return RolloutResult(
        status,
        detail,
        app=rollout.app,
        rollout_id=rollout.rollout_id,
        image=rollout.image,
        colour=rollout.colour.value,
        changes=changes,
    )


def start(
    trigger: Trigger, deps: RolloutDeps, *, deadline: Deadline, dry_run: bool = False
) -> RolloutResult:
    """Carry ``trigger`` as far as the hand-off to the gate."""
    if isinstance(trigger, Ignored):
        return RolloutResult("ignored", trigger.reason)
    resolved = _resolve(trigger, deps.apps.load())
    if isinstance(resolved, Ignored):
        return RolloutResult("ignored", resolved.reason)
    app = resolved.app
    state = deps.store.state(app.name)
    if state.live_image == resolved.image:
        return RolloutResult(
            "ignored",
            f"{resolved.image} is already live",
            app=app.name,
            image=resolved.image,
            colour=state.live_colour.value,
        )
    rollout = Rollout(
        app=app.name,
        rollout_id=rollout_id_for(resolved.sequence, resolved.version),
        version=resolved.version,
        image=resolved.image,
        colour=state.live_colour.other,
        phase=Phase.DEPLOYING,
        sequence=resolved.sequence,
        source=resolved.source,
    )
    if dry_run:
        changes = _write_candidate(rollout, app, deps, dry_run=True, live_colour=state.live_colour)
        return _result("dry-run", "nothing was changed", rollout, changes)
    _wait_for_the_night(app, deps)
    status = "started"
    try:
        before = deps.store.accept(rollout, commit=resolved.commit, previous=resolved.previous)
    except Stale as stale:
        current = stale.state
        if current.rollout_id != rollout.rollout_id or current.phase != Phase.DEPLOYING.value:
            return RolloutResult(
                "ignored",
                f"not newer than rollout {current.rollout_id} ({current.phase})",
                app=app.name,
                image=rollout.image,
            )
        status = "resumed"
        existing = deps.store.rollout(app.name, rollout.rollout_id)
        rollout = existing or rollout
    else:
        if before.rollout_id and before.phase in {p.value for p in IN_FLIGHT}:
            deps.store.set_phase(
                app.name,
                before.rollout_id,
                Phase.SUPERSEDED,
                expect=IN_FLIGHT,
                note=f"superseded by {rollout.rollout_id}",
            )
            logger.info(
                "rollout superseded",
                extra={"app": app.name, "superseded": before.rollout_id, "by": rollout.rollout_id},
            )
    return _deploy(
        rollout, app, deps, deadline=deadline, status=status, live_colour=rollout.colour.other
    )


def _wait_for_the_night(app: App, deps: RolloutDeps) -> None:
    """No rollout starts while the night shrink drains nodes: the invocation fails with a
    temporary error, and its retries (async invoke, SQS) bring the push back later."""
    if not deps.night_group:
        return
    until = deps.store.draining_until(deps.night_group)
    now = int(time.time() * 1000)
    if until > now:
        raise TemporaryError(
            f"{app.name}: the night shrink is draining nodes of {deps.night_group} for up to "
            f"{(until - now) // 1000} s more; the rollout waits for it",
            delay=min(60.0, (until - now) / 1000),
        )


def _deploy(
    rollout: Rollout,
    app: App,
    deps: RolloutDeps,
    *,
    deadline: Deadline,
    status: str,
    live_colour: Any,
) -> RolloutResult:
    def fail(reason: str) -> RolloutResult:
        deps.store.set_phase(
            app.name,
            rollout.rollout_id,
            Phase.FAILED,
            note="failed",
            reason=reason,
            expect=(Phase.DEPLOYING,),
        )
        logger.warning(
            "rollout failed",
            extra={"app": app.name, "rollout_id": rollout.rollout_id, "reason": reason},
        )
        return _result("failed", reason, rollout)

    ecr_repo = app.image.ecr_repository_name
    if app.image.wait_for_ecr and ecr_repo and rollout.image.startswith(app.image.repository):
        tag = rollout.image.rsplit(":", 1)[1]
        limit = deadline.sooner(deps.ecr_wait_seconds) if deps.ecr_wait_seconds else deadline
        if not wait_for_image(deps.ecr, repository=ecr_repo, tag=tag, deadline=limit):
            return fail(f"image {rollout.image} not found in ECR within the wait")
    try:
        changes = _write_candidate(
            rollout,
            app,
            deps,
            dry_run=False,
            live_colour=live_colour,
            before_pods=lambda: _prepare_edge(rollout, app, deps),
        )
    except PermanentError as exc:
        return fail(str(exc))
    if not deps.store.set_phase(
        app.name,
        rollout.rollout_id,
        Phase.GATING,
        note="candidate written",
        expect=(Phase.DEPLOYING,),
    ):
        return _result("ignored", "rollout was superseded while deploying", rollout, changes)
    message_id = hand_off(
        deps.sqs,
        queue_url=deps.gate_queue_url,
        message=gate_message(app=app.name, rollout_id=rollout.rollout_id),
        delay_seconds=deps.gate_delay_seconds,
    )
    logger.info(
        "rollout handed to the gate",
        extra={
            "app": app.name,
            "rollout_id": rollout.rollout_id,
            "image": rollout.image,
            "colour": rollout.colour.value,
            "gate_message_id": message_id,
        },
    )
    return _result(status, "candidate written; gate check queued", rollout, changes)


def _prepare_edge(rollout: Rollout, app: App, deps: RolloutDeps) -> None:
    """Push the edge before the candidate's pods are written, and wait for it.

    - The slot may be the live route's warm backup (the previous colour, kept after the last
      promotion): the record already dropped it, and the fleet drops it here, before that slot
      runs unproven pods.
    - The preview host reaches the candidate's Service, checked briskly while it is gated
      (``edge/checks.py``): HAProxy admits the pods as soon as they are ready, and the gate's
      health checks need no push of their own.
    - The release that promoting the candidate would make is staged on every instance as a
      prospect, so that the promotion's push is a swap and a reload.

    A fleet that does not take the push stops nothing: the gate pushes the preview route again
    at its first check, and the promotion stages what it needs.
    """
    if deps.edge_push is None:
        return
    reason = f"candidate {app.name} {rollout.rollout_id}"
    try:
        pushed = deps.edge_push(reason, prospect={"app": app.name, "colour": rollout.colour.value})
    except (ClientError, BotoCoreError) as exc:
        logger.warning("edge not prepared", extra={"app": app.name, "error": str(exc)})
        return
    ok, fleet_status = taken(pushed)
    logger.info(
        "edge prepared for the candidate",
        extra={
            "app": app.name,
            "rollout_id": rollout.rollout_id,
            "fleet": fleet_status,
            "prospect": (pushed.get("prospect") or {}).get("status"),
        },
    )
    if ok:
        deps.store.update(app.name, rollout.rollout_id, {"preview_pushed": True})


def _write_candidate(
    rollout: Rollout,
    app: App,
    deps: RolloutDeps,
    *,
    dry_run: bool,
    live_colour: Any,
    before_pods: Callable[[], None] | None = None,
) -> tuple[Change, ...]:
    kube = KubeRest(deps.api())
    live = read(kube, deployments(app.namespace, slot_name(app, live_colour)))
    deployment = candidate_deployment(
        app,
        colour=rollout.colour,
        image=rollout.image,
        version=rollout.version,
        rollout_id=rollout.rollout_id,
        live=live,
    )
    service = candidate_service(app, colour=rollout.colour)
    # The capacity interlock: every replica must fit before anything is written.
    short = shortfall(
        kube.get("/api/v1/nodes").get("items", []),
        kube.get("/api/v1/pods").get("items", []),
        deployment,
        leaving=selector(app, rollout.colour),
    )
    if short is not None:
        raise PermanentError(f"{app.name}: {short}")
    # The Service first: the edge is prepared for it before any of the candidate's pods exist.
    service_change = apply_service(kube, service, dry_run=dry_run)
    if before_pods is not None and not dry_run:
        before_pods()
    return (apply_deployment(kube, deployment, dry_run=dry_run), service_change)
