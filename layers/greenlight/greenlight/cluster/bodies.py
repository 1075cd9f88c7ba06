"""The Kubernetes bodies Greenlight reads, as TypedDicts (the fields it reads, no more).

Bodies travel as plain JSON (``greenlight.cluster.rest``); these types say what the code expects
of them. All fields are optional, as the API may leave any of them out.
"""

from __future__ import annotations

from typing import Any, TypedDict


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    resourceVersion: str
    generation: int
    deletionTimestamp: str
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str


class StateDetail(TypedDict, total=False):
    reason: str
    message: str
    exitCode: int


class ContainerState(TypedDict, total=False):
    waiting: StateDetail
    running: dict[str, Any]
    terminated: StateDetail


class ContainerStatus(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    state: ContainerState
    lastState: ContainerState


class Resources(TypedDict, total=False):
    requests: dict[str, str | int]
    limits: dict[str, str | int]


class Container(TypedDict, total=False):
    name: str
    image: str
    resources: Resources


class Toleration(TypedDict, total=False):
    key: str
    operator: str
    value: str
    effect: str


class PodSpec(TypedDict, total=False):
    containers: list[Container]
    nodeName: str
    nodeSelector: dict[str, str]
    tolerations: list[Toleration]
    volumes: list[dict[str, Any]]


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class PodTemplate(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec


class Taint(TypedDict, total=False):
    key: str
    value: str
    effect: str


class NodeSpec(TypedDict, total=False):
    unschedulable: bool
    taints: list[Taint]
    providerID: str


class NodeAddress(TypedDict, total=False):
    type: str
    address: str


class NodeStatus(TypedDict, total=False):
    conditions: list[Condition]
    addresses: list[NodeAddress]
    allocatable: dict[str, str | int]


class Node(TypedDict, total=False):
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


class DeploymentSpec(TypedDict, total=False):
    replicas: int
    selector: dict[str, Any]
    template: PodTemplate


class DeploymentStatus(TypedDict, total=False):
    replicas: int
    readyReplicas: int
    updatedReplicas: int
    availableReplicas: int
    observedGeneration: int
    conditions: list[Condition]


class Deployment(TypedDict, total=False):
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus


class ServicePort(TypedDict, total=False):
    name: str
    port: int
    targetPort: int | str
    nodePort: int
    protocol: str


class ServiceSpec(TypedDict, total=False):
    type: str
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict, total=False):
    metadata: ObjectMeta
    spec: ServiceSpec


class PdbSpec(TypedDict, total=False):
    selector: dict[str, Any]
    minAvailable: int | str
    maxUnavailable: int | str


class PodDisruptionBudget(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PdbSpec
