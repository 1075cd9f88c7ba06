"""docs/rbac.yaml rendered for a list of app namespaces: ``greenlight rbac NAMESPACE...``.

docs/rbac.yaml holds the cluster-scoped part (ClusterRoles and ClusterRoleBindings, applied
once) and the namespaced part for one namespace, ``APP_NAMESPACE`` (Roles and RoleBindings).
:func:`render` repeats the namespaced part for each app namespace. It is the one path by which
the manifests reach a cluster: the stand-in, the ``kube`` fixture and the sandbox load what it
renders, and ``greenlight rbac shop blog | kubectl apply -f -`` applies the same.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "rbac.yaml"
PLACEHOLDER = "APP_NAMESPACE"
CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding")
NAMESPACED_KINDS = ("Role", "RoleBinding")
# A namespace name (a DNS-1123 label), as the apiserver validates it.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class RbacError(ValueError):
    """A namespace that cannot be rendered, or a template that is not of the expected form."""


def namespaces_of(args: Iterable[str]) -> list[str]:
    """The app namespaces named by ``args`` (each may be comma-separated, as the stack's
    ``AppNamespaces`` parameter is), in order, once each. RbacError names a bad one."""
    found: list[str] = []
    for arg in args:
        for part in arg.split(","):
            name = part.strip()
            if not name:
                continue
            if not _NAMESPACE.match(name):
                raise RbacError(
                    f"namespace {name!r}: not a namespace name (lower-case letters, digits "
                    "and '-', at most 63, starting and ending with a letter or digit)"
                )
            if name.startswith("kube-"):
                raise RbacError(
                    f"namespace {name!r}: kube-* namespaces are the cluster's own; "
                    "Greenlight gets no Role there"
                )
            if name not in found:
                found.append(name)
    if not found:
        raise RbacError("namespaces: name at least one app namespace")
    return found


def _split(documents: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The template's cluster-scoped and namespaced documents (RbacError if neither)."""
    cluster: list[dict[str, Any]] = []
    namespaced: list[dict[str, Any]] = []
    for i, doc in enumerate(documents):
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        namespace = (doc.get("metadata") or {}).get("namespace") if kind else None
        if kind in CLUSTER_KINDS and namespace is None:
            cluster.append(doc)
        elif kind in NAMESPACED_KINDS and namespace == PLACEHOLDER:
            namespaced.append(doc)
        else:
            raise RbacError(
                f"document {i} ({kind}): expected a ClusterRole or ClusterRoleBinding, or a "
                f"Role or RoleBinding in namespace {PLACEHOLDER}"
            )
    return cluster, namespaced


def render(template: str, namespaces: Sequence[str]) -> str:
    """The manifests for ``namespaces``: the cluster-scoped part once, then the namespaced
    part for each namespace (checked by :func:`namespaces_of`)."""
    wanted = namespaces_of(namespaces)
    cluster, namespaced = _split(list(yaml.safe_load_all(template)))
    documents = list(cluster)
    for namespace in wanted:
        for doc in namespaced:
            copied = copy.deepcopy(doc)
            copied["metadata"]["namespace"] = namespace
            documents.append(copied)
    header = (
        "# Greenlight's RBAC (docs/rbac.yaml), rendered by `greenlight rbac` for the app "
        f"namespaces: {', '.join(wanted)}\n"
    )
    return header + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)


def manifest(namespaces: Sequence[str], template: Path = TEMPLATE) -> str:
    """docs/rbac.yaml rendered for ``namespaces``."""
    return render(template.read_text(), namespaces)
