"""The stand-in's HTTP front: Kubernetes REST paths over the :class:`Cluster` store.

Serves ``/api/v1`` (namespaces, nodes, pods, services), ``/apis/apps/v1`` (deployments with
``status`` and ``scale``), ``/apis/policy/v1`` (poddisruptionbudgets) and
``/apis/discovery.k8s.io/v1`` (endpointslices), plus pod ``eviction`` and ``status``. Sandbox
controls live under ``/_sandbox/``. Bearer tokens are checked when one is configured.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .cluster import Behaviour, Cluster
from .controllers import Controllers
from .dataplane import DataPlane
from .errors import ApiError, bad_request, method_not_allowed, not_found
from .kinds import GROUP_VERSIONS, KINDS, Kind, kind_named
from .selectors import parse_fields, parse_labels

Route = tuple[Kind, str | None, str | None, str | None]  # kind, namespace, name, subresource


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise bad_request(f"the body of the request was not valid JSON: {exc}") from None

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def _dispatch(self, method: str) -> None:
        self.server.requests += 1
        try:
            if not self._authorised():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path.startswith("/_sandbox/"):
                code, body = self.server.sandbox(method, url.path, self._body())
            elif url.path in ("/version", "/version/"):
                code, body = (
                    200,
                    {
                        "major": "1",
                        "minor": "37",
                        "gitVersion": "v1.37.0-greenlight",
                        "platform": "linux/amd64",
                    },
                )
            else:
                code, body = self._api(method, url.path, query)
            self._send(code, body)
        except ApiError as err:
            headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
            self._send(err.code, err.body(), headers)

    def _api(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        cluster = self.server.cluster
        kind, ns, name, sub = route(path)
        ns_key = ns or ""
        if sub == "eviction" and kind.resource == "pods" and method == "POST" and name:
            return 201, cluster.evict(ns_key, name, self._body())
        if sub == "scale" and kind.resource == "deployments" and name:
            if method == "GET":
                return 200, cluster.scale(ns_key, name)
            if method == "PUT":
                return 200, cluster.set_scale(ns_key, name, self._body())
            if method == "PATCH":
                body = self._body()
                replicas = ((body or {}).get("spec") or {}).get("replicas")
                return 200, cluster.set_scale(ns_key, name, {"spec": {"replicas": replicas}})
            raise method_not_allowed(method)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method == "GET":
                labels = parse_labels(query.get("labelSelector"))
                fields = parse_fields(query.get("fieldSelector"), kind.resource)
                with cluster.lock:
                    return 200, cluster.list(
                        kind, ns if kind.namespaced else None, labels=labels, fields=fields
                    )
            if method == "POST":
                if kind.namespaced and ns is None:
                    raise ApiError(405, "MethodNotAllowed", "POST needs a namespace")
                return 201, cluster.create(kind, ns_key, self._body())
            raise method_not_allowed(method)
        if method == "GET":
            with cluster.lock:
                return 200, cluster.out(kind, cluster.get(kind, ns_key, name))
        if method == "PUT":
            return 200, cluster.replace(kind, ns_key, name, self._body(), subresource=sub)
        if method == "PATCH":
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/apply-patch"):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "server-side apply is not served by the stand-in (Greenlight does not use it)",
                )
            return 200, cluster.patch(
                kind, ns_key, name, self._body(), content_type, subresource=sub
            )
        if method == "DELETE":
            return 200, cluster.delete(
                kind, ns_key, name, self._body(), query.get("propagationPolicy")
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
        token: str | None,
        sandbox: Callable[[str, str, Any], tuple[int, Any]],
    ) -> None:
        super().__init__(address, _Handler)
        self.cluster = cluster
        self.token = token
        self.sandbox = sandbox
        self.requests = 0


class KubeStandIn:
    """The stand-in API server with its controllers, on a loopback port.

    >>> with KubeStandIn() as kube:
    ...     kube.add_node("node-1", cpu="4", memory="8Gi")
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
    ) -> None:
        self.cluster = cluster or Cluster()
        self.data_plane = DataPlane(self.cluster) if data_plane else None
        self.controllers = Controllers(self.cluster)
        self.token = token
        self.tick_seconds = tick_seconds
        self._server = _Server((host, port), self.cluster, token, self._sandbox)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
            self.controllers.tick()

    def _data_loop(self) -> None:
        assert self.data_plane is not None
        while not self._stop.wait(0.1):
            self.data_plane.sync()

    def stop(self) -> None:
        self._stop.set()
        if self.data_plane is not None:
            self.data_plane.stop()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

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

    def set_behaviour(self, image: str, kind: str, ready_after: float = 0.5) -> None:
        with self.cluster.lock:
            self.cluster.behaviours[image] = Behaviour(kind, ready_after)

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cluster.lock:
                if predicate():
                    return True
            time.sleep(self.tick_seconds)
        return False

    def _sandbox(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method != "POST" or not isinstance(body, dict):
            raise bad_request("sandbox controls take a POST with a JSON object")
        try:
            if path == "/_sandbox/behaviours":
                self.set_behaviour(
                    str(body["image"]),
                    str(body.get("kind", "ready")),
                    float(body.get("ready_after", 0.5)),
                )
                return 200, {"ok": True}
            if path == "/_sandbox/nodes":
                name = str(body.pop("name"))
                return 201, self.add_node(name, **body)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_request(f"sandbox control {path}: {exc}") from None
        raise not_found("sandbox", "", path)
