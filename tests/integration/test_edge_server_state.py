"""A colour's new NodePort takes effect on the reload, despite HAProxy's saved server state.

The rendered config loads ``server-state-file`` on a reload, and the apply document saves
``show servers state`` into it just before. HAProxy restores each server's saved port by backend
and server name (HAProxy issue 985), so the names carry the port (``render.server_name``). Run
with the document's own script against a real HAProxy (``test_fleet_apply``'s instance).
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

import tests.integration.test_fleet_apply as _apply
from greenlight.edge.render import render
from greenlight.edge.state import MANIFEST, certificate_manifest
from greenlight_sandbox.fleet import free_port
from greenlight_sandbox.webapp import WebApp
from tests.integration.test_fleet_apply import HOST, Edge

moto, backends, edge = _apply.moto, _apply.backends, _apply.edge  # its fixtures
pytestmark = _apply.pytestmark


@pytest.fixture
def recreated() -> Iterator[list[WebApp]]:
    """Blue's Service recreated: the same pods behind new NodePorts (each answers its own
    version, so that a response says which port it came through)."""
    apps: list[WebApp] = []
    yield apps
    for app in apps:
        app.stop()


def recreate_blue(edge: Edge, recreated: list[WebApp], version: str) -> WebApp:
    app = WebApp("127.0.0.2", free_port("127.0.0.2", 30000, 32767), version).start()
    recreated.append(app)
    edge.backends = edge.backends | {"blue": app}  # the fixture stops the ones it started
    return app


def served(edge: Edge, count: int = 10) -> list[str]:
    """The versions ``count`` requests to the live host get, once one gets any answer."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the self-signed certificate
    out: list[str] = []
    deadline = time.monotonic() + 10
    while len(out) < count:
        conn = http.client.HTTPSConnection("127.0.0.1", edge.ports["https_port"], context=tls)
        try:
            conn.request("GET", "/", headers={"Host": HOST})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status == 200:
            out.append(response.getheader("X-Version", ""))
        elif out or time.monotonic() > deadline:
            out.append(f"HTTP {response.status}")
        else:
            time.sleep(0.1)
    return out


def publish_named_by_node(edge: Edge) -> Any:
    """What ``edge.publish("blue")`` publishes, with each server named after its node alone
    (the names before they carried the port): the control."""
    files = render(edge.snapshot("blue"))
    config = re.sub(r"\b([a-z0-9.-]+)_\d+_[0-9a-f]{6}\b", r"\1", files["haproxy.cfg"].decode())
    assert "node-1 127.0.0.2:" in config and "_" not in config.split("backend shop-blue", 1)[1]
    files["haproxy.cfg"] = config.encode()
    return edge.publish_files(files | {MANIFEST: certificate_manifest(edge.certs)})


def saved_ports(edge: Edge, backend: str) -> dict[str, int]:
    """Server name -> port in the state file the document saved before its last reload."""
    lines = (edge.instance.base / "state" / "server-state").read_text().splitlines()
    header = lines[1].lstrip("# ").split()
    rows = [dict(zip(header, line.split(), strict=True)) for line in lines[2:] if line.strip()]
    return {r["srv_name"]: int(r["srv_port"]) for r in rows if r["be_name"] == backend}


def test_a_new_node_port_is_served_after_the_reload_and_the_old_names_would_not(edge, recreated):
    old = edge.backends["blue"]
    assert set(served(edge)) == {"v1"}
    # Blue's Service is recreated with a new NodePort; the old port still answers (as v1), so
    # that a request the reload kept on it would show.
    new = recreate_blue(edge, recreated, "v1-new-port")
    applied = edge.apply(edge.publish("blue"))
    assert applied.ok and applied.status["status"] == "applied", applied.output
    # The document saved the state with blue's server at its old port: it was not applied.
    saved = saved_ports(edge, "shop-blue")
    assert list(saved.values()) == [old.port]
    assert set(served(edge)) == {"v1-new-port"}

    # Control: named after the node alone (as before), the saved port wins on the reload.
    applied = edge.apply(publish_named_by_node(edge))  # renamed: nothing saved applies yet
    assert applied.ok, applied.output
    assert set(served(edge)) == {"v1-new-port"}
    recreate_blue(edge, recreated, "v1-third-port")
    applied = edge.apply(publish_named_by_node(edge))
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert saved_ports(edge, "shop-blue") == {"node-1": new.port}
    assert set(served(edge)) == {"v1-new-port"}  # the config says the third port: not served
