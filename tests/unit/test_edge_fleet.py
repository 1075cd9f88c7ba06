"""Fleet reload outcomes, with botocore's Stubber where moto cannot produce them.

moto answers every GetCommandInvocation with Success; the SSM outcomes that matter when things go
wrong (InvocationDoesNotExist right after SendCommand, Failed with the script's reason, delivery
and execution timeouts, Undeliverable, still running at our deadline) are stubbed here, with the
exact requests the reloader must make.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from greenlight.deadline import Deadline
from greenlight.edge.fleet import MIN_WAVE_SECONDS, FleetReloader, wave_timeouts
from greenlight.settings import FleetSettings, SettingsError

SHA = "a" * 64
I1, I2, I3 = (f"i-{n:017d}" for n in (1, 2, 3))
C1, C2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
VERSION = "v-123"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
SETTINGS = FleetSettings(
    document="stack-EdgeApplyConfig",
    tag_key="greenlight:edge-fleet",
    tag_value="prod",
    bucket="greenlight-bucket",
    key="haproxy/config.tar.gz",
    region="eu-west-1",
    max_concurrency="50%",
    max_errors="1",
    poll_seconds=0.01,
    stage_first=False,  # the switch alone; staging has its own test
    signing_key=KEY_ARN,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clients():
    ssm = boto3.client("ssm", region_name="eu-west-1")
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    with Stubber(ssm) as ssm_stub, Stubber(ec2) as ec2_stub:
        yield ssm, ec2, ssm_stub, ec2_stub
        ssm_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()


def fleet(ec2_stub: Stubber, *instances: str) -> None:
    ec2_stub.add_response(
        "describe_instances",
        {"Reservations": [{"Instances": [{"InstanceId": i} for i in instances]}]},
        {
            "Filters": [
                {"Name": "tag:greenlight:edge-fleet", "Values": ["prod"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        },
    )


def sent(
    ssm_stub: Stubber,
    command_id: str,
    instances: list[str],
    concurrency: str,
    errors: str,
    execution: int = 120,
    delivery: int = 60,
    **mode: str,
):
    ssm_stub.add_response(
        "send_command",
        {"Command": {"CommandId": command_id}},
        {
            "DocumentName": "stack-EdgeApplyConfig",
            "InstanceIds": instances,
            "Parameters": {
                "Bucket": ["greenlight-bucket"],
                "Key": ["haproxy/config.tar.gz"],
                "VersionId": [VERSION],
                "Sha256": [SHA],
                "Region": ["eu-west-1"],
                "ExecutionTimeoutSeconds": [str(execution)],
                "SigningKeyArn": [KEY_ARN],  # instances apply only what this key signed
            }
            | {k: [v] for k, v in mode.items()},
            "TimeoutSeconds": delivery,
            "MaxConcurrency": concurrency,
            "MaxErrors": errors,
            "Comment": ANY,
        },
    )


def invocation(ssm_stub: Stubber, command_id: str, instance: str, details: str, **extra: Any):
    status = {
        "Delivery Timed Out": "TimedOut",
        "Execution Timed Out": "TimedOut",
        "Undeliverable": "Failed",
        "Terminated": "Failed",
    }.get(details, details)
    ssm_stub.add_response(
        "get_command_invocation",
        {"CommandId": command_id, "InstanceId": instance, "Status": status}
        | {"StatusDetails": details}
        | extra,
        {"CommandId": command_id, "InstanceId": instance},
    )


def not_yet(ssm_stub: Stubber, command_id: str, instance: str) -> None:
    ssm_stub.add_client_error(
        "get_command_invocation",
        service_error_code="InvocationDoesNotExist",
        expected_params={"CommandId": command_id, "InstanceId": instance},
    )


def reloader(clients, clock: Clock | None = None, settings=SETTINGS) -> FleetReloader:
    ssm, ec2, *_ = clients
    clock = clock or Clock()
    return FleetReloader(ssm, ec2, settings, sleep=clock.sleep)


def deadline(clock: Clock, seconds: float = 295) -> Deadline:
    return Deadline.within(seconds, clock=clock)


def test_canary_then_the_rest_all_succeed_after_invocation_does_not_exist(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I3, I1, I2)
    sent(ssm_stub, C1, [I1], "1", "0")  # the canary: lowest id, alone, no errors allowed
    not_yet(ssm_stub, C1, I1)
    invocation(ssm_stub, C1, I1, "InProgress")
    invocation(ssm_stub, C1, I1, "Success")
    sent(ssm_stub, C2, [I2, I3], "50%", "1")
    invocation(ssm_stub, C2, I2, "Success")
    not_yet(ssm_stub, C2, I3)
    invocation(ssm_stub, C2, I3, "Success")
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "applied" and not result.degraded
    assert result.canary == I1
    assert result.counts() == {"Success": 3}
    assert result.instances[I3].command_id == C2


def test_every_instance_stages_at_once_then_canary_then_the_rest(clients):
    from dataclasses import replace

    _, _, ssm_stub, ec2_stub = clients
    C0 = "00000000-0000-4000-8000-000000000000"
    fleet(ec2_stub, I2, I1)
    sent(ssm_stub, C0, [I1, I2], "100%", "100%", Mode="stage")  # fetch and check, no switch
    invocation(ssm_stub, C0, I1, "Success")
    out = '{"status":"failed","reason":"cannot fetch s3://greenlight-bucket/haproxy/config"}\n'
    invocation(ssm_stub, C0, I2, "Failed", ResponseCode=1, StandardOutputContent=out)
    sent(ssm_stub, C1, [I1], "1", "0")  # the switch, as without staging
    invocation(ssm_stub, C1, I1, "Success")
    sent(ssm_stub, C2, [I2], "50%", "1")  # I2 could not stage: its apply fetches itself
    invocation(ssm_stub, C2, I2, "Success")
    clock = Clock()
    staging = replace(SETTINGS, stage_first=True)
    result = reloader(clients, clock, staging).apply(VERSION, SHA, deadline(clock))
    assert result.status == "applied" and result.staged == 1
    assert result.counts() == {"Success": 2}
    assert result.to_dict()["staged"] == 1


def test_a_failed_canary_stops_the_rollout_to_the_rest(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2, I3)
    sent(ssm_stub, C1, [I1], "1", "0")
    out = 'log\n{"status":"failed","reason":"hash mismatch: version v-123 has ffff"}\n'
    invocation(ssm_stub, C1, I1, "Failed", ResponseCode=3, StandardOutputContent=out)
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "canary-failed" and result.degraded
    assert result.instances[I1].outcome == "Failed"
    assert result.instances[I1].detail == "exit 3: hash mismatch: version v-123 has ffff"
    assert {result.instances[i].outcome for i in (I2, I3)} == {"NotAttempted"}
    # No second SendCommand: the stubber would fail on an unexpected call.


@pytest.mark.parametrize(
    ("details", "outcome"),
    [
        ("Delivery Timed Out", "TimedOut"),
        ("Execution Timed Out", "TimedOut"),
        ("Undeliverable", "Undeliverable"),
        ("Terminated", "Undeliverable"),
        ("Cancelled", "Cancelled"),
        ("Failed", "Failed"),
    ],
)
def test_each_ssm_outcome_on_the_rest_is_reported_distinctly(clients, details, outcome):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2, I3)
    sent(ssm_stub, C1, [I1], "1", "0")
    invocation(ssm_stub, C1, I1, "Success")
    sent(ssm_stub, C2, [I2, I3], "50%", "1")
    invocation(ssm_stub, C2, I2, "Success")
    invocation(ssm_stub, C2, I3, details, ResponseCode=1)
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "incomplete" and result.degraded
    assert result.instances[I2].outcome == "Success"
    assert result.instances[I3].outcome == outcome
    assert details in result.instances[I3].detail or outcome == "Failed"


def test_an_instance_still_running_at_the_deadline_is_incomplete(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1)
    sent(ssm_stub, C1, [I1], "1", "0", execution=30, delivery=30)  # a minimal wave
    for _ in range(5):
        invocation(ssm_stub, C1, I1, "InProgress")
    clock = SlowClock()  # SSM late: every pause between polls takes 20 s
    wave = deadline(clock, seconds=MIN_WAVE_SECONDS)
    result = reloader(clients, clock).apply(VERSION, SHA, wave)
    assert result.status == "canary-failed"
    assert result.instances[I1].outcome == "Incomplete"
    assert clock.now == 80  # polls at 0, 20, 40, 60 and 80 s; stopped at the deadline (65 s)


class SlowClock(Clock):
    def sleep(self, seconds: float) -> None:
        self.now += 20


def test_a_wave_is_sized_to_end_before_the_deadline():
    # The configured timeouts (60 s delivery, 120 s execution) while they fit...
    assert wave_timeouts(295, SETTINGS) == (60, 120)
    assert wave_timeouts(185, SETTINGS) == (60, 120)
    # ... shortened when they do not, never below SSM's 30 s delivery minimum ...
    assert wave_timeouts(100, SETTINGS) == (30, 65)
    assert wave_timeouts(MIN_WAVE_SECONDS, SETTINGS) == (30, 30)
    # ... and none when even a minimal one would outlive the deadline.
    assert wave_timeouts(MIN_WAVE_SECONDS - 1, SETTINGS) is None
    for left in range(MIN_WAVE_SECONDS, 400):
        timeouts = wave_timeouts(left, SETTINGS)
        assert timeouts is not None and sum(timeouts) <= left - 5, left


def test_a_short_deadline_sends_a_wave_with_shorter_timeouts(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1)
    sent(ssm_stub, C1, [I1], "1", "0", execution=65, delivery=30)
    invocation(ssm_stub, C1, I1, "Success")
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock, seconds=100))
    assert result.status == "applied"


def test_no_wave_is_sent_that_cannot_end_before_the_deadline(clients):
    _, _, _, ec2_stub = clients
    fleet(ec2_stub, I1, I2, I3)
    clock = Clock()
    short = deadline(clock, seconds=MIN_WAVE_SECONDS - 1)
    result = reloader(clients, clock).apply(VERSION, SHA, short)
    # No SendCommand at all (the stubber fails on an unexpected call); not a canary failure.
    assert result.status == "incomplete" and result.degraded
    assert result.counts() == {"NotAttempted": 3}
    assert "not sent" in result.instances[I1].detail


def test_each_instance_carries_the_seconds_from_send_command_to_its_outcome(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)
    sent(ssm_stub, C1, [I1], "1", "0")
    invocation(ssm_stub, C1, I1, "InProgress")  # seen done at the second poll, one pause later
    invocation(ssm_stub, C1, I1, "Success")
    ssm_stub.add_client_error("send_command", service_error_code="InvalidInstanceId")
    clock = Clock()
    ssm, ec2, *_ = clients
    timed = FleetReloader(ssm, ec2, SETTINGS, sleep=clock.sleep, clock=clock)
    result = timed.apply(VERSION, SHA, deadline(clock))
    pause = min(SETTINGS.first_poll_seconds, SETTINGS.poll_seconds)
    assert result.instances[I1].seconds == pytest.approx(pause)
    assert result.instances[I2].seconds is None  # never sent
    found = result.to_dict()["instances"]
    assert found[I1]["seconds"] == pytest.approx(pause) and "seconds" not in found[I2]


def test_send_command_refused_is_undeliverable(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)
    ssm_stub.add_client_error("send_command", service_error_code="InvalidInstanceId")
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "canary-failed"
    assert result.instances[I1].outcome == "Undeliverable"
    assert "InvalidInstanceId" in result.instances[I1].detail


def test_no_instances_is_not_degraded(clients):
    _, _, _, ec2_stub = clients
    fleet(ec2_stub)
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "no-instances" and not result.degraded
    assert json.loads(json.dumps(result.to_dict()))["instances"] == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GREENLIGHT_EDGE_FLEET_TAG": "no-equals"}, "TAG_KEY=TAG_VALUE"),
        ({"GREENLIGHT_EDGE_FLEET_TAG": "k=v", "GREENLIGHT_EDGE_MAX_ERRORS": "lots"}, "MAX_ERRORS"),
        ({"GREENLIGHT_EDGE_FLEET_TAG": "k=v", "GREENLIGHT_EDGE_MAX_CONCURRENCY": "0"}, "at least"),
        ({"GREENLIGHT_EDGE_FLEET_TAG": "k=v"}, "GREENLIGHT_EDGE_SIGNING_KEY: required"),
        (
            {"GREENLIGHT_EDGE_FLEET_TAG": "k=v", "GREENLIGHT_EDGE_SIGNING_KEY": "alias/edge"},
            "GREENLIGHT_EDGE_SIGNING_KEY: expected a KMS key ARN",
        ),
    ],
)
def test_fleet_settings_reject_bad_values(env, message):
    with pytest.raises(SettingsError, match=message):
        FleetSettings.from_env({"GREENLIGHT_EDGE_DOCUMENT": "doc"} | env, "b", "k")


def test_no_document_means_no_fleet_reload():
    assert FleetSettings.from_env({}, "b", "k") is None


def test_the_signing_key_goes_to_every_instance_as_signing_key_arn():
    env = {
        "GREENLIGHT_EDGE_DOCUMENT": "doc",
        "GREENLIGHT_EDGE_FLEET_TAG": "k=v",
        "GREENLIGHT_EDGE_SIGNING_KEY": KEY_ARN,
    }
    settings = FleetSettings.from_env(env, "b", "k")
    assert settings is not None and settings.signing_key == KEY_ARN
