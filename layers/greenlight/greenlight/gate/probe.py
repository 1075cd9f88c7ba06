"""HTTP health checks through the HAProxy fleet, the way users reach an app.

The gate asks the edge endpoint (``GREENLIGHT_EDGE_ENDPOINT``: the fleet's load balancer, as
``host:port``) for the app's health path with the app's host name as SNI and ``Host`` header:
the preview host before promotion (it routes to the candidate), a live host after. A check
passes on the app's expected status within its timeout; anything else fails with the reason.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from typing import NamedTuple


class ProbeResult(NamedTuple):
    ok: bool
    detail: str


@dataclass(frozen=True)
class Prober:
    endpoint: str  # host:port of the fleet's entry point
    verify_tls: bool = True

    def check(self, host: str, path: str, expect_status: int, timeout: float) -> ProbeResult:
        address, _, port = self.endpoint.rpartition(":")
        context = ssl.create_default_context()
        if not self.verify_tls:  # the sandbox's self-signed certificate
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = _SniConnection(address, int(port), host, context=context, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host, "User-Agent": "greenlight-gate"})
            response = conn.getresponse()
            response.read(65536)
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult(False, f"{host}{path}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
        if response.status != expect_status:
            return ProbeResult(False, f"{host}{path}: HTTP {response.status}, want {expect_status}")
        return ProbeResult(True, f"{host}{path}: HTTP {response.status}")


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` with ``server_name`` as SNI (the edge routes by host name)."""

    def __init__(
        self,
        address: str,
        port: int,
        server_name: str,
        *,
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._tls_context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)
