"""The sandbox's web app and load (greenlight_sandbox.webapp, .load): a version made to fail its
real requests names itself on its 500s, and a load that tolerates that version's own errors
still counts every other failure."""

from __future__ import annotations

import http.client
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenlight_sandbox.load import Load
from greenlight_sandbox.render import self_signed
from greenlight_sandbox.webapp import WebApp

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")


def serve(tmp_path: Path, version: str, error_ratio: float) -> WebApp:
    """``version`` on HTTPS (the load speaks TLS, as it does to HAProxy), failing
    ``error_ratio`` of its real requests."""
    pem = tmp_path / f"{version}.pem"
    self_signed(pem, ["app.test"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pem)
    app = WebApp("127.0.0.1", 0, version)
    app.socket = tls.wrap_socket(app.socket, server_side=True)
    app.error_ratio = error_ratio
    return app.start()


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[WebApp]:
    app = serve(tmp_path, "v9", 0.2)
    yield app
    app.stop()


def test_a_failed_answer_names_the_version_that_gave_it(failing):
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    answers = []
    for _ in range(5):  # 20%: the first request past 0.2 x the count fails
        conn = http.client.HTTPSConnection("127.0.0.1", failing.port, context=tls, timeout=5)
        conn.request("GET", "/", headers={"Host": "app.test"})
        response = conn.getresponse()
        answers.append((response.status, response.getheader("X-Version"), response.read()))
        conn.close()
    assert (500, "v9", b"failure injected: v9\n") in answers
    assert (200, "v9", b"v9\n") in answers


def run_load(app: WebApp, tolerated: set[str]) -> Load:
    load = Load("127.0.0.1", app.port, "app.test", keepalive_workers=1, new_connection_workers=1)
    load.stats.tolerated |= tolerated
    load.start()
    time.sleep(0.5)
    load.stop()
    return load


def test_the_tolerated_versions_own_errors_are_counted_apart(failing):
    load = run_load(failing, {"v9"})
    assert load.stats.failed == 0, load.stats.to_dict()
    assert load.stats.tolerated_failures["v9"] >= 1


def test_errors_of_any_other_version_still_fail(failing):
    load = run_load(failing, {"v8"})
    assert load.stats.failed >= 1 and load.stats.tolerated_failures == {}
    assert set(load.stats.errors) <= {"keep-alive: HTTP 500", "new connection: HTTP 500"}


def test_a_connection_level_failure_still_fails(failing):
    failing.stop()  # nobody listens any more: every request fails below HTTP
    load = Load("127.0.0.1", failing.port, "app.test", keepalive_workers=0)
    load.stats.tolerated.add("v9")
    load.start()
    time.sleep(0.2)
    load.stop()
    assert load.stats.failed >= 1 and not load.stats.tolerated_failures
