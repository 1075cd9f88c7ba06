"""Run the Kubernetes stand-in alone, in the foreground, until interrupted.

python -m greenlight_sandbox.kube [--port 6443] [--nodes 3] [--token TOKEN] [--kubeconfig PATH]
(also: greenlight kube-standin ...)
"""

from __future__ import annotations

import argparse
import signal
import threading

from ..rbac_manifest import TEMPLATE as RBAC_TEMPLATE
from ..rbac_manifest import manifest
from .kinds import kind_named
from .server import KubeStandIn

# The app namespaces (the sandbox's) when no --namespace is given.
DEFAULT_APP_NAMESPACES = ("shop", "blog")


def serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="greenlight kube-standin", description="the Kubernetes API stand-in, on loopback"
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--nodes", type=int, default=3, help="worker nodes to start with")
    parser.add_argument(
        "--token", default=None, help="the superuser's bearer token (default: a random one)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="write a kubeconfig (CA, server, the superuser's token) here, mode 0600",
    )
    parser.add_argument(
        "--plain-http", action="store_true", help="serve plain HTTP instead of HTTPS"
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespaces to create (repeatable; default: shop and blog); docs/rbac.yaml's "
        "Roles go into each",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    import secrets

    token = args.token or secrets.token_urlsafe(24)
    with KubeStandIn(port=args.port, token=token, tls=not args.plain_http) as kube:
        apps = [ns for ns in args.namespace if not ns.startswith("kube-")]
        apps = apps or list(DEFAULT_APP_NAMESPACES)
        for ns in dict.fromkeys([*args.namespace, *apps]):
            if kube.cluster.find("namespaces", "", ns) is None:
                kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})
        if RBAC_TEMPLATE.exists():  # the project's own RBAC: `--as`-free checks of its groups
            kube.apply_manifest(manifest(apps))
        for i in range(1, args.nodes + 1):
            kube.add_node(f"worker-{i}", address=f"127.0.1.{i}")
        if args.kubeconfig:
            written = kube.write_kubeconfig(args.kubeconfig, token)
            print(f"kubeconfig written to {written}", flush=True)
        elif not args.token:
            print(f"superuser token: {token}", flush=True)
        print(
            f"kubernetes stand-in at {kube.url} ({args.nodes} nodes); Ctrl-C stops it", flush=True
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
