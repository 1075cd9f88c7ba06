"""The stand-in's HTTP front: Kubernetes REST paths over the :class:`Cluster` store.

Serves ``/api/v1`` (namespaces, nodes, pods, services), ``/apis/apps/v1`` (deployments with
``status`` and ``scale``), ``/apis/policy/v1`` (poddisruptionbudgets) and
``/apis/discovery.k8s.io/v1`` (endpointslices), plus pod ``eviction`` and ``status``. Sandbox
controls live under ``/_sandbox/``. For kubectl: discovery (kube/discovery.py), OpenAPI v3
(kube/openapi.py), ``?watch=true`` streams (kube/watch.py), Tables (kube/tables.py), the
protobuf bodies of its typed clients (kube/protobuf.py) and impersonation (``--as``).

In front of every request, in the apiserver's order (AS/pkg/server/config.go
DefaultBuildHandlerChain): the body is read whole (Content-Length or chunked) so an early answer
never leaves bytes behind on a keep-alive connection; authentication (bearer tokens with an
expiry, EKS tokens: kube/auth.py) -> 401; optional throttling -> 429; RBAC (kube/rbac.py) -> 403;
then the handler. An unexpected exception answers a 500 ``InternalError`` Status. HTTPS with the
stand-in's own CA (kube/tls.py) unless ``tls=False``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import select
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import discovery, openapi, protobuf, rbac, tables
from .auth import SUPERUSER, Authenticator, Identity
from .cluster import Behaviour, Cluster, write_options
from .controllers import Controllers
from .dataplane import DataPlane
from .errors import ApiError, bad_request, invalid, method_not_allowed, not_found
from .kinds import GROUP_VERSIONS, KINDS, Kind, kind_named
from .kubeconfig import kubeconfig, write_private
from .selectors import parse_fields, parse_labels
from .tls import TlsMaterial, issue, server_context
from .validation import WriteOptions
from .watch import Journal, Watcher, WatchRequest, parse_timeout

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 3 * 1024 * 1024  # the apiserver's maxRequestBodyBytes
AUTHZ_GROUP = "authorization.k8s.io"

Route = tuple[Kind, str | None, str | None, str | None]  # kind, namespace, name, subresource
VIEWER_USER = "sandbox-viewer"
VIEWER_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: greenlight-sandbox-viewer}}
rules:
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: greenlight-sandbox-viewer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: greenlight-sandbox-viewer}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {VIEWER_USER}}}
"""


