"""The haproxy function: the real handler, moto, the stand-in, and the real HAProxy check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile

import boto3
import pytest

from greenlight.edge.publish import sha256
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.kube.kinds import kind_named
from tests.conftest import load_event, node_port_service

BUNDLE = "haproxy/config.tar.gz"


@pytest.fixture
def edge(aws_env):
    module = load("haproxy")
    return lambda event: module.handler(event, LambdaContext())


@pytest.fixture
def deployed(kube):
    for name, port in (("shop-blue", 30080), ("shop-green", 30081)):
        node_port_service(kube, "shop", name, node_port=port)


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
    assert re.search(r"^-    server worker-1_30080_\w+ 127\.0\.1\.1:30080$", plan["diff"], re.M)
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


# ---------------------------------------------------------------- the fleet reload (moto SSM)
FLEET_TAG = "greenlight:edge-fleet"


@pytest.fixture
def fleet(aws_env, monkeypatch):
    """The apply document from template.yaml registered in moto, three running fleet
    instances, one stopped one and one of another fleet (neither may be touched)."""
    import yaml

    from greenlight_sandbox.fleet import document

    ssm, ec2 = boto3.client("ssm"), boto3.client("ec2")
    ssm.create_document(
        Name="greenlight-apply",
        Content=yaml.safe_dump(document()),
        DocumentType="Command",
        DocumentFormat="YAML",
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(count, value):
        reply = ec2.run_instances(
            ImageId=image,
            MinCount=count,
            MaxCount=count,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": FLEET_TAG, "Value": value}]}
            ],
        )
        return sorted(i["InstanceId"] for i in reply["Instances"])

    ours = launch(3, "sandbox")
    stopped = launch(1, "sandbox")
    ec2.stop_instances(InstanceIds=stopped)
    launch(1, "another-fleet")
    monkeypatch.setenv("GREENLIGHT_EDGE_DOCUMENT", "greenlight-apply")
    monkeypatch.setenv("GREENLIGHT_EDGE_FLEET_TAG", f"{FLEET_TAG}=sandbox")
    return ours


def commands():
    return sorted(
        boto3.client("ssm").list_commands()["Commands"], key=lambda c: c["RequestedDateTime"]
    )


def test_a_push_reloads_the_fleet_canary_first(edge, deployed, fleet, aws_env):
    result = edge(load_event("haproxy-push.json"))
    assert result["status"] == "published"
    reload = result["fleet"]
    assert reload["status"] == "applied" and reload["counts"] == {"Success": 3}
    assert reload["canary"] == fleet[0] and sorted(reload["instances"]) == fleet
    stage, canary, rest = commands()  # every instance stages, then the switch: canary first
    assert stage["Parameters"]["Mode"] == ["stage"] and reload["staged"] == 3
    assert (stage["MaxConcurrency"], stage["MaxErrors"]) == ("100%", "100%")
    # Every push runs the document with Mode=switch: each instance switches or reloads.
    assert canary["Parameters"]["Mode"] == rest["Parameters"]["Mode"] == ["switch"]
    # (moto lists every instance of the account in a command's InstanceIds when it has no
    # Targets, so which instance ran in which command comes from the outcomes.)
    ran_in = {i: o["command_id"] for i, o in reload["instances"].items()}
    assert ran_in[fleet[0]] == canary["CommandId"]
    assert ran_in[fleet[1]] == ran_in[fleet[2]] == rest["CommandId"]
    assert (canary["MaxConcurrency"], canary["MaxErrors"]) == ("1", "0")
    assert (rest["MaxConcurrency"], rest["MaxErrors"]) == ("25%", "0")
    for command in (stage, canary, rest):
        assert command["Parameters"]["VersionId"] == [result["version_id"]]
        assert command["Parameters"]["Sha256"] == [result["sha256"]]
        assert command["Parameters"]["Bucket"] == [aws_env["GREENLIGHT_CONFIG_BUCKET"]]
    from greenlight.store.fleet import FleetLog

    state = FleetLog(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"]).state()
    assert state["status"] == "applied" and not state["degraded"]
    assert state["sha256"] == result["sha256"] and set(state["instances"]) == set(fleet)


def test_an_unchanged_push_leaves_a_healthy_fleet_alone(edge, deployed, fleet):
    edge(load_event("haproxy-push.json"))
    again = edge(load_event("schedule-reconcile.json"))
    assert again["status"] == "unchanged" and "fleet" not in again
    assert len(commands()) == 3  # the first push's stage, canary and rest: nothing more


def test_the_reconcile_heals_a_degraded_fleet(edge, deployed, fleet, aws_env):
    from greenlight.edge.fleet import FleetResult, InstanceOutcome
    from greenlight.store.fleet import FleetLog

    first = edge(load_event("haproxy-push.json"))
    degraded = FleetResult("incomplete", first["version_id"], first["sha256"], fleet[0])
    degraded.instances = {fleet[2]: InstanceOutcome(fleet[2], "Undeliverable", "agent offline")}
    FleetLog(boto3.client("dynamodb"), aws_env["GREENLIGHT_TABLE"]).record(degraded, "test")
    healed = edge(load_event("schedule-reconcile.json"))
    assert healed["status"] == "unchanged" and healed["fleet"]["status"] == "applied"
    assert len(commands()) == 6  # stage, canary and rest, twice


def test_a_dry_run_push_names_the_instances_and_sends_nothing(edge, deployed, fleet):
    result = edge({"action": "push", "dry_run": True})
    assert result["status"] == "would-publish"
    assert result["fleet"] == {"status": "would-reload", "instances": fleet}
    assert commands() == []


def test_reload_applies_the_published_version_again(edge, deployed, fleet):
    assert edge({"action": "reload"})["status"] == "rejected"  # nothing published yet
    first = edge(load_event("haproxy-push.json"))
    again = edge({"action": "reload", "reason": "instance replaced by hand"})
    assert again["fleet"]["status"] == "applied"
    assert again["fleet"]["version_id"] == first["version_id"]


def _app_state(env, **fields):
    """The shop's state item as the rollout records leave it (only what the snapshot reads)."""
    values = {f":{k}": {"S": v} for k, v in fields.items()}
    boto3.client("dynamodb").update_item(
        TableName=env["GREENLIGHT_TABLE"],
        Key={"pk": {"S": "app#shop"}, "sk": {"S": "state"}},
        UpdateExpression="SET " + ", ".join(f"{k} = :{k}" for k in fields),
        ExpressionAttributeValues=values,
    )


