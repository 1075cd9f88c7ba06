"""The haproxy function, the apply document and two real HAProxy instances, together.

The sandbox (moto server, stand-in, resources) with two local instances registered in moto's EC2
under the fleet tag. The function publishes, then its fleet reload runs the document (through
``LocalSsm``: the script from template.yaml, the AWS CLI on the moto server) on the canary and
then the other instance; both end up serving the published version over TLS.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
from collections.abc import Iterator

import boto3
import pytest

from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.fleet import LocalInstance, LocalSsm
from greenlight_sandbox.fullstack import free_subnet
from greenlight_sandbox.functions import load
from greenlight_sandbox.sandbox import Sandbox
from tests.conftest import node_port_service, own_env

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)
TAG = "greenlight:edge-fleet"
HTTPS_PORT = 18443  # config/sandbox-apps.yaml


@pytest.fixture
def sandbox(monkeypatch) -> Iterator[Sandbox]:
    with Sandbox(nodes=2) as sb:
        for key, value in sb.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("GREENLIGHT_EDGE_DOCUMENT", "greenlight-apply")
        monkeypatch.setenv("GREENLIGHT_EDGE_FLEET_TAG", f"{TAG}=sandbox")
        yield sb


@pytest.fixture
def fleet(sandbox, tmp_path) -> Iterator[dict[str, LocalInstance]]:
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reply = ec2.run_instances(
        ImageId=image,
        MinCount=2,
        MaxCount=2,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "sandbox"}]}
        ],
    )
    ids = sorted(i["InstanceId"] for i in reply["Instances"])
    subnet = free_subnet()  # apart from any other sandbox on this machine
    instances = {
        instance_id: LocalInstance(
            tmp_path / f"edge-{n}", name=f"edge-{n}", bind_address=f"127.0.{subnet}.{10 + n}"
        ).prepare()
        for n, instance_id in enumerate(ids, start=1)
    }
    yield instances
    for instance in instances.values():
        instance.stop()


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
    assert modes == [([first, second], "stage"), ([first], "apply"), ([second], "apply")]
    assert reload["staged"] == 2
    for instance in fleet.values():
        assert instance.current_release() == f"releases/{result['sha256']}"
        assert instance.workers()
        # TLS on the instance's own address; an unknown host gets the 404 backend.
        assert get(instance.bind_address, "nobody.sandbox.test") == 404

    again = handler({"action": "push", "reason": "again"})
    assert again["status"] == "unchanged" and "fleet" not in again  # healthy fleet: left alone
