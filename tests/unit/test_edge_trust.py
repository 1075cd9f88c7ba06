"""The function's side of what an instance trusts: the checks before it publishes, and the
signature it puts on every bundle (moto's KMS, ECC_NIST_P256)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from greenlight.edge import trust
from greenlight.edge.publish import ConfigStore, bundle, sha256, unbundle
from greenlight.edge.render import render
from greenlight.edge.signing import SIGNATURE_KEY, KmsSigner
from greenlight.edge.snapshot import parse_snapshot
from greenlight.edge.state import MANIFEST
from greenlight.errors import PermanentError
from greenlight_sandbox.fleet import create_signing_key
from tests.edge_trust_cases import CASES, MEMBER_CASES, bad_files, fill

SNAPSHOT = Path(__file__).resolve().parents[2] / "events" / "cluster-snapshot.json"
BUCKET = "greenlight-edge"


def good(live_colour: str = "blue") -> dict[str, bytes]:
    """What the function publishes: the rendered files and the certificate manifest."""
    data = json.loads(SNAPSHOT.read_text())
    data["apps"][0]["live_colour"] = live_colour
    files = render(parse_snapshot(json.dumps(data)))
    return files | {MANIFEST: b"default.pem\ts3://greenlight-edge/certs/default.pem\n"}


def test_what_the_function_renders_passes_its_own_check():
    assert trust.bundle_problems(good()) == []
    trust.check_bundle(good("green"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_bundle_is_refused_before_publishing_naming_the_line(case):
    files = bad_files(good(), case, lua="/tmp/greenlight-evil.lua", marker="/tmp/marker")
    with pytest.raises(PermanentError) as refused:
        trust.check_bundle(files)
    message = str(refused.value)
    assert case.why in message
    name = "crt-list" if case.section == "crt-list" else "haproxy.cfg"
    text = files[name].decode().split("\n")
    refused_line = trust.crt_list_problems if name == "crt-list" else trust.line_problem
    first = next(n for n, line in enumerate(text, start=1) if refused_line(line))
    assert f"{name}: line {first}:" in message
    assert text[first - 1].strip() in fill(
        "\n".join(case.lines), lua="/tmp/greenlight-evil.lua", marker="/tmp/marker"
    )


def test_words_are_split_as_haproxy_splits_them():
    assert trust.words('  bind "${GREENLIGHT_BIND_ADDRESS}:443" ssl # comment') == (
        ["bind", "${GREENLIGHT_BIND_ADDRESS}:443", "ssl"],
        None,
    )
    assert trust.words("lua'-'load \"a b\" c\\ d") == (["lua-load", "a b", "c d"], None)
    assert trust.words("x '$HOME' \"$HOME\"")[1] == "expands a variable that is not the instance's"
    assert trust.words('x "${GREENLIGHT_STATS_ADDRESS-127.0.0.1}:1"')[0][1] == (
        "${GREENLIGHT_STATS_ADDRESS-127.0.0.1}:1"
    )


def test_the_password_hash_and_the_no_route_answer_are_not_refused():
    # "$" outside double quotes is not expanded; escapes other than \x are plain characters.
    assert trust.line_problem("    user admin password $6$salt$hash") is None
    assert trust.line_problem('    http-request return status 404 string "no route\\n"') is None


@pytest.mark.parametrize(
    "line",
    [
        "    server crt 10.0.0.1:30080",  # a node may have any name
        "    user file password $6$x",  # so may the stats user
        "    http-check send meth GET uri /status/map(x) ver HTTP/1.1 hdr Host lua.example.com",
    ],
)
def test_names_and_paths_that_look_like_keywords_are_not_refused(line):
    assert trust.line_problem(line) is None


def test_the_function_refuses_a_bad_bundle_and_writes_nothing(aws):
    s3, store = _store(aws)
    case = next(c for c in CASES if c.id == "lua-load")
    with pytest.raises(PermanentError, match="lua-load is not allowed"):
        store.publish(bad_files(good(), case, lua="/tmp/evil.lua"), dry_run=False)
    assert s3.list_object_versions(Bucket=BUCKET).get("Versions", []) == []


@pytest.mark.parametrize(
    ("case_id", "members", "why"), MEMBER_CASES, ids=[c[0] for c in MEMBER_CASES]
)
def test_unbundle_refuses_what_the_function_never_writes_naming_it(case_id, members, why):
    data = _tar(list(bundle_members(good())) + list(members))
    with pytest.raises(PermanentError, match=why.replace(".", r"\.")):
        unbundle(data)


def test_unbundle_refuses_a_member_twice_and_a_bundle_without_config():
    twice = _tar([*bundle_members(good()), ("hosts.map", b"", "file")])
    with pytest.raises(PermanentError, match=r"'hosts\.map' twice"):
        unbundle(twice)
    with pytest.raises(PermanentError, match=r"no haproxy\.cfg"):
        unbundle(_tar([("hosts.map", b"", "file")]))


# ---------------------------------------------------------------- signing
def _store(aws, key: str = "haproxy/config.tar.gz", signing_key: str | None = None):
    s3 = aws.client("s3")
    if not s3.list_buckets()["Buckets"]:
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    kms = aws.client("kms")
    signer = KmsSigner(kms, signing_key or create_signing_key(kms))
    return s3, ConfigStore(s3, BUCKET, key, signer)


def test_every_published_bundle_carries_the_functions_signature_of_bucket_key_and_hash(aws):
    s3, store = _store(aws)
    published = store.publish(good(), dry_run=False)
    head = s3.head_object(Bucket=BUCKET, Key=published.key)
    signature = head["Metadata"][SIGNATURE_KEY]
    signer = store.signer
    assert signer.verify(BUCKET, published.key, published.sha256, signature)
    # What is signed binds the purpose, the place and the bytes: any other is not valid.
    assert not signer.verify(BUCKET, "haproxy/prospect.tar.gz", published.sha256, signature)
    assert not signer.verify("other-bucket", published.key, published.sha256, signature)
    assert not signer.verify(BUCKET, published.key, "0" * 64, signature)
    raw = signer.kms.sign(
        KeyId=signer.key_id,
        Message=trust.statement_digest(BUCKET, published.key, published.sha256),
        MessageType="DIGEST",
        SigningAlgorithm="ECDSA_SHA_256",
    )["Signature"]
    assert signer.verify(BUCKET, published.key, published.sha256, base64.b64encode(raw).decode())
    assert trust.statement(BUCKET, published.key, published.sha256) == (
        f"greenlight-edge-bundle:v1\n{BUCKET}/{published.key}\n{published.sha256}".encode()
    )


def test_a_missing_malformed_or_foreign_signature_is_not_valid(aws):
    _, store = _store(aws)
    _, other = _store(aws)
    digest = "a" * 64
    theirs = other.signer.sign(BUCKET, store.key, digest)
    assert not store.signer.verify(BUCKET, store.key, digest, None)
    assert not store.signer.verify(BUCKET, store.key, digest, "not base64!")
    assert not store.signer.verify(BUCKET, store.key, digest, theirs)
    assert other.signer.verify(BUCKET, store.key, digest, theirs)


def test_reading_back_an_unsigned_or_foreign_bundle_is_refused(aws):
    s3, store = _store(aws)
    data = bundle(good())
    s3.put_object(Bucket=BUCKET, Key=store.key, Body=data, Metadata={"sha256": sha256(data)})
    with pytest.raises(PermanentError, match="not signed by arn:aws:kms"):
        store.files()
    _, other = _store(aws)
    other.put(data)  # the same bytes, signed by another key
    with pytest.raises(PermanentError, match="not signed by"):
        store.files()


def test_an_unsigned_live_bundle_with_the_same_bytes_is_written_again_signed(aws):
    s3, store = _store(aws)
    data = bundle(good())
    s3.put_object(Bucket=BUCKET, Key=store.key, Body=data, Metadata={"sha256": sha256(data)})
    again = store.publish(good(), dry_run=False)
    assert again.status == "published" and again.sha256 == sha256(data)
    assert store.files() == good()
    assert store.publish(good(), dry_run=False).status == "unchanged"


def test_a_rollback_copies_a_signed_version_and_the_copy_verifies(aws):
    s3, store = _store(aws)
    first = store.publish(good(), dry_run=False)
    time.sleep(1.1)  # distinct LastModified seconds for the version order
    store.publish(good("green"), dry_run=False)
    done = store.rollback(dry_run=False)
    assert done.status == "rolled-back" and done.sha256 == first.sha256
    head = s3.head_object(Bucket=BUCKET, Key=store.key)
    assert head["VersionId"] == done.version_id
    assert store.signer.verify(BUCKET, store.key, done.sha256, head["Metadata"][SIGNATURE_KEY])
    assert store.files() == good()


def test_a_rollback_to_an_unsigned_version_is_refused(aws):
    s3, store = _store(aws)
    data = bundle(good())
    s3.put_object(Bucket=BUCKET, Key=store.key, Body=data, Metadata={"sha256": sha256(data)})
    time.sleep(1.1)
    store.publish(good("green"), dry_run=False)
    with pytest.raises(PermanentError, match="no rollback to it"):
        store.rollback(dry_run=False)
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 2


# ---------------------------------------------------------------- helpers
def bundle_members(files: dict[str, bytes]):
    return [(name, content, "file") for name, content in sorted(files.items())]


def _tar(members) -> bytes:
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content.decode()
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())
