"""What a node holds and a pod needs: one quantity parser, one readiness check, one ``Room``.

Used by the rollout's capacity interlock and by the night plan alike. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PermanentError

if TYPE_CHECKING:
    from .bodies import Node, Pod, PodSpec

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
DEFAULT_POD_SLOTS = 110


class InvalidQuantity(PermanentError, ValueError):
    """A resource quantity that is not of Kubernetes' form."""


def quantity(value: object, *, milli: bool = False) -> int:
    """A Kubernetes quantity as an integer: CPU in millicores (``milli``), memory in bytes."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise InvalidQuantity(f"not a quantity Greenlight understands: {text!r}")
    number, suffix = float(match.group(1)), match.group(2) or ""
    scaled = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    return round(scaled * 1000) if milli else int(scaled)


def is_ready(obj: Node | Pod) -> bool:
    """A Node's or Pod's ``Ready`` condition is ``True``."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Room:
    """CPU (millicores), memory (bytes) and pod slots: what a node has free, or a pod needs."""

    cpu_m: int
    memory: int
    pods: int

    @classmethod
    def of(cls, resources: Mapping[str, str | int]) -> Room:
        """A node's allocatable resources."""
        return cls(
            quantity(resources.get("cpu", 0), milli=True),
            quantity(resources.get("memory", 0)),
            int(resources.get("pods", DEFAULT_POD_SLOTS)),
        )

    def fits(self, need: Room) -> bool:
        return self.cpu_m >= need.cpu_m and self.memory >= need.memory and self.pods >= need.pods

    def take(self, need: Room) -> None:
        self.cpu_m -= need.cpu_m
        self.memory -= need.memory
        self.pods -= need.pods

    def copy(self) -> Room:
        return Room(self.cpu_m, self.memory, self.pods)


def pod_request(spec: PodSpec) -> Room:
    """What one pod of ``spec`` needs: its containers' requests, and one pod slot."""
    cpu = memory = 0
    for container in spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu", 0), milli=True)
        memory += quantity(requests.get("memory", 0))
    return Room(cpu, memory, 1)
