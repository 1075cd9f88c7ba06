"""Publishing a rendered config to S3: one versioned bundle, pushed only when it changed.

The bundle is a deterministic ``.tar.gz`` of the rendered files (fixed names, modes and times,
gzip without a timestamp), so the same files always give the same bytes and the same SHA-256.
The hash travels in the object's metadata (``sha256``); an instance fetches an exact version and
checks the hash before it touches its config. Nothing is written when the hash of the new bundle
equals the current one (and the current one carries our valid signature). ``rollback`` makes the
previous version current again (a copy, so the history keeps every step).

Every bundle published is first checked against the instances' own rules
(``trust.check_bundle``). With a signer (the function always has one:
``GREENLIGHT_EDGE_SIGNING_KEY``) it is signed (``signing.KmsSigner``), and reading a bundle back
(``files``: the diff of a dry run or a rollback) and rolling back to a version both refuse one
that our key did not sign.
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
from .signing import SIGNATURE_KEY, KmsSigner
from .trust import check_bundle, members_problem

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
        members = tar.getmembers()
        for member in members:
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                raise PermanentError(f"bundle member {member.name!r} is not a plain file name")
        refused = members_problem(member.name for member in members)
        if refused:
            raise PermanentError(refused)
        for member in members:
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
    signer: KmsSigner | None = None  # None: neither signed nor verified (tests and tools only)

    def current(self) -> tuple[str | None, str | None]:
        """(sha256, version id) of the live bundle; (None, None) when there is none yet."""
        live_hash, live_version, _ = self._live()
        return live_hash, live_version

    def files(self, version_id: str | None = None) -> dict[str, bytes]:
        kwargs = {"VersionId": version_id} if version_id else {}
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NoSuchVersion"):
                return {}
            raise
        data: bytes = obj["Body"].read()
        metadata = obj.get("Metadata", {})
        expected = metadata.get(HASH_KEY)
        where = f"s3://{self.bucket}/{self.key} version {obj.get('VersionId')}"
        if expected != sha256(data):
            raise PermanentError(f"{where}: content hash {sha256(data)} does not match {expected}")
        if not self.signed(sha256(data), metadata):
            raise PermanentError(f"{where}: not signed by {self._key_id()}: refused")
        return unbundle(data)

    def signed(self, digest: str, metadata: dict[str, str]) -> bool:
        """Whether an object with this hash and metadata carries our key's valid signature
        (always, without a signer)."""
        if self.signer is None:
            return True
        return self.signer.verify(self.bucket, self.key, digest, metadata.get(SIGNATURE_KEY))

    def _key_id(self) -> str:
        return self.signer.key_id if self.signer else "(no key)"

    def _live(self) -> tuple[str | None, str | None, dict[str, str]]:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None, None, {}
            raise
        metadata: dict[str, str] = head.get("Metadata", {})
        return metadata.get(HASH_KEY), head.get("VersionId"), metadata

    def publish(self, files: dict[str, bytes], *, dry_run: bool) -> Published:
        """Check, bundle, sign and write ``files`` when they differ from the live bundle (or
        the live one is not validly signed: it is written again, signed)."""
        check_bundle(files)
        data = bundle(files)
        digest = sha256(data)
        live_hash, live_version, metadata = self._live()
        if live_hash == digest and self.signed(digest, metadata):
            return Published("unchanged", self.key, digest, live_version)
        if dry_run:
            if live_hash is None:
                live_files: dict[str, bytes] = {}
            elif live_hash == digest:  # the same bundle, to be signed again: no difference
                live_files = files
            else:
                live_files = self.files()
            return Published(
                "would-publish", self.key, digest, live_version, diff=diff(live_files, files)
            )
        return self.put(data)

    def put(self, data: bytes) -> Published:
        """Sign and write one bundle as it is, unchecked: ``publish`` checks first. (The sandbox
        uses it to play a writer that signs anything, to test the instances' own checks.)"""
        digest = sha256(data)
        metadata = {HASH_KEY: digest}
        if self.signer is not None:
            metadata[SIGNATURE_KEY] = self.signer.sign(self.bucket, self.key, digest)
        put = self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=data,
            ContentType="application/gzip",
            Metadata=metadata,
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
        if not self.signed(digest, head.get("Metadata", {})):
            raise PermanentError(
                f"s3://{self.bucket}/{self.key} version {previous}: not signed by"
                f" {self._key_id()}: no rollback to it (the instances would refuse it)"
            )
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
