"""The SSM document's script, run locally against a real HAProxy, the AWS CLI on moto.

Each test starts from an instance that already serves version 1 of the config (applied by the
script itself, the way the bootstrap association does), then applies something else while
HTTPS load runs through the instance.
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from greenlight_sandbox.fleet import (
    LocalInstance,
    MotoBucket,
    ParameterError,
    free_port,
    local_snapshot,
    resolve_parameters,
)
from greenlight_sandbox.load import Load
from greenlight_sandbox.webapp import WebApp
from tests.unit.test_edge_instance import unit_directives

HOST = "shop.sandbox.test"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)


@pytest.fixture(scope="module")
def moto(request: pytest.FixtureRequest) -> Iterator[MotoBucket]:
    # One bucket per module that uses this fixture (test_fleet_switch.py does too): moto's state
    # is per process, and one process may run both modules.
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    bucket = MotoBucket(bucket=f"fleet-{module}").start()
    yield bucket
    bucket.stop()


@pytest.fixture
def backends() -> Iterator[dict[str, WebApp]]:
    """Blue serves v1 and green v2, each on its NodePort of loopback node 127.0.0.2."""
    apps = {
        colour: WebApp("127.0.0.2", free_port("127.0.0.2", 30000, 32767), version).start()
        for colour, version in (("blue", "v1"), ("green", "v2"))
    }
    yield apps
    for app in apps.values():
        app.stop()


class Edge:
    """One local instance and the snapshots to publish for it."""

    def __init__(self, moto: MotoBucket, backends: dict[str, WebApp], tmp: Path) -> None:
        self.moto, self.backends = moto, backends
        self.instance = LocalInstance(tmp / "edge").prepare()
        self.ports = {
            "https_port": free_port(),
            "http_port": free_port(),
            "stats_port": free_port(),
        }
        self.certs = {"default.pem": moto.put_certificate("default.pem", [HOST], tmp)}
        self.key = f"haproxy/{tmp.name}/config.tar.gz"  # one bundle history per test

    def snapshot(self, live: str, **overrides: Any) -> Any:
        return local_snapshot(
            nodes=[("node-1", "127.0.0.2")],
            node_ports={c: app.port for c, app in self.backends.items()},
            live=live,
            **(self.ports | overrides),
        )

    def publish(self, live: str) -> Any:
        return self.moto.publish(self.snapshot(live), self.certs, self.key)

    def moto_files(self) -> dict[str, bytes]:
        """The files of the live bundle."""
        from greenlight.edge.publish import ConfigStore

        return ConfigStore(self.moto.s3, self.moto.bucket, self.key).files()

    def publish_files(self, files: dict[str, bytes]) -> Any:
        return self.moto.publish_files(files, self.key)

    def apply(self, published: Any = None, **params: str) -> Any:
        if published is not None:
            params = {"VersionId": published.version_id, "Sha256": published.sha256} | params
        params = {"SigningKeyArn": self.moto.signing_key} | params  # as every caller passes it
        return self.instance.apply(self.moto.env, Bucket=self.moto.bucket, Key=self.key, **params)

    def load(self) -> Load:
        return Load("127.0.0.1", self.ports["https_port"], HOST, max_seconds=60)


@pytest.fixture
def edge(moto, backends, tmp_path) -> Iterator[Edge]:
    edge = Edge(moto, backends, tmp_path)
    first = edge.apply()  # latest + from-metadata: what the bootstrap association runs
    assert first.returncode == 1 and "cannot read" in first.status["reason"]  # nothing yet
    published = edge.publish("blue")
    started = edge.apply()
    assert started.ok and started.status["status"] == "applied", started.output
    assert started.status["sha256"] == published.sha256
    assert started.status["version_id"] == published.version_id
    yield edge
    edge.instance.stop()


def versions_served(stats) -> set[str]:
    return set(stats.versions)


def test_a_good_version_reloads_without_dropping_a_request(edge):
    old_workers = edge.instance.workers()
    green = edge.publish("green")
    with edge.load() as load:
        while load.stats.requests < 100:
            pass
        applied = edge.apply(green)
        seen = load.stats.requests
        while load.stats.requests < seen + 200:
            pass
    stats = load.stats
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert stats.failed == 0, stats.to_dict()
    assert versions_served(stats) == {"v1", "v2"}  # blue before the reload, green after
    assert stats.timeline[-1][1] == "v2"
    new_workers = edge.instance.workers()
    assert new_workers and not set(new_workers) & set(old_workers)
    assert str(new_workers[0]) == applied.status["worker"]
    assert edge.instance.current_release() == f"releases/{green.sha256}"
    previous = edge.instance.root / "previous"
    assert previous.is_symlink() and previous.resolve().name != green.sha256


def test_a_staged_release_changes_nothing_until_applied_then_needs_no_fetch(edge):
    green = edge.publish("green")
    workers, before = edge.instance.workers(), edge.instance.current_release()
    staged = edge.apply(green, Mode="stage")
    assert staged.ok and staged.status["status"] == "staged", staged.output
    assert edge.instance.workers() == workers and edge.instance.current_release() == before
    assert (edge.instance.root / "releases" / green.sha256 / ".verified").is_file()
    again = edge.apply(green, Mode="stage")
    assert again.ok and again.status["reason"] == "already staged"
    # The switch does not fetch again: it works with the bucket out of reach.
    with edge.load() as load:
        applied = edge.instance.apply(
            edge.moto.env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            Bucket=edge.moto.bucket,
            Key=edge.key,
            VersionId=green.version_id,
            Sha256=green.sha256,
            SigningKeyArn=edge.moto.signing_key,
        )
        seen = load.stats.requests
        while load.stats.requests < seen + 100:
            pass
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert edge.instance.current_release() == f"releases/{green.sha256}"
    assert load.stats.failed == 0 and load.stats.timeline[-1][1] == "v2"


def test_applying_the_live_version_again_changes_nothing(edge):
    blue = edge.publish("blue")  # unchanged: same bytes, same version
    workers = edge.instance.workers()
    again = edge.apply(blue)
    assert again.ok and again.status["status"] == "unchanged"
    assert edge.instance.workers() == workers


def test_a_hash_mismatch_is_refused_and_the_old_config_keeps_serving(edge):
    green = edge.publish("green")
    before = edge.instance.current_release()
    with edge.load() as load:
        refused = edge.apply(green, Sha256="0" * 64)
    assert refused.returncode == 3 and refused.status["status"] == "failed"
    assert "hash mismatch" in refused.status["reason"]
    assert edge.instance.current_release() == before
    assert load.stats.failed == 0 and versions_served(load.stats) == {"v1"}
    assert not (edge.instance.root / "releases" / green.sha256).exists()


def test_a_config_haproxy_rejects_is_refused_and_the_old_config_keeps_serving(edge):
    broken = edge.publish_files(
        {"haproxy.cfg": b"global\n    no-such-keyword\n", "hosts.map": b"", "crt-list": b""}
    )
    before = edge.instance.current_release()
    with edge.load() as load:
        refused = edge.apply(broken)
    assert refused.returncode == 4 and "haproxy -c refused" in refused.status["reason"]
    assert "no-such-keyword" in refused.output
    assert edge.instance.current_release() == before
    assert load.stats.failed == 0 and versions_served(load.stats) == {"v1"}


def test_a_listener_that_could_not_bind_is_refused_before_the_swap(edge):
    # haproxy -c does not bind; a port another process holds would only fail at the reload,
    # after HAProxy 2.6 has paused the serving worker. The script checks new listeners first.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        published = edge.moto.publish(edge.snapshot("green", stats_port=port), edge.certs, edge.key)
        before = edge.instance.current_release()
        with edge.load() as load:
            result = edge.apply(published)
    assert result.returncode == 4, result.output
    assert f"port {port} on 127.0.0.1 is held by another process" in result.status["reason"]
    assert edge.instance.current_release() == before
    assert load.stats.failed == 0 and versions_served(load.stats) == {"v1"}


def test_a_config_that_fails_at_start_is_undone_on_the_instance(edge):
    # A hand-made bundle that passes haproxy -c and the listener checks but cannot start (its
    # admin socket's directory does not exist): the script puts the previous release back.
    # (A short name: a socket's path may not exceed 97 characters, and the run directory is
    # deep under pytest's temporary directory.)
    blue = dict(edge.moto_files())
    config = blue["haproxy.cfg"].decode()
    config = config.replace(
        'stats socket "${GREENLIGHT_RUN_DIR}/admin.sock"',
        'stats socket "${GREENLIGHT_RUN_DIR}/no/a.sock"',
    )
    published = edge.publish_files(blue | {"haproxy.cfg": config.encode()})
    before = edge.instance.current_release()
    result = edge.apply(published, ReloadTimeoutSeconds="10")
    assert result.returncode == 5, result.output
    assert "previous one is back and serving" in result.status["reason"]
    assert edge.instance.current_release() == before
    with edge.load() as load:
        while load.stats.requests < 50:
            pass
    assert load.stats.failed == 0 and versions_served(load.stats) == {"v1"}


def test_a_bundle_with_a_path_in_it_is_refused(edge):
    # Signed (a signer that signs anything): the members are checked on their own.
    evil = edge.moto.store(edge.key).put(_tar_with("../escape", b"x"))
    result = edge.apply(None, VersionId=evil.version_id)
    assert result.returncode == 8, result.output
    assert "refused: the bundle holds '../escape'" in result.status["reason"]
    assert not (edge.instance.root / "escape").exists()


def test_parameters_are_checked_like_ssm_checks_them():
    with pytest.raises(ParameterError, match="Sha256"):
        resolve_parameters({"Bucket": "b-1", "Sha256": "abc; rm -rf /"})
    with pytest.raises(ParameterError, match="Bucket is required"):
        resolve_parameters({})
    values = resolve_parameters({"Bucket": "greenlight-bucket", "SigningKeyArn": KEY_ARN})
    assert values["VersionId"] == "latest" and values["Sha256"] == "from-metadata"


def test_the_script_defaults_match_the_rendered_config_defaults():
    from greenlight.edge.render import INSTANCE_DEFAULTS, Paths
    from greenlight_sandbox.fleet import script

    text = script({"Bucket": "greenlight-bucket", "SigningKeyArn": KEY_ARN})
    paths = Paths()
    for var, path in (
        ("GREENLIGHT_RUN_DIR", paths.run_dir),
        ("GREENLIGHT_STATE_DIR", paths.state_dir),
        ("GREENLIGHT_CERTS_DIR", paths.certs_dir),
    ):
        assert path == f"${{{var}}}"  # the config takes it from HAProxy's environment
        assert f"${{{var}:-{INSTANCE_DEFAULTS[var]}}}" in text


def _tar_with(name: str, content: bytes) -> bytes:
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_instance_user_data_matches_the_document_defaults():
    user_data = (Path(__file__).parents[2] / "docs/edge/user-data.sh").read_text()
    values = resolve_parameters({"Bucket": "greenlight-bucket", "SigningKeyArn": KEY_ARN})
    assert f"-S {values['MasterSocket']} " in user_data
    assert f"-C {values['ConfigRoot']}/current" in user_data
    assert f"EnvironmentFile=-{values['ConfigRoot']}/environment" in user_data
    assert "systemctl enable greenlight-haproxy.service" in user_data  # the script's default


class _Vanishing(BaseHTTPRequestHandler):
    """A pod going away under a reused connection: its health passes, and every other
    request is read and the connection closed without a byte of answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def _answer_or_vanish(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.vanished += 1  # type: ignore[attr-defined]
        self.close_connection = True

    do_GET = do_POST = _answer_or_vanish


def test_a_request_whose_server_vanishes_is_sent_again_only_if_safe_to_repeat(edge, tmp_path):
    # Two nodes serve the live colour: node-2 answers, node-1 closes every request unanswered.
    good = edge.backends["blue"]
    vanishing = ThreadingHTTPServer(("127.0.0.3", good.port), _Vanishing)
    vanishing.vanished = 0  # type: ignore[attr-defined]
    threading.Thread(target=vanishing.serve_forever, daemon=True).start()
    try:
        snapshot = edge.snapshot("blue")
        data = snapshot.model_dump(mode="json")
        data["nodes"] = [
            {"name": "node-1", "address": "127.0.0.3"},
            {"name": "node-2", "address": "127.0.0.2"},
        ]
        published = edge.moto.publish(type(snapshot).model_validate(data), edge.certs, edge.key)
        assert edge.apply(published).ok
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the test's own certificate

        def send(method: str) -> int:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", edge.ports["https_port"], context=tls, timeout=10
            )
            try:
                conn.request(
                    method, "/", body=b"{}" if method == "POST" else None, headers={"Host": HOST}
                )
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        gets = [send("GET") for _ in range(12)]
        assert gets == [200] * 12  # each GET node-1 dropped went to node-2
        assert vanishing.vanished >= 3  # round robin sent some there first
        before = vanishing.vanished
        posts = [send("POST") for _ in range(12)]
        assert 502 in posts  # a POST is never sent twice: its failure is the client's to see
        assert vanishing.vanished - before == posts.count(502)
    finally:
        vanishing.shutdown()
        vanishing.server_close()


