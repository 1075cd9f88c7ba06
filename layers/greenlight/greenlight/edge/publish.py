"""Publishing a rendered config to S3: one versioned bundle, pushed only when it changed.

The bundle is a deterministic ``.tar.gz`` of the rendered files (fixed names, modes and times,
gzip without a timestamp), so the same files always give the same bytes and the same SHA-256.
The hash travels in the object's metadata (``sha256``); an instance fetches an exact version and
checks the hash before it touches its config. Nothing is written when the hash of the new bundle
equals the current one (and the current one carries our valid signature). ``rollback`` makes a
chosen release (by default the one before the live one) current again (a copy, so the history
keeps every step). Every write records why in the object's metadata (``why``), and ``releases``
lists the history, newest first.

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
import re
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from ..errors import PermanentError
from .signing import SIGNATURE_KEY, KmsSigner
from .trust import check_bundle, members_problem

HASH_KEY = "sha256"
WHY_KEY = "why"  # the reason of the publish or rollback that wrote the version
ORIGIN_KEY = "origin"  # on a rollback's copy: the version first published with those bytes
DEFAULT_KEY = "haproxy/config.tar.gz"
WHY_MAX = 256  # S3 user metadata: US-ASCII, 2 KB in all (with the hash and the signature)
MIN_PREFIX = 12  # a release named by its sha256: at least this many hex characters
RELEASES_SCAN = 100  # how far back a release is looked for by its hash, or the default one
RELEASES_MAX = 100  # the most releases one listing returns
_HEX = re.compile(r"[0-9a-f]+")


def metadata_why(why: str) -> str:
    """``why`` as S3 metadata takes it: printable US-ASCII, one line, at most WHY_MAX."""
    text = " ".join("".join(c if " " <= c <= "~" else " " for c in why).split())
    return text if len(text) <= WHY_MAX else text[: WHY_MAX - 3] + "..."


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
    status: str  # published | unchanged | would-publish | rolled-back | would-roll-back
    key: str
    sha256: str
    version_id: str | None
    diff: str = ""
    release: str | None = None  # a rollback's: the version rolled back to (its copy: version_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "key": self.key,
            "sha256": self.sha256,
            "version_id": self.version_id,
            "diff": self.diff,
        }
        if self.release is not None:
            out["release"] = self.release
        return out


@dataclass(frozen=True)
class Release:
    """One published version of the bundle key."""

    version_id: str
    sha256: str
    when: str  # LastModified, ISO 8601 UTC
    why: str  # "" for a version written before ``why`` was recorded
    live: bool
    signed: bool
    origin: str = ""  # a rollback's copy: the version whose bytes it republished

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "sha256": self.sha256,
            "when": self.when,
            "why": self.why,
            "live": self.live,
            "signed": self.signed,
            "origin": self.origin,
        }


def _iso(when: Any) -> str:
    if isinstance(when, datetime):
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(when)


def previous_release(listed: list[Release]) -> Release | None:
    """The release a rollback goes to by default: the newest one older than the live release's
    first publication (a rollback's copy counts from the version it copied, so a second
    rollback goes further back, never forward) whose bytes differ from the live ones."""
    if not listed:
        return None
    live = listed[0]
    start = next(
        (i for i, r in enumerate(listed) if live.origin and r.version_id == live.origin), 0
    )
    return next((r for r in listed[start + 1 :] if r.sha256 != live.sha256), None)


def match_release(listed: list[Release], wanted: str) -> Release:
    """The listed release ``wanted`` names: its version id, or a prefix (at least MIN_PREFIX hex
    characters) of the sha256 of exactly one set of bytes (copies of the same bytes are one
    release: the newest is taken). PermanentError naming ``release`` otherwise."""
    by_version = [r for r in listed if r.version_id == wanted]
    if by_version:
        return by_version[0]
    if not _HEX.fullmatch(wanted):
        raise PermanentError(f"release: no release with version id {wanted!r}")
    if len(wanted) < MIN_PREFIX:
        raise PermanentError(
            f"release: {wanted!r} is not a version id, and a sha256 prefix needs at least"
            f" {MIN_PREFIX} hex characters"
        )
    found = [r for r in listed if r.sha256.startswith(wanted)]
    hashes = sorted({r.sha256 for r in found})
    if not hashes:
        raise PermanentError(
            f"release: no release among the newest {len(listed)} has a version id or sha256"
            f" starting {wanted!r}"
        )
    if len(hashes) > 1:
        raise PermanentError(
            f"release: the sha256 prefix {wanted!r} is ambiguous: it matches "
            + ", ".join(h[:16] for h in hashes)
        )
    return found[0]


class Head(NamedTuple):
    """The live bundle as S3 has it: sha256, version id, metadata (all None and empty when
    nothing is published yet)."""

    sha256: str | None
    version_id: str | None
    metadata: dict[str, str]


@dataclass
class ConfigStore:
    """The config bundle in the (versioned, private, encrypted) Greenlight bucket."""

    s3: Any
    bucket: str
    key: str = DEFAULT_KEY
    signer: KmsSigner | None = None  # None: neither signed nor verified (tests and tools only)

    def current(self) -> tuple[str | None, str | None]:
        """(sha256, version id) of the live bundle; (None, None) when there is none yet."""
        head = self.head()
        return head.sha256, head.version_id

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

    def head(self) -> Head:
        """The live bundle's sha256, version id and metadata, as :meth:`publish` compares
        with (a caller holding the edge lock may read it once and give it to both)."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return Head(None, None, {})
            raise
        metadata: dict[str, str] = head.get("Metadata", {})
        return Head(metadata.get(HASH_KEY), head.get("VersionId"), metadata)

    def publish(
        self, files: dict[str, bytes], *, dry_run: bool, why: str = "", head: Head | None = None
    ) -> Published:
        """Check, bundle, sign and write ``files`` when they differ from the live bundle (or
        the live one is not validly signed: it is written again, signed). ``head``: the live
        bundle as read already under the edge lock (else it is read now)."""
        check_bundle(files)
        data = bundle(files)
        digest = sha256(data)
        live_hash, live_version, metadata = head if head is not None else self.head()
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
        return self.put(data, why=why)

    def put(self, data: bytes, *, why: str = "") -> Published:
        """Sign and write one bundle as it is, unchecked: ``publish`` checks first. (The sandbox
        uses it to play a writer that signs anything, to test the instances' own checks.)"""
        digest = sha256(data)
        metadata = {HASH_KEY: digest, WHY_KEY: metadata_why(why)}
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

    def _versions(self, limit: int, after: str | None = None) -> tuple[list[Any], str | None]:
        """Up to ``limit`` versions of the key, newest first (S3's order), from after the
        version ``after``; and where the next page starts (None: no more)."""
        found: list[Any] = []
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.key,
            "MaxKeys": min(limit + 1, 1000),
        }
        if after:
            kwargs |= {"KeyMarker": self.key, "VersionIdMarker": after}
        while len(found) < limit:
            try:
                page = self.s3.list_object_versions(**kwargs)
            except ClientError as exc:
                if after and exc.response["Error"]["Code"] in ("InvalidArgument", "400"):
                    raise PermanentError(f"after: no version {after!r} to list from") from None
                raise
            found.extend(v for v in page.get("Versions", []) if v["Key"] == self.key)
            more = page.get("IsTruncated") and page.get("NextKeyMarker") == self.key
            if not more:
                return found[:limit], found[limit - 1]["VersionId"] if len(found) > limit else None
            kwargs |= {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page["NextVersionIdMarker"],
            }
        return found[:limit], found[limit - 1]["VersionId"]

    def _release(self, version: Any) -> Release:
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key, VersionId=version["VersionId"])
        metadata: dict[str, str] = head.get("Metadata", {})
        digest = metadata.get(HASH_KEY, "")
        return Release(
            version_id=version["VersionId"],
            sha256=digest,
            when=_iso(version.get("LastModified")),
            why=metadata.get(WHY_KEY, ""),
            live=bool(version.get("IsLatest")),
            signed=bool(digest) and self.signed(digest, metadata),
            origin=metadata.get(ORIGIN_KEY, ""),
        )

    def releases(
        self, limit: int = 20, after: str | None = None
    ) -> tuple[list[Release], str | None]:
        """The published releases, newest first: up to ``limit`` from after the version
        ``after``, and the version id to list the next page after (None: no more)."""
        versions, more = self._versions(limit, after)
        return [self._release(v) for v in versions], more

    def rollback(self, *, dry_run: bool, release: str | None = None, why: str = "") -> Published:
        """Make ``release`` (:meth:`choose`) current again, or show the diff (a dry run)."""
        target = self.choose(release)
        if dry_run:
            return Published(
                "would-roll-back",
                self.key,
                target.sha256,
                target.version_id,
                diff=diff(self.files(), self.files(target.version_id)),
                release=target.version_id,
            )
        return self.republish(target, why=why)

    def choose(self, release: str | None = None) -> Release:
        """The release a rollback goes to: ``release`` (a version id, or a sha256 prefix of one
        release among the newest RELEASES_SCAN: :func:`match_release`), by default
        :func:`previous_release`. PermanentError naming ``release`` for one that is unknown,
        ambiguous or not signed by our key."""
        listed = self.releases(RELEASES_SCAN)[0]
        if not listed:
            raise PermanentError(f"release: nothing is published at s3://{self.bucket}/{self.key}")
        if release is None:
            target = previous_release(listed)
            if target is None:
                raise PermanentError(
                    f"release: s3://{self.bucket}/{self.key}: no previous version to roll back to"
                )
        else:
            target = self._find(listed, release)
        if not target.signed:
            raise PermanentError(
                f"release: s3://{self.bucket}/{self.key} version {target.version_id}: not"
                f" signed by {self._key_id()}: no rollback to it (the instances would refuse it)"
            )
        return target

    def republish(self, target: Release, *, why: str = "") -> Published:
        """``target`` current again, by a copy that records ``why`` and the version first
        published with those bytes (``origin``); not copied when the live bundle has them."""
        live_hash, live_version, live_metadata = self.head()
        if live_hash == target.sha256 and self.signed(target.sha256, live_metadata):
            return Published(
                "rolled-back", self.key, target.sha256, live_version, release=target.version_id
            )
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key, VersionId=target.version_id)
        metadata = {
            k: v for k, v in head.get("Metadata", {}).items() if k not in (WHY_KEY, ORIGIN_KEY)
        }
        metadata |= {WHY_KEY: metadata_why(why), ORIGIN_KEY: target.origin or target.version_id}
        copied = self.s3.copy_object(
            Bucket=self.bucket,
            Key=self.key,
            ServerSideEncryption="aws:kms",
            CopySource={"Bucket": self.bucket, "Key": self.key, "VersionId": target.version_id},
            MetadataDirective="REPLACE",
            Metadata=metadata,
            ContentType="application/gzip",
        )
        return Published(
            "rolled-back",
            self.key,
            target.sha256,
            copied.get("VersionId"),
            release=target.version_id,
        )

    def _find(self, listed: list[Release], wanted: str) -> Release:
        """``wanted`` among the listed releases, or an older version named by its id."""
        try:
            return match_release(listed, wanted)
        except PermanentError:
            if _HEX.fullmatch(wanted):  # a hash prefix: only among the listed releases
                raise
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key, VersionId=wanted)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "400", "NoSuchVersion", "InvalidArgument"):
                raise PermanentError(f"release: no release with version id {wanted!r}") from None
            raise
        return self._release(
            {"VersionId": wanted, "LastModified": head.get("LastModified"), "IsLatest": False}
        )


def diff(old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """A unified diff of every file that differs, as text."""
    chunks: list[str] = []
    for name in sorted(set(old) | set(new)):
        before = old.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = new.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(before, after, f"live/{name}", f"new/{name}"))
    return "".join(chunks)
