"""The capacity interlock's arithmetic: quantities, schedulable nodes, first-fit placement."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlight.cluster.resources import quantity
from greenlight.rollout.capacity import free_rooms, shortfall

SLOT = {"app.kubernetes.io/name": "shop", "greenlight.io/colour": "green"}


@pytest.mark.parametrize(
    ("value", "milli", "expected"),
    [
        ("100m", True, 100),
        ("2", True, 2000),
        ("0.5", True, 500),
        ("64Mi", False, 64 * 2**20),
        ("1Gi", False, 2**30),
        ("1G", False, 10**9),
        ("128974848", False, 128974848),
        (0, False, 0),
    ],
)
def test_quantities(value, milli, expected):
    assert quantity(value, milli=milli) == expected


def test_an_unknown_quantity_is_a_clear_error():
    with pytest.raises(ValueError, match="not a quantity"):
        quantity("lots")


def node(name: str, cpu: str = "2", memory: str = "4Gi", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": spec.pop("ready", "True")}],
        },
    }


def pod(node_name: str, cpu: str, memory: str, labels=None, phase="Running") -> dict[str, Any]:
    return {
        "metadata": {"labels": labels or {}},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}],
        },
        "status": {"phase": phase},
    }


def deployment(replicas: int, cpu: str = "500m", memory: str = "256Mi", **template: Any):
    return {
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}],
                    **template,
                }
            },
        }
    }


def test_replicas_that_fit_pass():
    assert shortfall([node("a"), node("b")], [], deployment(8), leaving=SLOT) is None


def test_the_arithmetic_is_in_the_refusal():
    why = shortfall([node("a"), node("b")], [], deployment(9), leaving=SLOT)
    assert why == (
        "not enough allocatable capacity for 9 replicas of 500m CPU and 256Mi memory: "
        "room for 8 on 2 schedulable nodes (4000m CPU and 8192Mi memory free in all)"
    )


def test_room_is_per_node_not_summed():
    # 1.5 CPU free on each of two nodes: 3 CPU in all, but no node takes a 2-CPU replica.
    nodes = [node("a"), node("b")]
    pods = [pod("a", "500m", "0"), pod("b", "500m", "0")]
    assert shortfall(nodes, pods, deployment(1, cpu="2"), leaving=SLOT) is not None
    assert shortfall(nodes, pods, deployment(2, cpu="1500m"), leaving=SLOT) is None


def test_cordoned_unready_tainted_and_unselected_nodes_take_nothing():
    nodes = [
        node("cordoned", unschedulable=True),
        node("not-ready", ready="False"),
        node("tainted", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
        node("other-pool", labels={"pool": "batch"}),
    ]
    template = {"nodeSelector": {"pool": "web"}}
    assert free_rooms(nodes, [], template, leaving=SLOT) == []
    tolerated = free_rooms(
        [nodes[2]], [], {"tolerations": [{"key": "gpu", "operator": "Exists"}]}, leaving=SLOT
    )
    assert [r.node for r in tolerated] == ["tainted"]


def test_the_slot_being_replaced_and_finished_pods_free_their_room():
    nodes = [node("a", cpu="1")]
    busy = [pod("a", "1", "0", labels=SLOT)]
    assert shortfall(nodes, busy, deployment(2), leaving=SLOT) is None  # green goes as it comes
    other = [pod("a", "1", "0", labels={"greenlight.io/colour": "blue"})]
    assert shortfall(nodes, other, deployment(1), leaving=SLOT) is not None
    done = [pod("a", "1", "0", phase="Succeeded")]
    assert shortfall(nodes, done, deployment(2), leaving=SLOT) is None


@given(
    st.lists(st.integers(1, 8), min_size=1, max_size=6),  # CPUs per node
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 2000)), max_size=20),  # pods (node, m)
    st.integers(1, 3000),
    st.integers(1, 10),
)
def test_a_pass_means_every_replica_has_a_node_with_room(cpus, pods, need, replicas):
    nodes = [node(f"n{i}", cpu=str(c), memory="1Gi") for i, c in enumerate(cpus)]
    placed = [pod(f"n{i % len(cpus)}", f"{m}m", "0") for i, m in pods]
    verdict = shortfall(nodes, placed, deployment(replicas, cpu=f"{need}m", memory="0"), leaving={})
    free = sorted(
        (c * 1000 - sum(m for i, m in pods if i % len(cpus) == n) for n, c in enumerate(cpus)),
        reverse=True,
    )
    # Identical replicas: first fit by decreasing room places as many as any placement can.
    best = sum(max(f, 0) // need for f in free)
    assert (verdict is None) == (best >= replicas)
