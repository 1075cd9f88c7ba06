"""Run the Kubernetes stand-in alone, in the foreground, until interrupted.

python -m greenlight_sandbox.kube [--port 6443] [--nodes 3] [--token TOKEN]
(also: greenlight kube-standin ...)
"""

from __future__ import annotations

import argparse
import signal
import threading

from .kinds import kind_named
from .server import KubeStandIn


def serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="greenlight kube-standin", description="the Kubernetes API stand-in, on loopback"
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--nodes", type=int, default=3, help="worker nodes to start with")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--namespace", action="append", default=[], help="namespaces to create (repeatable)"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with KubeStandIn(port=args.port, token=args.token) as kube:
        for i in range(1, args.nodes + 1):
            kube.add_node(f"worker-{i}", address=f"127.0.1.{i}")
        for ns in args.namespace:
            kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})
        print(
            f"kubernetes stand-in at {kube.url} ({args.nodes} nodes); Ctrl-C stops it", flush=True
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
