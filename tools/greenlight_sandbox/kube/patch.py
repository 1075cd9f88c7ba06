"""Strategic merge patch, JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from .errors import bad_request

# patchMergeKey of the list fields Greenlight's objects carry (api/core/v1/types.go).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "ports": None,  # container ports by containerPort, Service ports by port: see _port_key
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ownerReferences": "uid",
    "tolerations": None,
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _port_key(items: list[Any]) -> str | None:
    sample = next((i for i in items if isinstance(i, dict)), None)
    if sample is None:
        return None
    if "containerPort" in sample:
        return "containerPort"
    if "port" in sample:
        return "port"
    return None


def _merge_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        out = list(target)
        out.extend(v for v in patch if v not in out)
        return out
    key = MERGE_KEYS.get(field) if field != "ports" else _port_key(patch or target)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(t) for t in target]
    for item in patch:
        if item.get("$patch") == "delete":
            out = [t for t in out if t.get(key) != item.get(key)]
            continue
        for i, existing in enumerate(out):
            if isinstance(existing, dict) and existing.get(key) == item.get(key):
                out[i] = strategic_merge(existing, item)
                break
        else:
            out.append(strategic_merge({}, item))
    return out


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge patch over plain JSON: lists with merge keys merge by key."""
    if isinstance(patch, list):
        return _merge_list(field, target if isinstance(target, list) else [], patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge(result.get(key), value, key)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise bad_request(f"json patch: invalid path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(doc: Any, ops: list[Any]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        try:
            parts = _pointer(op["path"])
            parent = _walk(doc, parts[:-1])
            last = parts[-1]
            kind = op["op"]
            if kind == "test":
                if _walk(doc, parts) != op["value"]:
                    raise bad_request(f"json patch: test failed at {op['path']}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(op["value"])
                    elif kind == "add":
                        parent.insert(int(last), op["value"])
                    else:
                        parent[int(last)] = op["value"]
                else:
                    if kind == "replace" and last not in parent:
                        raise bad_request(f"json patch: replace of missing {op['path']}")
                    parent[last] = op["value"]
            else:
                raise bad_request(f"json patch: unsupported op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise bad_request(f"json patch: cannot apply {op!r}: {exc}") from None
    return doc
