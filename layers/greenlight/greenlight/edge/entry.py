"""The haproxy function's logic: which action, then snapshot -> render -> publish.

Actions: ``render`` (a dry run: the diff against what is live), ``push`` (publish when changed),
``rollback`` (the previous published version), ``reload`` (apply the published version to the
fleet again). Worker Auto Scaling Group instance events and the reconcile schedule are pushes.
Every action can be a dry run (``"dry_run": true``).

After a publish or a rollback the fleet is reloaded (``greenlight.edge.fleet``: canary first,
then the rest) and the outcome recorded. A push that finds the config unchanged still reloads
when the last recorded fleet run did not bring every instance to the published version, so the
reconcile schedule heals a degraded fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from ..appconfig import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..deadline import Deadline
from ..errors import EventError, PermanentError
from ..rollout.records import RolloutStore
from ..settings import EdgeFunctionSettings
from .fleet import FleetLog, FleetReloader
from .publish import ConfigStore, Published
from .render import render
from .state import MANIFEST, build_snapshot, certificate_manifest, certificate_refs

logger = Logger(child=True)
ACTIONS = ("render", "push", "rollback", "reload")
ASG_EVENTS = ("EC2 Instance Launch Successful", "EC2 Instance Terminate Successful")


@dataclass
class EdgeRuntime:
    settings: EdgeFunctionSettings
    clients: Clients
    apps: AppsSource
    store: RolloutStore
    configs: ConfigStore
    fleet_log: FleetLog
    fleet_ssm: Any = None  # SSM client for the fleet reload; the local sandbox brings its own
    _kube: KubeRest | None = None

    @classmethod
    def build(cls, settings: EdgeFunctionSettings, clients: Clients | None = None) -> EdgeRuntime:
        clients = clients or Clients()
        return cls(
            settings,
            clients,
            AppsSource(clients.lazy("s3"), settings.config_bucket, settings.config_key),
            RolloutStore(clients.lazy("dynamodb"), settings.table),
            ConfigStore(clients.lazy("s3"), settings.config_bucket, settings.bundle_key),
            FleetLog(clients.lazy("dynamodb"), settings.table),
        )

    def reloader(self) -> FleetReloader | None:
        fleet = self.settings.fleet
        if fleet is None:
            return None
        ssm = self.fleet_ssm or self.clients.lazy("ssm")
        return FleetReloader(ssm, self.clients.lazy("ec2"), fleet)

    def kube(self) -> KubeRest:
        if self._kube is None:
            self._kube = KubeRest(api_client(self.settings.cluster, session=self.clients.session))
        return self._kube


def action_of(event: Any) -> tuple[str, bool, str]:
    """(action, dry_run, why) for an invocation event; EventError when it is not one."""
    if not isinstance(event, dict):
        raise EventError("event: expected a JSON object")
    source, kind = event.get("source"), event.get("detail-type")
    if source == "aws.autoscaling" and kind in ASG_EVENTS:
        detail = event.get("detail") or {}
        return "push", False, f"{kind}: {detail.get('EC2InstanceId', '?')}"
    if source in ("aws.events", "aws.scheduler") or kind == "Scheduled Event":
        return "push", False, "reconcile schedule"
    unknown = set(event) - {"action", "dry_run", "reason"}
    if unknown:
        raise EventError(f"unknown field(s) {sorted(unknown)}; allowed: action, dry_run, reason")
    action = event.get("action")
    if action not in ACTIONS:
        raise EventError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    dry_run = event.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise EventError(f"dry_run: expected true or false, got {dry_run!r}")
    return action, dry_run or action == "render", str(event.get("reason") or "manual")


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
    result = reloader.apply(published.version_id, published.sha256, deadline)
    runtime.fleet_log.record(result, why)
    log = logger.info if not result.degraded else logger.error
    log("fleet reload", extra={"fleet": result.status, "counts": result.counts()})
    return result.to_dict()


def handle(event: Any, runtime: EdgeRuntime, context: Any = None) -> dict[str, Any]:
    deadline = Deadline.from_context(context) if context is not None else Deadline.within(60)
    try:
        action, dry_run, why = action_of(event)
        dry_run = dry_run or runtime.settings.dry_run
        extra: dict[str, Any] = {}
        if action == "rollback":
            published = runtime.configs.rollback(dry_run=dry_run)
        elif action == "reload":
            sha, version = runtime.configs.current()
            if sha is None or version is None:
                raise PermanentError("nothing is published yet: push first")
            published = Published("unchanged", runtime.configs.key, sha, version)
        else:
            apps = runtime.apps.load()
            states = {app.name: runtime.store.state(app.name) for app in apps.apps}
            snapshot = build_snapshot(runtime.kube(), apps, states)
            files = render(snapshot) | {MANIFEST: certificate_manifest(certificate_refs(apps))}
            published = runtime.configs.publish(files, dry_run=dry_run)
            extra = {
                "apps": len(snapshot.apps),
                "serving_nodes": sum(1 for n in snapshot.nodes if n.serving),
            }
        result = published.to_dict() | extra
        if action != "render" and (action == "reload" or _needs_reload(published, runtime)):
            fleet = _reload(published, runtime, deadline, why, dry_run=dry_run)
            if fleet is not None:
                result["fleet"] = fleet
    except PermanentError as exc:
        logger.warning("edge action rejected", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    logger.info(
        "edge action done",
        extra={
            "action": action,
            "why": why,
            "status": result["status"],
            "sha256": result["sha256"],
            "fleet": result.get("fleet", {}).get("status"),
        },
    )
    return {"action": action, "why": why, **result}
