"""The stand-in's object store: resourceVersion, generation, validation, subresources.

One global resourceVersion counter for all kinds (like an etcd revision), bumped on every write
that changes bytes; a no-op write does not bump it. Every request body is validated against the
real Kubernetes schema with ``kubernetes-validate`` before anything is stored.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate

from . import defaults, validation
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from .kinds import KINDS, Kind, kind_named
from .patch import json_patch, merge_patch, strategic_merge
from .selectors import match_label_selector
from .validation import WriteOptions

K8S_VERSION = "1.37"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
NODE_PORT_RANGE = (30000, 32767)
PATCH_TYPES = {
    "application/strategic-merge-patch+json": "strategic",
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
}


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _schema_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_schema(
    kind: Kind, body: dict[str, Any], options: WriteOptions | None = None, *, patch: bool = False
) -> None:
    """Validate ``body`` against the real schema of ``kind`` (422 Invalid on a wrong type or a
    missing field). Unknown fields follow ``fieldValidation`` (validation.py): ``Strict`` 400,
    ``Warn`` a warning, ``Ignore`` nothing; but for Strict they are dropped. Calls from inside
    the stand-in (no options) are Strict."""
    others, unknown = validation.schema_errors(body)
    if others:
        exc = others[0]
        where = _schema_path(exc.absolute_path) or "<body>"
        reason = "FieldValueRequired" if exc.validator == "required" else "FieldValueInvalid"
        shown = json.dumps(exc.instance)[:120]
        name = (body.get("metadata") or {}).get("name", "")
        raise invalid(
            kind.kind, kind.group, name, [(reason, where, f"Invalid value: {shown}: {exc.message}")]
        )
    if not unknown:
        return
    texts = [validation.unknown_field_text(parts, key) for parts, key in unknown]
    directive = options.field_validation if options else "Strict"
    if directive == "Strict":
        strict = "strict decoding error: " + ", ".join(texts)
        if not patch:  # handlers/create.go, update.go transformDecodeError
            strict = (
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                + strict
            )
        raise bad_request(strict)
    if directive == "Warn" and options is not None:
        for text in texts:
            options.warn(text)
    validation.drop_unknown(body, unknown)


@dataclass
class Behaviour:
    """How pods running an image behave in the simulation.

    kind: ``ready`` (Running, Ready after ``ready_after`` s, or when None as its readiness probe
    says, scaled by ``Cluster.time_scale``), ``crashloop`` (restarts with exit code 1), ``oom``
    (restarts, OOMKilled, exit 137), ``imagepull`` (ErrImagePull then ImagePullBackOff),
    ``never-ready`` (Running, never Ready). ``exit_after``: seconds the container takes to exit
    on SIGTERM (None: ``Cluster.termination_seconds``; ``math.inf``: it ignores SIGTERM and is
    killed at the end of its grace period, scaled by ``Cluster.time_scale``). With the data
    plane, a serving pod answers ``error_ratio`` of its real requests (not its health path) with
    HTTP 500, and each of them ``delay_ms`` later.
    """

    kind: str = "ready"
    ready_after: float | None = None
    exit_after: float | None = None
    error_ratio: float = 0.0
    delay_ms: float = 0.0

    KINDS = ("ready", "crashloop", "oom", "imagepull", "never-ready")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"behaviour kind {self.kind!r}: expected one of {self.KINDS}")
        if not 0 <= self.error_ratio <= 1:
            raise ValueError(f"error_ratio {self.error_ratio!r}: expected 0 to 1")
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms {self.delay_ms!r}: expected 0 or more")


@dataclass
class Cluster:
    """All objects, guarded by one lock. Controllers and HTTP handlers share it."""

    clock: Callable[[], float] = time.time
    default_behaviour: Behaviour = field(default_factory=Behaviour)
    termination_seconds: float = 0.3  # how long a container takes to exit on SIGTERM
    # Probe delays and grace periods are multiplied by this (1.0: real time; the sandbox and
    # tests run ten times faster so that drain deadlines are exercised in seconds).
    time_scale: float = 0.1
    lock: threading.RLock = field(default_factory=threading.RLock)
    rv: int = 1
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    pod_clock: dict[str, dict[str, float]] = field(default_factory=dict)  # uid -> timings
    pod_behaviours: dict[str, list[Behaviour]] = field(default_factory=dict)  # uid -> fixed
    _ip_seq: int = 0
    # Where pod IPs come from; the data plane moves them onto loopback (dataplane.pod_network).
    pod_network: str = "10.244.0.2"
    # Consulted before a "ready" pod is reported Ready (the data plane: its process answers).
    ready_check: Callable[[dict[str, Any]], bool] | None = None
    # The watch history (kube/watch.py Journal), told of every write and deletion.
    journal: Any = None

    def __post_init__(self) -> None:
        for kind in KINDS.values():
            self.objects.setdefault(kind.resource, {})
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})

    # ----------------------------------------------------------------- basics
    def _bump(self) -> str:
        self.rv += 1
        if self.journal is not None:
            self.journal.notify()
        return str(self.rv)

    def now(self) -> str:
        return rfc3339(self.clock())

    def get(self, kind: Kind, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects[kind.resource].get((ns if kind.namespaced else "", name))
        if obj is None:
            raise not_found(kind.resource, kind.group, name)
        return obj

    def find(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        kind = kind_named(resource)
        return self.objects[resource].get((ns if kind.namespaced else "", name))

    def items(self, resource: str, ns: str | None = None) -> list[dict[str, Any]]:
        found = [o for (o_ns, _), o in self.objects[resource].items() if ns in (None, o_ns)]
        return sorted(
            found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    def list(
        self,
        kind: Kind,
        ns: str | None,
        *,
        labels: Callable[[Any], bool],
        fields: Callable[[Any], bool],
    ) -> dict[str, Any]:
        items = [
            self._out(kind, o, with_kind=False)
            for o in self.items(kind.resource, ns)
            if labels(o["metadata"].get("labels") or {}) and fields(o)
        ]
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def _out(self, kind: Kind, obj: dict[str, Any], *, with_kind: bool = True) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        if with_kind:
            out = {"kind": kind.kind, "apiVersion": kind.api_version, **out}
        else:
            out.pop("kind", None)
            out.pop("apiVersion", None)
        return out

    def out(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        return self._out(kind, obj)

    # ----------------------------------------------------------------- validation
    def _prepare(
        self,
        kind: Kind,
        ns: str,
        body: Any,
        *,
        name: str | None,
        options: WriteOptions | None = None,
        patch: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", kind.api_version)
        body.setdefault("kind", kind.kind)
        if body["apiVersion"] != kind.api_version or body["kind"] != kind.kind:
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) does not "
                f"match the expected API version ({kind.api_version})"
            )
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if name is not None and meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match "
                f"the name on the URL ({name})"
            )
        if name is not None:
            meta["name"] = name
        if kind.namespaced:
            if meta.get("namespace") not in (None, ns):
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = ns
        validate_schema(kind, body, options, patch=patch)
        # The name's rules, and every other semantic rule, are validation.py's (_check_kind).
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return body

    # ----------------------------------------------------------------- create
    def create(
        self, kind: Kind, ns: str, body: Any, *, options: WriteOptions | None = None
    ) -> dict[str, Any]:
        with self.lock:
            if options is not None and options.dry_run:
                created = self._dry_run(lambda: self.create(kind, ns, body, options=_wet(options)))
                created["metadata"].pop("resourceVersion", None)  # never stored: none
                return created
            body = self._prepare(kind, ns, body, name=None, options=options)
            name = body["metadata"].get("name", "")
            key = (ns if kind.namespaced else "", name)
            if kind.namespaced and ("", ns) not in self.objects["namespaces"]:
                raise not_found("namespaces", "", ns)  # NamespaceLifecycle admission: first
            defaults.apply(kind, body)
            self._check_kind(kind, body, None)
            if key in self.objects[kind.resource]:
                raise already_exists(kind.resource, kind.group, name)
            meta = body["metadata"]
            for volatile in (
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ):
                meta.pop(volatile, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self.now()
            if kind.resource in ("deployments", "replicasets", "daemonsets"):
                meta["generation"] = 1
                body["status"] = (
                    {"replicas": 0}
                    if kind.resource == "replicasets"
                    else {
                        "currentNumberScheduled": 0,
                        "desiredNumberScheduled": 0,
                        "numberMisscheduled": 0,
                        "numberReady": 0,
                    }
                    if kind.resource == "daemonsets"
                    else {}
                )
            if kind.resource == "poddisruptionbudgets":
                meta["generation"] = 1
                body["status"] = {
                    "disruptionsAllowed": 0,
                    "currentHealthy": 0,
                    "desiredHealthy": 0,
                    "expectedPods": 0,
                }
            if kind.resource == "pods":
                body["status"] = {"phase": "Pending", "qosClass": "Burstable"}
                self.pod_clock[meta["uid"]] = {"created": self.clock()}
            if kind.resource == "services":
                self._allocate_service(body, None)
            if kind.resource == "namespaces":
                body["spec"] = {"finalizers": ["kubernetes"]}
                body["status"] = {"phase": "Active"}
            meta["resourceVersion"] = self._bump()
            self.objects[kind.resource][key] = body
            return self._out(kind, body)

    # ----------------------------------------------------------------- update
    def replace(
        self,
        kind: Kind,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        check_rv: bool = True,
        options: WriteOptions | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            if options is not None and options.dry_run:
                return self._dry_update(
                    kind,
                    ns,
                    name,
                    lambda: self.replace(
                        kind,
                        ns,
                        name,
                        body,
                        subresource=subresource,
                        check_rv=check_rv,
                        options=_wet(options),
                    ),
                )
            current = self.get(kind, ns, name)
            body = self._prepare(kind, ns, body, name=name, options=options)
            given_rv = body["metadata"].get("resourceVersion")
            if check_rv and given_rv and given_rv != current["metadata"]["resourceVersion"]:
                raise conflict(kind.resource, kind.group, name)
            return self._store_update(kind, current, body, subresource)

    def _store_update(
        self, kind: Kind, current: dict[str, Any], body: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        meta_old = current["metadata"]
        if subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = body.get("status") or {}
        else:
            defaults.apply(kind, body)
            self._check_kind(kind, body, current)
            new = body
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            meta = new["metadata"]
            for kept in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if kept in meta_old:
                    meta[kept] = meta_old[kept]
                else:
                    meta.pop(kept, None)
            if "generation" in meta_old:
                changed = current.get("spec") != new.get("spec") or (
                    meta_old.get("annotations") or {}
                ) != (meta.get("annotations") or {})
                meta["generation"] = meta_old["generation"] + (1 if changed else 0)
            if kind.resource == "services":
                self._allocate_service(new, current)
        new["metadata"]["resourceVersion"] = meta_old["resourceVersion"]
        if new == current:  # a no-op write does not bump the resourceVersion
            return self._out(kind, current)
        new["metadata"]["resourceVersion"] = self._bump()
        key = (meta_old.get("namespace", ""), meta_old["name"])
        self.objects[kind.resource][key] = new
        return self._out(kind, new)

    def patch(
        self,
        kind: Kind,
        ns: str,
        name: str,
        patch_body: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        options: WriteOptions | None = None,
    ) -> dict[str, Any]:
        if options is not None and options.dry_run:
            with self.lock:
                return self._dry_update(
                    kind,
                    ns,
                    name,
                    lambda: self.patch(
                        kind,
                        ns,
                        name,
                        patch_body,
                        content_type,
                        subresource=subresource,
                        options=_wet(options),
                    ),
                )
        style = PATCH_TYPES.get(content_type.split(";", maxsplit=1)[0].strip().lower())
        if style is None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media "
                "types include: application/json-patch+json, "
                "application/merge-patch+json, application/apply-patch+yaml, "
                "application/strategic-merge-patch+json",
            )
        with self.lock:
            current = self.get(kind, ns, name)
            base = self._out(kind, current)
            if style == "json":
                if not isinstance(patch_body, list):
                    raise bad_request("json patch: expected a list of operations")
                new = json_patch(base, patch_body)
            else:
                if not isinstance(patch_body, dict):
                    raise bad_request("patch: expected a JSON object")
                merge = strategic_merge if style == "strategic" else merge_patch
                new = merge(base, patch_body)
                wanted = (patch_body.get("metadata") or {}).get("resourceVersion")
                if wanted and wanted != current["metadata"]["resourceVersion"]:
                    raise conflict(kind.resource, kind.group, name)
            new.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            body = self._prepare(kind, ns, new, name=name, options=options, patch=True)
            return self._store_update(kind, current, body, subresource)

    # ----------------------------------------------------------------- delete
    def delete(
        self,
        kind: Kind,
        ns: str,
        name: str,
        options: dict[str, Any] | None,
        propagation: str | None = None,
        *,
        write: WriteOptions | None = None,
    ) -> dict[str, Any]:
        options = options or {}
        with self.lock:
            if (write is not None and write.dry_run) or options.get("dryRun") == ["All"]:
                opts = {k: v for k, v in options.items() if k != "dryRun"}
                return self._dry_update(
                    kind, ns, name, lambda: self.delete(kind, ns, name, opts, propagation)
                )
            current = self.get(kind, ns, name)
            pre = options.get("preconditions") or {}
            meta = current["metadata"]
            if (
                pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]
            ) or (pre.get("uid") and pre["uid"] != meta["uid"]):
                raise conflict(kind.resource, kind.group, name)
            policy = propagation or options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            policy = policy or "Background"
            if policy not in ("Orphan", "Background", "Foreground"):
                raise bad_request(f"unsupported propagationPolicy {policy!r}")
            if policy == "Orphan":
                self.orphan_dependents(meta["uid"])
            if kind.resource == "pods":
                grace = options.get("gracePeriodSeconds")
                return self._out(kind, self.delete_pod(current, grace=grace))
            if policy == "Foreground" or "deletionTimestamp" in meta:
                # The garbage collector deletes the dependents, then the owner (controllers.py).
                if "deletionTimestamp" not in meta or policy == "Foreground":
                    meta.setdefault("deletionTimestamp", self.now())
                    meta["deletionGracePeriodSeconds"] = 0
                    if policy == "Foreground":
                        meta["finalizers"] = sorted(
                            {*meta.get("finalizers", []), "foregroundDeletion"}
                        )
                    meta["resourceVersion"] = self._bump()
                return self._out(kind, current)
            self.remove(kind.resource, current)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    k: v
                    for k, v in {
                        "name": name,
                        "group": kind.group,
                        "kind": kind.resource,
                        "uid": meta["uid"],
                    }.items()
                    if v
                },
            }

    def orphan_dependents(self, owner_uid: str) -> None:
        """Orphan propagation: the dependents stay, without their owner reference."""
        for resource in self.objects:
            for obj in self.objects[resource].values():
                refs = obj["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if r.get("uid") != owner_uid]
                if len(kept) != len(refs):
                    if kept:
                        obj["metadata"]["ownerReferences"] = kept
                    else:
                        obj["metadata"].pop("ownerReferences", None)
                    obj["metadata"]["resourceVersion"] = self._bump()

    def remove(self, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[resource].pop((meta.get("namespace", ""), meta["name"]), None)
        self.pod_clock.pop(meta["uid"], None)
        self.pod_behaviours.pop(meta["uid"], None)
        self._bump()
        if self.journal is not None:
            self.journal.deleted(resource, obj, self.rv)

    def delete_pod(self, pod: dict[str, Any], *, grace: int | None) -> dict[str, Any]:
        """Graceful delete: the pod is terminating now and gone after its grace period."""
        meta = pod["metadata"]
        if "deletionTimestamp" in meta:
            return pod
        seconds = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        if seconds == 0 or "nodeName" not in pod["spec"]:
            self.remove("pods", pod)
            return pod
        meta["deletionTimestamp"] = self.now()
        meta["deletionGracePeriodSeconds"] = seconds
        meta["resourceVersion"] = self._bump()
        self.pod_clock.setdefault(meta["uid"], {})["terminating"] = self.clock()
        return pod

    # ----------------------------------------------------------------- kind rules
    def _check_kind(self, kind: Kind, body: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Semantic validation (validation.py), after defaulting and before storing."""
        errors = (
            validation.validate_create(kind.kind, body)
            if old is None
            else validation.validate_update(kind.kind, old, body)
        )
        if errors:
            name = body["metadata"].get("name", "")
            raise invalid(kind.kind, kind.group, name, [e.cause() for e in errors])

    # ----------------------------------------------------------------- dryRun=All
    def _dry_run(self, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``write`` in full (validation, defaulting, allocation) on a copy of the store and
        keep nothing: the answer is what it would have been (AS/pkg/registry/rest dry-run)."""
        saved = (self.objects, self.rv, self._ip_seq, self.pod_clock, self.pod_behaviours)
        self.objects = copy.deepcopy(self.objects)
        self.pod_clock = copy.deepcopy(self.pod_clock)
        self.pod_behaviours = copy.deepcopy(self.pod_behaviours)
        try:
            return write()
        finally:
            self.objects, self.rv, self._ip_seq, self.pod_clock, self.pod_behaviours = saved

    def _dry_update(
        self, kind: Kind, ns: str, name: str, write: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        current = self.get(kind, ns, name)
        answer = self._dry_run(write)
        meta = answer.get("metadata")
        if answer.get("kind") != "Status" and isinstance(meta, dict):
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return answer

    def _allocate_service(self, svc: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = svc["spec"]
        name = svc["metadata"]["name"]
        if old is not None and old["spec"].get("clusterIP"):
            spec["clusterIP"] = old["spec"]["clusterIP"]
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIP") in (None, ""):
            self._ip_seq += 1
            ip = str(ipaddress.ip_address("10.96.0.10") + self._ip_seq)
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        node_port_type = spec.get("type") in ("NodePort", "LoadBalancer")
        taken = {
            p.get("nodePort")
            for s in self.items("services")
            if s["metadata"]["uid"] != (old or {}).get("metadata", {}).get("uid")
            for p in s["spec"].get("ports", [])
            if p.get("nodePort")
        }
        # K/pkg/registry/core/service/storage/storage.go patchAllocatedValues: a port sent
        # without a nodePort keeps the one of the old port of the same *name*, unless another
        # port of the new Service asks for it.
        old_ports = (
            {p.get("name", ""): p.get("nodePort") for p in old["spec"].get("ports", [])}
            if old and old["spec"].get("type") in ("NodePort", "LoadBalancer")
            else {}
        )
        asked = {p.get("nodePort") for p in spec.get("ports", []) if p.get("nodePort")}
        causes = []
        for i, port in enumerate(spec.get("ports", [])):
            if not node_port_type:
                port.pop("nodePort", None)
                continue
            kept = old_ports.get(port.get("name", ""))
            wanted = port.get("nodePort") or (kept if kept not in asked else None)
            if wanted:
                low, high = NODE_PORT_RANGE
                if not low <= wanted <= high:
                    causes.append(
                        (
                            "FieldValueInvalid",
                            f"spec.ports[{i}].nodePort",
                            f"Invalid value: {wanted}: provided port is not in the valid "
                            f"range. The range of valid ports is {low}-{high}",
                        )
                    )
                elif wanted in taken:
                    causes.append(
                        (
                            "FieldValueInvalid",
                            f"spec.ports[{i}].nodePort",
                            f"Invalid value: {wanted}: provided port is already allocated",
                        )
                    )
                port["nodePort"] = wanted
            else:
                port["nodePort"] = _free_port(taken, name, i)
            taken.add(port["nodePort"])
        if causes:
            raise invalid("Service", "", name, causes)

    # ----------------------------------------------------------------- scale
    def scale(self, ns: str, name: str, resource: str = "deployments") -> dict[str, Any]:
        with self.lock:
            dep = self.get(kind_named(resource), ns, name)
            meta = dep["metadata"]
            selector = ",".join(
                f"{k}={v}"
                for k, v in sorted(dep["spec"]["selector"].get("matchLabels", {}).items())
            )
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "uid": meta["uid"],
                    "resourceVersion": meta["resourceVersion"],
                    "creationTimestamp": meta["creationTimestamp"],
                },
                "spec": {"replicas": dep["spec"].get("replicas", 1)},
                "status": {
                    "replicas": dep.get("status", {}).get("replicas", 0),
                    "selector": selector,
                },
            }

    def set_scale(
        self, ns: str, name: str, body: Any, resource: str = "deployments"
    ) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(
            (body.get("spec") or {}).get("replicas"), int
        ):
            raise invalid(
                "Scale",
                "autoscaling",
                name,
                [("FieldValueRequired", "spec.replicas", "Required value")],
            )
        with self.lock:
            kind = kind_named(resource)
            dep = self.get(kind, ns, name)
            given = (body.get("metadata") or {}).get("resourceVersion")
            if given and given != dep["metadata"]["resourceVersion"]:
                raise conflict(resource, "apps", name)
            new = self._out(kind, dep)
            new["spec"]["replicas"] = body["spec"]["replicas"]
            self._store_update(kind, dep, self._prepare(kind, ns, new, name=name), None)
            return self.scale(ns, name, resource)

    # ----------------------------------------------------------------- eviction
    def evict(
        self, ns: str, name: str, body: Any, *, options: WriteOptions | None = None
    ) -> dict[str, Any]:
        """The policy/v1 Eviction subresource (K/pkg/registry/core/pod/storage/eviction.go).
        ``dryRun`` (the query's or ``deleteOptions.dryRun``, propagateDryRun) checks everything
        and changes nothing."""
        if not isinstance(body, dict):
            raise bad_request("eviction: expected a JSON object")
        dry = (body.get("deleteOptions") or {}).get("dryRun")
        if dry:
            errors = validation.option_errors({"dryRun": dry}, field_validation=False)
            if errors:
                raise invalid("Eviction", "policy", name, [e.cause() for e in errors])
        if (options is not None and options.dry_run) or dry:
            if (body.get("metadata") or {}).get("name") not in (None, name):
                raise bad_request("name in URL does not match name in Eviction object")
            with self.lock:
                self.get(kind_named("pods"), ns, name)
                wet = {
                    **body,
                    "deleteOptions": {
                        k: v for k, v in (body.get("deleteOptions") or {}).items() if k != "dryRun"
                    },
                }
                return self._dry_run(lambda: self.evict(ns, name, wet))
        body = {"apiVersion": "policy/v1", "kind": "Eviction", **body}
        try:
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise invalid(
                "Eviction",
                "policy",
                name,
                [("FieldValueInvalid", _schema_path(exc.absolute_path), exc.message)],
            ) from None
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise bad_request("name in URL does not match name in Eviction object")
        with self.lock:
            pod = self.get(kind_named("pods"), ns, name)
            grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
            phase = pod.get("status", {}).get("phase")
            done = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }
            if (
                phase in ("Pending", "Succeeded", "Failed")
                or "deletionTimestamp" in pod["metadata"]
            ):
                self.delete_pod(pod, grace=grace)
                return done
            labels = pod["metadata"].get("labels") or {}
            pdbs = [
                p
                for p in self.items("poddisruptionbudgets", ns)
                if match_label_selector(p["spec"].get("selector"), labels)
            ]
            if len(pdbs) > 1:
                raise ApiError(
                    500,
                    None,
                    "This pod has more than one PodDisruptionBudget, "
                    "which the eviction subresource does not support.",
                )
            if not pdbs:
                self._evicted(pod, grace)
                return done
            pdb = pdbs[0]
            status = pdb.get("status", {})
            if not pod_ready(pod):
                policy = pdb["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
                healthy_enough = (
                    status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0
                )
                if policy == "AlwaysAllow" or healthy_enough:
                    self._evicted(pod, grace)
                    return done
            pdb_name = pdb["metadata"]["name"]
            if status.get("observedGeneration", 0) < pdb["metadata"]["generation"]:
                raise _budget_blocks(
                    f"The disruption budget {pdb_name} is still being processed by the server.",
                    retry_after=10,
                )
            allowed = status.get("disruptionsAllowed", 0)
            if allowed < 0:
                raise ApiError(403, "Forbidden", BUDGET_MESSAGE)
            if allowed == 0:
                raise _budget_blocks(
                    f"The disruption budget {pdb_name} needs {status.get('desiredHealthy', 0)} "
                    f"healthy pods and has {status.get('currentHealthy', 0)} currently"
                )
            status["disruptionsAllowed"] = allowed - 1
            status.setdefault("disruptedPods", {})[name] = self.now()
            pdb["metadata"]["resourceVersion"] = self._bump()
            self._evicted(pod, grace)
            return done

    def _evicted(self, pod: dict[str, Any], grace: int | None) -> None:
        conditions = pod.setdefault("status", {}).setdefault("conditions", [])
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
                "lastTransitionTime": self.now(),
            }
        )
        self.delete_pod(pod, grace=grace)

    # ----------------------------------------------------------------- sandbox controls
    def behaviour_for(self, image: str, pod: dict[str, Any] | None = None) -> Behaviour:
        """The behaviour set for ``image``; for an image pinned by digest that has none of its
        own, the one set for the reference it was pinned from (``image_tag``)."""
        found = self.behaviours.get(image)
        if found is None and pod is not None:
            found = self.behaviours.get(image_tag(pod, image))
        return found or self.default_behaviour

    def pod_ip(self) -> str:
        self._ip_seq += 1
        return str(ipaddress.ip_address(self.pod_network) + self._ip_seq)


BUDGET_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
PINNED_FROM = "greenlight.io/image"  # the tag an image pinned by digest was pinned from


def image_tag(pod: dict[str, Any], image: str) -> str:
    """``image``, or when it is pinned by digest (``repo@sha256:...``) the ``repo:tag`` the pod
    says it was pinned from (the rollout function's ``greenlight.io/image`` annotation): what
    the sandbox keys its behaviours and served versions by, as a registry maps a tag to its
    digest."""
    if "@" not in image:
        return image
    tag = str(((pod.get("metadata") or {}).get("annotations") or {}).get(PINNED_FROM) or "")
    return tag if tag.split(":", 1)[0] == image.split("@", 1)[0].split(":", 1)[0] else image


def _budget_blocks(cause: str, *, retry_after: int | None = None) -> ApiError:
    """The 429 a PodDisruptionBudget answers an eviction with (eviction.go)."""
    return ApiError(
        429,
        "TooManyRequests",
        BUDGET_MESSAGE,
        {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
        retry_after=retry_after,
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _free_port(taken: set[Any], name: str, index: int) -> int:
    low, high = NODE_PORT_RANGE
    span = high - low + 1
    start = int(hashlib.sha256(f"{name}/{index}".encode()).hexdigest(), 16) % span
    for step in range(span):
        port = low + (start + step) % span
        if port not in taken:
            return port
    raise ApiError(500, "InternalError", "range of valid ports is full")


def _wet(options: WriteOptions) -> WriteOptions:
    """The same options without dryRun (for the write a dry run performs on a copy)."""
    return WriteOptions(False, options.field_validation, options.warnings)


def write_options(
    query: dict[str, Any] | None, options_kind: str, warnings: list[str] | None = None
) -> WriteOptions:
    """``dryRun`` and ``fieldValidation`` of a request; a bad value is the 422 the apiserver
    answers (``CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ...``)."""
    query = query or {}
    errors = validation.option_errors(query, field_validation=options_kind != "DeleteOptions")
    if errors:
        raise invalid(options_kind, "meta.k8s.io", "", [e.cause() for e in errors])
    return WriteOptions(
        dry_run=query.get("dryRun") is not None,
        field_validation=query.get("fieldValidation") or "Warn",
        warnings=warnings,
    )
