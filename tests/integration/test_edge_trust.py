"""The instance's side of what it trusts: the apply document's own script (template.yaml), run
locally with the AWS CLI on moto (S3 and KMS) and the real HAProxy.

A bundle the function did not sign is refused (exit 7), and so is a signed bundle holding a
member or a directive the function never writes (exit 8), before anything is extracted or run:
the same table of bad bundles as the function's own check (tests/edge_trust_cases.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlight.edge import trust
from greenlight.edge.publish import bundle, sha256
from greenlight.edge.render import render
from greenlight.edge.state import MANIFEST, certificate_manifest
from greenlight_sandbox.fleet import (
    LocalInstance,
    MotoBucket,
    create_signing_key,
    free_port,
    local_snapshot,
    script,
)
from tests.edge_trust_cases import CASES, bad_files
from tests.unit.test_edge_trust import _tar, bundle_members

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("socat")),
    reason="needs haproxy and socat (scripts/ensure-haproxy installs them)",
)
HOST = "shop.sandbox.test"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoBucket]:
    bucket = MotoBucket(bucket="greenlight-trust").start()  # moto's state is per process
    yield bucket
    bucket.stop()


@pytest.fixture(scope="module")
def good(moto, tmp_path_factory) -> dict[str, bytes]:
    """A bundle as the function publishes it for a local instance (nothing needs to serve)."""
    tmp = tmp_path_factory.mktemp("certs")
    certs = {"default.pem": moto.put_certificate("default.pem", [HOST], tmp)}
    snapshot = local_snapshot(
        nodes=[("node-1", "127.0.0.2")],
        node_ports={"blue": 30080},
        live="blue",
        https_port=free_port(),
        http_port=free_port(),
        stats_port=free_port(),
    )
    return render(snapshot) | {MANIFEST: certificate_manifest(certs)}


class Instance:
    """A new instance (nothing applied yet) and what it holds on disk."""

    def __init__(self, moto: MotoBucket, base: Path) -> None:
        self.moto = moto
        self.local = LocalInstance(base).prepare()
        self.key = f"haproxy/{base.parent.name}/config.tar.gz"  # one bundle history per test

    def apply(self, **params: str) -> Any:
        """The bootstrap association's run by default: VersionId=latest, Sha256=from-metadata."""
        params = {"SigningKeyArn": self.moto.signing_key, "Mode": "stage"} | params
        return self.local.apply(self.moto.env, Bucket=self.moto.bucket, Key=self.key, **params)

    def on_disk(self) -> list[str]:
        """Every file, link and non-empty directory under the config root but the lock (the
        script makes its empty directories before it takes the lock)."""
        root = self.local.root
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.name != ".lock" and not (p.is_dir() and not any(p.iterdir()))
        )


@pytest.fixture
def instance(moto, tmp_path) -> Instance:
    return Instance(moto, tmp_path / "edge")


def refused(result: Any, code: int, why: str) -> None:
    assert result.returncode == code, result.output
    assert result.status["status"] == "failed" and why in result.status["reason"], result.status


# ---------------------------------------------------------------- signature
def test_a_bundle_the_function_signed_is_staged(instance, moto, good):
    published = moto.publish_files(good, instance.key)
    staged = instance.apply()
    assert staged.ok and staged.status["status"] == "staged", staged.output
    assert staged.status["sha256"] == published.sha256
    assert (instance.local.root / "releases" / published.sha256 / ".verified").is_file()


def test_an_unsigned_bundle_is_refused_on_the_bootstrap_path(instance, moto, good):
    data = bundle(good)  # what anyone with bucket write could put: right hash, no signature
    moto.s3.put_object(
        Bucket=moto.bucket, Key=instance.key, Body=data, Metadata={"sha256": sha256(data)}
    )
    before = instance.on_disk()
    result = instance.apply()
    refused(result, 7, "is not signed (no signature in its metadata)")
    assert instance.on_disk() == before  # nothing fetched into place, nothing extracted


