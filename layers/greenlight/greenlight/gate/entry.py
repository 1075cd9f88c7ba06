"""The gate function's events: SQS gate checks, the safety-net sweep, and manual invokes.

- SQS (the gate queue): each message is one check (``execute.Gate.check``); the next check is
  queued with ``DelaySeconds``, carrying the consecutive pass/fail counts and its chain's name.
  A message that can never succeed (malformed, an app the apps file no longer has) goes to the
  gate's dead-letter queue with its reason; one that fails for now comes back after its own
  delay (greenlight/redelivery.py).
- Schedule (``aws.events``/``aws.scheduler``): the sweep. Every app's newest and live rollout
  that is still moving (``lifecycle.MOVING``) and has not been checked for a while gets a fresh
  chain of checks (``decide.stuck``): a lost message or a dead Lambda never strands a rollout,
  and every phase's deadline is met by a check that enforces it.
- Manual: ``{"action": "promote" | "abort" | "rollback", "app": "...", "reason": "..."}``.
  ``promote`` promotes the app's newest rollout now if its candidate is ready (skipping the
  remaining passes and any manual approval); ``abort`` rolls the pending candidate back;
  ``rollback`` makes what was live before the live rollout live again, instantly while it is
  still warm. With ``"dry_run": true`` the same checks run (reads only) and the answer says
  what it would do (``decide.manual_plan``); nothing is written, scaled or pushed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..edgepush import EdgeCounters, EdgePush, LambdaEdgeCounters, LambdaEdgePush
from ..errors import EventError, PermanentError
from ..handoff import gate_message, hand_off
from ..lifecycle import GATED, MOVING, Actor, Phase
from ..redelivery import Redelivery, batch_problem, message_body
from ..settings import GateSettings
from ..store.fleet import FleetLog
from ..store.pin import EdgePin
from ..store.rollouts import Rollout, RolloutStore
from .decide import Status, manual_plan, stuck
from .execute import Check, Gate, GateDeps, GateResult, app_named
from .observe import Verdict, observe
from .probe import Prober

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs import SQSClient

    from ..appconfig import App

logger = Logger(child=True)
ACTIONS = ("promote", "abort", "rollback")
# The rollout function's own run (its timeout, 330 s, and a margin): a deploying rollout that
# young is left to that function's hand-off.
DEPLOY_GRACE_SECONDS = 360


@dataclass
class GateRuntime:
    settings: GateSettings
    deps: GateDeps
    sqs: SQSClient
    redelivery: Redelivery | None = None

    @classmethod
    def build(
        cls,
        settings: GateSettings,
        clients: Clients | None = None,
        edge_push: EdgePush | None = None,
        edge_counters: EdgeCounters | None = None,
    ) -> GateRuntime:
        clients = clients or Clients()
        deps = GateDeps(
            apps=AppsSource(
                clients.s3,
                settings.config_bucket,
                settings.config_key,
                settings.cluster.app_namespaces,
            ),
            store=RolloutStore(clients.dynamodb, settings.table),
            kube=KubeRest(lambda: api_client(settings.cluster, session=clients.session)),
            prober=Prober(settings.edge_endpoint, verify_tls=settings.verify_tls),
            edge_push=edge_push or LambdaEdgePush(clients.lambda_within, settings.edge_function),
            # HAProxy's own counters (the haproxy function's read-only counters action).
            edge_counters=edge_counters
            or LambdaEdgeCounters(clients.lambda_within, settings.edge_function),
            fleet=FleetLog(clients.dynamodb, settings.table),
            # Read before anything is scaled down (the pinned release may route to it).
            pin=EdgePin(clients.dynamodb, settings.table),
            clock_ms=lambda: int(time.time() * 1000),
            deploy_deadline_seconds=settings.deploy_deadline_seconds,
            promote_deadline_seconds=settings.promote_deadline_seconds,
        )
        redelivery = Redelivery(clients.sqs, dead_letters=settings.dead_letter_queue_url)
        return cls(settings, deps, clients.sqs, redelivery)


def new_chain() -> str:
    return uuid.uuid4().hex[:12]


def queue_next(runtime: GateRuntime, result: GateResult) -> None:
    """Queue the check that follows ``result`` (if any), with its delay and counts."""
    nxt = result.next_check
    if nxt is None:
        return
    hand_off(
        runtime.sqs,
        queue_url=runtime.settings.gate_queue_url,
        message=gate_message(**nxt._asdict()),
        delay_seconds=result.delay_seconds,
    )


def run_check(check: Check, runtime: GateRuntime, context: Any) -> GateResult:
    """One check, then its successor queued (when there is one)."""
    result = Gate(runtime.deps, Deadline.from_context(context, default_seconds=30)).check(check)
    if result.next_check is not None:  # the chain goes on under its name
        result = result._replace(next_check=result.next_check._replace(chain=check.chain))
    if result.status is not Status.ENDED:  # the sweep leaves recently checked rollouts alone
        runtime.deps.store.touch(check.app, check.rollout_id, runtime.deps.clock_ms())
    queue_next(runtime, result)
    logger.info(
        "gate check",
        extra={"app": check.app, "rollout": check.rollout_id, "result": result.to_dict()},
    )
    return result


def check_of(body: Any) -> Check:
    if not isinstance(body, dict) or body.get("kind") != "gate-check":
        raise EventError("gate message: expected {'kind': 'gate-check', 'app', 'rollout_id'}")
    try:
        return Check(
            app=str(body["app"]),
            rollout_id=str(body["rollout_id"]),
            attempt=int(body.get("attempt", 0)),
            successes=int(body.get("successes", 0)),
            failures=int(body.get("failures", 0)),
            chain=str(body.get("chain", "")),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise EventError(f"gate message: {exc}") from None


def sweep(runtime: GateRuntime, context: Any) -> dict[str, Any]:
    """A new chain of checks for every rollout that should be moving and is not looked at."""
    store = runtime.deps.store
    now = runtime.deps.clock_ms()
    queued, ok = [], []
    for app in runtime.deps.apps.load().apps:
        state = store.state(app.name)
        policy = runtime.deps.policy(app)
        for rollout_id in dict.fromkeys(r for r in (state.rollout_id, state.live_rollout_id) if r):
            rollout = store.rollout(app.name, rollout_id)
            if rollout is None or rollout.phase not in MOVING:
                continue
            if not stuck(
                rollout,
                policy,
                now,
                deploy_grace_seconds=DEPLOY_GRACE_SECONDS,
                push_max_seconds=runtime.settings.edge_push_max_seconds,
            ):
                ok.append(app.name)
                continue
            # A new chain takes over, so that the stuck one's message, if it comes back, drops.
            chain = new_chain()
            if not store.take_over_chain(rollout, chain, seen=rollout.last_check_at or None):
                ok.append(app.name)  # a check ran meanwhile: the chain is alive
                continue
            hand_off(
                runtime.sqs,
                queue_url=runtime.settings.gate_queue_url,
                message=gate_message(app=app.name, rollout_id=rollout_id, chain=chain),
                delay_seconds=0,
            )
            queued.append(app.name)
    return {"action": "sweep", "queued": sorted(set(queued)), "moving": sorted(set(ok))}


def _manual_event(event: dict[str, Any]) -> tuple[str, str, str, bool]:
    unknown = set(event) - {"action", "app", "reason", "dry_run"}
    if unknown:
        raise EventError(
            f"unknown field(s) {sorted(unknown)}; allowed: action, app, reason, dry_run"
        )
    action, name = event.get("action"), event.get("app")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if not isinstance(name, str) or not name:
        raise EventError("app: expected the app's name")
    dry_run = event.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise EventError(f"dry_run: expected true or false, got {dry_run!r}")
    return action, name, str(event.get("reason") or f"manual {action}"), dry_run


def manual(event: dict[str, Any], runtime: GateRuntime, context: Any) -> dict[str, Any]:
    action, name, reason, dry_run = _manual_event(event)
    gate = Gate(runtime.deps, Deadline.from_context(context, default_seconds=30))
    app = app_named(runtime.deps.apps.load(), name)
    state = runtime.deps.store.state(name)
    target = state.live_rollout_id if action == "rollback" else state.rollout_id
    rollout = runtime.deps.store.rollout(name, target) if target else None
    if rollout is None:
        what = (
            "nothing was promoted to roll back from" if action == "rollback" else "no rollout yet"
        )
        raise PermanentError(f"app {name}: {what}")
    if action == "rollback":
        _may_roll_back(gate, app, rollout)
    else:
        _may_gate(gate, app, rollout, action)
    if dry_run:  # the checks passed; what it would do, and nothing done
        return {
            "action": action,
            "app": name,
            "status": Status.DRY_RUN.value,
            "detail": f"nothing was changed ({reason})",
            "phase": rollout.phase.value,
            "would": manual_plan(
                action, rollout, state, analysis=runtime.deps.policy(app).analysis
            ),
        }
    if action == "rollback":
        result = gate.revert(app, rollout, f"rolled back by hand: {reason}", by=Actor.MANUAL)
    elif action == "abort":
        result = gate.roll_back(
            app, rollout, f"aborted: {reason}", phase=Phase.ABORTED, by=Actor.MANUAL
        )
    else:
        result = gate.promote_now(app, rollout, f"promoted by hand: {reason}", chain=rollout.chain)
    if result.next_check is not None:  # a new chain carries on; the old one's next look drops
        chain = new_chain()
        runtime.deps.store.take_over_chain(rollout, chain, seen=None)
        result = result._replace(next_check=result.next_check._replace(chain=chain))
    queue_next(runtime, result)
    return {"action": action, "app": name} | result.to_dict()


def _may_gate(gate: Gate, app: App, rollout: Rollout, action: str) -> None:
    """A manual promote or abort of ``rollout`` may go ahead (reads only); else why not."""
    if rollout.phase not in (Phase.DEPLOYING, *GATED):
        raise PermanentError(
            f"app {app.name}: no rollout waiting at the gate (phase {rollout.phase.value})"
        )
    if action == "abort":
        return
    if rollout.phase is Phase.DEPLOYING:
        raise PermanentError(f"app {app.name}: the candidate is still being written; try again")
    seen = observe(gate.deps.kube, app, rollout)
    if seen.verdict is not Verdict.READY:
        raise PermanentError(f"app {app.name}: the candidate is not ready ({seen.reason})")


def _may_roll_back(gate: Gate, app: App, rollout: Rollout) -> None:
    """A manual rollback from ``rollout`` may go ahead (reads only); else why not."""
    if rollout.phase is Phase.SETTLED:
        raise PermanentError(
            f"app {app.name}: {rollout.colour.other.value} is no longer warm (scaled down after "
            f"its warm window); roll back with a manual rollout of {rollout.previous_image} "
            "(the rollout function, docs/gate.md)"
        )
    if rollout.phase not in (Phase.WATCHING, Phase.LIVE):
        raise PermanentError(f"app {app.name}: nothing was promoted to roll back from")
    if not gate.has_previous(app, rollout):
        raise PermanentError(
            f"app {app.name}: nothing was live before rollout {rollout.rollout_id}: "
            "nothing to roll back to"
        )


def _batch(event: dict[str, Any], runtime: GateRuntime, context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    redelivery = runtime.redelivery or Redelivery(runtime.sqs)
    delays: dict[str, float] = {}  # messageId -> seconds, for the records that failed for now

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        try:
            check = check_of(message_body(record.raw_event))
            return run_check(check, runtime, context).to_dict()
        except Exception as exc:  # a dead letter, or a retry after its delay (raised again)
            return redelivery.settle(record.raw_event, exc, delays, now_ms=int(time.time() * 1000))

    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
        context=context,
    )
    failed = {str(item["itemIdentifier"]) for item in response["batchItemFailures"]}
    if failed:
        redelivery.retry_later(event["Records"], failed, delays)
    return dict(response)


def handle(event: Any, runtime: GateRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"status": "rejected", "error": "event: expected a JSON object"}
    records = event.get("Records")
    if isinstance(records, list) and records:
        problem = batch_problem(records)
        if problem is not None:  # not from SQS: nothing in it is handled
            logger.warning("gate invoke rejected", extra={"error": problem})
            return {"status": "rejected", "error": problem}
        return _batch(event, runtime, context)
    try:
        if event.get("source") in ("aws.events", "aws.scheduler"):
            return sweep(runtime, context)
        return manual(event, runtime, context)
    except PermanentError as exc:
        logger.warning("gate invoke rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
