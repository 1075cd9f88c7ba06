"""The snapshot built from the stand-in cluster, the rollout state and the apps file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from greenlight.appconfig import parse_apps
from greenlight.cluster.rest import KubeRest
from greenlight.colour import Colour
from greenlight.edge.render import render
from greenlight.edge.state import (
    build_snapshot,
    certificate_name,
    certificate_refs,
    snapshot_of,
    start_reading_cluster,
)
from greenlight.errors import ConfigError
from greenlight.store.rollouts import AppState
from tests.conftest import node_port_service

APPS_TEXT = (Path(__file__).resolve().parents[2] / "config" / "sandbox-apps.yaml").read_text()


@pytest.fixture
def rest(function_api):
    return KubeRest(function_api("haproxy"))  # the haproxy function's identity: RBAC applies


def service(kube, ns, name, port=None):
    node_port_service(kube, ns, name, node_port=port)


def test_snapshot_follows_nodes_services_and_the_live_colour(kube, rest):
    service(kube, "shop", "shop-blue", 30080)
    service(kube, "shop", "shop-green", 30081)
    service(kube, "blog", "blog-green", 31000)  # first deploy: only the candidate exists
    kube.cordon("worker-2")
    apps = parse_apps(APPS_TEXT)
    states = {"shop": AppState(app="shop", live_colour=Colour.GREEN)}

    snap = build_snapshot(rest, apps, states)

    assert {n.name: n.serving for n in snap.nodes} == {
        "worker-1": True,
        "worker-2": False,
        "worker-3": True,
    }
    shop = next(a for a in snap.apps if a.name == "shop")
    assert shop.live_colour is Colour.GREEN
    assert shop.node_ports == {Colour.BLUE: 30080, Colour.GREEN: 30081}
    files = render(snap)
    routes = dict(line.split() for line in files["hosts.map"].decode().splitlines())
    assert routes == {
        "shop.sandbox.test": "shop-green",
        "preview.shop.sandbox.test": "shop-blue",
        "preview.blog.sandbox.test": "blog-green",
    }
    config = files["haproxy.cfg"].decode()
    assert "127.0.1.1:30081" in config and "127.0.1.3:30081" in config
    assert "127.0.1.2:" not in config  # cordoned: taken out of every backend


@pytest.mark.parametrize(
    ("phase", "gating"),
    [
        ("deploying", True),
        ("gating", True),
        ("awaiting_approval", True),
        ("promoting", True),  # through its watch window: the promotion changes hosts.map only
        ("watching", True),
        ("live", False),
        ("settled", False),
        ("rolled_back", False),
        (None, False),
    ],
)
def test_the_candidate_is_checked_briskly_from_deploying_through_watching(
    kube, rest, phase, gating
):
    service(kube, "shop", "shop-blue", 30080)
    service(kube, "shop", "shop-green", 30081)
    states = {"shop": AppState(app="shop", live_colour=Colour.BLUE, phase=phase)}
    snap = build_snapshot(rest, parse_apps(APPS_TEXT), states)
    assert next(a for a in snap.apps if a.name == "shop").gating is gating


def test_apps_never_deployed_are_left_out(kube, rest):
    snap = build_snapshot(rest, parse_apps(APPS_TEXT), {})
    assert snap.apps == []
    assert [c.name for c in snap.certificates] == [
        certificate_name("s3://greenlight-sandbox-artifacts/certs/default.pem")
    ]


def test_certificates_map_to_files_and_hosts(kube, rest):
    text = APPS_TEXT.replace(
        "    hosts:\n      live: [shop.sandbox.test]",
        "    tls: {certificate: 's3://greenlight-sandbox-artifacts/certs/shop.pem'}\n"
        "    hosts:\n      live: [shop.sandbox.test]",
    )
    apps = parse_apps(text)
    service(kube, "shop", "shop-blue")
    snap = build_snapshot(rest, apps, {})
    shop_cert = certificate_name("s3://greenlight-sandbox-artifacts/certs/shop.pem")
    assert snap.certificates[1].name == shop_cert
    assert snap.certificates[1].hosts == ["shop.sandbox.test", "preview.shop.sandbox.test"]
    assert (
        certificate_refs(apps)[f"{shop_cert}.pem"]
        == "s3://greenlight-sandbox-artifacts/certs/shop.pem"
    )


def test_an_apps_file_without_edge_settings_is_refused(rest):
    text = APPS_TEXT.split("\nedge:")[0] + "\n"
    with pytest.raises(ConfigError, match="no 'edge' section"):
        build_snapshot(rest, parse_apps(text), {})


class _SideBySide:
    """The haproxy function's client, each request held until ``parties`` requests are under
    way together: reads made one after another never get there (the barrier times out)."""

    def __init__(self, rest: KubeRest, parties: int) -> None:
        self.rest = rest
        self.barrier = threading.Barrier(parties, timeout=10)
        self.made_on: list[str] = []

    @property
    def api(self):  # made on the thread that starts the reads
        self.made_on.append(threading.current_thread().name)
        return self.rest.api

    def items(self, path: str, **query: str):
        self.barrier.wait()
        return self.rest.items(path, **query)

    def read(self, path: str):
        self.barrier.wait()
        return self.rest.read(path)


def test_the_clusters_reads_are_made_side_by_side_and_read_the_same(kube, rest):
    service(kube, "shop", "shop-blue", 30080)
    service(kube, "shop", "shop-green", 30081)
    apps = parse_apps(APPS_TEXT)
    states = {"shop": AppState(app="shop", live_colour=Colour.GREEN)}
    # The nodes, and each app's two Services: all under way at once.
    side_by_side = _SideBySide(rest, 1 + 2 * len(apps.apps))
    cluster = start_reading_cluster(side_by_side, apps).result()  # type: ignore[arg-type]
    assert side_by_side.made_on == [threading.current_thread().name]
    assert snapshot_of(cluster, apps, states) == build_snapshot(rest, apps, states)
    assert cluster.node_ports == {"shop": {"blue": 30080, "green": 30081}}
