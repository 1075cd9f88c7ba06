"""The UP check fails closed, and a forced rollback reads nothing first: the real haproxy
handler, moto (S3 errors raised at the client's edge: a botocore event hook), the stand-in and
the moto fleet (tests/integration/test_haproxy_function.py)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from greenlight.errors import TemporaryError
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from tests.integration.test_edge_pin import pin_of
from tests.integration.test_haproxy_function import (  # noqa: F401 - fixtures
    BUNDLE,
    commands,
    deployed,
    edge,
    fleet,
    versions,
)


def process() -> tuple[Any, Any]:
    """A fresh haproxy process (nothing served in its memory): its handler and its runtime."""
    module = load("haproxy")
    return (lambda event: module.handler(event, LambdaContext())), module.runtime.get()


def s3_down_for(runtime: Any, key: str) -> Any:
    """Every GetObject of ``key`` on the runtime's S3 client fails (S3 errs); ``()`` ends it."""

    def fail(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            error = {"Error": {"Code": "InternalError", "Message": "We encountered an error"}}
            raise ClientError(error, "GetObject")

    events, name = runtime.clients.s3.meta.events, "provide-client-params.s3.GetObject"
    events.register(name, fail)
    return lambda: events.unregister(name, fail)


def test_a_push_whose_served_release_cannot_be_read_publishes_nothing(
    edge,  # noqa: F811
    deployed,  # noqa: F811
    fleet,  # noqa: F811
    kube,
    aws_env,
):
    assert edge({"action": "push", "reason": "first"})["status"] == "published"
    kube.cordon("worker-1")  # the next render differs
    published, sent = len(versions(aws_env)), len(commands())
    push, runtime = process()
    s3_up = s3_down_for(runtime, BUNDLE)
    with pytest.raises(TemporaryError, match=r"the served release could not be read.*retried"):
        push({"action": "push", "reason": "second"})
    assert len(versions(aws_env)) == published and len(commands()) == sent  # nothing at all
    # S3 back: the same push goes through (the retry).
    s3_up()
    assert push({"action": "push", "reason": "second"})["status"] == "published"


def test_nothing_published_yet_is_no_error_and_checks_nothing(
    deployed,  # noqa: F811
    fleet,  # noqa: F811
    aws_env,
):
    push, _ = process()
    first = push({"action": "push", "reason": "first"})
    assert first["status"] == "published" and "checked" not in first["fleet"], first


def three_releases(edge, kube) -> list[dict[str, Any]]:  # noqa: F811
    out = [edge({"action": "push", "reason": "first"})]
    kube.cordon("worker-1")
    out.append(edge({"action": "push", "reason": "second"}))
    assert [o["status"] for o in out] == ["published"] * 2
    return out


def test_a_forced_rollback_reads_neither_the_apps_file_nor_the_bundles_first(
    edge,  # noqa: F811
    deployed,  # noqa: F811
    fleet,  # noqa: F811
    kube,
    aws_env,
):
    first, _ = three_releases(edge, kube)
    boto3.client("s3").put_object(
        Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"],
        Key=aws_env.get("GREENLIGHT_CONFIG_KEY") or "config/apps.yaml",
        Body=b"apps: [oops\n",
    )
    back = {"action": "rollback", "release": first["version_id"], "reason": "incident"}
    rollback, runtime = process()
    refused = rollback(back)
    assert refused["status"] == "rejected" and pin_of(aws_env) is None, refused
    assert "apps file could not be read" in refused["error"]
    assert "force: true (--force) pins anyway" in refused["error"]
    # Forced: pinned, though the apps file is broken and S3 errs on the bundles' reads.
    s3_down_for(runtime, BUNDLE)
    forced = rollback(back | {"force": True})
    assert forced["status"] == "rolled-back" and forced["check"] == {"status": "skipped: force"}
    assert forced["pin"]["status"] == "pinned" and pin_of(aws_env) is not None, forced
