"""The haproxy function's logic: which action, then snapshot -> render -> publish.

Actions: ``render`` (a dry run: the diff against what is live), ``push`` (publish when changed),
``rollback`` (the previous published version). Worker Auto Scaling Group instance events and
the reconcile schedule are pushes. Every action can be a dry run (``"dry_run": true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from ..appconfig import AppsSource
from ..aws import Clients
from ..cluster.access import api_client
from ..cluster.rest import KubeRest
from ..errors import EventError, PermanentError
from ..rollout.records import RolloutStore
from ..settings import EdgeFunctionSettings
from .publish import ConfigStore
from .render import render
from .state import MANIFEST, build_snapshot, certificate_manifest

logger = Logger(child=True)
ACTIONS = ("render", "push", "rollback")
ASG_EVENTS = ("EC2 Instance Launch Successful", "EC2 Instance Terminate Successful")


@dataclass
class EdgeRuntime:
    settings: EdgeFunctionSettings
    clients: Clients
    apps: AppsSource
    store: RolloutStore
    configs: ConfigStore
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
        )

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


def handle(event: Any, runtime: EdgeRuntime) -> dict[str, Any]:
    try:
        action, dry_run, why = action_of(event)
        dry_run = dry_run or runtime.settings.dry_run
        if action == "rollback":
            result = runtime.configs.rollback(dry_run=dry_run).to_dict()
        else:
            apps = runtime.apps.load()
            states = {app.name: runtime.store.state(app.name) for app in apps.apps}
            snapshot = build_snapshot(runtime.kube(), apps, states)
            files = render(snapshot) | {MANIFEST: certificate_manifest(apps)}
            published = runtime.configs.publish(files, dry_run=dry_run)
            result = published.to_dict() | {
                "apps": len(snapshot.apps),
                "serving_nodes": sum(1 for n in snapshot.nodes if n.serving),
            }
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
        },
    )
    return {"action": action, "why": why, **result}
