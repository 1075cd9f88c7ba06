"""GitHub webhooks on a Lambda Function URL: signature check and what each delivery gets.

The signature is ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``; the raw body
is the exact bytes GitHub sent (base64-decoded when the Function URL says so), compared in
constant time. The SHA-1 ``X-Hub-Signature`` header alone is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import EventError, SignatureError
from .triggers import CommitPush, Ignored, from_github_push

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The exact bytes of a Function URL request body."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise EventError("body: expected a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("body: isBase64Encoded is set but the body is not base64") from None
    return body.encode()


def method_of(event: Mapping[str, Any]) -> str:
    """The request's HTTP method (``requestContext.http.method``; POST when the event does not
    say). EventError when a part of that path is there but not an object or a string."""
    context = event.get("requestContext")
    if context is None:
        return "POST"
    if not isinstance(context, Mapping):
        raise EventError("requestContext: expected an object")
    http = context.get("http")
    if http is None:
        return "POST"
    if not isinstance(http, Mapping):
        raise EventError("requestContext.http: expected an object")
    method = http.get("method", "POST")
    if not isinstance(method, str):
        raise EventError("requestContext.http.method: expected a string")
    return method


def headers_of(event: Mapping[str, Any]) -> dict[str, str]:
    headers = event.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise EventError("headers: expected an object")
    return {str(k).lower(): str(v) for k, v in headers.items()}


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``body`` carries a valid SHA-256 signature."""
    given = headers.get(SIGNATURE_HEADER)
    if not given:
        if headers.get("x-hub-signature"):
            raise SignatureError("only a SHA-1 signature was sent; SHA-256 is required")
        raise SignatureError("X-Hub-Signature-256 header missing")
    if not given.startswith("sha256="):
        raise SignatureError("X-Hub-Signature-256 is not of the form sha256=<hex>")
    if not hmac.compare_digest(given.encode(), sign(body, secret).encode()):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


@dataclass(frozen=True)
class Delivery:
    """What a verified delivery asks for: a push to queue, or nothing."""

    status: int
    message: str
    delivery: str
    event: str
    push: CommitPush | None = None


def accept(event: Mapping[str, Any], secret: str) -> Delivery:
    """Verify a Function URL event and decide what it gets. Raises SignatureError/EventError."""
    method = method_of(event)
    if method != "POST":
        raise EventError(f"method {method[:20]!r}: only POST is accepted")
    headers = headers_of(event)
    body = raw_body(event)
    if len(body) > MAX_BODY_BYTES:
        raise EventError("body larger than GitHub's 25 MB limit")
    verify(headers, body, secret)
    kind = headers.get(EVENT_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER, "")
    if not delivery:
        raise EventError("X-GitHub-Delivery header missing")
    if kind == "ping":
        return Delivery(200, "pong", delivery, kind)
    if kind != "push":
        return Delivery(202, f"event {kind!r} ignored: only push deploys", delivery, kind)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventError(
            "body: not JSON (set the webhook content type to application/json)"
        ) from None
    if not isinstance(payload, dict):
        raise EventError("body: expected a JSON object")
    trigger = from_github_push(payload, delivery=delivery)
    if isinstance(trigger, Ignored):
        return Delivery(202, trigger.reason, delivery, kind)
    assert isinstance(trigger, CommitPush)
    return Delivery(202, "queued", delivery, kind, trigger)
