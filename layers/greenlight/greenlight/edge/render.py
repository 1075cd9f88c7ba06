"""Rendering the HAProxy config from a snapshot: pure, deterministic, StrictUndefined.

The output is three files: ``haproxy.cfg``, ``hosts.map`` (host -> backend: live hosts to the
live colour's backend, or to its ``-live-<colour>`` backend while a warm colour backs it up; the
preview host to the other colour's, or to the live colour's while a promotion is watched) and
``crt-list`` (certificates with their SNI names; the first is the default). The same snapshot
gives the same bytes; the snapshot's SHA-256 is written into the config so an instance can tell
what it runs.

Every backend a colour move can route to is always rendered, and the brisk checks stay on the
candidate from its deployment through its watch window, so that a promotion, a revert or the end
of a warm window changes ``hosts.map`` (and comments) only: an instance can switch through its
runtime API without a reload (``delta.py`` says which files differ).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import jinja2

from .. import admission as checks
from ..colour import Colour
from .snapshot import App, Snapshot

TEMPLATE = "haproxy.cfg.j2"


@dataclass(frozen=True)
class Paths:
    """Where the rendered files and HAProxy's own state live on an instance.

    The default is the fleet layout: the config's own files (``hosts.map``, ``crt-list``) are
    named relative to the release directory HAProxy runs from (``haproxy -C <release>``), so a
    release can be checked in place before it becomes current. Certificates, sockets and state
    live outside releases, in directories HAProxy takes from its environment (the instance's
    environment file: ``GREENLIGHT_CERTS_DIR``, ``GREENLIGHT_RUN_DIR``, ``GREENLIGHT_STATE_DIR``;
    :data:`INSTANCE_DEFAULTS` when the file does not set them); the listeners bind
    ``GREENLIGHT_BIND_ADDRESS`` (unset: every address). A config sets no variable itself
    (``presetenv`` is refused: ``trust.py``). ``greenlight render --out`` gives real paths
    instead, so that its output checks anywhere.
    """

    config_dir: str = "."
    certs_dir: str = "${GREENLIGHT_CERTS_DIR}"
    run_dir: str = "${GREENLIGHT_RUN_DIR}"
    state_dir: str = "${GREENLIGHT_STATE_DIR}"

    def as_template(self) -> dict[str, str]:
        conf = PurePosixPath(self.config_dir)
        return {
            "hosts_map": str(conf / "hosts.map"),
            "crt_list": str(conf / "crt-list"),
            "certs_dir": self.certs_dir,
            "run_dir": self.run_dir,
            "state_dir": self.state_dir,
        }


_WORD_ESCAPES = str.maketrans({c: "\\" + c for c in "\\'\"# "})


def haproxy_word(text: str) -> str:
    """``text`` as one unquoted word of an HAProxy config line: a backslash before each character
    HAProxy would read as a quote, an escape, a comment or a word break (``'`` is an RFC 3986
    path character; the others never pass validation). ``$`` needs none outside double quotes."""
    return text.translate(_WORD_ESCAPES)


# Where an instance keeps what lives outside releases when its environment file does not say:
# the apply document's defaults, and what docs/edge/user-data.sh writes.
INSTANCE_DEFAULTS = {
    "GREENLIGHT_CERTS_DIR": "/etc/haproxy/certs",
    "GREENLIGHT_RUN_DIR": "/run/haproxy",
    "GREENLIGHT_STATE_DIR": "/var/lib/haproxy",
}


# The backends' names live with their checks, where the gate reads them without jinja2.
backend_name = checks.backend_name
live_backend_name = checks.live_backend_name


def _backup(app: App) -> Colour | None:
    backup = app.backup_colour
    if backup is None or backup is app.live_colour:
        return None
    if backup not in app.node_ports or app.live_colour not in app.node_ports:
        return None
    return backup


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("greenlight.edge", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - HAProxy config, not HTML; inputs are validated
    )


_ENV: jinja2.Environment | None = None


_MASK = (1 << 64) - 1


def _key64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit score from two combined keys."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def node_subset(app: str, nodes: list[tuple[str, str]], size: int) -> list[tuple[str, str]]:
    """The ``size`` nodes with the highest rendezvous score for ``app`` (all when ``size`` is 0
    or covers them), in name order. Each app gets its own spread of nodes, and a node joining or
    leaving moves only the apps that pick it."""
    if size == 0 or len(nodes) <= size:
        return nodes
    return _subset(_key64(app), [(_key64(name), (name, addr)) for name, addr in nodes], size)


def _subset(
    app_key: int, keyed: list[tuple[int, tuple[str, str]]], size: int
) -> list[tuple[str, str]]:
    best = heapq.nlargest(size, keyed, key=lambda item: _mix64(app_key ^ item[0]))
    return sorted(node for _, node in best)


def _backends(snapshot: Snapshot) -> list[dict[str, Any]]:
    serving = [
        (n.name, n.address) for n in sorted(snapshot.nodes, key=lambda n: n.name) if n.serving
    ]
    size = snapshot.edge.servers_per_backend
    keyed = [(_key64(name), (name, addr)) for name, addr in serving]  # hashed once per render
    out = []
    for app in sorted(snapshot.apps, key=lambda a: a.name):
        servers = (
            serving if size == 0 or len(serving) <= size else _subset(_key64(app.name), keyed, size)
        )
        common = {
            "app": app.name,
            "health_path": haproxy_word(app.health.path),
            "expect_status": app.health.expect_status,
            "interval": app.health.interval_seconds,
            "check_host": app.hosts.live[0],
        }
        preview = app.preview_colour or app.live_colour.other
        for colour in (Colour.BLUE, Colour.GREEN):
            if colour not in app.node_ports:
                continue
            out.append(
                common
                | {
                    "name": backend_name(app.name, colour),
                    "colour": colour.value,
                    "role": "live" if colour is app.live_colour else "preview",
                    "tracking": False,
                    # The candidate from its deployment through its watch window: the same
                    # colour before and after a promotion, so that haproxy.cfg stays the same.
                    "fast_checks": app.gating and colour is preview,
                    "node_port": app.node_ports[colour],
                    # Joined here rather than looped in the template: twice as fast at scale.
                    "server_lines": _server_lines(servers, app.node_ports[colour]),
                }
            )
        if Colour.BLUE in app.node_ports and Colour.GREEN in app.node_ports:
            out.extend(_live_backends(app, servers, common))
    return out


def _live_backends(
    app: App, servers: list[tuple[str, str]], common: dict[str, Any]
) -> list[dict[str, Any]]:
    """``<app>-live-blue`` and ``<app>-live-green``: always rendered, whichever colour is live
    and whether or not one is warm, so that the live hosts move between these and the colours'
    own backends in hosts.map alone. Their servers track the colours' (no checks of their own)."""
    out = []
    for colour in (Colour.BLUE, Colour.GREEN):
        other = colour.other
        lines = _server_lines(
            servers, app.node_ports[colour], track=backend_name(app.name, colour)
        ) + _server_lines(
            servers,
            app.node_ports[other],
            track=backend_name(app.name, other),
            suffix=f".{other.value}",
        )
        out.append(
            common
            | {
                "name": live_backend_name(app.name, colour),
                "colour": f"{colour.value}, backed up by {other.value}",
                "role": "live route while a warm colour backs it up",
                "tracking": True,
                "fast_checks": False,
                "node_port": app.node_ports[colour],
                "server_lines": lines,
            }
        )
    return out


