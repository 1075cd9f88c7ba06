"""Publishing a rendered config to S3: one versioned bundle, pushed only when it changed.

The bundle is a deterministic ``.tar.gz`` of the rendered files (fixed names, modes and times,
gzip without a timestamp), so the same files always give the same bytes and the same SHA-256.
The hash travels in the object's metadata (``sha256``); an instance fetches an exact version and
checks the hash before it touches its config. Nothing is written when the hash of the new bundle
equals the current one. ``rollback`` makes the previous version current again (a copy, so the
history keeps every step).
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import PermanentError

HASH_KEY = "sha256"
DEFAULT_KEY = "haproxy/config.tar.gz"


def bundle(files: dict[str, bytes]) -> bytes:
    """A byte-for-byte reproducible tar.gz of ``files`` (sorted by name)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def unbundle(data: bytes) -> dict[str, bytes]:
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                raise PermanentError(f"bundle member {member.name!r} is not a plain file name")
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read()
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Published:
    status: str  # published | unchanged | would-publish | rolled-back
    key: str
    sha256: str
    version_id: str | None
    diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "key": self.key,
            "sha256": self.sha256,
            "version_id": self.version_id,
            "diff": self.diff,
        }


@dataclass
class ConfigStore:
    """The config bundle in the (versioned, private, encrypted) Greenlight bucket."""

    s3: Any
    bucket: str
    key: str = DEFAULT_KEY

    def current(self) -> tuple[str | None, str | None]:
        """(sha256, version id) of the live bundle; (None, None) when there is none yet."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None, None
            raise
        return head.get("Metadata", {}).get(HASH_KEY), head.get("VersionId")

    def files(self, version_id: str | None = None) -> dict[str, bytes]:
        kwargs = {"VersionId": version_id} if version_id else {}
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NoSuchVersion"):
                return {}
            raise
        data: bytes = obj["Body"].read()
        expected = obj.get("Metadata", {}).get(HASH_KEY)
        if expected != sha256(data):
            raise PermanentError(
                f"s3://{self.bucket}/{self.key} version {obj.get('VersionId')}"
                f": content hash {sha256(data)} does not match {expected}"
            )
        return unbundle(data)

    def publish(self, files: dict[str, bytes], *, dry_run: bool) -> Published:
        data = bundle(files)
        digest = sha256(data)
        live_hash, live_version = self.current()
        if live_hash == digest:
            return Published("unchanged", self.key, digest, live_version)
        if dry_run:
            return Published(
                "would-publish", self.key, digest, live_version, diff=diff(self.files(), files)
            )
        put = self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=data,
            ContentType="application/gzip",
            Metadata={HASH_KEY: digest},
            ServerSideEncryption="aws:kms",
        )
        return Published("published", self.key, digest, put.get("VersionId"))

    def rollback(self, *, dry_run: bool) -> Published:
        """Make the version before the live one current again."""
        versions = sorted(
            (
                v
                for v in self.s3.list_object_versions(Bucket=self.bucket, Prefix=self.key).get(
                    "Versions", []
                )
                if v["Key"] == self.key
            ),
            key=lambda v: v["LastModified"],
            reverse=True,
        )
        if len(versions) < 2:
            raise PermanentError(
                f"s3://{self.bucket}/{self.key}: no previous version to roll back to"
            )
        previous = versions[1]["VersionId"]
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key, VersionId=previous)
        digest = head.get("Metadata", {}).get(HASH_KEY, "")
        if dry_run:
            return Published(
                "would-roll-back",
                self.key,
                digest,
                previous,
                diff=diff(self.files(), self.files(previous)),
            )
        copied = self.s3.copy_object(
            Bucket=self.bucket,
            Key=self.key,
            ServerSideEncryption="aws:kms",
            CopySource={"Bucket": self.bucket, "Key": self.key, "VersionId": previous},
        )
        return Published("rolled-back", self.key, digest, copied.get("VersionId"))


def diff(old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """A unified diff of every file that differs, as text."""
    chunks: list[str] = []
    for name in sorted(set(old) | set(new)):
        before = old.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = new.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(before, after, f"live/{name}", f"new/{name}"))
    return "".join(chunks)
