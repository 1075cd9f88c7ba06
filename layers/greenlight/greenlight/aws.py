"""AWS clients and the apps file, built at the edge and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .appconfig import AppsFile, parse_apps
from .errors import ConfigError

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"}
)


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
        made = self.__dict__.setdefault("_made", {})
        if service not in made:
            made[service] = self.session.client(service, config=CLIENT_CONFIG)
        return made[service]

    def lazy(self, service: str) -> Any:
        return LazyClient(self, service)


@dataclass
class AppsSource:
    """The apps file in S3, re-read only when its ETag changes."""

    s3: Any
    bucket: str
    key: str
    _etag: str | None = None
    _apps: AppsFile | None = None

    def load(self) -> AppsFile:
        origin = f"s3://{self.bucket}/{self.key}"
        try:
            if self._apps is not None:
                head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
                if head["ETag"] == self._etag:
                    return self._apps
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                raise ConfigError(f"{origin}: apps file not found") from None
            raise
        apps = parse_apps(obj["Body"].read().decode("utf-8", "replace"), origin=origin)
        self._etag, self._apps = obj["ETag"], apps
        return apps
