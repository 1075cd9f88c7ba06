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
    """A SendCommand of the document: ``Mode=switch`` (every push) unless ``mode`` says."""
    mode = {"Mode": "switch"} | mode
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


# ---------------------------------------------------------------- switch, check, promotion


def switched(ssm_stub: Stubber, command_id: str, instance: str, how: str, reason: str) -> None:
    """The document succeeded on ``instance`` and said how (its last line)."""
    out = f'log\n{{"status":"{how}","reason":"{reason}","sha256":"{SHA}"}}\n'
    invocation(ssm_stub, command_id, instance, "Success", StandardOutputContent=out)


def test_a_map_only_push_switches_every_instance_at_once_and_reports_a_reload_instead(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I2, I1, I3)
    # One wave, every instance at once: no stage round, no canary.
    sent(ssm_stub, C1, [I1, I2, I3], "100%", "100%")
    switched(ssm_stub, C1, I1, "switched", "runtime: hosts.map, 2 entries changed")
    not_yet(ssm_stub, C1, I2)
    switched(ssm_stub, C1, I3, "switched", "runtime: hosts.map, 2 entries changed")
    switched(ssm_stub, C1, I2, "applied", "reloaded: the runtime switch failed: no master")
    clock = Clock()
    staging = SETTINGS.__class__(**{**SETTINGS.__dict__, "stage_first": True})
    result = reloader(clients, clock, staging).apply(VERSION, SHA, deadline(clock), map_only=True)
    assert result.status == "applied" and not result.degraded  # a reload is still a success
    assert result.waves == "all-at-once" and result.canary == "" and result.staged == 0
    assert result.instances[I1].how == "switched"
    assert result.instances[I1].detail == "switched: runtime: hosts.map, 2 entries changed"
    assert result.instances[I2].how == "reloaded"
    assert result.instances[I2].detail == (
        "applied: reloaded: the runtime switch failed: no master"
    )
    out = result.to_dict()
    assert (out["switched"], out["reloaded"], out["unchanged"]) == (2, 1, 0)
    assert out["instances"][I2]["how"] == "reloaded" and "switch" in out["seconds"]


def test_a_structural_push_still_goes_canary_first_with_mode_switch(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)
    sent(ssm_stub, C1, [I1], "1", "0")  # Mode=switch: the instance reloads (structural)
    switched(ssm_stub, C1, I1, "applied", "reloaded: haproxy.cfg differs")
    sent(ssm_stub, C2, [I2], "50%", "1")
    switched(ssm_stub, C2, I2, "applied", "reloaded: haproxy.cfg differs")
    clock = Clock()
    result = reloader(clients, clock).apply(VERSION, SHA, deadline(clock))
    assert result.status == "applied" and result.waves == "canary-first" and result.canary == I1
    assert result.hows() == {"switched": 0, "reloaded": 2, "unchanged": 0}
    assert set(result.seconds) == {"canary", "rest"}


def checked_sent(ssm_stub: Stubber, command_id: str, instances: list[str], up: int) -> None:
    """The check round: read-only (no version, no hash), every instance at once, a delivery
    timeout of SSM's minimum and an execution timeout of the wait and 15 s."""
    ssm_stub.add_response(
        "send_command",
        {"Command": {"CommandId": command_id}},
        {
            "DocumentName": "stack-EdgeApplyConfig",
            "InstanceIds": instances,
            "Parameters": {
                "Bucket": ["greenlight-bucket"],
                "Key": ["haproxy/config.tar.gz"],
                "Region": ["eu-west-1"],
                "ExecutionTimeoutSeconds": [str(up + 15)],
                "SigningKeyArn": [KEY_ARN],
                "Mode": ["check"],
                "Backends": ["shop-green"],
                "UpTimeoutSeconds": [str(up)],
            },
            "TimeoutSeconds": 30,
            "MaxConcurrency": "100%",
            "MaxErrors": "100%",
            "Comment": "greenlight: check shop-green",
        },
    )


def test_a_check_round_not_up_on_one_instance_is_not_up_with_its_reason(clients):
    from greenlight.edge.fleet import FleetResult

    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)
    checked_sent(ssm_stub, C1, [I1, I2], up=20)
    invocation(ssm_stub, C1, I1, "Success", StandardOutputContent='{"status":"up","reason":""}\n')
    down = "shop-green: 1 of 2 servers not UP (shop-green/n2: DOWN, L4CON)"
    out = f'{{"status":"not-up","reason":"{down}"}}\n'
    invocation(ssm_stub, C1, I2, "Failed", ResponseCode=9, StandardOutputContent=out)
    clock = Clock()
    checked = reloader(clients, clock).check(["shop-green"], deadline(clock))
    assert not checked.up and checked.up_timeout_seconds == 20
    assert checked.not_up() == {I2: down}  # the script's reason, as it is
    result = FleetResult.not_up("b" * 64, checked)
    assert result.status == "not-up" and not result.degraded  # nothing changed
    assert result.version_id == "" and result.counts() == {"NotAttempted": 2}
    assert result.instances[I2].detail == f"not switched: {down}"
    assert result.instances[I1].detail == f"not switched: UP here, not on {I2}"
    out = json.loads(json.dumps(result.to_dict()))
    assert out["checked"]["instances"][I2]["detail"] == down and not out["checked"]["up"]
    # Per instance, the backends it did not see UP: a field of its own (the gate reads it).
    assert out["not_up"] == {I2: ["shop-green"]} == out["checked"]["not_up"]


