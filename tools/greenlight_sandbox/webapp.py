"""A tiny HTTP app for the sandbox: serves its version on ``/`` and its health on the health path.

Used as a backend behind the local HAProxy instances (edge tests, benchmarks) and as the process
a sandbox pod runs. ``python -m greenlight_sandbox.webapp --port N --version v2`` runs one.

Faults are injected from outside through ``--fault-file``: while that file holds a status code,
the health path answers with it (read on every health request). A 3xx there is what a health
endpoint behind a misconfigured login redirect answers: a kubelet counts it as Ready (200-399),
a check that expects 200 does not.

Real requests (any path but the health path, which stays healthy and fast) can be made to fail
and to be slow: ``--error-ratio R`` answers HTTP 500 to that fraction of them (exactly: every
request that takes the count of failures past ``R`` times the count of requests), and
``--delay-ms N`` answers each after N ms (a failed one says ``failure injected: <version>``;
every answer has the version in ``X-Version``). ``--requests-file`` overrides both while it holds
JSON ``{"error_ratio": R, "delay_ms": N}`` (re-read when it changes): a version that starts
failing after it went live.

On SIGTERM it stops as a well-behaved service does when its pod is deleted: no new connections,
the requests in flight answered (each with ``Connection: close``, so no client reuses the
connection), then exit, within ``DRAIN_SECONDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DRAIN_SECONDS = 1.0  # within the data plane's SIGKILL, 2 s after the SIGTERM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebApp

    def do_GET(self) -> None:
        app = self.server
        with app.counting():
            self._answer(app)

    def _answer(self, app: WebApp) -> None:
        if self.path == app.health_path:
            status, body = (200, b"ok\n") if app.healthy else (503, b"unhealthy\n")
            fault = app.fault()
            if fault is not None:
                status, body = fault, b"fault injected\n"
        else:
            fail, delay_ms = app.request_fault()
            if delay_ms > 0:
                time.sleep(delay_ms / 1000)
            # The version answers, failed or not: its body and X-Version say which it is.
            said = f"failure injected: {app.version}\n" if fail else f"{app.version}\n"
            status, body = (500 if fail else 200), said.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version", app.version)
        if app.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class WebApp(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: str, port: int, version: str, *, health_path: str = "/healthz"
    ) -> None:
        super().__init__((address, port), _Handler)
        self.version = version
        self.health_path = health_path
        self.healthy = True
        self.fault_file: Path | None = None
        self._thread: threading.Thread | None = None
        self.stopping = False
        self.active = 0  # requests being answered
        self._count = threading.Lock()
        self.error_ratio = 0.0  # the fraction of real requests answered 500
        self.delay_ms = 0.0  # added to every real request
        self.requests_file: Path | None = None  # overrides both while it holds them (JSON)
        self._requests_seen: tuple[float, float, float] | None = None  # (mtime, ratio, ms)
        self._served = 0  # real requests so far
        self._failed = 0  # ... answered 500

    @contextlib.contextmanager
    def counting(self) -> Any:
        with self._count:
            self.active += 1
        try:
            yield
        finally:
            with self._count:
                self.active -= 1

    def drain(self) -> None:
        """Stop taking connections; wait (at most DRAIN_SECONDS) for the requests in flight."""
        self.stopping = True
        threading.Thread(target=self.shutdown, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client (HAProxy's health check, a load worker) that hangs up is not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def request_fault(self) -> tuple[bool, float]:
        """Whether this real request fails (500), and the delay to add (ms)."""
        ratio, delay_ms = self._request_settings()
        with self._count:
            self._served += 1
            fail = ratio > 0 and self._failed < ratio * self._served
            self._failed += int(fail)
        return fail, delay_ms

    def _request_settings(self) -> tuple[float, float]:
        """(error ratio, delay ms): the requests file's while it holds them, else the flags'."""
        if self.requests_file is None:
            return self.error_ratio, self.delay_ms
        try:
            mtime = self.requests_file.stat().st_mtime
        except OSError:
            return self.error_ratio, self.delay_ms
        seen = self._requests_seen
        if seen is None or seen[0] != mtime:
            try:
                raw = json.loads(self.requests_file.read_text())
                ratio = min(1.0, max(0.0, float(raw.get("error_ratio", 0))))
                delay = max(0.0, float(raw.get("delay_ms", 0)))
            except (OSError, ValueError, TypeError, AttributeError):
                return self.error_ratio, self.delay_ms
            seen = self._requests_seen = (mtime, ratio, delay)
        return seen[1], seen[2]

    def fault(self) -> int | None:
        """The status the health path is made to answer, if a fault is injected."""
        if self.fault_file is None:
            return None
        try:
            code = int(self.fault_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return code if 100 <= code <= 599 else None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> WebApp:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenlight-webapp")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--health-path", default="/healthz")
    parser.add_argument("--unhealthy", action="store_true", help="health answers 503")
    parser.add_argument(
        "--fault-file", type=Path, help="while it holds a status code, health answers that"
    )
    parser.add_argument(
        "--error-ratio", type=float, default=0.0, help="answer 500 to this fraction of requests"
    )
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="answer every request this much later"
    )
    parser.add_argument(
        "--requests-file",
        type=Path,
        help='while it holds {"error_ratio": R, "delay_ms": N}, those instead of the flags',
    )
    args = parser.parse_args(argv)
    app = WebApp(args.address, args.port, args.version, health_path=args.health_path)
    app.healthy = not args.unhealthy
    app.fault_file = args.fault_file
    app.error_ratio = min(1.0, max(0.0, args.error_ratio))
    app.delay_ms = max(0.0, args.delay_ms)
    app.requests_file = args.requests_file
    signal.signal(signal.SIGTERM, lambda *_: app.drain())
    with contextlib.suppress(KeyboardInterrupt):
        app.serve_forever()
    deadline = time.monotonic() + DRAIN_SECONDS
    while app.active and time.monotonic() < deadline:
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
