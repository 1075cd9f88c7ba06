"""The edge push port: how the rollout, gate and night functions push the HAProxy edge.

A push is the haproxy function, invoked and waited for, within the caller's deadline: the
function is told when the caller gives up (``deadline_ms``, epoch milliseconds, a little before
the caller's own deadline so that the answer gets back in time), the invoke's read timeout is
what the caller has left, and it is not retried (a retried RequestResponse invoke is a second
push, and waits twice). A push with less than :data:`MIN_PUSH_SECONDS` left is not started.
Pushes run one after another: the function holds the edge lock (``edge/lease.py``) while it
writes, and a push waits for it, within its deadline (docs/edge.md, "One push at a time").

A push that did not run, or whose outcome is unknown, answers one of :data:`UNSETTLED`
(``busy``, ``too-late``, ``throttled``, ``timed-out``, ``failed``): not taken, and worth
trying again later. A push refused because the edge is pinned to a release (``pinned``: a
rollback, until someone unpins) is settled: not taken, and not worth retrying.

The rollout function pushes before it writes a candidate's pods (the preview route, and the
promotion staged ahead as a prospect), the gate at promotion, revert and retirement, the night
function around a drain. This module is the only thing the four jobs share of one another (the
import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

    from .deadline import Deadline

# The haproxy function's timeout (template.yaml): no push lasts longer. The gate's sweep waits
# longer than this before it takes a chain for stuck (gate/decide.py).
PUSH_MAX_SECONDS = 300
# A push is not started with less than this left: the function renders, publishes and needs a
# minimal SSM wave (edge/fleet.py ``wave_timeouts``) within it.
MIN_PUSH_SECONDS = 75.0
# What a caller with other work to do first (the rollout function's ECR wait, the night
# function's drain) leaves for a push it must make: a render, a publish and three SSM waves.
PUSH_BUDGET_SECONDS = 150.0
# The function is told to be done this much before the caller's deadline: its answer travels.
ANSWER_SECONDS = 3.0


class EdgePush(Protocol):
    def __call__(
        self,
        reason: str,
        *,
        deadline: Deadline,
        prospect: dict[str, str] | None = None,
        promote: dict[str, str] | None = None,
        restore: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...


class PushStatus(StrEnum):
    """A push's answer when the function did not publish (the other answers are
    ``edge.publish.Published`` statuses)."""

    REJECTED = "rejected"  # refused (a bad event or configuration) or the function failed
    BUSY = "busy"  # another push held the edge lock until this one's deadline
    TOO_LATE = "too-late"  # too little time left to start
    THROTTLED = "throttled"  # Lambda refused the invoke (TooManyRequestsException)
    TIMED_OUT = "timed-out"  # no answer by the deadline: whether it was applied is unknown
    FAILED = "failed"  # the invoke raised (the caller's view): whether it was applied is unknown
    # The edge is pinned to a release (a rollback): refused before anything was rendered, and
    # settled (retrying does not help until someone unpins).
    PINNED = "pinned"


UNSETTLED = frozenset(
    {
        PushStatus.BUSY,
        PushStatus.TOO_LATE,
        PushStatus.THROTTLED,
        PushStatus.TIMED_OUT,
        PushStatus.FAILED,
    }
)
NOT_PUSHED = UNSETTLED | {PushStatus.REJECTED, PushStatus.PINNED}


class FleetStatus(StrEnum):
    """How a push's fleet reload ended (``edge.fleet``); ``no-fleet``: none is configured."""

    APPLIED = "applied"
    CANARY_FAILED = "canary-failed"
    INCOMPLETE = "incomplete"
    NO_INSTANCES = "no-instances"
    NO_FLEET = "no-fleet"
    NOT_UP = "not-up"  # a promotion's candidate not UP on every instance: nothing changed


TAKEN = frozenset({FleetStatus.APPLIED, FleetStatus.NO_FLEET})


