"""The cloud's part of the sandbox: a worker group's instances become nodes, and go.

moto keeps the Auto Scaling Group; nothing in it boots a kubelet. :class:`Cloud` plays that
part: every ``interval`` it registers a Ready node for each of the group's instances that has
none (on the next free loopback address of the sandbox's node range), and removes the node of
each instance the group no longer has, as its machine is gone: its pods are deleted at once
(what the pod garbage collector does once the node object is gone; their processes stop, and
their controllers replace them elsewhere) and its NodePorts stop answering.

It learns the group's instances from an ``instances`` callable when given (the full sandbox
reads moto's own Auto Scaling model in process, :func:`moto_group_instances`: the cloud knows
its machines, and five DescribeAutoScalingGroups a second would take the CPU the functions
need), else by asking the Auto Scaling API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def moto_group_instances(group: str, region: str, account: str) -> Callable[[], set[str]]:
    """The instance ids of moto's Auto Scaling group ``group`` (every lifecycle state, as
    DescribeAutoScalingGroups lists them), read from moto's model in this process."""
    from moto.autoscaling.models import autoscaling_backends

    def instances() -> set[str]:
        found = autoscaling_backends[account][region].autoscaling_groups.get(group)
        return {state.instance.id for state in list(found.instance_states)} if found else set()

    return instances


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
        instances: Callable[[], set[str]] | None = None,
    ) -> None:
        self.kube, self.autoscaling, self.group = kube, autoscaling, group
        self._instances = instances
        self.subnet, self.interval, self.zone = subnet, interval, zone
        self.lost_pods = 0  # pods that went with their machine (not evicted first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-cloud", daemon=True)

    def instance_ids(self) -> set[str]:
        if self._instances is not None:
            return self._instances()
        found = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        return {i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"]}

    def sync(self) -> None:
        ids = self.instance_ids()
        with self.kube.cluster.lock:
            nodes = dict(self.kube.cluster.objects["nodes"])
        known = {n["spec"]["providerID"].rsplit("/", 1)[-1]: key for key, n in nodes.items()}
        for instance, key in known.items():
            if instance not in ids:
                self._lose(key)
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

    def _lose(self, key: Any) -> None:
        cluster = self.kube.cluster
        with cluster.lock:
            node = cluster.objects["nodes"].pop(key, None)
            if node is None:
                return
            name = node["metadata"]["name"]
            for pod in [p for p in cluster.items("pods") if p["spec"].get("nodeName") == name]:
                cluster.remove("pods", pod)
                if "DaemonSet" not in str(pod["metadata"].get("ownerReferences")):
                    self.lost_pods += 1

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
