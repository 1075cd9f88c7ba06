"""The full local sandbox: the stand-in with its data plane, and a fleet of real HAProxy instances.

On top of :class:`Sandbox` (moto server, stand-in, resources):

- pods are local processes and nodes forward their NodePorts (``KubeStandIn(data_plane=True)``);
- ``fleet_size`` HAProxy instances (127.0.<subnet>.11, .12, ...) with TLS, registered in moto's EC2
  under the fleet tag, and reloaded only through the SSM apply document run locally
  (:class:`LocalSsm`);
- the haproxy and gate functions' runtimes wired to them: the gate's health checks go through
  the first instance, and its promotion push is the haproxy function, in process.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from .context import LambdaContext
from .fleet import LocalInstance, LocalSsm
from .functions import load
from .kube import KubeStandIn
from .sandbox import Sandbox, environment

FLEET_TAG = "greenlight:edge-fleet"
HTTPS_PORT = 18443  # config/sandbox-apps.yaml


class FullSandbox(Sandbox):
    def __init__(self, *, nodes: int = 3, fleet_size: int = 2, workdir: Path | None = None):
        # Its own loopback subnet for nodes (.1-.9) and HAProxy instances (.11-): sandboxes
        # running side by side (a test run beside `greenlight sandbox up`) do not collide.
        super().__init__(nodes=nodes, subnet=random.randint(20, 250))
        self.kube = KubeStandIn(token=self.kube_token, data_plane=True)
        self.fleet_size = fleet_size
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="greenlight-fleet-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.instances: dict[str, LocalInstance] = {}
        self.edge: Any = None
        self.gate: Any = None

    def start(self) -> FullSandbox:
        super().start()
        with environment(self.env):
            ec2 = boto3.client("ec2")
            image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
            reply = ec2.run_instances(
                ImageId=image,
                MinCount=self.fleet_size,
                MaxCount=self.fleet_size,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": FLEET_TAG, "Value": "sandbox"}]}
                ],
            )
        ids = sorted(i["InstanceId"] for i in reply["Instances"])
        self.instances = {
            instance_id: LocalInstance(
                self.workdir / f"edge-{n}",
                name=f"edge-{n}",
                bind_address=f"127.0.{self.subnet}.{10 + n}",
            ).prepare()
            for n, instance_id in enumerate(ids, start=1)
        }
        first = next(iter(self.instances.values()))
        self.env.update(
            {
                "GREENLIGHT_EDGE_DOCUMENT": "greenlight-apply",
                "GREENLIGHT_EDGE_FLEET_TAG": f"{FLEET_TAG}=sandbox",
                "GREENLIGHT_EDGE_ENDPOINT": f"{first.bind_address}:{HTTPS_PORT}",
                "GREENLIGHT_EDGE_FUNCTION": "greenlight-haproxy",
                "GREENLIGHT_EDGE_VERIFY_TLS": "false",
                "GREENLIGHT_GATE_DELAY_SECONDS": "0",
            }
        )
        with environment(self.env):
            self._wire()
        return self

    def _wire(self) -> None:
        from greenlight.edge.entry import EdgeRuntime
        from greenlight.gate.entry import GateRuntime
        from greenlight.settings import EdgeFunctionSettings, GateSettings

        haproxy = load("haproxy")
        self.edge = EdgeRuntime.build(EdgeFunctionSettings.from_env())
        self.edge.fleet_ssm = LocalSsm(self.instances, self.env)
        haproxy._runtime = self.edge

        def edge_push(reason: str) -> dict[str, Any]:
            with environment(self.env):
                result: dict[str, Any] = haproxy.handler(
                    {"action": "push", "reason": reason}, LambdaContext(timeout_seconds=300)
                )
            return result

        self.gate = GateRuntime.build(GateSettings.from_env(), edge_push=edge_push)

    def stop(self) -> None:
        for instance in self.instances.values():
            instance.stop()
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def run_gate(self, rollout_id: str, *, app: str = "shop", until: Any, timeout: float = 120):
        """Follow a rollout's chain of gate checks (as the gate queue delivers them, without
        waiting out each delay) until ``until(result)``; the results in order."""
        from greenlight.gate.entry import run_check
        from greenlight.gate.service import Check

        check, results = Check(app, rollout_id), []
        deadline = time.monotonic() + timeout
        with environment(self.env):
            while time.monotonic() < deadline:
                result = run_check(check, self.gate, None)
                results.append(result)
                if until(result) or result.next_check is None:
                    return results
                check = result.next_check
                time.sleep(0.2)
        raise TimeoutError(f"gate: {[r.to_dict() for r in results[-3:]]}")
