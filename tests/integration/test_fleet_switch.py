"""The apply document's ``switch`` and ``check`` modes, run locally against a real HAProxy.

``switch``: a release that differs from the running one only in ``hosts.map`` replaces the map
in the running HAProxy through its admin socket (no reload); anything else reloads. ``check``:
read-only, are the servers of the named backends UP? (docs/edge.md, "Switch without a reload").
Releases that differ only in ``hosts.map`` are made here from the published bundle's files,
signed as the function signs them.
"""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
import threading
import time
from typing import Any

import pytest

from greenlight.edge.render import server_name
from greenlight_sandbox.fleet import local_snapshot
from greenlight_sandbox.webapp import WebApp
from tests.integration import test_fleet_apply as _apply
from tests.integration.test_fleet_apply import HOST, Edge

moto, backends, edge = _apply.moto, _apply.backends, _apply.edge  # its fixtures
pytestmark = _apply.pytestmark

PREVIEW = f"preview.{HOST}"


# ---------------------------------------------------------------- helpers
def routes(live: str, preview: str) -> bytes:
    return f"# routes: live {live}\n{PREVIEW} shop-{preview}\n\n{HOST} shop-{live}\n".encode()


def map_only(edge: Edge, live: str) -> Any:
    """Publish the live bundle with only its hosts.map changed: ``HOST`` to ``shop-<live>``."""
    other = "blue" if live == "green" else "green"
    return edge.publish_files(edge.moto_files() | {"hosts.map": routes(live, other)})


def admin(edge: Edge, command: str) -> str:
    sock = edge.instance.base / "run" / "admin.sock"
    return subprocess.run(
        ["socat", "-t", "5", "stdio", f"unix-connect:{sock}"],
        input=command + "\n",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout


def served_map(edge: Edge) -> list[str]:
    """The entries of hosts.map in the running HAProxy, sorted."""
    return sorted(
        " ".join(line.split()[1:])
        for line in admin(edge, "show map hosts.map").splitlines()
        if line.startswith("0x")
    )


def file_map(data: bytes) -> list[str]:
    lines = (line.strip() for line in data.decode().splitlines())
    return sorted(" ".join(line.split()) for line in lines if line and not line.startswith("#"))


def reloads(edge: Edge) -> int:
    """The master's reload count (``show proc``)."""
    for line in edge.instance.master("show proc").splitlines():
        if line.split()[1:2] == ["master"]:
            return int(line.split()[2])
    raise AssertionError("no master in show proc")


def records(edge: Edge) -> tuple[str | None, list[str], str | None]:
    """current, running ([release, worker]) and previous."""
    root = edge.instance.root
    previous = root / "previous"
    return (
        edge.instance.current_release(),
        (root / "running").read_text().split(),
        str(previous.readlink()) if previous.is_symlink() else None,
    )


class KeptAlive:
    """One client connection to the edge, kept alive across requests."""

    def __init__(self, edge: Edge) -> None:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the test's own certificate
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", edge.ports["https_port"], context=tls, timeout=10
        )

    def get(self) -> tuple[str, int]:
        """The version that answered, and the client port the request left from."""
        self.conn.request("GET", "/", headers={"Host": HOST})
        response = self.conn.getresponse()
        body = response.read().decode().strip()
        assert response.status == 200 and not response.will_close, (response.status, body)
        assert self.conn.sock is not None
        return body, self.conn.sock.getsockname()[1]

    def close(self) -> None:
        self.conn.close()


def check(edge: Edge, names: str, timeout: str = "0") -> Any:
    return edge.apply(None, Mode="check", Backends=names, UpTimeoutSeconds=timeout)


def until_reason(edge: Edge, names: str, pattern: str, within: float = 15) -> Any:
    """Check until the reason matches ``pattern`` (health checks take a few seconds to fail)."""
    deadline = time.monotonic() + within
    while True:
        result = check(edge, names)
        if re.search(pattern, result.status.get("reason", "")) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def with_nodes(edge: Edge, nodes: list[tuple[str, str]]) -> Any:
    """Serve a config with these nodes (a structural change: reloaded). The NodePorts stay: a
    reload keeps a server's address and port from the saved server state."""
    snapshot = local_snapshot(
        nodes=nodes,
        node_ports={c: app.port for c, app in edge.backends.items()},
        live="blue",
        **edge.ports,
    )
    published = edge.moto.publish(snapshot, edge.certs, edge.key)
    applied = edge.apply(published)
    assert applied.ok and applied.status["status"] == "applied", applied.output
    return published


