"""Switching the HAProxy fleet: the SSM apply document (``Mode=switch``) on every instance.

The instances are found by tag (running ones only). Each instance decides how it takes a
release: a change of hosts.map alone is switched through HAProxy's runtime API (``switched``,
no reload), anything else is reloaded (``applied``, "reloaded: ..."). The function predicts
which (``map_only``: edge/delta.py on the new files and the served ones):

- map-only: one wave on every instance at once (``MaxConcurrency 100%``, ``MaxErrors 100%``);
  an instance that reloaded instead is reported (its ``how`` and the script's reason);
- structural: the first instance, by instance id, is the canary: the document runs there alone,
  and only when it succeeds does it run on the rest (with the configured ``MaxConcurrency`` and
  ``MaxErrors``).

A push that moves live hosts onto a backend (a promotion's candidate among them: entry.py)
first runs a ``check`` round (:meth:`FleetReloader.check`, ``Mode=check``): every
instance at once, read-only, waits at most ``UpTimeoutSeconds`` for every server of the named
backends to be UP in its running HAProxy. Each run is waited for with a deadline,
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
config: the fleet is degraded), ``no-instances``, or ``not-up`` (a check round did not see the
backends UP everywhere: nothing was published or switched; ``not_up`` names, per instance, the
backends it did not see UP, and each instance's reason is labelled by backend).

No wave outlives the deadline: each is sized by :func:`wave_timeouts` (SSM's delivery timeout
and the document's execution timeout together end before it), and one that cannot have
:data:`MIN_EXECUTION_SECONDS` on its instances is not sent (its instances: ``NotAttempted``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
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
# A check round leaves a switch wave (MIN_WAVE_SECONDS) and this (the publish between) after it.
CHECK_MARGIN_SECONDS = 5
# A check's poll ends this long after its UpTimeoutSeconds: delivery and the script's own start.
CHECK_SLACK_SECONDS = 15
# How an instance took a release, from the script's status.
HOW = {"switched": "switched", "applied": "reloaded", "unchanged": "unchanged"}


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


def up_timeout(remaining: float, settings: FleetSettings) -> int | None:
    """A check round's ``UpTimeoutSeconds`` with ``remaining`` seconds left: the configured
    ``up_wait_seconds``, shortened so that a switch wave still fits after it. None: too little
    time left to check and then switch."""
    budget = int(remaining) - MIN_WAVE_SECONDS - CHECK_MARGIN_SECONDS
    if budget < 0:
        return None
    return min(settings.up_wait_seconds, budget)


class InstanceOutcome(NamedTuple):
    instance_id: str
    outcome: Outcome
    detail: str = ""
    command_id: str = ""
    seconds: float | None = None  # SendCommand to the outcome seen (None: never sent)
    how: str = ""  # a success: switched | reloaded | unchanged (the script's status)

    def to_dict(self) -> dict[str, str | float]:
        out: dict[str, str | float] = {
            "outcome": self.outcome,
            "detail": self.detail,
            "command_id": self.command_id,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.how:
            out["how"] = self.how
        return out


def _clauses(detail: str) -> list[str]:
    return [c.strip() for c in detail.split(";") if c.strip()]


def _named(backends: Sequence[str], detail: str) -> list[str]:
    """The backends among ``backends`` that ``detail`` has a clause for: ``<backend>: ...``
    (the check script's not-UP reason, one clause per backend, joined by ``; ``) or
    ``<backend>, <backend>: ...`` (a reason :meth:`CheckRound.reason` labelled)."""
    named: set[str] = set()
    for clause in _clauses(detail):
        label = clause.split(": ", 1)[0] if ": " in clause else ""
        names = label.split(", ")
        if label and all(n in backends for n in names):
            named.update(names)
    return [b for b in backends if b in named]


_NOT_ASKED = "not checked (not among the instances this round found)"


@dataclass
class CheckRound:
    """A check round: whether every instance sees the servers of ``backends`` UP."""

    backends: list[str]
    up_timeout_seconds: int
    instances: dict[str, InstanceOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    # Per instance, the backends it did not see UP; None: from the outcomes (merge sets it).
    down: dict[str, list[str]] | None = None

    @classmethod
    def merge(cls, rounds: Sequence[CheckRound]) -> CheckRound:
        """Rounds that ran at the same time (a promotion's candidate, started ahead in a
        thread, beside what else the map moves live) as one: their backends, the longest wait,
        the longest round's seconds (they overlap). An instance is UP only when every round
        asked it and saw it UP: one that a round did not ask (it was not among the instances
        that round found) is not checked for that round's backends, so not UP. Its reason: the
        rounds' reasons, each labelled by backend."""
        if len(rounds) == 1:
            return rounds[0]
        merged = cls(
            [b for r in rounds for b in r.backends],
            max(r.up_timeout_seconds for r in rounds),
            seconds=max(r.seconds for r in rounds),
        )
        down_by_instance: dict[str, list[str]] = {}
        merged.down = down_by_instance
        for instance in sorted({i for r in rounds for i in r.instances}):
            failed: list[InstanceOutcome] = []
            down: list[str] = []
            for r in rounds:
                seen = r.instances.get(instance)
                if seen is None:
                    seen = InstanceOutcome(instance, NOT_ATTEMPTED, _NOT_ASKED)
                if seen.outcome != SUCCESS:
                    failed.append(seen._replace(detail=r.reason(seen)))
                    down.extend(r.backends_down(seen))
            if not failed:
                merged.instances[instance] = rounds[-1].instances[instance]
                continue
            detail = "; ".join(o.detail for o in failed)
            merged.instances[instance] = failed[0]._replace(detail=detail)
            down_by_instance[instance] = down
        return merged

    def backends_down(self, outcome: InstanceOutcome) -> list[str]:
        """The backends of this round that ``outcome`` did not see UP: those its reason names,
        or every one when it names none (HAProxy not running, not delivered, not in time...)."""
        if outcome.outcome == SUCCESS:
            return []
        return _named(self.backends, outcome.detail) or list(self.backends)

    def reason(self, outcome: InstanceOutcome) -> str:
        """``outcome``'s reason, labelled by backend: as the script gives it when it names
        them, else prefixed with this round's backends."""
        detail = outcome.detail or outcome.outcome
        if _named(self.backends, detail):
            return detail
        return f"{', '.join(self.backends)}: {detail}"

    @property
    def up(self) -> bool:
        return all(o.outcome == SUCCESS for o in self.instances.values())

    def not_up(self) -> dict[str, str]:
        """Each instance that did not see them UP, with its reason (labelled by backend)."""
        return {
            i: self.reason(o) for i, o in sorted(self.instances.items()) if o.outcome != SUCCESS
        }

    def not_up_backends(self) -> dict[str, list[str]]:
        """Each instance that did not see them UP, with the backends it did not see UP."""
        if self.down is not None:
            return {i: list(b) for i, b in sorted(self.down.items()) if b}
        return {
            i: self.backends_down(o)
            for i, o in sorted(self.instances.items())
            if o.outcome != SUCCESS
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "backends": self.backends,
            "up_timeout_seconds": self.up_timeout_seconds,
            "seconds": self.seconds,
            "instances": {i: o.to_dict() for i, o in sorted(self.instances.items())},
            "not_up": self.not_up_backends(),
        }


@dataclass
class FleetResult:
    status: FleetStatus
    version_id: str
    sha256: str
    canary: str = ""
    instances: dict[str, InstanceOutcome] = field(default_factory=dict)
    staged: int = 0  # instances that fetched and checked the release before the switch
    waves: str = "canary-first"  # or "all-at-once" (a push predicted map-only)
    checked: CheckRound | None = None  # the check round of the backends going live
    seconds: dict[str, float] = field(default_factory=dict)  # per round: check, stage, ...

    @classmethod
    def not_up(cls, sha256: str, checked: CheckRound) -> FleetResult:
        """A push whose check round did not see its backends UP everywhere: nothing
        published, no instance switched (``NotAttempted``, with what its check saw)."""
        result = cls(FleetStatus.NOT_UP, "", sha256, waves="none", checked=checked)
        result.seconds["check"] = checked.seconds
        why = checked.not_up()
        for instance in sorted(checked.instances):
            seen = why.get(instance, f"UP here, not on {', '.join(sorted(why))}")
            result.instances[instance] = InstanceOutcome(
                instance, NOT_ATTEMPTED, f"not switched: {seen}"
            )
        return result

    @property
    def degraded(self) -> bool:
        # not-up changed nothing: the fleet is as it was.
        return self.status not in (
            FleetStatus.APPLIED,
            FleetStatus.NO_INSTANCES,
            FleetStatus.NOT_UP,
        )

    def hows(self) -> dict[str, int]:
        """How many instances took the release each way (switched, reloaded, unchanged)."""
        out = {"switched": 0, "reloaded": 0, "unchanged": 0}
        for item in self.instances.values():
            if item.outcome == SUCCESS and item.how in out:
                out[item.how] += 1
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.instances.values():
            out[item.outcome] = out.get(item.outcome, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "status": self.status,
                "version_id": self.version_id,
                "sha256": self.sha256,
                "canary": self.canary,
                "staged": self.staged,
                "waves": self.waves,
                "counts": self.counts(),
                **self.hows(),
                "seconds": self.seconds,
                "instances": {i: o.to_dict() for i, o in sorted(self.instances.items())},
            }
            | ({"checked": self.checked.to_dict()} if self.checked is not None else {})
            | self._not_up()
        )

    def _not_up(self) -> dict[str, Any]:
        """``not-up``: per instance, the backends it did not see UP (``checked.not_up``)."""
        if self.status != FleetStatus.NOT_UP or self.checked is None:
            return {}
        return {"not_up": self.checked.not_up_backends()}