# ---------------------------------------------------------------- instance hardening (issue 14)
def started(edge: Edge, instance: LocalInstance) -> Any:
    """``instance`` in place of the fixture's, serving blue as a new instance would."""
    edge.instance = instance.prepare()
    published = edge.publish("blue")
    first = edge.apply()
    assert first.ok and first.status["status"] == "applied", first.output
    return published


def ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of process ``pid``."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["Uid"].split()[0]), int(status["Gid"].split()[0])


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="HAProxy drops to another user only when started as root (CI runs as root)",
)
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_workers_serve_as_haproxy_under_the_units_capabilities(moto, backends, tmp_path):
    # HAProxy starts as the systemd unit starts it: root, no new privileges, and only the
    # unit's bounding set of capabilities. The master stays root; its workers run as haproxy,
    # reload seamlessly, and old workers stop (the master may still signal them).
    import grp
    import pwd

    caps = unit_directives()["CapabilityBoundingSet"][0].split()
    wrapper = "setpriv --no-new-privs --bounding-set=-all," + ",".join(
        "+" + cap.removeprefix("CAP_").lower() for cap in caps
    )
    edge = Edge(moto, backends, tmp_path)
    try:
        started(edge, LocalInstance(tmp_path / "hardened", start_wrapper=wrapper))
        haproxy = (pwd.getpwnam("haproxy").pw_uid, grp.getgrnam("haproxy").gr_gid)
        master = int(edge.instance.pid_file.read_text().split()[0])
        (old,) = edge.instance.workers()
        assert ids(master) == (0, 0) and ids(old) == haproxy
        green = edge.publish("green")
        with edge.load() as load:
            while load.stats.requests < 100:
                pass
            applied = edge.apply(green)
            seen = load.stats.requests
            while load.stats.requests < seen + 100:
                pass
        assert applied.ok and applied.status["status"] == "applied", applied.output
        assert load.stats.failed == 0 and load.stats.timeline[-1][1] == "v2"  # TLS: certs read
        (new,) = edge.instance.workers()
        assert ids(new) == haproxy
        assert gone(old, within=10), "the master could not stop its old worker"
        # The admin socket still answers after the drop: the script saved the servers' state.
        assert "shop-blue" in (edge.instance.base / "state" / "server-state").read_text()
    finally:
        edge.instance.stop()


