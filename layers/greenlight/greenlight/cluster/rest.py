"""The one request path to the Kubernetes API: raw JSON through the official ``ApiClient``.

Greenlight reads and writes a handful of objects as plain dicts. Going through ``ApiClient``
keeps the client's TLS, bearer-token auth (with its refresh hook) and retries, while skipping
the typed API classes: importing ``AppsV1Api`` and ``CoreV1Api`` builds hundreds of pydantic
models and costs over a second of a cold start. The ``ApiClient`` itself is made on the first
request (for EKS that is a DescribeCluster call), never at a function's init. Every answer
other than 2xx becomes a typed error (:mod:`.errors`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import NotFound, Unauthorized, Unavailable, from_response

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REQUEST_TIMEOUT_SECONDS = (5, 15)  # (connect, read)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeRest:
    """JSON requests to the API server. ``api`` is an ``ApiClient``, or a function that makes
    one (called on the first request, once)."""

    def __init__(self, api: ApiClient | Callable[[], ApiClient]) -> None:
        self._factory = api if callable(api) else None
        self._api = None if callable(api) else api
        # Requests may come from several threads at once (the edge's snapshot reads): the
        # client is made by one of them (the kubeconfig loader writes its certificate files as
        # it goes, and a second loader beside it could read one half-written).
        self._making = threading.Lock()

    @property
    def api(self) -> ApiClient:
        api = self._api
        if api is None:
            with self._making:
                if self._api is None:
                    assert self._factory is not None
                    self._api = self._factory()
                api = self._api
        return api

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One request; a 401 makes the client again from its credentials (a rotated
        kubeconfig secret, a new EKS token) and tries once more."""
        api = self.api
        try:
            return self._request(api, method, path, body=body, query=query, ctype=content_type)
        except Unauthorized:
            if self._factory is None:
                raise
            with self._making:  # made again once, however many requests saw the 401
                if self._api is api:
                    self._api = None
            again = self.api
            return self._request(again, method, path, body=body, query=query, ctype=content_type)

    def _request(
        self,
        api: ApiClient,
        method: str,
        path: str,
        *,
        body: Any,
        query: dict[str, str] | None,
        ctype: str | None,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = ctype or "application/json"
        serialized = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = api.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            response.read()  # type: ignore[no-untyped-call]
        except HTTPError as exc:
            raise Unavailable(0, type(exc).__name__, f"{method} {path}: {exc}") from None
        except ApiException as exc:  # the client's own: TLS failures (status 0), its retries
            if not exc.status:
                raise Unavailable(0, str(exc.reason), f"{method} {path}: {exc}") from None
            headers = dict(exc.headers or {})
            raise from_response(int(exc.status), str(exc.body or ""), headers) from None
        text = response.data.decode("utf-8") if response.data else ""
        if not 200 <= response.status <= 299:
            raise from_response(response.status, text, dict(response.headers or {}))
        result: dict[str, Any] = json.loads(text) if text else {}
        return result

    def get(self, path: str, **query: str) -> dict[str, Any]:
        return self.request("GET", path, query=query or None)

    def read(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when there is none."""
        try:
            return self.get(path)
        except NotFound:
            return None

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        """The items of the list at ``path``."""
        found: list[dict[str, Any]] = self.get(path, **query).get("items") or []
        return found

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, body=body)

    def patch(
        self, path: str, body: Any, *, content_type: str = STRATEGIC_MERGE_PATCH
    ) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=content_type)
