"""Stand-ins for the notify function's other receivers: CodeCommit's comment API (moto does
not implement ``PostCommentForComparedCommit``) and a Slack incoming webhook.

One loopback HTTP server records what it was sent:

- ``POST /codecommit`` speaks the AWS JSON 1.1 protocol of CodeCommit (the SDK's
  ``X-Amz-Target: CodeCommit_20150413.PostCommentForComparedCommit``): it checks the fields the
  API requires and answers as the API reference documents; the SDK is pointed at it with
  ``AWS_ENDPOINT_URL_CODECOMMIT``. Requests are not signature-checked.
- ``POST /slack/<token>`` answers ``ok`` as Slack's incoming webhooks do, for the one token it was
  made with (any other path: 404 ``no_service``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

TARGET_PREFIX = "CodeCommit_20150413."


class Received(NamedTuple):
    kind: str  # "codecommit-comment" or "slack"
    body: dict[str, Any]
    at: float


class Receivers(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slack_token = secrets.token_urlsafe(12)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def codecommit_url(self) -> str:
        return f"{self.url}/codecommit"

    @property
    def slack_url(self) -> str:
        return f"{self.url}/slack/{self.slack_token}"

    def start(self) -> Receivers:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()

    def record(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(Received(kind, body, time.time()))

    def of(self, kind: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.kind == kind]


def _comment(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """PostCommentForComparedCommit, as the API reference describes it."""
    for field in ("repositoryName", "afterCommitId", "content"):
        if not isinstance(request.get(field), str) or not request[field]:
            name = field[0].upper() + field[1:]
            return 400, {
                "__type": f"{name}RequiredException",
                "message": f"{field} is required",
            }
    return 200, {
        "repositoryName": request["repositoryName"],
        "beforeCommitId": request.get("beforeCommitId", ""),
        "afterCommitId": request["afterCommitId"],
        "beforeBlobId": "",
        "afterBlobId": "",
        "location": request.get("location", {}),
        "comment": {
            "commentId": str(uuid.uuid4()),
            "content": request["content"],
            "authorArn": "arn:aws:iam::123456789012:role/greenlight-notify",
            "deleted": False,
            "creationDate": time.time(),
            "lastModifiedDate": time.time(),
            "clientRequestToken": request.get("clientRequestToken", ""),
        },
    }


class _Handler(BaseHTTPRequestHandler):
    server: Receivers

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"message": "not JSON"}, "application/json")
            return
        if self.path == "/codecommit":
            target = self.headers.get("X-Amz-Target", "")
            if target != TARGET_PREFIX + "PostCommentForComparedCommit":
                self._send(
                    400,
                    {"__type": "UnknownOperationException", "message": target},
                    "application/x-amz-json-1.1",
                )
                return
            status, answer = _comment(body)
            if status == 200:
                self.server.record("codecommit-comment", body)
            self._send(status, answer, "application/x-amz-json-1.1")
        elif self.path == f"/slack/{self.server.slack_token}":
            if not isinstance(body, dict) or not body.get("text"):
                self._send(400, "no_text", "text/html")
                return
            self.server.record("slack", body)
            self._send(200, "ok", "text/html")
        else:
            self._send(404, "no_service", "text/html")

    def _send(self, status: int, body: Any, content_type: str) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return
