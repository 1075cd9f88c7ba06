"""The cloud's part of the sandbox: a worker group's instances become nodes, and go.

moto keeps the Auto Scaling Group; nothing in it boots a kubelet. :class:`Cloud` plays that
part: every ``interval`` it registers a Ready node for each of the group's instances that has
none (on the next free loopback address of the sandbox's node range), and removes the node of
each instance the group no longer has.
"""

from __future__ import annotations

import threading
from typing import Any


class Cloud:
    def __init__(
        self,
        kube: Any,
        autoscaling: Any,
        group: str,
        *,
        subnet: int,
        interval: float = 0.2,
        zone: str = "eu-west-1a",
    ) -> None:
        self.kube, self.autoscaling, self.group = kube, autoscaling, group
        self.subnet, self.interval, self.zone = subnet, interval, zone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-cloud", daemon=True)

    def sync(self) -> None:
        found = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        ids = {i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"]}
        with self.kube.cluster.lock:
            nodes = dict(self.kube.cluster.objects["nodes"])
        known = {n["spec"]["providerID"].rsplit("/", 1)[-1]: key for key, n in nodes.items()}
        for instance, key in known.items():
            if instance not in ids:
                with self.kube.cluster.lock:
                    self.kube.cluster.objects["nodes"].pop(key, None)
        used = {
            a["address"]
            for n in nodes.values()
            for a in n.get("status", {}).get("addresses", [])
            if a.get("type") == "InternalIP"
        }
        free = (f"127.0.{self.subnet}.{n}" for n in range(1, 10))
        for instance in sorted(ids - set(known)):
            address = next(a for a in free if a not in used)
            self.kube.add_node(
                f"node-{instance[-6:]}",
                cpu="2",
                memory="4Gi",
                address=address,
                zone=self.zone,
                instance_id=instance,
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def start(self) -> Cloud:
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