def test_a_bundle_signed_by_another_key_is_refused(instance, moto, good):
    other = moto.store(instance.key, signing_key=create_signing_key(moto.kms))
    published = other.publish(good, dry_run=False)
    before = instance.on_disk()
    result = instance.apply(VersionId=published.version_id, Sha256=published.sha256, Mode="apply")
    refused(result, 7, f"is not signed by {moto.signing_key}")
    assert instance.on_disk() == before


def test_a_signature_for_another_key_path_or_other_bytes_is_refused(instance, moto, good):
    # The prospect's signature binds haproxy/.../prospect.tar.gz: copied over the bundle's key,
    # its metadata (hash and signature) comes along and is refused.
    prospect = moto.publish_files(good, instance.key.replace("config", "prospect"))
    moto.s3.copy_object(
        Bucket=moto.bucket,
        Key=instance.key,
        CopySource={"Bucket": moto.bucket, "Key": prospect.key, "VersionId": prospect.version_id},
    )
    refused(instance.apply(), 7, "is not signed by")
    # Other bytes under a signed bundle's metadata (its hash rewritten to match them).
    signed = moto.publish_files(good, instance.key)
    head = moto.s3.head_object(Bucket=moto.bucket, Key=instance.key, VersionId=signed.version_id)
    evil = bundle(good | {"hosts.map": b"shop.sandbox.test evil\n"})
    moto.s3.put_object(
        Bucket=moto.bucket,
        Key=instance.key,
        Body=evil,
        Metadata=head["Metadata"] | {"sha256": sha256(evil)},
    )
    before = instance.on_disk()
    refused(instance.apply(), 7, "is not signed by")
    assert instance.on_disk() == before


def test_a_rollback_copy_of_a_signed_version_is_applied(instance, moto, good):
    import time

    first = moto.publish_files(good, instance.key)
    time.sleep(1.1)  # distinct LastModified seconds for the version order
    moto.publish_files(good | {"hosts.map": b"elsewhere.sandbox.test shop-blue\n"}, instance.key)
    back = moto.store(instance.key).rollback(dry_run=False)
    assert back.sha256 == first.sha256
    staged = instance.apply()  # latest + from-metadata: the copy
    assert staged.ok and staged.status["version_id"] == back.version_id, staged.output
    assert staged.status["sha256"] == first.sha256


# ---------------------------------------------------------------- members
@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (("evil.lua", b"os.execute('id')", "file"), "'evil.lua', which is not one of"),
        (("hosts.map", b"/etc/shadow", "symlink"), "member 'hosts.map' is not a regular file"),
    ],
    ids=["extra-file", "symlink"],
)
def test_a_signed_bundle_with_a_member_the_function_never_writes_is_refused(
    instance, moto, good, extra, why
):
    members = [m for m in bundle_members(good) if m[0] != extra[0]] + [extra]
    published = moto.store(instance.key).put(_tar(members))
    before = instance.on_disk()
    refused(instance.apply(VersionId=published.version_id), 8, why)
    assert instance.on_disk() == before


