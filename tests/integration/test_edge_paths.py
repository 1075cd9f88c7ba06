"""Every health path the apps file accepts renders a config the real HAProxy accepts and obeys.

The accepted set is RFC 3986's (docs/configuration.md): a path of unreserved, sub-delims, ":",
"@", "/" and %XX, then optionally "?" and a query that may also hold "?". "'" is among them and
HAProxy reads it as a quote: the renderer escapes it. Hypothesis draws paths from that set.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlight import validate as rules
from greenlight.appconfig import parse_apps
from greenlight.edge.snapshot import parse_snapshot
from greenlight_sandbox.render import render_to
from tests.unit.test_appconfig import SANDBOX_APPS

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "events" / "cluster-snapshot.json"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
SUB_DELIMS = "!$&'()*+,;="
PCHAR = st.one_of(
    st.sampled_from(list(UNRESERVED + SUB_DELIMS + ":@")),
    st.from_regex(r"\A%[0-9A-Fa-f]{2}\Z"),
)
SEGMENTS = st.lists(st.lists(PCHAR, max_size=12).map("".join), min_size=1, max_size=5)
QUERY = st.lists(st.one_of(PCHAR, st.sampled_from(["/", "?"])), max_size=20).map("".join)
PATHS = st.builds(
    lambda segments, query: "/" + "/".join(segments) + ("" if query is None else "?" + query),
    SEGMENTS,
    st.none() | QUERY,
)


@pytest.fixture(scope="module")
def haproxy() -> str:
    path = shutil.which("haproxy")
    assert path, "HAProxy is required (apt-get install haproxy; .ci/run installs it)"
    return path


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("edge")


def with_path(path: str):
    data = json.loads(SNAPSHOT.read_text())
    for app in data["apps"]:
        app.setdefault("health", {})["path"] = path
    return parse_snapshot(json.dumps(data))


def haproxy_check(haproxy: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS)
def test_every_accepted_path_renders_a_config_haproxy_accepts(haproxy, out, path):
    assert rules.http_path(path) == path  # the generated set is what the apps file accepts
    apps = parse_apps(SANDBOX_APPS.replace("path: /healthz", f"path: {json.dumps(path)}", 1))
    assert apps.app("shop").health.path == path
    render_to(with_path(path), out)
    checked = haproxy_check(haproxy, out / "haproxy.cfg")
    assert checked.returncode == 0, path + "\n" + checked.stdout + checked.stderr


def _check_line(path: str, out: Path) -> str:
    config = render_to(with_path(path), out)["haproxy.cfg"].read_text()
    return next(line for line in config.splitlines() if "http-check send" in line).strip()


def test_haproxy_sends_the_path_exactly_as_written(haproxy, out):
    """The rendered check line, run by HAProxy against a socket: the request line is the path."""
    path = "/a'b/$HOME!*(x);=,+&~:@/%20?q='1'&r=/?s"
    line = _check_line(path, out)
    assert "\\'" in line  # escaped for HAProxy, not for the wire
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    port = server.getsockname()[1]
    received: list[bytes] = []

    def answer() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                received.append(conn.recv(4096))
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except OSError:
            pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    config = out / "check-only.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n"
        "    timeout server 1s\n"
        f"frontend unused\n    bind unix@{out / 'unused.sock'}\n"
        "backend b\n    option httpchk\n"
        f"    {line}\n"
        f"    server s 127.0.0.1:{port} check inter 200\n"
    )
    process = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        thread.join(timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)
        server.close()
    assert received, "HAProxy sent no health check"
    request_line, headers = received[0].split(b"\r\n", 1)
    assert request_line.decode() == f"GET {path} HTTP/1.1"
    host = line.rsplit(" hdr Host ", 1)[1]
    assert f"\r\nhost: {host}\r\n".encode() in b"\r\n" + headers.lower()
