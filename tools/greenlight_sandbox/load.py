"""Steady HTTPS load on loopback, counting every failed request.

Half the workers keep one connection alive for many requests; the other half open a new TLS
connection for every request, so both ways a reload can drop a request are exercised. A request
fails when it raises, or when its status is not the expected one. Each worker's loop is bounded
by ``stop()`` and by ``max_seconds``.

Every answer names the version that gave it (the web app's ``X-Version``, on its errors too).
A version made to fail on purpose (a candidate whose real requests fail after its promotion) is
named in ``stats.tolerated``: its own HTTP errors are counted in ``stats.tolerated_failures``,
not in ``failed``. Anything else still fails: an error answered by another version, by HAProxy
itself (no ``X-Version``), or a connection-level failure.
"""

from __future__ import annotations

import http.client
import ssl
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadStats:
    requests: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    # (seconds since the load started, connection kind, error) of each failed request
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    # versions made to fail on purpose, and the failed requests they answered
    tolerated: set[str] = field(default_factory=set)
    tolerated_failures: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "failed_requests": self.failed,
            "errors": dict(self.errors),
            "failures": list(self.failures),
            "tolerated_failures": dict(self.tolerated_failures),
            "requests": self.requests,
            "versions": dict(self.versions),
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p99_ms": round(self.percentile(99) * 1000, 1),
        }


class Load:
    def __init__(
        self,
        address: str,
        port: int,
        host: str,
        *,
        path: str = "/",
        keepalive_workers: int = 2,
        new_connection_workers: int = 2,
        expect_status: int = 200,
        max_seconds: float = 300,
        pause: float = 0.0,
    ) -> None:
        self.address, self.port, self.host, self.path = address, port, host, path
        self.expect_status = expect_status
        self.max_seconds = max_seconds
        self.pause = pause
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = 0.0
        self._threads = [
            threading.Thread(target=self._worker, args=(True,), daemon=True)
            for _ in range(keepalive_workers)
        ] + [
            threading.Thread(target=self._worker, args=(False,), daemon=True)
            for _ in range(new_connection_workers)
        ]
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE  # the sandbox's self-signed certificate

    @property
    def started(self) -> float:
        """When the load started (``time.monotonic()``); timeline times count from here."""
        return self._started

    def start(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadStats:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.stats

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.address, self.port, context=self._tls, timeout=10)

    def _worker(self, keepalive: bool) -> None:
        conn = self._connect()
        deadline = self._started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not keepalive:
                conn.close()
                conn = self._connect()
            began = time.perf_counter()
            error, version = None, ""
            try:
                conn.request("GET", self.path, headers={"Host": self.host})
                response = conn.getresponse()
                response.read()
                version = response.getheader("X-Version", "")
                if response.status != self.expect_status:
                    error = f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                conn.close()
                conn = self._connect()
            elapsed = time.perf_counter() - began
            with self._lock:
                self.stats.requests += 1
                if error and error.startswith("HTTP ") and version in self.stats.tolerated:
                    self.stats.tolerated_failures[version] += 1
                elif error:
                    self.stats.failed += 1
                    when = time.monotonic() - self._started
                    # Which kind of connection failed, and when: enough to find it in the logs.
                    kind = "keep-alive" if keepalive else "new connection"
                    self.stats.errors[f"{kind}: {error}"] += 1
                    self.stats.failures.append((round(when, 2), kind, error))
                else:
                    self.stats.latencies.append(elapsed)
                    self.stats.versions[version] += 1
                    if not self.stats.timeline or self.stats.timeline[-1][1] != version:
                        self.stats.timeline.append((time.monotonic() - self._started, version))
            if self.pause:
                time.sleep(self.pause)
        conn.close()