# ---------------------------------------------------------------- directives
def test_the_lua_load_reproduction_does_not_run(instance, moto, good, tmp_path):
    # The reproduction: a config with lua-load, whose Lua runs as root during
    # haproxy -c, in stage mode. Here it is signed (a signer that signs anything).
    marker = tmp_path / "ran-as-root"
    lua = tmp_path / "evil.lua"
    lua.write_text(f'local f = io.open("{marker}", "w"); f:write("pwned"); f:close()\n')
    case = next(c for c in CASES if c.id == "lua-load")
    files = bad_files(good, case, lua=str(lua))
    # The control: HAProxy's own check runs the payload.
    release = tmp_path / "control"
    release.mkdir()
    for name, content in files.items():
        (release / name).write_bytes(content)
    subprocess.run(
        ["haproxy", "-c", "-f", str(release / "haproxy.cfg"), "-C", str(release)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert marker.read_text() == "pwned", "the payload does not run: this test proves nothing"
    marker.unlink()
    published = moto.publish_unchecked(files, instance.key)
    before = instance.on_disk()
    result = instance.apply(VersionId=published.version_id, Sha256=published.sha256)
    refused(result, 8, "refused: haproxy.cfg: line")
    assert result.status["reason"].endswith(": lua-load is not allowed")
    assert not marker.exists()
    assert instance.on_disk() == before


@pytest.mark.parametrize("case_id", ["lua-load-if-guarded", "crt-list-options"])
def test_the_document_refuses_bad_directives_before_haproxy_c(instance, moto, good, case_id):
    case = next(c for c in CASES if c.id == case_id)
    published = moto.publish_unchecked(bad_files(good, case, lua="/nonexistent.lua"), instance.key)
    before = instance.on_disk()
    result = instance.apply(VersionId=published.version_id, Sha256=published.sha256)
    refused(result, 8, case.why)
    assert "haproxy -c" not in result.output  # never reached
    assert instance.on_disk() == before


def refusals_function() -> str:
    """The script's own ``refusals`` (the check the document runs on an extracted bundle)."""
    text = script(
        {
            "Bucket": "greenlight-bucket",
            "SigningKeyArn": "arn:aws:kms:eu-west-1:"
            "123456789012:key/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        }
    )
    start = text.index("refusals() {")
    return text[start : text.index("\n}\n", start) + 3]


def run_refusals(directory: Path, files: dict[str, bytes]) -> str:
    names = ["haproxy.cfg"] + (["crt-list"] if "crt-list" in files else [])
    for name in names:
        (directory / name).write_bytes(files[name])
    proc = subprocess.run(
        ["bash", "-c", refusals_function() + '\nrefusals "$@"', "refusals", *names],
        cwd=directory,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return proc.stdout.decode("latin-1")


def test_the_documents_check_passes_what_the_function_renders(good, tmp_path):
    assert run_refusals(tmp_path, good) == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_documents_check_refuses_every_bad_bundle_of_the_table(good, tmp_path, case):
    files = bad_files(good, case, lua="/tmp/greenlight-evil.lua", marker="/tmp/marker")
    out = run_refusals(tmp_path, files)
    assert case.why in out, out
    problems = trust.bundle_problems(files)  # the function's own verdict: the same lines
    expected = sorted(p.split(":")[0] + ":" + p.split(":")[1] for p in problems)
    assert sorted(
        line.split(":")[0] + ":" + line.split(":")[1] for line in out.split("\n") if line
    ) == (expected)


FRAGMENTS = [
    "lua-load", "lua", "-load", "x", "stats", "socket", "bind", "crt", "file", "-f", "no",
    "option", "external-check", "errorfile", "503", "a.pem", "/etc/x", "crt-base",
    "server-state-file", "map(", "set-map(", "hosts.map", ")", ",", "unix@", ".if", "setenv",
    "${GREENLIGHT_RUN_DIR}", "${GREENLIGHT_RUN_DIR}/a", "${HOME}", "${GREENLIGHT_X-1.2.3.4}",
    "$", "{", "}", '"', "'", "\\", "\\x2d", "#", " ", " ", "\t", "\r", "\x0b", "\xe9", "..",
]  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join), max_size=40))
def test_the_documents_check_and_the_functions_agree_line_by_line(tmp_path, lines):
    config = "\n".join(lines).encode("latin-1")
    out = run_refusals(tmp_path, {"haproxy.cfg": config})
    document = sorted(int(line.split(":")[1].split()[1]) for line in out.split("\n") if line)
    function = [n for n, line in enumerate(lines, start=1) if trust.line_problem(line)]
    assert document == function, (out, [trust.line_problem(line) for line in lines])
