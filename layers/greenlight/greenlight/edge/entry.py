"""The haproxy function's logic: which action, then snapshot -> render -> publish.

Actions: ``render`` (a dry run: the diff against what is live), ``push`` (publish when changed),
``rollback`` (a chosen release, by default the previous one: it pins the edge until ``unpin``;
while pinned every push is refused, ``pinning.py``), ``reload`` (apply the published version to
the fleet again), ``releases`` (the published releases, read-only), ``unpin``. Worker Auto
Scaling Group instance events and the reconcile schedule are pushes.
Every action can be a dry run (``"dry_run": true``).

A push may name a ``prospect`` (``{"app": ..., "colour": ...}``): the release that promoting that
colour would publish. After the push it is rendered, published beside the bundle
(``prospect.tar.gz``, never read by an instance that boots) and staged on every instance without
being switched to, so that when the promotion comes its push finds the release fetched and
checked and is a swap and a reload. A prospect that went stale (a node, another app) only
costs the promotion its staging.

Every fleet run is the document's ``Mode=switch``: each instance switches a change of hosts.map
alone through HAProxy's runtime API, and reloads for anything else. A push whose files differ
from the served ones (the live bundle's, kept per process by SHA-256) in hosts.map alone
(``delta.structural_changes``) runs on every instance at once; any other, canary first.

A push may name ``promote`` (``{"app": ..., "colour": ...}``, the gate's promotion): when it
would publish, a ``check`` round first asks every instance whether ``<app>-<colour>``'s servers
are all UP, waiting at most ``up_wait_seconds`` (bounded by the deadline). Not UP on any
instance: nothing is published, nothing switched; the answer's status is ``not-published`` and
the fleet's ``not-up``, with each instance's reason (``fleet.checked``).
Any push that would publish also checks, in the same round, the backends its hosts.map newly
sends live hosts to (``delta.newly_live`` against the served map; preview hosts excepted, and a
backend the served config does not declare, which nothing can check yet: ``unchecked``), with
the same outcome when they are not UP (``fleet.not_up``: per instance, the backends it did not
see UP). A push may name ``restore`` (``{"app": ..., "colour": ...}``, the gate's revert; not
with ``promote``): that app's move back to that colour is not checked (the answer's
``restoring``), other moves are. The served bundle not readable: a TemporaryError, nothing
published. A ``rollback`` checks its release's the same way before it pins (``force``: it does
not, and reads nothing first).

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
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
from ..store.pin import EdgePin
from ..store.rollouts import AppState, RolloutStore
from . import counters, pinning
from .delta import HOSTS_MAP, LiveMoves, declared_backends, newly_live, structural_changes
from .fleet import CheckRound, FleetReloader, FleetResult
from .publish import ConfigStore, Head, Published, Release, bundle
from .publish import sha256 as bundle_sha256
from .render import backend_name, live_backend_name, render
from .signing import KmsSigner
from .state import (
    MANIFEST,
    build_snapshot,
    certificate_manifest,
    certificate_refs,
    snapshot_of,
    start_reading_cluster,
)

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

    from ..appconfig import AppsFile
    from .snapshot import Snapshot

logger = Logger(child=True)
ACTIONS = ("render", "push", "rollback", "reload", "releases", "unpin", counters.ACTION)
NOT_PUBLISHED = "not-published"  # a promotion whose candidate was not UP everywhere
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
    def of(cls, raw: Any, name: str = "prospect") -> Prospect | None:
        """The event's ``name`` field (``prospect`` or ``promote``), checked."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) != {"app", "colour"}:
            raise EventError(f'{name}: expected {{"app": NAME, "colour": "blue" or "green"}}')
        try:
            return cls(str(raw["app"]), Colour(raw["colour"]))
        except ValueError:
            raise EventError(
                f"{name}.colour: expected blue or green, got {raw['colour']!r}"
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
    pin: EdgePin | None = None  # the edge pin; None: in the rollouts table
    # The served bundle's files by SHA-256 (the last one seen: published or read back).
    served: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def served_files(self, sha: str | None, version_id: str | None) -> dict[str, bytes] | None:
        """The files of the live bundle ``sha`` (None: nothing is published yet), read back
        from S3 only when this process has not seen them. Not readable (S3, KMS, a bundle that
        does not verify): a TemporaryError, so that nothing is published unchecked."""
        if sha is None:
            return None
        if sha not in self.served:
            try:
                files = self.configs.files(version_id)
            except (ClientError, GreenlightError) as exc:
                logger.warning("served bundle not read", extra={"error": str(exc)[:300]})
                raise TemporaryError(
                    f"the served release could not be read ({str(exc)[:200]}): not published,"
                    " retried"
                ) from exc
            self.served = {sha: files}
        return self.served[sha]

    def remember(self, published: Published, files: dict[str, bytes]) -> None:
        if published.status in ("published", "unchanged"):
            self.served = {published.sha256: files}

    def edge_lock(self) -> EdgeLock:
        return self.lock or EdgeLock(self.clients.dynamodb, self.settings.table)

    def edge_pin(self) -> EdgePin:
        return self.pin or EdgePin(self.clients.dynamodb, self.settings.table)

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
    known = {"action", "dry_run", "reason", "prospect", "promote", "restore", "deadline_ms"}
    unknown = set(event) - known - pinning.FIELDS - counters.FIELDS
    if unknown:
        raise EventError(
            f"unknown field(s) {sorted(unknown)}; "
            "allowed: action, dry_run, reason, prospect, promote, restore, deadline_ms, release,"
            " force,"
            " limit, after, app, colours"
        )
    counters.check_fields(event)
    _push_fields(event)
    action = event.get("action")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    dry_run = event.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise EventError(f"dry_run: expected true or false, got {dry_run!r}")
    read_only = action in ("render", "releases", counters.ACTION)
    return action, dry_run or read_only, str(event.get("reason") or "manual")


def _push_fields(event: Mapping[str, Any]) -> None:
    """The fields only a push takes; ``promote`` and ``restore`` not both."""
    for name, does in (
        ("prospect", "stages a prospect"),
        ("promote", "promotes"),
        ("restore", "restores"),
    ):
        if name in event and event.get("action") != "push":
            raise EventError(f"{name}: only a push {does}")
    if "restore" in event and "promote" in event:
        raise EventError("restore: a push either promotes or restores, not both (promote is set)")


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


@dataclass
class _Plan:
    """How a push's fleet run goes: all at once (``map_only``) or canary first, and for a
    promotion its check round (``not_up``: it failed, nothing is published)."""

    map_only: bool = False
    backends: tuple[str, ...] = ()
    checked: CheckRound | None = None
    instances: list[str] | None = None  # as the check round found them
    not_up: FleetResult | None = None
    unchecked: tuple[str, ...] = ()  # newly live, not in the running config: not checkable
    restoring: tuple[str, ...] = ()  # newly live, a ``restore``'s app going back: not checked


# A promotion's check round runs while its snapshot is read and rendered (it reads only the
# instances' running HAProxy): one at a time per process.
_CHECKING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-check")


@dataclass(frozen=True)
class _Checking:
    """A check round started ahead (a promotion's candidate): its backends, its outcome."""

    backends: tuple[str, ...]
    round: Future[CheckRound]


def _start_check(
    promote: Prospect | None, runtime: EdgeRuntime, deadline: Deadline
) -> _Checking | None:
    """The promotion's check round, started now: read-only, so it may run before the render is
    known to change anything; :func:`_plan` waits for it only when the push would publish."""
    reloader = runtime.reloader()
    if promote is None or reloader is None:
        return None
    backends = (backend_name(promote.app, promote.colour.value),)
    return _Checking(backends, _CHECKING.submit(reloader.check, backends, deadline))


def route_facts(apps: AppsFile) -> tuple[frozenset[str], dict[str, str]]:
    """What :func:`delta.newly_live` needs from the apps file: the preview hosts (never
    checked: a preview reaches a candidate before it is UP) and each app's live backends by
    the colour backend their servers track."""
    preview = frozenset(app.hosts.preview for app in apps.apps)
    tracked = {
        live_backend_name(app.name, colour.value): backend_name(app.name, colour.value)
        for app in apps.apps
        for colour in Colour
    }
    return preview, tracked


def live_moves(
    served: Mapping[str, bytes], files: Mapping[str, bytes], apps: AppsFile
) -> LiveMoves:
    """The backends ``files``' hosts.map newly sends live hosts to, from the served release's
    (:func:`delta.newly_live`). A served map that cannot be read (not one we rendered): what
    moved cannot be told, so every backend the new map sends live hosts to is one."""
    preview, tracked = route_facts(apps)
    found = partial(
        newly_live,
        new_map=files.get(HOSTS_MAP, b""),
        preview_hosts=preview,
        tracked=tracked,
        running=declared_backends(served.get("haproxy.cfg", b"")),
    )
    try:
        return found(served.get(HOSTS_MAP, b""))
    except ValueError as exc:
        if str(exc).startswith("new "):  # ours: a render that is wrong
            raise PermanentError(f"the rendered {exc}: not published") from None
        logger.warning("served map not read: every live backend checked", extra={"error": str(exc)})
        return found(b"")


def restored(moves: LiveMoves, restore: Prospect | None) -> tuple[LiveMoves, tuple[str, ...]]:
    """``moves`` without a ``restore``'s (the revert of ``<app>`` to ``<colour>``, the colour
    that served before, away from a failing one: the remedy is not held back by the UP check),
    and the moves taken out. Other apps' moves stay."""
    if restore is None:
        return moves, ()
    going = backend_name(restore.app, restore.colour.value)
    kept = LiveMoves(
        tuple(b for b in moves.check if b != going),
        tuple(b for b in moves.unknown if b != going),
    )
    return kept, tuple(sorted({b for b in moves.check + moves.unknown if b == going}))


def _plan(
    files: dict[str, bytes],
    checking: _Checking | None,
    runtime: EdgeRuntime,
    seconds: dict[str, float],
    *,
    apps: AppsFile,
    deadline: Deadline,
    head: Head,
    restore: Prospect | None = None,
) -> _Plan:
    """Compare ``files`` with the served bundle's. When they would be published: the check
    round of the backends that live hosts newly go to (``live_moves``; a ``restore``'s app's
    not: :func:`restored`) with a promotion's candidate (``checking``, started early), and its
    outcome. Nothing published yet: nothing moves. The served bundle not readable: a
    TemporaryError (``served_files``), nothing published."""
    reloader = runtime.reloader()
    if reloader is None:
        return _Plan()
    started = time.monotonic()
    served = runtime.served_files(head.sha256, head.version_id)
    seconds["served"] = _since(started)
    if served == files:  # unchanged: no switch to check
        return _Plan()
    plan = _Plan(map_only=served is not None and not structural_changes(served, files))
    found = live_moves(served, files, apps) if served is not None else LiveMoves()
    moves, plan.restoring = restored(found, restore)
    plan.unchecked = moves.unknown
    covered = checking.backends if checking is not None else ()
    extra = [b for b in moves.check if b not in covered]
    rounds = []
    if extra:  # known only from the render: checked now, beside the one started ahead
        seconds["check_started"] = _since(started)
        rounds.append(reloader.check(extra, deadline))
    if checking is not None:
        rounds.insert(0, checking.round.result())
    if not rounds:
        return plan
    plan.checked = CheckRound.merge(rounds)
    plan.backends = tuple(plan.checked.backends)
    plan.instances = sorted(plan.checked.instances)
    seconds["check_wait"] = _since(started) - seconds["served"]
    seconds["check"] = plan.checked.seconds
    if not plan.checked.up:
        plan.not_up = FleetResult.not_up(bundle_sha256(bundle(files)), plan.checked)
    return plan


def _rollback_guard(
    runtime: EdgeRuntime,
    deadline: Deadline,
    plan: _Plan,
    target: Release,
    *,
    force: bool,
    dry_run: bool,
) -> tuple[dict[str, Any], bool]:
    """Before a rollback pins: the backends ``target``'s hosts.map newly sends live hosts to
    (:func:`live_moves` against the served release) are checked UP on every instance, as a
    push's are; the round and its outcome go into ``plan``. (What it says, whether to go on.)
    A backend the running config does not declare cannot be checked: refused. ``force``: no
    check and nothing read first (the apps file, the served and target bundles: a rollback
    forced is the way out when they are broken), the rollback goes on; a dry run says what it
    would check."""
    if force:
        return {"status": "would-skip: force" if dry_run else "skipped: force"}, True
    try:
        apps = runtime.apps.load()
    except (ClientError, GreenlightError) as exc:
        raise PermanentError(
            f"the apps file could not be read ({str(exc)[:300]}), so the release's live"
            " backends cannot be checked UP before the rollback: force: true (--force) pins"
            " anyway"
        ) from None
    served = runtime.served_files(*runtime.configs.current()) or {}
    moves = live_moves(served, runtime.configs.files(target.version_id), apps)
    said: dict[str, Any] = {"backends": list(moves.check), "unchecked": list(moves.unknown)}
    reloader = runtime.reloader()
    if not (moves.check or moves.unknown) or reloader is None:
        return said | {"status": "nothing to check"}, True
    if moves.unknown:
        names = ", ".join(moves.unknown)
        detail = (
            f"live hosts would go to {names}, which the running config does not have: its"
            " servers cannot be checked UP before the rollback (force: true to pin anyway)"
        )
        return said | {"status": "refused", "detail": detail}, False
    if dry_run:
        return said | {"status": "would-check"}, True
    checked = reloader.check(moves.check, deadline)
    plan.checked, plan.backends = checked, tuple(checked.backends)
    plan.instances = sorted(checked.instances)
    if checked.up:
        return said | {"status": "up", "seconds": checked.seconds}, True
    plan.not_up = FleetResult.not_up(target.sha256, checked)
    why = "; ".join(f"{i}: {reason}" for i, reason in checked.not_up().items())
    return said | {
        "status": "not-up",
        "detail": f"not UP (force: true to pin anyway): {why}",
    }, False


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _reload(
    published: Published,
    runtime: EdgeRuntime,
    deadline: Deadline,
    why: str,
    *,
    dry_run: bool,
    plan: _Plan | None = None,
) -> dict[str, Any] | None:
    reloader = runtime.reloader()
    if reloader is None:
        return None
    if dry_run:
        return {"status": "would-reload", "instances": reloader.instances()}
    if published.version_id is None:
        return None
    plan = plan or _Plan()
    result = reloader.apply(
        published.version_id,
        published.sha256,
        deadline,
        # by a prospect: no stage round (read only if there is one: a switch has none)
        staged=partial(runtime.fleet_log.staged, published.sha256),
        map_only=plan.map_only,
        backends=plan.backends,
        instances=plan.instances,
        checked=plan.checked,
    )
    runtime.fleet_log.record(result, why)
    log = logger.info if not result.degraded else logger.error
    log(
        "fleet reload",
        extra={
            "fleet": result.status,
            "waves": result.waves,
            "counts": result.counts(),
            "seconds": result.seconds,
        },
    )
    if plan.map_only and reloader.settings.runtime_switch and result.hows()["reloaded"]:
        reloaded = {i: o.detail for i, o in result.instances.items() if o.how == "reloaded"}
        logger.warning("predicted a switch, reloaded instead", extra={"instances": reloaded})
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
    plan: _Plan | None = None


def _live(runtime: EdgeRuntime) -> Published:
    """What is published now, as a reload applies it again."""
    sha, version = runtime.configs.current()
    if sha is None or version is None:
        raise PermanentError("nothing is published yet: push first")
    return Published("unchanged", runtime.configs.key, sha, version)


def _pin_rollback(
    runtime: EdgeRuntime,
    deadline: Deadline,
    options: Mapping[str, Any],
    *,
    why: str,
    who: str,
    dry_run: bool,
) -> _Publishing:
    """A rollback: the chosen release pinned (pinning.py), once its live backends are UP."""
    plan = _Plan()
    guard = partial(_rollback_guard, runtime, deadline, plan, force=bool(options.get("force")))
    published, pinned = pinning.rollback(
        runtime.configs,
        runtime.edge_pin(),
        options,
        why=why,
        who=who,
        dry_run=dry_run,
        guard=partial(guard, dry_run=dry_run),
    )
    return _Publishing(published, pinned, plan=plan)


def _snapshot(runtime: EdgeRuntime, apps: AppsFile) -> tuple[Snapshot, dict[str, AppState]]:
    """The snapshot as the cluster and the table have it now (the cluster's reads side by
    side, beside the apps' states in one read), and those states."""
    cluster = start_reading_cluster(runtime.kube, apps)
    try:
        states = runtime.store.states([app.name for app in apps.apps])
    except BaseException:
        cluster.cancel()
        raise
    return snapshot_of(cluster.result(), apps, states), states


def _publish(
    action: str,
    prospect: Prospect | None,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    dry_run: bool,
    promote: Prospect | None = None,
    restore: Prospect | None = None,
    why: str = "",
    options: Mapping[str, Any] | None = None,
    who: str = "",
) -> _Publishing:
    if action == "rollback":  # pins the edge to the release (pinning.py), once checked UP
        return _pin_rollback(runtime, deadline, options or {}, why=why, who=who, dry_run=dry_run)
    if action == "reload":
        return _Publishing(_live(runtime), {})
    started = time.monotonic()
    checking = None if dry_run else _start_check(promote, runtime, deadline)
    apps = runtime.apps.load()
    for name, named in (("promote", promote), ("restore", restore)):
        if named is not None and named.app not in {app.name for app in apps.apps}:
            raise PermanentError(f"{name}.app: no app named {named.app!r}")
    snapshot, states = _snapshot(runtime, apps)
    seconds = {"snapshot": _since(started)}
    files = render(snapshot) | {MANIFEST: certificate_manifest(certificate_refs(apps))}
    seconds["render"] = _since(started) - seconds["snapshot"]
    staging = None
    if prospect is not None and not dry_run:
        staging = partial(
            _stage_prospect, prospect, apps, states, runtime=runtime, deadline=deadline
        )
    extra = {
        "apps": len(snapshot.apps),
        "serving_nodes": sum(1 for n in snapshot.nodes if n.serving),
        "seconds": seconds,
    }
    if dry_run:
        return _Publishing(runtime.configs.publish(files, dry_run=dry_run), extra, staging)
    # The live bundle, read once: the edge lock keeps anyone else from publishing meanwhile.
    head = runtime.configs.head()
    plan = _plan(
        files, checking, runtime, seconds, apps=apps, deadline=deadline, head=head, restore=restore
    )
    if plan.not_up is not None:  # nothing published
        held = Published(NOT_PUBLISHED, runtime.configs.key, plan.not_up.sha256, head.version_id)
        return _Publishing(held, extra, plan=plan)
    started = time.monotonic()
    published = runtime.configs.publish(files, dry_run=False, why=why, head=head)
    seconds["publish"] = _since(started)
    runtime.remember(published, files)
    return _Publishing(published, extra, staging, plan)


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
    promote: Prospect | None = None,
    restore: Prospect | None = None,
    options: Mapping[str, Any] | None = None,
    who: str = "",
) -> dict[str, Any]:
    done = _publish(
        action,
        prospect,
        runtime,
        deadline,
        dry_run=dry_run,
        promote=promote,
        restore=restore,
        why=why,
        options=options,
        who=who,
    )
    result = done.published.to_dict() | done.extra
    if restore is not None and done.plan is not None:  # a revert: the app's moves not checked
        result["restoring"] = {
            "app": restore.app,
            "colour": restore.colour.value,
            "unchecked": list(done.plan.restoring),
        }
    if done.plan is not None and done.plan.not_up is not None:
        runtime.fleet_log.record(done.plan.not_up, why)  # a check item; the state stays
        logger.warning("not UP: nothing published", extra={"instances": done.plan.not_up.checked})
        return result | {"fleet": done.plan.not_up.to_dict()}
    if done.plan is not None and done.plan.unchecked:  # new backends: their servers come with it
        result["unchecked"] = list(done.plan.unchecked)
    if action != "render" and (action == "reload" or _needs_reload(done.published, runtime)):
        started = time.monotonic()
        fleet = _reload(done.published, runtime, deadline, why, dry_run=dry_run, plan=done.plan)
        if fleet is not None:
            result["fleet"] = fleet
            result.get("seconds", {})["fleet"] = _since(started)
    if done.staging is not None:
        result["prospect"] = _staged(done.staging, done.published)
    return result


