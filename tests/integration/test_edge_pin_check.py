"""A rollback checks first: the backends the chosen release newly sends live hosts to must be UP
on every instance (the same check round as a push's), else nothing is pinned or published;
``force`` pins anyway; the dry run says what it would check. The real haproxy handler, the
sandbox (moto server, stand-in) and two local instances running real HAProxy."""

from __future__ import annotations

import boto3

from tests.conftest import node_port_service
from tests.integration.test_fleet_e2e import (  # noqa: F401 - fixtures
    app_state,
    body,
    bundle_versions,
    fleet,
    function,
    pods,
    pytestmark,
    sandbox,
)


def pinned(sandbox) -> object:  # noqa: F811
    from greenlight.store.pin import EdgePin

    return EdgePin(boto3.client("dynamodb"), sandbox.env["GREENLIGHT_TABLE"]).get()


def test_a_rollback_to_a_release_whose_live_backend_is_not_up_is_refused_unless_forced(
    sandbox,  # noqa: F811
    fleet,  # noqa: F811
    pods,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv("GREENLIGHT_EDGE_UP_WAIT_SECONDS", "2")
    node_port_service(sandbox.kube, "shop", "shop-blue", node_port=30080)
    node_port_service(sandbox.kube, "shop", "shop-green", node_port=30081)
    pods("blue", 30080)  # green's pods never answer: its servers are DOWN
    handler = function(sandbox, fleet)
    app_state(sandbox, live_colour="green", phase="live")
    old = handler({"action": "push", "reason": "green live"})  # nothing served: not checked
    assert old["fleet"]["status"] == "applied", old
    app_state(sandbox, live_colour="blue", phase="live")
    new = handler({"action": "push", "reason": "blue live"})
    assert new["fleet"]["status"] == "applied", new
    assert new["fleet"]["checked"]["backends"] == ["shop-blue"]  # blue checked UP first
    for instance in fleet.values():
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"
    published = bundle_versions(sandbox)
    back = {"action": "rollback", "release": old["version_id"], "reason": "test"}

    plan = handler(back | {"dry_run": True})
    assert plan["status"] == "would-roll-back", plan
    assert plan["check"] == {"backends": ["shop-green"], "unchecked": [], "status": "would-check"}

    refused = handler(back)
    assert refused["status"] == "not-published", refused
    assert refused["pin"] == {"status": "not-pinned"} and pinned(sandbox) is None
    assert refused["check"]["status"] == "not-up"
    run = refused["fleet"]
    assert run["status"] == "not-up" and run["checked"]["backends"] == ["shop-green"], run
    for i, instance in fleet.items():
        why = run["checked"]["instances"][i]["detail"]
        assert why.startswith("shop-green: 2 of 2 servers not UP"), why
        assert f"{i}: {why}" in refused["check"]["detail"]
        assert body(instance.bind_address, "shop.sandbox.test") == "blue"  # blue keeps serving
    assert bundle_versions(sandbox) == published  # nothing published

    forced = handler(back | {"force": True})
    assert forced["status"] == "rolled-back" and forced["pin"]["status"] == "pinned", forced
    assert forced["check"]["status"] == "skipped: force"
    assert forced["fleet"]["status"] == "applied" and "checked" not in forced["fleet"]
    assert pinned(sandbox) is not None and bundle_versions(sandbox) == published + 1