def test_a_prospect_is_staged_and_is_what_the_promotion_publishes(edge, deployed, fleet, aws_env):
    _app_state(aws_env, live_colour="blue", phase="deploying")
    pushed = edge(
        {"action": "push", "reason": "candidate", "prospect": {"app": "shop", "colour": "green"}}
    )
    prospect = pushed["prospect"]
    assert prospect["status"] == "staged" and prospect["staged"] == 3
    assert prospect["sha256"] != pushed["sha256"]  # not what is served
    staged = commands()[-1]  # after the push's own stage, canary and rest
    assert staged["Parameters"]["Mode"] == ["stage"]
    assert staged["Parameters"]["Key"] == ["haproxy/prospect.tar.gz"]
    assert staged["Parameters"]["Sha256"] == [prospect["sha256"]]
    assert len(versions(aws_env)) == 1  # the served bundle is untouched by the prospect
    # The gate promotes: green live, blue its warm backup, the rollout promoting.
    _app_state(
        aws_env,
        live_colour="green",
        backup_colour="blue",
        phase="promoting",
        live_phase="promoting",
    )
    before = len(commands())
    promoted = edge({"action": "push", "reason": "promote"})
    assert promoted["status"] == "published" and promoted["sha256"] == prospect["sha256"]
    # The promotion differs from what is served in hosts.map alone: one wave, every instance
    # at once (no stage round, no canary).
    assert promoted["fleet"]["status"] == "applied"
    assert promoted["fleet"]["waves"] == "all-at-once" and promoted["fleet"]["canary"] == ""
    check, switch = commands()[before:]
    # No promote named, yet the live hosts move to green: green is checked UP first.
    assert check["Parameters"]["Mode"] == ["check"]
    assert check["Parameters"]["Backends"] == ["shop-green"]
    assert promoted["fleet"]["checked"]["backends"] == ["shop-green"]
    assert switch["Parameters"]["Mode"] == ["switch"]
    assert switch["Parameters"]["Backends"] == ["shop-green"]
    assert (switch["MaxConcurrency"], switch["MaxErrors"]) == ("100%", "100%")


