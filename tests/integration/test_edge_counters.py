"""HAProxy's own counters: the stats document (EdgeStatsDocument) on a real HAProxy.

The instance serves a hand-written config (the rendered one health-checks every server, so a
server on a closed port would soon be DOWN and take no requests): `use-server` sends each
request to a known server, so every figure is checked against the requests sent.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from greenlight_sandbox.fleet import LocalInstance, ParameterError, free_port, read_stats

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)
SLOW_MS = 40  # every answer of the green server takes this long


class _Answers(BaseHTTPRequestHandler):
    """/fail: 500, /missing: 404, anything else 200, each after SLOW_MS."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/healthz":
            time.sleep(SLOW_MS / 1000)
        status = {"/fail": 500, "/missing": 404}.get(self.path, 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


CONFIG = """\
global
    stats socket "${{GREENLIGHT_RUN_DIR}}/admin.sock" mode 600 level admin
defaults
    mode http
    timeout connect 200ms  # also the pause before a retry
    timeout client 5s
    timeout server 5s
frontend www
    bind 127.0.0.1:{port}
    use_backend shop-blue if {{ path_beg /blue }}
    default_backend shop-green
backend shop-blue
    server b1 127.0.0.1:{up} check inter 200ms
backend shop-green
    retries 1
    use-server g2 if {{ path_beg /down }}
    use-server g1 unless {{ path_beg /down }}
    server g1 127.0.0.1:{up} check inter 200ms
    server g2 127.0.0.1:{closed}
backend shop-live-green
    server g1 127.0.0.1:{up} track shop-green/g1
    server b1 127.0.0.1:{up} backup track shop-blue/b1
"""


def start(instance: LocalInstance, config: str) -> None:
    release = instance.root / "current"
    release.mkdir(parents=True)
    (release / "haproxy.cfg").write_text(config)
    env = dict(
        line.split("=", 1)
        for line in (instance.root / "environment").read_text().replace('"', "").splitlines()
    )
    command = ["haproxy", "-W", "-D", "-S", str(instance.master_socket)]
    subprocess.run(
        [*command, "-p", str(instance.pid_file), "-f", str(release / "haproxy.cfg")],
        env={"PATH": os.environ["PATH"], "GREENLIGHT_RUN_DIR": env["GREENLIGHT_RUN_DIR"]},
        check=True,
        timeout=10,
    )


@pytest.fixture
def edge(server: int, tmp_path: Path) -> Iterator[tuple[LocalInstance, int]]:
    instance = LocalInstance(tmp_path / "edge").prepare()
    port = free_port()
    start(instance, CONFIG.format(port=port, up=server, closed=free_port()))
    yield instance, port
    instance.stop()


def up_within(instance: LocalInstance, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = read_stats(instance, {}, Backends="shop-blue,shop-green")
        statuses = {r["server"]: r["status"] for r in result.status.get("rows", [])}
        if statuses.get("b1") == "UP" and statuses.get("g1") == "UP":
            return
        time.sleep(0.1)
    raise AssertionError(f"servers not UP: {result.status}")


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_counters_match_the_requests_sent(edge):
    instance, port = edge
    up_within(instance, 10)
    sent = {"/ok": 10, "/fail": 4, "/missing": 3, "/down": 5}
    answers = [get(port, path) for path, times in sent.items() for _ in range(times)]
    assert answers.count(200) == 10 and answers.count(404) == 3
    assert answers.count(500) == 4 and answers.count(503) == 5  # HAProxy's own, for /down

    result = read_stats(instance, {}, Backends="shop-green,shop-live-green,nope-green")

    assert result.returncode == 0, result.output
    out = result.status
    assert out["status"] == "ok"
    assert out["worker"] in instance.workers()
    assert out["uptime_seconds"] >= 0
    assert out["missing"] == ["nope-green"]
    assert "servers_left_out" not in out
    rows = {(r["backend"], r["server"]): r for r in out["rows"]}
    assert set(rows) == {
        ("shop-green", "BACKEND"),
        ("shop-green", "g1"),
        ("shop-green", "g2"),
        ("shop-live-green", "BACKEND"),
        ("shop-live-green", "g1"),
        ("shop-live-green", "b1"),
    }  # only the named backends: shop-blue's rows are not there
    backend = rows["shop-green", "BACKEND"]
    # The backend counts every request, those whose connection failed too (HAProxy's 503).
    assert backend["requests"] == 22
    assert backend["http_5xx"] == 4 + 5
    assert backend["http_4xx"] == 3
    assert backend["connection_errors"] == 5
    assert backend["retries"] == 5  # retries 1: each failed connection tried once more
    assert backend["redispatches"] == 0 and backend["response_errors"] == 0
    assert backend["backup"] == 0 and backend["status"] == "UP"
    g1, g2 = rows["shop-green", "g1"], rows["shop-green", "g2"]
    g1_figures = (g1["requests"], g1["http_5xx"], g1["http_4xx"], g1["connection_errors"])
    assert g1_figures == (17, 4, 3, 0)
    assert SLOW_MS <= g1["response_ms"] <= g1["total_ms"] < SLOW_MS * 10
    # A server's failed connections are its own, not its requests (req_tot counts answers).
    assert (g2["requests"], g2["connection_errors"], g2["retries"]) == (0, 5, 5)
    assert g2["status"] == "no check"
    live = rows["shop-live-green", "g1"], rows["shop-live-green", "b1"]
    assert [(r["backup"], r["status"], r["requests"]) for r in live] == [(0, "UP", 0), (1, "UP", 0)]


def test_without_an_admin_socket_it_says_so_and_fails(tmp_path):
    instance = LocalInstance(tmp_path / "edge").prepare()  # HAProxy never started

    result = read_stats(instance, {}, Backends="shop-green")

    assert result.returncode == 3
    assert result.status["status"] == "failed"
    assert result.status["reason"].startswith(f"no admin socket at {instance.base}/run/admin.sock")


@pytest.mark.parametrize(
    "backends",
    ["", "Shop-green", "shop-green;reboot", "shop green", ",".join(["a-blue"] * 21)],
)
def test_backends_are_checked_like_ssm_checks_them(tmp_path, backends):
    instance = LocalInstance(tmp_path / "edge").prepare()
    with pytest.raises(ParameterError, match="Backends"):
        read_stats(instance, {}, Backends=backends)


def hostile_environment(instance: LocalInstance, marker: Path, run_dir: str) -> None:
    """The instance's environment file with lines that a shell would run (each creates
    ``marker``-N) and GREENLIGHT_RUN_DIR set last, in single quotes."""
    (instance.root / "environment").write_text(
        f"touch {marker}-1\n"
        f'GREENLIGHT_NOTE="$(touch {marker}-2)"\n'
        f"GREENLIGHT_STATE_DIR=`touch {marker}-3`\n"
        f"GREENLIGHT_RUN_DIR='{run_dir}'\n"
    )


def test_the_environment_file_is_read_not_run(edge, tmp_path):
    instance, _ = edge
    marker = tmp_path / "ran"
    hostile_environment(instance, marker, str(instance.base / "run"))

    result = read_stats(instance, {}, Backends="shop-green")

    assert result.returncode == 0 and result.status["status"] == "ok", result.output
    assert result.status["worker"] in instance.workers()  # GREENLIGHT_RUN_DIR honoured
    assert not list(tmp_path.glob("ran-*"))


@pytest.mark.parametrize("run_dir", ["run/haproxy", "/run/$(reboot)", "/run/a b", ""])
def test_a_run_dir_that_is_not_a_plain_absolute_path_is_refused(tmp_path, run_dir):
    instance = LocalInstance(tmp_path / "edge").prepare()
    (instance.root / "environment").write_text(f'GREENLIGHT_RUN_DIR="{run_dir}"\n')

    result = read_stats(instance, {}, Backends="shop-green")

    assert result.returncode == 2, result.output
    assert result.status["status"] == "failed"
    assert result.status["reason"].startswith(
        f"GREENLIGHT_RUN_DIR in {instance.root}/environment must be an absolute path"
    )