def stats_get(address: str, port: int, *, tls: bool = True, auth: bool = True) -> tuple[int, str]:
    import base64

    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            address, port, context=context, timeout=5
        )
    else:
        conn = http.client.HTTPConnection(address, port, timeout=5)
    headers = {}
    if auth:  # config/sandbox-apps.yaml's sandbox-only password (fleet.STATS_HASH)
        headers["Authorization"] = "Basic " + base64.b64encode(b"admin:greenlight-example").decode()
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def test_the_stats_page_answers_only_on_its_address_only_over_tls_with_no_version(
    moto, backends, tmp_path
):
    edge = Edge(moto, backends, tmp_path)
    try:
        started(
            edge,
            LocalInstance(tmp_path / "stats", env={"GREENLIGHT_STATS_ADDRESS": "127.0.0.7"}),
        )
        port = edge.ports["stats_port"]
        status, page = stats_get("127.0.0.7", port)
        assert status == 200 and "Statistics Report" in page
        version = subprocess.run(
            ["haproxy", "-v"], capture_output=True, text=True, check=True
        ).stdout.split()[2]  # "HAProxy version 2.6.12-1+deb12u4 ..."
        assert version not in page and "version" not in page.lower()
        assert stats_get("127.0.0.7", port, auth=False)[0] == 401
        with pytest.raises((http.client.HTTPException, OSError)):
            stats_get("127.0.0.7", port, tls=False)  # plain HTTP: no answer
        with pytest.raises(ConnectionRefusedError):
            stats_get("127.0.0.1", port)  # not on the instance's other addresses
    finally:
        edge.instance.stop()


