"""OpenAPI v3 documents for the served kinds, built from the schemas the stand-in validates with.

kubectl 1.37 reads OpenAPI v3 only for what the stand-in needs: ``kubectl explain`` (the
``x-kubernetes-group-version-kind`` schema of a kind, then its fields), and ``apply``/``create``
validation: ``--validate=strict`` (the default) sends ``fieldValidation=Strict`` when the PATCH
operation of the kind lists a ``fieldValidation`` parameter (cli-runtime
resource/query_param_verifier_v3.go); the server then validates, and kubectl never needs the
OpenAPI v2 protobuf document.

Served: ``/openapi/v3`` (the index: ``{"paths": {"apis/apps/v1": {"serverRelativeURL": ...}}}``)
and ``/openapi/v3/<api|apis/group>/<version>`` (an OpenAPI 3.0 document: the kinds' paths and
the component schemas they reach). The schemas are ``kubernetes-validate``'s 1.37 JSON schemas
(the same ``_definitions.json`` kube/cluster.py validates every body with) turned back into
OpenAPI: nullable type lists become single types, ``$ref`` to ``#/components/schemas``
(wrapped in ``allOf`` beside a description, as the apiserver writes them), int-or-string and
quantity as the apiserver types them. Built once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources
from typing import Any

from .discovery import group_versions, served_kinds, subresources
from .kinds import Kind

K8S_VERSION = "1.37"
REF_PREFIX = "#/$defs/"
COMPONENTS = "#/components/schemas/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


@functools.cache
def definitions() -> dict[str, Any]:
    """``_definitions.json`` of the newest 1.37 schema set in ``kubernetes-validate``."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    pattern = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-local$")
    found = []
    for entry in root.iterdir():
        m = pattern.match(entry.name)
        if m and f"{m[1]}.{m[2]}" == K8S_VERSION:
            found.append((int(m[3]), entry.name))
    if not found:
        raise RuntimeError(f"kubernetes-validate has no {K8S_VERSION} schemas")
    text = root.joinpath(max(found)[1]).joinpath("_definitions.json").read_text()
    defs: dict[str, Any] = json.loads(text)["$defs"]
    return defs


def _convert(schema: Any) -> Any:
    """A JSON-schema (2020-12, nullable types) node as an OpenAPI 3.0 schema."""
    if isinstance(schema, list):
        return [_convert(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) == 1:
                out["type"] = types[0]
            continue
        if key == "enum" and isinstance(value, list):
            out["enum"] = [v for v in value if v is not None]
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: _convert(sub) for name, sub in value.items()}
            continue
        out[key] = _convert(value)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        target = {"$ref": COMPONENTS + ref[len(REF_PREFIX) :]}
        if out:  # beside a description: the apiserver's allOf form
            return {"allOf": [target], **out}
        return target
    return out


def _component(name: str) -> dict[str, Any]:
    if name == INT_OR_STRING:
        return {
            "description": "IntOrString is a type that can hold an int32 or a string.",
            "format": "int-or-string",
            "type": "string",
            "x-kubernetes-int-or-string": True,
        }
    if name == QUANTITY:
        return {
            "description": definitions()[name].get("description", "Quantity"),
            "type": "string",
        }
    converted: dict[str, Any] = _convert(definitions()[name])
    props = converted.get("properties") or {}
    for field in ("apiVersion", "kind"):  # the enums the validator pins; not in the real spec
        if isinstance(props.get(field), dict):
            props[field].pop("enum", None)
    return converted


