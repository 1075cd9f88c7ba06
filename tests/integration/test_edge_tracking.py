"""The live backends' servers follow their colour's health checks in a real HAProxy.

The backends are the rendered ones (``<app>-<colour>`` with their checks, ``<app>-live-<colour>``
whose servers ``track`` them), run under a minimal global section so that the test needs no
certificate or privileged port.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from greenlight.edge.render import render, server_name
from greenlight.edge.snapshot import parse_snapshot
from greenlight_sandbox.fleet import free_port

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy")
ROOT = Path(__file__).resolve().parents[2]


class _Colour(BaseHTTPRequestHandler):
    """Answers with its colour; /healthz fails while the server's ``healthy`` is cleared."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: Any = self.server
        ok = self.path != "/healthz" or server.healthy.is_set()
        body = server.colour.encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def _node_port_server(colour: str) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 at a free port in the NodePort range."""
    rng = random.Random()
    for _ in range(200):
        try:
            httpd = ThreadingHTTPServer(("127.0.0.1", rng.randint(30000, 32767)), _Colour)
        except OSError:
            continue
        httpd.colour = colour  # type: ignore[attr-defined]
        httpd.healthy = threading.Event()  # type: ignore[attr-defined]
        httpd.healthy.set()  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd
    raise AssertionError("no free port in the NodePort range")


@pytest.fixture
def colours() -> Iterator[dict[str, ThreadingHTTPServer]]:
    servers = {c: _node_port_server(c) for c in ("blue", "green")}
    yield servers
    for httpd in servers.values():
        httpd.shutdown()
        httpd.server_close()


def _rendered_backends(ports: dict[str, int]) -> str:
    data = json.loads((ROOT / "events" / "cluster-snapshot.json").read_text())
    data["nodes"] = [{"name": "n1", "address": "127.0.0.1"}]
    data["edge"]["slowstart_seconds"] = 0
    data["apps"] = [
        {
            "name": "shop",
            "live_colour": "green",  # promoted and watched: blue warm behind it
            "backup_colour": "blue",
            "preview_colour": "green",
            "gating": True,
            "hosts": {"live": ["shop.example.com"], "preview": "preview.shop.example.com"},
            "health": {"path": "/healthz", "interval_seconds": 1},
            "node_ports": ports,
        }
    ]
    files = render(parse_snapshot(json.dumps(data)))
    assert files["hosts.map"].decode().splitlines()[1] == "shop.example.com shop-live-green"
    config = files["haproxy.cfg"].decode()
    return "".join(
        f"\nbackend {b}" for b in config.split("\nbackend ")[1:] if b.startswith("shop-")
    )


@pytest.fixture
def edge(colours, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    sock, pid_file, port = tmp_path / "admin.sock", tmp_path / "haproxy.pid", free_port()
    ports = {c: httpd.server_address[1] for c, httpd in colours.items()}
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f'global\n    stats socket "{sock}" mode 600 level admin\n'
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n"
        f"frontend www\n    bind 127.0.0.1:{port}\n    default_backend shop-live-green\n"
        + _rendered_backends(ports)
    )
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0 and "[WARNING]" not in checked.stderr, checked.stderr
    subprocess.run(
        ["haproxy", "-D", "-p", str(pid_file), "-f", str(config)], check=True, timeout=10
    )
    try:
        yield sock, port
    finally:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def statuses(sock: Path) -> dict[tuple[str, str], str]:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        conn.sendall(b"show stat\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {(r["pxname"], r["svname"]): r["status"] for r in rows}


def wait_for(sock: Path, want: dict[tuple[str, str], str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    seen: dict[tuple[str, str], str] = {}
    while time.monotonic() < deadline:
        seen = statuses(sock)
        if all(seen.get(key, "").startswith(status) for key, status in want.items()):
            return
        time.sleep(0.1)
    raise AssertionError(f"wanted {want}; HAProxy shows {seen}")


def get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "shop.example.com"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_a_live_backend_follows_its_colours_checks(edge, colours):
    sock, port = edge
    g1, b1 = (
        server_name("n1", "127.0.0.1", colours[c].server_address[1]) for c in ("green", "blue")
    )
    wait_for(
        sock,
        {
            ("shop-green", g1): "UP",
            ("shop-blue", b1): "UP",
            ("shop-live-green", g1): "UP",
            ("shop-live-green", f"{b1}.blue"): "UP",
        },
        10,
    )
    assert get(port) == "green"
    colours["green"].healthy.clear()  # type: ignore[attr-defined]
    # Green's own checks fail (briskly: the candidate through its watch): the tracking server
    # goes DOWN with it, and the live route falls to the warm blue.
    wait_for(sock, {("shop-green", g1): "DOWN", ("shop-live-green", g1): "DOWN"}, 10)
    assert statuses(sock)[("shop-live-green", f"{b1}.blue")].startswith("UP")
    assert get(port) == "blue"
    colours["green"].healthy.set()
    wait_for(sock, {("shop-green", g1): "UP", ("shop-live-green", g1): "UP"}, 10)
    assert get(port) == "green"
