"""The two-instance HAProxy fleet that the haproxy function's fleet tests share.

``sandbox``: the sandbox (moto server, stand-in, resources) with two nodes on a subnet of their
own, its environment set, and the edge documents' sandbox names (``LocalSsm`` runs them).
``fleet``: two local instances registered in moto's EC2 under the fleet tag, each on its own
loopback address, stopped afterwards. Use them from a test module as
``sandbox, fleet = edge_fleet.sandbox, edge_fleet.fleet``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from greenlight_sandbox.fleet import LocalInstance
from greenlight_sandbox.fullstack import free_subnet
from greenlight_sandbox.sandbox import Sandbox

TAG = "greenlight:edge-fleet"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(nodes=2, subnet=free_subnet()) as sb:  # its nodes apart from other sandboxes
        for key, value in sb.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("GREENLIGHT_EDGE_DOCUMENT", "greenlight-apply")
        monkeypatch.setenv("GREENLIGHT_EDGE_STATS_DOCUMENT", "greenlight-stats")
        monkeypatch.setenv("GREENLIGHT_EDGE_FLEET_TAG", f"{TAG}=sandbox")
        yield sb


@pytest.fixture
def fleet(sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, LocalInstance]]:
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