def _refs(node: Any, into: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            into.add(ref[len(REF_PREFIX) :])
        for value in node.values():
            _refs(value, into)
    elif isinstance(node, list):
        for value in node:
            _refs(value, into)


def _closure(names: set[str]) -> set[str]:
    defs = definitions()
    seen: set[str] = set()
    todo = [n for n in names if n in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(n for n in found if n not in seen and n in defs)
    return seen


def schema_name(group: str, version: str, kind: str) -> str | None:
    """The definition whose ``x-kubernetes-group-version-kind`` is ``group/version, kind``."""
    return _gvk_index().get((group, version, kind))


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            if key not in index or name.startswith("io.k8s.api."):
                index[key] = name
    return index


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": COMPONENTS + name}


def _param(name: str, where: str = "query", *, required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "schema": {"type": "boolean" if name in ("force", "watch") else "string"},
    }
    if required:
        out["required"] = True
    return out


def _json_response(name: str | None, code: str = "200") -> dict[str, Any]:
    schema = _ref(name) if name else {"type": "object"}
    return {
        code: {
            "description": "OK" if code == "200" else "Created",
            "content": {"application/json": {"schema": schema}},
        }
    }


def _operation(
    kind: Kind, action: str, op_id: str, gvk: dict[str, str], schema: str | None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": _json_response(schema, "201" if action == "post" else "200"),
    }
    writes: dict[str, tuple[str, ...]] = {"post": ("dryRun", "fieldManager", "fieldValidation")}
    writes["put"] = writes["post"]
    writes["patch"] = ("dryRun", "fieldManager", "fieldValidation", "force")
    writes["delete"] = ("dryRun", "gracePeriodSeconds", "propagationPolicy")
    writes["list"] = ("fieldSelector", "labelSelector", "resourceVersion", "timeoutSeconds")
    writes["list"] += ("watch", "allowWatchBookmarks")
    op["parameters"] = [_param(p) for p in writes.get(action, ())]
    if action in ("post", "put") and schema:
        op["requestBody"] = {
            "content": {"application/json": {"schema": _ref(schema)}},
            "required": True,
        }
    if action == "patch":
        op["requestBody"] = {
            "content": {t: {"schema": _ref(PATCH)} for t in PATCH_TYPES},
            "required": True,
        }
    if action == "delete":
        op["requestBody"] = {"content": {"application/json": {"schema": _ref(DELETE_OPTIONS)}}}
        op["responses"] = _json_response(STATUS)
    return op


def _paths(kind: Kind) -> tuple[dict[str, Any], set[str]]:
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    collection = (
        f"{base}/namespaces/{{namespace}}/{kind.resource}"
        if kind.namespaced
        else f"{base}/{kind.resource}"
    )
    name = schema_name(kind.group, kind.version, kind.kind)
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    used = {n for n in (name, STATUS, DELETE_OPTIONS, PATCH) if n}
    stem = kind.kind + ("Namespaced" if kind.namespaced else "")
    list_schema = schema_name(kind.group, kind.version, kind.kind + "List")
    if list_schema:
        used.add(list_schema)
    verbs = {"create"} if kind.resource == "selfsubjectaccessreviews" else None
    paths: dict[str, Any] = {}
    coll: dict[str, Any] = {}
    if verbs is None:
        coll["get"] = _operation(kind, "list", f"list{stem}", gvk, list_schema)
    coll["post"] = _operation(kind, "post", f"create{stem}", gvk, name)
    paths[collection] = coll
    if verbs is None:
        item = f"{collection}/{{name}}"
        paths[item] = {
            "get": _operation(kind, "get", f"read{stem}", gvk, name),
            "put": _operation(kind, "put", f"replace{stem}", gvk, name),
            "patch": _operation(kind, "patch", f"patch{stem}", gvk, name),
            "delete": _operation(kind, "delete", f"delete{stem}", gvk, name),
        }
        for sub in subresources(kind):
            sub_gvk = {"group": sub.group, "version": sub.version, "kind": sub.kind}
            sub_schema = schema_name(sub.group, sub.version, sub.kind)
            if sub_schema:
                used.add(sub_schema)
            title = f"{stem}{sub.name.capitalize()}"
            ops: dict[str, Any] = {}
            if "get" in sub.verbs:
                ops["get"] = _operation(kind, "get", f"read{title}", sub_gvk, sub_schema)
            if "update" in sub.verbs:
                ops["put"] = _operation(kind, "put", f"replace{title}", sub_gvk, sub_schema)
            if "patch" in sub.verbs:
                ops["patch"] = _operation(kind, "patch", f"patch{title}", sub_gvk, sub_schema)
            if "create" in sub.verbs:
                ops["post"] = _operation(kind, "post", f"create{title}", sub_gvk, sub_schema)
            paths[f"{item}/{sub.name}"] = ops
    for path, ops in paths.items():
        params = [_param("name", "path", required=True)] if "{name}" in path else []
        if "{namespace}" in path:
            params.append(_param("namespace", "path", required=True))
        params.append(_param("pretty"))
        ops["parameters"] = params
    return paths, used


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def _documents() -> dict[str, tuple[bytes, str]]:
    """Every group version's document as JSON bytes, with its hash (for the index)."""
    docs: dict[str, tuple[bytes, str]] = {}
    for group, version in sorted(group_versions().items()):
        paths: dict[str, Any] = {}
        used: set[str] = set()
        for kind in served_kinds():
            if (kind.group, kind.version) != (group, version):
                continue
            kind_paths, kind_used = _paths(kind)
            paths.update(kind_paths)
            used |= kind_used
        schemas = {name: _component(name) for name in sorted(_closure(used))}
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": f"v{K8S_VERSION}.0"},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "BearerToken": {
                        "type": "apiKey",
                        "description": "Bearer Token authentication",
                        "name": "authorization",
                        "in": "header",
                    }
                },
            },
            "security": [{"BearerToken": []}],
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        docs[_gv_key(group, version)] = (data, hashlib.sha512(data).hexdigest().upper())
    return docs


def index() -> dict[str, Any]:
    """``/openapi/v3``."""
    return {
        "paths": {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
            for key, (_, digest) in _documents().items()
        }
    }


def document(path: str) -> bytes | None:
    """``/openapi/v3/<key>`` as JSON bytes, or None when no group version has that key."""
    found = _documents().get(path.strip("/"))
    return found[0] if found else None