def test_a_promotion_checks_its_candidate_up_everywhere_then_switches(
    edge, deployed, fleet, aws_env
):
    _app_state(aws_env, live_colour="blue", phase="gating")
    first = edge(load_event("haproxy-push.json"))
    assert first["fleet"]["waves"] == "canary-first"  # nothing served before: structural
    _app_state(
        aws_env,
        live_colour="green",
        backup_colour="blue",
        phase="promoting",
        live_phase="promoting",
    )
    before = len(commands())
    cold = load("haproxy")  # another process: it reads the served bundle back to compare
    promoted = cold.handler(
        {"action": "push", "reason": "promote", "promote": {"app": "shop", "colour": "green"}},
        LambdaContext(),
    )
    assert promoted["status"] == "published", promoted
    fleet_run = promoted["fleet"]
    assert fleet_run["status"] == "applied" and fleet_run["waves"] == "all-at-once"
    assert fleet_run["checked"]["up"] and fleet_run["checked"]["backends"] == ["shop-green"]
    assert set(fleet_run["seconds"]) == {"check", "switch"}
    assert {"render", "served", "check", "publish", "fleet"} <= set(promoted["seconds"])
    check, switch = commands()[before:]  # the check round first, every instance at once
    assert check["Parameters"]["Mode"] == ["check"] and "VersionId" not in check["Parameters"]
    assert check["Parameters"]["Backends"] == ["shop-green"]
    assert check["Parameters"]["UpTimeoutSeconds"] == ["20"]
    assert (check["MaxConcurrency"], check["MaxErrors"]) == ("100%", "100%")
    # ... then the switch, each instance again seeing green UP before it switches.
    assert switch["Parameters"]["Mode"] == ["switch"]
    assert switch["Parameters"]["Backends"] == ["shop-green"]
    assert switch["Parameters"]["UpTimeoutSeconds"] == ["0"]
    assert switch["Parameters"]["VersionId"] == [promoted["version_id"]]


def test_a_promote_needs_a_push_a_colour_and_a_known_app(edge, deployed, aws_env):
    for event, message in (
        ({"action": "rollback", "promote": {"app": "shop", "colour": "green"}}, "promote: only"),
        ({"action": "push", "promote": {"app": "shop", "colour": "teal"}}, "promote.colour"),
        ({"action": "push", "promote": ["shop", "green"]}, "promote: expected"),
        ({"action": "push", "promote": {"app": "shoe", "colour": "green"}}, "promote.app"),
    ):
        result = edge(event)
        assert result["status"] == "rejected" and message in result["error"], result
    assert versions(aws_env) == []  # nothing was published


def test_a_prospect_needs_a_push_and_a_colour(edge, deployed, aws_env):
    for event in (
        {"action": "render", "prospect": {"app": "shop", "colour": "green"}},
        {"action": "push", "prospect": {"app": "shop", "colour": "purple"}},
        {"action": "push", "prospect": {"app": "shop"}},
    ):
        result = edge(event)
        assert result["status"] == "rejected" and "prospect" in result["error"]
    assert versions(aws_env) == []  # nothing was published
