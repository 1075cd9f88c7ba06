"""The resources the stand-in serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    resource: str  # plural, as in the URL
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS: dict[tuple[str, str], Kind] = {
    (k.group, k.resource): k
    for k in (
        Kind("namespaces", "Namespace", "", "v1", namespaced=False),
        Kind("nodes", "Node", "", "v1", namespaced=False),
        Kind("pods", "Pod", "", "v1", namespaced=True),
        Kind("services", "Service", "", "v1", namespaced=True),
        Kind("deployments", "Deployment", "apps", "v1", namespaced=True),
        Kind("replicasets", "ReplicaSet", "apps", "v1", namespaced=True),
        Kind("daemonsets", "DaemonSet", "apps", "v1", namespaced=True),
        Kind("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1", namespaced=True),
        Kind("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", namespaced=True),
        # RBAC (kube/rbac.py enforces them; owned with server.py)
        Kind("roles", "Role", "rbac.authorization.k8s.io", "v1", namespaced=True),
        Kind("rolebindings", "RoleBinding", "rbac.authorization.k8s.io", "v1", namespaced=True),
        Kind("clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", namespaced=False),
        Kind(
            "clusterrolebindings",
            "ClusterRoleBinding",
            "rbac.authorization.k8s.io",
            "v1",
            namespaced=False,
        ),
    )
}
GROUP_VERSIONS = {
    "": "v1",
    "apps": "v1",
    "policy": "v1",
    "discovery.k8s.io": "v1",
    "rbac.authorization.k8s.io": "v1",
}


def kind_named(resource: str) -> Kind:
    for kind in KINDS.values():
        if kind.resource == resource:
            return kind
    raise KeyError(resource)