# ---------------------------------------------------------------- switch
def test_a_map_only_change_is_switched_in_the_running_haproxy_without_a_reload(edge):
    blue = records(edge)
    (worker,) = edge.instance.workers()
    reloads_before = reloads(edge)
    green = map_only(edge, "green")
    assert edge.apply(green, Mode="stage").ok  # fetched and checked beforehand, as a push does
    client = KeptAlive(edge)  # HAProxy keeps an idle connection 10 s (timeout http-keep-alive)
    try:
        version, port_before = client.get()
        assert version == "v1"
        switched = edge.apply(green, Mode="switch")
        assert switched.returncode == 0 and switched.ok, switched.output
        assert switched.status["status"] == "switched", switched.output
        assert switched.status["reason"] == "runtime: hosts.map replaced (2 entries), no reload"
        assert switched.status["worker"] == str(worker)
        # No reload: the same worker, the master's reload count unchanged.
        assert edge.instance.workers() == [worker] and reloads(edge) == reloads_before
        release = f"releases/{green.sha256}"
        assert records(edge) == (release, [release, str(worker)], blue[0])
        new_map = (edge.instance.root / release / "hosts.map").read_bytes()
        assert (
            served_map(edge)
            == file_map(new_map)
            == sorted([f"{HOST} shop-green", f"{PREVIEW} shop-blue"])
        )
        # The connection opened before the switch: its next request goes to green.
        version, port = client.get()
        assert version == "v2" and port == port_before  # the same connection
    finally:
        client.close()
    # A reload reads the files on disk: the switch stays.
    edge.instance.master("reload")
    deadline = time.monotonic() + 10
    while edge.instance.workers() in ([worker], []) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker not in edge.instance.workers()
    fresh = KeptAlive(edge)
    try:
        assert fresh.get()[0] == "v2"
    finally:
        fresh.close()
    assert served_map(edge) == sorted([f"{HOST} shop-green", f"{PREVIEW} shop-blue"])


def test_a_structural_change_is_reloaded(edge):
    (worker,) = edge.instance.workers()
    files = edge.moto_files()
    config = (
        files["haproxy.cfg"]
        .decode()
        .replace("    timeout connect 5s\n", "    timeout connect 4s\n")
    )
    assert config != files["haproxy.cfg"].decode()
    published = edge.publish_files(
        files | {"haproxy.cfg": config.encode(), "hosts.map": routes("green", "blue")}
    )
    applied = edge.apply(published, Mode="switch")
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert applied.status["reason"] == "reloaded: haproxy.cfg differs"
    assert worker not in edge.instance.workers()
    release = f"releases/{published.sha256}"
    assert records(edge)[:2] == (release, [release, applied.status["worker"]])
    assert served_map(edge) == sorted([f"{HOST} shop-green", f"{PREVIEW} shop-blue"])


def test_comment_lines_alone_are_no_structural_change(edge):
    (worker,) = edge.instance.workers()
    files = edge.moto_files()
    config = "# another comment\n\n" + files["haproxy.cfg"].decode().replace(
        "# snapshot ", "#   snapshot "
    )
    published = edge.publish_files(
        files | {"haproxy.cfg": config.encode(), "hosts.map": routes("green", "blue")}
    )
    switched = edge.apply(published, Mode="switch")
    assert switched.ok and switched.status["status"] == "switched", switched.output
    assert edge.instance.workers() == [worker]


