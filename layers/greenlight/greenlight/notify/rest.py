"""JSON over HTTPS with the standard library, retried to a deadline; and GitHub's REST calls.

:func:`send` is the one request path (GitHub and the Slack webhook): it retries what the
server says to retry and nothing else, and never waits past the deadline:

- ``retry-after`` (seconds) on any answer: wait that long;
- ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` (epoch seconds): wait until then;
- 429, or a 403 whose message is about a rate limit, without those headers: wait a minute
  (GitHub's advice for its secondary limits);
- 5xx and no answer at all: 1, 2, 4 ... seconds (at most 30).

A wait that would end past the deadline is not started: :class:`Unavailable` (a
``TemporaryError``) is raised at once. Any other 4xx is :class:`Refused` (a ``PermanentError``).
The clock, the wall clock and the sleeper are injectable, so tests wait for nothing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from ..deadline import Deadline
from ..errors import PermanentError, TemporaryError

API_VERSION = "2022-11-28"
USER_AGENT = "greenlight-notifier"
REQUEST_TIMEOUT = 10.0  # seconds, at most, for one request
SECONDARY_LIMIT_WAIT = 60.0
BACKOFF_MAX = 30.0


class Refused(PermanentError):
    """A 4xx answer that retrying cannot change."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(Refused):
    """401: the credentials are wrong or expired."""


class Unavailable(TemporaryError):
    """No good answer before the deadline (rate limited, 5xx, unreachable)."""


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def message(self) -> str:
        try:
            found = self.json()
        except ValueError:
            return self.body[:200].decode("utf-8", "replace")
        if isinstance(found, dict):
            return str(found.get("message") or found)[:200]
        return str(found)[:200]


@dataclass
class Transport:
    """Sends JSON requests, retrying to a deadline (see the module's description)."""

    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time  # epoch seconds, for x-ratelimit-reset
    opener: urllib.request.OpenerDirector = field(default_factory=urllib.request.build_opener)

    def _once(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        if not url.startswith(("https://", "http://")):
            raise PermanentError(f"{url.split('?', 1)[0]!r}: not an http(s) URL")
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url, data=body, method=method, headers=dict(headers)
        )
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return Answer(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, dict(exc.headers.items()), exc.read())

    def wait_for(self, answer: Answer, attempt: int) -> float | None:
        """How long to wait before retrying ``answer``; None when it is not to be retried."""
        h = answer.headers
        if answer.status in (403, 429) or answer.status >= 500:
            if h.get("retry-after", "").strip().isdigit():
                return float(h["retry-after"])
            if h.get("x-ratelimit-remaining") == "0" and h.get("x-ratelimit-reset", "").isdigit():
                return max(float(h["x-ratelimit-reset"]) - self.wall(), 0.0) + 1.0
        if answer.status == 429 or (
            answer.status == 403 and "rate limit" in answer.message().lower()
        ):
            return SECONDARY_LIMIT_WAIT
        if answer.status >= 500:
            return min(2.0**attempt, BACKOFF_MAX)
        return None

    def send(
        self,
        method: str,
        url: str,
        payload: Any,
        headers: Mapping[str, str],
        deadline: Deadline,
        *,
        what: str = "",
    ) -> Answer:
        """The first 2xx answer to ``method url`` with the JSON ``payload``."""
        body = None if payload is None else json.dumps(payload).encode()
        all_headers = {**headers, **({"Content-Type": "application/json"} if body else {})}
        what = what or f"{method} {url.split('?', 1)[0]}"
        last = "no attempt made"
        for attempt in range(100):  # bounded by the deadline long before
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            try:
                answer = self._once(method, url, body, all_headers, min(REQUEST_TIMEOUT, remaining))
            except (OSError, urllib.error.URLError) as exc:  # no answer (refused, timed out)
                last, wait = f"no answer: {exc}", min(2.0**attempt, BACKOFF_MAX)
            else:
                if 200 <= answer.status < 300:
                    return answer
                found = self.wait_for(answer, attempt)
                last = f"{answer.status} {answer.message()}"
                if found is None:
                    kind = Unauthorized if answer.status == 401 else Refused
                    raise kind(f"{what}: {last}", answer.status)
                wait = found
            if wait >= deadline.remaining():
                raise Unavailable(
                    f"{what}: {last} (retry in {wait:.0f} s: past the deadline)", delay=wait
                )
            self.sleep(wait)
        raise Unavailable(f"{what}: {last} (deadline reached)")


class TokenSource(Protocol):
    """Where the GitHub bearer token comes from (``notify.auth``)."""

    def token(self, deadline: Deadline) -> str: ...

    def invalidate(self) -> None: ...


def github_headers(bearer: str) -> dict[str, str]:
    return {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "Authorization": f"Bearer {bearer}",
        "User-Agent": USER_AGENT,
    }


def repo_path(repository: str) -> str:
    owner, sep, name = repository.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise PermanentError(f"repository {repository!r}: expected owner/name")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


@dataclass
class GitHub:
    """The GitHub REST calls the notifier makes."""

    base_url: str
    auth: TokenSource
    transport: Transport = field(default_factory=Transport)

    def call(self, method: str, path: str, payload: Any, deadline: Deadline) -> Any:
        """One API call; a 401 gets one more try with fresh credentials."""
        for attempt in range(2):
            headers = github_headers(self.auth.token(deadline))
            try:
                return self.transport.send(
                    method,
                    self.base_url + path,
                    payload,
                    headers,
                    deadline,
                    what=f"GitHub {method} {path}",
                ).json()
            except Unauthorized:
                if attempt:
                    raise
                self.auth.invalidate()
        raise AssertionError("unreachable")  # pragma: no cover

    def create_status(
        self,
        repository: str,
        sha: str,
        *,
        state: str,
        context: str,
        description: str,
        deadline: Deadline,
    ) -> Any:
        body = {"state": state, "context": context, "description": description}
        return self.call("POST", f"{repo_path(repository)}/statuses/{sha}", body, deadline)

    def create_deployment(self, repository: str, body: dict[str, Any], deadline: Deadline) -> int:
        found = self.call("POST", f"{repo_path(repository)}/deployments", body, deadline)
        if not isinstance(found, dict) or not isinstance(found.get("id"), int):
            # 202: GitHub merged the default branch first (auto_merge, which is never asked)
            raise Refused(f"GitHub made no deployment: {str(found)[:200]}", 202)
        return int(found["id"])

    def create_deployment_status(
        self,
        repository: str,
        deployment_id: int,
        *,
        state: str,
        description: str,
        environment: str,
        deadline: Deadline,
    ) -> Any:
        body = {
            "state": state,
            "description": description,
            "environment": environment,
            # Greenlight marks the deployment it replaced itself (GitHub's auto_inactive
            # skips production environments).
            "auto_inactive": False,
        }
        path = f"{repo_path(repository)}/deployments/{deployment_id}/statuses"
        return self.call("POST", path, body, deadline)


@dataclass
class Slack:
    """A Slack incoming webhook (``url`` read on first use)."""

    url: Callable[[], str]
    transport: Transport = field(default_factory=Transport)

    def post(self, text: str, deadline: Deadline) -> None:
        self.transport.send(
            "POST",
            self.url(),
            {"text": text},
            {"User-Agent": USER_AGENT},
            deadline,
            what="Slack webhook",
        )