def test_a_promotion_switches_the_instances_checked_while_they_see_the_candidate_up(clients):
    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)  # looked up once, by the check round
    checked_sent(ssm_stub, C1, [I1, I2], up=20)
    for instance in (I1, I2):
        invocation(ssm_stub, C1, instance, "Success", StandardOutputContent='{"status":"up"}')
    sent(ssm_stub, C2, [I1, I2], "100%", "100%", Backends="shop-green", UpTimeoutSeconds="0")
    for instance in (I1, I2):
        switched(ssm_stub, C2, instance, "switched", "runtime: hosts.map")
    clock = Clock()
    fleet_reloader = reloader(clients, clock)
    checked = fleet_reloader.check(["shop-green"], deadline(clock))
    assert checked.up
    result = fleet_reloader.apply(
        VERSION,
        SHA,
        deadline(clock),
        map_only=True,
        backends=["shop-green"],
        instances=sorted(checked.instances),
        checked=checked,
    )
    assert result.status == "applied" and result.hows()["switched"] == 2
    assert result.to_dict()["checked"]["up"] is True and "check" in result.seconds


def test_the_check_waits_as_configured_shortened_to_leave_a_switch_wave():
    from greenlight.edge.fleet import CHECK_MARGIN_SECONDS, up_timeout

    assert up_timeout(295, SETTINGS) == 20  # the configured up_wait_seconds
    least = MIN_WAVE_SECONDS + CHECK_MARGIN_SECONDS
    assert up_timeout(least + 7, SETTINGS) == 7  # shortened
    assert up_timeout(least, SETTINGS) == 0  # one look, no wait
    assert up_timeout(least - 1, SETTINGS) is None  # no check and switch fit: none sent


def test_a_check_with_too_little_time_left_sends_nothing_and_is_not_up(clients):
    _, _, _, ec2_stub = clients
    fleet(ec2_stub, I1)
    clock = Clock()
    checked = reloader(clients, clock).check(["shop-green"], deadline(clock, seconds=60))
    assert not checked.up  # no SendCommand (the stubber fails on an unexpected call)
    assert "not checked: 60 s left" in checked.not_up()[I1]
    # A reason that names no backend is labelled with the round's; all of them not UP.
    assert checked.not_up()[I1].startswith("shop-green: not checked: 60 s left")
    assert checked.not_up_backends() == {I1: ["shop-green"]}


def test_the_check_round_wait_is_a_setting_named_when_out_of_range():
    env = {
        "GREENLIGHT_EDGE_DOCUMENT": "doc",
        "GREENLIGHT_EDGE_FLEET_TAG": "k=v",
        "GREENLIGHT_EDGE_SIGNING_KEY": KEY_ARN,
    }
    assert FleetSettings.from_env(env, "b", "k").up_wait_seconds == 20
    wait = env | {"GREENLIGHT_EDGE_UP_WAIT_SECONDS": "5"}
    assert FleetSettings.from_env(wait, "b", "k").up_wait_seconds == 5
    with pytest.raises(SettingsError, match="GREENLIGHT_EDGE_UP_WAIT_SECONDS=500"):
        FleetSettings.from_env(env | {"GREENLIGHT_EDGE_UP_WAIT_SECONDS": "500"}, "b", "k")


def test_with_the_runtime_switch_off_a_map_only_push_reloads_canary_first(clients):
    """GREENLIGHT_EDGE_RUNTIME_SWITCH=false: every push is the reload switch (Mode=apply,
    canary then the rest), the control bench_flips.py measures the runtime switch against."""
    from dataclasses import replace

    _, _, ssm_stub, ec2_stub = clients
    fleet(ec2_stub, I1, I2)
    sent(ssm_stub, C1, [I1], "1", "0", Mode="apply")
    switched(ssm_stub, C1, I1, "applied", "reloaded")
    sent(ssm_stub, C2, [I2], "50%", "1", Mode="apply")
    switched(ssm_stub, C2, I2, "applied", "reloaded")
    clock = Clock()
    settings = replace(SETTINGS, runtime_switch=False)
    result = reloader(clients, clock, settings).apply(
        VERSION, SHA, deadline(clock), map_only=True, backends=["shop-green"]
    )
    assert result.status == "applied" and result.waves == "canary-first"
    assert result.hows() == {"switched": 0, "reloaded": 2, "unchanged": 0}


