"""The gate function's logic: SQS gate checks, the safety-net sweep, and manual invokes.

- SQS (the gate queue): each message is one check (``service.Gate.check``); the next check is
  queued with ``DelaySeconds``, carrying the consecutive pass/fail counts.
- Schedule (``aws.events``/``aws.scheduler``): the sweep. Every app whose rollout is in flight
  (or live with its previous colour still warm) and has not been checked for three intervals
  gets a fresh check: a lost message or a dead Lambda never strands a rollout.
- Manual: ``{"action": "promote" | "abort" | "rollback", "app": "...", "reason": "..."}``.
  ``promote`` promotes the app's rollout now if its candidate is ready (skipping the remaining
  passes and any manual approval); ``abort`` rolls the in-flight candidate back; ``rollback``
  makes the previous live version live again, instantly while it is still warm.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..edge.fleet import FleetLog
from ..edge.invoke import EdgePush, LambdaEdgePush
from ..errors import EventError, PermanentError
from ..rollout.handoff import gate_message, hand_off
from ..rollout.records import IN_FLIGHT, Phase, Rollout, RolloutStore
from ..settings import GateSettings
from .probe import Prober
from .service import GATING_PHASES, Check, Gate, GateDeps, GateResult, app_named, observe

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from ..appconfig import App

logger = Logger(child=True)
ACTIONS = ("promote", "abort", "rollback")
STUCK_INTERVALS = 3


@dataclass
class GateRuntime:
    settings: GateSettings
    deps: GateDeps
    sqs: Any

    @classmethod
    def build(
        cls,
        settings: GateSettings,
        clients: Clients | None = None,
        edge_push: EdgePush | None = None,
    ) -> GateRuntime:
        clients = clients or Clients()
        kube: list[KubeRest] = []

        def kube_client() -> KubeRest:
            if not kube:
                kube.append(KubeRest(api_client(settings.cluster, session=clients.session)))
            return kube[0]

        deps = GateDeps(
            apps=AppsSource(clients.lazy("s3"), settings.config_bucket, settings.config_key),
            store=RolloutStore(clients.lazy("dynamodb"), settings.table),
            kube=kube_client,
            prober=Prober(settings.edge_endpoint, verify_tls=settings.verify_tls),
            edge_push=edge_push or LambdaEdgePush(clients.lazy("lambda"), settings.edge_function),
            fleet=FleetLog(clients.lazy("dynamodb"), settings.table),
            clock_ms=lambda: int(time.time() * 1000),
        )
        return cls(settings, deps, clients.lazy("sqs"))


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
        message=gate_message(**asdict(nxt)),
        delay_seconds=result.delay_seconds,
    )


def run_check(check: Check, runtime: GateRuntime, context: Any) -> GateResult:
    """One check, then its successor queued (when there is one)."""
    deadline = Deadline.from_context(context) if context is not None else None
    gate = Gate(runtime.deps, deadline)
    result = gate.check(check)
    if result.next_check is not None:  # the chain goes on under its name
        result = replace(result, next_check=replace(result.next_check, chain=check.chain))
    if result.status != "ended":  # the sweep leaves recently checked rollouts alone
        runtime.deps.store.update(
            check.app, check.rollout_id, {"last_check_at": runtime.deps.clock_ms()}
        )
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
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"gate message: {exc}") from None


def sweep(runtime: GateRuntime, context: Any) -> dict[str, Any]:
    """Queue a check for every rollout that should be moving and has not been looked at."""
    store = runtime.deps.store
    apps = runtime.deps.apps.load()
    now = runtime.deps.clock_ms()
    queued, ok = [], []
    for app in apps.apps:
        state = store.state(app.name)
        if state.rollout_id is None:
            continue
        rollout = store.rollout(app.name, state.rollout_id)
        if rollout is None:
            continue
        moving = rollout.phase in IN_FLIGHT or (rollout.phase is Phase.LIVE and not rollout.retired)
        if not moving:
            continue
        interval_ms = app.health.interval_seconds * 1000
        # A live rollout's chain looks again at most every 15 minutes (the warm window).
        limit = 960_000 if rollout.phase is Phase.LIVE else STUCK_INTERVALS * interval_ms
        if now - rollout.last_check_at < limit:
            ok.append(app.name)
            continue
        # A new chain takes over, so that the stuck one's message, if it comes back, is dropped.
        chain = new_chain()
        if not store.take_over_chain(
            app.name, rollout.rollout_id, chain, seen=rollout.last_check_at or None
        ):
            ok.append(app.name)  # a check ran meanwhile: the chain is alive
            continue
        hand_off(
            runtime.sqs,
            queue_url=runtime.settings.gate_queue_url,
            message=gate_message(app=app.name, rollout_id=rollout.rollout_id, chain=chain),
            delay_seconds=0,
        )
        queued.append(app.name)
    return {"action": "sweep", "queued": queued, "moving": ok}


def manual(event: dict[str, Any], runtime: GateRuntime, context: Any) -> dict[str, Any]:
    unknown = set(event) - {"action", "app", "reason"}
    if unknown:
        raise EventError(f"unknown field(s) {sorted(unknown)}; allowed: action, app, reason")
    action, name = event.get("action"), event.get("app")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if not isinstance(name, str) or not name:
        raise EventError("app: expected the app's name")
    reason = str(event.get("reason") or f"manual {action}")
    gate = Gate(runtime.deps)
    app = app_named(runtime.deps.apps.load(), name)
    state = runtime.deps.store.state(name)
    rollout = runtime.deps.store.rollout(name, state.rollout_id) if state.rollout_id else None
    if rollout is None:
        raise PermanentError(f"app {name}: no rollout yet")
    if action == "rollback":
        result = _manual_rollback(gate, app, rollout, reason)
    else:
        result = _manual_gate(gate, app, rollout, action, reason)
    if result.next_check is not None:  # a new chain carries on; the old one's next look drops
        chain = new_chain()
        runtime.deps.store.take_over_chain(name, rollout.rollout_id, chain, seen=None)
        result = replace(result, next_check=replace(result.next_check, chain=chain))
    queue_next(runtime, result)
    return {"action": action, "app": name} | result.to_dict()


def _manual_gate(gate: Gate, app: App, rollout: Rollout, action: str, reason: str) -> GateResult:
    if rollout.phase not in (Phase.DEPLOYING, *GATING_PHASES):
        raise PermanentError(
            f"app {app.name}: no rollout waiting at the gate (phase {rollout.phase.value})"
        )
    if action == "abort":
        return gate.roll_back(app, rollout, f"aborted: {reason}", phase=Phase.ABORTED)
    seen = observe(gate.kube, app, rollout)
    if seen.verdict != "ready":
        raise PermanentError(f"app {app.name}: the candidate is not ready ({seen.reason})")
    return gate.start_promotion(app, rollout, f"promoted by hand: {reason}")


def _manual_rollback(gate: Gate, app: App, rollout: Rollout, reason: str) -> GateResult:
    if rollout.phase not in (Phase.WATCHING, Phase.LIVE):
        raise PermanentError(f"app {app.name}: nothing was promoted to roll back from")
    if not gate.has_previous(app, rollout):
        raise PermanentError(
            f"app {app.name}: nothing was live before rollout {rollout.rollout_id}: "
            "nothing to roll back to"
        )
    if rollout.retired:
        raise PermanentError(
            f"app {app.name}: {rollout.colour.other.value} is no longer warm (scaled down after "
            f"its warm window); roll back with a manual rollout of {rollout.previous_image} "
            "(the rollout function, docs/gate.md)"
        )
    return gate.revert(app, rollout, f"rolled back by hand: {reason}")


def _batch(event: dict[str, Any], runtime: GateRuntime, context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        try:
            check = check_of(json.loads(record.body))
            return run_check(check, runtime, context).to_dict()
        except (PermanentError, json.JSONDecodeError) as exc:
            logger.warning("gate message dropped", extra={"error": str(exc)})
            return {"status": "rejected", "error": str(exc)}

    return dict(
        process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS),
            context=context,
        )
    )


def handle(event: Any, runtime: GateRuntime, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"status": "rejected", "error": "event: expected a JSON object"}
    records = event.get("Records")
    if isinstance(records, list) and records:
        return _batch(event, runtime, context)
    try:
        if event.get("source") in ("aws.events", "aws.scheduler"):
            return sweep(runtime, context)
        return manual(event, runtime, context)
    except PermanentError as exc:
        logger.warning("gate invoke rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
