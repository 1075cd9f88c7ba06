"""Render + `haproxy -c` at scale (``make bench``): cost per server and linearity.

Prints, for growing clusters up to 1,000 apps x 100 nodes (two colours each: 200,000 servers),
the render time, the time per 10,000 servers, and the `haproxy -c` validation time, measured in
one run. Goals: render <= 50 ms per 10k servers, validation <= 0.5 s, cost linear in servers.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenlight.edge.render import render
from greenlight.edge.snapshot import Snapshot
from greenlight_sandbox.render import render_to

SIZES = [(10, 10), (100, 50), (1000, 100)]  # (apps, nodes)


def snapshot(apps: int, nodes: int) -> Snapshot:
    return Snapshot.model_validate(
        {
            "version": 1,
            "edge": {"stats": {"password_hash": "$6$bench$" + "x" * 86}},
            "nodes": [
                {"name": f"node-{i:04d}", "address": f"10.{i // 250}.{i % 250}.10"}
                for i in range(nodes)
            ],
            "apps": [
                {
                    "name": f"app{i:04d}",
                    "live_colour": "blue",
                    "hosts": {
                        "live": [f"app{i}.example.com"],
                        "preview": f"preview.app{i}.example.com",
                    },
                    "node_ports": {"blue": 30000 + 2 * i, "green": 30001 + 2 * i},
                }
                for i in range(apps)
            ],
            "certificates": [{"name": "default", "file": "default.pem", "hosts": ["example.com"]}],
        }
    )


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    haproxy = shutil.which("haproxy")
    print(
        f"{'apps':>5} {'nodes':>6} {'servers':>8} {'render ms':>10} {'ms / 10k':>9} "
        f"{'haproxy -c ms':>14} {'config KB':>10}"
    )
    for apps, nodes in SIZES:
        snap = snapshot(apps, nodes)
        servers = apps * 2 * nodes
        render_s = timed(lambda s=snap: render(s), 5 if servers < 100_000 else 3)
        size = len(render(snap)["haproxy.cfg"]) / 1024
        check_ms = float("nan")
        if haproxy:
            with tempfile.TemporaryDirectory() as tmp:
                render_to(snap, Path(tmp))
                check_ms = 1000 * timed(
                    lambda t=tmp: subprocess.run(
                        [haproxy, "-c", "-q", "-f", f"{t}/haproxy.cfg"], check=True
                    ),
                    3,
                )
        print(
            f"{apps:5d} {nodes:6d} {servers:8d} {render_s * 1000:10.1f} "
            f"{render_s * 1000 / (servers / 10_000):9.1f} {check_ms:14.0f} {size:10.0f}"
        )
    print("goals: render <= 50 ms per 10k servers; haproxy -c <= 500 ms; linear in servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
