"""The cluster snapshot, built from what is true now: the cluster, the table, the apps file.

Nodes and each colour's Service come from the Kubernetes API, the live colour of each app from
its rollout state (the one source of truth for what is live), hosts, health checks and
certificates from the apps file. Nothing else goes in, so the config can always be rebuilt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..cluster.names import EXCLUDE_FROM_LOAD_BALANCERS, nodes, slot_name
from ..cluster.names import services as services_path
from ..cluster.resources import is_ready
from ..cluster.rest import KubeRest
from ..colour import Colour
from ..errors import ConfigError
from ..lifecycle import PENDING, WATCHED, Phase
from ..store.rollouts import AppState
from .snapshot import Snapshot

if TYPE_CHECKING:
    from ..appconfig import App, AppsFile, EdgeSettings
    from ..cluster.bodies import Node, Service

# The newest rollout's phases in which its candidate (the preview colour) is checked briskly.
BRISK: frozenset[Phase] = PENDING | WATCHED


def certificate_name(ref: str) -> str:
    """A stable file-system-safe name for a certificate reference."""
    return "cert-" + hashlib.sha256(ref.encode()).hexdigest()[:12]


def _node(item: Node) -> dict[str, Any]:
    status = item.get("status") or {}
    addresses = status.get("addresses") or []
    address = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    labels = item["metadata"].get("labels") or {}
    return {
        "name": item["metadata"]["name"],
        "address": address,
        "ready": is_ready(item),
        # Cordoned, or taken out of load balancers (the night shrink does it before a drain).
        "schedulable": not (item.get("spec") or {}).get("unschedulable", False)
        and EXCLUDE_FROM_LOAD_BALANCERS not in labels,
    }


def _node_port(service: Service | None) -> int | None:
    if service is None or (service.get("spec") or {}).get("type") != "NodePort":
        return None
    ports = service["spec"].get("ports") or []
    port = ports[0].get("nodePort") if ports else None
    return int(port) if port else None


class ClusterView(NamedTuple):
    """What the snapshot takes from the cluster: the nodes, and each app's colours' NodePorts
    (for the colours whose Service exists; an app with none is left out)."""

    nodes: list[dict[str, Any]]
    node_ports: dict[str, dict[str, int]]


# The cluster's reads of a snapshot are made side by side (one request each: the nodes, and
# each app's two Services), each a round trip to the API server.
_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="edge-snapshot")


class ClusterReads:
    """The cluster's reads of a snapshot, under way: :meth:`result` waits for them all (the
    first error raised); :meth:`cancel` drops those not started yet (a snapshot given up)."""

    def __init__(self, listed: Future[Any], services: list[tuple[str, Colour, Future[Any]]]):
        self._listed = listed
        self._services = services

    def result(self) -> ClusterView:
        try:
            found = [_node(item) for item in cast("list[Node]", self._listed.result())]
            ports: dict[str, dict[str, int]] = {}
            for name, colour, read in self._services:
                port = _node_port(cast("Service | None", read.result()))
                if port is not None:
                    ports.setdefault(name, {})[colour.value] = port
        except BaseException:
            self.cancel()
            raise
        return ClusterView(found, ports)

    def cancel(self) -> None:
        for future in [self._listed, *(read for _, _, read in self._services)]:
            future.cancel()


def _edge_of(apps: AppsFile) -> EdgeSettings:
    if apps.edge is None:
        raise ConfigError("the apps file has no 'edge' section (docs/edge.md)")
    return apps.edge


def start_reading_cluster(kube: KubeRest, apps: AppsFile) -> ClusterReads:
    """The nodes (by the edge's node selector) and every app's Services, read side by side
    from now on. The client is made first, on the calling thread (a boto3 Session makes its
    clients on one thread at a time)."""
    edge = _edge_of(apps)
    query = {"labelSelector": edge.node_selector} if edge.node_selector else {}
    kube.api  # noqa: B018 (made now, here)
    listed = _READS.submit(kube.items, nodes(), **query)
    services = [
        (
            app.name,
            colour,
            _READS.submit(kube.read, services_path(app.namespace, slot_name(app, colour))),
        )
        for app in apps.apps
        for colour in (Colour.BLUE, Colour.GREEN)
    ]
    return ClusterReads(listed, services)


def _app_entry(app: App, state: AppState, node_ports: dict[str, int]) -> dict[str, Any]:
    return {
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
        "preview_colour": state.live_colour.value if state.live_phase in WATCHED else None,
        # From its deployment through its watch window, HAProxy checks the candidate's backend
        # briskly (admission.py): the same colour before and after the promotion, so that the
        # promotion changes hosts.map only. The gate pushes a revert before the rollout ends,
        # so a revert keeps them too; the next push after it drops them.
        "gating": state.phase in BRISK,
    }


def _edge_entry(edge: EdgeSettings) -> dict[str, Any]:
    return {
        "http_port": edge.http_port,
        "https_port": edge.https_port,
        "servers_per_backend": edge.servers_per_backend,
        "maxconn": edge.maxconn,
        "user": edge.user,
        "group": edge.group,
        "stats": {
            "port": edge.stats_port,
            "user": edge.stats_user,
            "password_hash": edge.stats_password_hash,
        },
    }


def build_snapshot(kube: KubeRest, apps: AppsFile, states: Mapping[str, AppState]) -> Snapshot:
    """The snapshot of ``apps`` as the cluster and the rollout records have them now."""
    return snapshot_of(start_reading_cluster(kube, apps).result(), apps, states)


def snapshot_of(cluster: ClusterView, apps: AppsFile, states: Mapping[str, AppState]) -> Snapshot:
    """The snapshot of ``apps`` from what was read of the cluster and the rollout records."""
    edge = _edge_of(apps)
    app_entries: list[dict[str, Any]] = []
    default_name = certificate_name(edge.default_certificate)
    certs: dict[str, dict[str, Any]] = {
        default_name: {"name": default_name, "file": f"{default_name}.pem", "hosts": []}
    }
    for app in apps.apps:
        node_ports = cluster.node_ports.get(app.name)
        if not node_ports:
            continue  # never deployed: nothing to route to yet
        entry = _app_entry(app, states.get(app.name) or AppState(app=app.name), node_ports)
        if app.tls is not None:
            name = certificate_name(app.tls.certificate)
            cert = certs.setdefault(name, {"name": name, "file": f"{name}.pem", "hosts": []})
            cert["hosts"].extend([*app.hosts.live, app.hosts.preview])
            entry["certificate"] = name
        app_entries.append(entry)
    first = certs.pop(default_name)
    return Snapshot.model_validate(
        {
            "version": 1,
            "edge": _edge_entry(edge),
            "nodes": [n for n in cluster.nodes if n["address"]],
            "apps": app_entries,
            "certificates": [first, *sorted(certs.values(), key=lambda c: c["name"])],
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
