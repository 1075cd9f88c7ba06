"""Raw JSON requests through the official client's ``ApiClient``.

Greenlight reads and writes a handful of objects as plain dicts. Going through ``ApiClient``
keeps the client's TLS, bearer-token auth (with its refresh hook), retries and exceptions, while
skipping the typed API classes: importing ``AppsV1Api`` and ``CoreV1Api`` builds hundreds of
pydantic models and costs over a second of a cold start. Errors are the client's own
``ApiException`` subclasses, which :mod:`.kube` turns into typed errors.
"""

from __future__ import annotations

import json
from typing import Any

REQUEST_TIMEOUT_SECONDS = (5, 15)  # (connect, read)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# The well-known node label that takes a node out of external load balancers (the HAProxy
# backends): the night shrink sets it before a drain, and the edge leaves such nodes out.
EXCLUDE_FROM_LOAD_BALANCERS = "node.kubernetes.io/exclude-from-external-load-balancers"


class KubeRest:
    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        response.read()
        text = response.data.decode("utf-8") if response.data else ""
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        result: dict[str, Any] = json.loads(text) if text else {}
        return result

    def get(self, path: str, **query: str) -> dict[str, Any]:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, body=body)

    def patch(
        self, path: str, body: Any, *, content_type: str = STRATEGIC_MERGE_PATCH
    ) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=content_type)


def deployments(namespace: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{base}/{name}" if name else base


def services(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/services"
    return f"{base}/{name}" if name else base
