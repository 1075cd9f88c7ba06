"""A GitHub REST API stand-in on loopback: what the notifier calls, answered as GitHub documents.

    api = GitHubStandIn(tokens={"test-token"}).start()   # http://127.0.0.1:<port>
    ... GREENLIGHT_GITHUB_API_URL=api.url ...
    api.requests()                      # every request: method, path, headers, JSON body
    api.statuses("acme/shop", sha)      # {context: the latest status} of a commit
    api.deployments("acme/shop")        # the deployments made, with their statuses
    api.fail_next(2, 502)               # the next two answers are 502 (then normal again)
    api.rate_limit_next(1, reset_at=t)  # 403 with x-ratelimit-remaining: 0, x-ratelimit-reset: t
    api.stop()

Implemented (https://docs.github.com/rest):

- ``POST /repos/{owner}/{repo}/statuses/{sha}``: 201 with the status;
- ``POST /repos/{owner}/{repo}/deployments``: 201 with the deployment;
- ``POST /repos/{owner}/{repo}/deployments/{id}/statuses``: 201 with the deployment status
  (404 for an unknown deployment);
- ``POST /app/installations/{id}/access_tokens``: a GitHub App's RS256 JWT (checked with the
  App's public key, ``exp`` at most 10 minutes ahead) for a 201 installation token that expires
  in an hour. Only when the stand-in is given an App (``app=``).

Every other path is 404. Requests to the repository paths need ``Authorization: Bearer`` with
one of ``tokens`` or an installation token it issued (else 401 ``Bad credentials``). A bad
``state`` is 422, as GitHub answers it. Nothing is persisted.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

COMMIT_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
_STATUS = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([0-9a-fA-F]{4,40})$")
_DEPLOYMENTS = re.compile(r"^/repos/([^/]+)/([^/]+)/deployments$")
_DEPLOYMENT_STATUS = re.compile(r"^/repos/([^/]+)/([^/]+)/deployments/([0-9]+)/statuses$")
_ACCESS_TOKENS = re.compile(r"^/app/installations/([0-9]+)/access_tokens$")


class Recorded(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the JSON body, None without one


class Injected(NamedTuple):
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class App:
    """A GitHub App the stand-in knows: its id, installation and public key (PEM)."""

    app_id: str
    installation_id: int
    public_key: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_CREATOR = {
    "login": "greenlight[bot]",
    "id": 1,
    "node_id": "MDM6Qm90MQ==",
    "avatar_url": "https://avatars.githubusercontent.com/in/1",
    "gravatar_id": "",
    "url": "https://api.github.com/users/greenlight%5Bbot%5D",
    "html_url": "https://github.com/apps/greenlight",
    "followers_url": "https://api.github.com/users/greenlight%5Bbot%5D/followers",
    "following_url": "https://api.github.com/users/greenlight%5Bbot%5D/following{/other_user}",
    "gists_url": "https://api.github.com/users/greenlight%5Bbot%5D/gists{/gist_id}",
    "starred_url": "https://api.github.com/users/greenlight%5Bbot%5D/starred{/owner}{/repo}",
    "subscriptions_url": "https://api.github.com/users/greenlight%5Bbot%5D/subscriptions",
    "organizations_url": "https://api.github.com/users/greenlight%5Bbot%5D/orgs",
    "repos_url": "https://api.github.com/users/greenlight%5Bbot%5D/repos",
    "events_url": "https://api.github.com/users/greenlight%5Bbot%5D/events{/privacy}",
    "received_events_url": "https://api.github.com/users/greenlight%5Bbot%5D/received_events",
    "type": "Bot",
    "site_admin": False,
}


class GitHubStandIn:
    def __init__(
        self,
        *,
        tokens: set[str] | None = None,
        app: App | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = set(tokens or {"test-token"})
        self.app = app
        self.clock = clock  # epoch seconds: JWT times and installation token expiry
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._injected: list[Injected] = []
        self._statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._deployments: dict[int, dict[str, Any]] = {}
        self._deployment_statuses: dict[int, list[dict[str, Any]]] = {}
        self._issued: dict[str, float] = {}  # installation token -> expiry (epoch)
        self._next_id = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life
    def start(self) -> GitHubStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="github-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ what it was told
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def statuses(self, repository: str, sha: str) -> dict[str, dict[str, Any]]:
        """The latest status per context of ``sha`` in ``repository`` (``owner/name``)."""
        with self._lock:
            found = self._statuses.get((repository.lower(), sha.lower()), [])
            return {s["context"]: dict(s) for s in found}

    def status_history(self, repository: str, sha: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._statuses.get((repository.lower(), sha.lower()), [])]

    def deployments(self, repository: str) -> list[dict[str, Any]]:
        """The deployments of ``repository``, oldest first, each with ``statuses`` (oldest
        first)."""
        with self._lock:
            return [
                {**d, "statuses": [dict(s) for s in self._deployment_statuses[d["id"]]]}
                for d in self._deployments.values()
                if d["_repository"] == repository.lower()
            ]

    # ------------------------------------------------------------ failures
    def fail_next(
        self, count: int, status: int = 502, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``count`` requests are answered ``status`` (and ``headers``)."""
        body = {"message": "Server Error" if status >= 500 else "Injected failure"}
        with self._lock:
            self._injected += [Injected(status, dict(headers or {}), body)] * count

    def rate_limit_next(self, count: int, *, reset_at: int, status: int = 403) -> None:
        """The next ``count`` requests hit the primary rate limit, reset at epoch ``reset_at``."""
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(reset_at),
            "x-ratelimit-resource": "core",
        }
        body = {
            "message": "API rate limit exceeded for installation.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        }
        with self._lock:
            self._injected += [Injected(status, headers, body)] * count

    # ------------------------------------------------------------ answers
    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Injected:
        with self._lock:
            self._requests.append(Recorded(method, path, headers, body))
            if self._injected:
                return self._injected.pop(0)
        if method != "POST":
            return _error(404, "Not Found")
        if m := _ACCESS_TOKENS.match(path):
            return self._access_token(int(m.group(1)), headers)
        if not self._authorised(headers):
            return _error(401, "Bad credentials")
        if not isinstance(body, dict):
            return _error(400, "Problems parsing JSON")
        if m := _STATUS.match(path):
            return self._status(f"{m.group(1)}/{m.group(2)}", m.group(3), body)
        if m := _DEPLOYMENTS.match(path):
            return self._deployment(f"{m.group(1)}/{m.group(2)}", body)
        if m := _DEPLOYMENT_STATUS.match(path):
            return self._deployment_status(f"{m.group(1)}/{m.group(2)}", int(m.group(3)), body)
        return _error(404, "Not Found")

    def _authorised(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        with self._lock:
            return token in self.tokens or self._issued.get(token, 0) > self.clock()

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _status(self, repository: str, sha: str, body: dict[str, Any]) -> Injected:
        if body.get("state") not in COMMIT_STATES:
            return _invalid("state", body.get("state"))
        ident, now = self._new_id(), _now()
        status = {
            "url": f"https://api.github.com/repos/{repository}/statuses/{sha}",
            "avatar_url": None,
            "id": ident,
            "node_id": f"SC_{ident}",
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context") or "default",
            "created_at": now,
            "updated_at": now,
            "creator": _CREATOR,
        }
        with self._lock:
            self._statuses.setdefault((repository.lower(), sha.lower()), []).append(status)
        return Injected(201, {}, status)

    def _deployment(self, repository: str, body: dict[str, Any]) -> Injected:
        if not isinstance(body.get("ref"), str) or not body["ref"]:
            return _invalid("ref", body.get("ref"))
        ident, now = self._new_id(), _now()
        environment = body.get("environment") or "production"
        deployment = {
            "url": f"https://api.github.com/repos/{repository}/deployments/{ident}",
            "id": ident,
            "node_id": f"DE_{ident}",
            "sha": body["ref"],
            "ref": body["ref"],
            "task": body.get("task") or "deploy",
            "payload": body.get("payload") or {},
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description") or "",
            "creator": _CREATOR,
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"https://api.github.com/repos/{repository}/deployments/{ident}/statuses",
            "repository_url": f"https://api.github.com/repos/{repository}",
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": bool(
                body.get("production_environment", environment == "production")
            ),
        }
        with self._lock:
            self._deployments[ident] = {**deployment, "_repository": repository.lower()}
            self._deployment_statuses[ident] = []
        return Injected(201, {}, deployment)

    def _deployment_status(self, repository: str, ident: int, body: dict[str, Any]) -> Injected:
        with self._lock:
            deployment = self._deployments.get(ident)
        if deployment is None or deployment["_repository"] != repository.lower():
            return _error(404, "Not Found")
        if body.get("state") not in DEPLOYMENT_STATES:
            return _invalid("state", body.get("state"))
        status_id, now = self._new_id(), _now()
        status = {
            "url": f"{deployment['url']}/statuses/{status_id}",
            "id": status_id,
            "node_id": f"DES_{status_id}",
            "state": body["state"],
            "creator": _CREATOR,
            "description": body.get("description") or "",
            "environment": body.get("environment") or deployment["environment"],
            "target_url": body.get("log_url") or body.get("target_url") or "",
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"],
            "environment_url": body.get("environment_url") or "",
            "log_url": body.get("log_url") or body.get("target_url") or "",
        }
        with self._lock:
            self._deployment_statuses[ident].append(status)
        return Injected(201, {}, status)

    def _access_token(self, installation_id: int, headers: dict[str, str]) -> Injected:
        if self.app is None or installation_id != self.app.installation_id:
            return _error(404, "Not Found")
        import jwt  # the stand-in checks the App's JWT as GitHub does

        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        try:
            claims = jwt.decode(
                bearer,
                self.app.public_key,
                algorithms=["RS256"],
                # the times are checked below, on the stand-in's clock
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            return _error(401, f"A JSON web token could not be decoded: {exc}")
        now = self.clock()
        if scheme.lower() != "bearer" or str(claims["iss"]) != self.app.app_id:
            return _error(401, "'Issuer' claim ('iss') must be the App's id")
        if claims["exp"] > now + 600 or claims["iat"] > now:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future")
        if claims["exp"] <= now:
            return _error(401, "'Expiration time' claim ('exp') must be a future time")
        token = "ghs_" + secrets.token_hex(18)
        expires = now + 3600
        with self._lock:
            self._issued[token] = expires
        return Injected(
            201,
            {},
            {
                "token": token,
                "expires_at": datetime.fromtimestamp(int(expires), UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "permissions": {"deployments": "write", "statuses": "write"},
                "repository_selection": "selected",
            },
        )


def _error(status: int, message: str) -> Injected:
    return Injected(
        status, {}, {"message": message, "documentation_url": "https://docs.github.com/rest"}
    )


def _invalid(field: str, value: Any) -> Injected:
    return Injected(
        422,
        {},
        {
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "field": field, "code": "invalid", "value": value}],
            "documentation_url": "https://docs.github.com/rest",
        },
    )


def _handler_for(api: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "GitHub.com"

        def log_message(self, *_: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            answer = api._answer(self.command, path, headers, body)
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_POST = _serve
        do_GET = _serve
        do_PATCH = _serve
        do_DELETE = _serve

    return Handler
