"""Where the functions read the apps file from: an S3 object, re-read only when its ETag changes.

Kept apart from ``appconfig`` on purpose. The models there import pydantic and PyYAML (about
120 ms of a cold start); a function pays that on its first ``load()``, not at init, and an
invocation that never needs the apps file (an ignored event, a warm container whose file did not
change) never pays it.
"""

from __future__ import annotations

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
    _etag: str | None = None
    _apps: AppsFile | None = None

    def load(self) -> AppsFile:
        from .appconfig import parse_apps  # deferred: pydantic and PyYAML

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
