"""The night shrink under load, beside the naive alternative (``make bench``), in one sandbox.

Steady HTTPS load through both HAProxy instances of the full sandbox (keep-alive and a new TLS
connection per request, per instance), while:

1. **Greenlight**: the night function shrinks the worker group to its night size (nodes out of
   HAProxy first, drained through the Eviction API under the shop's PDB, instances terminated
   with the desired capacity decremented) and restores it.
2. **Control: a scheduled action**: what an Auto Scaling scheduled action does at night, the
   group's desired capacity set to the same size at once: the group terminates instances of its
   choosing, with no drain and no HAProxy push; their machines are gone, with the pods on them.
   Then the desired capacity is set back.

Prints, for each, the requests, failed requests, pods lost (pods that went with their machine
instead of being evicted first) and the most pods pending at once. Goal: 0 failed requests and
0 pending pods for Greenlight.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import boto3

from greenlight_sandbox import scenarios
from greenlight_sandbox.fullstack import FullSandbox


def pending(sandbox: FullSandbox) -> int:
    return sum(
        1 for p in sandbox.kube.cluster.items("pods") if p["status"].get("phase") == "Pending"
    )


def measure(stage: scenarios.Stage, act) -> dict[str, int]:
    stage.start_load()
    time.sleep(2)
    cloud = stage.sandbox.cloud
    assert cloud is not None
    lost_before = cloud.lost_pods
    worst_pending = act()
    time.sleep(3)
    lost = cloud.lost_pods - lost_before
    stats = stage.stop_load()
    return {
        "requests": sum(s.requests for s in stats),
        "failed": sum(s.failed for s in stats),
        "lost": lost,
        "pending": worst_pending,
    }


def main() -> int:
    out = sys.stdout
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "functions.log", "w") as log:
        sys.stdout = sys.stderr = log
        try:
            with FullSandbox() as sandbox:
                stage = scenarios.Stage(sandbox)
                stage.deploy_first("v1")
                group = sandbox.env["GREENLIGHT_NIGHT_GROUP"]
                asg = boto3.client("autoscaling")
                nodes = len(sandbox.kube.cluster.items("nodes"))

                def ours() -> int:
                    worst = 0
                    shrunk = sandbox.invoke("night", {"action": "shrink"}, timeout=600)
                    assert shrunk["status"] == "shrunk", shrunk
                    worst = max(worst, pending(sandbox))
                    restored = sandbox.invoke("night", {"action": "restore"}, timeout=600)
                    assert restored["status"] == "restored", restored
                    return max(worst, pending(sandbox))

                def scheduled_action() -> int:
                    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
                    worst = 0
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        worst = max(worst, pending(sandbox))
                        time.sleep(0.2)
                    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=nodes)
                    sandbox.kube.wait_for(
                        lambda: len(sandbox.kube.cluster.items("nodes")) == nodes, timeout=30
                    )
                    return worst

                greenlight = measure(stage, ours)
                control = measure(stage, scheduled_action)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    print(
        f"Night shrink of the sandbox's {nodes} workers to 1 under HTTPS load, one run:", file=out
    )
    print(f"{'method':44} {'requests':>9} {'failed':>7} {'pods lost':>9} {'pending':>8}", file=out)
    for label, f in (
        ("Greenlight: plan, HAProxy push, drain, terminate", greenlight),
        ("control: scheduled action (desired := 1)", control),
    ):
        print(
            f"{label:50} {f['requests']:>9} {f['failed']:>7} {f['lost']:>9} {f['pending']:>8}",
            file=out,
        )
    print("goal: 0 failed requests and 0 pending pods for Greenlight", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
