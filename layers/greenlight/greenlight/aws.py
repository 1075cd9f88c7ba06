"""AWS clients, built at the edge and passed in (no pydantic or YAML here: the webhook
function imports this module and must start fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"}
)
# A synchronous invoke of the haproxy function waits for its fleet reload: up to its own
# timeout (300 s in template.yaml). Throttles (it runs one at a time) are retried.
SERVICE_CONFIG = {"lambda": CLIENT_CONFIG.merge(Config(read_timeout=310))}


class LazyClient:
    """A boto3 client made on first use (client creation costs tens of ms at cold start)."""

    def __init__(self, clients: Clients, service: str) -> None:
        self._clients = clients
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._clients, self._service), name)


@dataclass
class Clients:
    """boto3 clients made on first use from one session."""

    session: Any = field(default_factory=boto3.session.Session)
    _made: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._made:
            config = SERVICE_CONFIG.get(service, CLIENT_CONFIG)
            self._made[service] = self.session.client(service, config=config)
        return self._made[service]

    def lazy(self, service: str) -> Any:
        return LazyClient(self, service)