def test_a_wildcard_or_empty_stats_address_is_refused_before_anything_changes(
    moto, backends, tmp_path
):
    edge = Edge(moto, backends, tmp_path)
    for bad in ("", "0.0.0.0", "*"):
        edge.instance = LocalInstance(
            tmp_path / "bad", env={"GREENLIGHT_STATS_ADDRESS": bad}
        ).prepare()
        edge.publish("blue")
        refused = edge.apply()
        assert refused.returncode == 1, refused.output
        assert "GREENLIGHT_STATS_ADDRESS" in refused.status["reason"]
        assert edge.instance.current_release() is None and not edge.instance.workers()


# ---------------------------------------------------------------- what runs, not what is current
def swap_by_hand(instance: LocalInstance, release: str) -> None:
    """What an apply killed between its swap and its reload leaves: "current" names a release
    that HAProxy never loaded."""
    os.symlink(release, instance.root / "current.hand")
    os.replace(instance.root / "current.hand", instance.root / "current")


def test_a_swap_whose_reload_never_happened_is_applied_not_unchanged(edge):
    blue = edge.instance.current_release()
    green = edge.publish("green")
    assert edge.apply(green, Mode="stage").ok
    swap_by_hand(edge.instance, f"releases/{green.sha256}")
    workers = edge.instance.workers()
    with edge.load() as load:
        while load.stats.requests < 50:
            pass
        assert versions_served(load.stats) == {"v1"}  # still blue: nothing reloaded
        applied = edge.apply(green)
        seen = load.stats.requests
        while load.stats.requests < seen + 100:
            pass
    assert applied.ok and applied.status["status"] == "applied", applied.output
    assert load.stats.failed == 0 and load.stats.timeline[-1][1] == "v2"
    assert not set(edge.instance.workers()) & set(workers)
    running = (edge.instance.root / "running").read_text().split()
    assert running == [f"releases/{green.sha256}", applied.status["worker"]]
    assert (edge.instance.root / "previous").resolve().name == Path(blue).name
    again = edge.apply(green)  # now it runs: unchanged
    assert again.ok and again.status["status"] == "unchanged", again.output