def _counters(asked: Mapping[str, Any], runtime: EdgeRuntime, deadline: Deadline) -> dict[str, Any]:
    """The counters action (``counters.py``): HAProxy's counters from every instance."""
    names = {app.name for app in runtime.apps.load().apps}
    reloader = runtime.reloader()
    return counters.answer(asked, names, runtime.settings.fleet, reloader, deadline)


def _guarded(
    action: str,
    prospect: Prospect | None,
    why: str,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    dry_run: bool,
    promote: Prospect | None = None,
    restore: Prospect | None = None,
    options: Mapping[str, Any] | None = None,
    who: str = "",
) -> dict[str, Any]:
    """``_act``, unless the edge pin refuses it (a push, before anything is rendered); and the
    pin's own actions (``pinning.py``)."""
    if action == counters.ACTION:  # read-only (a dry run): no lock, no pin
        return _counters(options or {}, runtime, deadline)
    pins = runtime.edge_pin()
    if action == "releases":
        return pinning.releases(runtime.configs, pins, options or {})
    if action == "unpin":  # the pin removed, then the usual push
        push = partial(_act, "push", None, why, runtime, deadline, dry_run=dry_run)
        return pinning.unpin(pins, push, dry_run=dry_run)
    pin = pins.get()
    live = runtime.configs.current()[0] if pin is not None and action == "reload" else None
    refused = pinning.refusal(action, pin, live)
    if refused is not None:
        return refused
    result = _act(
        action,
        prospect,
        why,
        runtime,
        deadline,
        dry_run=dry_run,
        promote=promote,
        restore=restore,
        options=options,
        who=who,
    )
    if pin is not None and action != "rollback":
        result["pin"] = pin.to_dict()  # a render or a reload while pinned
    return result