def route(path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis" and GROUP_VERSIONS.get(parts[1]) == parts[2]:
        group, rest = parts[1], parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    ns: str | None = None
    if group == "" and len(rest) in (1, 2) and rest[0] == "namespaces":
        return kind_named("namespaces"), None, rest[1] if len(rest) == 2 else None, None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or (group, rest[0]) not in KINDS or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    kind = KINDS[(group, rest[0])]
    if kind.namespaced is False and ns is not None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    return kind, ns, name, sub


def request_attributes(method: str, path: str, query: dict[str, str]) -> rbac.Attributes:
    """What a request asks, for the authorizer (AS/pkg/endpoints/request/requestinfo.go)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return rbac.Attributes(verb=method.lower(), resource_request=False, path=path)
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        ns = rest[1]
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
    name = rest[1] if len(rest) >= 2 else ""
    watch = query.get("watch", "").lower() in ("true", "1")
    return rbac.Attributes(
        verb=rbac.verb_for(method, named=bool(name), watch=watch),
        group=group,
        version=version,
        resource=rest[0],
        subresource=rest[2] if len(rest) >= 3 else "",
        namespace=ns,
        name=name,
        path=path,
    )


def internal_error(exc: BaseException) -> ApiError:
    """apierrors.NewInternalError."""
    text = f"{type(exc).__name__}: {exc}"
    return ApiError(
        500, "InternalError", f"Internal error occurred: {text}", {"causes": [{"message": text}]}
    )


def _too_large() -> ApiError:
    """apierrors.NewRequestEntityTooLargeError."""
    return ApiError(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}"
    )


class _BodyError(Exception):
    """The request body could not be read: answer, then close the connection."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(
        self,
        code: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        text: bool = False,
        content_type: str | None = None,
    ) -> None:
        if isinstance(body, bytes):
            data = body
        else:
            data = body.encode() if text else json.dumps(body).encode()
        self._responded = True
        self.send_response(code)
        kind = "text/plain; charset=utf-8" if text else "application/json"
        self.send_header("Content-Type", content_type or kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        for warning in getattr(self, "_warnings", ()):
            self.send_header("Warning", f"299 - {json.dumps(warning)}")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    # ------------------------------------------------------------ the request body
    def _read_body(self) -> bytes:
        """The whole request body, read before anything answers (Content-Length or chunked)."""
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if encoding:
            if encoding != "chunked":
                raise _BodyError(
                    ApiError(501, None, f"unsupported transfer encoding: {encoding!r}")
                )
            return self._read_chunked()
        given = self.headers.get("Content-Length")
        if given is None:
            return b""
        try:
            length = int(given)
            if length < 0:
                raise ValueError(given)
        except ValueError:
            raise _BodyError(bad_request(f"invalid Content-Length: {given!r}")) from None
        if length > MAX_BODY_BYTES:
            raise _BodyError(_too_large())
        data = self.rfile.read(length)
        if len(data) < length:
            raise _BodyError(bad_request("the request body ended early"))
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        malformed = _BodyError(bad_request("malformed chunked encoding"))
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise malformed
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise malformed from None
            if size < 0:
                raise malformed
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = self.rfile.readline(8192)
                    if not trailer.endswith(b"\n"):
                        raise malformed
                    if trailer in (b"\r\n", b"\n"):
                        return bytes(out)
            if len(out) + size > MAX_BODY_BYTES:
                raise _BodyError(_too_large())
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise malformed
            out += chunk

    def _body(self) -> Any:
        self._duplicates: list[str] = []  # a keep-alive connection's last body does not count
        raw = self._raw
        if not raw:
            return None
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/vnd.kubernetes.protobuf":  # kubectl's typed clients
            return protobuf.decode(raw)
        duplicates: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in items:
                if key in out:
                    duplicates.append(key)
                out[key] = value
            return out

        try:
            body = json.loads(raw, object_pairs_hook=pairs)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body of the request was not valid JSON: {exc}") from None
        self._duplicates += duplicates
        return body

    def _decoded(
        self, kind: Kind, query: dict[str, str], verb: str, *, patch: bool = False
    ) -> tuple[Any, WriteOptions]:
        """The body of a write and its options. A field given twice follows fieldValidation as
        an unknown one does: Strict a 400 strict decoding error, Warn a warning, Ignore the last
        value (the message names the field, not its path)."""
        options = self._options(query, verb)
        body = self._body()
        texts = [f'duplicate field "{key}"' for key in self._duplicates]
        if texts and options.field_validation == "Strict":
            strict = "strict decoding error: " + ", ".join(texts)
            if not patch:  # handlers/create.go, update.go transformDecodeError
                strict = (
                    f'{kind.kind} in version "{kind.version}" cannot be handled as a '
                    f"{kind.kind}: {strict}"
                )
            raise bad_request(strict)
        if texts and options.field_validation == "Warn":
            for text in texts:
                options.warn(text)
        return body, options

    # ------------------------------------------------------------ the filter chain
    def _dispatch(self, method: str) -> None:
        server = self.server
        with server.counter_lock:
            server.requests += 1
        self._raw = b""
        self._responded = False
        self._warnings: list[str] = []  # Warning: 299 headers (kube/validation.py)
        self._content_type: str | None = None  # a Table's (kube/tables.py)
        try:
            try:
                self._raw = self._read_body()
            except _BodyError as failed:
                self.close_connection = True  # what follows on the connection is unknown
                raise failed.error from None
            except (OSError, ValueError) as exc:  # the client went away mid-body
                self.close_connection = True
                raise bad_request(f"the request body could not be read: {exc}") from None
            self._answer(method)
        except ApiError as err:
            headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
            if isinstance(err, _PlainTooMany):
                self._send(err.code, err.message + "\n", headers, text=True)
            else:
                self._send(err.code, err.body(), headers)
        except Exception as exc:  # a bug in the stand-in: a 500 Status, never a dropped socket
            with server.counter_lock:
                server.internal_errors += 1
            log.exception("kube stand-in: %s %s failed", method, self.path)
            if self._responded:  # half an answer went out: only closing is safe
                self.close_connection = True
                return
            self._send(500, internal_error(exc).body())

    def _answer(self, method: str) -> None:
        server = self.server
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.identity = server.authenticate(self.headers.get("Authorization"))
        self.identity = self._impersonate(self.identity)
        sandbox = url.path.startswith("/_sandbox/")
        if not sandbox:
            server.throttled()
        attrs = request_attributes(method, url.path, query)
        allowed, reason = server.authorizer.authorize(self.identity, attrs)
        if not allowed:
            raise rbac.forbidden(self.identity, attrs, reason)
        if sandbox:
            code, body = server.sandbox(method, url.path, self._body())
            self._send(code, body)
            return
        server.injected_failure()
        if url.path in ("/version", "/version/"):
            code, body = (
                200,
                {
                    "major": "1",
                    "minor": "37",
                    "gitVersion": "v1.37.0-greenlight",
                    "platform": "linux/amd64",
                },
            )
        elif url.path.rstrip("/") == f"/apis/{AUTHZ_GROUP}/v1/selfsubjectaccessreviews":
            if method != "POST":
                raise method_not_allowed(method)
            code, body = 201, self._self_review(self._body())
        elif self._discovery(method, url.path):
            return
        else:
            code, body = self._api(method, url.path, query)
            if code == 0:  # a watch: already streamed
                return
        self._send(code, body, content_type=self._content_type)

    def _impersonate(self, identity: Identity) -> Identity:
        """``Impersonate-User``/``-Group`` (``kubectl --as``/``--as-group``): allowed when the
        caller may ``impersonate`` users (and groups) (AS/pkg/endpoints/filters/
        impersonation.go)."""
        user = self.headers.get("Impersonate-User")
        groups = self.headers.get_all("Impersonate-Group") or []
        if not user:
            if groups:
                raise bad_request("requested [Impersonate-Group] without impersonating a user")
            return identity
        checks = [("users", user)] + [("groups", g) for g in groups]
        for resource, name in checks:
            attrs = rbac.Attributes(verb="impersonate", resource=resource, name=name)
            allowed, _ = self.server.authorizer.authorize(identity, attrs)
            if not allowed:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{resource} "{name}" is forbidden: User "{identity.name}" cannot '
                    f'impersonate resource "{resource}" in API group "" at the cluster scope',
                    {"name": name, "kind": resource},
                )
        return Identity(user, tuple(groups))

    def _discovery(self, method: str, path: str) -> bool:
        """Discovery (kube/discovery.py) and OpenAPI v3 (kube/openapi.py); False: not these."""
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis", "openapi"):
            return False
        body: Any = None
        content_type: str | None = None
        if parts in (["api"], ["apis"]):
            if discovery.wants_aggregated(self.headers.get("Accept")):
                body = discovery.aggregated(legacy_core=parts == ["api"])
                content_type = discovery.AGGREGATED_CONTENT_TYPE
            elif parts == ["api"]:
                host, port = self.server.server_address[:2]
                assert isinstance(host, str)
                body = discovery.api_versions(f"{host}:{port}")
            else:
                body = discovery.api_group_list()
        elif parts[0] == "apis" and len(parts) == 2:
            body = discovery.api_group(parts[1])
        elif parts[0] == "api" and len(parts) == 2:
            body = discovery.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            body = discovery.api_resource_list(parts[1], parts[2])
        elif parts[:2] == ["openapi", "v3"]:
            rest = "/".join(parts[2:])
            body = openapi.document(rest) if rest else openapi.index()
        elif parts == ["openapi", "v2"]:
            # The v2 document is protobuf-only for kubectl; 1.37 does without it (v3 above).
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        else:
            return False
        if body is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method != "GET":
            raise method_not_allowed(method)
        self._send(200, body, content_type=content_type)
        return True

    def _watch(self, kind: Kind, ns: str | None, query: dict[str, str]) -> None:
        """``?watch=true``: newline-delimited watch events, chunked (kube/watch.py)."""
        labels = parse_labels(query.get("labelSelector"))
        fields = parse_fields(query.get("fieldSelector"), kind.resource)
        initial = query.get("sendInitialEvents")
        request = WatchRequest(
            kind=kind,
            namespace=ns if kind.namespaced else None,
            labels=labels,
            fields=fields,
            resource_version=query.get("resourceVersion"),
            timeout=parse_timeout(query.get("timeoutSeconds")),
            bookmarks=query.get("allowWatchBookmarks", "").lower() in ("true", "1"),
            initial_events=None if initial is None else initial.lower() in ("true", "1"),
        )
        as_table = tables.wants_table(self.headers.get("Accept"))
        include = query.get("includeObject")
        watcher = Watcher(self.server.journal, request, time.monotonic)
        started = watcher.start()
        self._responded = True
        self.close_connection = True  # the stream ends the connection's use
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            if isinstance(started, dict):  # too old: one ERROR event, then the end
                self._chunk(started)
            else:
                first, since = started
                shape = (kind, include) if as_table else None
                for event in first:
                    self._chunk(event, shape)
                self.wfile.flush()
                for event in watcher.stream(since, self._client_connected):
                    self._chunk(event, shape)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):  # the client went away
            return

    def _client_connected(self) -> bool:
        """Is the watch's client still there? It sends nothing after its request, so a readable
        socket means it closed (or broke) the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return True
            return bool(self.connection.recv(1))
        except (OSError, ValueError, ssl.SSLError):
            return False

    def _maybe_table(
        self, kind: Kind, items: list[dict[str, Any]], plain: Any, query: dict[str, str]
    ) -> Any:
        """A Table instead when kubectl asks for one to print (kube/tables.py)."""
        if not tables.wants_table(self.headers.get("Accept")):
            return plain
        self._content_type = tables.TABLE_CONTENT_TYPE
        rv = ((plain.get("metadata") or {}) if isinstance(plain, dict) else {}).get(
            "resourceVersion"
        )
        return tables.table(kind, items, resource_version=rv, include=query.get("includeObject"))

    def _chunk(self, event: dict[str, Any], table: tuple[Kind, str | None] | None = None) -> None:
        if table is not None and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            kind, include = table
            obj = {k: v for k, v in event["object"].items() if k not in ("kind", "apiVersion")}
            event = {
                "type": event["type"],
                "object": tables.table(kind, [obj], include=include),
            }
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _self_review(self, body: Any) -> dict[str, Any]:
        """SelfSubjectAccessReview: may the caller do this? (``kubectl auth can-i``)."""
        spec = (body or {}).get("spec") if isinstance(body, dict) else None
        spec = spec if isinstance(spec, dict) else {}
        res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if bool(res) == bool(non):
            raise invalid(
                "SelfSubjectAccessReview",
                AUTHZ_GROUP,
                "",
                [
                    (
                        "FieldValueInvalid",
                        "spec.resourceAttributes",
                        'Invalid value: "null": exactly one of nonResourceAttributes or '
                        "resourceAttributes must be specified",
                    )
                ],
            )
        if res:
            attrs = rbac.Attributes(
                verb=str(res.get("verb", "")),
                group=str(res.get("group", "")),
                version=str(res.get("version", "")),
                resource=str(res.get("resource", "")),
                subresource=str(res.get("subresource", "")),
                namespace=str(res.get("namespace", "")),
                name=str(res.get("name", "")),
            )
        else:
            assert isinstance(non, dict)
            attrs = rbac.Attributes(
                verb=str(non.get("verb", "")), resource_request=False, path=str(non.get("path", ""))
            )
        allowed, reason = self.server.authorizer.authorize(self.identity, attrs)
        status: dict[str, Any] = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": f"{AUTHZ_GROUP}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }

    def _options(self, query: dict[str, str], verb: str) -> WriteOptions:
        """dryRun and fieldValidation (kube/validation.py); warnings go out as headers."""
        return write_options(query, f"{verb}Options", self._warnings)

    def _api(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        cluster = self.server.cluster
        kind, ns, name, sub = route(path)
        ns_key = ns or ""
        if sub == "eviction" and kind.resource == "pods" and method == "POST" and name:
            options = self._options(query, "Create")
            return 201, cluster.evict(ns_key, name, self._body(), options=options)
        if sub == "scale" and kind.resource in ("deployments", "replicasets") and name:
            res = kind.resource
            if method == "GET":
                return 200, cluster.scale(ns_key, name, res)
            if method == "PUT":
                return 200, cluster.set_scale(ns_key, name, self._body(), res)
            if method == "PATCH":
                body = self._body()
                replicas = ((body or {}).get("spec") or {}).get("replicas")
                return 200, cluster.set_scale(ns_key, name, {"spec": {"replicas": replicas}}, res)
            raise method_not_allowed(method)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method == "GET" and sub is None and query.get("watch", "").lower() in ("true", "1"):
                self._watch(kind, ns, query)
                return 0, None
            if method == "GET":
                labels = parse_labels(query.get("labelSelector"))
                fields = parse_fields(query.get("fieldSelector"), kind.resource)
                with cluster.lock:
                    listed = cluster.list(
                        kind, ns if kind.namespaced else None, labels=labels, fields=fields
                    )
                return 200, self._maybe_table(kind, listed["items"], listed, query)
            if method == "POST":
                if kind.namespaced and ns is None:
                    raise ApiError(405, "MethodNotAllowed", "POST needs a namespace")
                body, options = self._decoded(kind, query, "Create")
                return 201, cluster.create(kind, ns_key, body, options=options)
            raise method_not_allowed(method)
        if method == "GET":
            with cluster.lock:
                found = cluster.out(kind, cluster.get(kind, ns_key, name))
            return 200, self._maybe_table(kind, [found], found, query)
        if method == "PUT":
            body, options = self._decoded(kind, query, "Update")
            return 200, cluster.replace(kind, ns_key, name, body, subresource=sub, options=options)
        if method == "PATCH":
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/apply-patch"):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "server-side apply is not served by the stand-in (Greenlight does not use it)",
                )
            body, options = self._decoded(kind, query, "Patch", patch=True)
            return 200, cluster.patch(
                kind, ns_key, name, body, content_type, subresource=sub, options=options
            )
        if method == "DELETE":
            return 200, cluster.delete(
                kind,
                ns_key,
                name,
                self._body(),
                query.get("propagationPolicy"),
                write=self._options(query, "Delete"),
            )
        raise method_not_allowed(method)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        cluster: Cluster,
        authenticator: Authenticator,
        sandbox: Callable[[str, str, Any], tuple[int, Any]],
        *,
        open_access: bool,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.cluster = cluster
        self.authenticator = authenticator
        self.authorizer = rbac.Authorizer(cluster.objects)
        self.journal: Journal = cluster.journal
        self.sandbox = sandbox
        self.open_access = open_access  # no token configured: no header = the superuser
        self.tls = tls
        self.counter_lock = threading.Lock()
        self.requests = 0
        self.internal_errors = 0
        self.throttle_left = 0  # the next N requests answer 429
        self.throttle_retry_after = 1
        self.throttle_style = "status"
        self.throttled_requests = 0
        self.fail_left = 0  # the next N API requests raise (an injected stand-in bug)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # In the connection's own thread: a client that never finishes its handshake holds up
        # only itself, never the accept loop.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            wrapped.settimeout(None)
            super().finish_request(wrapped, client_address)
        finally:
            with contextlib.suppress(OSError):
                wrapped.shutdown(socket.SHUT_RDWR)
            wrapped.close()

    def authenticate(self, header: str | None) -> Identity:
        if not header and self.open_access:
            return SUPERUSER
        return self.authenticator.authenticate(header)

    def throttled(self) -> None:
        with self.counter_lock:
            if self.throttle_left <= 0:
                return
            self.throttle_left -= 1
            self.throttled_requests += 1
            retry, style = self.throttle_retry_after, self.throttle_style
        if style == "apf":  # API Priority and Fairness: plain text (filters/maxinflight.go)
            raise _PlainTooMany(retry)
        raise ApiError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            retry_after=retry,
        )

    def injected_failure(self) -> None:
        with self.counter_lock:
            if self.fail_left <= 0:
                return
            self.fail_left -= 1
        raise RuntimeError("failure injected through the sandbox hook (/_sandbox/fail)")


class _PlainTooMany(ApiError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(429, None, "Too many requests, please try again later.", {}, retry_after)


class KubeStandIn:
    """The stand-in API server with its controllers, on a loopback port.

    >>> with KubeStandIn() as kube:
    ...     kube.add_node("node-1", cpu="4", memory="8Gi")

    ``token``: a static token for the superuser (group ``system:masters``); without one,
    requests with no Authorization header act as the superuser (tokens minted with
    :meth:`mint_token` are still checked and authorised). ``tls`` (default): HTTPS with the
    stand-in's own CA (:attr:`ca_pem`, :attr:`ca_file`). ``throttle``: the first N requests
    answer 429.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        tick_seconds: float = 0.05,
        cluster: Cluster | None = None,
        data_plane: bool = False,
        tls: bool = True,
        throttle: int = 0,
        retry_after: int = 1,
        time_scale: float | None = None,
    ) -> None:
        self.cluster = cluster or Cluster()
        if time_scale is not None:  # probe delays and grace periods (Cluster.time_scale)
            self.cluster.time_scale = time_scale
        self.data_plane = DataPlane(self.cluster) if data_plane else None
        self.controllers = Controllers(self.cluster)
        if self.cluster.journal is None:  # the watch history (kube/watch.py)
            self.cluster.journal = Journal(self.cluster)
        self.journal: Journal = self.cluster.journal
        self.token = token
        self.tick_seconds = tick_seconds
        self.auth = Authenticator()
        if token is not None:
            self.auth.add(token, SUPERUSER)
        self.tls: TlsMaterial | None = (
            issue(["127.0.0.1", "localhost", "::1", host]) if tls else None
        )
        self._server = _Server(
            (host, port),
            self.cluster,
            self.auth,
            self._sandbox,
            open_access=token is None,
            tls=server_context(self.tls) if self.tls else None,
        )
        self.throttle(throttle, retry_after=retry_after)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.controller_errors = 0  # failed controller ticks (and data plane syncs)
        self.controller_error_log: collections.deque[str] = collections.deque(maxlen=20)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def ca_pem(self) -> bytes | None:
        """The CA that signed the serving certificate (None without TLS)."""
        return self.tls.ca_pem if self.tls else None

    @property
    def ca_file(self) -> str | None:
        """:attr:`ca_pem` in a file (for ``Configuration.ssl_ca_cert``, urllib3's ``ca_certs``)."""
        if self.tls is None:
            return None
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="greenlight-kube-")
            path = Path(self._tmp.name) / "ca.crt"
            path.write_bytes(self.tls.ca_pem)
        return str(Path(self._tmp.name) / "ca.crt")

    @property
    def requests(self) -> int:
        return self._server.requests

    @property
    def internal_errors(self) -> int:
        """Requests that hit an unexpected exception (answered 500)."""
        return self._server.internal_errors

    def start(self) -> KubeStandIn:
        serve = threading.Thread(
            target=self._server.serve_forever, name="kube-standin-http", daemon=True
        )
        loop = threading.Thread(target=self._loop, name="kube-standin-controllers", daemon=True)
        self._threads = [serve, loop]
        if self.data_plane is not None:
            self.data_plane.start()
            self._threads.append(
                threading.Thread(target=self._data_loop, name="kube-standin-data", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.controllers.tick()
            except Exception as exc:  # a failing reconcile never stops the controllers
                self._failed("controllers", exc)

    def _data_loop(self) -> None:
        assert self.data_plane is not None
        while not self._stop.wait(0.1):
            try:
                self.data_plane.sync()
            except Exception as exc:
                self._failed("data plane", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        text = f"{what}: {type(exc).__name__}: {exc}"
        repeated = bool(self.controller_error_log) and self.controller_error_log[-1] == text
        self.controller_errors += 1
        self.controller_error_log.append(text)
        if not repeated or self.controller_errors % 100 == 0:  # every tick would flood the log
            log.error(
                "kube stand-in %s tick failed (%d so far); it goes on",
                what,
                self.controller_errors,
                exc_info=exc,
            )

    def stop(self) -> None:
        self._stop.set()
        self.journal.close()  # watch streams end cleanly
        if self.data_plane is not None:
            self.data_plane.stop()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- sandbox controls
    def add_node(
        self,
        name: str,
        *,
        cpu: str = "4",
        memory: str = "8Gi",
        pods: int = 110,
        address: str = "127.0.0.1",
        zone: str = "zone-a",
        instance_id: str | None = None,
        ready: bool = True,
    ) -> dict[str, Any]:
        now = self.cluster.now()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "topology.kubernetes.io/zone": zone,
                    "node-role.kubernetes.io/worker": "",
                },
            },
            "spec": {"providerID": f"aws:///{zone}/{instance_id or name}"},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": str(pods)},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)},
                "addresses": [
                    {"type": "InternalIP", "address": address},
                    {"type": "Hostname", "address": name},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            },
        }
        with self.cluster.lock:
            created = self.cluster.create(
                kind_named("nodes"), "", {k: v for k, v in body.items() if k != "status"}
            )
            node = self.cluster.get(kind_named("nodes"), "", name)
            node["status"] = body["status"]
            node["metadata"]["resourceVersion"] = self.cluster._bump()
            return {**created, "status": body["status"]}

    def cordon(self, name: str, *, unschedulable: bool = True) -> None:
        """Cordon (or uncordon) a node, as `kubectl cordon` patches it."""
        with self.cluster.lock:
            self.cluster.patch(
                kind_named("nodes"),
                "",
                name,
                {"spec": {"unschedulable": True if unschedulable else None}},
                "application/strategic-merge-patch+json",
            )

    def set_behaviour(
        self,
        image: str,
        kind: str,
        ready_after: float | None = 0.5,
        exit_after: float | None = None,
        *,
        error_ratio: float = 0.0,
        delay_ms: float = 0.0,
    ) -> None:
        """``ready_after`` None: Ready as the readiness probe says; ``exit_after``: seconds to
        exit on SIGTERM (``math.inf``: killed at the end of the grace period); ``error_ratio``
        and ``delay_ms``: what its pods' real requests get (HTTP 500, an added delay)."""
        with self.cluster.lock:
            self.cluster.behaviours[image] = Behaviour(
                kind, ready_after, exit_after, error_ratio=error_ratio, delay_ms=delay_ms
            )

    def add_static_pod(self, node: str, pod: dict[str, Any]) -> None:
        """A static pod on ``node`` (as a manifest in its kubelet's directory): its mirror pod,
        ``<name>-<node>`` in ``kube-system`` unless the body says otherwise, appears at the next
        controller tick and comes back if deleted."""
        with self.cluster.lock:
            self.controllers.add_static_pod(node, pod)

    def install_eks_daemonsets(self) -> None:
        """The ``aws-node`` and ``kube-proxy`` DaemonSets every EKS node runs (kube/eks.py)."""
        from .eks import eks_daemonsets

        with self.cluster.lock:
            for body in eks_daemonsets():
                if self.cluster.find("daemonsets", "kube-system", body["metadata"]["name"]):
                    continue
                self.cluster.create(kind_named("daemonsets"), "kube-system", body)

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cluster.lock:
                if predicate():
                    return True
            time.sleep(self.tick_seconds)
        return False

    # ------------------------------------------------------------ identities, RBAC, faults
    def mint_token(
        self, user: str, groups: list[str] | tuple[str, ...] = (), *, ttl: float | None = None
    ) -> str:
        """A new bearer token for the user ``user`` in ``groups``, valid ``ttl`` seconds."""
        return self.auth.mint(Identity(user, tuple(groups)), ttl=ttl)

    def kubeconfig(self, token: str | None = None) -> str:
        """A kubeconfig for this stand-in (CA, server, ``token``; default: the superuser's)."""
        token = token or self.token or self.auth.mint(SUPERUSER)
        return kubeconfig(self.url, token, ca_pem=self.ca_pem)

    def write_kubeconfig(self, path: str | Path, token: str | None = None) -> Path:
        """:meth:`kubeconfig` written to ``path``, mode 0600."""
        return write_private(path, self.kubeconfig(token))

    def write_viewer_kubeconfig(self, path: str | Path) -> Path:
        """A read-only kubeconfig (mode 0600) for watching the stand-in with kubectl: the user
        ``sandbox-viewer`` bound to a ClusterRole that may get, list and watch everything
        (kubectl ``get``, ``get -w``, ``describe``, ``explain``; writes answer 403)."""
        self.apply_manifest(VIEWER_RBAC)
        token = self.mint_token(VIEWER_USER)
        return write_private(
            path, kubeconfig(self.url, token, ca_pem=self.ca_pem, user=VIEWER_USER)
        )

    def apply_manifest(self, text: str) -> list[dict[str, Any]]:
        """Create (or replace) every object of a multi-document YAML manifest, as the superuser
        would with ``kubectl apply`` (e.g. docs/rbac.yaml)."""
        applied = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            api_version, kind_name = str(doc.get("apiVersion", "")), doc.get("kind")
            group = api_version.rpartition("/")[0]
            kind = next(
                (k for k in KINDS.values() if k.kind == kind_name and k.group == group), None
            )
            if kind is None:
                raise ValueError(f"the stand-in does not serve {api_version} {kind_name}")
            meta = doc.get("metadata") or {}
            ns = (meta.get("namespace") or "default") if kind.namespaced else ""
            with self.cluster.lock:
                if self.cluster.find(kind.resource, ns, meta.get("name", "")) is None:
                    applied.append(self.cluster.create(kind, ns, doc))
                else:
                    applied.append(
                        self.cluster.replace(kind, ns, meta["name"], doc, check_rv=False)
                    )
        return applied

    def can(
        self,
        token_or_identity: str | Identity,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str = "",
        name: str = "",
    ) -> bool:
        """Would RBAC allow it? ``resource`` may be ``pods/eviction``."""
        identity = (
            token_or_identity
            if isinstance(token_or_identity, Identity)
            else self.auth.authenticate(f"Bearer {token_or_identity}")
        )
        res, _, sub = resource.partition("/")
        allowed, _ = self._server.authorizer.authorize(
            identity,
            rbac.Attributes(
                verb=verb,
                group=group,
                resource=res,
                subresource=sub,
                namespace=namespace,
                name=name,
            ),
        )
        return allowed

    def throttle(self, requests: int, *, retry_after: int = 1, style: str = "status") -> None:
        """The next ``requests`` requests (any verb; not ``/_sandbox/``) answer 429 with
        ``Retry-After``. ``style``: ``status`` (a TooManyRequests Status with
        ``retryAfterSeconds``) or ``apf`` (the plain-text answer of API Priority and Fairness)."""
        if style not in ("status", "apf"):
            raise ValueError(f"throttle style {style!r}: expected 'status' or 'apf'")
        with self._server.counter_lock:
            self._server.throttle_left = max(0, int(requests))
            self._server.throttle_retry_after = max(1, int(retry_after))
            self._server.throttle_style = style

    @property
    def throttled_requests(self) -> int:
        return self._server.throttled_requests

    def fail_next(self, requests: int = 1) -> None:
        """The next ``requests`` API requests raise inside the stand-in (tests its 500s)."""
        with self._server.counter_lock:
            self._server.fail_left = max(0, int(requests))

    def status(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "internalErrors": self.internal_errors,
            "controllerErrors": self.controller_errors,
            "controllerErrorLog": list(self.controller_error_log),
            "throttledRequests": self.throttled_requests,
        }

    def _sandbox(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/_sandbox/status" and method == "GET":
            return 200, self.status()
        if method != "POST" or not isinstance(body, dict):
            raise bad_request("sandbox controls take a POST with a JSON object")
        try:
            if path == "/_sandbox/tokens":
                ttl = body.get("ttl")
                token = self.mint_token(
                    str(body["user"]),
                    [str(g) for g in body.get("groups") or []],
                    ttl=None if ttl is None else float(ttl),
                )
                return 201, {"token": token}
            if path == "/_sandbox/throttle":
                self.throttle(
                    int(body.get("requests", 1)),
                    retry_after=int(body.get("retryAfter", 1)),
                    style=str(body.get("style", "status")),
                )
                return 200, {"ok": True}
            if path == "/_sandbox/fail":
                self.fail_next(int(body.get("requests", 1)))
                return 200, {"ok": True}
            if path == "/_sandbox/manifests":
                applied = self.apply_manifest(str(body["yaml"]))
                return 201, {"applied": len(applied)}
            if path == "/_sandbox/behaviours":
                self.set_behaviour(
                    str(body["image"]),
                    str(body.get("kind", "ready")),
                    (
                        None
                        if body.get("ready_after", 0.5) is None
                        else float(body.get("ready_after", 0.5))
                    ),
                    None if body.get("exit_after") is None else float(body["exit_after"]),
                )
                return 200, {"ok": True}
            if path == "/_sandbox/nodes":
                name = str(body.pop("name"))
                return 201, self.add_node(name, **body)
            if path == "/_sandbox/timescale":
                with self.cluster.lock:
                    self.cluster.time_scale = float(body["scale"])
                return 200, {"ok": True, "scale": self.cluster.time_scale}
            if path == "/_sandbox/staticpods":
                self.add_static_pod(str(body["node"]), dict(body["pod"]))
                return 201, {"ok": True}
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_request(f"sandbox control {path}: {exc}") from None
        raise not_found("sandbox", "", path)