def test_a_rollback_after_a_swap_whose_reload_never_happened(edge):
    blue_release = edge.instance.current_release()
    blue = edge.publish("blue")  # unchanged: the live version, as a rollback would name it
    green = edge.publish("green")
    assert edge.apply(green, Mode="stage").ok
    swap_by_hand(edge.instance, f"releases/{green.sha256}")
    with edge.load() as load:
        back = edge.apply(blue)
        seen = load.stats.requests
        while load.stats.requests < seen + 100:
            pass
    assert back.ok and back.status["status"] == "applied", back.output
    assert edge.instance.current_release() == blue_release
    assert load.stats.failed == 0 and versions_served(load.stats) == {"v1"}
    # Green never ran: it is not recorded as the previous release.
    assert not (edge.instance.root / "previous").exists()
    assert (edge.instance.root / "running").read_text().split()[0] == blue_release


def test_a_worker_that_is_not_the_recorded_one_is_not_taken_as_current(edge):
    # HAProxy started again outside the document (a crash, then systemd's Restart=always):
    # what the record names is no longer the running worker, so the apply reloads and confirms.
    blue = edge.publish("blue")
    edge.instance.stop()
    env = dict(
        line.split("=", 1) for line in (edge.instance.root / "environment").read_text().splitlines()
    )
    env = {k: v.strip('"') for k, v in env.items()}
    subprocess.run(["bash", "-c", env["GREENLIGHT_START_COMMAND"]], env=env, check=True)
    deadline = time.monotonic() + 10
    while not edge.instance.workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert edge.instance.workers()
    again = edge.apply(blue)
    assert again.ok and again.status["status"] == "applied", again.output
    assert (edge.instance.root / "running").read_text().split()[1] == again.status["worker"]