def test_an_instance_whose_runtime_switch_fails_is_reloaded_and_says_why(edge):
    # The admin socket is out of reach (moved away): the map cannot be replaced at runtime, so
    # the release goes through the reload path, whose new worker serves the new map.
    (worker,) = edge.instance.workers()
    run = edge.instance.base / "run"
    (run / "admin.sock").rename(run / "moved.sock")
    green = map_only(edge, "green")
    with edge.load() as load:
        while load.stats.requests < 50:
            pass
        applied = edge.apply(green, Mode="switch")
        seen = load.stats.requests
        while load.stats.requests < seen + 100:
            pass
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert applied.status["reason"] == (
        f"reloaded: the runtime switch failed: no admin socket at {run}/admin.sock"
    )
    assert worker not in edge.instance.workers()
    assert load.stats.failed == 0 and load.stats.timeline[-1][1] == "v2"
    release = f"releases/{green.sha256}"
    assert records(edge)[:2] == (release, [release, applied.status["worker"]])


def test_without_a_running_record_the_switch_reloads(edge):
    (edge.instance.root / "running").unlink()
    green = map_only(edge, "green")
    applied = edge.apply(green, Mode="switch")
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert applied.status["reason"] == "reloaded: nothing recorded as running"


@pytest.mark.parametrize(
    "obstacle",
    [
        "current.new",  # the swap of "current" fails: stopped between commit and swap
        "running.new",  # the record fails: stopped between swap and record
    ],
)
def test_a_switch_stopped_after_its_commit_leaves_nothing_recorded_as_running(edge, obstacle):
    # A directory where the script writes its next link or record makes that step fail after
    # the map was committed, as a script killed (or an instance lost) at that point would. The
    # old record must not survive it: the old release pushed again would be taken as
    # "unchanged" while HAProxy serves the new map.
    blue_release, (_, worker), _ = records(edge)
    blue_map = file_map((edge.instance.root / blue_release / "hosts.map").read_bytes())
    green = map_only(edge, "green")
    stuck = edge.instance.root / obstacle
    stuck.mkdir()
    (stuck / "keep").write_text("")  # not empty: mv cannot replace it either
    stopped = edge.apply(green, Mode="switch")
    assert stopped.returncode != 0, stopped.output
    assert edge.instance.workers() == [int(worker)]  # no reload
    assert served_map(edge) == sorted([f"{HOST} shop-green", f"{PREVIEW} shop-blue"])
    assert not (edge.instance.root / "running").exists()
    shutil.rmtree(stuck)

    blue = edge.publish("blue")  # the old release again, as a reconcile push would send it
    assert f"releases/{blue.sha256}" == blue_release
    again = edge.apply(blue, Mode="switch")
    assert again.ok and again.status["status"] == "applied", again.output
    assert again.status["reason"] == "reloaded: nothing recorded as running"
    assert int(worker) not in edge.instance.workers()
    assert served_map(edge) == blue_map
    assert records(edge)[:2] == (blue_release, [blue_release, again.status["worker"]])


def test_apply_mode_still_reloads_a_map_only_change(edge):
    (worker,) = edge.instance.workers()
    applied = edge.apply(map_only(edge, "green"))
    assert applied.ok and applied.status == applied.status | {
        "status": "applied",
        "reason": "reloaded",
    }
    assert worker not in edge.instance.workers()


# ---------------------------------------------------------------- check
def test_check_is_up_when_every_server_of_the_backends_is_up(edge):
    # Waits for green's first health check: until it passes, HAProxy says "UP 1/3" (INI).
    result = check(edge, "shop-blue,shop-green", timeout="10")
    assert result.returncode == 0 and result.status["status"] == "up", result.output
    assert result.status["reason"] == "shop-blue,shop-green: every server UP"
    running, worker = (edge.instance.root / "running").read_text().split()
    assert result.status["sha256"] == running.removeprefix("releases/")
    assert result.status["worker"] == worker


def test_check_names_the_servers_that_are_not_up_and_why(edge):
    green = edge.backends["green"]
    sick = WebApp("127.0.0.3", green.port, "v2").start()
    sick.healthy = False  # answers its health path with 503
    try:
        with_nodes(edge, [("node-1", "127.0.0.2"), ("node-2", "127.0.0.3")])
        green.stop()  # node-1's green: nothing listens any more
        n1, n2 = (
            server_name("node-1", "127.0.0.2", green.port),
            server_name("node-2", "127.0.0.3", green.port),
        )
        result = until_reason(edge, "shop-green", rf"{n1} DOWN L4CON.*L7STS")
        assert result.returncode == 9 and result.status["status"] == "not-up", result.output
        assert result.status["reason"] == (
            f"shop-green: 2 of 2 servers not UP ({n1} DOWN L4CON, {n2} DOWN L7STS 503)"
        )
    finally:
        sick.stop()


