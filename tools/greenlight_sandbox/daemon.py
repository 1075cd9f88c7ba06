"""``greenlight sandbox up``: the full sandbox as a background process, with a local invoke API.

The daemon runs a :class:`FullSandbox` (moto, the stand-in with its data plane, two HAProxy
instances, the queues and the schedule played by its pump) and writes its addresses and
environment to ``.greenlight/sandbox.json`` (mode 0600). ``greenlight invoke`` hands events to it
over loopback HTTP, authenticated by a token from that file:

``POST /invoke/<function>`` with the event as the body answers ``{"result": ...}``; for
``github-webhook`` it adds ``"delivered"``: when the webhook queued a push, it waits (at most
30 s) until the push has been handed to the rollout function, and lists the rollout function's
answers; any other answer (a ping, an ignored delivery, a refused signature) is settled at once.

The daemon's stdout is ``.greenlight/sandbox.log``: the functions' JSON log lines go there.
"""

from __future__ import annotations

import hmac
import json
import secrets
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fullstack import FullSandbox
from .sandbox import STATE_FILE, share_function_logs


class InvokeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: FullSandbox, token: str) -> None:
        self.sandbox = sandbox
        self.token = token
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def invoke(self, function: str, event: Any) -> dict[str, Any]:
        sandbox = self.sandbox
        if function not in sandbox.functions:
            raise KeyError(function)
        mark = len(sandbox.delivered)
        answer: dict[str, Any] = {"result": sandbox.invoke(function, event)}
        if function == "github-webhook":
            answer["delivered"] = []
        if function == "github-webhook" and _queued(answer["result"]):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = [r for f, r in sandbox.delivered[mark:] if f == "rollout"]
                if done:
                    answer["delivered"] = done
                    break
                time.sleep(0.05)
        return answer


def _queued(response: Any) -> bool:
    """Whether the webhook's answer says it queued a push (202 ``queued``, not ``ignored``)."""
    if not isinstance(response, dict) or response.get("statusCode") != 202:
        return False
    try:
        body = json.loads(response.get("body") or "{}")
    except json.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("status") == "queued"


class _Handler(BaseHTTPRequestHandler):
    server: InvokeServer

    def do_POST(self) -> None:
        supplied = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(supplied.encode(), self.server.token.encode()):
            self._send(401, {"error": "missing or wrong token"})
            return
        function = self.path.removeprefix("/invoke/")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            event = json.loads(self.rfile.read(length) or b"null")
            self._send(200, self.server.invoke(function, event))
        except KeyError:
            self._send(404, {"error": f"no function {function!r} in the sandbox"})
        except json.JSONDecodeError as exc:
            self._send(400, {"error": f"the event is not JSON: {exc}"})
        except Exception as exc:  # the handler's own failure, as Lambda would report it
            self._send(200, {"error": {"type": type(exc).__name__, "message": str(exc)}})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    share_function_logs()  # to stdout: the log file
    sandbox = FullSandbox().start()
    server = InvokeServer(sandbox, secrets.token_urlsafe(24))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = sandbox.kube.write_viewer_kubeconfig(STATE_FILE.parent / "kubeconfig")
    state = sandbox.state() | {
        "kubeconfig": str(kubeconfig),  # read-only, for kubectl (kube/server.py)
        "invoke_url": server.url,
        "invoke_token": server.token,
        "edge": {i.name: i.bind_address for i in sandbox.instances.values()},
    }
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)
    tmp.replace(STATE_FILE)
    print(f"sandbox up: moto {sandbox.moto_url}, kubernetes {sandbox.kube.url}", flush=True)
    stop.wait()
    server.shutdown()
    sandbox.stop()
    print("sandbox down", flush=True)


if __name__ == "__main__":
    main()
