"""Starting a rollout: the effects of the rollout function's decisions (``decide.py``).

Order of steps, each safe to repeat:
1. resolve the app (unknown repository/branch: ignored) and the image reference;
2. admit it against the app's state (the image already live: ignored);
3. accept the rollout (forward-only per app; it supersedes a pending older rollout), in one
   transaction with the check that the night shrink is not draining nodes (while it is: a
   temporary error with the drain's remaining time, and the trigger is retried then);
4. optionally wait, within the deadline, for the image to exist in ECR;
5. check that every replica fits, take the slot of the warm colour (ending the watch or warm
   period of the promoted rollout that kept it), write the candidate's NodePort Service, push
   the edge (preview route, promotion staged ahead), write the candidate Deployment;
6. move the rollout to ``gating`` and queue the first gate check.
A Lambda that dies between steps leaves the rollout ``deploying``; the same trigger run again
(a retry) resumes it from step 4, and the gate fails it once ``deploying`` is past its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from ..cluster.names import deployments, nodes, pods, selector, slot_name
from ..cluster.rest import KubeRest
from ..cluster.slots import scale_down
from ..deadline import Deadline
from ..edgepush import PUSH_BUDGET_SECONDS, EdgePush, taken
from ..edgepush import pinned as edge_pinned
from ..errors import PermanentError
from ..handoff import gate_message, hand_off
from ..interlock import accept_outside_the_night
from ..lifecycle import Actor, Phase
from ..store.night import NightStore
from ..store.rollouts import Rollout, RolloutStore, Stale
from ..triggers import Ignored, Trigger
from .capacity import shortfall
from .decide import Resolved, RolloutResult, Status, admit, ecr_tag, resolve, resumes
from .deploy import Change, apply_deployment, apply_service
from .images import pinned, wait_for_image
from .workload import candidate_deployment, candidate_service

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_sqs import SQSClient

    from ..appconfig import App, AppsFile
    from ..cluster.bodies import Deployment, Node, Pod

    class AppsLoader(Protocol):
        def load(self) -> AppsFile: ...


logger = Logger(child=True)
# What the writes after the edge push (the Deployment, the move to gating, the hand-off) need.
AFTER_PUSH_SECONDS = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RolloutDeps:
    apps: AppsLoader
    store: RolloutStore
    kube: KubeRest
    sqs: SQSClient
    ecr: ECRClient
    gate_queue_url: str
    gate_delay_seconds: int = 5
    ecr_wait_seconds: int = 0
    nights: NightStore | None = None  # the night shrink's state ("": no night group)
    night_group: str = ""
    edge_push: EdgePush | None = None  # the haproxy function, waited for; None: no edge
    clock_ms: Callable[[], int] = field(default=_now_ms)


def start(
    trigger: Trigger, deps: RolloutDeps, *, deadline: Deadline, dry_run: bool = False
) -> RolloutResult:
    """Carry ``trigger`` as far as the hand-off to the gate."""
    admitted = _admit(trigger, deps)
    if isinstance(admitted, RolloutResult):
        return admitted
    rollout, resolved = admitted
    if dry_run:
        candidate = _plan_candidate(rollout, resolved.app, deps)
        changes = _write_candidate(
            rollout, resolved.app, deps, candidate, deadline=deadline, dry_run=True
        )
        return RolloutResult.of(Status.DRY_RUN, "nothing was changed", rollout, changes)
    try:  # with no night drain under way, in the same transaction
        accepted = accept_outside_the_night(
            deps.store,
            rollout,
            commit=resolved.commit,
            previous=resolved.previous,
            nights=deps.nights,
            group=deps.night_group,
            now_ms=deps.clock_ms(),
        )
    except Stale as stale:
        ignored = resumes(rollout, stale.state)
        if ignored is not None:
            return ignored
        existing = deps.store.rollout(rollout.app, rollout.rollout_id) or rollout
        return deploy(existing, resolved.app, deps, deadline=deadline, status=Status.RESUMED)
    return deploy(accepted, resolved.app, deps, deadline=deadline, status=Status.STARTED)


def _admit(trigger: Trigger, deps: RolloutDeps) -> tuple[Rollout, Resolved] | RolloutResult:
    """The rollout ``trigger`` starts, with what it resolved to; or why there is none."""
    if isinstance(trigger, Ignored):
        return RolloutResult(Status.IGNORED, trigger.reason)
    resolved = resolve(trigger, deps.apps.load())
    if isinstance(resolved, Ignored):
        return RolloutResult(Status.IGNORED, resolved.reason)
    admitted = admit(resolved, deps.store.state(resolved.app.name))
    if isinstance(admitted, RolloutResult):
        return admitted
    return admitted, resolved


def deploy(
    rollout: Rollout, app: App, deps: RolloutDeps, *, deadline: Deadline, status: Status
) -> RolloutResult:
    """Steps 4-6 for an accepted rollout."""
    wait = ecr_tag(app, rollout.image)
    if wait is not None:
        limit = ecr_wait_deadline(deadline, deps.ecr_wait_seconds, push=deps.edge_push is not None)
        digest = wait_for_image(deps.ecr, repository=wait[0], tag=wait[1], deadline=limit)
        if digest is None:
            return _fail(rollout, deps, f"image {rollout.image} not found in ECR within the wait")
        if digest and digest != rollout.digest:
            rollout = deps.store.update(rollout, {"digest": digest})
    try:
        candidate = _plan_candidate(rollout, app, deps)
    except PermanentError as exc:
        return _fail(rollout, deps, str(exc))
    taken = deps.store.take_slot(rollout)
    if taken is None:
        return RolloutResult.of(Status.IGNORED, "a newer rollout took over", rollout)
    try:
        if taken.colour is not rollout.colour:  # a revert switched the live colour meanwhile
            candidate = _plan_candidate(taken, app, deps)
        changes = _write_candidate(taken, app, deps, candidate, deadline=deadline, dry_run=False)
    except EdgePinned as exc:  # the slot's pods stay: the pinned release may route to them
        return _fail(taken, deps, str(exc))
    except PermanentError as exc:
        _release_slot(taken, app, deps)
        return _fail(taken, deps, str(exc))
    return _hand_off(taken, app, deps, status, changes)


class EdgePinned(PermanentError):
    """The edge is pinned to a release: the preview host cannot reach a candidate, so none is
    deployed."""


def ecr_wait_deadline(deadline: Deadline, wait_seconds: int, *, push: bool) -> Deadline:
    """The ECR wait's deadline, from the run's: at most ``wait_seconds`` (0: no limit of its
    own), and never into what the edge push (``edgepush.PUSH_BUDGET_SECONDS``) and the writes
    after it need, so that the whole run ends within the function's timeout."""
    reserve = AFTER_PUSH_SECONDS + (PUSH_BUDGET_SECONDS if push else 0.0)
    limit = deadline.sooner(max(deadline.remaining() - reserve, 0.0))
    return limit.sooner(wait_seconds) if wait_seconds else limit