def test_check_of_an_unknown_backend_or_one_without_servers(edge):
    result = check(edge, "shop-blue,shop-purple,no-route")
    assert result.returncode == 9, result.output
    assert result.status == result.status | {
        "status": "not-up",
        "reason": "shop-purple: no such backend; no-route: no servers",
    }


def test_check_when_haproxy_is_not_running(edge):
    edge.instance.stop()
    result = check(edge, "shop-blue")
    assert result.returncode == 9 and result.status["status"] == "not-up", result.output
    assert result.status["reason"].startswith("HAProxy is not running")


def test_check_needs_backends(edge):
    result = edge.apply(None, Mode="check")
    assert result.returncode == 1 and "Mode=check needs Backends" in result.status["reason"]


def test_check_waits_for_a_server_that_comes_up_within_its_timeout(edge):
    green = edge.backends["green"]
    green.stop()
    down = until_reason(edge, "shop-green", "DOWN L4CON")
    n1 = server_name("node-1", "127.0.0.2", green.port)
    assert down.status["reason"] == f"shop-green: 1 of 1 servers not UP ({n1} DOWN L4CON)"
    bounded = check(edge, "shop-green", timeout="1")
    assert bounded.returncode == 9 and 1 <= bounded.seconds < 5, bounded.output
    late: list[WebApp] = []
    timer = threading.Timer(1.0, lambda: late.append(WebApp("127.0.0.2", green.port, "v2").start()))
    timer.start()
    try:
        result = check(edge, "shop-green", timeout="30")
        assert result.returncode == 0 and result.status["status"] == "up", result.output
        assert 1 <= result.seconds < 30
    finally:
        timer.join()
        for app in late:
            app.stop()


# ---------------------------------------------------------------- switch, backends first
def test_a_switch_whose_backends_are_not_up_changes_nothing(edge):
    green_app = edge.backends["green"]
    green_app.stop()
    until_reason(edge, "shop-green", "DOWN L4CON")
    before, served, workers = records(edge), served_map(edge), edge.instance.workers()
    green = map_only(edge, "green")
    refused = edge.apply(green, Mode="switch", Backends="shop-green", UpTimeoutSeconds="1")
    assert refused.returncode == 9, refused.output
    assert refused.status["status"] == "not-up"
    n1 = server_name("node-1", "127.0.0.2", green_app.port)
    assert refused.status["reason"] == f"shop-green: 1 of 1 servers not UP ({n1} DOWN L4CON)"
    assert records(edge) == before and served_map(edge) == served
    assert edge.instance.workers() == workers
    # Once green is UP, the same switch goes through.
    app = WebApp("127.0.0.2", green_app.port, "v2").start()
    try:
        switched = edge.apply(green, Mode="switch", Backends="shop-green", UpTimeoutSeconds="30")
        assert switched.ok and switched.status["status"] == "switched", switched.output
        assert edge.instance.workers() == workers
    finally:
        app.stop()


def test_ten_switches_back_and_forth_under_load_fail_no_request(edge):
    (worker,) = edge.instance.workers()
    reloads_before = reloads(edge)
    green, blue = map_only(edge, "green"), map_only(edge, "blue")
    for release in (green, blue):
        assert edge.apply(release, Mode="stage").ok
    seconds = []
    with edge.load() as load:
        for i in range(10):
            seen = load.stats.requests
            while load.stats.requests < seen + 30:
                pass
            result = edge.apply(green if i % 2 == 0 else blue, Mode="switch")
            assert result.status["status"] == "switched", result.output
            seconds.append(result.seconds)
        seen = load.stats.requests
        while load.stats.requests < seen + 30:
            pass
    stats = load.stats
    assert stats.failed == 0, stats.to_dict()
    assert set(stats.versions) == {"v1", "v2"} and stats.timeline[-1][1] == "v1"
    assert edge.instance.workers() == [worker] and reloads(edge) == reloads_before
    print(f"switch seconds (staged): {sorted(round(s, 3) for s in seconds)}")