def _script_result(output: str) -> tuple[str, str]:
    """(status, reason) the apply script gives on its last line (a JSON object), if any."""
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return str(data.get("status", "")), str(data.get("reason", ""))
    return "", ""


def _script_reason(output: str) -> str:
    """The reason the apply script gives on its last line (a JSON object), if any."""
    return _script_result(output)[1]


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
        self,
        version_id: str,
        sha256: str,
        deadline: Deadline,
        staged: Callable[[], Collection[str]] = tuple,
        *,
        map_only: bool = False,
        backends: Sequence[str] = (),
        instances: Sequence[str] | None = None,
        checked: CheckRound | None = None,
    ) -> FleetResult:
        """Switch every instance to the release (``Mode=switch``). ``map_only`` (predicted: a
        change of hosts.map alone): one wave on every instance at once. Otherwise stage on
        every instance, then canary first. ``staged``: the instances known to hold this
        release already (a prospect staged it), asked only when there is a stage round to
        skip: when that is all of them, it is skipped (an instance that lost it fetches it
        again when its turn comes). ``backends`` (a
        promotion): an instance switches only while it sees their servers UP. ``instances``:
        the fleet as a check round (``checked``, kept in the result) found it."""
        result = FleetResult(FleetStatus.APPLIED, version_id, sha256, checked=checked)
        if checked is not None:
            result.seconds["check"] = checked.seconds
        instances = sorted(instances) if instances is not None else self.instances()
        if not instances:
            result.status = FleetStatus.NO_INSTANCES
            return result
        runtime = self.settings.runtime_switch  # off: every instance reloads (Mode=apply)
        up_first = {"Backends": ",".join(backends), "UpTimeoutSeconds": "0"} if backends else {}
        run = partial(
            self._timed,
            result,
            version_id=version_id,
            sha256=sha256,
            deadline=deadline,
            mode="switch" if runtime else "apply",
            extra=up_first if runtime else {},
        )
        if map_only and runtime:
            result.waves = "all-at-once"
            run("switch", instances, max_concurrency="100%", max_errors="100%")
            if any(o.outcome != SUCCESS for o in result.instances.values()):
                result.status = FleetStatus.INCOMPLETE
            return result
        if len(instances) > 1 and self.settings.stage_first:
            self._stage_round(result, instances, staged(), deadline)
        return self._canary_first(result, instances, run)

    def _canary_first(
        self, result: FleetResult, instances: list[str], run: Callable[..., None]
    ) -> FleetResult:
        """The first instance alone, then the rest only when it succeeded."""
        canary, rest = instances[0], instances[1:]
        result.canary = canary
        run("canary", [canary], max_concurrency="1", max_errors="0")
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
            run("rest", rest, max_concurrency=s.max_concurrency, max_errors=s.max_errors)
        if any(o.outcome != SUCCESS for o in result.instances.values()):
            result.status = FleetStatus.INCOMPLETE
        return result

    def _stage_round(
        self,
        result: FleetResult,
        instances: list[str],
        staged: Collection[str],
        deadline: Deadline,
    ) -> None:
        """Every instance fetches, checks and keeps the release first, all at once: the switch
        that follows (canary, then the rest) is a swap and a reload. An instance that could not
        stage does the whole apply when its turn comes. None when a prospect staged it on all."""
        if set(instances) <= set(staged):
            result.staged = len(instances)
            return
        started = self.clock()
        key, version_id, sha256 = self.settings.key, result.version_id, result.sha256
        result.staged = len(self._stage(instances, key, version_id, sha256, deadline))
        result.seconds["stage"] = self._since(started)

    def _timed(self, result: FleetResult, name: str, instances: list[str], **run: Any) -> None:
        """One wave into ``result``, its seconds (SendCommand to the last outcome seen) too."""
        started = self.clock()
        result.instances.update(self._run(instances, **run))
        result.seconds[name] = self._since(started)

    def check(self, backends: Sequence[str], deadline: Deadline) -> CheckRound:
        """Every instance at once, read-only (``Mode=check``): does its running HAProxy see
        every server of ``backends`` UP, within ``UpTimeoutSeconds`` (:func:`up_timeout`)?
        Each instance's outcome: ``Success`` (UP), or why not (the script's reason)."""
        instances = self.instances()
        up = up_timeout(deadline.remaining(), self.settings)
        checked = CheckRound(list(backends), up or 0)
        if not instances:
            return checked
        if up is None:
            need = MIN_WAVE_SECONDS + CHECK_MARGIN_SECONDS
            left = f"not checked: {deadline.remaining():.0f} s left, a check and a switch need"
            checked.instances = {
                i: InstanceOutcome(i, NOT_ATTEMPTED, f"{left} {need} s") for i in instances
            }
            return checked
        # The poll ends in time for the switch wave after it.
        window = min(up + CHECK_SLACK_SECONDS, deadline.remaining() - MIN_WAVE_SECONDS)
        started = self.clock()
        checked.instances = self._run(
            instances,
            max_concurrency="100%",
            max_errors="100%",
            deadline=deadline.sooner(window),
            mode="check",
            extra={"Backends": ",".join(backends), "UpTimeoutSeconds": str(up)},
            timeouts=(SSM_MIN_DELIVERY_SECONDS, up + CHECK_SLACK_SECONDS),
        )
        checked.seconds = self._since(started)
        return checked

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
        deadline: Deadline,
        mode: str,
        version_id: str = "",
        sha256: str = "",
        key: str | None = None,
        extra: dict[str, str] | None = None,
        timeouts: tuple[int, int] | None = None,
    ) -> dict[str, InstanceOutcome]:
        """One SendCommand of the document on ``instances``, waited for. ``timeouts``:
        (delivery, execution); default: :func:`wave_timeouts` (a wave that changes the
        config ends before the deadline)."""
        s = self.settings
        timeouts = timeouts or wave_timeouts(deadline.remaining(), s)
        if timeouts is None:
            left = f"{deadline.remaining():.0f} s left, a wave needs {MIN_WAVE_SECONDS} s"
            return {i: InstanceOutcome(i, NOT_ATTEMPTED, f"not sent: {left}") for i in instances}
        delivery, execution = timeouts
        parameters = {"Bucket": [s.bucket], "Key": [key or s.key]}
        if version_id:  # a check reads no release
            parameters |= {"VersionId": [version_id], "Sha256": [sha256]}
        parameters |= {
            "Region": [s.region],
            "ExecutionTimeoutSeconds": [str(execution)],
            "SigningKeyArn": [s.signing_key],
        }
        parameters["Mode"] = [mode]
        parameters |= {k: [v] for k, v in (extra or {}).items()}
        what = sha256[:12] or (extra or {}).get("Backends", "")
        try:
            sent = self.ssm.send_command(
                DocumentName=s.document,
                InstanceIds=instances,
                Parameters=parameters,
                TimeoutSeconds=delivery,
                MaxConcurrency=max_concurrency,
                MaxErrors=max_errors,
                Comment=f"greenlight: {mode} {what}"[:100],
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
        detail, how = details, ""
        status, reason = _script_result(got.get("StandardOutputContent", ""))
        if outcome == FAILED:
            code = got.get("ResponseCode")
            if status == "not-up" and reason:  # a check (or a switch) that did not see them UP
                detail = reason
            else:
                detail = f"exit {code}: {reason}" if reason else f"{details} (exit {code})"
        elif outcome == SUCCESS and status:
            # How it took the release: "switched: runtime ...", "applied: reloaded: ...".
            detail, how = (f"{status}: {reason}" if reason else status), HOW.get(status, "")
        return InstanceOutcome(instance, outcome, detail, command_id, how=how)

    def run_document(
        self, document: str, parameters: dict[str, str], instances: list[str], deadline: Deadline
    ) -> tuple[dict[str, InstanceOutcome], dict[str, str]]:
        """A read-only document (the stats document: edge/counters.py) on ``instances`` all at
        once, waited for until ``deadline``: each instance's outcome, and the output of each
        that succeeded. SSM's delivery timeout is its least (30 s); a command still running at
        the deadline is ``Incomplete`` and harmless (the document only reads)."""
        try:
            sent = self.ssm.send_command(
                DocumentName=document,
                InstanceIds=instances,
                Parameters={k: [v] for k, v in parameters.items()},
                TimeoutSeconds=SSM_MIN_DELIVERY_SECONDS,
                MaxConcurrency="100%",
                MaxErrors="100%",
                Comment=f"greenlight: {document}"[:100],
            )
        except ClientError as exc:
            detail = f"SendCommand: {exc.response['Error'].get('Code')}"
            return {i: InstanceOutcome(i, UNDELIVERABLE, detail) for i in instances}, {}
        command_id = sent["Command"]["CommandId"]
        outcomes = self._wait(command_id, instances, deadline)
        outputs: dict[str, str] = {}
        for instance in [i for i, o in outcomes.items() if o.outcome == SUCCESS]:
            try:
                got = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance)
            except ClientError as exc:
                code = exc.response["Error"].get("Code")
                outcomes[instance] = outcomes[instance]._replace(
                    outcome=FAILED, detail=f"output not read: GetCommandInvocation: {code}"
                )
                continue
            outputs[instance] = got.get("StandardOutputContent", "")
        return outcomes, outputs
