"""API discovery, generated from the served kinds (kube/kinds.py ``KINDS``).

What kubectl and client-go read before any resource command:

- legacy discovery: ``/api`` (``APIVersions``), ``/apis`` (``APIGroupList``), ``/apis/<group>``
  (``APIGroup``), ``/api/v1`` and ``/apis/<group>/<version>`` (``APIResourceList``, with the
  subresources as ``pods/eviction``-style entries);
- aggregated discovery (``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList``), answered on
  ``/api`` and ``/apis`` when the Accept header asks for it, as client-go 1.30+ does first
  (client-go/discovery/discovery_client.go ``AcceptV2``; a plain ``application/json`` answer
  makes it fall back to the legacy documents).

A kind added to ``KINDS`` is discovered by itself; only its short names, categories and
subresources are listed here (AS/pkg/endpoints/installer.go, the registries' ``ShortNames()``
and ``Categories()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .kinds import GROUP_VERSIONS, KINDS, Kind

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SHORT_NAMES = {
    "namespaces": ["ns"],
    "nodes": ["no"],
    "pods": ["po"],
    "services": ["svc"],
    "deployments": ["deploy"],
    "replicasets": ["rs"],
    "daemonsets": ["ds"],
    "poddisruptionbudgets": ["pdb"],
}
CATEGORIES = {r: ["all"] for r in ("pods", "services", "deployments", "replicasets", "daemonsets")}
NO_STATUS = {"endpointslices", "roles", "rolebindings", "clusterroles", "clusterrolebindings"}


@dataclass(frozen=True)
class Sub:
    name: str
    group: str
    version: str
    kind: str
    verbs: tuple[str, ...]


SCALE = ("autoscaling", "v1", "Scale")
EXTRA_SUBRESOURCES: dict[str, list[Sub]] = {
    "pods": [Sub("eviction", "policy", "v1", "Eviction", ("create",))],
    "deployments": [Sub("scale", *SCALE, ("get", "patch", "update"))],
    "replicasets": [Sub("scale", *SCALE, ("get", "patch", "update"))],
}
AUTHZ = Kind(
    "selfsubjectaccessreviews", "SelfSubjectAccessReview", "authorization.k8s.io", "v1", False
)


def served_kinds() -> list[Kind]:
    return [*KINDS.values(), AUTHZ]


def group_versions() -> dict[str, str]:
    return {**GROUP_VERSIONS, AUTHZ.group: AUTHZ.version}


def _verbs(kind: Kind) -> list[str]:
    return ["create"] if kind is AUTHZ else list(VERBS)


def subresources(kind: Kind) -> list[Sub]:
    subs = list(EXTRA_SUBRESOURCES.get(kind.resource, []))
    if kind.resource not in NO_STATUS and kind is not AUTHZ:
        subs.append(Sub("status", kind.group, kind.version, kind.kind, ("get", "patch", "update")))
    return sorted(subs, key=lambda s: s.name)


# ------------------------------------------------------------------ legacy discovery
def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _api_group(group: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_api_group(g, v) for g, v in sorted(group_versions().items()) if g],
    }


def api_group(group: str) -> dict[str, Any] | None:
    version = group_versions().get(group)
    if not group or version is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, version)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    if group_versions().get(group) != version:
        return None
    resources: list[dict[str, Any]] = []
    for kind in sorted(served_kinds(), key=lambda k: k.resource):
        if kind.group != group:
            continue
        entry: dict[str, Any] = {
            "name": kind.resource,
            "singularName": kind.kind.lower(),
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": _verbs(kind),
        }
        if kind.resource in SHORT_NAMES:
            entry["shortNames"] = SHORT_NAMES[kind.resource]
        if kind.resource in CATEGORIES:
            entry["categories"] = CATEGORIES[kind.resource]
        resources.append(entry)
        for sub in subresources(kind):
            item: dict[str, Any] = {
                "name": f"{kind.resource}/{sub.name}",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if (sub.group, sub.version) != (kind.group, kind.version):
                item["group"], item["version"] = sub.group, sub.version
            resources.append(item)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


# ------------------------------------------------------------------ aggregated discovery
def wants_aggregated(accept: str | None) -> bool:
    """Does the Accept header ask for ``apidiscovery.k8s.io/v2`` first? (client-go sends the
    v2 type, then v2beta1, then plain JSON; the stand-in serves v2 or plain)."""
    for part in (accept or "").split(","):
        params = {
            k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])
        }
        if (
            params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") == "v2"
            and params.get("as") == "APIGroupDiscoveryList"
        ):
            return True
    return False


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _resource_discovery(kind: Kind) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": kind.resource,
        "responseKind": _gvk(kind.group, kind.version, kind.kind),
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.kind.lower(),
        "verbs": _verbs(kind),
    }
    if kind.resource in SHORT_NAMES:
        entry["shortNames"] = SHORT_NAMES[kind.resource]
    if kind.resource in CATEGORIES:
        entry["categories"] = CATEGORIES[kind.resource]
    subs = subresources(kind)
    if subs:
        entry["subresources"] = [
            {
                "subresource": s.name,
                "responseKind": _gvk(s.group, s.version, s.kind),
                "verbs": list(s.verbs),
            }
            for s in subs
        ]
    return entry


def aggregated(legacy_core: bool) -> dict[str, Any]:
    """``/api`` (``legacy_core``: the core group only) or ``/apis`` (every named group)."""
    items = []
    for group, version in sorted(group_versions().items()):
        if (group == "") != legacy_core:
            continue
        kinds = sorted((k for k in served_kinds() if k.group == group), key=lambda k: k.resource)
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [_resource_discovery(k) for k in kinds],
                        "freshness": "Current",
                    }
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
