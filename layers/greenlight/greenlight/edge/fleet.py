"""Reloading the HAProxy fleet: the SSM apply document on every instance, canary first.

The instances are found by tag (running ones only). The first, by instance id, is the canary:
the document runs there alone, and only when it succeeds does it run on the rest (with the
configured ``MaxConcurrency`` and ``MaxErrors``). Each run is waited for with a deadline,
polling ``GetCommandInvocation`` per instance (``InvocationDoesNotExist`` right after
``SendCommand`` is normal and retried). Every instance ends with one outcome:

- ``Success``; ``Failed`` (the script refused or could not apply: its reason is kept);
- ``TimedOut`` (SSM's delivery or execution timeout); ``Undeliverable`` (the agent is not
  reachable, or the instance went away); ``Cancelled``;
- ``Incomplete``: still pending or running when our deadline came (the next reconcile finds
  the fleet behind and applies again);
- ``NotAttempted``: not tried, because the canary failed.

The fleet result is ``applied`` (every instance succeeded), ``canary-failed`` (the rest were
left alone, still on the previous config), ``incomplete`` (some instances are not on the new
config: the fleet is degraded) or ``no-instances``.

No wave outlives the deadline: each is sized by :func:`wave_timeouts` (SSM's delivery timeout
and the document's execution timeout together end before it), and one that cannot have
:data:`MIN_EXECUTION_SECONDS` on its instances is not sent (its instances: ``NotAttempted``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from ..deadline import Deadline
from ..edgepush import FleetStatus
from ..settings import FleetSettings

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef
    from mypy_boto3_ssm import SSMClient


class Outcome(StrEnum):
    """How the apply document ended on one instance."""

    SUCCESS = "Success"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    UNDELIVERABLE = "Undeliverable"
    CANCELLED = "Cancelled"
    INCOMPLETE = "Incomplete"
    NOT_ATTEMPTED = "NotAttempted"


SUCCESS, FAILED, TIMED_OUT = Outcome.SUCCESS, Outcome.FAILED, Outcome.TIMED_OUT
UNDELIVERABLE, CANCELLED = Outcome.UNDELIVERABLE, Outcome.CANCELLED
INCOMPLETE, NOT_ATTEMPTED = Outcome.INCOMPLETE, Outcome.NOT_ATTEMPTED
# GetCommandInvocation's StatusDetails -> our outcome; anything else is still in flight.
_FINAL = {
    "Success": SUCCESS,
    "Failed": FAILED,
    "Delivery Timed Out": TIMED_OUT,
    "Execution Timed Out": TIMED_OUT,
    "Undeliverable": UNDELIVERABLE,
    "Terminated": UNDELIVERABLE,
    "Cancelled": CANCELLED,
    "Canceled": CANCELLED,
}
_PENDING = {"Pending", "InProgress", "In Progress", "Delayed", "Cancelling"}
SSM_MIN_DELIVERY_SECONDS = 30  # SendCommand's TimeoutSeconds may not be less
MIN_EXECUTION_SECONDS = 30  # the least an apply is given on an instance
WAVE_MARGIN_SECONDS = 5  # to see the last outcomes once SSM's timeouts have ended the wave
MIN_WAVE_SECONDS = SSM_MIN_DELIVERY_SECONDS + MIN_EXECUTION_SECONDS + WAVE_MARGIN_SECONDS


def wave_timeouts(remaining: float, settings: FleetSettings) -> tuple[int, int] | None:
    """(delivery, execution) timeouts in seconds for a wave that must end within
    ``remaining`` seconds: the configured ones, shortened to fit (a command not delivered
    within its delivery timeout never runs, and the document stops at its execution timeout).
    None: too little time left to start one."""
    budget = int(remaining) - WAVE_MARGIN_SECONDS
    execution = min(settings.execution_timeout_seconds, budget - SSM_MIN_DELIVERY_SECONDS)
    if execution < MIN_EXECUTION_SECONDS:
        return None
    delivery = max(
        SSM_MIN_DELIVERY_SECONDS, min(settings.delivery_timeout_seconds, budget - execution)
    )
    return delivery, execution


class InstanceOutcome(NamedTuple):
    instance_id: str
    outcome: Outcome
    detail: str = ""
    command_id: str = ""
    seconds: float | None = None  # SendCommand to the outcome seen (None: never sent)

    def to_dict(self) -> dict[str, str | float]:
        out: dict[str, str | float] = {
            "outcome": self.outcome,
            "detail": self.detail,
            "command_id": self.command_id,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


@dataclass
class FleetResult:
    status: FleetStatus
    version_id: str
    sha256: str
    canary: str = ""
    instances: dict[str, InstanceOutcome] = field(default_factory=dict)
    staged: int = 0  # instances that fetched and checked the release before the switch

    @property
    def degraded(self) -> bool:
        return self.status not in (FleetStatus.APPLIED, FleetStatus.NO_INSTANCES)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.instances.values():
            out[item.outcome] = out.get(item.outcome, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version_id": self.version_id,
            "sha256": self.sha256,
            "canary": self.canary,
            "staged": self.staged,
            "counts": self.counts(),
            "instances": {i: o.to_dict() for i, o in sorted(self.instances.items())},
        }


def _script_reason(output: str) -> str:
    """The reason the apply script gives on its last line (a JSON object), if any."""
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return str(data.get("reason", ""))
    return ""


@dataclass
class FleetReloader:
    ssm: SSMClient
    ec2: EC2Client
    settings: FleetSettings
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def instances(self) -> list[str]:
        """Running instances that carry the fleet's tag, by instance id."""
        ids: list[str] = []
        paginator = self.ec2.get_paginator("describe_instances")
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{self.settings.tag_key}", "Values": [self.settings.tag_value]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        for page in paginator.paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                ids.extend(i["InstanceId"] for i in reservation.get("Instances", []))
        return sorted(set(ids))

    def apply(
        self, version_id: str, sha256: str, deadline: Deadline, staged: Collection[str] = ()
    ) -> FleetResult:
        """Stage on every instance, then switch canary first. ``staged``: instances known to
        hold this release already (a prospect staged it): when that is all of them, the stage
        round is skipped (an instance that lost it fetches it again when its turn comes)."""
        result = FleetResult(FleetStatus.APPLIED, version_id, sha256)
        instances = self.instances()
        if not instances:
            result.status = FleetStatus.NO_INSTANCES
            return result
        canary, rest = instances[0], instances[1:]
        result.canary = canary
        if rest and self.settings.stage_first and set(instances) <= set(staged):
            result.staged = len(instances)
        elif rest and self.settings.stage_first:
            # Every instance fetches, checks and keeps the release first, all at once: the
            # switch that follows (canary, then the rest) is a swap and a reload. An instance
            # that could not stage does the whole apply when its turn comes.
            result.staged = len(
                self._stage(instances, self.settings.key, version_id, sha256, deadline)
            )
        run = partial(self._run, version_id=version_id, sha256=sha256, deadline=deadline)
        result.instances.update(run([canary], max_concurrency="1", max_errors="0"))
        if result.instances[canary].outcome != SUCCESS:
            # A canary not sent (too little time left) says nothing against the config.
            unsent = result.instances[canary].outcome == NOT_ATTEMPTED
            result.status = FleetStatus.INCOMPLETE if unsent else FleetStatus.CANARY_FAILED
            for instance in rest:
                result.instances[instance] = InstanceOutcome(
                    instance,
                    NOT_ATTEMPTED,
                    "not sent: too little time left" if unsent else "the canary did not succeed",
                )
            return result
        if rest:
            s = self.settings
            result.instances.update(
                run(rest, max_concurrency=s.max_concurrency, max_errors=s.max_errors)
            )
        if any(o.outcome != SUCCESS for o in result.instances.values()):
            result.status = FleetStatus.INCOMPLETE
        return result

    def stage(self, key: str, version_id: str, sha256: str, deadline: Deadline) -> list[str]:
        """Every instance fetches, checks and keeps the release at ``key``/``version_id``
        without switching to it (the document's ``Mode=stage``); the instances that did. A
        later apply of a release with the same SHA-256, from any key, is a swap and a reload."""
        instances = self.instances()
        return self._stage(instances, key, version_id, sha256, deadline) if instances else []

    def _stage(
        self, instances: list[str], key: str, version_id: str, sha256: str, deadline: Deadline
    ) -> list[str]:
        staged = self._run(
            instances,
            max_concurrency="100%",
            max_errors="100%",
            version_id=version_id,
            sha256=sha256,
            deadline=deadline,
            mode="stage",
            key=key,
        )
        return sorted(i for i, o in staged.items() if o.outcome == SUCCESS)

    def _run(
        self,
        instances: list[str],
        *,
        max_concurrency: str,
        max_errors: str,
        version_id: str,
        sha256: str,
        deadline: Deadline,
        mode: str = "apply",
        key: str | None = None,
    ) -> dict[str, InstanceOutcome]:
        s = self.settings
        timeouts = wave_timeouts(deadline.remaining(), s)
        if timeouts is None:
            left = f"{deadline.remaining():.0f} s left, a wave needs {MIN_WAVE_SECONDS} s"
            return {i: InstanceOutcome(i, NOT_ATTEMPTED, f"not sent: {left}") for i in instances}
        delivery, execution = timeouts
        parameters = {
            "Bucket": [s.bucket],
            "Key": [key or s.key],
            "VersionId": [version_id],
            "Sha256": [sha256],
            "Region": [s.region],
            "ExecutionTimeoutSeconds": [str(execution)],
            "SigningKeyArn": [s.signing_key],
        }
        if mode != "apply":
            parameters["Mode"] = [mode]
        try:
            sent = self.ssm.send_command(
                DocumentName=s.document,
                InstanceIds=instances,
                Parameters=parameters,
                TimeoutSeconds=delivery,
                MaxConcurrency=max_concurrency,
                MaxErrors=max_errors,
                Comment=f"greenlight: {mode} {sha256[:12]}",
            )
        except ClientError as exc:
            detail = f"SendCommand: {exc.response['Error'].get('Code')}"
            return {i: InstanceOutcome(i, UNDELIVERABLE, detail) for i in instances}
        return self._wait(sent["Command"]["CommandId"], instances, deadline)

    def _wait(
        self, command_id: str, instances: list[str], deadline: Deadline
    ) -> dict[str, InstanceOutcome]:
        """Poll each instance's invocation until it ends, or the deadline comes. Each outcome
        carries the seconds from here (right after SendCommand) to the poll that saw it."""
        sent = self.clock()
        outcomes: dict[str, InstanceOutcome] = {}
        waiting = list(instances)
        # An apply takes a second or two: look early, then back off to poll_seconds.
        pause = min(self.settings.first_poll_seconds, self.settings.poll_seconds)
        while waiting:
            for instance in list(waiting):
                outcome = self._poll(command_id, instance)
                if outcome is not None:
                    outcomes[instance] = outcome._replace(seconds=self._since(sent))
                    waiting.remove(instance)
            if not waiting:
                break
            if deadline.remaining() < pause:
                for instance in waiting:
                    outcomes[instance] = InstanceOutcome(
                        instance,
                        INCOMPLETE,
                        "still running at the deadline",
                        command_id,
                        self._since(sent),
                    )
                break
            self.sleep(pause)
            pause = min(pause * 1.25, self.settings.poll_seconds)
        return outcomes

    def _since(self, start: float) -> float:
        return round(max(0.0, self.clock() - start), 3)

    def _poll(self, command_id: str, instance: str) -> InstanceOutcome | None:
        try:
            got = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance)
        except ClientError as exc:
            if exc.response["Error"].get("Code") == "InvocationDoesNotExist":
                return None  # SendCommand has not reached this instance's record yet
            raise
        details = got.get("StatusDetails") or got.get("Status", "")
        outcome = _FINAL.get(details)
        if outcome is None:
            if details in _PENDING or got.get("Status") in _PENDING:
                return None
            outcome = FAILED
        detail = details
        if outcome == FAILED:
            reason = _script_reason(got.get("StandardOutputContent", ""))
            code = got.get("ResponseCode")
            detail = f"exit {code}: {reason}" if reason else f"{details} (exit {code})"
        return InstanceOutcome(instance, outcome, detail, command_id)
