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
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..deadline import Deadline
from ..settings import FleetSettings

SUCCESS, FAILED, TIMED_OUT = "Success", "Failed", "TimedOut"
UNDELIVERABLE, CANCELLED, INCOMPLETE, NOT_ATTEMPTED = (
    "Undeliverable",
    "Cancelled",
    "Incomplete",
    "NotAttempted",
)
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


@dataclass(frozen=True)
class InstanceOutcome:
    instance_id: str
    outcome: str
    detail: str = ""
    command_id: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "outcome": self.outcome,
            "detail": self.detail,
            "command_id": self.command_id,
        }


@dataclass
class FleetResult:
    status: str
    version_id: str
    sha256: str
    canary: str = ""
    instances: dict[str, InstanceOutcome] = field(default_factory=dict)
    staged: int = 0  # instances that fetched and checked the release before the switch

    @property
    def degraded(self) -> bool:
        return self.status not in ("applied", "no-instances")

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
    ssm: Any
    ec2: Any
    settings: FleetSettings
    sleep: Callable[[float], None] = time.sleep

    def instances(self) -> list[str]:
        """Running instances that carry the fleet's tag, by instance id."""
        ids: list[str] = []
        paginator = self.ec2.get_paginator("describe_instances")
        filters = [
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
        result = FleetResult("applied", version_id, sha256)
        instances = self.instances()
        if not instances:
            result.status = "no-instances"
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
        result.instances.update(
            self._run(
                [canary],
                max_concurrency="1",
                max_errors="0",
                version_id=version_id,
                sha256=sha256,
                deadline=deadline,
            )
        )
        if result.instances[canary].outcome != SUCCESS:
            result.status = "canary-failed"
            for instance in rest:
                result.instances[instance] = InstanceOutcome(
                    instance, NOT_ATTEMPTED, "the canary did not succeed"
                )
            return result
        if rest:
            result.instances.update(
                self._run(
                    rest,
                    max_concurrency=self.settings.max_concurrency,
                    max_errors=self.settings.max_errors,
                    version_id=version_id,
                    sha256=sha256,
                    deadline=deadline,
                )
            )
        if any(o.outcome != SUCCESS for o in result.instances.values()):
            result.status = "incomplete"
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
        parameters = {
            "Bucket": [s.bucket],
            "Key": [key or s.key],
            "VersionId": [version_id],
            "Sha256": [sha256],
            "Region": [s.region],
            "ExecutionTimeoutSeconds": [str(s.execution_timeout_seconds)],
        }
        if mode != "apply":
            parameters["Mode"] = [mode]
        try:
            sent = self.ssm.send_command(
                DocumentName=s.document,
                InstanceIds=instances,
                Parameters=parameters,
                TimeoutSeconds=s.delivery_timeout_seconds,
                MaxConcurrency=max_concurrency,
                MaxErrors=max_errors,
                Comment=f"greenlight: {mode} {sha256[:12]}",
            )
        except ClientError as exc:
            detail = f"SendCommand: {exc.response['Error'].get('Code')}"
            return {i: InstanceOutcome(i, UNDELIVERABLE, detail) for i in instances}
        command_id = sent["Command"]["CommandId"]
        outcomes: dict[str, InstanceOutcome] = {}
        waiting = list(instances)
        # An apply takes a second or two: look early, then back off to poll_seconds.
        pause = min(s.first_poll_seconds, s.poll_seconds)
        while waiting:
            for instance in list(waiting):
                outcome = self._poll(command_id, instance)
                if outcome is not None:
                    outcomes[instance] = outcome
                    waiting.remove(instance)
            if not waiting:
                break
            if deadline.remaining() < pause:
                for instance in waiting:
                    outcomes[instance] = InstanceOutcome(
                        instance, INCOMPLETE, "still running at the deadline", command_id
                    )
                break
            self.sleep(pause)
            pause = min(pause * 1.25, s.poll_seconds)
        return outcomes

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


FLEET_PK = "edge#fleet"


@dataclass
class FleetLog:
    """Each fleet reload in the rollouts table (``pk = edge#fleet``): one ``reload#<time>`` item
    per run, and ``state``, the latest, which says whether the fleet is degraded."""

    client: Any
    table: str
    clock: Callable[[], float] = time.time

    def record(self, result: FleetResult, why: str) -> None:
        now = self.clock()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        body = {
            "status": {"S": result.status},
            "degraded": {"BOOL": result.degraded},
            "sha256": {"S": result.sha256},
            "version_id": {"S": result.version_id},
            "why": {"S": why},
            "at": {"N": str(int(now))},
            "instances": {"S": json.dumps(result.to_dict()["instances"], sort_keys=True)},
        }
        self.client.put_item(
            TableName=self.table,
            Item={"pk": {"S": FLEET_PK}, "sk": {"S": f"reload#{stamp}#{result.sha256[:12]}"}}
            | body,
        )
        self.client.put_item(
            TableName=self.table, Item={"pk": {"S": FLEET_PK}, "sk": {"S": "state"}} | body
        )

    def record_prospect(self, sha256: str, instances: list[str]) -> None:
        """The release a prospect staged, and on which instances (item ``prospect``)."""
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": FLEET_PK},
                "sk": {"S": "prospect"},
                "sha256": {"S": sha256},
                "instances": {"S": json.dumps(sorted(instances))},
                "at": {"N": str(int(self.clock()))},
            },
        )

    def staged(self, sha256: str) -> list[str]:
        """The instances the last prospect staged ``sha256`` on (none if it staged another)."""
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": FLEET_PK}, "sk": {"S": "prospect"}},
            ConsistentRead=True,
        ).get("Item")
        if not item or item["sha256"]["S"] != sha256:
            return []
        instances: list[str] = json.loads(item["instances"]["S"])
        return instances

    def state(self) -> dict[str, Any] | None:
        """The latest reload: status, degraded, sha256, version_id, why, at, instances."""
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": FLEET_PK}, "sk": {"S": "state"}},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return None
        return {
            "status": item["status"]["S"],
            "degraded": item["degraded"]["BOOL"],
            "sha256": item["sha256"]["S"],
            "version_id": item["version_id"]["S"],
            "why": item["why"]["S"],
            "at": int(item["at"]["N"]),
            "instances": json.loads(item["instances"]["S"]),
        }
