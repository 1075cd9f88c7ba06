"""The night-shrink plan (``make bench``): its speed at scale and how close it gets to the best.

1. Speed: a plan for 500 nodes in 3 zones and 10,000 pods (Deployments' pods, DaemonSet pods,
   PDBs, some pods that cannot move), median of 5. Goal: <= 2 s.
2. Quality: on CLUSTERS generated small clusters (3-8 nodes), the nodes the plan removes against
   the brute-force optimum under the same rules (every subset tried). Goal: >= 95 % in all.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from greenlight.night.plan import NightSize, plan
from tests.night_optimum import optimum

CLUSTERS = int(os.environ.get("GREENLIGHT_BENCH_CLUSTERS", "300"))
ZONES = ("a", "b", "c")


def cluster(
    rng: random.Random, nodes: int, pods: int, cpu: str = "4", memory: str = "16Gi"
) -> tuple[list, list, list]:
    node_list = [
        {
            "metadata": {"name": f"n{i}", "labels": {"topology.kubernetes.io/zone": ZONES[i % 3]}},
            "spec": {"providerID": f"aws:///z/i-{i:05d}"},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        for i in range(nodes)
    ]
    pod_list: list[dict[str, Any]] = []
    for i in range(pods):
        app = f"app{rng.randrange(pods // 20 or 1)}"
        kind = rng.random()
        owner = "DaemonSet" if kind < 0.05 else ("ReplicaSet" if kind > 0.01 else None)
        pod_list.append(
            {
                "metadata": {
                    "name": f"{app}-{i}",
                    "namespace": "apps",
                    "labels": {"app": app},
                    **(
                        {"ownerReferences": [{"kind": owner, "name": app, "uid": "u"}]}
                        if owner
                        else {}
                    ),
                },
                "spec": {
                    "nodeName": f"n{rng.randrange(nodes)}",
                    "containers": [
                        {
                            "resources": {
                                "requests": {
                                    "cpu": f"{rng.choice([50, 100, 200, 250, 500])}m",
                                    "memory": f"{rng.choice([64, 128, 256, 512])}Mi",
                                }
                            }
                        }
                    ],
                },
                "status": {"phase": "Running"},
            }
        )
    pdbs = [
        {
            "metadata": {"name": f"app{a}", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": {"app": f"app{a}"}}, "maxUnavailable": 1},
        }
        for a in range(0, pods // 20 or 1, 3)
    ]
    return node_list, pod_list, pdbs


def main() -> int:
    rng = random.Random(20261126)
    nodes, pods, pdbs = cluster(rng, 500, 10_000, cpu="16", memory="64Gi")  # ~28 % requested
    size = NightSize(keep_fraction=0.4, headroom=0.1)
    seconds, removed = [], 0
    for _ in range(5):
        started = time.perf_counter()
        result = plan(nodes, pods, pdbs, size)
        seconds.append(time.perf_counter() - started)
        removed = len(result.remove)
    print("Night-shrink plan, one run:")
    print(
        f"  500 nodes, 10,000 pods, {len(pdbs)} PDBs: median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s (goal <= 2 s); removes {removed} of 500 "
        f"(night size 40 %, headroom 10 %), {len(result.blocked)} nodes blocked"
    )
    got = best = 0
    for _ in range(CLUSTERS):
        count = rng.randint(3, 8)
        small = cluster(rng, count, rng.randint(count, 6 * count))
        for pod in small[1]:  # bigger pods: capacity, not the night size, is what binds
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = (
                f"{rng.choice([250, 500, 1000, 1500])}m"
            )
        small_size = NightSize(keep=rng.randint(0, count - 1), headroom=0.1)
        got += len(plan(*small, small_size).remove)
        best += optimum(*small, small_size)
    ratio = got / best if best else 1.0
    print(
        f"  {CLUSTERS} generated clusters of 3-8 nodes: the plan removes {got} nodes, the "
        f"brute-force optimum {best}: {ratio:.1%} (goal >= 95 %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