@functools.lru_cache(maxsize=4096)
def _address_tag(address: str) -> str:
    return hashlib.blake2b(address.encode(), digest_size=3).hexdigest()


def server_name(node: str, address: str, port: int) -> str:
    """The name of ``node``'s server at ``address:port``: the node's name, the port and a short
    hash of the address (``ip-10-0-1-11.eu-west-1.compute.internal_30080_192c9f``).

    A name changes whenever the address or the port does, and only then. On a reload HAProxy
    restores each server's saved state (``load-server-state-from-file``) by backend and server
    name, the port included (HAProxy issue 985): a server that kept its name after its colour's
    Service got a new NodePort would keep sending to the old port. Under a new name it starts
    afresh; under the same name it keeps its health across reloads. ``_`` is not in a node name
    (RFC 1123), is allowed in an HAProxy name, and survives the counters' row filter."""
    return f"{node}_{port}_{_address_tag(address)}"


def _server_lines(
    servers: list[tuple[str, str]], port: int, *, track: str | None = None, suffix: str = ""
) -> str:
    """``server`` lines, one per node (named by :func:`server_name`); with ``track``, each
    follows the state of the server of the same node in that backend (its checks, not checks of
    its own); with ``suffix``, they are backups (their names get ``suffix``)."""
    option = " backup" if suffix else ""
    # server_name, inlined: a third of the render's time at 1,000 apps x 20 servers otherwise.
    named = [(f"{node}_{port}_{_address_tag(address)}", address) for node, address in servers]
    if track is None:
        return "".join(
            f"    server {name}{suffix} {address}:{port}{option}\n" for name, address in named
        )
    return "".join(
        f"    server {name}{suffix} {address}:{port} track {track}/{name}{option}\n"
        for name, address in named
    )


