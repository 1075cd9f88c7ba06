"""Kubernetes API errors as typed exceptions, where the client meets them.

404 -> :class:`NotFound`, 409 -> :class:`Conflict` (AlreadyExists or a stale resourceVersion),
422 -> :class:`Invalid`, 429 -> :class:`TooManyRequests`; other statuses stay ``ApiException``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import GreenlightError, PermanentError, TemporaryError

if TYPE_CHECKING:
    from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


class KubeError(GreenlightError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Invalid(KubeError, PermanentError):
    pass


class TooManyRequests(KubeError, TemporaryError):
    def __init__(self, status: int, reason: str, message: str, delay: float) -> None:
        KubeError.__init__(self, status, reason, message)
        self.delay = delay


def status_of(exc: ApiException) -> tuple[str, str, dict[str, Any]]:
    """(reason, message, details) from an ApiException's Status body."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return (
        str(body.get("reason") or exc.reason or ""),
        str(body.get("message") or exc),
        body.get("details") or {},
    )


def translate(exc: ApiException) -> Exception:
    reason, message, details = status_of(exc)
    status = int(exc.status or 0)
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return Conflict(status, reason, message)
    if status == 422:
        return Invalid(status, reason, message)
    if status == 429:
        delay = float(details.get("retryAfterSeconds") or 5)
        return TooManyRequests(status, reason, message, delay)
    return exc


@contextmanager
def typed_errors() -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        raise translate(exc) from exc


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with typed_errors():
        return fn(*args, **kwargs)
