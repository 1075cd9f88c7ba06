"""The haproxy function: the real handler, moto, the stand-in, and the real HAProxy check."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import boto3
import pytest

from greenlight.edge.publish import sha256
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.kube.kinds import kind_named
from tests.conftest import load_event

BUNDLE = "haproxy/config.tar.gz"


@pytest.fixture
def edge(aws_env):
    module = load("haproxy")
    return lambda event: module.handler(event, LambdaContext())


@pytest.fixture
def deployed(kube):
    for name, port in (("shop-blue", 30080), ("shop-green", 30081)):
        kube.cluster.create(
            kind_named("services"),
            "shop",
            {
                "metadata": {"name": name},
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": name},
                    "ports": [{"port": 80, "targetPort": 8080, "nodePort": port}],
                },
            },
        )


def versions(env):
    return (
        boto3.client("s3")
        .list_object_versions(Bucket=env["GREENLIGHT_CONFIG_BUCKET"], Prefix=BUNDLE)
        .get("Versions", [])
    )


def test_push_publishes_a_config_haproxy_accepts(edge, deployed, aws_env, tmp_path):
    result = edge(load_event("haproxy-push.json"))
    assert result["status"] == "published" and result["apps"] == 1
    assert result["serving_nodes"] == 3
    obj = boto3.client("s3").get_object(Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"], Key=BUNDLE)
    data = obj["Body"].read()
    assert obj["Metadata"]["sha256"] == sha256(data) == result["sha256"]
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(data)
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == [
            "certificates.tsv",
            "crt-list",
            "haproxy.cfg",
            "hosts.map",
        ]
        hosts = tar.extractfile("hosts.map").read().decode()
        manifest = tar.extractfile("certificates.tsv").read().decode()
        crt_list = tar.extractfile("crt-list").read().decode()
    # Every certificate the config names is in the manifest, with where to fetch it from.
    listed = {line.split()[0] for line in crt_list.splitlines()}
    refs = dict(line.split("\t") for line in manifest.splitlines())
    assert listed == set(refs) and all(r.startswith(("s3://", "arn:aws")) for r in refs.values())
    assert "shop.sandbox.test shop-blue" in hosts
    assert "preview.shop.sandbox.test shop-green" in hosts


def test_push_twice_publishes_once(edge, deployed, aws_env):
    edge(load_event("haproxy-push.json"))
    again = edge(load_event("haproxy-push.json"))
    assert again["status"] == "unchanged" and len(versions(aws_env)) == 1


@pytest.mark.parametrize("name", ["asg-instance-launch.json", "schedule-reconcile.json"])
def test_instance_events_and_the_schedule_push(edge, deployed, aws_env, name):
    result = edge(load_event(name))
    assert result["action"] == "push" and result["status"] == "published"


def test_a_cordoned_node_leaves_the_config_on_the_next_push(edge, deployed, kube, aws_env):
    edge(load_event("haproxy-push.json"))
    kube.cordon("worker-1")
    plan = edge(load_event("haproxy-render.json"))
    assert plan["status"] == "would-publish"
    assert "-    server worker-1 127.0.1.1:30080" in plan["diff"]
    assert len(versions(aws_env)) == 1  # render is a dry run
    assert edge(load_event("haproxy-push.json"))["serving_nodes"] == 2


def test_rollback_returns_to_the_previous_config(edge, deployed, kube, aws_env):
    import time

    first = edge(load_event("haproxy-push.json"))
    time.sleep(1.1)
    kube.cluster.create(
        kind_named("services"),
        "blog",
        {
            "metadata": {"name": "blog-green"},
            "spec": {"type": "NodePort", "selector": {"app": "b"}, "ports": [{"port": 80}]},
        },
    )
    assert edge(load_event("haproxy-push.json"))["status"] == "published"
    rolled = edge(load_event("haproxy-rollback.json"))
    assert rolled["status"] == "rolled-back" and rolled["sha256"] == first["sha256"]


@pytest.mark.parametrize(
    "event",
    [
        {"action": "explode"},
        {"action": "push", "force": True},
        {"action": "push", "dry_run": "yes"},
        ["push"],
    ],
)
def test_bad_invokes_are_rejected_and_change_nothing(edge, deployed, aws_env, event):
    result = edge(event)
    assert result["status"] == "rejected" and result["error"]
    assert versions(aws_env) == []


def test_published_bundle_passes_haproxy_check(edge, deployed, aws_env, tmp_path):
    haproxy = shutil.which("haproxy")
    assert haproxy, "HAProxy is required"
    edge(load_event("haproxy-push.json"))
    data = (
        boto3.client("s3")
        .get_object(Bucket=aws_env["GREENLIGHT_CONFIG_BUCKET"], Key=BUNDLE)["Body"]
        .read()
    )
    from greenlight.edge.publish import unbundle

    files = unbundle(data)
    # Checked the way the fleet script checks a release: in its own directory (haproxy -C),
    # with the instance's directories given in HAProxy's environment.
    release, certs = tmp_path / "release", tmp_path / "certs"
    release.mkdir()
    certs.mkdir()
    for name, content in files.items():
        (release / name).write_bytes(content)
    from greenlight_sandbox.render import self_signed

    for line in files["crt-list"].decode().splitlines():
        self_signed(certs / line.split()[0], ["sandbox.test"])
    env = {
        "PATH": os.environ["PATH"],
        "GREENLIGHT_CERTS_DIR": str(certs),
        "GREENLIGHT_RUN_DIR": str(tmp_path),
        "GREENLIGHT_STATE_DIR": str(tmp_path),
    }
    (tmp_path / "server-state").write_text("1\n")
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(release / "haproxy.cfg"), "-C", str(release)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
