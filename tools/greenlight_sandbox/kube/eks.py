"""What every EKS node runs: the ``aws-node`` (VPC CNI) and ``kube-proxy`` DaemonSets.

Their pods request what EKS's add-ons request (``aws-node`` 25m CPU, ``kube-proxy`` 100m CPU,
no memory), tolerate every taint (``operator: Exists``) and run in ``kube-system``, so the
stand-in's nodes carry the same small load and the same pods a drain must leave alone.
"""

from __future__ import annotations

from typing import Any

EKS_DAEMONSETS = {
    "aws-node": ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.19.0", "25m"),
    "kube-proxy": (
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.33.0-eksbuild.2",
        "100m",
    ),
}


def daemonset(name: str, image: str, cpu: str) -> dict[str, Any]:
    labels = {"k8s-app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "hostNetwork": True,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "resources": {"requests": {"cpu": cpu}},
                        }
                    ],
                },
            },
        },
    }


def eks_daemonsets() -> list[dict[str, Any]]:
    return [daemonset(name, image, cpu) for name, (image, cpu) in EKS_DAEMONSETS.items()]