def _hand_off(
    rollout: Rollout, app: App, deps: RolloutDeps, status: Status, changes: tuple[Change, ...]
) -> RolloutResult:
    """Step 6: ``gating``, and the first gate check queued."""
    gating = deps.store.move(rollout, Phase.GATING, by=Actor.ROLLOUT, why="candidate written")
    if gating is None:
        return RolloutResult.of(
            Status.IGNORED, "rollout was superseded while deploying", rollout, changes
        )
    # Under the rollout's current chain of checks: the sweep may have started one meanwhile.
    chain = (deps.store.rollout(app.name, rollout.rollout_id) or gating).chain
    message_id = hand_off(
        deps.sqs,
        queue_url=deps.gate_queue_url,
        message=gate_message(app=app.name, rollout_id=rollout.rollout_id, chain=chain),
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
    return RolloutResult.of(status, "candidate written; gate check queued", rollout, changes)


def _fail(rollout: Rollout, deps: RolloutDeps, reason: str) -> RolloutResult:
    deps.store.move(rollout, Phase.FAILED, by=Actor.ROLLOUT, why=reason)
    logger.warning(
        "rollout failed",
        extra={"app": rollout.app, "rollout_id": rollout.rollout_id, "reason": reason},
    )
    return RolloutResult.of(Status.FAILED, reason, rollout)


class _Candidate(NamedTuple):
    deployment: dict[str, Any]
    service: dict[str, Any]


def _plan_candidate(rollout: Rollout, app: App, deps: RolloutDeps) -> _Candidate:
    """The candidate's bodies, once the capacity interlock has found room for every replica
    (else a PermanentError with the arithmetic, before anything is written)."""
    kube = deps.kube
    live = kube.read(deployments(app.namespace, slot_name(app, rollout.colour.other)))
    deployment = candidate_deployment(
        app,
        colour=rollout.colour,
        image=pinned(rollout.image, rollout.digest),
        tag=rollout.image,
        version=rollout.version,
        rollout_id=rollout.rollout_id,
        live=live,
    )
    short = shortfall(
        cast("list[Node]", kube.items(nodes())),
        cast("list[Pod]", kube.items(pods())),
        cast("Deployment", deployment),
        leaving=selector(app, rollout.colour),
    )
    if short is not None:
        raise PermanentError(f"{app.name}: {short}")
    return _Candidate(deployment, candidate_service(app, colour=rollout.colour))


def _write_candidate(
    rollout: Rollout,
    app: App,
    deps: RolloutDeps,
    candidate: _Candidate,
    *,
    deadline: Deadline,
    dry_run: bool,
) -> tuple[Change, ...]:
    """The Service first (the edge is prepared for it before any of the candidate's pods
    exist), then the Deployment."""
    service = apply_service(deps.kube, candidate.service, dry_run=dry_run)
    if not dry_run:
        pushing = deadline.sooner(deadline.remaining() - AFTER_PUSH_SECONDS)
        _prepare_edge(rollout, app, deps, pushing)
    return (apply_deployment(deps.kube, candidate.deployment, dry_run=dry_run), service)


def _release_slot(rollout: Rollout, app: App, deps: RolloutDeps) -> None:
    """A rollout that took the warm slot and then failed to write: the older pods it found
    there are scaled away (nothing is warm behind the live route any more)."""
    scale_down(
        deps.kube,
        app.namespace,
        slot_name(app, rollout.colour),
        holds=lambda owner: owner is None or owner < rollout.rollout_id,
    )


def _prepare_edge(rollout: Rollout, app: App, deps: RolloutDeps, deadline: Deadline) -> None:
    """Push the edge before the candidate's pods are written, and wait for it, within
    ``deadline`` (the run's, less what the writes after it need).

    - The slot may have been the live route's warm backup: :meth:`RolloutStore.take_slot`
      dropped it from the record, and the fleet drops it here, before that slot runs unproven
      pods.
    - The preview host reaches the candidate's Service, checked briskly while it is gated
      (``greenlight/admission.py``): HAProxy admits the pods as soon as they are ready, and the
      gate's health checks need no push of their own.
    - The release that promoting the candidate would make is staged on every instance as a
      prospect, so that the promotion's push is a swap and a reload.

    A fleet that does not take the push stops nothing: the gate pushes the preview route again
    at its first check, and the promotion stages what it needs. An edge pinned to a release
    (a rollback, until unpin) refuses the push: :class:`EdgePinned`, and no candidate is
    written (nobody could reach it).
    """
    if deps.edge_push is None:
        return
    reason = f"candidate {app.name} {rollout.rollout_id}"
    try:
        pushed = deps.edge_push(
            reason,
            deadline=deadline,
            prospect={"app": app.name, "colour": rollout.colour.value},
        )
    except (ClientError, BotoCoreError) as exc:
        logger.warning("edge not prepared", extra={"app": app.name, "error": str(exc)})
        return
    if refused := edge_pinned(pushed):
        raise EdgePinned(f"not deployed: {refused}")
    ok, fleet_status = taken(pushed)
    prospect: dict[str, Any] = pushed.get("prospect") or {}
    logger.info(
        "edge prepared for the candidate",
        extra={
            "app": app.name,
            "rollout_id": rollout.rollout_id,
            "fleet": fleet_status,
            "prospect": prospect.get("status"),
        },
    )
    if ok:
        deps.store.update(rollout, {"preview_pushed": True})
