"""The haproxy function's logic: which action, then snapshot -> render -> publish.

Actions: ``render`` (a dry run: the diff against what is live), ``push`` (publish when changed),
``rollback`` (the previous published version), ``reload`` (apply the published version to the
fleet again). Worker Auto Scaling Group instance events and the reconcile schedule are pushes.
Every action can be a dry run (``"dry_run": true``).

A push may name a ``prospect`` (``{"app": ..., "colour": ...}``): the release that promoting that
colour would publish. After the push it is rendered, published beside the bundle
(``prospect.tar.gz``, never read by an instance that boots) and staged on every instance without
being switched to, so that when the promotion comes its push finds the release fetched and
checked and is a swap and a reload. A prospect that went stale (a node, another app) only
costs the promotion its staging.

After a publish or a rollback the fleet is reloaded (``greenlight.edge.fleet``: canary first,
then the rest) and the outcome recorded. A push that finds the config unchanged still reloads
when the last recorded fleet run did not bring every instance to the published version, so the
reconcile schedule heals a degraded fleet.

Every action that writes (not a dry run) holds the edge lock (``store/lease.py``) while it
publishes and reloads: one writer of the config at a time, and a push that finds another at
work waits for it (the wait is in the answer's ``lock``). A caller says when it gives up
(``deadline_ms``, epoch milliseconds): the function's deadline is the sooner of that and its
own, the lock is waited for only while enough is left to push (:data:`MIN_LOCKED_SECONDS`),
and each SSM wave is sized to end before it (``fleet.wave_timeouts``). A push that cannot get
the lock in time answers ``busy``, one called too late ``too-late``: neither changes anything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from posixpath import dirname, join
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from ..appsource import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..colour import Colour
from ..deadline import Deadline
from ..edgepush import PushStatus
from ..errors import EventError, GreenlightError, PermanentError, TemporaryError
from ..lifecycle import Phase
from ..settings import EdgeFunctionSettings
from ..store.fleet import FleetLog
from ..store.lease import EdgeLock, Held
from ..store.rollouts import AppState, RolloutStore
from .fleet import FleetReloader
from .publish import ConfigStore, Published
from .render import render
from .signing import KmsSigner
from .state import MANIFEST, build_snapshot, certificate_manifest, certificate_refs

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

    from ..appconfig import AppsFile

logger = Logger(child=True)
ACTIONS = ("render", "push", "rollback", "reload")
ASG_EVENTS = ("EC2 Instance Launch Successful", "EC2 Instance Terminate Successful")
PROSPECT_NAME = "prospect.tar.gz"
# The lock is waited for only while at least this is left: a render, a publish and one SSM
# wave (fleet.MIN_WAVE_SECONDS) after it.
MIN_LOCKED_SECONDS = 70.0


def prospect_key(bundle_key: str) -> str:
    """Where a push's prospect is published: beside the bundle, under another name."""
    return join(dirname(bundle_key), PROSPECT_NAME)


@dataclass(frozen=True)
class Prospect:
    """A candidate whose promotion is staged ahead: ``app`` with ``colour`` live."""

    app: str
    colour: Colour

    @classmethod
    def of(cls, raw: Any) -> Prospect | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) != {"app", "colour"}:
            raise EventError('prospect: expected {"app": NAME, "colour": "blue" or "green"}')
        try:
            return cls(str(raw["app"]), Colour(raw["colour"]))
        except ValueError:
            raise EventError(
                f"prospect.colour: expected blue or green, got {raw['colour']!r}"
            ) from None

    def states(self, states: Mapping[str, AppState]) -> dict[str, AppState]:
        """``states`` as the gate's promotion leaves them: the colour live, what was live
        its warm backup, the rollout promoting (the preview host on the new colour)."""
        state = states.get(self.app) or AppState(app=self.app)
        promoted = state._replace(
            live_colour=self.colour,
            backup_colour=state.live_colour
            if state.live_colour is not self.colour
            else state.backup_colour,
            phase=Phase.PROMOTING,
            live_phase=Phase.PROMOTING,
        )
        return {**states, self.app: promoted}


@dataclass
class EdgeRuntime:
    settings: EdgeFunctionSettings
    clients: Clients
    apps: AppsSource
    store: RolloutStore
    configs: ConfigStore
    fleet_log: FleetLog
    kube: KubeRest
    fleet_ssm: SSMClient | None = None  # the fleet reload's SSM; the local sandbox brings its own
    lock: EdgeLock | None = None  # the edge lock; None: in the rollouts table

    def edge_lock(self) -> EdgeLock:
        return self.lock or EdgeLock(self.clients.dynamodb, self.settings.table)

    @classmethod
    def build(cls, settings: EdgeFunctionSettings, clients: Clients | None = None) -> EdgeRuntime:
        clients = clients or Clients()
        return cls(
            settings,
            clients,
            AppsSource(
                clients.s3,
                settings.config_bucket,
                settings.config_key,
                settings.cluster.app_namespaces,
            ),
            RolloutStore(clients.dynamodb, settings.table),
            ConfigStore(
                clients.s3,
                settings.config_bucket,
                settings.bundle_key,
                # Every bundle published is checked and signed; what is read back is verified.
                KmsSigner(clients.client("kms"), settings.signing_key)
                if settings.signing_key
                else None,
            ),
            FleetLog(clients.dynamodb, settings.table),
            KubeRest(lambda: api_client(settings.cluster, session=clients.session)),
        )

    def reloader(self) -> FleetReloader | None:
        fleet = self.settings.fleet
        if fleet is None:
            return None
        return FleetReloader(self.fleet_ssm or self.clients.ssm, self.clients.ec2, fleet)


