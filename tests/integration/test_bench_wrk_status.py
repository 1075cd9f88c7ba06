"""The real wrk with tests/benchmarks/wrk_status.lua against a tiny local server that answers 200s,
503s and 502s: wrk's per-second lines match, second by second and status by status, what the
server sent (stopped with SIGINT, as bench_flips stops it)."""

from __future__ import annotations

import http.server
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.benchmarks.wrk_timeline import SCRIPT, WrkSecond, parse_timeline

pytestmark = pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed")

ANSWERING = 2.2  # seconds the server answers; later requests wait unanswered until the end


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.sent: dict[int, Counter[int]] = {}  # epoch second -> status -> answers
        self.count = 0
        self.until = time.time() + ANSWERING
        self.closing = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        # Answer only 0.05-0.5 s into a second, so that wrk gets the answer within the second
        # the server counted it in (wrk's os.time() is read when the answer arrives).
        fraction = time.time() % 1
        if fraction < 0.05:
            time.sleep(0.05 - fraction)
        elif fraction >= 0.5:
            time.sleep(1.05 - fraction)
        if time.time() >= self.server.until:
            self.server.closing.wait()  # never answered: wrk has nothing in flight to drop
            return
        with self.server.lock:
            self.server.count += 1
            n = self.server.count
            status = 503 if n % 3 == 0 else 502 if n % 7 == 0 else 200
            self.server.sent.setdefault(int(time.time()), Counter())[status] += 1
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    yield srv
    srv.closing.set()
    srv.shutdown()
    srv.server_close()


def test_wrk_status_script_counts_each_seconds_answers_by_status(server: Server) -> None:
    port = server.server_address[1]
    wrk = subprocess.Popen(
        [
            *("wrk", "-s", str(SCRIPT), "-t1", "-c2", "-d", "60s", "--timeout", "5s"),
            *("-H", "Connection: close", f"http://127.0.0.1:{port}/"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(max(0.0, server.until - time.time()) + 0.3)
    wrk.send_signal(signal.SIGINT)
    out, err = wrk.communicate(timeout=10)
    assert wrk.returncode == 0, err

    timeline = parse_timeline(out)

    expected = [
        WrkSecond(t, sum(c.values()), {s: n for s, n in sorted(c.items()) if s != 200})
        for t, c in sorted(server.sent.items())
    ]
    assert timeline.seconds == expected
    assert len(expected) >= 2  # more than one second's answers
    assert {s for w in expected for s in w.status} == {502, 503}  # both kinds were sent
    total = sum(server.sent.values(), Counter())
    assert timeline.requests == server.count == sum(total.values())
    assert timeline.errors["status"] == total[502] + total[503]  # wrk's own count agrees
    assert timeline.errors["connect"] == 0