def _routes(app: App) -> list[tuple[str, str]]:
    preview = app.preview_colour or app.live_colour.other
    routes = []
    if app.live_colour in app.node_ports:
        live = (
            live_backend_name(app.name, app.live_colour)
            if _backup(app) is not None
            else backend_name(app.name, app.live_colour)
        )
        routes = [(host, live) for host in app.hosts.live]
    if preview in app.node_ports:
        routes.append((app.hosts.preview, backend_name(app.name, preview)))
    return routes


def snapshot_digest(snapshot: Snapshot) -> str:
    """SHA-256 of the snapshot in canonical form (node and app order do not matter;
    certificate order does: the first is the default)."""
    data = snapshot.model_dump(mode="json")
    data["nodes"] = sorted(data["nodes"], key=lambda n: n["name"])
    data["apps"] = sorted(data["apps"], key=lambda a: a["name"])
    for app in data["apps"]:  # unset, these do not change the digest of older snapshots
        for key in ("backup_colour", "preview_colour", "gating"):
            if app.get(key) in (None, False):
                app.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def render(snapshot: Snapshot, paths: Paths | None = None) -> dict[str, bytes]:
    """The files of the HAProxy config for ``snapshot``, by file name."""
    global _ENV  # noqa: PLW0603 - one template environment per process
    if _ENV is None:
        _ENV = _environment()
    paths = paths or Paths()
    config = _ENV.get_template(TEMPLATE).render(
        edge=snapshot.edge,
        paths=paths.as_template(),
        checks={"rise": checks.RISE, "fall": checks.FALL, "fast_ms": checks.FAST_CHECK_MS},
        backends=_backends(snapshot),
        digest=snapshot_digest(snapshot),
        # A file name, resolved against crt-base: the stats page serves the default certificate.
        default_certificate=snapshot.certificates[0].file,
    )
    routes = sorted(r for app in snapshot.apps for r in _routes(app))
    hosts_map = "".join(f"{host} {backend}\n" for host, backend in routes)
    # File names only: HAProxy resolves them against crt-base (GREENLIGHT_CERTS_DIR).
    crt_list = "".join(" ".join([c.file, *c.hosts]) + "\n" for c in snapshot.certificates)
    return {
        "haproxy.cfg": config.encode(),
        "hosts.map": hosts_map.encode(),
        "crt-list": crt_list.encode(),
    }