def action_of(event: Any) -> tuple[str, bool, str]:
    """(action, dry_run, why) for an invocation event; EventError when it is not one."""
    if not isinstance(event, dict):
        raise EventError("event: expected a JSON object")
    if _instance_event(event):
        detail = event.get("detail") or {}
        if not isinstance(detail, Mapping):
            raise EventError("detail: expected an object")
        return "push", False, f"{event['detail-type']}: {detail.get('EC2InstanceId', '?')}"
    if _scheduled(event):
        return "push", False, "reconcile schedule"
    unknown = set(event) - {"action", "dry_run", "reason", "prospect", "deadline_ms"}
    if unknown:
        raise EventError(
            f"unknown field(s) {sorted(unknown)}; "
            "allowed: action, dry_run, reason, prospect, deadline_ms"
        )
    if "prospect" in event and event.get("action") != "push":
        raise EventError("prospect: only a push stages a prospect")
    action = event.get("action")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    dry_run = event.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise EventError(f"dry_run: expected true or false, got {dry_run!r}")
    return action, dry_run or action == "render", str(event.get("reason") or "manual")


def _instance_event(event: Mapping[str, Any]) -> bool:
    """A worker instance launched or terminated (an EventBridge rule)."""
    return event.get("source") == "aws.autoscaling" and event.get("detail-type") in ASG_EVENTS


def _scheduled(event: Mapping[str, Any]) -> bool:
    """The reconcile schedule."""
    source, kind = event.get("source"), event.get("detail-type")
    return source in ("aws.events", "aws.scheduler") or kind == "Scheduled Event"


def _asynchronous(event: Mapping[str, Any]) -> bool:
    """An instance event or the reconcile schedule: invoked asynchronously, retried by Lambda
    when it raises (EventInvokeConfig), never waited for."""
    return _instance_event(event) or _scheduled(event)


def _needs_reload(published: Published, runtime: EdgeRuntime) -> bool:
    if published.status in ("published", "rolled-back", "would-publish", "would-roll-back"):
        return True
    if published.status != "unchanged":
        return False
    last = runtime.fleet_log.state()
    return last is None or last["degraded"] or last["sha256"] != published.sha256


def _reload(
    published: Published, runtime: EdgeRuntime, deadline: Deadline, why: str, *, dry_run: bool
) -> dict[str, Any] | None:
    reloader = runtime.reloader()
    if reloader is None:
        return None
    if dry_run:
        return {"status": "would-reload", "instances": reloader.instances()}
    if published.version_id is None:
        return None
    staged = runtime.fleet_log.staged(published.sha256)  # by a prospect: no stage round
    result = reloader.apply(published.version_id, published.sha256, deadline, staged=staged)
    runtime.fleet_log.record(result, why)
    log = logger.info if not result.degraded else logger.error
    log("fleet reload", extra={"fleet": result.status, "counts": result.counts()})
    return result.to_dict()


def _stage_prospect(
    prospect: Prospect,
    apps: AppsFile,
    states: Mapping[str, AppState],
    served: Published,
    *,
    runtime: EdgeRuntime,
    deadline: Deadline,
) -> dict[str, Any]:
    if prospect.app not in {app.name for app in apps.apps}:
        return {"status": "skipped", "detail": f"no app named {prospect.app!r}"}
    reloader = runtime.reloader()
    if reloader is None:
        return {"status": "skipped", "detail": "no fleet to stage on"}
    snapshot = build_snapshot(runtime.kube, apps, prospect.states(states))
    files = render(snapshot) | {MANIFEST: certificate_manifest(certificate_refs(apps))}
    store = ConfigStore(
        runtime.configs.s3,
        runtime.configs.bucket,
        prospect_key(runtime.configs.key),
        runtime.configs.signer,
    )
    published = store.publish(files, dry_run=False)
    if published.sha256 == served.sha256:
        return {"status": "served", "sha256": published.sha256}
    if published.version_id is None:
        return {"status": "skipped", "detail": "the prospect has no S3 version"}
    staged = reloader.stage(store.key, published.version_id, published.sha256, deadline)
    runtime.fleet_log.record_prospect(published.sha256, staged)
    return {"status": "staged", "sha256": published.sha256, "staged": len(staged)}


@dataclass
class _Publishing:
    """What an action published, with what it adds to the answer and a prospect to stage."""

    published: Published
    extra: dict[str, Any]
    staging: Callable[[Published], dict[str, Any]] | None = None