def _locked(
    action: str,
    prospect: Prospect | None,
    why: str,
    runtime: EdgeRuntime,
    deadline: Deadline,
    *,
    owner: str,
    promote: Prospect | None = None,
    restore: Prospect | None = None,
    options: Mapping[str, Any] | None = None,
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
        result = _guarded(
            action,
            prospect,
            why,
            runtime,
            deadline,
            dry_run=False,
            promote=promote,
            restore=restore,
            options=options,
            who=owner,
        )
    finally:
        lock.release(owner)
    return result | {"lock": held.to_dict()}


def handle(event: Any, runtime: EdgeRuntime, context: Any = None) -> dict[str, Any]:
    try:
        action, dry_run, why = action_of(event)
        deadline = deadline_of(event, context)
        prospect = Prospect.of(event.get("prospect"))
        promote = Prospect.of(event.get("promote"), "promote")
        restore = Prospect.of(event.get("restore"), "restore")
        options = pinning.options_of(event, action) | counters.options_of(event)
        dry_run = dry_run or runtime.settings.dry_run
        if dry_run:
            result = _guarded(
                action,
                prospect,
                why,
                runtime,
                deadline,
                dry_run=True,
                promote=promote,
                restore=restore,
                options=options,
            )
        else:
            owner = str(getattr(context, "aws_request_id", "") or uuid.uuid4().hex)
            result = _locked(
                action,
                prospect,
                why,
                runtime,
                deadline,
                owner=owner,
                promote=promote,
                restore=restore,
                options=options,
            )
    except PermanentError as exc:
        logger.warning("edge action rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    if result["status"] in (PushStatus.BUSY, PushStatus.TOO_LATE):
        logger.warning("edge action not started", extra={"why": why, "result": result})
        if _asynchronous(event):  # nobody waits for the answer: Lambda's retry brings it back
            raise TemporaryError(f"{why}: {result['error']}")
        return {"action": action, "why": why, **result}
    _said_done(action, why, result)
    return {"action": action, "why": why, **result}


def _said_done(action: str, why: str, result: Mapping[str, Any]) -> None:
    logger.info(
        "edge action done",
        extra={
            "action": action,
            "why": why,
            "status": result["status"],
            "sha256": result.get("sha256"),
            "fleet": (result.get("fleet") or {}).get("status"),
            "lock": result.get("lock"),
        },
    )
