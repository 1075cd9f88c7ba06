"""The haproxy function, the apply document and two real HAProxy instances, together.

The sandbox (moto server, stand-in, resources) with two local instances registered in moto's EC2
under the fleet tag. The function publishes, then its fleet reload runs the document (through
``LocalSsm``: the script from template.yaml, the AWS CLI on the moto server) on the canary and
then the other instance; both end up serving the published version over TLS. A promotion (a
change of hosts.map alone) is checked UP on both, then switched on both at once without a
reload; one whose candidate is DOWN publishes nothing and changes nothing.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.fleet import LocalSsm
from greenlight_sandbox.functions import load
from tests.conftest import node_port_service, own_env
from tests.integration import edge_fleet

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)
HTTPS_PORT = 18443  # config/sandbox-apps.yaml
sandbox, fleet = edge_fleet.sandbox, edge_fleet.fleet  # its fixtures


def deployed(kube) -> None:
    node_port_service(kube, "shop", "shop-blue", node_port=30080)


def get(address: str, host: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(address, HTTPS_PORT, context=context, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_push_reaches_both_instances_canary_first(sandbox, fleet):
    deployed(sandbox.kube)
    module = load("haproxy")
    runtime_holder = {}

    def handler(event):
        if "runtime" not in runtime_holder:
            from greenlight.edge.entry import EdgeRuntime
            from greenlight.settings import EdgeFunctionSettings

            runtime = EdgeRuntime.build(EdgeFunctionSettings.from_env(own_env("haproxy")))
            runtime.fleet_ssm = LocalSsm(fleet, sandbox.env)
            runtime_holder["runtime"] = runtime
            module.runtime.supply(runtime)
        return module.handler(event, LambdaContext(timeout_seconds=300))

    result = handler({"action": "push", "reason": "test"})
    assert result["status"] == "published", result
    reload = result["fleet"]
    assert reload["status"] == "applied", reload["instances"]
    first, second = sorted(fleet)
    assert reload["canary"] == first and reload["counts"] == {"Success": 2}
    sent = runtime_holder["runtime"].fleet_ssm.sent
    # Both stage at once (fetch and check), then the switch: canary, then the rest.
    modes = [(c["InstanceIds"], c["Parameters"].get("Mode", ["apply"])[0]) for c in sent]
    assert modes == [([first, second], "stage"), ([first], "switch"), ([second], "switch")]
    assert reload["waves"] == "canary-first"  # nothing served before: structural
    assert reload["reloaded"] == 2  # HAProxy started on each, from the release
    assert reload["staged"] == 2
    for instance in fleet.values():
        assert instance.current_release() == f"releases/{result['sha256']}"
        assert instance.workers()
        # TLS on the instance's own address; an unknown host gets the 404 backend.
        assert get(instance.bind_address, "nobody.sandbox.test") == 404

    again = handler({"action": "push", "reason": "again"})
    assert again["status"] == "unchanged" and "fleet" not in again  # healthy fleet: left alone


# ---------------------------------------------------------------- promotion: check, then switch


class NodeApp(ThreadingHTTPServer):
    """A colour's pod behind a node's NodePort: 200 with the colour's name, on any path."""

    daemon_threads = True

    def __init__(self, address: str, port: int, colour: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                try:
                    super().handle()
                except OSError:  # a health check that did not wait for the answer
                    pass

            def do_GET(self) -> None:
                body = colour.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        super().__init__((address, port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def pods(sandbox) -> Iterator[Any]:
    """``serve(colour, port)``: that colour answers on every node's ``port``."""
    servers: list[NodeApp] = []

    def serve(colour: str, port: int) -> None:
        for n in range(1, 3):  # the sandbox's two nodes
            servers.append(NodeApp(f"127.0.{sandbox.subnet}.{n}", port, colour))

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def body(address: str, host: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(address, HTTPS_PORT, context=context, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def app_state(sandbox, **fields: str) -> None:
    """The shop's state item as the rollout and the gate leave it (what the snapshot reads)."""
    boto3.client("dynamodb").update_item(
        TableName=sandbox.env["GREENLIGHT_TABLE"],
        Key={"pk": {"S": "app#shop"}, "sk": {"S": "state"}},
        UpdateExpression="SET " + ", ".join(f"{k} = :{k}" for k in fields),
        ExpressionAttributeValues={f":{k}": {"S": v} for k, v in fields.items()},
    )


def function(sandbox, fleet) -> Any:
    """The haproxy handler on the local fleet (one runtime: one warm process)."""
    from greenlight.edge.entry import EdgeRuntime
    from greenlight.settings import EdgeFunctionSettings

    module = load("haproxy")
    runtime = EdgeRuntime.build(EdgeFunctionSettings.from_env(own_env("haproxy")))
    runtime.fleet_ssm = LocalSsm(fleet, sandbox.env)
    module.runtime.supply(runtime)
    return lambda event: module.handler(event, LambdaContext(timeout_seconds=300))


PROMOTE = {"action": "push", "reason": "promote", "promote": {"app": "shop", "colour": "green"}}


def candidate(sandbox, fleet) -> Any:
    """Blue live, green being gated (its backend rendered, with brisk checks): pushed."""
    node_port_service(sandbox.kube, "shop", "shop-blue", node_port=30080)
    node_port_service(sandbox.kube, "shop", "shop-green", node_port=30081)
    app_state(sandbox, live_colour="blue", phase="gating")
    handler = function(sandbox, fleet)
    # As the rollout function pushes: the promotion's release staged ahead (a prospect).
    prospect = {"app": "shop", "colour": "green"}
    first = handler({"action": "push", "reason": "candidate", "prospect": prospect})
    assert first["fleet"]["status"] == "applied", first["fleet"]
    assert first["prospect"]["status"] == "staged" and first["prospect"]["staged"] == 2
    for instance in fleet.values():
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"
    # The gate promotes: green live, blue its warm backup.
    app_state(
        sandbox,
        live_colour="green",
        backup_colour="blue",
        phase="promoting",
        live_phase="promoting",
    )
    return handler


def test_a_promotion_is_checked_up_then_switched_on_every_instance_without_a_reload(
    sandbox, fleet, pods
):
    pods("blue", 30080)
    pods("green", 30081)
    handler = candidate(sandbox, fleet)
    workers = {i: instance.workers() for i, instance in fleet.items()}
    promoted = handler(PROMOTE)
    assert promoted["status"] == "published", promoted
    run = promoted["fleet"]
    assert run["status"] == "applied" and run["waves"] == "all-at-once", run
    assert run["checked"]["up"] and run["switched"] == 2 and run["reloaded"] == 0, run
    for i, instance in fleet.items():
        assert run["instances"][i]["how"] == "switched"
        assert instance.workers() == workers[i]  # no reload: the same worker serves
        assert instance.current_release() == f"releases/{promoted['sha256']}"
        assert body(instance.bind_address, "shop.sandbox.test") == "green"
    # Each part's seconds (render, check round, publish, switch round) are in the answer.
    assert {"snapshot", "render", "served", "check", "publish", "fleet"} <= set(promoted["seconds"])
    assert set(run["seconds"]) == {"check", "switch"}
    # A later reload starts from the files on disk: green stays live.
    for instance in fleet.values():
        before = instance.workers()
        instance.master("reload")
        deadline = time.monotonic() + 10
        while instance.workers() in (before, []) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert instance.workers() != before
        assert body(instance.bind_address, "shop.sandbox.test") == "green"


def test_a_promotion_whose_candidate_is_down_publishes_nothing_and_changes_nothing(
    sandbox, fleet, pods, monkeypatch
):
    from greenlight.store.fleet import FleetLog

    monkeypatch.setenv("GREENLIGHT_EDGE_UP_WAIT_SECONDS", "2")  # how long the check waits
    pods("blue", 30080)  # green's pods never answer: its servers are DOWN
    handler = candidate(sandbox, fleet)
    log = FleetLog(boto3.client("dynamodb"), sandbox.env["GREENLIGHT_TABLE"])
    state = log.state()
    workers = {i: instance.workers() for i, instance in fleet.items()}
    releases = {i: instance.current_release() for i, instance in fleet.items()}
    versions = boto3.client("s3").list_object_versions(
        Bucket=sandbox.env["GREENLIGHT_CONFIG_BUCKET"], Prefix="haproxy/config.tar.gz"
    )["Versions"]
    started = time.monotonic()
    answer = handler(PROMOTE)
    assert time.monotonic() - started < 15  # the check waited its 2 s, then gave up
    assert answer["status"] == "not-published", answer
    run = answer["fleet"]
    assert run["status"] == "not-up" and run["version_id"] == "" and not run["checked"]["up"]
    for i, instance in fleet.items():
        why = run["checked"]["instances"][i]["detail"]
        assert why.startswith("shop-green: 2 of 2 servers not UP"), why
        assert run["instances"][i] == {
            "outcome": "NotAttempted",
            "detail": f"not switched: {why}",
            "command_id": "",
        }
        assert instance.workers() == workers[i]
        assert instance.current_release() == releases[i]
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"  # blue keeps serving
    after = boto3.client("s3").list_object_versions(
        Bucket=sandbox.env["GREENLIGHT_CONFIG_BUCKET"], Prefix="haproxy/config.tar.gz"
    )["Versions"]
    assert len(after) == len(versions)  # nothing published
    # The fleet log keeps the check, but the fleet's state is as it was: not degraded.
    assert log.state() == state and not state["degraded"]


# ------------------------------------------- any push: the backends live hosts newly go to

RECONCILE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def bundle_versions(sandbox) -> int:
    return len(
        boto3.client("s3").list_object_versions(
            Bucket=sandbox.env["GREENLIGHT_CONFIG_BUCKET"], Prefix="haproxy/config.tar.gz"
        )["Versions"]
    )


def test_a_reconcile_push_that_would_send_live_hosts_to_a_backend_not_up_publishes_nothing(
    sandbox, fleet, pods, monkeypatch
):
    monkeypatch.setenv("GREENLIGHT_EDGE_UP_WAIT_SECONDS", "2")
    pods("blue", 30080)  # green's pods never answer: its servers are DOWN
    # Green live in the state (a promotion the gate has not settled, a revert not yet
    # pushed...): the next push, whoever sends it, would move the live hosts onto green.
    handler = candidate(sandbox, fleet)
    workers = {i: instance.workers() for i, instance in fleet.items()}
    releases = {i: instance.current_release() for i, instance in fleet.items()}
    published = bundle_versions(sandbox)
    answer = handler(RECONCILE)  # no promote named
    assert answer["status"] == "not-published" and answer["why"] == "reconcile schedule", answer
    run = answer["fleet"]
    assert run["status"] == "not-up" and run["checked"]["backends"] == ["shop-green"], run
    for i, instance in fleet.items():
        why = run["checked"]["instances"][i]["detail"]
        assert why.startswith("shop-green: 2 of 2 servers not UP"), why
        assert run["instances"][i]["detail"] == f"not switched: {why}"
        assert instance.workers() == workers[i]
        assert instance.current_release() == releases[i]
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"  # blue keeps serving
    assert bundle_versions(sandbox) == published  # nothing published


def test_a_push_that_moves_only_the_preview_route_onto_a_candidate_not_up_goes_through(
    sandbox, fleet, pods, monkeypatch
):
    monkeypatch.setenv("GREENLIGHT_EDGE_UP_WAIT_SECONDS", "2")
    pods("blue", 30080)  # green DOWN
    node_port_service(sandbox.kube, "shop", "shop-blue", node_port=30080)
    node_port_service(sandbox.kube, "shop", "shop-green", node_port=30081)
    # Watched: the preview host reaches the live colour (blue) alone.
    app_state(sandbox, live_colour="blue", phase="gating", live_phase="watching")
    handler = function(sandbox, fleet)
    assert handler({"action": "push", "reason": "first"})["fleet"]["status"] == "applied"
    for instance in fleet.values():
        assert body(instance.bind_address, "preview.shop.sandbox.test") == "blue"
    app_state(sandbox, live_phase="live")  # the preview host back on the candidate, green
    answer = handler(RECONCILE)
    assert answer["status"] == "published", answer
    run = answer["fleet"]
    assert run["status"] == "applied" and "checked" not in run, run  # nothing asked, none held
    for instance in fleet.values():
        assert get(instance.bind_address, "preview.shop.sandbox.test") == 503  # green is DOWN
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"


def test_a_revert_with_restore_goes_live_onto_a_colour_not_all_up_and_without_is_held(
    sandbox, fleet, pods, monkeypatch
):
    monkeypatch.setenv("GREENLIGHT_EDGE_UP_WAIT_SECONDS", "2")
    node_port_service(sandbox.kube, "shop", "shop-blue", node_port=30080)
    node_port_service(sandbox.kube, "shop", "shop-green", node_port=30081)
    pods("green", 30081)
    # Blue answers on the first node only: its server on the second is DOWN.
    blue = NodeApp(f"127.0.{sandbox.subnet}.1", 30080, "blue")
    try:
        app_state(sandbox, live_colour="green", phase="live")  # green promoted and live
        handler = function(sandbox, fleet)
        assert handler({"action": "push", "reason": "green live"})["fleet"]["status"] == "applied"
        for instance in fleet.values():
            assert body(instance.bind_address, "shop.sandbox.test") == "green"
        # The gate reverts: blue live again, the live hosts go back to shop-blue.
        app_state(sandbox, live_colour="blue")
        published = bundle_versions(sandbox)
        held = handler({"action": "push", "reason": "revert, unnamed"})
        assert held["status"] == "not-published" and "restoring" not in held, held
        assert held["fleet"]["not_up"] == {i: ["shop-blue"] for i in fleet}, held["fleet"]
        assert bundle_versions(sandbox) == published
        restore = {"app": "shop", "colour": "blue"}
        back = handler({"action": "push", "reason": "revert", "restore": restore})
        assert back["status"] == "published", back
        # Not checked, and said so: the app's move back to the colour that served before.
        assert back["restoring"] == restore | {"unchecked": ["shop-blue"]}
        run = back["fleet"]
        assert run["status"] == "applied" and "checked" not in run, run
        assert bundle_versions(sandbox) == published + 1
        for instance in fleet.values():  # blue's one server UP serves the live hosts
            assert body(instance.bind_address, "shop.sandbox.test") == "blue"
    finally:
        blue.shutdown()
        blue.server_close()
