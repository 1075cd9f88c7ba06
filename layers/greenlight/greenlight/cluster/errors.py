"""Kubernetes API answers as typed errors, made in one place: the request path of
:class:`~greenlight.cluster.rest.KubeRest`.

Every one is a :class:`~greenlight.errors.TemporaryError` (retry, after ``delay``) or a
:class:`~greenlight.errors.PermanentError` (the same request cannot succeed):

| status | error | kind |
|---|---|---|
| 400, 422 | :class:`Invalid` | permanent |
| 401 | :class:`Unauthorized` (after one more try with a client made anew) | temporary |
| 403 | :class:`Forbidden` | permanent |
| 404 | :class:`NotFound` | permanent |
| 409 | :class:`Conflict` (a stale resourceVersion, or AlreadyExists) | temporary |
| 429 | :class:`TooManyRequests`, with the server's Retry-After | temporary |
| 5xx | :class:`ServerError` | temporary |
| no answer | :class:`Unavailable` | temporary |
| other | :class:`Refused` | permanent |

A 401 means stale credentials (an expired EKS token, a rotated kubeconfig secret): the request
path makes its client again from them, which reads the secret or makes a token anew.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import GreenlightError, PermanentError, TemporaryError

DEFAULT_RETRY_SECONDS = 5.0


class KubeError(GreenlightError):
    """An answer of the API server other than 2xx (``status`` 0: no answer at all)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        causes: tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        detail = "; ".join([message, *causes]) if causes else message
        super().__init__(f"{status} {reason}: {detail}")
        self.status, self.reason, self.message = status, reason, message
        self.causes = causes
        self.retry_after = retry_after  # what the server asked for, if it did
        self.delay = retry_after or DEFAULT_RETRY_SECONDS  # TemporaryError's


class Invalid(KubeError, PermanentError):
    pass


class Unauthorized(KubeError, TemporaryError):
    pass


class Forbidden(KubeError, PermanentError):
    pass


class NotFound(KubeError, PermanentError):
    pass


class Conflict(KubeError, TemporaryError):
    pass


class TooManyRequests(KubeError, TemporaryError):
    pass


class ServerError(KubeError, TemporaryError):
    pass


class Unavailable(KubeError, TemporaryError):
    pass


class Refused(KubeError, PermanentError):
    pass


_BY_STATUS: dict[int, type[KubeError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: TooManyRequests,
}


def _status_body(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text or "{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(headers: Mapping[str, str], details: Mapping[str, Any]) -> float | None:
    header = str(headers.get("Retry-After") or headers.get("retry-after") or "")
    if header.isdigit():
        return float(header)
    seconds = details.get("retryAfterSeconds")
    return float(seconds) if isinstance(seconds, int) and seconds > 0 else None


def from_response(status: int, text: str, headers: Mapping[str, str]) -> KubeError:
    """The typed error for an answer with ``status`` and the Status body ``text``."""
    body = _status_body(text)
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    causes = tuple(
        f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
        for c in (details or {}).get("causes") or []
        if isinstance(c, dict)
    )
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else Refused)
    return kind(
        status,
        str(body.get("reason") or ""),
        str(body.get("message") or text[:300] or f"HTTP {status}"),
        causes=causes,
        retry_after=_retry_after(headers, details or {}),
    )
