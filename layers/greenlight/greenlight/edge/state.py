"""The cluster snapshot, built from what is true now: the cluster, the table, the apps file.

Nodes and each colour's Service come from the Kubernetes API, the live colour of each app from
its rollout state (the one source of truth for what is live), hosts, health checks and
certificates from the apps file. Nothing else goes in, so the config can always be rebuilt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..cluster.rest import EXCLUDE_FROM_LOAD_BALANCERS, KubeRest, services
from ..colour import Colour
from ..errors import ConfigError
from ..rollout.deploy import read
from ..rollout.records import AppState, Phase
from ..rollout.workload import slot_name
from .snapshot import Snapshot

if TYPE_CHECKING:
    from ..appconfig import AppsFile

WATCHED_PHASES = (Phase.PROMOTING.value, Phase.WATCHING.value)
# From the candidate's Service being written until the gate's verdict.
GATED_PHASES = (Phase.DEPLOYING.value, Phase.GATING.value, Phase.AWAITING_APPROVAL.value)


def certificate_name(ref: str) -> str:
    """A stable file-system-safe name for a certificate reference."""
    return "cert-" + hashlib.sha256(ref.encode()).hexdigest()[:12]


def _node(item: Mapping[str, Any]) -> dict[str, Any]:
    status = item.get("status", {})
    address = next(
        (a["address"] for a in status.get("addresses", []) if a.get("type") == "InternalIP"), None
    )
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )
    labels = item["metadata"].get("labels") or {}
    return {
        "name": item["metadata"]["name"],
        "address": address,
        "ready": ready,
        # Cordoned, or taken out of load balancers (the night shrink does it before a drain).
        "schedulable": not item.get("spec", {}).get("unschedulable", False)
        and EXCLUDE_FROM_LOAD_BALANCERS not in labels,
    }


def _node_port(service: Mapping[str, Any] | None) -> int | None:
    if service is None or service.get("spec", {}).get("type") != "NodePort":
        return None
    ports = service["spec"].get("ports") or []
    port = ports[0].get("nodePort") if ports else None
    return int(port) if port else None


def build_snapshot(kube: KubeRest, apps: AppsFile, states: Mapping[str, AppState]) -> Snapshot:
    """The snapshot of ``apps`` as the cluster and the rollout records have them now."""
    if apps.edge is None:
        raise ConfigError("the apps file has no 'edge' section (docs/edge.md)")
    edge = apps.edge
    query = {"labelSelector": edge.node_selector} if edge.node_selector else {}
    nodes = [_node(item) for item in kube.get("/api/v1/nodes", **query).get("items", [])]
    app_entries: list[dict[str, Any]] = []
    certs: dict[str, dict[str, Any]] = {}
    default_name = certificate_name(edge.default_certificate)
    certs[default_name] = {"name": default_name, "file": f"{default_name}.pem", "hosts": []}
    for app in apps.apps:
        node_ports = {}
        for colour in (Colour.BLUE, Colour.GREEN):
            port = _node_port(read(kube, services(app.namespace, slot_name(app, colour))))
            if port is not None:
                node_ports[colour.value] = port
        if not node_ports:
            continue  # never deployed: nothing to route to yet
        state = states.get(app.name) or AppState(app=app.name)
        entry: dict[str, Any] = {
            "name": app.name,
            "live_colour": state.live_colour.value,
            "hosts": {"live": app.hosts.live, "preview": app.hosts.preview},
            "health": {
                "path": app.health.path,
                "expect_status": app.health.expect_status,
                "interval_seconds": app.health.interval_seconds,
            },
            "node_ports": node_ports,
            "backup_colour": state.backup_colour.value if state.backup_colour else None,
            # While a promotion is watched the preview host reaches the new live colour alone.
            "preview_colour": (state.live_colour.value if state.phase in WATCHED_PHASES else None),
            # While the candidate is gated, HAProxy checks its backend briskly (edge/checks.py).
            "gating": state.phase in GATED_PHASES,
        }
        if app.tls is not None:
            name = certificate_name(app.tls.certificate)
            cert = certs.setdefault(name, {"name": name, "file": f"{name}.pem", "hosts": []})
            cert["hosts"].extend([*app.hosts.live, app.hosts.preview])
            entry["certificate"] = name
        app_entries.append(entry)
    return Snapshot.model_validate(
        {
            "version": 1,
            "edge": {
                "http_port": edge.http_port,
                "https_port": edge.https_port,
                "servers_per_backend": edge.servers_per_backend,
                "maxconn": edge.maxconn,
                "stats": {
                    "port": edge.stats_port,
                    "user": edge.stats_user,
                    "password_hash": edge.stats_password_hash,
                },
            },
            "nodes": [n for n in nodes if n["address"]],
            "apps": app_entries,
            "certificates": [
                certs.pop(default_name),
                *sorted(certs.values(), key=lambda c: c["name"]),
            ],
        }
    )


def certificate_refs(apps: AppsFile) -> dict[str, str]:
    """File name on the instance -> certificate reference (S3 URL or secret ARN)."""
    refs = {}
    if apps.edge is not None:
        refs[f"{certificate_name(apps.edge.default_certificate)}.pem"] = (
            apps.edge.default_certificate
        )
    for app in apps.apps:
        if app.tls is not None:
            refs[f"{certificate_name(app.tls.certificate)}.pem"] = app.tls.certificate
    return refs


MANIFEST = "certificates.tsv"


def certificate_manifest(refs: dict[str, str]) -> bytes:
    """``certificates.tsv`` for the bundle from ``certificate_refs``: file name TAB reference,
    one per line. The instance fetches each file from its reference; the private keys never
    travel in the bundle."""
    return "".join(f"{name}\t{ref}\n" for name, ref in sorted(refs.items())).encode()