def _publish(
    action: str,
    prospect: Prospect | None,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    dry_run: bool,
) -> _Publishing:
    if action == "rollback":
        return _Publishing(runtime.configs.rollback(dry_run=dry_run), {})
    if action == "reload":
        sha, version = runtime.configs.current()
        if sha is None or version is None:
            raise PermanentError("nothing is published yet: push first")
        return _Publishing(Published("unchanged", runtime.configs.key, sha, version), {})
    apps = runtime.apps.load()
    states = {app.name: runtime.store.state(app.name) for app in apps.apps}
    snapshot = build_snapshot(runtime.kube, apps, states)
    files = render(snapshot) | {MANIFEST: certificate_manifest(certificate_refs(apps))}
    staging = None
    if prospect is not None and not dry_run:
        staging = partial(
            _stage_prospect, prospect, apps, states, runtime=runtime, deadline=deadline
        )
    extra = {
        "apps": len(snapshot.apps),
        "serving_nodes": sum(1 for n in snapshot.nodes if n.serving),
    }
    return _Publishing(runtime.configs.publish(files, dry_run=dry_run), extra, staging)


def _staged(staging: Callable[[Published], dict[str, Any]], published: Published) -> dict[str, Any]:
    try:
        return staging(published)
    except (ClientError, GreenlightError) as exc:  # only a head start was lost
        logger.warning("prospect not staged", extra={"error": str(exc)})
        return {"status": "failed", "detail": str(exc)[:300]}


def deadline_of(event: Any, context: Any, *, wall: Callable[[], float] = time.time) -> Deadline:
    """The invocation's deadline: its own (the Lambda context's), or the caller's
    ``deadline_ms`` (epoch milliseconds) when that comes sooner."""
    deadline = Deadline.from_context(context)
    raw = event.get("deadline_ms") if isinstance(event, dict) else None
    if raw is None:
        return deadline
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise EventError(
            f"deadline_ms: expected the caller's deadline in epoch milliseconds, got {raw!r}"
        )
    return deadline.until_epoch_ms(raw, wall=wall)


def _act(
    action: str,
    prospect: Prospect | None,
    why: str,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    done = _publish(action, prospect, runtime, deadline, dry_run=dry_run)
    result = done.published.to_dict() | done.extra
    if action != "render" and (action == "reload" or _needs_reload(done.published, runtime)):
        fleet = _reload(done.published, runtime, deadline, why, dry_run=dry_run)
        if fleet is not None:
            result["fleet"] = fleet
    if done.staging is not None:
        result["prospect"] = _staged(done.staging, done.published)
    return result


def _locked(
    action: str,
    prospect: Prospect | None,
    why: str,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    owner: str,
) -> dict[str, Any]:
    """``_act`` under the edge lock, waited for while enough time is left to push."""
    left = deadline.remaining()
    if left < MIN_LOCKED_SECONDS:
        return {
            "status": PushStatus.TOO_LATE.value,
            "error": f"{left:.1f} s left before the caller's deadline; a {action} needs "
            f"{MIN_LOCKED_SECONDS:.0f} s: not started",
        }
    lock = runtime.edge_lock()
    wait = deadline.sooner(left - MIN_LOCKED_SECONDS)
    held = lock.acquire(owner, f"{action}: {why}", wait=wait, hold=deadline)
    if not isinstance(held, Held):
        return {
            "status": PushStatus.BUSY.value,
            "error": f"the edge lock is still held by {held.owner} ({held.why}) after "
            f"{left - deadline.remaining():.1f} s: not started",
        }
    try:
        result = _act(action, prospect, why, runtime, deadline, dry_run=False)
    finally:
        lock.release(owner)
    return result | {"lock": held.to_dict()}


def handle(event: Any, runtime: EdgeRuntime, context: Any = None) -> dict[str, Any]:
    try:
        action, dry_run, why = action_of(event)
        deadline = deadline_of(event, context)
        prospect = Prospect.of(event.get("prospect"))
        dry_run = dry_run or runtime.settings.dry_run
        if dry_run:
            result = _act(action, prospect, why, runtime, deadline, dry_run=True)
        else:
            owner = str(getattr(context, "aws_request_id", "") or uuid.uuid4().hex)
            result = _locked(action, prospect, why, runtime, deadline, owner=owner)
    except PermanentError as exc:
        logger.warning("edge action rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    if result["status"] in (PushStatus.BUSY, PushStatus.TOO_LATE):
        logger.warning("edge action not started", extra={"why": why, "result": result})
        if _asynchronous(event):  # nobody waits for the answer: Lambda's retry brings it back
            raise TemporaryError(f"{why}: {result['error']}")
        return {"action": action, "why": why, **result}
    logger.info(
        "edge action done",
        extra={
            "action": action,
            "why": why,
            "status": result["status"],
            "sha256": result["sha256"],
            "fleet": result.get("fleet", {}).get("status"),
            "lock": result.get("lock"),
        },
    )
    return {"action": action, "why": why, **result}
