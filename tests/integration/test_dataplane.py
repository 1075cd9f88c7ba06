"""The stand-in's data plane: pods are local processes, nodes forward their NodePorts."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from greenlight_sandbox.kube.kinds import kind_named
from greenlight_sandbox.kube.server import KubeStandIn
from tests.conftest import node_port_service

LABELS = {"app": "web"}


@pytest.fixture
def cluster() -> Iterator[KubeStandIn]:
    kube = KubeStandIn(data_plane=True).start()
    for i in (1, 2):
        kube.add_node(f"worker-{i}", address=f"127.0.1.{i}")
    kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": "shop"}})
    yield kube
    kube.stop()


def deploy(kube: KubeStandIn, image: str, replicas: int = 2) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        }
                    ]
                },
            },
        },
    }
    with kube.cluster.lock:
        existing = kube.cluster.find("deployments", "shop", "web")
        if existing is None:
            kube.cluster.create(kind_named("deployments"), "shop", body)
        else:
            kube.cluster.patch(
                kind_named("deployments"),
                "shop",
                "web",
                {"spec": body["spec"]},
                "application/merge-patch+json",
            )


def service(kube: KubeStandIn) -> int:
    return node_port_service(kube, "shop", "web", selector=LABELS)


def get(address: str, port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=2)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        conn.close()


def get_when_routed(address: str, port: int) -> tuple[int, str]:
    """As a client of a new Service: endpoints reach the node proxies a moment after the pods
    turn Ready (kube-proxy lags the same way)."""
    deadline = time.monotonic() + 3
    while True:
        try:
            return get(address, port)
        except (ConnectionError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ready(kube: KubeStandIn, image: str, replicas: int = 2) -> bool:
    def done() -> bool:
        dep = kube.cluster.find("deployments", "shop", "web") or {}
        status = dep.get("status", {})
        container = dep["spec"]["template"]["spec"]["containers"][0]
        return (
            container["image"] == image
            and status.get("readyReplicas") == replicas
            and status.get("updatedReplicas") == replicas
            and status.get("replicas") == replicas
        )

    return kube.wait_for(done, timeout=20)


def test_each_node_forwards_its_node_port_to_ready_pod_processes(cluster):
    deploy(cluster, "shop-web:v1")
    port = service(cluster)
    assert ready(cluster, "shop-web:v1")
    for node in ("127.0.1.1", "127.0.1.2"):
        assert get_when_routed(node, port) == (200, "v1")


def test_a_rolling_update_behind_a_node_port_drops_nothing(cluster):
    deploy(cluster, "shop-web:v1")
    port = service(cluster)
    assert ready(cluster, "shop-web:v1")
    assert get_when_routed("127.0.1.1", port) == (200, "v1")
    deploy(cluster, "shop-web:v2")
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = get("127.0.1.1", port)
        seen[f"{status} {body}"] += 1
        if ready(cluster, "shop-web:v2") and seen["200 v2"] > 20:
            break
    assert set(seen) <= {"200 v1", "200 v2"}, seen
    assert seen["200 v2"] > 20


def test_a_never_ready_pod_gets_no_traffic(cluster):
    cluster.set_behaviour("shop-web:broken", "never-ready")
    deploy(cluster, "shop-web:broken", replicas=1)
    port = service(cluster)
    time.sleep(1.5)
    dep = cluster.cluster.find("deployments", "shop", "web")
    assert not dep["status"].get("readyReplicas")
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        get("127.0.1.1", port)
