"""Render + `haproxy -c` at scale (``make bench``): cost per server and linearity.

Prints, for growing clusters up to 1,000 apps x 100 nodes, the render time, the time per 10,000
servers, the `haproxy -c` validation time and HAProxy's peak memory while checking, measured in
one run, twice per size: with the default node subset (``servers_per_backend: 20``) and with
every serving node in every backend (``0``: 200,000 servers at the largest size).
Goals: render <= 50 ms per 10k servers, validation <= 0.5 s, cost linear in servers.
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


def snapshot(apps: int, nodes: int, per_backend: int = 0) -> Snapshot:
    return Snapshot.model_validate(
        {
            "version": 1,
            "edge": {
                "stats": {"password_hash": "$6$bench$" + "x" * 86},
                "servers_per_backend": per_backend,
            },
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


def check(haproxy: str, config: str) -> tuple[float, float]:
    """(median seconds, peak RSS in MB) of ``haproxy -c``."""
    import resource

    seconds = timed(lambda: subprocess.run([haproxy, "-c", "-q", "-f", config], check=True), 3)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kb / 1024


def main() -> int:
    haproxy = shutil.which("haproxy")
    print(
        f"{'apps':>5} {'nodes':>6} {'per backend':>11} {'servers':>8} {'render ms':>10} "
        f"{'ms / 10k':>9} {'haproxy -c ms':>14} {'config KB':>10}"
    )
    peaks = []
    for apps, nodes in SIZES:
        for per_backend in (20, 0):
            snap = snapshot(apps, nodes, per_backend)
            used = min(nodes, per_backend) if per_backend else nodes
            servers = apps * 2 * used
            render_s = timed(lambda s=snap: render(s), 5 if servers < 100_000 else 3)
            size = len(render(snap)["haproxy.cfg"]) / 1024
            check_ms = float("nan")
            if haproxy:
                with tempfile.TemporaryDirectory() as tmp:
                    render_to(snap, Path(tmp))
                    seconds, peak = check(haproxy, f"{tmp}/haproxy.cfg")
                    check_ms = seconds * 1000
                    peaks.append((servers, peak))
            label = str(per_backend) if per_backend else "every node"
            print(
                f"{apps:5d} {nodes:6d} {label:>11} {servers:8d} {render_s * 1000:10.1f} "
                f"{render_s * 1000 / (servers / 10_000):9.1f} {check_ms:14.0f} {size:10.0f}"
            )
    if peaks:
        # getrusage(RUSAGE_CHILDREN) is a running maximum: the largest config's check sets it.
        servers, peak = max(peaks)
        print(f"haproxy -c peak memory at {servers:,} servers: {peak:,.0f} MB")
    print("goals: render <= 50 ms per 10k servers; haproxy -c <= 500 ms; linear in servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
