"""A Kubernetes API stand-in over HTTP, faithful where Greenlight depends on it.

See docs/kube-standin.md and the reference it follows (KUBE-API.md): resourceVersion conflicts,
generation, label and field selectors, strategic-merge/merge/JSON patch, the status, scale and
eviction subresources with PodDisruptionBudget semantics, NodePort allocation, every request body
validated with ``kubernetes-validate``, and simulated controllers (Deployments -> pods that
become Ready or fail in chosen ways, a scheduler that respects cordons and allocatable capacity,
PDB status, EndpointSlices).
"""

from .server import KubeStandIn

__all__ = ["KubeStandIn"]