@dataclass
class LambdaEdgePush:
    """The haproxy function, invoked and waited for within the caller's deadline: a push that
    reports the fleet's reload. ``client_for(seconds)``: a Lambda client whose read timeout is
    ``seconds``, without retries (``aws.Clients.lambda_within``)."""

    client_for: Callable[[float], LambdaClient]
    function: str
    min_seconds: float = MIN_PUSH_SECONDS
    wall: Callable[[], float] = time.time

    def __call__(
        self,
        reason: str,
        *,
        deadline: Deadline,
        prospect: dict[str, str] | None = None,
        promote: dict[str, str] | None = None,
        restore: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``promote`` (the gate's promotion: ``{"app", "colour"}``): the function first
        confirms the colour's servers UP on every instance, and publishes nothing if not.
        ``restore`` (the gate's revert: ``{"app", "colour"}``, the colour going back live): the
        function does not hold the push on the UP check of that app's moves (a revert is the
        remedy); other apps' moves are still checked."""
        event: dict[str, Any] = {"action": "push", "reason": reason}
        if prospect is not None:
            event["prospect"] = prospect
        if promote is not None:
            event["promote"] = promote
        if restore is not None:
            event["restore"] = restore
        return self.invoke(event, deadline=deadline)

    def invoke(self, event: dict[str, Any], *, deadline: Deadline) -> dict[str, Any]:
        """``event`` (any action of the function) within ``deadline``: not started with less
        than ``min_seconds`` left (``too-late``); ``deadline_ms`` added; ``timed-out``,
        ``throttled`` or ``rejected`` when the function gave no answer of its own."""
        left = deadline.remaining()
        if left < self.min_seconds:
            return {
                "status": PushStatus.TOO_LATE.value,
                "error": f"{left:.1f} s left before the deadline; the {event['action']} action"
                f" needs {self.min_seconds:.0f} s: not started",
            }
        event = event | {
            "deadline_ms": deadline.epoch_ms(less_seconds=ANSWER_SECONDS, wall=self.wall)
        }
        try:
            reply = self.client_for(left).invoke(
                FunctionName=self.function,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
            )
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            return {
                "status": PushStatus.TIMED_OUT.value,
                "error": f"no answer in {left:.0f} s: {exc}",
            }
        except ClientError as exc:
            if exc.response["Error"].get("Code") != "TooManyRequestsException":
                raise
            return {"status": PushStatus.THROTTLED.value, "error": str(exc)[:500]}
        payload = json.loads(reply["Payload"].read() or b"{}")
        if reply.get("FunctionError"):
            return {"status": PushStatus.REJECTED.value, "error": str(payload)[:500]}
        result: dict[str, Any] = payload
        return result


def unsettled(pushed: dict[str, Any]) -> bool:
    """Whether a push did not run, or its outcome is unknown: try again later."""
    return pushed.get("status") in UNSETTLED


def pinned(pushed: dict[str, Any]) -> str:
    """Why a push was refused because the edge is pinned ("the edge is pinned to release ...");
    "" for any other answer."""
    if pushed.get("status") != PushStatus.PINNED:
        return ""
    return str(pushed.get("error") or "the edge is pinned")


def taken(pushed: dict[str, Any]) -> tuple[bool, str]:
    """Whether the fleet took a push's config, and the fleet's status (a push that did not
    run: its own status, such as ``busy``)."""
    default = pushed.get("status") if pushed.get("status") in NOT_PUSHED else FleetStatus.NO_FLEET
    fleet_status = str((pushed.get("fleet") or {}).get("status", default))
    ok = pushed.get("status") not in NOT_PUSHED and fleet_status in TAKEN
    return ok, fleet_status


# "<backend>: N of M servers not UP (...)": an instance's reason, per backend it did not see UP.
_NOT_UP = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*): \d+ of \d+ servers? not UP")


def not_up(pushed: dict[str, Any]) -> dict[str, list[str]]:
    """The backends each instance did not see UP, from a push held not UP (fleet ``not-up``):
    instance -> sorted backend names (``fleet["not_up"]``, docs/edge.md); {} for any other
    answer. An answer without that field (an older function): the names are read from each
    failed instance's reason ("shop-green: 1 of 2 servers not UP (...)"); a reason that names
    none (not checked in time, HAProxy not running) counts every backend of the round
    (``checked["backends"]``), or none known (an empty list)."""
    fleet: dict[str, Any] = pushed.get("fleet") or {}
    if fleet.get("status") != FleetStatus.NOT_UP:
        return {}
    checked: dict[str, Any] = fleet.get("checked") or {}
    given = fleet.get("not_up") or checked.get("not_up")
    if isinstance(given, dict):
        return {str(i): sorted(str(b) for b in names) for i, names in sorted(given.items())}
    every = sorted(str(b) for b in checked.get("backends") or [])
    found: dict[str, list[str]] = {}
    for instance, outcome in sorted((checked.get("instances") or {}).items()):
        if outcome.get("outcome") == "Success":
            continue
        named = sorted(set(_NOT_UP.findall(str(outcome.get("detail") or ""))))
        found[str(instance)] = named or every
    return found


def held_by(pushed: dict[str, Any], backend: str) -> bool:
    """Whether a push held not UP was held by ``backend`` (some instance did not see it UP, or
    an instance's not-UP backends are unknown); False for any other answer."""
    held = not_up(pushed)
    return any(backend in names or not names for names in held.values())


def not_up_reason(pushed: dict[str, Any], backend: str | None = None) -> str:
    """Why a push was held not UP (fleet ``not-up``), per instance and labelled by backend:
    "shop-green not UP on i-0abc: shop-green: 1 of 2 servers not UP (...)"; only the instances
    that did not see ``backend`` UP when it is given (every not-UP backend otherwise); "" for
    any other answer."""
    held = not_up(pushed)
    if not held:
        return ""
    checked: dict[str, Any] = (pushed.get("fleet") or {}).get("checked") or {}
    outcomes: dict[str, Any] = checked.get("instances") or {}
    reasons = []
    for instance, names in held.items():
        if backend is not None and names and backend not in names:
            continue  # this instance saw ``backend`` UP
        shown = [backend] if backend is not None else names
        outcome = outcomes.get(instance) or {}
        detail = outcome.get("detail") or outcome.get("outcome") or "not confirmed UP"
        label = ", ".join(shown) or "the round's backends"
        reasons.append(f"{label} not UP on {instance}: {detail}")
    return "; ".join(reasons) or f"{backend} not UP on every instance"


def published(pushed: dict[str, Any]) -> dict[str, Any]:
    """What a push that the fleet took made live, for the rollout record: the config's S3
    version and sha256, and the SSM command that applied it on each instance."""
    fleet: dict[str, Any] = pushed.get("fleet") or {}
    if not fleet.get("version_id"):
        return {}
    commands = {
        instance: str(outcome.get("command_id") or "")
        for instance, outcome in (fleet.get("instances") or {}).items()
    }
    return {
        "config_version": str(fleet["version_id"]),
        "config_sha256": str(fleet.get("sha256") or ""),
        "ssm_commands": {i: c for i, c in commands.items() if c},
    }


# ---------------------------------------------------------------- the edge's counters
# Counters are not started with less than this left: the function loads the apps file and runs
# the stats document on every instance at once (an SSM round trip of a few seconds).
MIN_COUNTERS_SECONDS = 10.0


class EdgeCounters(Protocol):
    """HAProxy's own counters for an app's colours, from every instance of the edge: the haproxy
    function's read-only ``counters`` action (docs/edge.md, "Counters"; no lock, so it runs
    beside a push). The gate's ``GateDeps.edge_counters``.

    The answer: ``{"status": "counters", "app", "colours", "backends", "instances": {id:
    {"worker", "uptime_seconds", "rows", "missing"}}, "errors": {id: reason}}``. Each row is one
    backend (``server`` ``BACKEND``) or one of its servers, for ``<app>-<colour>`` and
    ``<app>-live-<colour>``: ``requests``, ``http_5xx``, ``http_4xx``, ``connection_errors``,
    ``response_errors``, ``retries``, ``redispatches``, ``response_ms`` and ``total_ms``
    (HAProxy's averages over the last 1024 requests), ``status``, ``backup``. Figures count
    from the worker's start (``worker``, ``uptime_seconds``): a reload starts them at zero, so
    compare samples of the same worker. Judge the ``BACKEND`` row: a request whose connection
    failed is counted there (``requests``, and ``http_5xx`` for HAProxy's own 503) but in no
    server's ``requests``. Or one of :data:`NOT_PUSHED`'s statuses (``too-late``,
    ``timed-out``, ``throttled``, ``rejected``) when there are none."""

    def __call__(
        self, app: str, colours: Sequence[str], *, deadline: Deadline
    ) -> dict[str, Any]: ...


@dataclass
class LambdaEdgeCounters:
    """The haproxy function's ``counters`` action, invoked and waited for within the caller's
    deadline as a push is (:meth:`LambdaEdgePush.invoke`)."""

    client_for: Callable[[float], LambdaClient]
    function: str
    min_seconds: float = MIN_COUNTERS_SECONDS
    wall: Callable[[], float] = time.time

    def __call__(self, app: str, colours: Sequence[str], *, deadline: Deadline) -> dict[str, Any]:
        invoke = LambdaEdgePush(self.client_for, self.function, self.min_seconds, self.wall)
        event = {"action": "counters", "app": app, "colours": list(colours)}
        return invoke.invoke(event, deadline=deadline)