# ---------------------------------------------------------------- the environment file
def test_the_environment_file_is_read_not_run(moto, backends, tmp_path):
    # Lines a shell would run (each would create a marker) are data to the document; its
    # GREENLIGHT_* settings, quoted or not, are still honoured (HAProxy's sockets in its run
    # directory, the start command).
    edge = Edge(moto, backends, tmp_path)
    instance = LocalInstance(tmp_path / "odd").prepare()
    environment = instance.root / "environment"
    settings = environment.read_text().replace(
        f'GREENLIGHT_RUN_DIR="{instance.base}/run"', f"GREENLIGHT_RUN_DIR='{instance.base}/run'"
    )
    marker = tmp_path / "ran"
    environment.write_text(
        f"touch {marker}-1\n"
        f'GREENLIGHT_NOTE="$(touch {marker}-2)"\n'
        f"GREENLIGHT_OTHER=`touch {marker}-3`\n" + settings
    )
    try:
        started(edge, instance)
        assert not list(tmp_path.glob("ran-*"))
        assert (instance.base / "run" / "admin.sock").is_socket()
        running = (instance.root / "running").read_text().split()
        assert int(running[1]) in instance.workers()
    finally:
        edge.instance.stop()


@pytest.mark.parametrize(
    ("name", "value"),
    [("GREENLIGHT_RUN_DIR", "relative/run"), ("GREENLIGHT_CERTS_DIR", "/etc/$(id)")],
)
def test_a_directory_that_is_not_a_plain_absolute_path_is_refused(
    moto, backends, tmp_path, name, value
):
    edge = Edge(moto, backends, tmp_path)
    edge.instance = LocalInstance(tmp_path / "bad", env={name: value}).prepare()
    edge.publish("blue")
    refused = edge.apply()
    assert refused.returncode == 1, refused.output
    assert refused.status["reason"].startswith(
        f"{name} in {edge.instance.root}/environment must be an absolute path"
    )
    assert edge.instance.current_release() is None and not edge.instance.workers()
