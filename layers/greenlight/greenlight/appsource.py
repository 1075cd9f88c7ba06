"""Where the functions read the apps file from: an S3 object, re-read only when its ETag changes.

Kept apart from ``appconfig`` on purpose. The models there import pydantic and PyYAML (about
120 ms of a cold start); a function pays that on its first ``load()``, not at init, and an
invocation that never needs the apps file (an ignored event, a warm container whose file did not
change) never pays it.

The file is checked against the stack's namespace allow-list (``namespaces``, from
``GREENLIGHT_APP_NAMESPACES``), and an object over ``appconfig.MAX_APPS_FILE_BYTES`` is refused
before it is read.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from .errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .appconfig import AppsFile


@dataclass
class AppsSource:
    """The apps file in S3, re-read only when its ETag changes."""

    s3: S3Client
    bucket: str
    key: str
    namespaces: Collection[str]  # the allow-list: an app in any other namespace is refused
    _etag: str | None = None
    _apps: AppsFile | None = None

    def load(self) -> AppsFile:
        from .appconfig import MAX_APPS_FILE_BYTES, parse_apps  # deferred: pydantic and PyYAML

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
        size = obj.get("ContentLength", 0)
        body = obj["Body"].read(MAX_APPS_FILE_BYTES + 1)
        if size > MAX_APPS_FILE_BYTES or len(body) > MAX_APPS_FILE_BYTES:
            raise ConfigError(
                f"{origin} is invalid: more than {MAX_APPS_FILE_BYTES} bytes (the limit)"
            )
        try:  # as `greenlight check-apps` reads it: UTF-8 or refused
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{origin} is invalid: not UTF-8 text (byte {exc.start + 1})"
            ) from None
        apps = parse_apps(text, origin=origin, namespaces=self.namespaces)
        self._etag, self._apps = obj["ETag"], apps
        return apps
