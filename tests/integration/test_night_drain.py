"""Draining a node in the stand-in: cordon, evictions through policy/v1 with PDBs, the wait for
replacements, and the node uncordoned whenever the drain stops."""

from __future__ import annotations

import time

import pytest

from greenlight.cluster.rest import KubeRest
from greenlight.deadline import Deadline
from greenlight.night.drain import DrainError, drain
from greenlight_sandbox.kube.cluster import pod_ready
from greenlight_sandbox.kube.kinds import kind_named


@pytest.fixture
def rest(function_api):
    return KubeRest(function_api("night"))  # the night function's identity: RBAC applies


def web(kube, replicas: int = 2, **pdb_spec):
    """A Deployment ``web`` in shop, all on worker-1 (the others cordoned while it starts)."""
    labels = {"app": "web"}
    with kube.cluster.lock:
        for name in ("worker-2", "worker-3"):
            kube.cluster.objects["nodes"][("", name)]["spec"]["unschedulable"] = True
        kube.cluster.create(
            kind_named("deployments"),
            "shop",
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                    },
                },
            },
        )
    assert kube.wait_for(lambda: len(ready_pods(kube)) == replicas)
    with kube.cluster.lock:
        for name in ("worker-2", "worker-3"):
            kube.cluster.objects["nodes"][("", name)]["spec"]["unschedulable"] = False
        for i, spec in enumerate([pdb_spec] if pdb_spec else []):
            kube.cluster.create(
                kind_named("poddisruptionbudgets"),
                "shop",
                {
                    "metadata": {"name": f"web-{i}"},
                    "spec": {"selector": {"matchLabels": labels}, **spec},
                },
            )
    time.sleep(0.2)  # the PDB controller observes the budget
    return [f"shop/{p['metadata']['name']}" for p in ready_pods(kube)]


def ready_pods(kube):
    return [
        p
        for p in kube.cluster.items("pods", "shop")
        if pod_ready(p) and "deletionTimestamp" not in p["metadata"]
    ]


def unschedulable(kube, node: str) -> bool:
    return bool(kube.cluster.find("nodes", "", node)["spec"].get("unschedulable"))


def test_a_pdb_answers_429_then_lets_the_next_pod_go_once_a_replacement_is_ready(kube, rest):
    pods = web(kube, replicas=2, minAvailable=1)
    # The replacement takes a second to be Ready: the second eviction surely finds the budget
    # spent (0.1 s raced the drain's own requests).
    kube.cluster.default_behaviour.ready_after = 1.0
    result = drain(rest, "worker-1", pods, deadline=Deadline.within(30), poll_seconds=0.1)
    assert result.evicted == pods and result.retries >= 1  # the second waited for the first
    assert unschedulable(kube, "worker-1")  # stays cordoned: the shrink terminates it next
    moved = ready_pods(kube)
    assert len(moved) == 2 and all(p["spec"]["nodeName"] != "worker-1" for p in moved)


def test_a_pdb_that_never_allows_stops_at_the_deadline_and_uncordons(kube, rest):
    pods = web(kube, replicas=2, maxUnavailable=0)
    started = time.monotonic()
    with pytest.raises(DrainError, match="still refused at the deadline") as caught:
        drain(rest, "worker-1", pods, deadline=Deadline.within(3))
    assert time.monotonic() - started < 5
    assert "disruption budget" in str(caught.value)
    assert not unschedulable(kube, "worker-1")
    assert len(ready_pods(kube)) == 2  # nothing evicted


def test_two_pdbs_stop_the_drain_at_once(kube, rest):
    pods = web(kube, replicas=1, maxUnavailable=1)
    with kube.cluster.lock:
        kube.cluster.create(
            kind_named("poddisruptionbudgets"),
            "shop",
            {
                "metadata": {"name": "also"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1},
            },
        )
    with pytest.raises(
        DrainError, match="HTTP 500: This pod has more than one PodDisruptionBudget"
    ):
        drain(rest, "worker-1", pods, deadline=Deadline.within(30))
    assert not unschedulable(kube, "worker-1")


def test_a_pod_already_gone_is_not_an_error(kube, rest):
    pods = web(kube, replicas=1)
    result = drain(
        rest, "worker-1", [*pods, "shop/not-there"], deadline=Deadline.within(30), poll_seconds=0.1
    )
    assert result.evicted == pods