def test_the_poll_cadence_and_the_runtime_switch_are_settings():
    env = {
        "GREENLIGHT_EDGE_DOCUMENT": "doc",
        "GREENLIGHT_EDGE_FLEET_TAG": "k=v",
        "GREENLIGHT_EDGE_SIGNING_KEY": KEY_ARN,
    }
    default = FleetSettings.from_env(env, "b", "k")
    assert (default.first_poll_seconds, default.poll_seconds, default.runtime_switch) == (
        0.1,
        0.5,
        True,
    )
    fast = env | {
        "GREENLIGHT_EDGE_FIRST_POLL_MILLISECONDS": "20",
        "GREENLIGHT_EDGE_POLL_MILLISECONDS": "50",
        "GREENLIGHT_EDGE_RUNTIME_SWITCH": "false",
    }
    got = FleetSettings.from_env(fast, "b", "k")
    assert (got.first_poll_seconds, got.poll_seconds, got.runtime_switch) == (0.02, 0.05, False)
    with pytest.raises(SettingsError, match="GREENLIGHT_EDGE_POLL_MILLISECONDS=5"):
        FleetSettings.from_env(env | {"GREENLIGHT_EDGE_POLL_MILLISECONDS": "5"}, "b", "k")
    with pytest.raises(SettingsError, match="GREENLIGHT_EDGE_RUNTIME_SWITCH='maybe'"):
        FleetSettings.from_env(env | {"GREENLIGHT_EDGE_RUNTIME_SWITCH": "maybe"}, "b", "k")


def test_check_rounds_run_at_the_same_time_merge_into_one():
    from greenlight.edge.fleet import CheckRound, InstanceOutcome

    first = CheckRound(["shop-green"], 20, seconds=1.5)
    first.instances = {
        "i-1": InstanceOutcome("i-1", "Success", "up: shop-green"),
        "i-2": InstanceOutcome("i-2", "Failed", "shop-green: 1 of 2 servers not UP"),
    }
    second = CheckRound(["blog-blue", "wiki-green"], 10, seconds=0.5)
    second.instances = {
        "i-1": InstanceOutcome("i-1", "Failed", "blog-blue: no servers"),
        "i-2": InstanceOutcome("i-2", "TimedOut", ""),  # names no backend: all of its round's
    }
    merged = CheckRound.merge([first, second])
    assert merged.backends == ["shop-green", "blog-blue", "wiki-green"]
    assert merged.up_timeout_seconds == 20
    assert merged.seconds == 1.5 and not merged.up  # they overlap: the longest round's
    assert merged.not_up() == {
        "i-1": "blog-blue: no servers",
        "i-2": "shop-green: 1 of 2 servers not UP; blog-blue, wiki-green: TimedOut",
    }
    assert merged.not_up_backends() == {
        "i-1": ["blog-blue"],
        "i-2": ["shop-green", "blog-blue", "wiki-green"],
    }
    # A merged reason is labelled once: "a, b: why" counts as naming a and b.
    up = CheckRound(["shop-green"], 20, {i: first.instances["i-1"] for i in ("i-1", "i-2")})
    only = CheckRound.merge([second, up])
    assert only.not_up()["i-2"] == "blog-blue, wiki-green: TimedOut"
    assert only.not_up_backends()["i-2"] == ["blog-blue", "wiki-green"]
    second.instances = {i: InstanceOutcome(i, "Success") for i in ("i-1", "i-2")}
    first.instances["i-2"] = InstanceOutcome("i-2", "Success")
    assert CheckRound.merge([first, second]).up
    assert CheckRound.merge([first]) is first


def test_an_instance_one_merged_round_did_not_ask_is_not_up_for_that_rounds_backends():
    from greenlight.edge.fleet import CheckRound, InstanceOutcome

    first = CheckRound(["shop-green"], 20, seconds=1.0)
    first.instances = {i: InstanceOutcome(i, "Success") for i in ("i-1", "i-2")}
    second = CheckRound(["blog-blue"], 20, seconds=1.0)  # i-2 launched after it looked
    second.instances = {"i-1": InstanceOutcome("i-1", "Success")}
    for rounds in ([first, second], [second, first]):
        merged = CheckRound.merge(rounds)
        assert not merged.up
        assert merged.not_up() == {
            "i-2": "blog-blue: not checked (not among the instances this round found)"
        }
        assert merged.not_up_backends() == {"i-2": ["blog-blue"]}
        assert merged.instances["i-1"].outcome == "Success"
    # A round that found no instance at all checked none of them.
    second.instances = {}
    assert CheckRound.merge([first, second]).not_up_backends() == {
        "i-1": ["blog-blue"],
        "i-2": ["blog-blue"],
    }
