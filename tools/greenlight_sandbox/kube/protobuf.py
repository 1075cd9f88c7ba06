"""Just enough of Kubernetes' protobuf encoding to read what kubectl's typed clients send.

kubectl builds some requests with client-go's typed clientsets, which send
``Content-Type: application/vnd.kubernetes.protobuf`` (and accept JSON back): ``auth can-i``
(a SelfSubjectAccessReview) and ``drain`` (policy/v1 Evictions, DeleteOptions). A real
apiserver decodes them; a 415 would not make client-go retry in JSON. The stand-in answers in
JSON always, and turns these few request bodies into their JSON form here.

The envelope (AM/pkg/runtime/serializer/protobuf/protobuf.go): the magic ``k8s\\x00``, then a
``runtime.Unknown`` (1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType)
whose ``raw`` is the object; field numbers from each group's generated.proto.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
Schema = dict[int, tuple[str, Any]]  # field number -> (JSON name, type or nested schema)

OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    14: ("finalizers", "strings"),
}
PRECONDITIONS: Schema = {1: ("uid", "string"), 2: ("resourceVersion", "string")}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int"),
    2: ("preconditions", PRECONDITIONS),
    3: ("orphanDependents", "bool"),
    4: ("propagationPolicy", "string"),
    5: ("dryRun", "strings"),
}
RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", "string"), 2: ("verb", "string")}
KINDS: dict[str, Schema] = {
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META),
        2: (
            "spec",
            {
                1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
            },
        ),
    },
    "Eviction": {1: ("metadata", OBJECT_META), 2: ("deleteOptions", DELETE_OPTIONS)},
    "DeleteOptions": DELETE_OPTIONS,
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, dict):
            out[name] = _message(value if isinstance(value, bytes) else b"", kind)
        elif kind == "string" and isinstance(value, bytes):
            out[name] = value.decode()
        elif kind == "strings" and isinstance(value, bytes):
            out.setdefault(name, []).append(value.decode())
        elif kind == "int" and isinstance(value, int):
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif kind == "bool" and isinstance(value, int):
            out[name] = bool(value)
        elif kind == "map" and isinstance(value, bytes):
            entry = _message(value, {1: ("key", "string"), 2: ("value", "string")})
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
    return out


def decode(data: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for (the kinds in ``KINDS``)."""
    unsupported = ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml (protobuf: only the kinds kubectl sends typed)",
    )
    if not data.startswith(MAGIC):
        raise unsupported
    try:
        envelope = _message(
            data[len(MAGIC) :],
            {
                1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
                2: ("raw", "bytes"),
            },
        )
        raw = next((v for n, v in _fields(data[len(MAGIC) :]) if n == 2), b"")
        type_meta = envelope.get("typeMeta") or {}
        kind = type_meta.get("kind", "")
        if kind not in KINDS or not isinstance(raw, bytes):
            raise unsupported
        body = _message(raw, KINDS[kind])
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"malformed protobuf body: {exc}") from None
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **body}
